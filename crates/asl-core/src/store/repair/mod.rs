//! Rebuilding a store's index, log and checkpoint from its segment files,
//! keeping the snapshot catalog and the artifacts' placements when the old
//! files still read.

use std::collections::BTreeMap;
use std::path::Path;

use crate::block::segment::{parse_segment_file_name, segment_file_name, SEGMENT_HEADER_LEN};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::id::ArtifactId;
use crate::index::file::IndexFile;
use crate::snapshot::catalog::SnapshotMeta;
use crate::snapshot::checkpoint::Checkpoint;

mod gather;
mod placements;
mod report;
mod salvage;

use super::layout::{decode_store_file, Layout};
use crate::store::{lock_store_waiting, Store, StoreOptions};
use gather::{Gathered, Held};
pub use report::RepairReport;

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
        Self::repair_with(path.as_ref(), &StoreOptions::new(), None)
    }

    pub(crate) fn repair_with(
        path: &Path,
        opts: &StoreOptions,
        progress: Option<crate::ProgressFn<'_>>,
    ) -> Result<RepairReport> {
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
        let _lock = lock_store_waiting(&layout, opts.lock_wait)?;
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
        let placed = placements::old_placements(&layout, old.as_ref());
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
        let held = Held {
            pins: &pin_map,
            snapshots: &snapshots,
        };
        let mut g = Gathered::new(rep, known_id);
        // Every segment is read whole: their lengths are the work.
        let lens: Vec<u64> = ids
            .iter()
            .map(|id| io.file_len(&layout.segment(*id)).unwrap_or(0))
            .collect();
        let meter = crate::Meter::new(progress, "segments", lens.iter().sum());
        for (id, len) in ids.iter().zip(lens) {
            g.segment(&layout, *id, committed.as_ref(), &held)?;
            meter.add(len);
        }
        let Some(store_id) = g.store_id else {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "no STORE file and no readable segment".into(),
            });
        };
        g.name_incomplete_manifests();
        g.place(&placed);
        g.write_state(
            &layout,
            store_id,
            known_id.is_none(),
            ids.last().copied(),
            &snapshots,
            pins,
        )
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
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return Ok(None);
    }
    let (blocks, _, _) = crate::block::segment::scan_blocks(bytes, SEGMENT_HEADER_LEN, bytes.len() as u64);
    if !blocks.iter().any(|b| b.contents.is_ok()) {
        return Ok(None);
    }
    let h = crate::block::segment::SegmentHeader {
        // The oldest version that can hold what the blocks are.
        version: crate::block::lossy::oldest_version_holding(&blocks),
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
