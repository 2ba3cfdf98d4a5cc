//! What repair learns from the segment files, one segment and one block at
//! a time, and the index, log and checkpoint it writes from that.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::block::format::Compression;
use crate::block::scan::Contents;
use crate::block::segment::{
    scan, segment_file_name, ActiveSegment, Scan, ScannedBlock, SegmentHeader, FOOTER_LEN, SEGMENT_HEADER_LEN,
};
use crate::error::{DecodeError, IoContext, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::file::write_index;
use crate::snapshot::checkpoint::{Checkpoint, SegmentState};
use crate::snapshot::log::{log_file_name, LogWriter};
use crate::store::layout::{encode_store_file, Layout};
use crate::store::SnapshotHandle;

use super::salvage::{salvage, salvage_headerless, tail_survivors};
use super::{max_file_number, quarantine_file, rebuild_header, RepairReport};

/// What keeps a removed artifact's location: the pins and snapshots repair
/// recovered.
pub(super) struct Held<'a> {
    pub(super) pins: &'a BTreeMap<String, ArtifactId>,
    pub(super) snapshots: &'a BTreeMap<String, Arc<SnapshotHandle>>,
}

/// The committed length and sealed flag of each segment, by the old log.
pub(super) type Committed = BTreeMap<u32, (u64, bool)>;

/// Everything gathered from the segments read so far.
pub(super) struct Gathered {
    pub(super) rep: RepairReport,
    /// The store's id: from `STORE`, else the first readable segment header.
    pub(super) store_id: Option<u64>,
    /// The index being rebuilt.
    map: BTreeMap<ArtifactId, Entry>,
    /// Logical bytes stored per segment.
    totals: BTreeMap<u32, u64>,
    /// Each manifest's chunk keys, to name the artifacts whose chunks are
    /// gone once every segment has been read.
    manifests: Vec<(ArtifactId, Vec<ArtifactId>)>,
    segs: Vec<SegmentState>,
}

impl Gathered {
    pub(super) fn new(rep: RepairReport, store_id: Option<u64>) -> Self {
        Gathered {
            rep,
            store_id,
            map: BTreeMap::new(),
            totals: BTreeMap::new(),
            manifests: Vec::new(),
            segs: Vec::new(),
        }
    }

    /// Reads segment `id`: its header checked (rebuilt when merely damaged,
    /// else the file quarantined), every block indexed or salvaged, and an
    /// open one closed.
    pub(super) fn segment(
        &mut self,
        layout: &Layout,
        id: u32,
        committed: Option<&Committed>,
        held: &Held<'_>,
    ) -> Result<()> {
        let io = &*layout.io;
        let p = layout.segment(id);
        let mut bytes = io.read(&p).ctx(|| format!("read {}", p.display()))?;
        let mut sc = scan(&bytes);
        // A header that is merely damaged (not another store's, another
        // segment's or a newer version's) is rebuilt when the blocks behind
        // it read: the file name gives the id, the store gives its id. The
        // old header bytes are kept in quarantine.
        let mut rebuilt = false;
        if let (Err(e), Some(sid)) = (&sc.header, self.store_id) {
            if !matches!(e, DecodeError::UnsupportedVersion { .. }) {
                if let Some(h) = rebuild_header(layout, &p, &bytes, id, sid, &mut self.rep)? {
                    bytes[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&h.encode());
                    sc = scan(&bytes);
                    rebuilt = true;
                }
            }
        }
        let why = match &sc.header {
            Ok(h) if h.id != id => Some(format!("header names segment {}", h.id)),
            Ok(h) if self.store_id.is_some_and(|s| s != h.store_id) => Some("belongs to another store".into()),
            Ok(_) => None,
            Err(e) => Some(format!("segment header: {e}")),
        };
        if let Some(why) = why {
            // Its blocks may still be readable; name what it held, keep it.
            let (blocks, _, _) = crate::block::segment::scan_blocks(&bytes, SEGMENT_HEADER_LEN, bytes.len() as u64);
            for b in &blocks {
                if let Ok(c) = &b.contents {
                    self.rep.lost.extend(c.artifacts().iter().map(|a| a.0.to_hex()));
                }
            }
            return quarantine_file(layout, &p, &mut self.rep, &why);
        }
        let Ok(h) = sc.header.clone() else {
            return Ok(());
        };
        self.store_id = Some(h.store_id);
        self.rep.segments += 1;
        self.rep.damaged_regions += sc.damaged.len() as u64;
        for (from, to) in &sc.damaged {
            // No header checks there, so what the bytes held is unknown,
            // but a raw packed block whose header alone is damaged still
            // names and proves its artifacts.
            let kept = salvage_headerless(&bytes, id, *from, *to, &mut self.map, &mut self.totals);
            self.rep.salvaged += kept;
            self.rep.lost.push(format!(
                "segment {id}, bytes {from}..{to}: no block header checks ({kept} artifacts salvaged by their \
                 BLAKE3; anything else there is unreadable)"
            ));
        }
        // Chunk blocks that read back whole, to tell which large artifacts
        // are still complete.
        let good_chunks: HashSet<u64> = sc
            .blocks
            .iter()
            .filter(|b| matches!(b.contents, Ok(Contents::Chunk)))
            .map(|b| b.offset)
            .collect();
        for b in &sc.blocks {
            self.rep.blocks += 1;
            match &b.contents {
                Ok(c) => self.index_block(id, b, c, &good_chunks, held)?,
                Err(_) => {
                    self.rep.bad_blocks += 1;
                    salvage(&bytes, id, b, &mut self.map, &mut self.totals, &mut self.rep);
                }
            }
        }
        // A rebuilt header changes bytes the footer's checksum covers: such
        // a segment is sealed again (the old footer is parseable and
        // recomputed, so nothing unparsed is lost).
        let len = match sc.footer.as_ref().filter(|_| !rebuilt) {
            Some(f) => f.data_len + FOOTER_LEN,
            None => self.close(layout, &p, id, &bytes, &sc, &h, committed)?,
        };
        self.segs.push(SegmentState::new(id, len, true));
        Ok(())
    }

