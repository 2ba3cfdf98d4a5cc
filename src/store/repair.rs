//! Rebuilding a store's index, log and checkpoint from its segment files
//! alone, keeping the snapshot catalog when it can.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::block::format::Compression;
use crate::block::scan::Contents;
use crate::block::segment::{
    parse_segment_file_name, scan, segment_file_name, ActiveSegment, ScannedBlock, FOOTER_LEN, SEGMENT_HEADER_LEN,
};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::file::{write_index, IndexFile};
use crate::snapshot::catalog::SnapshotMeta;
use crate::snapshot::checkpoint::{Checkpoint, SegmentState};
use crate::snapshot::log::{log_file_name, LogWriter};

use super::layout::{decode_store_file, encode_store_file, Layout};
use super::{lock_store, Store, StoreOptions};

/// The result of [`Store::repair`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Segment files read.
    pub segments: u64,
    /// Files (or torn tails) moved to `quarantine/` because they could not be
    /// parsed as this store's segments, with the reason. Nothing is deleted.
    pub quarantined: Vec<String>,
    /// Blocks read.
    pub blocks: u64,
    /// Blocks whose checksum failed.
    pub bad_blocks: u64,
    /// Byte ranges inside segments where no block header could be read; the
    /// scan resumed after each at the next valid block.
    pub damaged_regions: u64,
    /// Artifacts of damaged packed blocks kept because their own BLAKE3 proves
    /// their bytes.
    pub salvaged: u64,
    /// Artifacts found to be unreadable (hex ids), or a description where the
    /// damage hides the ids. Empty when nothing was lost.
    pub lost: Vec<String>,
    /// Live artifacts in the rebuilt index.
    pub artifacts: u64,
    /// Removals replayed from tombstone blocks.
    pub tombstones: u64,
    /// Bytes cut from torn segment tails (kept in `quarantine/`).
    pub truncated_bytes: u64,
    /// Segments that had no footer and were sealed.
    pub sealed: u64,
}

impl RepairReport {
    /// True when repair lost or set aside nothing.
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty() && self.quarantined.is_empty()
    }
}

