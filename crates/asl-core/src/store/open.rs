//! Opening a store: the writer lock, STORE, checkpoint and log replay, the
//! segment table and the open segment, snapshots, leftovers of interrupted
//! work; and creating a new store's layout.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::segment::{parse_segment_file_name, ActiveSegment, Segment};
use crate::error::{DecodeError, Error, IoContext, Result};
use crate::fsutil::{read, sync_dir, write_atomic};
use crate::index::file::IndexFile;
use crate::io::{Backend, LockGuard};
use crate::snapshot::catalog::SnapshotMeta;
use crate::snapshot::checkpoint::{Checkpoint, SegmentState};
use crate::snapshot::log::{self, LogWriter};
use crate::snapshot::replay::Memtable;
use crate::snapshot::CurrentId;
use crate::version::{FormatVersion, SegmentVersion};

use super::layout::{decode_store_file, encode_store_file, Layout};
use super::{block_cache, lock_store_waiting, pending, sorted, SnapshotHandle, State, Store, StoreOptions, Writer};

/// The names a new store's directory may already hold (a half-made store
/// from an interrupted create); anything else means it is not ours to use.
const LAYOUT_NAMES: &[&str] = &[
    "STORE",
    "LOCK",
    "CHECKPOINT",
    "CHECKPOINT.tmp",
    "log",
    "index",
    "segments",
    "snapshots",
    "quarantine",
    "BUCKET",
    "cache",
];

impl Store {
    pub(crate) fn open_with(path: &Path, opts: StoreOptions) -> Result<Self> {
        // A writer asked to take ZFS snapshots says at once when it cannot,
        // before a store is made or opened.
        #[cfg(feature = "zfs")]
        if opts.zfs && !opts.read_only {
            let on = path.ancestors().find(|p| p.exists()).unwrap_or(path);
            super::zfs::dataset_of(on)?;
        }
        let opts = super::tier::resolve(path, &opts, !opts.read_only)?.unwrap_or(opts);
        let layout = Layout::new(path, opts.backend.clone());
        let io = &*layout.io;
        let mut created_lock = None;
        if !io.is_file(&layout.store_file()) {
            if opts.create && !opts.read_only {
                created_lock = Some(create_layout(&layout, opts.lock_wait)?);
            } else if !io.is_dir(path) {
                return Err(Error::NotAStore {
                    path: path.to_path_buf(),
                    reason: "no such directory".into(),
                });
            } else {
                return Err(Error::NotAStore {
                    path: path.to_path_buf(),
                    reason: "no STORE file".into(),
                });
            }
        }
        let store_id = read_store_id(&layout)?;
        if opts.read_only {
            return retry_gone(|| Self::load(&layout, store_id, &opts, None));
        }
        // A store just created is still locked by us: keep that lock rather than
        // release and retake it (see `lock_store` for why a gap is unsafe).
        let lock = match created_lock {
            Some(l) => l,
            None => lock_store_waiting(&layout, opts.lock_wait)?,
        };
        Self::load(&layout, store_id, &opts, Some(lock))
    }

