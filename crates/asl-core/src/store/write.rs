//! The write path: packing small artifacts, removals, group commit and
//! sealing (large artifacts stream through `large.rs`).
//!
//! Order of durability (spec/format.md, "Write order"): block bytes are fsynced
//! before the log batch that points at them, the log batch before anything that
//! names it (a checkpoint), and new files are made durable with a directory fsync.

use parking_lot::MutexGuard;
use std::sync::Arc;

use super::handles::Sealed;
use super::packing::packed_entry;
use crate::block::format::PackedEntry;
use crate::block::segment::{ActiveSegment, Segment};
use crate::block::writer::{pack, BlockImage, PackedLocation, Packing};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::id::ArtifactId;
use crate::index::entry::{Entry, Placement};
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::log::Record;

use super::options::PutOptions;
use super::put::{hash_parallel, sha256_of, Put, Source};
use super::{Store, Writer};

impl Store {
    /// Stores `bytes` and returns their id. Storing bytes that are already live is
    /// free (deduplicated). Durable after the next [`Store::commit`](crate::Store::commit).
    pub fn put(&self, bytes: &[u8]) -> Result<ArtifactId> {
        self.put_with(bytes, &PutOptions::default()).map(|p| p.id)
    }

    /// [`Store::put`](crate::Store::put) with options (domain, visibility, source); says whether
    /// anything was written.
    pub fn put_with(&self, bytes: &[u8], opts: &PutOptions) -> Result<Put> {
        let mut put = self.put_bytes(bytes, opts)?;
        if opts.sha256 {
            put.sha256 = Some(sha256_of(bytes));
        }
        Ok(put)
    }

    fn put_bytes(&self, bytes: &[u8], opts: &PutOptions) -> Result<Put> {
        if bytes.len() > self.opts.small_threshold {
            let id = hash_parallel(bytes);
            return self.put_large(Source::Slice { bytes, id }, Some(id), "input", opts.placement);
        }
        let id = ArtifactId::of(bytes);
        let mut w = self.writer_state()?;
        w.put_small(self, id, bytes, opts.placement, false)
    }

    /// Stores many artifacts at once: small ones are hashed in parallel on all
    /// cores and packed under one acquisition of the writer; large ones are
    /// streamed one by one. Returns the ids in input order. Durable after the
    /// next [`Store::commit`](crate::Store::commit).
    pub fn put_batch<B: AsRef<[u8]> + Sync>(&self, items: &[B]) -> Result<Vec<ArtifactId>> {
        Ok(self
            .put_batch_with(items, &PutOptions::default())?
            .into_iter()
            .map(|p| p.id)
            .collect())
    }

