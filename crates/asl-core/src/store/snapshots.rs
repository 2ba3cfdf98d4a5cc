//! Named snapshots, reads at a snapshot, pins and retention.
//!
//! A snapshot freezes CURRENT's live records into an index file named by the
//! snapshot's identity, and a catalog record in the log names it. Its entries'
//! locations are those at creation; since GC may move bytes later, reads at a
//! snapshot take the location from the main index, whose newest record for an
//! artifact always points at its bytes while anything retains it (a removal
//! writes a tombstone that keeps the location; GC rewrites the record when it
//! moves the bytes).
//!
//! Every change here runs under the writer lock, like GC's decisions, so "is
//! this artifact retained" never changes between GC's check and its delete.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::id::{ArtifactId, IdPrefix};
use crate::index::entry::Entry;
use crate::index::file::{write_index_at, IndexFile};
use crate::index::merge::Merged;
use crate::snapshot::catalog::{validate_name, SnapshotMeta};
use crate::snapshot::current::CurrentHasher;
use crate::snapshot::log::Record;

use super::iter::Iter;
use super::read::{ArtifactInfo, ArtifactReader};
use super::{SnapshotHandle, Store, Writer};

const PENDING_FILE: &str = "pending.idx";

/// Which snapshots [`Snapshots::prune`](crate::Snapshots::prune) keeps. A snapshot is deleted only
/// when no rule keeps it.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// Keep the newest N snapshots.
    pub keep_last: Option<usize>,
    /// Keep snapshots created within this long before now.
    pub keep_within: Option<Duration>,
    /// Keep these by name.
    pub keep_names: Vec<String>,
}

impl Retention {
    /// True when no rule keeps anything: `keep_last` of 0 and a zero
    /// `keep_within` keep nothing, so they do not count as rules.
    fn is_empty(&self) -> bool {
        self.keep_last.unwrap_or(0) == 0 && self.keep_within.is_none_or(|d| d.is_zero()) && self.keep_names.is_empty()
    }
}

/// What changed between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// In the second, not the first.
    pub added: Vec<ArtifactInfo>,
    /// In the first, not the second.
    pub removed: Vec<ArtifactInfo>,
}

