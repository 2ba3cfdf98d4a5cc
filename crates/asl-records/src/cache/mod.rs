//! Cache entries: a name (an action key `ac/HEX`, a ccache key) pointing at
//! an artifact through an `asl/cache-entry` record. The newest live entry
//! answers; a put may be conditional, so two writers can compare-and-swap
//! a name. What a build-cache door serves is decided here, not in the door.

use asl_core::{ArtifactId, Store};
use parking_lot::Mutex;

use crate::cbor::Value;
use crate::query::{Query, QueryIndex};
use crate::{Record, RecordError, Source};

pub mod access;
mod space;

pub use space::{Added, Space, Usage, Victim};

/// The record type of cache entries.
pub const CACHE_ENTRY: &str = "asl/cache-entry";

/// When a put of an entry may replace the current answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always (the newest entry wins).
    Always,
    /// Only when the name has no answer yet (`If-None-Match: *`).
    Absent,
    /// Only when the current answer is this artifact (`If-Match`).
    Current(ArtifactId),
}

/// An entry to put: its value is already stored.
#[derive(Clone, Debug)]
pub struct NewEntry<'a> {
    /// `ac/HEX`, `cas/HEX`, `ccache/KEY`.
    pub name: &'a str,
    /// The artifact it answers with.
    pub value: ArtifactId,
    /// The value's length.
    pub len: u64,
    /// The value was in the store before this entry's put stored it: the
    /// namespace must never remove it.
    pub shared: bool,
    /// SHA-256 digests of the `cas/` entries an action result names.
    pub holds: Vec<[u8; 32]>,
    /// Records stored and committed with the entry (a `cas/` entry's
    /// digest record).
    pub with: Vec<Record>,
}

/// The cache entries of one store, as the process holding its writer sees
/// them: puts are checked and written one at a time, and their times
/// strictly increase, so two entries for a name put within a millisecond
/// still order. Evictions take the same turn as puts, so a put never
/// acknowledges a value an eviction is removing.
#[derive(Default)]
pub struct Entries {
    /// The last time stamped, in milliseconds; also whose turn it is.
    last: Mutex<u64>,
    space: Space,
}

impl Entries {
    /// Entries of a store (nothing is read until asked).
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace's live entries, sizes and access times.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// Counts every live entry of the store into [`Entries::space`] and
    /// applies the access file, if it can be read (why not is returned, not
    /// failed on: it is approximate and derived). Called once, before
    /// this process puts entries.
    pub fn load(&self, store: &Store, index: &QueryIndex) -> Result<Option<String>, RecordError> {
        let _turn = self.last.lock();
        let q = Query {
            type_name: Some(CACHE_ENTRY.into()),
            ..Query::default()
        };
        let mut found = Vec::new();
        for hit in index.find_live(store, &q)? {
            for rid in hit.records {
                let Ok(r) = crate::get(store as &dyn Source, &rid) else {
                    continue;
                };
                let Some(e) = Parsed::of(&r) else {
                    continue;
                };
                let Some(len) = store.info(&e.value)?.map(|i| i.len) else {
                    continue;
                };
                let record_len = store.len_of(&rid)?;
                found.push((e, rid, record_len, len));
            }
        }
        // Oldest first, so that each name's newest entry is the one left live.
        found.sort_by_key(|f| (f.0.at_ms, f.1));
        for (e, rid, record_len, len) in &found {
            self.space.add(&Added {
                name: &e.name,
                record: (*rid, *record_len),
                value: (e.value, *len),
                shared: e.shared,
                holds: e.holds.clone(),
                touched: e.at_ms,
            });
        }
        let note = match store.side_files().read(access::FILE) {
            Ok(None) => None,
            Ok(Some(b)) => match access::decode(&b) {
                Ok(times) => {
                    self.space.apply_access(&times);
                    None
                }
                Err(e) => Some(e),
            },
            Err(e) => Some(e.to_string()),
        };
        Ok(note)
    }