impl Store {
    /// Rebuilds the index, log and checkpoint of the store at `path` from its
    /// segment files alone (for a store whose index or log was lost or damaged).
    /// Takes the writer lock.
    ///
    /// Repair never makes a store worse: it deletes nothing and rewrites no
    /// byte it cannot parse. A segment whose header does not check (damaged,
    /// foreign, misnamed, or of an unknown version) is moved to `quarantine/`;
    /// a torn tail is copied there before it is cut; inside a segment, the
    /// scan resynchronises after a damaged block at the next valid one, and the
    /// artifacts of a damaged uncompressed packed block that their own BLAKE3
    /// still proves are kept. The report lists what was salvaged, lost and
    /// quarantined.
    pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        Self::repair_with(path.as_ref(), &StoreOptions::new())
    }

    pub(crate) fn repair_with(path: &Path, opts: &StoreOptions) -> Result<RepairReport> {
        let layout = Layout::new(path, opts.backend.clone());
        let io = &*layout.io;
        let seg_dir = layout.segment_dir();
        if !io.is_dir(&seg_dir) {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "no segments directory".into(),
            });
        }
        let known_id = match io.read(&layout.store_file()) {
            Ok(b) => match decode_store_file(&b) {
                Ok(id) => Some(id),
                // A store from a newer version is not this build's to rewrite.
                Err(e @ crate::error::DecodeError::UnsupportedVersion { .. }) => {
                    return Err(Error::NotAStore {
                        path: path.to_path_buf(),
                        reason: format!("{e}; repair refuses to rewrite it"),
                    })
                }
                Err(_) => None,
            },
            Err(_) => None,
        };
        for d in [layout.log_dir(), layout.index_dir()] {
            io.create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        }
        let _lock = lock_store(&layout)?;
        let mut ids: Vec<u32> = Vec::new();
        for name in io.list(&seg_dir).ctx(|| format!("list {}", seg_dir.display()))? {
            if let Some(id) = parse_segment_file_name(&name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let (metas, pins) = recover_catalog(&layout);
        let snapshots = super::open_snapshots(&layout, metas.into_iter().map(|m| (m.name.clone(), m)).collect())?;
        let pin_map: BTreeMap<String, ArtifactId> = pins.iter().cloned().collect();
        let mut totals: BTreeMap<u32, u64> = BTreeMap::new();
        let mut rep = RepairReport::default();
        let mut store_id = known_id;
        let mut map: BTreeMap<ArtifactId, Entry> = BTreeMap::new();
        let mut segs = Vec::new();
        for id in &ids {
            let p = layout.segment(*id);
            let bytes = io.read(&p).ctx(|| format!("read {}", p.display()))?;
            let sc = scan(&bytes);
            let why = match &sc.header {
                Ok(h) if h.id != *id => Some(format!("header names segment {}", h.id)),
                Ok(h) if store_id.is_some_and(|s| s != h.store_id) => Some("belongs to another store".into()),
                Ok(_) => None,
                Err(e) => Some(format!("segment header: {e}")),
            };
            if let Some(why) = why {
                // Its blocks may still be readable; name what it held, keep it.
                let (blocks, _, _) = crate::block::segment::scan_blocks(&bytes, SEGMENT_HEADER_LEN, bytes.len() as u64);
                for b in &blocks {
                    if let Ok(c) = &b.contents {
                        rep.lost.extend(c.artifacts().iter().map(|a| a.0.to_hex()));
                    }
                }
                quarantine_file(&layout, &p, &mut rep, &why)?;
                continue;
            }
            let Ok(h) = sc.header else { continue };
            store_id = Some(h.store_id);
            rep.segments += 1;
            rep.damaged_regions += sc.damaged.len() as u64;
            // Chunk blocks that read back whole, to tell which large artifacts
            // are still complete.
            let good_chunks: std::collections::HashSet<u64> = sc
                .blocks
                .iter()
                .filter(|b| matches!(b.contents, Ok(Contents::Chunk)))
                .map(|b| b.offset)
                .collect();
            for b in &sc.blocks {
                rep.blocks += 1;
                let compressed = b.header.compression == Compression::Zstd;
                let contents = match &b.contents {
                    Ok(c) => c,
                    Err(_) => {
                        rep.bad_blocks += 1;
                        salvage(&bytes, *id, b, &mut map, &mut totals, &mut rep);
                        continue;
                    }
                };
                match contents {
                    Contents::Packed { entries, .. } => {
                        for pe in entries {
                            *totals.entry(*id).or_default() += pe.len as u64;
                            let e = Entry::packed(pe.id, *id, b.offset, pe.offset, pe.len as u64, compressed);
                            map.insert(pe.id, e);
                        }
                    }
                    Contents::Trailer(t) => {
                        *totals.entry(*id).or_default() += t.len;
                        if t.chunks.iter().any(|c| !good_chunks.contains(&c.offset)) {
                            // Indexed all the same: verify then names it.
                            rep.lost.push(t.id.to_hex());
                        }
                        map.insert(t.id, Entry::large(t.id, *id, b.offset, t.len));
                    }
                    Contents::Tombstones(ts) => {
                        for (tid, _) in ts {
                            // A removed artifact a snapshot or pin still holds
                            // keeps its location, as a tombstone.
                            let held = match map.get(tid) {
                                Some(e) => super::held_by(&pin_map, &snapshots, e, None)?,
                                None => false,
                            };
                            if held {
                                if let Some(e) = map.get_mut(tid) {
                                    *e = e.removed();
                                }
                                rep.tombstones += 1;
                            } else if map.remove(tid).is_some() {
                                rep.tombstones += 1;
                            }
                        }
                    }
                    Contents::Chunk => {}
                }
            }
            let len = match sc.footer {
                Some(f) => f.data_len + FOOTER_LEN,
                None => {
                    // No footer: the segment was open. Keep the torn tail (if
                    // any) in quarantine, cut it and seal the segment.
                    let end = sc.end.max(SEGMENT_HEADER_LEN);
                    if end < sc.file_len {
                        let name = format!("{}.tail-at-{end}", segment_file_name(*id));
                        let tail = layout.quarantine_dir().join(name);
                        io.create_dir_all(&layout.quarantine_dir())
                            .ctx(|| format!("create {}", layout.quarantine_dir().display()))?;
                        write_atomic(io, &tail, &bytes[end as usize..])?;
                        rep.truncated_bytes += sc.file_len - end;
                    }
                    let kept: Vec<&ScannedBlock> = sc.blocks.iter().filter(|b| b.offset < end).collect();
                    let raw_total = kept.iter().map(|b| b.header.raw_len as u64).sum();
                    let (_, len) = ActiveSegment::adopt(io, &p, &h, end, kept.len() as u64, raw_total)?.seal()?;
                    rep.sealed += 1;
                    len
                }
            };
            segs.push(SegmentState::new(*id, len, true));
        }
        let Some(store_id) = store_id else {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "no STORE file and no readable segment".into(),
            });
        };
        rep.artifacts = map.values().filter(|e| !e.is_tombstone()).count() as u64;
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for e in map.values() {
            *live.entry(e.segment).or_default() += e.len;
        }
        for s in &mut segs {
            s.total = totals.get(&s.id).copied().unwrap_or(0);
            s.live = live.get(&s.id).copied().unwrap_or(0);
        }
        let next_index = max_file_number(io, &layout.index_dir(), ".idx") + 1;
        let log_file = max_file_number(io, &layout.log_dir(), ".log") + 1;
        let index_path = write_index(
            io,
            &layout.index_dir(),
            next_index,
            map.len() as u64,
            map.values().copied().map(Ok),
        )?;
        LogWriter::create(io, &layout.log(log_file), 1, store_id)?;
        let ckpt = Checkpoint {
            version: crate::version::FormatVersion::CURRENT,
            store_id,
            next_seq: 1,
            log_file,
            next_segment: ids.last().map(|i| i + 1).unwrap_or(1),
            next_index: next_index + 1,
            index_files: vec![next_index],
            segments: segs,
            snapshots: snapshots.values().map(|h| h.meta.clone()).collect(),
            pins,
        };
        write_atomic(io, &layout.checkpoint(), &ckpt.encode())?;
        if known_id.is_none() {
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
        Ok(rep)
    }
}

