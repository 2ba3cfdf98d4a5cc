//! Garbage collection: deleting segments nothing reachable points into, and
//! repacking segments that are mostly garbage.
//!
//! Cost follows the garbage, not the store: every segment carries usage
//! counters (live and total logical bytes) kept up to date by puts, removals,
//! snapshot deletes and unpins and logged at each commit, so picking victims
//! reads no index and no segment. Only the victims are read.
//!
//! Safety does not rest on the counters. For each victim GC lists the
//! artifacts stored in it and, under the writer lock, asks the index whether
//! each one's newest record still points there and whether anything retains it
//! (CURRENT, a snapshot, a pin, publication); those are copied to the open
//! segment with records that keep their tombstone and visibility. Then, again
//! under the writer lock, the same check runs once more, a `SegmentDropped`
//! record is committed, and only after that is the file unlinked. A put that
//! revives a dead artifact while GC runs sees a tombstone (or nothing) as the
//! newest record, so it writes fresh bytes instead of pointing at the victim;
//! the log order of these records is the barrier, no clock is involved.
//!
//! A crash before the `SegmentDropped` commit leaves the victim in place with
//! its live artifacts copied (the copies win: they are the newest records), so
//! the next GC finds it all garbage and finishes; a crash after it leaves a file
//! that opening the store deletes.

use std::mem::size_of;
use std::time::{Duration, Instant};

use crate::block::format::{BlockKind, PackedBuilder};
use crate::block::segment::{Segment, SEGMENT_HEADER_LEN};
use crate::block::writer::{BlockImage, ChunkRun};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::log::Record;

use super::large::{read_full, with_buf, Buf};
use super::{Store, Writer};

/// How [`Store::gc`] chooses its work.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Repack a segment when its live fraction (live / total logical bytes) is
    /// below this; 0.0 deletes only segments with nothing live, 1.0 repacks
    /// every segment holding any garbage.
    pub threshold: f64,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            dry_run: false,
        }
    }
}

/// What a GC run did (or, with `dry_run`, would do, from the usage counters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Segments deleted (their live artifacts, if any, copied first).
    pub segments_deleted: u64,
    /// Of those, segments that still held live artifacts.
    pub segments_repacked: u64,
    /// Bytes of segment files deleted.
    pub reclaimed_bytes: u64,
    /// Logical bytes of live artifacts copied.
    pub repacked_bytes: u64,
    /// Live artifacts copied.
    pub artifacts_copied: u64,
    /// Live logical bytes before, by the usage counters.
    pub live_before: u64,
    /// Garbage logical bytes before, by the usage counters.
    pub garbage_before: u64,
    /// Live logical bytes after.
    pub live_after: u64,
    /// Garbage logical bytes after.
    pub garbage_after: u64,
    /// Largest amount of bookkeeping memory GC held at once, in bytes (the
    /// artifact list of one victim segment plus one block being packed): an
    /// account of GC's own buffers, not a measurement.
    pub peak_memory_bytes: u64,
    /// Measured: the process's peak resident memory during the run, where
    /// the OS tells it (Linux: the high-water mark is reset when GC starts
    /// and read when it ends; it covers every thread of the process, so a
    /// program doing other work meanwhile is counted too). `None` elsewhere.
    pub peak_rss_bytes: Option<u64>,
    /// Wall time.
    pub elapsed: Duration,
    /// Victims left alone, with the reason (damage GC will not guess around).
    pub skipped: Vec<String>,
}

/// One artifact stored in a victim segment.
#[derive(Clone, Copy)]
struct Item {
    id: ArtifactId,
    block_offset: u64,
    inner: u32,
}

/// Artifacts re-checked and copied per writer-lock hold, so writers wait at most
/// for one batch.
const BATCH: usize = 2048;

fn totals(w: &Writer) -> (u64, u64) {
    w.seg_states
        .values()
        .fold((0, 0), |(l, g), s| (l + s.live, g + s.total.saturating_sub(s.live)))
}

fn qualifies(st: &SegmentState, threshold: f64) -> bool {
    st.live == 0 || (st.live as f64) < threshold * st.total as f64
}