    /// Writes the access file if anything was read since it was last
    /// written.
    pub fn save_access(&self, store: &Store) -> Result<(), RecordError> {
        if let Some(b) = self.space.access_file() {
            store
                .side_files()
                .write(access::FILE, &b, asl_core::SideFileAccess::Shared)?;
        }
        Ok(())
    }

    /// The artifact `name` (`ac/HEX`, `ccache/KEY`) answers with: its
    /// newest entry whose artifact is live. `index` must be up to date with
    /// the store. Marks the entry used.
    pub fn lookup(&self, store: &Store, index: &QueryIndex, name: &str) -> Result<Option<ArtifactId>, RecordError> {
        let found = newest(store, index, name)?;
        if found.is_some() {
            self.space.touch(name, now_ms());
        }
        Ok(found)
    }

    /// The artifact `name` answers with when the namespace knows its newest
    /// entry and the artifact is live, marked used; `None` sends the caller
    /// to [`Entries::lookup`] (no index needed here, so reads do not wait
    /// for writes that hold it).
    pub fn lookup_known(&self, store: &Store, name: &str) -> Result<Option<ArtifactId>, RecordError> {
        match self.space.value_of(name) {
            Some(id) if store.contains(&id)? => {
                self.space.touch(name, now_ms());
                Ok(Some(id))
            }
            _ => Ok(None),
        }
    }

    /// Marks entry `name` used (a read that found it another way, as a
    /// `cas/` entry through its digest).
    pub fn touch(&self, name: &str) {
        self.space.touch(name, now_ms());
    }

    /// Points `e.name` at `e.value` (already stored) when `when` allows it,
    /// committed and indexed; false, and nothing written, when it does not.
    /// The check and the write are one step among this store's entry puts.
    pub fn put(
        &self,
        store: &Store,
        index: &mut QueryIndex,
        e: &NewEntry<'_>,
        when: &Condition,
    ) -> Result<bool, RecordError> {
        let mut last = self.last.lock();
        let allowed = match when {
            Condition::Always => true,
            Condition::Absent => newest(store, index, e.name)?.is_none(),
            Condition::Current(c) => newest(store, index, e.name)? == Some(*c),
        };
        if !allowed {
            return Ok(false);
        }
        if !store.contains(&e.value)? {
            return Err(RecordError::Retry(format!(
                "{} was evicted from the cache while it was being stored; send it again",
                e.value
            )));
        }
        *last = now_ms().max(*last + 1);
        self.write(store, index, e, e.shared, *last)?;
        Ok(true)
    }

    /// Stores the entry's record (and its companions), commits, indexes and
    /// counts it. The caller holds the turn.
    fn write(
        &self,
        store: &Store,
        index: &mut QueryIndex,
        e: &NewEntry<'_>,
        shared: bool,
        at: u64,
    ) -> Result<(), RecordError> {
        let mut bytes = vec![crate::prepare(&entry_record(e, shared, at))?.bytes];
        for r in &e.with {
            bytes.push(crate::prepare(r)?.bytes);
        }
        let puts = store.put_batch_with(&bytes, &asl_core::PutOptions::default())?;
        store.commit()?;
        index.refresh(store)?;
        self.space.add(&Added {
            name: e.name,
            record: (puts[0].id, bytes[0].len() as u64),
            value: (e.value, e.len),
            shared,
            holds: e.holds.clone(),
            touched: at,
        });
        Ok(())
    }

    /// A write outside the caches stored `value` again (a plain upload of
    /// the same bytes): the namespace gives up its claim to remove it, and
    /// rewrites its entries' records to say so. Fails with
    /// [`RecordError::Retry`] when an eviction removed it a moment ago.
    pub fn claim(&self, store: &Store, index: &mut QueryIndex, value: &ArtifactId) -> Result<(), RecordError> {
        let mut last = self.last.lock();
        if !store.contains(value)? {
            return Err(RecordError::Retry(format!(
                "{value} was evicted from the cache while it was being stored; send it again"
            )));
        }
        for name in self.space.claim(value) {
            let Some(p) = newest_entry(store, index, &name)? else {
                continue;
            };
            *last = now_ms().max(*last + 1);
            let e = NewEntry {
                name: &name,
                value: p.value,
                len: store.len_of(&p.value)?,
                shared: true,
                holds: p.holds,
                with: Vec::new(),
            };
            self.write(store, index, &e, true, *last)?;
        }
        Ok(())
    }