    /// [`Store::put_batch`](crate::Store::put_batch) with options applied to
    /// every item; a [`Put`] per item says what was written.
    pub fn put_batch_with<B: AsRef<[u8]> + Sync>(&self, items: &[B], opts: &PutOptions) -> Result<Vec<Put>> {
        use rayon::prelude::*;
        let thr = self.opts.small_threshold;
        let ids: Vec<Option<ArtifactId>> = items
            .par_iter()
            .with_min_len(64)
            .map(|b| (b.as_ref().len() <= thr).then(|| ArtifactId::of(b.as_ref())))
            .collect();
        let shas: Vec<Option<[u8; 32]>> = if opts.sha256 {
            items
                .par_iter()
                .with_min_len(64)
                .map(|b| Some(sha256_of(b.as_ref())))
                .collect()
        } else {
            vec![None; items.len()]
        };
        let mut out = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            if ids[i].is_none() {
                out.push(self.put_with(items[i].as_ref(), opts)?);
                i += 1;
                continue;
            }
            let mut w = self.writer_state()?;
            while let Some(Some(id)) = ids.get(i) {
                let mut put = w.put_small(self, *id, items[i].as_ref(), opts.placement, true)?;
                put.sha256 = shas[i];
                out.push(put);
                i += 1;
            }
            w.guard(|w| w.append_ready(self))?;
        }
        Ok(out)
    }

    /// Removes `id` from CURRENT (a tombstone). Returns false when it was not live.
    pub fn remove(&self, id: &ArtifactId) -> Result<bool> {
        let mut w = self.writer_state()?;
        if !self.is_live_locked(&w, id)? {
            return Ok(false);
        }
        w.guard(|w| {
            // A tombstone must land in the segment after the block holding any
            // earlier put of the same id, so repair replays them in order.
            w.flush_packed(self)?;
            let Some(prev) = self.state.read().newest(id)?.filter(|e| !e.is_tombstone()) else {
                return Ok(());
            };
            // The tombstone keeps the location: a snapshot or pin may still need
            // the bytes, and reads at a snapshot find them through this record.
            let t = prev.removed();
            if !self.state.read().held(&t, None)? {
                w.add_usage(prev.segment, -(prev.usage() as i64), 0);
                w.sweep_due |= prev.is_manifest();
            }
            w.tombstones.push((*id, prev.domain.0));
            self.state.write().memtable.insert(*id, t);
            w.watched(*id);
            w.batch.push(Record::Entry(t));
            Ok(())
        })?;
        Ok(true)
    }

    /// Makes every write so far durable: one fsync of the segment, one of the log.
    pub fn commit(&self) -> Result<()> {
        let mut w = self.writer_to_commit()?;
        w.commit(self)
    }

    /// Alias of [`Store::commit`](crate::Store::commit), for code that thinks in files.
    pub fn sync(&self) -> Result<()> {
        self.commit()
    }

    /// [`Maintenance::seal`](crate::Maintenance::seal)'s body.
    pub(crate) fn seal(&self) -> Result<Option<Sealed>> {
        if self.layout.io.mirrors_catalog() {
            let (mut w, sealed) = self.sealed()?;
            w.checkpoint(self)?;
            return Ok(sealed);
        }
        self.sealed().map(|(_, sealed)| sealed)
    }

    /// Seals, and returns the writer still held, so nothing is written
    /// between the seal and what the caller does next.
    fn sealed(&self) -> Result<(MutexGuard<'_, Writer>, Option<Sealed>)> {
        let mut w = self.writer_to_commit()?;
        while w.streams > 0 {
            self.streams_done.wait(&mut w);
        }
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        w.commit(self)?;
        let sealed = w.guard(|w| w.seal_active(self))?;
        w.commit(self)?;
        Ok((w, sealed))
    }

    /// [`Maintenance::publish`](crate::Maintenance::publish)'s body: seal
    /// and checkpoint with no write between them.
    pub(crate) fn publish(&self) -> Result<()> {
        let (mut w, _) = self.sealed()?;
        w.checkpoint(self)
    }

    pub(crate) fn is_live_locked(&self, _w: &Writer, id: &ArtifactId) -> Result<bool> {
        if self.pending.read().contains(id) {
            return Ok(true);
        }
        Ok(self.lookup(id)?.is_some_and(|e| !e.is_tombstone()))
    }
}

