//! Rebuilding a store's index, log and checkpoint from its segment files
//! alone, keeping the snapshot catalog when it can.

use std::collections::BTreeMap;
use std::path::Path;

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

mod report;
mod salvage;

use super::layout::{decode_store_file, encode_store_file, Layout};
use crate::store::{lock_store, Store, StoreOptions};
pub use report::RepairReport;
use salvage::{salvage, salvage_headerless, tail_survivors};

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
        let tiered = crate::store::tier::resolve(path, opts, true)?;
        let opts = tiered.as_ref().unwrap_or(opts);
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
        let old = read_old_state(&layout);
        let committed = old.as_ref().and_then(|o| o.replayed.as_ref()).map(|r| {
            r.segments
                .values()
                .map(|s| (s.id, (s.len, s.sealed)))
                .collect::<BTreeMap<u32, (u64, bool)>>()
        });
        let (metas, pins) = recover_catalog(&layout, old);
        let snapshots =
            crate::store::open_snapshots(&layout, metas.into_iter().map(|m| (m.name.clone(), m)).collect())?;
        let pin_map: BTreeMap<String, ArtifactId> = pins.iter().cloned().collect();
        let mut rep = RepairReport::default();
        for h in snapshots.values() {
            // A snapshot file is not rebuilt from segments (what it held is
            // not recorded anywhere else): it stays, damaged, for the user to
            // delete, and what it held is reported unreadable at it.
            if let Some(d) = h.damaged() {
                rep.lost.push(format!(
                    "{d} (what it holds cannot be read at it; delete it to drop it)"
                ));
            }
        }
        let mut totals: BTreeMap<u32, u64> = BTreeMap::new();
        let mut store_id = known_id;
        let mut map: BTreeMap<ArtifactId, Entry> = BTreeMap::new();
        // Each manifest's chunk keys, to name the artifacts whose chunks are
        // gone once every segment has been read.
        let mut manifests: Vec<(ArtifactId, Vec<ArtifactId>)> = Vec::new();
        let mut segs = Vec::new();
        for id in &ids {
            let p = layout.segment(*id);
            let mut bytes = io.read(&p).ctx(|| format!("read {}", p.display()))?;
            let mut sc = scan(&bytes);
            // A header that is merely damaged (not another store's, another
            // segment's or a newer version's) is rebuilt when the blocks
            // behind it read: the file name gives the id, the store gives
            // its id. The old header bytes are kept in quarantine.
            let mut rebuilt = false;
            if let (Err(e), Some(sid)) = (&sc.header, store_id) {
                if !matches!(e, crate::error::DecodeError::UnsupportedVersion { .. }) {
                    if let Some(h) = rebuild_header(&layout, &p, &bytes, *id, sid, &mut rep)? {
                        bytes[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&h.encode());
                        sc = scan(&bytes);
                        rebuilt = true;
                    }
                }
            }
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
            for (from, to) in &sc.damaged {
                // No header checks there, so what the bytes held is unknown,
                // but a raw packed block whose header alone is damaged still
                // names and proves its artifacts.
                let kept = salvage_headerless(&bytes, *id, *from, *to, &mut map, &mut totals);
                rep.salvaged += kept;
                rep.lost.push(format!(
                    "segment {id}, bytes {from}..{to}: no block header checks ({kept} artifacts salvaged by their \
                     BLAKE3; anything else there is unreadable)"
                ));
            }
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
                    Contents::Packed {
                        entries, frames: None, ..
                    } => {
                        for pe in entries {
                            *totals.entry(*id).or_default() += pe.len as u64;
                            let e = Entry::packed(pe.id, *id, b.offset, pe.offset, pe.len as u64, compressed);
                            map.insert(pe.id, e);
                        }
                    }
                    Contents::Packed {
                        frames: Some(frames), ..
                    } => {
                        for f in frames {
                            *totals.entry(*id).or_default() += f.raw_len as u64;
                            let e = Entry::framed(f.id, *id, b.offset, f.offset, f.raw_len as u64, f.compressed);
                            map.insert(f.id, e);
                        }
                    }
                    Contents::Dictionary => {}
                    Contents::Trailer(t) => {
                        *totals.entry(*id).or_default() += t.len;
                        if t.chunks.iter().any(|c| !good_chunks.contains(&c.offset)) {
                            // Indexed all the same: verify then names it.
                            rep.lost.push(t.id.to_hex());
                        }
                        map.insert(t.id, Entry::large(t.id, *id, b.offset, t.len));
                    }
                    Contents::CdcChunk { key, len } => {
                        *totals.entry(*id).or_default() += *len as u64;
                        map.insert(*key, Entry::chunk(*key, *id, b.offset, *len as u64, compressed));
                    }
                    Contents::Manifest(m) => {
                        let e = Entry::manifest(m.id, *id, b.offset, m.len);
                        *totals.entry(*id).or_default() += e.usage();
                        // A list kept in parts is named by its parts here: a
                        // part that is gone names the artifact; a chunk gone
                        // from a part that is here is found by `verify`.
                        let keys = m.chunks.iter().map(|c| c.key).chain(m.parts.iter().map(|p| p.key));
                        manifests.push((m.id, keys.collect()));
                        map.insert(m.id, e);
                    }
                    Contents::Tombstones(ts) => {
                        for (tid, _) in ts {
                            // A removed artifact a snapshot or pin still holds
                            // keeps its location, as a tombstone.
                            let held = match map.get(tid) {
                                Some(e) => crate::store::held_by(&pin_map, &snapshots, e, None)?,
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
            // A rebuilt header changes bytes the footer's checksum covers:
            // such a segment is sealed again (the old footer is parseable and
            // recomputed, so nothing unparsed is lost).
            let footer = sc.footer.filter(|_| !rebuilt);
            let len = match footer {
                Some(f) => f.data_len + FOOTER_LEN,
                None => {
                    // No footer: the segment was open. Keep the torn tail (if
                    // any) in quarantine, cut it and seal the segment.
                    let end = sc.end.max(SEGMENT_HEADER_LEN);
                    // What the old log says was committed into this segment
                    // tells a crash's unacknowledged tail from lost data.
                    match committed.as_ref().map(|c| c.get(id)) {
                        Some(Some(&(len, sealed))) => {
                            let data_end = if sealed { len.saturating_sub(FOOTER_LEN) } else { len };
                            if end < data_end {
                                rep.lost.push(format!(
                                    "segment {id}, bytes {end}..{data_end}: committed but cut off or unreadable"
                                ));
                            }
                        }
                        Some(None) => {}
                        None if end < sc.file_len => rep.lost.push(format!(
                            "segment {id}, bytes {end}..{}: cut off; the log that would say whether they were \
                             committed is unreadable",
                            sc.file_len
                        )),
                        None => {}
                    }
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
                    let survivors = tail_survivors(&bytes[end as usize..]);
                    let mut active = ActiveSegment::adopt(io, &p, &h, end, kept.len() as u64, raw_total)?;
                    if !survivors.is_empty() {
                        // The artifacts of a cut-off raw block that their
                        // BLAKE3 still proves go into a whole block of their
                        // own in place of the cut tail.
                        let mut b = crate::block::format::PackedBuilder::default();
                        for (sid, data) in &survivors {
                            b.push(*sid, data);
                        }
                        let (raw, entries) = b.finish();
                        let at = crate::block::writer::write_packed_raw(&mut active, &raw, &entries)?;
                        for pe in &entries {
                            *totals.entry(*id).or_default() += pe.len as u64;
                            map.insert(
                                pe.id,
                                Entry::packed(pe.id, *id, at.offset, pe.offset, pe.len as u64, at.compressed),
                            );
                        }
                        rep.salvaged += entries.len() as u64;
                    }
                    let (_, len) = active.seal()?;
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
        for (mid, keys) in &manifests {
            let indexed = map.get(mid).is_some_and(|e| e.is_manifest());
            let missing = keys
                .iter()
                .filter(|k| !map.get(k).is_some_and(|e| e.is_chunk()))
                .count();
            if indexed && missing > 0 && !rep.lost.contains(&mid.to_hex()) {
                // Indexed all the same: verify then names it, chunk by chunk.
                rep.lost
                    .push(format!("{} ({missing} of its chunks unreadable)", mid.to_hex()));
            }
        }
        rep.artifacts = map.values().filter(|e| !e.is_tombstone() && !e.is_chunk()).count() as u64;
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for e in map.values() {
            *live.entry(e.segment).or_default() += e.usage();
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

/// Writes a new header over a damaged one when the segment's blocks read
/// behind it; returns it, or `None` when nothing behind it reads (the file is
/// then quarantined as it is). The damaged bytes are copied to quarantine.
fn rebuild_header(
    layout: &Layout,
    p: &Path,
    bytes: &[u8],
    id: u32,
    store_id: u64,
    rep: &mut RepairReport,
) -> Result<Option<crate::block::segment::SegmentHeader>> {
    use crate::block::format::BlockKind;
    use crate::version::SegmentVersion;
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return Ok(None);
    }
    let (blocks, _, _) = crate::block::segment::scan_blocks(bytes, SEGMENT_HEADER_LEN, bytes.len() as u64);
    if !blocks.iter().any(|b| b.contents.is_ok()) {
        return Ok(None);
    }
    let tree = blocks.iter().any(|b| b.header.kind == BlockKind::TreeTrailer);
    let framed = blocks
        .iter()
        .any(|b| matches!(b.header.kind, BlockKind::Framed | BlockKind::Dictionary));
    let cdc = blocks
        .iter()
        .any(|b| matches!(b.header.kind, BlockKind::CdcChunk | BlockKind::Manifest));
    let parted = blocks
        .iter()
        .any(|b| matches!(&b.contents, Ok(crate::block::scan::Contents::Manifest(m)) if !m.parts.is_empty()));
    let h = crate::block::segment::SegmentHeader {
        // The oldest version that can hold what the blocks are.
        version: if parted {
            SegmentVersion::V5
        } else if cdc {
            SegmentVersion::V4
        } else if framed {
            SegmentVersion::V3
        } else if tree {
            SegmentVersion::V2
        } else {
            SegmentVersion::V1
        },
        id,
        store_id,
    };
    let io = &*layout.io;
    let q = layout.quarantine_dir();
    io.create_dir_all(&q).ctx(|| format!("create {}", q.display()))?;
    let saved = q.join(format!("{}.header", segment_file_name(id)));
    write_atomic(io, &saved, &bytes[..SEGMENT_HEADER_LEN as usize])?;
    let f = io
        .open(p, crate::io::OpenMode::ReadWrite)
        .ctx(|| format!("open {}", p.display()))?;
    f.write_all_at(&h.encode(), 0)
        .and_then(|_| f.sync_data())
        .ctx(|| format!("rewrite the header of {}", p.display()))?;
    rep.rebuilt_headers.push(format!(
        "{} (the damaged header is kept as {})",
        p.display(),
        saved.display()
    ));
    Ok(Some(h))
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

/// A snapshot catalog and its pins.
type Catalog = (Vec<SnapshotMeta>, Vec<(String, ArtifactId)>);

/// The old checkpoint and what its log replays to, read once for repair.
struct OldState {
    ckpt: Checkpoint,
    /// `None` when the log is unreadable or does not continue the checkpoint.
    replayed: Option<crate::snapshot::replay::Replayed>,
    /// The log was read to its end without damage.
    whole: bool,
}

fn read_old_state(layout: &Layout) -> Option<OldState> {
    let io = &*layout.io;
    let ckpt = Checkpoint::decode(&io.read(&layout.checkpoint()).ok()?).ok()?;
    let log = crate::snapshot::log::read(io, &layout.log(ckpt.log_file)).ok();
    let whole = log.as_ref().is_some_and(|l| l.damage.is_none());
    let replayed = log.and_then(|l| crate::snapshot::replay::replay(&ckpt, &l).ok());
    Some(OldState {
        whole: whole && replayed.is_some(),
        ckpt,
        replayed,
    })
}

/// The snapshot catalog and pins of a store being repaired: from its
/// checkpoint and log as far as they are readable; when they are not whole,
/// every snapshot file they do not name whose content hashes to its name is
/// registered again as `recovered-<identity prefix>` (pins the damaged part
/// named are lost; the report says what was lost).
fn recover_catalog(layout: &Layout, old: Option<OldState>) -> Catalog {
    let io = &*layout.io;
    let (mut metas, pins, whole): (BTreeMap<String, SnapshotMeta>, Vec<(String, ArtifactId)>, bool) = match old {
        Some(OldState {
            replayed: Some(r),
            whole,
            ..
        }) => (r.snapshots, r.pins.into_iter().collect(), whole),
        Some(OldState { ckpt, .. }) => (
            ckpt.snapshots.into_iter().map(|m| (m.name.clone(), m)).collect(),
            ckpt.pins,
            false,
        ),
        None => Default::default(),
    };
    let all_there = metas.values().all(|m| io.is_file(&layout.snapshot(&m.identity)));
    if whole && all_there {
        return (metas.into_values().collect(), pins);
    }
    // Snapshots the catalog names but whose file is gone cannot be read;
    // files it does not name (it was unreadable or incomplete) are taken in
    // again when their content hashes to their name.
    metas.retain(|_, m| io.is_file(&layout.snapshot(&m.identity)));
    let known: std::collections::HashSet<_> = metas.values().map(|m| m.identity).collect();
    let dir = layout.snapshot_dir();
    for name in io.list(&dir).into_iter().flatten() {
        let Some(hex) = name.strip_suffix(".idx") else { continue };
        let Ok(id) = hex.parse::<ArtifactId>() else { continue };
        let identity = crate::snapshot::CurrentId(*id.as_bytes());
        if known.contains(&identity) {
            continue;
        }
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
        if !ok || hasher.finish() != identity {
            continue;
        }
        // The file's own time is not kept by every backend: the snapshot is
        // dated by its recovery.
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = format!("recovered-{}", &hex[..12]);
        metas.insert(
            name.clone(),
            SnapshotMeta {
                name,
                identity,
                created,
                artifacts: f.len(),
                bytes,
            },
        );
    }
    (metas.into_values().collect(), pins)
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
