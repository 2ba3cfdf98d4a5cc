//! Maintenance: `stat` and the `verify` scrub, whole or in budget (which
//! segments a budgeted one reads is in scrub.rs; `repair` is in repair/).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::block::scan::Contents;
use crate::block::segment::scan;
use crate::error::{Error, Result};
use crate::id::ArtifactId;
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::current::{CurrentHasher, CurrentId};

use super::read::unwrap_io;
use super::Store;
use crate::progress::report;

/// Figures about a store, as `aslctl stat` prints them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreStat {
    /// Live artifacts in CURRENT.
    pub artifacts: u64,
    /// Sum of their lengths.
    pub logical_bytes: u64,
    /// Bytes of all segment files.
    pub physical_bytes: u64,
    /// Bytes of index files and the log.
    pub index_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Of which sealed.
    pub sealed_segments: u64,
    /// Index files.
    pub index_files: u64,
    /// Records held in memory (not yet in an index file).
    pub memtable_records: u64,
    /// CURRENT's identity (hex).
    pub current_id: String,
    /// Logical bytes retained (CURRENT, snapshots, pins), by the segments'
    /// usage counters.
    pub live_bytes: u64,
    /// Logical bytes in segments that nothing retains: what `gc` can reclaim.
    pub garbage_bytes: u64,
    /// Named snapshots.
    pub snapshots: u64,
    /// Pins.
    pub pins: u64,
    /// Where the scrub rotation stands.
    #[serde(default)]
    pub scrub: super::ScrubStatus,
}

/// The heap a store's own parts hold, each beside the bound that caps it
/// (see [`Maintenance::memory`](crate::Maintenance::memory)). The mapped files are not in it: their
/// pages are the page cache's, given back with
/// [`Maintenance::release_mapped_pages_over`](crate::Maintenance::release_mapped_pages_over).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Decompressed blocks and frames, and verified pieces of large
    /// artifacts, kept for the next reads.
    pub block_cache_bytes: u64,
    /// Their bound ([`StoreOptions::block_cache`](crate::StoreOptions::block_cache)).
    pub block_cache_budget: u64,
    /// Index records not yet written to an index file.
    pub memtable_records: u64,
    /// The table holding them, by its allocation (which stays at its
    /// high-water mark until the next checkpoint empties it).
    pub memtable_bytes: u64,
    /// Records past which the store writes an index file
    /// ([`StoreOptions::memtable_limit`](crate::StoreOptions::memtable_limit)).
    pub memtable_limit: u64,
    /// The table's allocation when it holds that many.
    pub memtable_bound: u64,
    /// Chunk buffers finished readers left for the next ones (shared by
    /// every store in the process).
    pub read_buffer_bytes: u64,
    /// The most they keep.
    pub read_buffer_bound: u64,
}

