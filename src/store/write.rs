//! The write path: packing small artifacts, removals, group commit and
//! sealing (large artifacts stream through `large.rs`).
//!
//! Order of durability (spec/format.md, "Write order"): block bytes are fsynced
//! before the log batch that points at them, the log batch before anything that
//! names it (a checkpoint), and new files are made durable with a directory fsync.

use std::sync::Arc;

use crate::block::format::{encode_tombstones, header_for, maybe_compress, BlockKind, Compression, PackedEntry};
use crate::block::segment::{ActiveSegment, Segment};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::id::ArtifactId;
use crate::index::entry::{DomainId, Entry, Visibility, FLAG_COMPRESSED, FLAG_TOMBSTONE, NO_SOURCE};
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::log::Record;

use super::large::{hash_parallel, Source};
use super::{Store, Writer};

/// The outcome of storing one artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Put {
    /// Its id.
    pub id: ArtifactId,
    /// Its length.
    pub len: u64,
    /// False when the bytes were already live (deduplicated, nothing written).
    pub new: bool,
}

impl Store {
    /// Stores `bytes` and returns their id. Storing bytes that are already live is
    /// free (deduplicated). Durable after the next [`Store::commit`].
    pub fn put(&self, bytes: &[u8]) -> Result<ArtifactId> {
        self.put_status(bytes).map(|p| p.id)
    }

    pub(super) fn put_status(&self, bytes: &[u8]) -> Result<Put> {
        if bytes.len() > self.opts.small_threshold {
            let id = hash_parallel(bytes);
            return self.put_large(Source::Slice { bytes, id }, Some(id), "input");
        }
        let id = ArtifactId::of(bytes);
        let mut w = self.writer()?;
        self.put_small_locked(&mut w, id, bytes, None)
    }

    /// With `ready`, a full block is set aside for compression in parallel
    /// instead of being compressed and written at once (see `put_batch`).
    fn put_small_locked(&self, w: &mut Writer, id: ArtifactId, bytes: &[u8], ready: Option<&mut Ready>) -> Result<Put> {
        let len = bytes.len() as u64;
        if w.packed_ids.contains_key(&id) || ready.as_ref().is_some_and(|r| r.ids.contains(&id)) {
            return Ok(Put { id, len, new: false });
        }
        let prev = self.state.read().newest(&id)?;
        if prev.is_some_and(|e| !e.is_tombstone()) {
            return Ok(Put { id, len, new: false });
        }
        self.release_revived(w, prev)?;
        let idx = w.packed.push(id, bytes);
        w.packed_ids.insert(id, idx);
        if w.packed.raw_len() >= self.opts.block_target {
            match ready {
                Some(r) => {
                    let (raw, entries) = w.packed.finish();
                    r.ids.extend(entries.iter().map(|e| e.id));
                    r.blocks.push((raw, entries));
                    w.packed_ids.clear();
                    if r.blocks.len() >= 2 * rayon::current_num_threads() {
                        self.guard(w, |s, w| s.append_ready(w, r))?;
                    }
                }
                None => self.guard(w, |s, w| s.flush_pending(w))?,
            }
        }
        Ok(Put { id, len, new: true })
    }

    /// Compresses the set-aside blocks on all cores, then appends them in order.
    fn append_ready(&self, w: &mut Writer, r: &mut Ready) -> Result<()> {
        use rayon::prelude::*;
        if r.blocks.is_empty() {
            return Ok(());
        }
        let level = self.opts.compression;
        let stored: Vec<(Vec<u8>, Compression)> = r
            .blocks
            .par_iter()
            .map(|(raw, _)| {
                let (s, c) = maybe_compress(raw, level);
                (s.into_owned(), c)
            })
            .collect();
        self.flush_tombstones(w)?;
        for ((raw, entries), (body, comp)) in r.blocks.drain(..).zip(stored) {
            self.append_packed(w, raw.len(), entries, &body, comp)?;
        }
        r.ids.clear();
        Ok(())
    }

