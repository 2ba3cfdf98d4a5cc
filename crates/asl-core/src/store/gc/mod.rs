//! Garbage collection: deleting segments nothing reachable points into, and
//! repacking segments that are mostly garbage.
//!
//! Cost follows the garbage, not the store: every segment carries usage
//! counters (live and total logical bytes) kept up to date by puts, removals,
//! snapshot deletes and unpins and logged at each commit, so picking victims
//! reads no index and no segment. Only the victims are read.
//!
//! Safety does not rest on the counters. For each victim GC lists the
//! artifacts stored in it, looks up their newest records in one ordered pass
//! (`lookup`: writers' later changes are watched and looked up again) and,
//! under the writer lock, decides whether each one's newest record still
//! points there and whether anything retains it (CURRENT, a snapshot, a pin,
//! publication); those are copied to the open segment with records that keep
//! their tombstone and visibility. Then, again
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
use std::time::Instant;

use crate::block::format::PackedBuilder;
use crate::block::segment::{Segment, SEGMENT_HEADER_LEN};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::id::ArtifactId;
use crate::index::entry::{Entry, FLAG_COMPRESSED};
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::log::Record;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Store, Writer};
use sweep::check_block;

mod copy;
pub(super) mod lookup;
mod report;
mod sweep;

use report::{heap_now, note_heap, peak_rss, reset_peak_rss};
pub use report::{GcOptions, GcReport, DEFAULT_THRESHOLD};

/// One artifact stored in a victim segment.
use crate::block::reader::Stored as Item;

/// Artifacts re-checked and copied per writer-lock hold, so writers wait at most
/// for one batch.
const BATCH: usize = 2048;

/// Batches copied between two commits: each commit waits for the disk, so
/// fewer overlap more of the copying with the writeback; its records wait
/// in memory meanwhile.
const COMMIT_EVERY: usize = 16;

/// Mapped file pages GC lets stay resident before giving the index maps'
/// pages back (each release costs the next lookups page faults).
const MAPPED_BUDGET: u64 = 48 << 20;

/// What GC found for one item of a victim.
#[derive(Clone)]
enum Verdict {
    /// The newest record of its id points elsewhere (or there is none).
    Elsewhere,
    /// It is the newest record, but nothing retains it.
    Unretained,
    /// To copy: the record, and a small artifact's verified bytes.
    Copy(Entry, Option<Vec<u8>>),
    /// To copy, but its bytes do not prove themselves: left where it is.
    Damaged(ArtifactId),
}

fn totals(states: &BTreeMap<u32, SegmentState>) -> (u64, u64) {
    states
        .values()
        .fold((0, 0), |(l, g), s| (l + s.live, g + s.total.saturating_sub(s.live)))
}

fn qualifies(st: &SegmentState, threshold: f64) -> bool {
    st.live == 0 || (st.live as f64) < threshold * st.total as f64
}