/// Moves a file repair cannot use to `quarantine/` (never deletes it).
fn quarantine_file(layout: &Layout, p: &Path, rep: &mut RepairReport, why: &str) -> Result<()> {
    let io = &*layout.io;
    let q = layout.quarantine_dir();
    io.create_dir_all(&q).ctx(|| format!("create {}", q.display()))?;
    let name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let to = q.join(name);
    io.rename(p, &to)
        .ctx(|| format!("move {} to {}", p.display(), to.display()))?;
    sync_dir(io, &q)?;
    if let Some(dir) = p.parent() {
        sync_dir(io, dir)?;
    }
    rep.quarantined.push(format!("{}: {why}", to.display()));
    Ok(())
}

/// Keeps what a block whose checksum failed still proves: each artifact of an
/// uncompressed packed block whose bytes hash to its id (reads check exactly
/// that, so it stays readable); the ids of the rest are reported lost.
fn salvage(
    bytes: &[u8],
    seg: u32,
    b: &ScannedBlock,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
    rep: &mut RepairReport,
) {
    use crate::block::format::{decode_packed_table, BlockKind, LargeTrailer, BLOCK_HEADER_LEN};
    let start = b.offset as usize + BLOCK_HEADER_LEN;
    let stored = &bytes[start..start + b.header.stored_len as usize];
    let what = format!("segment {seg}, block at {}", b.offset);
    match (b.header.kind, b.header.compression) {
        (BlockKind::Packed, Compression::None) => match decode_packed_table(stored, b.header.count) {
            Ok(entries) => {
                for pe in entries {
                    let body = &stored[pe.offset as usize..(pe.offset + pe.len) as usize];
                    if ArtifactId::of(body) == pe.id {
                        *totals.entry(seg).or_default() += pe.len as u64;
                        map.insert(
                            pe.id,
                            Entry::packed(pe.id, seg, b.offset, pe.offset, pe.len as u64, false),
                        );
                        rep.salvaged += 1;
                    } else {
                        rep.lost.push(pe.id.to_hex());
                    }
                }
            }
            Err(_) => rep
                .lost
                .push(format!("{what}: {} artifacts (entry table damaged)", b.header.count)),
        },
        (BlockKind::Packed, _) => rep.lost.push(format!(
            "{what}: {} artifacts (compressed body damaged)",
            b.header.count
        )),
        (k @ (BlockKind::LargeTrailer | BlockKind::TreeTrailer), _) => match LargeTrailer::decode_kind(k, stored) {
            Ok(t) => rep.lost.push(t.id.to_hex()),
            Err(_) => rep.lost.push(format!("{what}: a large artifact (trailer damaged)")),
        },
        // A damaged chunk is reported through the trailer that names it.
        (BlockKind::LargeChunk, _) => {}
        (BlockKind::Tombstones, _) => rep.lost.push(format!(
            "{what}: {} removals (the artifacts may be live again)",
            b.header.count
        )),
    }
}