/// One thing `verify` found wrong.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Problem {
    /// The file it is in.
    pub file: PathBuf,
    /// The artifact, when it concerns one.
    pub artifact: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// The result of [`Maintenance::verify`](crate::Maintenance::verify).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Segments scanned.
    pub segments: u64,
    /// Blocks whose checksums were checked.
    pub blocks: u64,
    /// Live artifacts read back and hashed.
    pub artifacts: u64,
    /// Bytes of artifacts hashed.
    pub bytes: u64,
    /// Everything found wrong; empty when the store is clean.
    pub problems: Vec<Problem>,
    /// Whether this run read only some segments (a budgeted or
    /// since-last scrub); index and snapshot files are read every time.
    #[serde(default)]
    pub partial: bool,
    /// Bytes of segment files read.
    #[serde(default)]
    pub segment_bytes: u64,
    /// Where the rotation stands after this run.
    #[serde(default)]
    pub scrub: super::ScrubStatus,
    /// What went wrong beside the store's data: the scrub record
    /// unreadable or not written. Not problems: the store is not damaged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// [`Maintenance::stat`](crate::Maintenance::stat)'s body.
    pub(crate) fn stat(&self) -> Result<StoreStat> {
        let mut hasher = CurrentHasher::default();
        let (mut artifacts, mut logical) = (0u64, 0u64);
        for e in self.live_entries()? {
            let e = e?;
            hasher.add(&e);
            artifacts += 1;
            logical += e.len;
        }
        let (live_bytes, garbage_bytes) = self.usage_totals();
        let st = self.state.read();
        let io = &*self.layout.io;
        let size = |p: &Path| io.file_len(p).unwrap_or(0);
        let physical = st.segments.values().map(|s| size(&s.path)).sum();
        let mut index_bytes: u64 = st.indexes.iter().map(|f| size(&f.path)).sum();
        let log_dir = self.layout.log_dir();
        if let Ok(names) = io.list(&log_dir) {
            index_bytes += names.iter().map(|n| size(&log_dir.join(n))).sum::<u64>();
        }
        Ok(StoreStat {
            artifacts,
            logical_bytes: logical,
            physical_bytes: physical,
            index_bytes,
            segments: st.segments.len() as u64,
            sealed_segments: st.segments.values().filter(|s| s.is_sealed()).count() as u64,
            index_files: st.indexes.len() as u64,
            memtable_records: st.memtable.len() as u64,
            current_id: hasher.finish().to_string(),
            live_bytes,
            garbage_bytes,
            snapshots: st.snapshots.len() as u64,
            pins: st.pins.len() as u64,
            scrub: {
                drop(st);
                self.scrub_status()
            },
        })
    }

    /// [`Maintenance::memory`](crate::Maintenance::memory)'s body.
    pub(crate) fn memory(&self) -> MemoryUse {
        let block_cache_bytes = self.block_cache.lock().bytes() as u64;
        let st = self.state.read();
        // hashbrown allocates a power of two of buckets, 7/8 of them usable,
        // each a slot and a control byte.
        let slot = std::mem::size_of::<(ArtifactId, crate::index::entry::Entry)>() + 1;
        let table = |records: usize| ((records * 8 / 7).next_power_of_two() * slot) as u64;
        MemoryUse {
            block_cache_bytes,
            block_cache_budget: self.opts.block_cache as u64,
            memtable_records: st.memtable.len() as u64,
            memtable_bytes: if st.memtable.capacity() == 0 {
                0
            } else {
                table(st.memtable.capacity())
            },
            memtable_limit: self.opts.memtable_limit as u64,
            memtable_bound: table(self.opts.memtable_limit),
            read_buffer_bytes: super::reader::spare_buffer_bytes(),
            read_buffer_bound: super::reader::SPARE_BOUND,
        }
    }

    /// (live, garbage) logical bytes over all segments.
    fn usage_totals(&self) -> (u64, u64) {
        let sum = |m: &BTreeMap<u32, SegmentState>| {
            m.values()
                .fold((0, 0), |(l, g), s| (l + s.live, g + s.total.saturating_sub(s.live)))
        };
        match &self.writer {
            Some(w) => sum(&w.lock().seg_states),
            None => sum(&self.seen.read().segs),
        }
    }

    /// [`Maintenance::current_id`](crate::Maintenance::current_id)'s body.
    pub(crate) fn current_id(&self) -> Result<CurrentId> {
        let mut hasher = CurrentHasher::default();
        for e in self.live_entries()? {
            hasher.add(&e?);
        }
        Ok(hasher.finish())
    }

    /// [`Maintenance::scrub`](crate::Maintenance::scrub)'s body.
    pub(crate) fn scrub(
        &self,
        opts: &super::ScrubOptions,
        progress: Option<crate::ProgressFn<'_>>,
    ) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let plan = self.scrub_plan(opts, &mut rep.notes);
        rep.partial = plan.only.is_some();
        for (file, detail) in &self.seen.read().damage {
            rep.problems.push(problem(file, None, detail.clone()));
        }
        let (indexes, segments) = {
            let st = self.state.read();
            (st.indexes.clone(), st.segments.clone())
        };
        for f in &indexes {
            if let Err(e) = f.validate() {
                rep.problems.push(problem(&f.path, None, e.to_string()));
            }
        }
        let chosen: Vec<_> = segments.values().filter(|s| plan.includes(s.id)).collect();
        let seg_total: u64 = chosen.iter().filter_map(|s| plan.lens.get(&s.id)).sum();
        report(progress, "segments", 0, seg_total);
        for seg in chosen {
            rep.segments += 1;
            // The open segment may have a tail past the last commit; only what
            // the index can point at is checked.
            let limit = if seg.is_sealed() {
                u64::MAX
            } else {
                self.committed_len(seg.id).unwrap_or(u64::MAX)
            };
            let image = seg.image(limit)?;
            let bytes: &[u8] = &image;
            rep.segment_bytes += bytes.len() as u64;
            report(progress, "segments", rep.segment_bytes.min(seg_total), seg_total);
            let sc = scan(bytes);
            if let Err(e) = &sc.header {
                rep.problems
                    .push(problem(&seg.path, None, format!("segment header: {e}")));
                continue;
            }
            if seg.is_sealed() {
                if sc.footer.is_none() {
                    rep.problems
                        .push(problem(&seg.path, None, "sealed segment has no valid footer".into()));
                }
                if sc.data_crc_mismatch {
                    rep.problems.push(problem(
                        &seg.path,
                        None,
                        "segment checksum in footer does not match".into(),
                    ));
                }
            }
            for (from, to) in &sc.damaged {
                rep.problems.push(problem(
                    &seg.path,
                    None,
                    format!("unreadable bytes at offsets {from}..{to} (no block header checks there)"),
                ));
            }
            for b in &sc.blocks {
                rep.blocks += 1;
                match &b.contents {
                    Err(e) => rep
                        .problems
                        .push(problem(&seg.path, None, format!("block at {}: {e}", b.offset))),
                    Ok(Contents::Packed { entries, raw, .. }) => {
                        for pe in entries {
                            let s = &raw[pe.offset as usize..(pe.offset + pe.len) as usize];
                            if ArtifactId::of(s) != pe.id {
                                rep.problems.push(problem(
                                    &seg.path,
                                    Some(pe.id),
                                    format!("BLAKE3 mismatch in block at {}", b.offset),
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        report(progress, "segments", seg_total, seg_total);
        // The artifacts to read back, counted first so that the phase has a
        // total (a pass over the index, not over the data).
        let mut art_total = 0;
        if progress.is_some() {
            for e in self.live_entries()? {
                let e = e?;
                art_total += if plan.includes(e.segment) { e.len } else { 0 };
            }
        }
        for e in self.live_entries()? {
            let e = e?;
            if !plan.includes(e.segment) {
                continue;
            }
            report(progress, "artifacts", rep.bytes.min(art_total), art_total);
            let r = if e.is_large() {
                // Past the block cache: verify checks the disk, not bytes
                // proven when they were read before.
                self.open_reader(&e.id)
                    .map(super::ArtifactReader::uncached)
                    .and_then(|mut r| {
                        std::io::copy(&mut r, &mut std::io::sink())
                            .map_err(unwrap_io)
                            .map(|_| ())
                    })
            } else {
                self.segment(&e).and_then(|seg| self.read_small(&e, &seg)).map(|_| ())
            };
            rep.artifacts += 1;
            rep.bytes += e.len;
            if let Err(err) = r {
                let (file, detail) = match err {
                    Error::CorruptArtifact { file, detail, .. } => (file, detail),
                    other => (self.layout.segment(e.segment), other.to_string()),
                };
                if !rep
                    .problems
                    .iter()
                    .any(|p| p.artifact.as_deref() == Some(&e.id.to_hex()) && p.file == file)
                {
                    rep.problems.push(problem(&file, Some(e.id), detail));
                }
            }
        }
        report(progress, "artifacts", art_total, art_total);
        self.verify_snapshots(&mut rep)?;
        rep.scrub = self.scrub_done(&plan, &mut rep.notes);
        Ok(rep)
    }

    /// Each snapshot file: its checksum, its content against its identity, and
    /// a stored location for every artifact it holds (the bytes themselves were
    /// checked with their blocks above).
    fn verify_snapshots(&self, rep: &mut VerifyReport) -> Result<()> {
        let snaps: Vec<_> = self.state.read().snapshots.values().cloned().collect();
        let mut seen = std::collections::HashSet::new();
        for h in snaps {
            if !seen.insert(h.meta.identity) {
                continue;
            }
            let path = &h.path;
            let file = match h.file() {
                Ok(f) => f,
                Err(e) => {
                    let detail = match e {
                        Error::Corrupt { detail, .. } => detail,
                        other => other.to_string(),
                    };
                    rep.problems.push(problem(path, None, detail));
                    continue;
                }
            };
            let mut hasher = CurrentHasher::default();
            for i in 0..file.len() {
                let e = file.entry(i)?;
                hasher.add(&e);
                let st = self.state.read();
                let located = st
                    .newest(&e.id)?
                    .is_some_and(|r| r.segment != 0 && st.segments.contains_key(&r.segment));
                if !located {
                    rep.problems.push(problem(
                        path,
                        Some(e.id),
                        format!("held by snapshot {} but no longer stored", h.meta.name),
                    ));
                }
            }
            if hasher.finish() != h.meta.identity {
                rep.problems.push(problem(
                    path,
                    None,
                    format!("content does not match the identity of snapshot {}", h.meta.name),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn committed_len(&self, seg: u32) -> Option<u64> {
        match &self.writer {
            Some(w) => w.lock().seg_states.get(&seg).map(|s| s.len),
            None => self.seen.read().segs.get(&seg).map(|s| s.len),
        }
    }
}

fn problem(file: &Path, artifact: Option<ArtifactId>, detail: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        artifact: artifact.map(|a| a.to_hex()),
        detail,
    }
}

// Compile-time check of the promise in `Store`'s docs: one handle shared across threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Store>();
};