    fn load(layout: &Layout, store_id: u64, opts: &StoreOptions, lock: Option<Box<dyn LockGuard>>) -> Result<Self> {
        let writable = lock.is_some();
        let io = &*layout.io;
        let ckpt_path = layout.checkpoint();
        let Committed {
            ckpt,
            indexes,
            contents,
            damage: open_damage,
            replayed,
        } = read_committed(layout, store_id, writable)?;
        let log_path = layout.log(ckpt.log_file);
        let crate::snapshot::replay::Replayed {
            memtable,
            segments: seg_states,
            next_segment,
            snapshots: metas,
            pins,
            ..
        } = replayed;
        let snapshots = open_snapshots(layout, metas)?;
        let (segments, active) = open_segments(
            layout,
            &seg_states,
            store_id,
            writable.then_some(opts),
            &BTreeMap::new(),
        )?;
        let mut seg_states = seg_states;
        let upgrade = !ckpt.version.has_usage_counters();
        if upgrade {
            recount_usage(&memtable, &indexes, &segments, &mut seg_states)?;
        }
        let open_segs = seg_states.clone();
        let writer = if writable {
            let log = LogWriter::reopen(io, &log_path, &contents)?;
            // Cleanup deletes what this checkpoint does not name, which an
            // older checkpoint may still need. If the rename that installed
            // this one was never made durable (its directory fsync failed),
            // a power cut would bring the old one back with its files gone:
            // make this checkpoint durable before acting on it.
            io.open(&ckpt_path, crate::io::OpenMode::ReadWrite)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("fsync {}", ckpt_path.display()))?;
            sync_dir(io, &layout.root)?;
            cleanup(layout, &ckpt, &seg_states, &snapshots, opts.log_history)?;
            Some(Mutex::new(Writer::resumed(
                log,
                ckpt.log_file,
                active,
                next_segment,
                ckpt.next_index,
                seg_states,
            )))
        } else {
            None
        };
        let store = Self {
            layout: layout.clone(),
            store_id,
            opts: opts.clone(),
            state: Arc::new(RwLock::new(State {
                memtable,
                indexes,
                segments,
                snapshots,
                pins,
            })),
            writer,
            pending: RwLock::new(pending::Pending::default()),
            streams_done: parking_lot::Condvar::new(),
            atomic_done: parking_lot::Condvar::new(),
            block_cache: Arc::new(Mutex::new(block_cache::BlockCache::new(opts.block_cache))),
            large_lengths: Mutex::new(None),
            gc_lock: Mutex::new(()),
            frames: Mutex::new(super::read::FrameCache::default()),
            seen: RwLock::new(super::Seen {
                segs: open_segs,
                damage: open_damage,
                at: cursor_after(&ckpt, &contents),
            }),
            lock,
        };
        store.after_open(upgrade)?;
        Ok(store)
    }

    /// What a writer does once open: hands the backend the sealed segments
    /// an earlier run could not move, resumes the dictionary, closes an
    /// older-version open segment, and writes a recounted usage.
    fn after_open(&self, upgraded: bool) -> Result<()> {
        if self.writer.is_some() {
            // A backend that keeps sealed segments elsewhere takes those
            // an earlier run sealed but could not move (a no-op locally).
            for s in self.seen.read().segs.values().filter(|s| s.sealed) {
                self.layout.io.offload(&self.layout.segment(s.id));
            }
        }
        self.resume_dictionary();
        let old_active = self.writer.as_ref().is_some_and(|w| {
            w.lock()
                .active
                .as_ref()
                .is_some_and(|a| a.version != SegmentVersion::CURRENT)
        });
        if old_active {
            // An older segment may not hold the blocks this build writes
            // (tree trailers, framed blocks): close it, and the next write
            // starts a current-version segment.
            self.seal()?;
        }
        if upgraded && self.writer.is_some() {
            // Write the recounted usage into a current-version checkpoint, so
            // the old format is read only once.
            self.checkpoint()?;
        }
        Ok(())
    }
}

/// Runs a read-only load again while it fails on a file gone: a writer may
/// checkpoint between our reading CHECKPOINT and opening the files it
/// names (they are then deleted).
pub(super) fn retry_gone<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// Where the committed history ends after `contents`.
pub(super) fn cursor_after(ckpt: &Checkpoint, contents: &log::LogContents) -> super::changes::LogCursor {
    super::changes::LogCursor {
        log_file: ckpt.log_file,
        seq: contents.start_seq + contents.records.len() as u64,
    }
}

/// What the checkpoint and its log hold, read to open or refresh a handle.
pub(super) struct Committed {
    pub(super) ckpt: Checkpoint,
    pub(super) indexes: Vec<Arc<IndexFile>>,
    pub(super) contents: log::LogContents,
    pub(super) damage: OpenDamage,
    pub(super) replayed: crate::snapshot::replay::Replayed,
}