impl Store {
    /// Collects garbage (see the module docs of `store::gc` for the protocol):
    /// readers and writers keep working while it runs, waiting at most for one
    /// batch of copies at a time.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let t0 = Instant::now();
        if !(0.0..=1.0).contains(&opts.threshold) {
            return Err(Error::InvalidArgument(format!(
                "GC threshold {} is not between 0 and 1",
                opts.threshold
            )));
        }
        let mut rep = GcReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let rss_reset = reset_peak_rss();
        // GC copies what the index says is retained and deletes the rest: a
        // damaged index record would let bytes repair could still find go.
        let files = self.state.read().indexes.clone();
        self.check_indexes(&files)?;
        let victims: Vec<(u32, SegmentState)> = {
            let mut w = self.writer()?;
            self.commit_locked(&mut w)?;
            (rep.live_before, rep.garbage_before) = totals(&w);
            // The open segment is never collected in place; when it qualifies it
            // is sealed, so that it can be.
            let active = w.active.as_ref().map(|a| a.id);
            if let Some(st) = active.and_then(|id| w.seg_states.get(&id).copied()) {
                // Tombstone blocks alone (total 0) count too: they free nothing live.
                // (Not while a large artifact streams into it: its chunks and
                // trailer must share the segment.)
                if st.len > SEGMENT_HEADER_LEN && qualifies(&st, opts.threshold) && !opts.dry_run && w.streams == 0 {
                    self.guard(&mut w, |s, w| s.seal_active(w))?;
                    self.commit_locked(&mut w)?;
                }
            }
            let mut v: Vec<(u32, SegmentState)> = w
                .seg_states
                .values()
                .filter(|s| (s.sealed || opts.dry_run && s.len > SEGMENT_HEADER_LEN) && qualifies(s, opts.threshold))
                .map(|s| (s.id, *s))
                .collect();
            // Dead segments first: they free space without writing any.
            v.sort_by(|a, b| {
                (a.1.live > 0, a.1.live * 1000 / a.1.total.max(1))
                    .cmp(&(b.1.live > 0, b.1.live * 1000 / b.1.total.max(1)))
            });
            v
        };
        if opts.dry_run {
            for (_, st) in &victims {
                rep.segments_deleted += 1;
                rep.segments_repacked += (st.live > 0) as u64;
                rep.reclaimed_bytes += st.len;
                rep.repacked_bytes += st.live;
            }
            rep.live_after = rep.live_before;
            rep.garbage_after = rep.garbage_before - victims.iter().map(|(_, s)| s.total - s.live).sum::<u64>();
            rep.elapsed = t0.elapsed();
            rep.peak_rss_bytes = rss_reset.then(peak_rss).flatten();
            return Ok(rep);
        }
        for (id, st) in victims {
            self.collect_segment(id, st, &mut rep)?;
        }
        let w = self.writer()?;
        (rep.live_after, rep.garbage_after) = totals(&w);
        rep.elapsed = t0.elapsed();
        rep.peak_rss_bytes = rss_reset.then(peak_rss).flatten();
        Ok(rep)
    }

    fn collect_segment(&self, seg: u32, st: SegmentState, rep: &mut GcReport) -> Result<()> {
        let Some(segment) = self.state.read().segments.get(&seg).cloned() else {
            return Ok(());
        };
        let items = match walk(&segment) {
            Ok(v) => v,
            Err(e) if e.is_corruption() => {
                rep.skipped.push(format!("segment {seg}: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mem = items.capacity() * size_of::<Item>() + 2 * self.opts.block_target + self.opts.small_threshold;
        rep.peak_memory_bytes = rep.peak_memory_bytes.max(mem as u64);
        let copied_before = rep.artifacts_copied;
        for batch in items.chunks(BATCH) {
            let mut w = self.writer()?;
            self.guard(&mut w, |s, w| {
                s.flush_pending(w)?;
                s.copy_referenced(w, seg, batch, rep)?;
                s.commit_locked(w)
            })?;
        }
        // The barrier: with the writer held, nothing can start pointing into the
        // victim, so a final check that nothing does makes the drop safe.
        let mut w = self.writer()?;
        self.guard(&mut w, |s, w| {
            s.flush_pending(w)?;
            s.copy_referenced(w, seg, &items, rep)?;
            w.seg_states.remove(&seg);
            w.usage_dirty.remove(&seg);
            w.batch.push(Record::SegmentDropped { id: seg });
            s.commit_locked(w)?;
            s.state.write().segments.remove(&seg);
            Ok(())
        })?;
        drop(w);
        let path = segment.path.clone();
        drop(segment);
        self.layout
            .io
            .remove(&path)
            .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
        sync_dir(&*self.layout.io, &self.layout.segment_dir())?;
        rep.segments_deleted += 1;
        rep.segments_repacked += (rep.artifacts_copied > copied_before) as u64;
        rep.reclaimed_bytes += st.len;
        Ok(())
    }

    /// Copies every item whose newest record still points at it and that is
    /// retained, with a record that keeps its flags, domain and visibility.
    fn copy_referenced(&self, w: &mut Writer, seg: u32, items: &[Item], rep: &mut GcReport) -> Result<()> {
        let mut pack = PackedBuilder::default();
        let mut recs: Vec<Entry> = Vec::new();
        for it in items {
            let Some(rec) = self.state.read().newest(&it.id)? else {
                continue;
            };
            if rec.segment != seg || rec.block_offset != it.block_offset || rec.inner != it.inner {
                continue;
            }
            if !self.state.read().retains(&rec)? {
                continue;
            }
            rep.artifacts_copied += 1;
            rep.repacked_bytes += rec.len;
            if rec.is_large() {
                self.copy_large(w, &rec)?;
                continue;
            }
            let bytes = self.read_small(&rec, &*self.segment(&rec)?)?;
            pack.push(rec.id, &bytes);
            recs.push(rec);
            if pack.raw_len() >= self.opts.block_target {
                self.flush_copies(w, &mut pack, &mut recs)?;
            }
        }
        self.flush_copies(w, &mut pack, &mut recs)
    }

    fn flush_copies(&self, w: &mut Writer, pack: &mut PackedBuilder, recs: &mut Vec<Entry>) -> Result<()> {
        if pack.is_empty() {
            return Ok(());
        }
        let (raw, entries) = pack.finish();
        let (seg, loc) = self.write_packed_block(w, &raw, &entries, None)?;
        for (i, (pe, rec)) in entries.iter().zip(recs.drain(..)).enumerate() {
            let to = super::packing::packed_entry(&loc, seg, i, pe);
            self.moved(w, &rec, rec.relocated(to));
        }
        self.flush_tombstones(w)
    }

    /// Copies a large artifact under the writer lock (the source is the store
    /// itself, so no window waits on a slow reader).
    fn copy_large(&self, w: &mut Writer, rec: &Entry) -> Result<()> {
        self.ensure_active(w)?;
        let mut reader = self.reader_for(rec, self.segment(rec)?)?;
        let mut run = ChunkRun::new(self.opts.chunk_size, self.opts.compression);
        let window = self.opts.chunk_size * 8;
        let mut len = 0u64;
        with_buf(Buf::Stream, |buf| -> Result<()> {
            buf.resize(window, 0);
            loop {
                let n = read_full(&mut reader, buf).map_err(super::read::unwrap_io)?;
                if n == 0 {
                    return Ok(());
                }
                let data = &buf[..n];
                len += n as u64;
                let images = run.prepare(data);
                let a = w.active.as_mut().ok_or(Error::Poisoned)?;
                run.write(a, &images)?;
                if n < window {
                    return Ok(());
                }
            }
        })?;
        // The copy's own chunk tree gives its id (no second hash of the bytes).
        let id = rec.id;
        if len != rec.len || run.id() != Some(id) {
            return Err(Error::CorruptArtifact {
                id: rec.id,
                file: self.layout.segment(rec.segment),
                detail: "copy during GC does not match the artifact's id".into(),
            });
        }
        let img = BlockImage::trailer(&run.trailer(id, len));
        let a = w.active.as_mut().ok_or(Error::Poisoned)?;
        let at = a.write(&img)?;
        let to = Entry::large(id, a.id, at, len);
        self.moved(w, rec, rec.relocated(to));
        self.flush_tombstones(w)
    }

    /// Records a copy: the new record shadows the old, usage moves with it, and
    /// a retained-but-removed artifact gets a tombstone block after its copy so
    /// that `repair` replays it as removed.
    fn moved(&self, w: &mut Writer, old: &Entry, new: Entry) {
        self.record_new(w, &[new]);
        w.add_usage(old.segment, -(old.len as i64), 0);
        if new.is_tombstone() {
            w.tombstones.push((new.id, new.domain.0));
        }
    }
}

/// Resets the process's peak-RSS high-water mark (Linux `clear_refs`, value
/// 5); false where that is not possible, so no older peak is reported.
fn reset_peak_rss() -> bool {
    cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// The process's peak resident memory since the last reset (`VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Lists the artifacts stored in a sealed segment: packed block tables and
/// large-artifact trailers (chunk bodies are not read).
fn walk(seg: &Segment) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for b in seg.blocks()? {
        if matches!(b.header.kind, BlockKind::LargeChunk | BlockKind::Tombstones) {
            continue;
        }
        for (id, inner, _) in seg.contents(&b)?.artifacts() {
            out.push(Item {
                id,
                block_offset: b.offset,
                inner,
            });
        }
    }
    Ok(out)
}
