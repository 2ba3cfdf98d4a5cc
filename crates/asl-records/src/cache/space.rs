//! The cache namespace in memory: every live cache entry with its size,
//! the artifact it answers with, when it was last used and the blobs it
//! holds, so that a served build cache can stay under a maximum size by
//! evicting its least recently used entries.
//!
//! The records are the truth ([`Space::load`] rebuilds all of it from the
//! `asl/cache-entry` records); the access times are approximate: a read
//! touches memory only, and [`super::access`] keeps them on disk every so
//! often. What the namespace may remove is only what it wrote: a value
//! that existed before its entry (or that a write outside the caches
//! asked for since) is `shared` and stays when its entries go.
//!
//! An action-cache entry holds the blobs its action result names (`holds`,
//! SHA-256 digests of `cas/` entries): a held blob is never evicted while
//! an entry holding it is live, so a client never finds an action result
//! whose outputs are gone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use asl_core::ArtifactId;

use super::access;

/// One live entry: the newest for its name.
#[derive(Clone, Debug)]
struct Item {
    record: ArtifactId,
    record_len: u64,
    value: ArtifactId,
    /// Last written or read, in milliseconds since the epoch.
    touched: u64,
    holds: Box<[[u8; 32]]>,
}

/// A value some entries answer with.
#[derive(Clone, Copy, Debug)]
struct Value {
    len: u64,
    /// Entries (live and superseded) that point at it.
    refs: u32,
    /// The namespace wrote it, so its last entry's eviction removes it.
    owned: bool,
}

/// A superseded entry: its record, and its value's share.
#[derive(Clone, Copy, Debug)]
struct Stale {
    record: ArtifactId,
    record_len: u64,
    value: ArtifactId,
}

/// A new entry, as [`Space::add`] takes it.
#[derive(Clone, Debug)]
pub struct Added<'a> {
    /// The entry's name (`ac/HEX`, `cas/HEX`, `ccache/KEY`).
    pub name: &'a str,
    /// The entry's record and its length.
    pub record: (ArtifactId, u64),
    /// The value and its length.
    pub value: (ArtifactId, u64),
    /// The value existed before the entry (or is claimed outside the caches).
    pub shared: bool,
    /// SHA-256 digests of the `cas/` entries the entry holds.
    pub holds: Vec<[u8; 32]>,
    /// When it was written (or last read), milliseconds since the epoch.
    pub touched: u64,
}

/// What one eviction removes: an entry (or a superseded one) and, when
/// nothing else points at it and the namespace wrote it, its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    /// The live entry's name; `None` for a superseded entry.
    pub name: Option<Box<str>>,
    /// The entry's record.
    pub record: ArtifactId,
    /// The value, when it goes too.
    pub value: Option<ArtifactId>,
    /// Bytes the namespace no longer counts once it is removed.
    pub bytes: u64,
}

/// What the namespace holds, for metrics and the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live entries.
    pub entries: u64,
    /// Bytes counted: entry records and the values the namespace wrote.
    pub bytes: u64,
}

#[derive(Default)]
struct Inner {
    names: HashMap<Box<str>, Item>,
    values: HashMap<ArtifactId, Value>,
    /// Live action-cache entries holding each `cas/` digest.
    holders: HashMap<[u8; 32], u32>,
    stale: Vec<Stale>,
    bytes: u64,
    /// Values claimed outside the caches before any entry named them
    /// (a cache put's value may be stored before its entry is added).
    claimed: HashMap<ArtifactId, Instant>,
    /// Reads since the access file was last written.
    dirty: bool,
}

/// The live cache entries of one store, as the process holding its writer
/// sees them. Its methods take a short lock each; they are called with the
/// [`super::Entries`] lock held when the store changes with them.
#[derive(Default)]
pub struct Space {
    inner: parking_lot::Mutex<Inner>,
}

/// How long a claim waits for the entry whose value it is.
const CLAIM_WAIT: Duration = Duration::from_secs(600);