impl Writer {
    /// Runs a step that may leave the writer half-way on failure; marks it
    /// unusable then, since only reopening restores a known state.
    pub(crate) fn guard<T>(&mut self, f: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        let r = f(self);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// With `batch`, a full block is set aside for compression in parallel
    /// with others instead of being compressed and written at once.
    fn put_small(&mut self, s: &Store, id: ArtifactId, bytes: &[u8], placement: Placement, batch: bool) -> Result<Put> {
        let len = bytes.len() as u64;
        if let Some(p) = s.pending.read().placement(&id) {
            return Ok(Put {
                id,
                len,
                new: false,
                placement: p,
                sha256: None,
            });
        }
        let prev = s.state.read().newest(&id)?;
        if let Some(e) = prev.filter(|e| !e.is_tombstone()) {
            return Ok(Put {
                id,
                len,
                new: false,
                placement: e.placement(),
                sha256: None,
            });
        }
        self.release_revived(s, prev)?;
        let full = {
            let mut p = s.pending.write();
            p.push(id, bytes, placement);
            p.open_len() >= s.opts.block_target
        };
        if full {
            if batch {
                let waiting = {
                    let mut p = s.pending.write();
                    p.set_open_aside();
                    p.ready().len()
                };
                if waiting >= 2 * rayon::current_num_threads() {
                    self.guard(|w| w.append_ready(s))?;
                }
            } else {
                self.guard(|w| w.flush_pending(s))?;
            }
        }
        Ok(Put {
            id,
            len,
            new: true,
            placement,
            sha256: None,
        })
    }

    /// Compresses the set-aside blocks on all cores, then appends them in
    /// order. They stay readable from the pending buffer until their records
    /// are in the memtable. The first block goes alone when the open segment
    /// has no dictionary yet, so that the rest are framed with the one it
    /// may train.
    fn append_ready(&mut self, s: &Store) -> Result<()> {
        let pending = s.pending.read();
        let Some(first) = pending.ready().first() else {
            return Ok(());
        };
        self.flush_tombstones(s)?;
        self.ensure_active(s)?;
        let mut rest = pending.ready();
        if self.active_dictionary().is_none() {
            let (seg, loc) = self.write_packed_block(s, &first.raw, &first.entries, None)?;
            self.record_packed(s, seg, &loc, &first.entries, &first.placements);
            rest = &rest[1..];
        }
        let level = s.opts.compression;
        let dict = self.active_dictionary();
        let packings: Vec<Packing<'_>> =
            crate::par::map(rest, 1, |_, b| pack(&b.raw, &b.entries, level, dict.as_ref()));
        for (b, p) in rest.iter().zip(packings) {
            let (seg, loc) = self.write_packed_block(s, &b.raw, &b.entries, Some(p))?;
            self.record_packed(s, seg, &loc, &b.entries, &b.placements);
        }
        drop(pending);
        s.pending.write().clear_ready();
        Ok(())
    }

    /// A put of an id whose newest record is a tombstone still holding bytes for
    /// a snapshot or pin: the new copy becomes the one everyone reads, so the old
    /// bytes stop counting as live (GC may reclaim them once moved past).
    pub(super) fn release_revived(&mut self, s: &Store, prev: Option<Entry>) -> Result<()> {
        if let Some(p) = prev.filter(|p| p.is_tombstone() && p.segment != 0) {
            if s.state.read().held(&p, None)? {
                self.add_usage(p.segment, -(p.usage() as i64), 0);
            }
        }
        Ok(())
    }

    pub(crate) fn commit(&mut self, s: &Store) -> Result<()> {
        super::atomic::may_commit(self)?;
        self.guard(|w| {
            w.flush_pending(s)?;
            if w.batch.is_empty() {
                return Ok(());
            }
            if let Some(a) = &w.active {
                a.sync()?;
            }
            if w.dir_dirty {
                sync_dir(&*s.layout.io, &s.layout.segment_dir())?;
                w.dir_dirty = false;
            }
            for id in std::mem::take(&mut w.usage_dirty) {
                if let Some(st) = w.seg_states.get(&id) {
                    w.batch.push(Record::SegmentUsage {
                        id,
                        live: st.live,
                        total: st.total,
                    });
                }
            }
            let (segment, len) = w.active.as_ref().map(|a| (a.id, a.len)).unwrap_or((0, 0));
            w.batch.push(Record::Commit { segment, len });
            let batch = std::mem::take(&mut w.batch);
            w.log.append(&batch)?;
            for r in &batch {
                if let Record::SegmentSealed { id, .. } = r {
                    // Committed sealed: a tiered backend may move it now.
                    s.layout.io.offload(&s.layout.segment(*id));
                }
            }
            if let Some(st) = w.seg_states.get_mut(&segment) {
                st.len = len;
            }
            let catalog = batch.iter().any(|r| {
                matches!(
                    r,
                    Record::SnapshotCreated(_)
                        | Record::SnapshotDeleted { .. }
                        | Record::Pinned { .. }
                        | Record::Unpinned { .. }
                )
            });
            w.catalog_dirty |= catalog;
            if s.state.read().memtable.len() >= s.opts.memtable_limit {
                // The commit is durable at this point whatever happens to the
                // checkpoint: a failed one leaves the writer poisoned (the next
                // write says so; reopening recovers from the previous
                // checkpoint and this log), but does not unsay the commit.
                let _ = w.checkpoint(s);
            }
            Ok(())
        })
    }

    pub(crate) fn ensure_active(&mut self, s: &Store) -> Result<()> {
        // A large artifact being streamed keeps the segment open: its chunks
        // and its trailer must share one segment.
        if self.streams == 0 && self.active.as_ref().is_some_and(|a| a.len >= s.opts.segment_target) {
            self.seal_active(s)?;
        }
        if self.active.is_none() {
            let id = self.next_segment;
            let path = s.layout.segment(id);
            let mut a = ActiveSegment::create(&*s.layout.io, &path, id, s.store_id)?;
            self.next_segment += 1;
            self.batch.push(Record::SegmentCreated { id });
            self.seg_states.insert(id, SegmentState::new(id, a.len, false));
            self.dir_dirty = true;
            let reader = a.reader(&*s.layout.io, s.opts.active_map_reserve())?;
            s.state.write().segments.insert(id, Arc::new(reader));
            self.active = Some(a);
        }
        Ok(())
    }

    pub(crate) fn seal_active(&mut self, s: &Store) -> Result<Option<Sealed>> {
        let Some(a) = self.active.take() else {
            return Ok(None);
        };
        let path = a.path.clone();
        let (id, len) = a.seal()?;
        self.batch.push(Record::SegmentSealed { id, len });
        let st = self.seg_states.entry(id).or_insert(SegmentState::new(id, len, true));
        st.len = len;
        st.sealed = true;
        let seg = Segment::open_sealed(&*s.layout.io, &path, id, s.store_id)?;
        s.state.write().segments.insert(id, Arc::new(seg));
        Ok(Some(Sealed { segment: id, len }))
    }

    /// Writes buffered tombstones, then the buffered packed block.
    pub(crate) fn flush_pending(&mut self, s: &Store) -> Result<()> {
        self.flush_packed(s)?;
        self.flush_tombstones(s)
    }

    pub(crate) fn flush_tombstones(&mut self, s: &Store) -> Result<()> {
        if self.tombstones.is_empty() {
            return Ok(());
        }
        self.ensure_active(s)?;
        let img = BlockImage::tombstones(&self.tombstones);
        self.active.as_mut().ok_or(Error::Poisoned)?.write(&img)?;
        self.tombstones.clear();
        Ok(())
    }

    fn flush_packed(&mut self, s: &Store) -> Result<()> {
        // Tombstones buffered earlier are older than every put in the packed
        // buffer (removal flushes the buffer first), so they go to disk first.
        self.flush_tombstones(s)?;
        let (raw, entries, placements) = {
            let p = s.pending.read();
            if p.open_is_empty() {
                return Ok(());
            }
            p.build_open()
        };
        let (seg, loc) = self.write_packed_block(s, &raw, &entries, None)?;
        self.record_packed(s, seg, &loc, &entries, &placements);
        s.pending.write().clear_open();
        Ok(())
    }

    /// Records the artifacts of a packed block just written.
    fn record_packed(
        &mut self,
        s: &Store,
        seg: u32,
        loc: &PackedLocation,
        entries: &[PackedEntry],
        placements: &[Placement],
    ) {
        let records: Vec<Entry> = entries
            .iter()
            .zip(placements)
            .enumerate()
            .map(|(i, (pe, pl))| packed_entry(loc, seg, i, pe).placed(pl))
            .collect();
        self.record_new(s, &records);
    }

    /// The one place new index records are taken in: memtable, log batch and
    /// the usage counters of the segment they point into.
    pub(crate) fn record_new(&mut self, s: &Store, records: &[Entry]) {
        for e in records {
            self.watched(e.id);
        }
        self.record_unwatched(s, records);
    }

    /// `record_new` for GC's own copies, which a running GC need
    /// not look up again (see `store::gc::lookup`).
    pub(crate) fn record_unwatched(&mut self, s: &Store, records: &[Entry]) {
        {
            let mut st = s.state.write();
            for e in records {
                st.memtable.insert(e.id, *e);
            }
        }
        for e in records {
            self.batch.push(Record::Entry(*e));
            self.add_usage(e.segment, e.usage() as i64, e.usage());
        }
        s.note_lengths(records);
    }

    /// Adjusts a segment's usage counters (logged at the next commit).
    pub(crate) fn add_usage(&mut self, seg: u32, live: i64, total: u64) {
        if let Some(st) = self.seg_states.get_mut(&seg) {
            st.live = st.live.saturating_add_signed(live);
            st.total += total;
            self.usage_dirty.insert(seg);
        }
    }
}