/// Now, in seconds since 1970 (0 before it).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AsRef<str> for SnapshotMeta {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Store {
    /// Takes snapshot `name` of CURRENT, or of just the artifacts `only`
    /// (see [`Snapshots::create`](super::Snapshots::create)).
    pub(crate) fn snapshot_filtered(&self, name: &str, only: Option<&HashSet<ArtifactId>>) -> Result<SnapshotMeta> {
        validate_name(name).map_err(Error::InvalidArgument)?;
        // Off ZFS, say so before anything is made.
        #[cfg(feature = "zfs")]
        let dataset = match self.opts.zfs {
            true => Some(super::zfs::dataset_of(&self.layout.root)?),
            false => None,
        };
        let meta = self.take_snapshot(name, only)?;
        // Only now, with the ASL snapshot durable, so that the image holds
        // it. Should ZFS refuse, the ASL snapshot goes again.
        #[cfg(feature = "zfs")]
        if let Some(ds) = dataset {
            if let Err(e) = super::zfs::snapshot(&ds, name) {
                let _ = self.delete_snapshot(name);
                return Err(e);
            }
        }
        Ok(meta)
    }

    fn take_snapshot(&self, name: &str, only: Option<&HashSet<ArtifactId>>) -> Result<SnapshotMeta> {
        let mut w = self.writer_to_commit()?;
        if self.state.read().snapshots.contains_key(name) {
            return Err(Error::SnapshotExists(name.to_string()));
        }
        w.commit(self)?;
        // Checked under the writer lock, so nothing can remove one of them
        // between this check and the snapshot's file.
        for id in only.into_iter().flatten() {
            if !self.contains(id)? {
                return Err(Error::NotFound(*id));
            }
        }
        let (mem, files) = {
            let st = self.state.read();
            (super::sorted(&st.memtable), st.indexes.clone())
        };
        let dir = self.layout.snapshot_dir();
        let io = &*self.layout.io;
        io.create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let pending = dir.join(PENDING_FILE);
        let upper = mem.len() as u64 + files.iter().map(|f| f.len()).sum::<u64>();
        let mut hasher = CurrentHasher::default();
        let mut bytes = 0u64;
        // Chunk records stay out: a snapshot lists artifacts, and keeps
        // their chunks through their manifests (the chunk sweep marks them).
        let live = Merged::new(mem, &files, None)?
            .filter(
                |e| !matches!(e, Ok(e) if e.is_tombstone() || e.is_chunk() || only.is_some_and(|o| !o.contains(&e.id))),
            )
            .inspect(|e| {
                if let Ok(e) = e {
                    hasher.add(e);
                    bytes += e.len;
                }
            });
        let artifacts = write_index_at(io, &pending, 0, upper, live)?;
        let identity = hasher.finish();
        let path = self.layout.snapshot(&identity);
        let meta = SnapshotMeta {
            name: name.to_string(),
            identity,
            created: now_secs(),
            artifacts,
            bytes,
        };
        let shared = self
            .state
            .read()
            .snapshots
            .values()
            .find(|h| h.meta.identity == identity && h.damaged().is_none())
            .and_then(|h| h.opened().cloned());
        let file = match shared {
            // Same content as an existing snapshot: share its file.
            Some(f) => {
                let _ = io.remove(&pending);
                f
            }
            None => {
                io.rename(&pending, &path)
                    .map_err(|e| Error::io(format!("rename {}", pending.display()), e))?;
                sync_dir(io, &dir)?;
                Arc::new(IndexFile::open(io, &path)?)
            }
        };
        w.guard(|w| {
            w.batch.push(Record::SnapshotCreated(meta.clone()));
            w.commit(self)
        })?;
        self.state.write().snapshots.insert(
            name.to_string(),
            Arc::new(SnapshotHandle::new(meta.clone(), path, Ok(file))),
        );
        Ok(meta)
    }

    /// [`Snapshots::list`](crate::Snapshots::list)'s body.
    pub(crate) fn snapshot_list(&self) -> Vec<SnapshotMeta> {
        self.state.read().snapshots.values().map(|h| h.meta.clone()).collect()
    }

    /// [`Snapshots::get`](crate::Snapshots::get)'s body.
    pub(crate) fn snapshot_meta(&self, name: &str) -> Result<SnapshotMeta> {
        Ok(self.handle(name)?.meta.clone())
    }

    fn handle(&self, name: &str) -> Result<Arc<SnapshotHandle>> {
        self.state
            .read()
            .snapshots
            .get(name)
            .cloned()
            .ok_or_else(|| Error::SnapshotNotFound(name.to_string()))
    }

    /// A read-only view of the store as it was when `snapshot` was taken.
    pub fn at(&self, snapshot: impl AsRef<str>) -> Result<SnapshotView<'_>> {
        Ok(SnapshotView {
            store: self,
            handle: self.handle(snapshot.as_ref())?,
        })
    }

    /// [`Snapshots::delete`](crate::Snapshots::delete)'s body.
    pub(crate) fn delete_snapshot(&self, name: &str) -> Result<SnapshotMeta> {
        let mut w = self.writer_to_commit()?;
        let h = self.handle(name)?;
        // The ZFS snapshot mirroring it first: should ZFS refuse (a clone
        // depends on it), the ASL snapshot stays too.
        #[cfg(feature = "zfs")]
        super::zfs::destroy(&self.layout.root, name)?;
        w.guard(|w| {
            self.state.write().snapshots.remove(name);
            let shared = self
                .state
                .read()
                .snapshots
                .values()
                .any(|o| o.meta.identity == h.meta.identity);
            if !shared {
                // A damaged snapshot cannot say what it held: its artifacts
                // keep counting as live until `repair` recounts (GC then
                // reclaims less, never too much).
                if let Ok(f) = h.file() {
                    for i in 0..f.len() {
                        let e = f.entry(i)?;
                        w.release_if_unheld(self, &e.id)?;
                    }
                }
            }
            w.batch.push(Record::SnapshotDeleted { name: name.to_string() });
            w.commit(self)?;
            if !shared {
                let _ = self.layout.io.remove(&h.path);
                sync_dir(&*self.layout.io, &self.layout.snapshot_dir())?;
            }
            Ok(())
        })?;
        Ok(h.meta.clone())
    }

    /// [`Snapshots::diff`](crate::Snapshots::diff)'s body.
    pub(crate) fn diff_snapshots(&self, a: &str, b: &str) -> Result<SnapshotDiff> {
        let (ha, hb) = (self.handle(a)?, self.handle(b)?);
        let mut out = SnapshotDiff::default();
        if ha.meta.identity == hb.meta.identity {
            return Ok(out);
        }
        let (fa, fb) = (ha.file()?, hb.file()?);
        let (mut i, mut j) = (0u64, 0u64);
        let (na, nb) = (fa.len(), fb.len());
        let mut ea = if na > 0 { Some(fa.entry(0)?) } else { None };
        let mut eb = if nb > 0 { Some(fb.entry(0)?) } else { None };
        let step = |f: &IndexFile, k: &mut u64, n: u64| -> Result<Option<Entry>> {
            *k += 1;
            if *k < n {
                Ok(f.entry(*k).map(Some)?)
            } else {
                Ok(None)
            }
        };
        loop {
            match (ea, eb) {
                (None, None) => break,
                (Some(x), Some(y)) if x.id == y.id => {
                    ea = step(fa, &mut i, na)?;
                    eb = step(fb, &mut j, nb)?;
                }
                (Some(x), Some(y)) if x.id < y.id => {
                    out.removed.push(ArtifactInfo::from(&x));
                    ea = step(fa, &mut i, na)?;
                }
                (Some(x), None) => {
                    out.removed.push(ArtifactInfo::from(&x));
                    ea = step(fa, &mut i, na)?;
                }
                (_, Some(y)) => {
                    out.added.push(ArtifactInfo::from(&y));
                    eb = step(fb, &mut j, nb)?;
                }
            }
        }
        Ok(out)
    }

    /// Pins `id` as `name`; moves a pin that held another artifact only
    /// with `may_move` (see [`Pins::add`](super::Pins::add)).
    pub(crate) fn pin_inner(&self, name: &str, id: &ArtifactId, may_move: bool) -> Result<()> {
        validate_name(name).map_err(Error::InvalidArgument)?;
        let mut w = self.writer_to_commit()?;
        match self.state.read().pins.get(name) {
            Some(old) if old == id => return Ok(()),
            Some(old) if !may_move => {
                return Err(Error::PinExists {
                    name: name.to_string(),
                    id: *old,
                })
            }
            _ => {}
        }
        w.commit(self)?;
        let rec = self.lookup(id)?;
        let retained = match rec {
            Some(r) => r.segment != 0 && self.state.read().retains(&r)?,
            None => false,
        };
        if !retained {
            return Err(Error::NotFound(*id));
        }
        w.guard(|w| {
            let old = self.state.write().pins.insert(name.to_string(), *id);
            if let Some(old) = old.filter(|o| o != id) {
                w.release_if_unheld(self, &old)?;
            }
            w.batch.push(Record::Pinned {
                name: name.to_string(),
                id: *id,
            });
            w.commit(self)
        })
    }

    /// [`Pins::remove`](crate::Pins::remove)'s body.
    pub(crate) fn unpin(&self, name: &str) -> Result<ArtifactId> {
        let mut w = self.writer_to_commit()?;
        if !self.state.read().pins.contains_key(name) {
            return Err(Error::PinNotFound(name.to_string()));
        }
        w.guard(|w| {
            let id = self
                .state
                .write()
                .pins
                .remove(name)
                .ok_or_else(|| Error::PinNotFound(name.to_string()))?;
            w.release_if_unheld(self, &id)?;
            w.batch.push(Record::Unpinned { name: name.to_string() });
            w.commit(self)?;
            Ok(id)
        })
    }

    /// [`Pins::open`](crate::Pins::open)'s body.
    pub(crate) fn open_pinned(&self, name: &str) -> Result<ArtifactReader> {
        let id = *self
            .state
            .read()
            .pins
            .get(name)
            .ok_or_else(|| Error::PinNotFound(name.to_string()))?;
        self.read_moving(
            || match self.lookup(&id)? {
                Some(rec) if rec.segment != 0 => Ok(Some(rec)),
                _ => Err(Error::NotRetained(id)),
            },
            |e, seg| self.reader_entry(e, seg),
        )?
        .ok_or(Error::NotRetained(id))
    }

    /// [`Pins::list`](crate::Pins::list)'s body.
    pub(crate) fn pin_list(&self) -> Vec<(String, ArtifactId)> {
        self.state.read().pins.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// [`Snapshots::prune`](crate::Snapshots::prune)'s body.
    pub(crate) fn prune_snapshots(&self, policy: &Retention, dry_run: bool) -> Result<Vec<SnapshotMeta>> {
        if policy.is_empty() {
            return Err(Error::InvalidArgument(
                "a retention policy needs at least one keep rule (keep-last, keep-within or keep-name)".into(),
            ));
        }
        let doomed = doomed_by(&self.snapshot_list(), policy, now_secs());
        if !dry_run {
            for m in &doomed {
                self.delete_snapshot(&m.name)?;
            }
        }
        Ok(doomed)
    }
}