impl Space {
    /// Counts a new entry; one it replaces becomes superseded.
    pub fn add(&self, e: &Added<'_>) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        let claimed = g.claimed.remove(&e.value.0).is_some();
        let v = g.values.entry(e.value.0).or_insert(Value {
            len: e.value.1,
            refs: 0,
            owned: true,
        });
        let counted = v.refs > 0 && v.owned;
        // One entry saying the value is shared is enough: the namespace
        // never owns it again.
        if e.shared || claimed {
            v.owned = false;
        }
        v.refs += 1;
        match (counted, v.owned) {
            (false, true) => g.bytes += v.len,
            (true, false) => g.bytes -= v.len,
            _ => {}
        }
        g.bytes += e.record.1;
        if e.name.starts_with("ac/") {
            // A client stores an action's outputs before its result: they
            // count as used when the result is, so that least recently used
            // order takes the result first.
            for h in &e.holds {
                *g.holders.entry(*h).or_default() += 1;
                if let Some(blob) = g.names.get_mut(cas_name(h).as_str()) {
                    blob.touched = blob.touched.max(e.touched);
                }
            }
        }
        let item = Item {
            record: e.record.0,
            record_len: e.record.1,
            value: e.value.0,
            touched: e.touched,
            holds: e.holds.clone().into_boxed_slice(),
        };
        if let Some(old) = g.names.insert(e.name.into(), item) {
            release_holds(&mut g.holders, e.name, &old.holds);
            g.stale.push(Stale {
                record: old.record,
                record_len: old.record_len,
                value: old.value,
            });
        }
    }

    /// Marks entry `name` (and, for an action result, the blobs it holds)
    /// as just used. Memory only.
    pub fn touch(&self, name: &str, now_ms: u64) {
        let mut g = self.inner.lock();
        let Some(item) = g.names.get_mut(name) else {
            return;
        };
        item.touched = item.touched.max(now_ms);
        if name.starts_with("ac/") {
            let holds = item.holds.clone();
            for h in holds.iter() {
                if let Some(blob) = g.names.get_mut(cas_name(h).as_str()) {
                    blob.touched = blob.touched.max(now_ms);
                }
            }
        }
        g.dirty = true;
    }

    /// A write outside the caches stored `value` again: from now on the
    /// namespace does not own it. Returns the names of live entries whose
    /// records still say it is theirs (the caller rewrites them as
    /// shared, so that a restart knows too).
    pub fn claim(&self, value: &ArtifactId) -> Vec<String> {
        let mut g = self.inner.lock();
        let g = &mut *g;
        match g.values.get_mut(value) {
            Some(v) if v.owned => {
                v.owned = false;
                if v.refs > 0 {
                    g.bytes -= v.len;
                }
                g.names
                    .iter()
                    .filter(|(_, i)| i.value == *value)
                    .map(|(n, _)| n.to_string())
                    .collect()
            }
            Some(_) => Vec::new(),
            None => {
                let now = Instant::now();
                g.claimed.retain(|_, t| now.duration_since(*t) < CLAIM_WAIT);
                g.claimed.insert(*value, now);
                Vec::new()
            }
        }
    }

    /// The value the live entry `name` answers with, if there is one.
    pub fn value_of(&self, name: &str) -> Option<ArtifactId> {
        self.inner.lock().names.get(name).map(|i| i.value)
    }

    /// Entries and bytes counted.
    pub fn usage(&self) -> Usage {
        let g = self.inner.lock();
        Usage {
            entries: g.names.len() as u64,
            bytes: g.bytes,
        }
    }