    /// Brings the namespace down to `target` bytes when it is over
    /// `trigger` ([`Space::plan`]): removes the victims (and the digest
    /// records of values that go), commits, indexes. Returns what went.
    pub fn evict<E: From<RecordError>>(
        &self,
        store: &Store,
        index: &mut QueryIndex,
        trigger: u64,
        target: u64,
        protected: impl FnMut(&QueryIndex, &ArtifactId) -> Result<bool, E>,
    ) -> Result<Vec<Victim>, E> {
        let _turn = self.last.lock();
        if self.space.usage().bytes <= trigger {
            return Ok(Vec::new());
        }
        let mut protected = protected;
        let victims = self.space.plan(target, |id| protected(index, id))?;
        if victims.is_empty() {
            return Ok(victims);
        }
        let mut gone = Vec::new();
        for v in &victims {
            gone.push(v.record);
            if let Some(value) = &v.value {
                gone.push(*value);
                for rid in index.annotations_of(value)? {
                    if crate::get(store as &dyn Source, &rid).is_ok_and(|r| r.type_name == crate::digests::DIGEST) {
                        gone.push(rid);
                    }
                }
            }
        }
        for id in &gone {
            store.remove(id).map_err(RecordError::from)?;
        }
        store.commit().map_err(RecordError::from)?;
        self.space.forget(&victims);
        index.refresh(store)?;
        Ok(victims)
    }
}

/// An `asl/cache-entry` record as read back.
struct Parsed {
    name: String,
    value: ArtifactId,
    at_ms: u64,
    shared: bool,
    holds: Vec<[u8; 32]>,
}

impl Parsed {
    fn of(r: &Record) -> Option<Parsed> {
        if r.type_name != CACHE_ENTRY {
            return None;
        }
        let (Some(Value::Text(name)), Some(Value::Text(at)), Some(Value::Bytes(b))) =
            (r.body.get("cache_key"), r.body.get("created_at"), r.body.get("value"))
        else {
            return None;
        };
        let value = ArtifactId::from_bytes(<[u8; 32]>::try_from(b.as_slice()).ok()?);
        let holds = match r.body.get("holds") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|v| match v {
                    Value::Text(h) => crate::digests::parse_sha256(h),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Parsed {
            name: name.clone(),
            value,
            at_ms: crate::time::parse_millis(at)?,
            shared: matches!(r.body.get("shared"), Some(Value::Bool(true))),
            holds,
        })
    }
}

/// The newest live entry for `name`, as read back.
fn newest_entry(store: &Store, index: &QueryIndex, name: &str) -> Result<Option<Parsed>, RecordError> {
    // The index orders by whole seconds; the entries' own times (to the
    // millisecond, strictly increasing per writer) decide within one.
    let mut best: Option<Parsed> = None;
    for (_, rid) in index.records_with("cache_key", name.as_bytes())? {
        let Some(e) = crate::get(store as &dyn Source, &rid)
            .ok()
            .as_ref()
            .and_then(Parsed::of)
        else {
            continue;
        };
        if best.as_ref().is_none_or(|b| e.at_ms > b.at_ms) && store.contains(&e.value)? {
            best = Some(e);
        }
    }
    Ok(best)
}

/// The artifact of the newest live entry for `name`.
fn newest(store: &Store, index: &QueryIndex, name: &str) -> Result<Option<ArtifactId>, RecordError> {
    Ok(newest_entry(store, index, name)?.map(|e| e.value))
}

