//! Rebuilding a store's index, log and checkpoint from its segment files
//! alone, keeping the snapshot catalog when it can.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::block::format::Compression;
use crate::block::scan::Contents;
use crate::block::segment::{parse_segment_file_name, scan, ActiveSegment, FOOTER_LEN, SEGMENT_HEADER_LEN};
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
    /// Segment files skipped (foreign, or unreadable header), with the reason.
    pub skipped: Vec<String>,
    /// Blocks read.
    pub blocks: u64,
    /// Blocks whose checksum failed (their artifacts are lost).
    pub bad_blocks: u64,
    /// Live artifacts in the rebuilt index.
    pub artifacts: u64,
    /// Removals replayed from tombstone blocks.
    pub tombstones: u64,
    /// Bytes cut from torn segment tails.
    pub truncated_bytes: u64,
    /// Segments that had no footer and were sealed.
    pub sealed: u64,
}

impl Store {
    /// Rebuilds the index, log and checkpoint of the store at `path` from its
    /// segment files alone (for a store whose index or log was lost or damaged).
    /// Torn segment tails are cut and those segments sealed. Takes the writer lock.
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
        for d in [layout.log_dir(), layout.index_dir()] {
            io.create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        }
        let _lock = lock_store(&layout)?;
        let known_id = io
            .read(&layout.store_file())
            .ok()
            .and_then(|b| decode_store_file(&b).ok());
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
            let h = match sc.header {
                Ok(h) if h.id == *id && store_id.is_none_or(|s| s == h.store_id) => h,
                Ok(_) => {
                    rep.skipped
                        .push(format!("{}: belongs to another store or is misnamed", p.display()));
                    continue;
                }
                Err(e) => {
                    rep.skipped.push(format!("{}: {e}", p.display()));
                    continue;
                }
            };
            store_id = Some(h.store_id);
            rep.segments += 1;
            for b in &sc.blocks {
                rep.blocks += 1;
                let Ok(contents) = &b.contents else {
                    rep.bad_blocks += 1;
                    continue;
                };
                let compressed = b.header.compression == Compression::Zstd;
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
                    // No footer: the segment was open. Cut any torn tail and seal it.
                    let end = sc.end.max(SEGMENT_HEADER_LEN);
                    rep.truncated_bytes += sc.file_len - end;
                    // The block writer's own reopen (cut the tail, recount the
                    // blocks) and seal (footer, fsync) do it.
                    let (_, len) = ActiveSegment::reopen(io, &p, *id, h.store_id, end)?.seal()?;
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