    /// What to remove to bring the namespace down to `target` bytes:
    /// superseded entries first, then live ones least recently used first
    /// (action results before the blobs they hold), skipping every entry
    /// whose record or removable value `protected` says must stay. Empty
    /// when the namespace is at or under `target`.
    pub fn plan<E>(
        &self,
        target: u64,
        mut protected: impl FnMut(&ArtifactId) -> Result<bool, E>,
    ) -> Result<Vec<Victim>, E> {
        // A copy of what the plan needs, so reads are not held up while
        // `protected` looks things up.
        let (bytes, stale, mut order, mut values, mut holders) = {
            let g = self.inner.lock();
            if g.bytes <= target {
                return Ok(Vec::new());
            }
            let mut order: Vec<(u64, bool, Box<str>, Item)> = g
                .names
                .iter()
                .map(|(n, i)| (i.touched, n.starts_with("cas/"), n.clone(), i.clone()))
                .collect();
            order.sort_unstable_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
            (g.bytes, g.stale.clone(), order, g.values.clone(), g.holders.clone())
        };
        let mut out = Vec::new();
        let mut left = bytes;
        let mut go = |record: ArtifactId, record_len: u64, value: ArtifactId, name: Option<Box<str>>| {
            let v = values.get_mut(&value).expect("every entry's value is counted");
            let last = v.refs == 1 && v.owned;
            if protected(&record)? || (last && protected(&value)?) {
                return Ok(None);
            }
            v.refs -= 1;
            let bytes = record_len + if last { v.len } else { 0 };
            Ok(Some(Victim {
                name,
                record,
                value: last.then_some(value),
                bytes,
            }))
        };
        for s in stale {
            if let Some(v) = go(s.record, s.record_len, s.value, None)? {
                left = left.saturating_sub(v.bytes);
                out.push(v);
            }
        }
        for (_, _, name, item) in order.drain(..) {
            if left <= target {
                break;
            }
            if let Some(sha) = name.strip_prefix("cas/").and_then(crate::digests::parse_sha256) {
                if holders.get(&sha).is_some_and(|n| *n > 0) {
                    continue;
                }
            }
            if let Some(v) = go(item.record, item.record_len, item.value, Some(name.clone()))? {
                if name.starts_with("ac/") {
                    release_holds(&mut holders, &name, &item.holds);
                }
                left = left.saturating_sub(v.bytes);
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Takes removed victims out of the count. A name written again since
    /// the plan keeps its new entry.
    pub fn forget(&self, victims: &[Victim]) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        for victim in victims {
            let value = match &victim.name {
                None => {
                    let Some(at) = g.stale.iter().position(|s| s.record == victim.record) else {
                        continue;
                    };
                    let s = g.stale.swap_remove(at);
                    g.bytes -= s.record_len;
                    s.value
                }
                Some(name) => {
                    if g.names.get(name).is_none_or(|i| i.record != victim.record) {
                        continue;
                    }
                    let item = g.names.remove(name).expect("looked up above");
                    release_holds(&mut g.holders, name, &item.holds);
                    g.bytes -= item.record_len;
                    item.value
                }
            };
            if let Some(v) = g.values.get_mut(&value) {
                v.refs -= 1;
                if v.refs == 0 {
                    if v.owned {
                        g.bytes -= v.len;
                    }
                    g.values.remove(&value);
                }
            }
        }
    }

    /// The access file's bytes, if anything was read since it was last
    /// taken.
    pub fn access_file(&self) -> Option<Vec<u8>> {
        let mut g = self.inner.lock();
        if !std::mem::take(&mut g.dirty) {
            return None;
        }
        Some(access::encode(
            g.names
                .iter()
                .map(|(n, i)| (access::key(n), i.touched))
                .collect::<Vec<_>>()
                .into_iter(),
        ))
    }

    /// Raises the entries' access times to those of an access file.
    pub fn apply_access(&self, times: &HashMap<access::Key, u64>) {
        let mut g = self.inner.lock();
        for (n, i) in g.names.iter_mut() {
            if let Some(t) = times.get(&access::key(n)) {
                i.touched = i.touched.max(*t);
            }
        }
    }
}

/// The `cas/` entry name of a digest.
fn cas_name(sha: &[u8; 32]) -> String {
    format!("cas/{}", crate::digests::hex(sha))
}

fn release_holds(holders: &mut HashMap<[u8; 32], u32>, name: &str, holds: &[[u8; 32]]) {
    if !name.starts_with("ac/") {
        return;
    }
    for h in holds {
        if let Some(n) = holders.get_mut(h) {
            *n -= 1;
            if *n == 0 {
                holders.remove(h);
            }
        }
    }
}