/// The `asl/cache-entry` record of `e` (version 2: `shared` and `holds`
/// are new).
fn entry_record(e: &NewEntry<'_>, shared: bool, at: u64) -> Record {
    let mut body = vec![
        (Value::text("cache_key"), Value::text(e.name)),
        (Value::text("value"), Value::Bytes(e.value.as_bytes().to_vec())),
        (Value::text("created_at"), Value::text(stamp(at))),
    ];
    if shared {
        body.push((Value::text("shared"), Value::Bool(true)));
    }
    if !e.holds.is_empty() {
        let mut holds: Vec<String> = e.holds.iter().map(crate::digests::hex).collect();
        holds.sort_unstable();
        holds.dedup();
        body.push((
            Value::text("holds"),
            Value::Array(holds.into_iter().map(Value::Text).collect()),
        ));
    }
    Record::new(CACHE_ENTRY, 2, Value::Map(body))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as record time text with a fraction.
fn stamp(ms: u64) -> String {
    let whole = crate::time::format(ms / 1000);
    format!("{}.{:03}Z", &whole[..whole.len() - 1], ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::StoreOptions;

    fn entry(name: &str, value: ArtifactId, len: u64) -> NewEntry<'_> {
        NewEntry {
            name,
            value,
            len,
            shared: false,
            holds: Vec::new(),
            with: Vec::new(),
        }
    }

    #[test]
    fn the_newest_entry_answers_and_conditional_puts_compare_and_swap() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let (a, b) = (s.put(b"first").unwrap(), s.put(b"second").unwrap());
        s.commit().unwrap();
        let (mut index, _) = QueryIndex::open(&s).unwrap();
        let e = Entries::new();
        let (ea, eb) = (entry("ac/k", a, 5), entry("ac/k", b, 6));
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), None);
        assert!(!e.put(&s, &mut index, &ea, &Condition::Current(b)).unwrap());
        assert!(e.put(&s, &mut index, &ea, &Condition::Absent).unwrap());
        assert!(!e.put(&s, &mut index, &eb, &Condition::Absent).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(a));
        // Within the same millisecond too, the newer entry answers.
        assert!(e.put(&s, &mut index, &eb, &Condition::Current(a)).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(b));
        assert!(e.put(&s, &mut index, &ea, &Condition::Always).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(a));
        // An entry whose artifact is gone does not answer.
        s.remove(&a).unwrap();
        s.commit().unwrap();
        index.refresh(&s).unwrap();
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(b));
    }

    /// Puts `n` bytes of `fill` as a cache value under `name`.
    fn cached(
        s: &Store,
        e: &Entries,
        index: &mut QueryIndex,
        name: &str,
        fill: u8,
        n: usize,
        holds: Vec<[u8; 32]>,
    ) -> ArtifactId {
        let put = s.put_with(&vec![fill; n], &asl_core::PutOptions::default()).unwrap();
        s.commit().unwrap();
        let mut ne = entry(name, put.id, n as u64);
        ne.shared = !put.new;
        ne.holds = holds;
        assert!(e.put(s, index, &ne, &Condition::Always).unwrap());
        put.id
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_spares_held_protected_and_shared_values() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        // Bytes the cache did not write: its entry may go, they stay.
        let outside = s.put(&[9u8; 1000]).unwrap();
        s.commit().unwrap();
        let (mut index, _) = QueryIndex::open(&s).unwrap();
        let e = Entries::new();
        // The oldest entries: a pinned action result, which keeps the
        // (unpinned) blob it holds.
        let kept_sha = [8u8; 32];
        let kept_name = format!("cas/{}", crate::digests::hex(&kept_sha));
        let kept_blob = cached(&s, &e, &mut index, &kept_name, 6, 100, Vec::new());
        let pinned_action = cached(&s, &e, &mut index, "ac/y", 7, 100, vec![kept_sha]);
        let blob_sha = [7u8; 32];
        let blob_name = format!("cas/{}", crate::digests::hex(&blob_sha));
        let blob = cached(&s, &e, &mut index, &blob_name, 1, 1000, Vec::new());
        let old = cached(&s, &e, &mut index, "ccache/aaaaaaaa", 2, 1000, Vec::new());
        let pinned = cached(&s, &e, &mut index, "ccache/bbbbbbbb", 3, 1000, Vec::new());
        let shared = cached(&s, &e, &mut index, "ccache/cccccccc", 9, 1000, Vec::new());
        assert_eq!(shared, outside);
        let action = cached(&s, &e, &mut index, "ac/x", 4, 1000, vec![blob_sha]);
        let fresh = cached(&s, &e, &mut index, "ccache/dddddddd", 5, 1000, Vec::new());
        // `old` is read now, so it is the most recently used.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(e.lookup(&s, &index, "ccache/aaaaaaaa").unwrap(), Some(old));
        let before = e.space().usage();
        assert_eq!(before.entries, 8);
        // The shared value is not counted; everything else is, with records.
        assert!(before.bytes > 5200 && before.bytes < 5200 + 8 * 400, "{before:?}");
        let pin = |_: &QueryIndex, id: &ArtifactId| Ok::<_, RecordError>(*id == pinned || *id == pinned_action);
        // Under the trigger: nothing happens.
        assert!(e.evict(&s, &mut index, before.bytes, 0, pin).unwrap().is_empty());
        // Down to about two values: the blob is older than the action that
        // holds it, but the action goes first; the pinned value stays.
        let gone = e.evict(&s, &mut index, 0, 3000, pin).unwrap();
        let names: Vec<_> = gone.iter().map(|v| v.name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            ["ccache/cccccccc", "ac/x", &blob_name, "ccache/dddddddd"],
            "{gone:?}"
        );
        for id in [blob, action, fresh] {
            assert!(!s.contains(&id).unwrap());
        }
        for id in [outside, pinned, old, kept_blob, pinned_action] {
            assert!(s.contains(&id).unwrap());
        }
        assert_eq!(e.lookup(&s, &index, "ccache/cccccccc").unwrap(), None);
        let after = e.space().usage();
        assert_eq!(after.entries, 4);
        assert!(after.bytes <= 3000, "{after:?}");
        // A second process counts the same from the records alone.
        let again = Entries::new();
        assert_eq!(again.load(&s, &index).unwrap(), None);
        assert_eq!(again.space().usage(), after);
    }

    #[test]
    fn access_times_survive_a_restart_through_the_access_file() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let (mut index, _) = QueryIndex::open(&s).unwrap();
        let e = Entries::new();
        cached(&s, &e, &mut index, "ccache/aaaaaaaa", 1, 1000, Vec::new());
        cached(&s, &e, &mut index, "ccache/bbbbbbbb", 2, 1000, Vec::new());
        std::thread::sleep(std::time::Duration::from_millis(5));
        e.lookup(&s, &index, "ccache/aaaaaaaa").unwrap();
        e.save_access(&s).unwrap();
        let again = Entries::new();
        assert_eq!(again.load(&s, &index).unwrap(), None);
        // The older write, read since, outlives the newer one.
        let gone = again
            .evict(&s, &mut index, 0, 1500, |_, _| Ok::<_, RecordError>(false))
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].name.as_deref(), Some("ccache/bbbbbbbb"));
        // A damaged access file is reported, not fatal.
        s.side_files()
            .write(access::FILE, b"junk", asl_core::SideFileAccess::Shared)
            .unwrap();
        let third = Entries::new();
        assert!(third.load(&s, &index).unwrap().is_some());
        assert_eq!(third.space().usage().entries, 1);
    }

    #[test]
    fn a_value_stored_again_outside_the_caches_is_never_evicted() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let (mut index, _) = QueryIndex::open(&s).unwrap();
        let e = Entries::new();
        let v = cached(&s, &e, &mut index, "ccache/aaaaaaaa", 1, 100, Vec::new());
        e.claim(&s, &mut index, &v).unwrap();
        // After a restart too: the entry's record now says so.
        let again = Entries::new();
        again.load(&s, &index).unwrap();
        let gone = again
            .evict(&s, &mut index, 0, 0, |_, _| Ok::<_, RecordError>(false))
            .unwrap();
        assert!(gone.iter().all(|g| g.value.is_none()), "{gone:?}");
        assert!(s.contains(&v).unwrap());
    }
}