pub(super) fn read_committed(layout: &Layout, store_id: u64, writable: bool) -> Result<Committed> {
    let io = &*layout.io;
    let ckpt_path = layout.checkpoint();
    let ckpt = Checkpoint::decode(&read(io, &ckpt_path)?).map_err(|e| Error::corrupt(&ckpt_path, e))?;
    if ckpt.store_id != store_id {
        return Err(Error::corrupt(&ckpt_path, "checkpoint belongs to another store"));
    }
    let mut indexes = Vec::new();
    for id in &ckpt.index_files {
        indexes.push(Arc::new(IndexFile::open(io, &layout.index(*id))?));
    }
    let log_path = layout.log(ckpt.log_file);
    let (contents, damage) = read_log(io, &log_path, &ckpt, writable)?;
    let replayed = crate::snapshot::replay::replay(&ckpt, &contents).map_err(|e| Error::corrupt(&log_path, e))?;
    Ok(Committed {
        ckpt,
        indexes,
        contents,
        damage,
        replayed,
    })
}

/// Damage found at open that a read-only store opens past: (file, what).
type OpenDamage = Vec<(PathBuf, String)>;

/// The log after the checkpoint. Damage in it refuses a writer; a reader
/// sees the state before the damage, and the damage is reported.
fn read_log(
    io: &dyn Backend,
    log_path: &Path,
    ckpt: &Checkpoint,
    writable: bool,
) -> Result<(log::LogContents, OpenDamage)> {
    let mut open_damage = Vec::new();
    let contents = match log::read(io, log_path) {
        Ok(c) => c,
        // A log whose header is damaged (cut short, flipped) holds nothing
        // readable: a writer is refused, as for any damage in the log;
        // readers see what the checkpoint holds.
        Err(e) if e.is_corruption() && !writable => {
            open_damage.push((log_path.to_path_buf(), format!("{e} (run `aslctl repair`)")));
            log::LogContents {
                start_seq: ckpt.next_seq,
                store_id: ckpt.store_id,
                ..Default::default()
            }
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(d) = &contents.damage {
        // Replaying on would build on a hole, and a writer would cut the
        // open segment back to the last readable commit, destroying the
        // bytes repair needs. Readers see the state before the damage.
        if writable {
            return Err(Error::corrupt(log_path, d));
        }
        open_damage.push((log_path.to_path_buf(), d.to_string()));
    }
    Ok((contents, open_damage))
}

/// The segments a store reads, by id.
type Segments = BTreeMap<u32, Arc<Segment>>;

/// Opens every segment CURRENT names: sealed ones for reading (those
/// already open sealed in `reuse` taken from there), the open one reopened
/// for appending when `writer` (its options) is given.
pub(super) fn open_segments(
    layout: &Layout,
    states: &BTreeMap<u32, SegmentState>,
    store_id: u64,
    writer: Option<&StoreOptions>,
    reuse: &Segments,
) -> Result<(Segments, Option<ActiveSegment>)> {
    let io = &*layout.io;
    let mut segments = BTreeMap::new();
    let mut active = None;
    for s in states.values() {
        let path = layout.segment(s.id);
        if let Some(seg) = reuse.get(&s.id).filter(|g| s.sealed && g.sealed_data_len().is_some()) {
            segments.insert(s.id, seg.clone());
            continue;
        }
        if s.sealed {
            segments.insert(s.id, Arc::new(Segment::open_sealed(io, &path, s.id, store_id)?));
            continue;
        }
        let reader = match writer {
            Some(opts) => {
                if active.is_some() {
                    return Err(Error::corrupt(layout.checkpoint(), "more than one open segment"));
                }
                let a = active.insert(ActiveSegment::reopen(io, &path, s.id, store_id, s.len)?);
                a.reader(io, opts.active_map_reserve())?
            }
            None => Segment::open_active(io, &path, s.id, None)?,
        };
        segments.insert(s.id, Arc::new(reader));
    }
    Ok((segments, active))
}

impl Writer {
    /// The writer of a store just opened, resuming its log.
    fn resumed(
        log: LogWriter,
        log_file: u64,
        active: Option<ActiveSegment>,
        next_segment: u32,
        next_index: u64,
        seg_states: BTreeMap<u32, SegmentState>,
    ) -> Writer {
        Writer {
            log,
            log_file,
            active,
            tombstones: Vec::new(),
            batch: Vec::new(),
            next_segment,
            next_index,
            seg_states,
            usage_dirty: Default::default(),
            streams: 0,
            dir_dirty: false,
            poisoned: false,
            dict: None,
            dict_backoff: 0,
            chunk_refs: Default::default(),
            part_refs: Default::default(),
            sweep_due: true,
            catalog_dirty: false,
            atomic_owner: None,
            watch: None,
        }
    }
}

fn new_store_id(path: &Path) -> u64 {
    let mut h = blake3::Hasher::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    let b = h.finalize();
    let mut a = [0u8; 8];
    a.copy_from_slice(&b.as_bytes()[..8]);
    u64::from_le_bytes(a)
}

fn read_store_id(layout: &Layout) -> Result<u64> {
    let path = layout.store_file();
    let b = read(&*layout.io, &path)?;
    decode_store_file(&b).map_err(|e| match e {
        // Our magic with a bad checksum is a damaged store, not a foreign file.
        DecodeError::Checksum { .. } => Error::corrupt(&path, e),
        _ => Error::NotAStore {
            path: path.clone(),
            reason: e.to_string(),
        },
    })
}

/// Makes a new, empty store and returns its writer lock, still held. STORE is
/// written last, so a crash part-way leaves a directory that `create` finishes
/// next time and `open` refuses.
fn create_layout(layout: &Layout, lock_wait: std::time::Duration) -> Result<Box<dyn LockGuard>> {
    let root = &layout.root;
    let io = &*layout.io;
    io.create_dir_all(root).ctx(|| format!("create {}", root.display()))?;
    for name in io.list(root).ctx(|| format!("list {}", root.display()))? {
        if !LAYOUT_NAMES.iter().any(|n| name == *n) {
            return Err(Error::NotAStore {
                path: root.to_path_buf(),
                reason: format!("directory is not empty (holds {name:?}) and has no STORE file"),
            });
        }
    }
    let lock = lock_store_waiting(layout, lock_wait)?;
    for d in [
        layout.log_dir(),
        layout.index_dir(),
        layout.segment_dir(),
        layout.snapshot_dir(),
    ] {
        io.create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
    }
    let store_id = new_store_id(root);
    LogWriter::create(io, &layout.log(1), 1, store_id)?;
    let ckpt = Checkpoint {
        version: crate::version::FormatVersion::CURRENT,
        store_id,
        next_seq: 1,
        log_file: 1,
        next_segment: 1,
        next_index: 1,
        index_files: vec![],
        segments: vec![],
        snapshots: vec![],
        pins: vec![],
    };
    write_atomic(io, &layout.checkpoint(), &ckpt.encode())?;
    write_atomic(io, &layout.store_file(), &encode_store_file(store_id))?;
    sync_dir(io, root)?;
    Ok(lock)
}

/// Recomputes every segment's usage counters from CURRENT and the segments'
/// own block tables (for a checkpoint written before counters existed): live
/// is what the newest record of each live artifact points at, total everything
/// ever written into the segment up to its committed length.
pub(super) fn recount_usage(
    memtable: &Memtable,
    indexes: &[Arc<IndexFile>],
    segments: &BTreeMap<u32, Arc<Segment>>,
    states: &mut BTreeMap<u32, SegmentState>,
) -> Result<()> {
    use crate::block::scan::Blocks;
    for st in states.values_mut() {
        st.live = 0;
        st.total = 0;
    }
    let merged = crate::index::merge::Merged::new(sorted(memtable), indexes, None)?;
    for e in merged {
        let e = e?;
        if let (false, Some(st)) = (e.is_tombstone(), states.get_mut(&e.segment)) {
            st.live += e.usage();
        }
    }
    for (id, seg) in segments {
        let Some(st) = states.get_mut(id) else { continue };
        let end = seg.sealed_data_len().unwrap_or(st.len);
        for b in Blocks::new(&**seg, crate::block::segment::SEGMENT_HEADER_LEN, end) {
            let b = b.map_err(|stop| crate::block::segment::stop_error(&seg.path, stop))?;
            if b.header.kind.is_packed() || b.header.kind.is_trailer() {
                st.total += seg.contents(&b)?.artifacts().iter().map(|a| a.2).sum::<u64>();
            }
        }
    }
    Ok(())
}

/// Opens the index file of every snapshot in the catalog, once per identity.
/// A file that cannot be opened makes its snapshots damaged, not the store.
pub(crate) fn open_snapshots(
    layout: &Layout,
    metas: BTreeMap<String, SnapshotMeta>,
) -> Result<BTreeMap<String, Arc<SnapshotHandle>>> {
    type Opened = std::result::Result<Arc<IndexFile>, String>;
    let mut files: HashMap<CurrentId, Opened> = HashMap::new();
    let mut out = BTreeMap::new();
    for (name, meta) in metas {
        let path = layout.snapshot(&meta.identity);
        let opened = files
            .entry(meta.identity)
            .or_insert_with(|| {
                IndexFile::open(&*layout.io, &path)
                    .map(Arc::new)
                    .map_err(|e| match Error::from(e) {
                        Error::Corrupt { detail, .. } => detail,
                        other => other.to_string(),
                    })
            })
            .clone();
        out.insert(name, Arc::new(SnapshotHandle::new(meta, path, opened)));
    }
    Ok(out)
}

/// Removes what an interrupted operation left behind: temp files, index and log
/// files the checkpoint does not name, segments created after the last commit
/// or dropped by GC, and snapshot files no snapshot names.
fn cleanup(
    layout: &Layout,
    ckpt: &Checkpoint,
    segs: &BTreeMap<u32, SegmentState>,
    snapshots: &BTreeMap<String, Arc<SnapshotHandle>>,
    log_history: u64,
) -> Result<()> {
    let keep_index: Vec<String> = ckpt
        .index_files
        .iter()
        .map(|i| crate::index::file::index_file_name(*i))
        .collect();
    sweep(layout, &layout.index_dir(), |n| keep_index.iter().any(|k| k == n))?;
    // Retired logs the checkpoint no longer needs stay a while as history.
    let seg_bytes = segs.values().map(|g| g.len).sum();
    super::followers::prune_log_history(layout, ckpt.log_file, log_history, seg_bytes)?;
    // Every segment that holds anything is in the table: one created but never
    // committed, or one GC dropped (logged before its file is unlinked), is not.
    sweep(layout, &layout.segment_dir(), |n| match parse_segment_file_name(n) {
        Some(id) => segs.contains_key(&id),
        None => !n.ends_with(".tmp"),
    })?;
    let snap_dir = layout.snapshot_dir();
    if !layout.io.is_dir(&snap_dir) {
        layout
            .io
            .create_dir_all(&snap_dir)
            .ctx(|| format!("create {}", snap_dir.display()))?;
        return Ok(());
    }
    let keep: Vec<String> = snapshots
        .values()
        .map(|h| crate::snapshot::catalog::snapshot_file_name(&h.meta.identity))
        .collect();
    sweep(layout, &snap_dir, |n| keep.iter().any(|k| k == n))
}

fn sweep(layout: &Layout, dir: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    let io = &*layout.io;
    let mut removed = false;
    for name in io.list(dir).ctx(|| format!("list {}", dir.display()))? {
        if !keep(&name) {
            let p = dir.join(&name);
            io.remove(&p).ctx(|| format!("remove stale {}", p.display()))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(io, dir)?;
    }
    Ok(())
}