    /// Stores many artifacts at once: small ones are hashed in parallel on all
    /// cores and packed under one acquisition of the writer; large ones are
    /// streamed one by one. Returns the ids in input order. Durable after the
    /// next [`Store::commit`].
    pub fn put_batch<B: AsRef<[u8]> + Sync>(&self, items: &[B]) -> Result<Vec<Put>> {
        use rayon::prelude::*;
        let thr = self.opts.small_threshold;
        let ids: Vec<Option<ArtifactId>> = items
            .par_iter()
            .with_min_len(64)
            .map(|b| (b.as_ref().len() <= thr).then(|| ArtifactId::of(b.as_ref())))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            let Some(first) = ids[i] else {
                out.push(self.put_status(items[i].as_ref())?);
                i += 1;
                continue;
            };
            let mut w = self.writer()?;
            let mut ready = Ready::default();
            out.push(self.put_small_locked(&mut w, first, items[i].as_ref(), Some(&mut ready))?);
            i += 1;
            while let Some(Some(id)) = ids.get(i) {
                out.push(self.put_small_locked(&mut w, *id, items[i].as_ref(), Some(&mut ready))?);
                i += 1;
            }
            self.guard(&mut w, |s, w| s.append_ready(w, &mut ready))?;
        }
        Ok(out)
    }

    /// A put of an id whose newest record is a tombstone still holding bytes for
    /// a snapshot or pin: the new copy becomes the one everyone reads, so the old
    /// bytes stop counting as live (GC may reclaim them once moved past).
    pub(super) fn release_revived(&self, w: &mut Writer, prev: Option<Entry>) -> Result<()> {
        if let Some(p) = prev.filter(|p| p.is_tombstone() && p.segment != 0) {
            if self.state.read().held(&p, None)? {
                w.add_usage(p.segment, -(p.len as i64), 0);
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
            let t = Entry {
                flags: prev.flags | FLAG_TOMBSTONE,
                ..prev
            };
            if !s.state.read().held(&t, None)? {
                w.add_usage(prev.segment, -(prev.len as i64), 0);
            }
            w.tombstones.push((*id, prev.domain.0));
            s.state.write().memtable.insert(*id, t);
            w.batch.push(Record::Entry(t));
            Ok(())
        })?;
        Ok(true)
    }

    /// Makes every write so far durable: one fsync of the segment, one of the log.
    pub fn commit(&self) -> Result<()> {
        let mut w = self.writer()?;
        self.commit_locked(&mut w)
    }

    /// Alias of [`Store::commit`], for code that thinks in files.
    pub fn sync(&self) -> Result<()> {
        self.commit()
    }

    pub(crate) fn commit_locked(&self, w: &mut Writer) -> Result<()> {
        self.guard(w, |s, w| {
            s.flush_pending(w)?;
            if w.batch.is_empty() {
                return Ok(());
            }
            if let Some(a) = &w.active {
                a.sync()?;
            }
            if w.dir_dirty {
                sync_dir(&s.layout.segment_dir())?;
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
            if let Some(st) = w.seg_states.get_mut(&segment) {
                st.len = len;
            }
            if s.state.read().memtable.len() >= s.opts.memtable_limit {
                s.checkpoint_locked(w)?;
            }
            Ok(())
        })
    }

    /// Commits, then seals the open segment: footer written, fsynced, never
    /// written again. The next write starts a new segment.
    pub fn seal(&self) -> Result<()> {
        let mut w = self.writer()?;
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
        if w.active.as_ref().is_some_and(|a| a.len >= self.opts.segment_target) {
            self.seal_active(w)?;
        }
        if w.active.is_none() {
            let id = w.next_segment;
            let path = self.layout.segment(id);
            let a = ActiveSegment::create(&path, id, self.store_id)?;
            w.next_segment += 1;
            w.batch.push(Record::SegmentCreated { id });
            w.seg_states.insert(id, SegmentState::new(id, a.len, false));
            w.dir_dirty = true;
            self.state
                .write()
                .segments
                .insert(id, Arc::new(Segment::open_active(&path, id)?));
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
        let seg = Segment::open_sealed(&path, id, self.store_id)?;
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
        let body = encode_tombstones(&w.tombstones);
        let h = header_for(
            BlockKind::Tombstones,
            Compression::None,
            &body,
            body.len(),
            w.tombstones.len() as u32,
        );
        if let Some(a) = w.active.as_mut() {
            a.append(&h, &body)?;
        }
        w.tombstones.clear();
        Ok(())
    }

    fn flush_packed(&self, w: &mut Writer) -> Result<()> {
        // Tombstones buffered earlier are older than every put in the packed
        // buffer (removal flushes the buffer first), so they go to disk first.
        self.flush_tombstones(w)?;
        if w.packed.is_empty() {
            return Ok(());
        }
        let (raw, entries) = w.packed.finish();
        let (stored, comp) = maybe_compress(&raw, self.opts.compression);
        self.append_packed(w, raw.len(), entries, &stored, comp)?;
        w.packed_ids.clear();
        Ok(())
    }

    /// Appends one packed block and records its artifacts.
    fn append_packed(
        &self,
        w: &mut Writer,
        raw_len: usize,
        entries: Vec<PackedEntry>,
        stored: &[u8],
        comp: Compression,
    ) -> Result<()> {
        self.ensure_active(w)?;
        let h = header_for(BlockKind::Packed, comp, stored, raw_len, entries.len() as u32);
        let Some(a) = w.active.as_mut() else {
            return Err(Error::Poisoned);
        };
        let at = a.append(&h, stored)?;
        let seg = a.id;
        let flags = if comp == Compression::Zstd { FLAG_COMPRESSED } else { 0 };
        let mut st = self.state.write();
        for pe in entries {
            let e = Entry {
                id: pe.id,
                segment: seg,
                block_offset: at,
                inner: pe.offset,
                len: pe.len as u64,
                domain: DomainId::LOCAL,
                source: NO_SOURCE,
                visibility: Visibility::Internal,
                flags,
            };
            st.memtable.insert(pe.id, e);
            w.batch.push(Record::Entry(e));
            w.add_usage(seg, pe.len as i64, pe.len as u64);
        }
        Ok(())
    }

    pub(crate) fn is_live_locked(&self, w: &Writer, id: &ArtifactId) -> Result<bool> {
        if w.packed_ids.contains_key(id) {
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

/// Full packed blocks of one `put_batch` waiting to be compressed together.
#[derive(Default)]
struct Ready {
    blocks: Vec<(Vec<u8>, Vec<PackedEntry>)>,
    ids: std::collections::HashSet<ArtifactId, crate::id::IdBuildHasher>,
}