impl Store {
    /// [`Maintenance::gc`](crate::Maintenance::gc)'s body.
    pub(crate) fn gc(&self, opts: &GcOptions, progress: Option<crate::ProgressFn<'_>>) -> Result<GcReport> {
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
        // One GC at a time: each trusts the lookups it made of a victim
        // while no other copies records out of it (see `lookup`).
        let _one = self.gc_lock.lock();
        let rss_reset = reset_peak_rss();
        rep.peak_heap_bytes = heap_now();
        // GC copies what the index says is retained and deletes the rest: a
        // damaged index record would let bytes repair could still find go.
        let files = self.state.read().indexes.clone();
        self.check_indexes(&files)?;
        let swept = self.sweep_chunks(&mut rep, opts.dry_run)?;
        let victims: Vec<(u32, SegmentState)> = {
            let mut w = self.writer_to_commit()?;
            w.commit(self)?;
            // A dry run counts what its sweep would have freed as freed (a
            // real one has freed it already).
            let mut states = w.seg_states.clone();
            if opts.dry_run {
                for (seg, len) in &swept {
                    if let Some(st) = states.get_mut(seg) {
                        st.live = st.live.saturating_sub(*len);
                    }
                }
            }
            (rep.live_before, rep.garbage_before) = totals(&states);
            // The open segment is never collected in place; when it qualifies it
            // is sealed, so that it can be.
            let active = w.active.as_ref().map(|a| a.id);
            if let Some(st) = active.and_then(|id| states.get(&id).copied()) {
                // Tombstone blocks alone (total 0) count too: they free nothing live.
                // (Not while a large artifact streams into it: its chunks and
                // trailer must share the segment.)
                if st.len > SEGMENT_HEADER_LEN && qualifies(&st, opts.threshold) && !opts.dry_run && w.streams == 0 {
                    w.guard(|w| w.seal_active(self))?;
                    w.commit(self)?;
                }
            }
            if !opts.dry_run {
                // The open segment may have been sealed just now.
                states = w.seg_states.clone();
            }
            let mut v: Vec<(u32, SegmentState)> = states
                .values()
                .filter(|s| (s.sealed || opts.dry_run && s.len > SEGMENT_HEADER_LEN) && qualifies(s, opts.threshold))
                .map(|s| (s.id, *s))
                .collect();
            // Dead segments first: they free space without writing any.
            v.sort_by(|a, b| {
                (a.1.live > 0, a.1.live * 1000 / a.1.total.max(1))
                    .cmp(&(b.1.live > 0, b.1.live * 1000 / b.1.total.max(1)))
            });
            if !opts.dry_run {
                w.watch_start();
            }
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
        let total: u64 = victims.iter().map(|(_, st)| st.len).sum();
        let mut done = 0;
        crate::progress::report(progress, "segments", 0, total);
        let collected = victims.into_iter().try_for_each(|(id, st)| {
            self.collect_segment(id, st, &mut rep)?;
            done += st.len;
            crate::progress::report(progress, "segments", done, total);
            Ok::<(), Error>(())
        });
        if let Some(w) = &self.writer {
            w.lock().watch_stop();
        }
        collected?;
        let w = self.writer_state()?;
        (rep.live_after, rep.garbage_after) = totals(&w.seg_states);
        rep.elapsed = t0.elapsed();
        rep.peak_rss_bytes = rss_reset.then(peak_rss).flatten();
        note_heap(&mut rep);
        Ok(rep)
    }

    fn collect_segment(&self, seg: u32, st: SegmentState, rep: &mut GcReport) -> Result<()> {
        if !self.state.read().segments.contains_key(&seg) {
            return Ok(());
        }
        // A handle of GC's own, read with pread: a pass over the whole victim
        // then fills the page cache, not this process's resident memory (a
        // map's pages count as resident once touched, 256 MiB per segment).
        let path = self.layout.segment(seg);
        let listed = Segment::open_sealed_unmapped(&*self.layout.io, &path, seg, self.store_id)
            .map_err(Error::from)
            .and_then(|v| Ok((crate::block::reader::stored(&v)?, Arc::new(v))));
        let (items, victim) = match listed {
            Ok(v) => v,
            Err(e) if e.is_corruption() => {
                rep.skipped.push(format!("segment {seg}: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let seen = self.newest_in_order(&items, seg)?;
        #[cfg(test)]
        lookup::after_pass(self, &items);
        let copied_before = rep.artifacts_copied;
        let mut settled = Vec::with_capacity(items.len());
        let mut damaged = Vec::new();
        let listed = items.capacity() * (size_of::<Item>() + 1) + seen.capacity() * size_of::<lookup::Seen>();
        for (k, (batch, seen)) in items.chunks(BATCH).zip(seen.chunks(BATCH)).enumerate() {
            let mut w = self.writer_to_commit()?;
            let mem = listed
                + w.watch_len() * (size_of::<ArtifactId>() + 16)
                + COMMIT_EVERY * BATCH * size_of::<Record>()
                + 2 * self.opts.block_target
                + self.opts.small_threshold;
            rep.peak_memory_bytes = rep.peak_memory_bytes.max(mem as u64);
            w.guard(|w| {
                w.flush_pending(self)?;
                settled.extend(w.copy_referenced(self, &victim, batch, seen, rep, &mut damaged)?);
                // Copies need not be durable before the barrier's commit (a
                // crash loses them and leaves the victim, which their records
                // still point into), so commits come every few batches.
                if (k + 1) % COMMIT_EVERY == 0 {
                    w.commit(self)?;
                }
                Ok(())
            })?;
            note_heap(rep);
            self.release_mapped_pages_over(MAPPED_BUDGET);
        }
        if !damaged.is_empty() {
            // Copying moved what proves itself; the victim stays, so nothing
            // is lost that repair could still find, and verify names the rest.
            rep.skipped.push(format!(
                "segment {seg}: kept, {} retained artifacts in it are damaged ({}{})",
                damaged.len(),
                damaged
                    .iter()
                    .take(3)
                    .map(|d| d.to_hex())
                    .collect::<Vec<_>>()
                    .join(", "),
                if damaged.len() > 3 { ", ..." } else { "" }
            ));
            return Ok(());
        }
        // The barrier: with the writer held, nothing can start pointing into the
        // victim, so a final check that nothing does makes the drop safe. An
        // item copied, or found pointing elsewhere, stays settled (no write ever
        // points into a sealed segment again); the rest are looked at again
        // (what the pass saw, unless the writer saw it change since).
        let (rest, rest_seen): (Vec<Item>, Vec<lookup::Seen>) = items
            .iter()
            .zip(&seen)
            .zip(&settled)
            .filter(|(_, done)| !**done)
            .map(|((it, s), _)| (*it, *s))
            .unzip();
        let mut w = self.writer_to_commit()?;
        w.guard(|w| {
            w.flush_pending(self)?;
            let mut late = Vec::new();
            w.copy_referenced(self, &victim, &rest, &rest_seen, rep, &mut late)?;
            if !late.is_empty() {
                return Err(Error::CorruptArtifact {
                    id: late[0],
                    file: victim.path.clone(),
                    detail: "damaged while GC ran".into(),
                });
            }
            w.seg_states.remove(&seg);
            w.usage_dirty.remove(&seg);
            w.batch.push(Record::SegmentDropped { id: seg });
            w.commit(self)?;
            self.state.write().segments.remove(&seg);
            Ok(())
        })?;
        drop(w);
        drop(victim);
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

    /// What to do with each item, given its id's newest record: a small
    /// artifact's bytes read and proven, on all cores (`crate::par`: the
    /// writer lock is held).
    fn verdicts(&self, victim: &Arc<Segment>, items: &[Item], newest: &[Option<Entry>]) -> Result<Vec<Verdict>> {
        let seg = victim.id;
        let pairs: Vec<(&Item, &Option<Entry>)> = items.iter().zip(newest).collect();
        let found = crate::par::map(&pairs, 256, |_, (it, rec)| {
            let Some(rec) = rec else {
                return Ok(Verdict::Elsewhere);
            };
            if rec.segment != seg || rec.block_offset != it.block_offset || rec.inner != it.inner {
                return Ok(Verdict::Elsewhere);
            }
            if !self.state.read().retains(rec)? {
                return Ok(Verdict::Unretained);
            }
            Ok(Verdict::Copy(*rec, None))
        })
        .into_iter()
        .collect::<Result<Vec<Verdict>>>()?;
        // Raw packed blocks are read whole, once, and proven by their CRC-32C;
        // their artifacts are then copied without hashing each (every read
        // of them hashes them anyway). A block whose CRC fails leaves its
        // artifacts to be read and proven one by one by their BLAKE3.
        let raw_blocks: std::collections::BTreeSet<u64> = found
            .iter()
            .filter_map(|v| match v {
                Verdict::Copy(rec, _) if !rec.is_large() && !rec.is_chunk() && rec.flags & FLAG_COMPRESSED == 0 => {
                    Some(rec.block_offset)
                }
                _ => None,
            })
            .collect();
        let raw_blocks: Vec<u64> = raw_blocks.into_iter().collect();
        let blocks: std::collections::HashMap<u64, Vec<u8>> = crate::par::map(&raw_blocks, 1, |_, off| {
            victim.read_block(*off).ok().map(|(_, body)| (*off, body))
        })
        .into_iter()
        .flatten()
        .collect();
        let verdicts = crate::par::map(&found, 64, |_, v| {
            let Verdict::Copy(rec, None) = v else {
                return Ok(v.clone());
            };
            let rec = *rec;
            if rec.is_chunk() || rec.is_manifest() {
                // Proven here, on all cores; copied block by block later
                // (holding a batch of chunks' bytes would cost 2048 of them).
                return match check_block(victim, &rec) {
                    Ok(()) => Ok(Verdict::Copy(rec, None)),
                    Err(e) if e.is_corruption() => Ok(Verdict::Damaged(rec.id)),
                    Err(e) => Err(e),
                };
            }
            if rec.is_large() {
                return Ok(Verdict::Copy(rec, None));
            }
            // Only an entry stored raw lies in the body as it is (a raw
            // frame does too; a sibling zstd frame of it does not).
            let (at, n) = (rec.inner as usize, rec.len as usize);
            let raw = blocks
                .get(&rec.block_offset)
                .filter(|_| rec.flags & FLAG_COMPRESSED == 0)
                .and_then(|b| b.get(at..at + n));
            if let Some(b) = raw {
                return Ok(Verdict::Copy(rec, Some(b.to_vec())));
            }
            // A whole-compressed block is decoded once for all of its
            // artifacts through the block cache; frames are read alone
            // and not kept.
            let whole = rec.flags & FLAG_COMPRESSED != 0 && !rec.is_framed();
            match self.read_small_with(&rec, victim, whole) {
                Ok(bytes) => Ok(Verdict::Copy(rec, Some(bytes))),
                Err(e) if e.is_corruption() => Ok(Verdict::Damaged(rec.id)),
                Err(e) => Err(e),
            }
        });
        verdicts.into_iter().collect()
    }
}

impl Writer {
    /// Copies every item whose newest record still points at it and that is
    /// retained, with a record that keeps its flags, domain and visibility;
    /// says for each item whether it is settled (copied, or pointed at from
    /// nowhere but elsewhere). `seen`: each item's newest record as
    /// [`Store::newest_in_order`](crate::Store::newest_in_order) found it, good for every id the writer has
    /// not seen change since; the others are looked up again here. Reading
    /// and verifying run on all cores (the caller holds the writer, so the
    /// index does not change under them); packing and writing follow in
    /// order.
    fn copy_referenced(
        &mut self,
        s: &Store,
        victim: &Arc<Segment>,
        items: &[Item],
        seen: &[lookup::Seen],
        rep: &mut GcReport,
        damaged: &mut Vec<ArtifactId>,
    ) -> Result<Vec<bool>> {
        let newest = {
            let st = s.state.read();
            let fresh = |it: &Item, seen: &lookup::Seen| {
                if self.changed(&it.id) {
                    st.newest(&it.id)
                } else {
                    Ok(seen.record(it, victim.id))
                }
            };
            items
                .iter()
                .zip(seen)
                .map(|(it, seen)| fresh(it, seen))
                .collect::<Result<Vec<_>>>()?
        };
        let verdicts = s.verdicts(victim, items, &newest)?;
        let mut pack = PackedBuilder::default();
        let mut recs: Vec<Entry> = Vec::new();
        let mut settled = Vec::with_capacity(items.len());
        for v in verdicts {
            let (rec, bytes) = match v {
                Verdict::Elsewhere => {
                    settled.push(true);
                    continue;
                }
                Verdict::Unretained => {
                    settled.push(false);
                    continue;
                }
                Verdict::Damaged(id) => {
                    settled.push(false);
                    damaged.push(id);
                    continue;
                }
                Verdict::Copy(rec, bytes) => (rec, bytes),
            };
            settled.push(true);
            rep.artifacts_copied += 1;
            rep.repacked_bytes += rec.len;
            let Some(bytes) = bytes else {
                if rec.is_chunk() {
                    self.copy_chunk(s, &rec, victim)?;
                } else if rec.is_manifest() {
                    self.copy_manifest(s, &rec, victim)?;
                } else {
                    self.copy_large(s, &rec, victim)?;
                }
                continue;
            };
            pack.push(rec.id, &bytes);
            recs.push(rec);
            if pack.raw_len() >= s.opts.block_target {
                self.flush_copies(s, &mut pack, &mut recs)?;
            }
        }
        self.flush_copies(s, &mut pack, &mut recs)?;
        Ok(settled)
    }
}