    /// Adds what a block that reads holds to the index.
    fn index_block(
        &mut self,
        id: u32,
        b: &ScannedBlock,
        contents: &Contents,
        good_chunks: &HashSet<u64>,
        held: &Held<'_>,
    ) -> Result<()> {
        let compressed = b.header.compression == Compression::Zstd;
        let total = self.totals.entry(id).or_default();
        match contents {
            Contents::Packed {
                entries, frames: None, ..
            } => {
                for pe in entries {
                    *total += pe.len as u64;
                    let e = Entry::packed(pe.id, id, b.offset, pe.offset, pe.len as u64, compressed);
                    self.map.insert(pe.id, e);
                }
            }
            Contents::Packed {
                frames: Some(frames), ..
            } => {
                for f in frames {
                    *total += f.raw_len as u64;
                    let e = Entry::framed(f.id, id, b.offset, f.offset, f.raw_len as u64, f.compressed);
                    self.map.insert(f.id, e);
                }
            }
            Contents::Dictionary | Contents::Chunk => {}
            Contents::Trailer(t) => {
                *total += t.len;
                if t.chunks.iter().any(|c| !good_chunks.contains(&c.offset)) {
                    // Indexed all the same: verify then names it.
                    self.rep.lost.push(t.id.to_hex());
                }
                self.map.insert(t.id, Entry::large(t.id, id, b.offset, t.len));
            }
            Contents::CdcChunk { key, len } => {
                *total += *len as u64;
                self.map
                    .insert(*key, Entry::chunk(*key, id, b.offset, *len as u64, compressed));
            }
            Contents::Manifest(m) => {
                let e = Entry::manifest(m.id, id, b.offset, m.len);
                *total += e.usage();
                // A list kept in parts is named by its parts here: a part
                // that is gone names the artifact; a chunk gone from a part
                // that is here is found by `verify`.
                let keys = m.chunks.iter().map(|c| c.key).chain(m.parts.iter().map(|p| p.key));
                self.manifests.push((m.id, keys.collect()));
                self.map.insert(m.id, e);
            }
            Contents::Tombstones(ts) => {
                for (tid, _) in ts {
                    // A removed artifact a snapshot or pin still holds keeps
                    // its location, as a tombstone.
                    let keep = match self.map.get(tid) {
                        Some(e) => crate::store::held_by(held.pins, held.snapshots, e, None)?,
                        None => false,
                    };
                    if keep {
                        if let Some(e) = self.map.get_mut(tid) {
                            *e = e.removed();
                        }
                        self.rep.tombstones += 1;
                    } else if self.map.remove(tid).is_some() {
                        self.rep.tombstones += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes a segment that has no footer (it was open): the torn tail, if
    /// any, copied to quarantine and cut, the artifacts of a cut-off raw
    /// block that their BLAKE3 still proves written again whole, and the
    /// segment sealed. Returns its sealed length.
    #[allow(clippy::too_many_arguments)]
    fn close(
        &mut self,
        layout: &Layout,
        p: &Path,
        id: u32,
        bytes: &[u8],
        sc: &Scan,
        h: &SegmentHeader,
        committed: Option<&Committed>,
    ) -> Result<u64> {
        let io = &*layout.io;
        let end = sc.end.max(SEGMENT_HEADER_LEN);
        // What the old log says was committed into this segment tells a
        // crash's unacknowledged tail from lost data.
        match committed.map(|c| c.get(&id)) {
            Some(Some(&(len, sealed))) => {
                let data_end = if sealed { len.saturating_sub(FOOTER_LEN) } else { len };
                if end < data_end {
                    self.rep.lost.push(format!(
                        "segment {id}, bytes {end}..{data_end}: committed but cut off or unreadable"
                    ));
                }
            }
            Some(None) => {}
            None if end < sc.file_len => self.rep.lost.push(format!(
                "segment {id}, bytes {end}..{}: cut off; the log that would say whether they were committed is \
                 unreadable",
                sc.file_len
            )),
            None => {}
        }
        if end < sc.file_len {
            let tail = layout
                .quarantine_dir()
                .join(format!("{}.tail-at-{end}", segment_file_name(id)));
            io.create_dir_all(&layout.quarantine_dir())
                .ctx(|| format!("create {}", layout.quarantine_dir().display()))?;
            write_atomic(io, &tail, &bytes[end as usize..])?;
            self.rep.truncated_bytes += sc.file_len - end;
        }
        let kept: Vec<&ScannedBlock> = sc.blocks.iter().filter(|b| b.offset < end).collect();
        let raw_total = kept.iter().map(|b| b.header.raw_len as u64).sum();
        let survivors = tail_survivors(&bytes[end as usize..]);
        let mut active = ActiveSegment::adopt(io, p, h, end, kept.len() as u64, raw_total)?;
        if !survivors.is_empty() {
            // They go into a whole block of their own in place of the cut tail.
            let mut b = crate::block::format::PackedBuilder::default();
            for (sid, data) in &survivors {
                b.push(*sid, data);
            }
            let (raw, entries) = b.finish();
            let at = crate::block::writer::write_packed_raw(&mut active, &raw, &entries)?;
            for pe in &entries {
                *self.totals.entry(id).or_default() += pe.len as u64;
                self.map.insert(
                    pe.id,
                    Entry::packed(pe.id, id, at.offset, pe.offset, pe.len as u64, at.compressed),
                );
            }
            self.rep.salvaged += entries.len() as u64;
        }
        let (_, len) = active.seal()?;
        self.rep.sealed += 1;
        Ok(len)
    }

    /// Names the manifests whose chunks are not all there (indexed all the
    /// same: `verify` then names them, chunk by chunk).
    pub(super) fn name_incomplete_manifests(&mut self) {
        for (mid, keys) in &self.manifests {
            let indexed = self.map.get(mid).is_some_and(|e| e.is_manifest());
            let missing = keys
                .iter()
                .filter(|k| !self.map.get(k).is_some_and(|e| e.is_chunk()))
                .count();
            if indexed && missing > 0 && !self.rep.lost.contains(&mid.to_hex()) {
                self.rep
                    .lost
                    .push(format!("{} ({missing} of its chunks unreadable)", mid.to_hex()));
            }
        }
    }

    /// Gives each rebuilt record the placement the old index gave it.
    pub(super) fn place(&mut self, placed: &std::collections::HashMap<ArtifactId, crate::index::entry::Placement>) {
        for (id, e) in self.map.iter_mut() {
            if let Some(p) = placed.get(id) {
                *e = e.placed(p);
            }
        }
    }

    /// Writes the rebuilt state: one index file, a new log, the checkpoint
    /// (with the recovered snapshots and pins), `STORE` when it was
    /// missing; then removes the old index and log files.
    pub(super) fn write_state(
        mut self,
        layout: &Layout,
        store_id: u64,
        write_store_file: bool,
        last_segment: Option<u32>,
        snapshots: &BTreeMap<String, Arc<SnapshotHandle>>,
        pins: Vec<(String, ArtifactId)>,
    ) -> Result<RepairReport> {
        let io = &*layout.io;
        self.rep.artifacts = self.map.values().filter(|e| !e.is_tombstone() && !e.is_chunk()).count() as u64;
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for e in self.map.values() {
            *live.entry(e.segment).or_default() += e.usage();
        }
        for s in &mut self.segs {
            s.total = self.totals.get(&s.id).copied().unwrap_or(0);
            s.live = live.get(&s.id).copied().unwrap_or(0);
        }
        let next_index = max_file_number(io, &layout.index_dir(), ".idx") + 1;
        let log_file = max_file_number(io, &layout.log_dir(), ".log") + 1;
        let index_path = write_index(
            io,
            &layout.index_dir(),
            next_index,
            self.map.len() as u64,
            self.map.values().copied().map(Ok),
        )?;
        LogWriter::create(io, &layout.log(log_file), 1, store_id)?;
        let ckpt = Checkpoint {
            version: crate::version::FormatVersion::CURRENT,
            store_id,
            next_seq: 1,
            log_file,
            next_segment: last_segment.map(|i| i + 1).unwrap_or(1),
            next_index: next_index + 1,
            index_files: vec![next_index],
            segments: self.segs,
            snapshots: snapshots.values().map(|h| h.meta.clone()).collect(),
            pins,
        };
        write_atomic(io, &layout.checkpoint(), &ckpt.encode())?;
        if write_store_file {
            write_atomic(io, &layout.store_file(), &encode_store_file(store_id))?;
        }
        for (dir, keep) in [
            (
                layout.index_dir(),
                index_path.file_name().map(|n| n.to_string_lossy().into_owned()),
            ),
            (layout.log_dir(), Some(log_file_name(log_file))),
        ] {
            for name in io.list(&dir).ctx(|| format!("list {}", dir.display()))? {
                if Some(&name) != keep.as_ref() {
                    let _ = io.remove(&dir.join(&name));
                }
            }
            sync_dir(io, &dir)?;
        }
        Ok(self.rep)
    }
}