impl Writer {
    /// After a root went away: if `id`'s newest record is a tombstone nothing
    /// holds any more, its bytes stop counting as live.
    fn release_if_unheld(&mut self, s: &Store, id: &ArtifactId) -> Result<()> {
        let st = s.state.read();
        if let Some(rec) = st.newest(id)? {
            if rec.is_tombstone() && rec.segment != 0 && !st.held(&rec, None)? {
                drop(st);
                self.add_usage(rec.segment, -(rec.usage() as i64), 0);
                // Its chunks may now be named by nothing retained.
                self.sweep_due |= rec.is_manifest();
            }
        }
        Ok(())
    }
}

/// The snapshots `policy` does not keep, oldest first.
fn doomed_by(all: &[SnapshotMeta], policy: &Retention, now: u64) -> Vec<SnapshotMeta> {
    let mut by_age: Vec<&SnapshotMeta> = all.iter().collect();
    by_age.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
    let mut keep: BTreeMap<&str, ()> = BTreeMap::new();
    if let Some(n) = policy.keep_last {
        for m in by_age.iter().take(n) {
            keep.insert(&m.name, ());
        }
    }
    if let Some(d) = policy.keep_within {
        let cutoff = now.saturating_sub(d.as_secs());
        for m in &by_age {
            if m.created >= cutoff {
                keep.insert(&m.name, ());
            }
        }
    }
    for n in &policy.keep_names {
        keep.insert(n, ());
    }
    let mut out: Vec<SnapshotMeta> = by_age
        .into_iter()
        .filter(|m| !keep.contains_key(m.name.as_str()))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// A read-only view of a snapshot (see [`Store::at`](crate::Store::at)): the read API of the
/// store, answering as of the moment the snapshot was taken.
pub struct SnapshotView<'a> {
    store: &'a Store,
    handle: Arc<SnapshotHandle>,
}

