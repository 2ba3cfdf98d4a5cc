//! The write path: packing small artifacts, removals, group commit and
//! sealing (large artifacts stream through `large.rs`).
//!
//! Order of durability (spec/format.md, "Write order"): block bytes are fsynced
//! before the log batch that points at them, the log batch before anything that
//! names it (a checkpoint), and new files are made durable with a directory fsync.

use std::sync::Arc;

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
        let mut w = self.writer()?;
        self.put_small_locked(&mut w, id, bytes, opts.placement, false)
    }

    /// With `batch`, a full block is set aside for compression in parallel
    /// with others instead of being compressed and written at once.
    fn put_small_locked(
        &self,
        w: &mut Writer,
        id: ArtifactId,
        bytes: &[u8],
        placement: Placement,
        batch: bool,
    ) -> Result<Put> {
        let len = bytes.len() as u64;
        if let Some(p) = self.pending.read().placement(&id) {
            return Ok(Put {
                id,
                len,
                new: false,
                placement: p,
                sha256: None,
            });
        }
        let prev = self.state.read().newest(&id)?;
        if let Some(e) = prev.filter(|e| !e.is_tombstone()) {
            return Ok(Put {
                id,
                len,
                new: false,
                placement: e.placement(),
                sha256: None,
            });
        }
        self.release_revived(w, prev)?;
        let full = {
            let mut p = self.pending.write();
            p.push(id, bytes, placement);
            p.open_len() >= self.opts.block_target
        };
        if full {
            if batch {
                let waiting = {
                    let mut p = self.pending.write();
                    p.set_open_aside();
                    p.ready().len()
                };
                if waiting >= 2 * rayon::current_num_threads() {
                    self.guard(w, |s, w| s.append_ready(w))?;
                }
            } else {
                self.guard(w, |s, w| s.flush_pending(w))?;
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
    fn append_ready(&self, w: &mut Writer) -> Result<()> {
        let pending = self.pending.read();
        let Some(first) = pending.ready().first() else {
            return Ok(());
        };
        self.flush_tombstones(w)?;
        self.ensure_active(w)?;
        let mut rest = pending.ready();
        if self.active_dictionary(w).is_none() {
            let (seg, loc) = self.write_packed_block(w, &first.raw, &first.entries, None)?;
            self.record_packed(w, seg, &loc, &first.entries, &first.placements);
            rest = &rest[1..];
        }
        let level = self.opts.compression;
        let dict = self.active_dictionary(w);
        let packings: Vec<Packing<'_>> =
            crate::par::map(rest, 1, |_, b| pack(&b.raw, &b.entries, level, dict.as_ref()));
        for (b, p) in rest.iter().zip(packings) {
            let (seg, loc) = self.write_packed_block(w, &b.raw, &b.entries, Some(p))?;
            self.record_packed(w, seg, &loc, &b.entries, &b.placements);
        }
        drop(pending);
        self.pending.write().clear_ready();
        Ok(())
    }

    /// Stores many artifacts at once: small ones are hashed in parallel on all
    /// cores and packed under one acquisition of the writer; large ones are
    /// streamed one by one. Returns the ids in input order. Durable after the
    /// next [`Store::commit`](crate::Store::commit).
    pub fn put_batch<B: AsRef<[u8]> + Sync>(&self, items: &[B]) -> Result<Vec<Put>> {
        self.put_batch_with(items, &PutOptions::default())
    }

    /// [`Store::put_batch`](crate::Store::put_batch) with options applied to every item.
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
            let mut w = self.writer()?;
            while let Some(Some(id)) = ids.get(i) {
                let mut put = self.put_small_locked(&mut w, *id, items[i].as_ref(), opts.placement, true)?;
                put.sha256 = shas[i];
                out.push(put);
                i += 1;
            }
            self.guard(&mut w, |s, w| s.append_ready(w))?;
        }
        Ok(out)
    }

    /// A put of an id whose newest record is a tombstone still holding bytes for
    /// a snapshot or pin: the new copy becomes the one everyone reads, so the old
    /// bytes stop counting as live (GC may reclaim them once moved past).
    pub(super) fn release_revived(&self, w: &mut Writer, prev: Option<Entry>) -> Result<()> {
        if let Some(p) = prev.filter(|p| p.is_tombstone() && p.segment != 0) {
            if self.state.read().held(&p, None)? {
                w.add_usage(p.segment, -(p.usage() as i64), 0);
            }
        }
        Ok(())
    }

    /// Removes `id` from CURRENT (a tombstone). Returns false when it was not live.
    pub fn remove(&self, id: &ArtifactId) -> Result<bool> {
        let mut w = self.writer()?;
        if !self.is_live_locked(&w, id)? {
            return Ok(false);
        }
        self.guard(&mut w, |s, w| {
            // A tombstone must land in the segment after the block holding any
            // earlier put of the same id, so repair replays them in order.
            s.flush_packed(w)?;
            let Some(prev) = s.state.read().newest(id)?.filter(|e| !e.is_tombstone()) else {
                return Ok(());
            };
            // The tombstone keeps the location: a snapshot or pin may still need
            // the bytes, and reads at a snapshot find them through this record.
            let t = prev.removed();
            if !s.state.read().held(&t, None)? {
                w.add_usage(prev.segment, -(prev.usage() as i64), 0);
                w.sweep_due |= prev.is_manifest();
            }
            w.tombstones.push((*id, prev.domain.0));
            s.state.write().memtable.insert(*id, t);
            w.watched(*id);
            w.batch.push(Record::Entry(t));
            Ok(())
        })?;
        Ok(true)
    }

    /// Makes every write so far durable: one fsync of the segment, one of the log.
    pub fn commit(&self) -> Result<()> {
        let mut w = self.writer_to_commit()?;
        self.commit_locked(&mut w)
    }

    /// Alias of [`Store::commit`](crate::Store::commit), for code that thinks in files.
    pub fn sync(&self) -> Result<()> {
        self.commit()
    }

    pub(crate) fn commit_locked(&self, w: &mut Writer) -> Result<()> {
        super::atomic::may_commit(w)?;
        self.guard(w, |s, w| {
            s.flush_pending(w)?;
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
                let _ = s.checkpoint_locked(w);
            }
            Ok(())
        })
    }

    /// [`Maintenance::seal`](crate::Maintenance::seal)'s body.
    pub(crate) fn seal(&self) -> Result<()> {
        let mut w = self.writer_to_commit()?;
        while w.streams > 0 {
            self.streams_done.wait(&mut w);
        }
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        self.commit_locked(&mut w)?;
        self.guard(&mut w, |s, w| {
            if w.active.is_some() {
                s.seal_active(w)?;
            }
            Ok(())
        })?;
        self.commit_locked(&mut w)
    }

    /// Runs a step that may leave the writer half-way on failure; marks it
    /// unusable then, since only reopening restores a known state.
    pub(crate) fn guard<T>(&self, w: &mut Writer, f: impl FnOnce(&Self, &mut Writer) -> Result<T>) -> Result<T> {
        let r = f(self, w);
        if r.is_err() {
            w.poisoned = true;
        }
        r
    }

    pub(crate) fn ensure_active(&self, w: &mut Writer) -> Result<()> {
        // A large artifact being streamed keeps the segment open: its chunks
        // and its trailer must share one segment.
        if w.streams == 0 && w.active.as_ref().is_some_and(|a| a.len >= self.opts.segment_target) {
            self.seal_active(w)?;
        }
        if w.active.is_none() {
            let id = w.next_segment;
            let path = self.layout.segment(id);
            let mut a = ActiveSegment::create(&*self.layout.io, &path, id, self.store_id)?;
            w.next_segment += 1;
            w.batch.push(Record::SegmentCreated { id });
            w.seg_states.insert(id, SegmentState::new(id, a.len, false));
            w.dir_dirty = true;
            let reader = a.reader(&*self.layout.io, self.opts.active_map_reserve())?;
            self.state.write().segments.insert(id, Arc::new(reader));
            w.active = Some(a);
        }
        Ok(())
    }

    pub(crate) fn seal_active(&self, w: &mut Writer) -> Result<()> {
        let Some(a) = w.active.take() else {
            return Ok(());
        };
        let path = a.path.clone();
        let (id, len) = a.seal()?;
        w.batch.push(Record::SegmentSealed { id, len });
        let st = w.seg_states.entry(id).or_insert(SegmentState::new(id, len, true));
        st.len = len;
        st.sealed = true;
        let seg = Segment::open_sealed(&*self.layout.io, &path, id, self.store_id)?;
        self.state.write().segments.insert(id, Arc::new(seg));
        Ok(())
    }

    /// Writes buffered tombstones, then the buffered packed block.
    pub(crate) fn flush_pending(&self, w: &mut Writer) -> Result<()> {
        self.flush_packed(w)?;
        self.flush_tombstones(w)
    }

    pub(crate) fn flush_tombstones(&self, w: &mut Writer) -> Result<()> {
        if w.tombstones.is_empty() {
            return Ok(());
        }
        self.ensure_active(w)?;
        let img = BlockImage::tombstones(&w.tombstones);
        w.active.as_mut().ok_or(Error::Poisoned)?.write(&img)?;
        w.tombstones.clear();
        Ok(())
    }

    fn flush_packed(&self, w: &mut Writer) -> Result<()> {
        // Tombstones buffered earlier are older than every put in the packed
        // buffer (removal flushes the buffer first), so they go to disk first.
        self.flush_tombstones(w)?;
        let (raw, entries, placements) = {
            let p = self.pending.read();
            if p.open_is_empty() {
                return Ok(());
            }
            p.build_open()
        };
        let (seg, loc) = self.write_packed_block(w, &raw, &entries, None)?;
        self.record_packed(w, seg, &loc, &entries, &placements);
        self.pending.write().clear_open();
        Ok(())
    }

    /// Records the artifacts of a packed block just written.
    fn record_packed(
        &self,
        w: &mut Writer,
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
        self.record_new(w, &records);
    }

    /// The one place new index records are taken in: memtable, log batch and
    /// the usage counters of the segment they point into.
    pub(crate) fn record_new(&self, w: &mut Writer, records: &[Entry]) {
        for e in records {
            w.watched(e.id);
        }
        self.record_unwatched(w, records);
    }

    /// [`Store::record_new`](crate::Store::record_new) for GC's own copies, which a running GC need
    /// not look up again (see `store::gc::lookup`).
    pub(crate) fn record_unwatched(&self, w: &mut Writer, records: &[Entry]) {
        {
            let mut st = self.state.write();
            for e in records {
                st.memtable.insert(e.id, *e);
            }
        }
        for e in records {
            w.batch.push(Record::Entry(*e));
            w.add_usage(e.segment, e.usage() as i64, e.usage());
        }
        self.note_lengths(records);
    }

    pub(crate) fn is_live_locked(&self, _w: &Writer, id: &ArtifactId) -> Result<bool> {
        if self.pending.read().contains(id) {
            return Ok(true);
        }
        Ok(self.lookup(id)?.is_some_and(|e| !e.is_tombstone()))
    }
}

impl Writer {
    /// Adjusts a segment's usage counters (logged at the next commit).
    pub(crate) fn add_usage(&mut self, seg: u32, live: i64, total: u64) {
        if let Some(st) = self.seg_states.get_mut(&seg) {
            st.live = st.live.saturating_add_signed(live);
            st.total += total;
            self.usage_dirty.insert(seg);
        }
    }
}