/// The snapshot catalog and pins of a store being repaired: from its checkpoint
/// and log when they are readable; otherwise every snapshot file still on disk
/// is registered again as `recovered-<identity prefix>` (pins are then lost;
/// the report says so).
type Catalog = (Vec<SnapshotMeta>, Vec<(String, ArtifactId)>);

fn recover_catalog(layout: &Layout) -> Catalog {
    let io = &*layout.io;
    let from_log = || -> Option<Catalog> {
        let ckpt = Checkpoint::decode(&io.read(&layout.checkpoint()).ok()?).ok()?;
        // Only the catalog is wanted; a log that does not continue the
        // checkpoint adds nothing to it.
        let log = crate::snapshot::log::read(io, &layout.log(ckpt.log_file)).ok();
        let (metas, pins) = match log.and_then(|l| crate::snapshot::replay::replay(&ckpt, &l).ok()) {
            Some(r) => (r.snapshots, r.pins),
            None => (
                ckpt.snapshots.into_iter().map(|m| (m.name.clone(), m)).collect(),
                ckpt.pins.into_iter().collect(),
            ),
        };
        let all_there = metas.values().all(|m| io.is_file(&layout.snapshot(&m.identity)));
        all_there.then(|| (metas.into_values().collect(), pins.into_iter().collect()))
    };
    if let Some(c) = from_log() {
        return c;
    }
    let mut metas = Vec::new();
    let dir = layout.snapshot_dir();
    for name in io.list(&dir).into_iter().flatten() {
        let Some(hex) = name.strip_suffix(".idx") else { continue };
        let Ok(id) = hex.parse::<ArtifactId>() else { continue };
        let Ok(f) = IndexFile::open(io, &dir.join(&name)) else {
            continue;
        };
        let mut hasher = crate::snapshot::current::CurrentHasher::default();
        let mut bytes = 0;
        let mut ok = true;
        for i in 0..f.len() {
            match f.entry(i) {
                Ok(x) => {
                    hasher.add(&x);
                    bytes += x.len;
                }
                Err(_) => ok = false,
            }
        }
        // Only a file whose content matches its name is trusted.
        if !ok || hasher.finish().0 != *id.as_bytes() {
            continue;
        }
        // The file's own time is not kept by every backend: the snapshot is
        // dated by its recovery.
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        metas.push(SnapshotMeta {
            name: format!("recovered-{}", &hex[..12]),
            identity: crate::snapshot::CurrentId(*id.as_bytes()),
            created,
            artifacts: f.len(),
            bytes,
        });
    }
    (metas, Vec::new())
}

fn max_file_number(io: &dyn crate::io::Backend, dir: &Path, ext: &str) -> u64 {
    io.list(dir)
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.strip_suffix(ext).and_then(|s| s.parse::<u64>().ok()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