impl SnapshotView<'_> {
    /// The snapshot's catalog entry.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.handle.meta
    }

    fn member(&self, id: &ArtifactId) -> Result<Entry> {
        self.handle.file()?.get(id)?.ok_or(Error::NotFound(*id))
    }

    /// Where the snapshot's copy of `id` is now (GC may have moved it).
    fn located(&self, id: &ArtifactId) -> Result<Entry> {
        self.member(id)?;
        match self.store.lookup(id)? {
            Some(rec) if rec.segment != 0 => Ok(rec),
            _ => Err(Error::NotRetained(*id)),
        }
    }

    /// Whether the snapshot holds `id`.
    pub fn contains(&self, id: &ArtifactId) -> Result<bool> {
        Ok(self.handle.file()?.get(id)?.is_some())
    }

    /// What the snapshot's index says of `id` (length, domain,
    /// visibility); `None` when the snapshot does not hold it.
    pub fn info(&self, id: &ArtifactId) -> Result<Option<ArtifactInfo>> {
        Ok(self.handle.file()?.get(id)?.map(|e| ArtifactInfo::from(&e)))
    }

    /// Size of an artifact in the snapshot.
    pub fn len_of(&self, id: &ArtifactId) -> Result<u64> {
        Ok(self.member(id)?.len)
    }

    /// Reads a whole artifact of the snapshot, verified against its id.
    pub fn get(&self, id: &ArtifactId) -> Result<Vec<u8>> {
        self.store
            .read_moving(|| self.located(id).map(Some), |e, seg| self.store.read_entry(e, seg))?
            .ok_or(Error::NotRetained(*id))
    }

    /// A streaming, verified reader over an artifact of the snapshot.
    pub fn open_reader(&self, id: &ArtifactId) -> Result<ArtifactReader> {
        self.store
            .read_moving(|| self.located(id).map(Some), |e, seg| self.store.reader_entry(e, seg))?
            .ok_or(Error::NotRetained(*id))
    }

    /// Reads a range of an artifact of the snapshot, proven against its id
    /// (see [`Store::read_range`](crate::Store::read_range)).
    pub fn read_range(&self, id: &ArtifactId, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.open_reader(id)?.into_range(offset, len)?.read_all()
    }

    /// Resolves a full id or a unique prefix among the snapshot's artifacts.
    pub fn resolve(&self, text: &str) -> Result<ArtifactId> {
        let prefix = IdPrefix::parse(text)?;
        if let Some(id) = prefix.full() {
            return Ok(id);
        }
        let file = self.handle.file()?;
        let m = file.prefix_matches(&prefix, 2)?;
        match m.len() {
            0 => Err(Error::PrefixNotFound(prefix.as_str().to_string())),
            1 => Ok(m[0].id),
            _ => {
                let all = file.prefix_matches(&prefix, usize::MAX)?;
                Err(Error::AmbiguousPrefix {
                    prefix: prefix.as_str().to_string(),
                    count: all.len(),
                    candidates: all.iter().take(crate::error::AMBIGUOUS_SHOWN).map(|e| e.id).collect(),
                })
            }
        }
    }

    /// The snapshot's artifacts in id order.
    pub fn iter(&self) -> Result<Iter> {
        Ok(Iter::over(Merged::new(
            Vec::new(),
            std::slice::from_ref(self.handle.file()?),
            None,
        )?))
    }

    /// All of the snapshot's artifacts, collected.
    pub fn list(&self) -> Result<Vec<ArtifactInfo>> {
        self.iter()?.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::CurrentId;

    fn meta(name: &str, created: u64) -> SnapshotMeta {
        SnapshotMeta {
            name: name.into(),
            identity: CurrentId([0; 32]),
            created,
            artifacts: 0,
            bytes: 0,
        }
    }

    #[test]
    fn retention_rules_combine() {
        let all: Vec<SnapshotMeta> = (0..6).map(|i| meta(&format!("s{i}"), 1000 + i * 100)).collect();
        let names = |v: Vec<SnapshotMeta>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        let p = Retention {
            keep_last: Some(2),
            ..Default::default()
        };
        assert_eq!(names(doomed_by(&all, &p, 2000)), ["s0", "s1", "s2", "s3"]);
        let p = Retention {
            keep_last: Some(1),
            keep_within: Some(Duration::from_secs(250)),
            keep_names: vec!["s0".into()],
        };
        // now=1600: within 250 s keeps created >= 1350: s4 (1400), s5 (1500).
        assert_eq!(names(doomed_by(&all, &p, 1600)), ["s1", "s2", "s3"]);
    }
}
