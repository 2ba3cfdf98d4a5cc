//! The store: one directory, one writer process, any number of readers.
//!
//! `Store` ties the layers together: it appends blocks to the open segment,
//! records index entries in the log, keeps the not-yet-checkpointed entries in
//! memory and the rest in mapped index files, and rebuilds that state on open
//! from the checkpoint plus the log tail.

mod block_cache;
mod checkpoint;
mod files_cache;
mod gc;
mod ingest;
mod large;
mod layout;
mod maint;
mod options;
mod packing;
mod pending;
mod read;
mod reader;
mod repair;
mod salvage;
mod snapshots;
mod write;
#[cfg(feature = "zfs")]
mod zfs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::block::segment::{parse_segment_file_name, ActiveSegment, Segment};
use crate::error::{DecodeError, Error, IoContext, Result};
use crate::fsutil::{read, sync_dir, write_atomic};
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::file::IndexFile;
use crate::io::LockGuard;
use crate::snapshot::catalog::SnapshotMeta;
use crate::snapshot::checkpoint::{Checkpoint, SegmentState};
use crate::snapshot::log::{self, LogWriter, Record};
use crate::snapshot::CurrentId;
use crate::version::{FormatVersion, SegmentVersion};

pub use gc::{GcOptions, GcReport, DEFAULT_THRESHOLD as DEFAULT_GC_THRESHOLD};
pub use ingest::{
    FileStamp, FilesCacheMode, IngestEvent, IngestInput, IngestOptions, IngestPlan, IngestReport, Ingested,
};
use layout::Layout;
pub use layout::{decode_store_file, encode_store_file};
pub use maint::{Problem, StoreStat, VerifyReport};
pub use options::{PutOptions, StoreOptions};
pub use read::{ArtifactInfo, ArtifactReader, Iter};
pub use repair::RepairReport;
pub use snapshots::{Retention, SnapshotDiff, SnapshotView};
pub use write::Put;

/// A content-addressed artifact store in one directory.
///
/// Writes are buffered into packed blocks and become durable at [`Store::commit`]
/// (one fsync of the segment, one of the log, however many puts came before).
/// Every read is verified against the artifact's BLAKE3 id or the block's CRC.
/// `Store` is `Send + Sync`: reads run concurrently with the writer.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use asl::Store;
///
/// let store = Store::create(dir.path())?;
/// let id = store.put(b"hello artifact")?;
/// store.commit()?;                       // durable from here on
/// assert_eq!(store.get(&id)?, b"hello artifact");
/// assert_eq!(id.to_hex(), blake3::hash(b"hello artifact").to_hex().as_str());
/// store.remove(&id)?;
/// store.commit()?;
/// assert!(!store.contains(&id)?);
/// # Ok::<(), asl::Error>(())
/// ```
pub struct Store {
    layout: Layout,
    store_id: u64,
    opts: StoreOptions,
    state: RwLock<State>,
    writer: Option<Mutex<Writer>>,
    /// Small artifacts put but not yet written (readable without the writer).
    pending: RwLock<pending::Pending>,
    /// Signalled when the last large artifact being streamed finishes.
    streams_done: parking_lot::Condvar,
    block_cache: Mutex<block_cache::BlockCache>,
    /// The lengths of large artifacts stored, built on first need (see
    /// `Store::may_hold_length`); `None` until then.
    large_lengths: Mutex<Option<std::collections::HashSet<u64>>>,
    /// What reading single frames of framed blocks needs again and again.
    frames: Mutex<read::FrameCache>,
    /// Segments as of opening: a read-only handle reads the open segment up to
    /// the committed length recorded here (a writer tracks its own).
    open_segs: BTreeMap<u32, SegmentState>,
    /// Damage found while opening that a read-only handle works around (a
    /// writer refuses to open over it): `verify` reports it.
    open_damage: Vec<(PathBuf, String)>,
    _lock: Option<Box<dyn LockGuard>>,
}

pub(crate) use crate::snapshot::replay::Memtable;

/// The memtable's records in id order.
pub(crate) fn sorted(m: &Memtable) -> Vec<Entry> {
    let mut v: Vec<Entry> = m.values().copied().collect();
    v.sort_unstable_by_key(|e| e.id);
    v
}

/// What readers look at; swapped under the write lock in short critical sections.
pub(crate) struct State {
    /// Records since the last checkpoint. Unordered for O(1) puts and lookups;
    /// the few operations that need id order sort a snapshot of it.
    pub(crate) memtable: Memtable,
    /// Newest first.
    pub(crate) indexes: Vec<Arc<IndexFile>>,
    pub(crate) segments: BTreeMap<u32, Arc<Segment>>,
    /// Named snapshots; several names may share one index file.
    pub(crate) snapshots: BTreeMap<String, Arc<SnapshotHandle>>,
    /// Pins by name.
    pub(crate) pins: BTreeMap<String, ArtifactId>,
}

/// [`State::held`] over a copy of the catalog (for long passes that must not
/// hold the state lock).
pub(crate) fn held_by(
    pins: &BTreeMap<String, ArtifactId>,
    snapshots: &BTreeMap<String, Arc<SnapshotHandle>>,
    rec: &Entry,
    except: Option<&CurrentId>,
) -> Result<bool> {
    if rec.visibility == crate::index::entry::Visibility::Published {
        return Ok(true);
    }
    if pins.values().any(|p| *p == rec.id) {
        return Ok(true);
    }
    let mut seen: Vec<&CurrentId> = Vec::new();
    for h in snapshots.values() {
        let ident = &h.meta.identity;
        if Some(ident) == except || seen.contains(&ident) {
            continue;
        }
        seen.push(ident);
        match h.file() {
            Ok(f) => {
                if f.get(&rec.id)?.is_some() {
                    return Ok(true);
                }
            }
            // What a damaged snapshot holds is unknown: it may hold anything,
            // so nothing it could hold is ever released.
            Err(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// A snapshot in the catalog with its mapped index file. A snapshot whose file
/// cannot be opened or fails its checks is kept in the catalog as damaged: it
/// fails alone (reads at it, `verify`), every other command goes on working,
/// and GC treats it as holding everything.
pub(crate) struct SnapshotHandle {
    pub(crate) meta: SnapshotMeta,
    pub(crate) path: PathBuf,
    opened: std::result::Result<Arc<IndexFile>, String>,
    /// The file's whole-body check, done once on first use.
    checked: std::sync::OnceLock<std::result::Result<(), String>>,
}

impl SnapshotHandle {
    pub(crate) fn new(meta: SnapshotMeta, path: PathBuf, opened: std::result::Result<Arc<IndexFile>, String>) -> Self {
        Self {
            meta,
            path,
            opened,
            checked: std::sync::OnceLock::new(),
        }
    }

    /// The snapshot's index file once its checksum, order and fanout have been
    /// checked (a damaged one could answer membership wrongly), or the damage.
    pub(crate) fn file(&self) -> Result<&Arc<IndexFile>> {
        let f = self.opened.as_ref().map_err(|e| self.damage(e))?;
        self.checked
            .get_or_init(|| {
                f.validate().map_err(|e| match Error::from(e) {
                    Error::Corrupt { detail, .. } => detail,
                    other => other.to_string(),
                })
            })
            .as_ref()
            .map_err(|e| self.damage(e))?;
        Ok(f)
    }

    /// The damage, when the file cannot be used (checks it on first call).
    pub(crate) fn damaged(&self) -> Option<String> {
        self.file().err().map(|e| e.to_string())
    }

    /// The opened file without the body check (for sharing it with a new
    /// snapshot of the same content).
    pub(crate) fn opened(&self) -> Option<&Arc<IndexFile>> {
        self.opened.as_ref().ok()
    }

    fn damage(&self, detail: &str) -> Error {
        Error::corrupt(&self.path, format!("snapshot {} is damaged: {detail}", self.meta.name))
    }
}

impl State {
    /// The newest record for `id` (tombstones included).
    pub(crate) fn newest(&self, id: &ArtifactId) -> Result<Option<Entry>> {
        if let Some(e) = self.memtable.get(id) {
            return Ok(Some(*e));
        }
        for f in &self.indexes {
            if let Some(e) = f.get(id)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Whether a snapshot, a pin or publication keeps `id` reachable outside
    /// CURRENT. `except` leaves out one snapshot index file (being deleted).
    pub(crate) fn held(&self, rec: &Entry, except: Option<&CurrentId>) -> Result<bool> {
        held_by(&self.pins, &self.snapshots, rec, except)
    }

    /// Whether the bytes `rec` points at must be kept: live in CURRENT or held.
    pub(crate) fn retains(&self, rec: &Entry) -> Result<bool> {
        Ok(!rec.is_tombstone() || self.held(rec, None)?)
    }
}

pub(crate) struct Writer {
    log: LogWriter,
    log_file: u64,
    active: Option<ActiveSegment>,
    tombstones: Vec<(ArtifactId, u16)>,
    batch: Vec<Record>,
    next_segment: u32,
    next_index: u64,
    seg_states: BTreeMap<u32, SegmentState>,
    /// Segments whose usage changed since the last commit.
    usage_dirty: std::collections::BTreeSet<u32>,
    /// Large artifacts streaming their chunks (the open segment stays open).
    streams: u32,
    dir_dirty: bool,
    poisoned: bool,
    /// The dictionary of the open segment's framed blocks (if it has one).
    dict: Option<crate::block::writer::SegmentDictionary>,
    /// Packed blocks to write before training a dictionary is tried again.
    dict_backoff: u32,
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
];

impl Store {
    /// Opens an existing store for writing (takes the writer lock).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        StoreOptions::new().open(path)
    }

    /// Opens the store at `path`, creating it first if the directory holds none.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        StoreOptions::new().create(true).open(path)
    }

    /// Opens an existing store read-only: no lock, the last committed state.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        StoreOptions::new().read_only(true).open(path)
    }

    /// Default options, for chaining.
    pub fn options() -> StoreOptions {
        StoreOptions::new()
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.layout.root
    }

    /// Artifacts up to this size are packed; larger ones are streamed into
    /// blocks of their own (see [`StoreOptions::small_threshold`]).
    pub fn small_threshold(&self) -> usize {
        self.opts.small_threshold
    }

    /// The options the store was opened with.
    pub fn config(&self) -> &StoreOptions {
        &self.opts
    }

    pub(crate) fn open_with(path: &Path, opts: StoreOptions) -> Result<Self> {
        let layout = Layout::new(path, opts.backend.clone());
        let io = &*layout.io;
        let mut created_lock = None;
        if !io.is_file(&layout.store_file()) {
            if opts.create && !opts.read_only {
                created_lock = Some(create_layout(&layout)?);
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
            // A writer may checkpoint between our reading CHECKPOINT and opening the
            // files it names (they are then deleted); start again when that happens.
            let mut attempt = 0;
            loop {
                match Self::load(&layout, store_id, &opts, None) {
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && attempt < 20 => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    r => return r,
                }
            }
        }
        // A store just created is still locked by us: keep that lock rather than
        // release and retake it (see `lock_store` for why a gap is unsafe).
        let lock = match created_lock {
            Some(l) => l,
            None => lock_store(&layout)?,
        };
        Self::load(&layout, store_id, &opts, Some(lock))
    }

    fn load(layout: &Layout, store_id: u64, opts: &StoreOptions, lock: Option<Box<dyn LockGuard>>) -> Result<Self> {
        let writable = lock.is_some();
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
        let contents = log::read(io, &log_path)?;
        let mut open_damage = Vec::new();
        if let Some(d) = &contents.damage {
            // Replaying on would build on a hole, and a writer would cut the
            // open segment back to the last readable commit, destroying the
            // bytes repair needs. Readers see the state before the damage.
            if writable {
                return Err(Error::corrupt(&log_path, d));
            }
            open_damage.push((log_path.clone(), d.to_string()));
        }
        let replayed = crate::snapshot::replay::replay(&ckpt, &contents).map_err(|e| Error::corrupt(&log_path, e))?;
        let crate::snapshot::replay::Replayed {
            memtable,
            segments: seg_states,
            next_segment,
            snapshots: metas,
            pins,
            ..
        } = replayed;
        let snapshots = open_snapshots(layout, metas)?;
        let mut segments = BTreeMap::new();
        let mut active = None;
        for s in seg_states.values() {
            let path = layout.segment(s.id);
            if s.sealed {
                segments.insert(s.id, Arc::new(Segment::open_sealed(io, &path, s.id, store_id)?));
            } else {
                if writable {
                    if active.is_some() {
                        return Err(Error::corrupt(&ckpt_path, "more than one open segment"));
                    }
                    active = Some(ActiveSegment::reopen(io, &path, s.id, store_id, s.len)?);
                }
                segments.insert(s.id, Arc::new(Segment::open_active(io, &path, s.id)?));
            }
        }
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
            cleanup(layout, &ckpt, &seg_states, &snapshots)?;
            Some(Mutex::new(Writer {
                log,
                log_file: ckpt.log_file,
                active,
                tombstones: Vec::new(),
                batch: Vec::new(),
                next_segment,
                next_index: ckpt.next_index,
                seg_states,
                usage_dirty: Default::default(),
                streams: 0,
                dir_dirty: false,
                poisoned: false,
                dict: None,
                dict_backoff: 0,
            }))
        } else {
            None
        };
        let store = Self {
            layout: layout.clone(),
            store_id,
            opts: opts.clone(),
            state: RwLock::new(State {
                memtable,
                indexes,
                segments,
                snapshots,
                pins,
            }),
            writer,
            pending: RwLock::new(pending::Pending::default()),
            streams_done: parking_lot::Condvar::new(),
            block_cache: Mutex::new(block_cache::BlockCache::new(opts.block_cache)),
            large_lengths: Mutex::new(None),
            frames: Mutex::new(read::FrameCache::default()),
            open_segs,
            open_damage,
            _lock: lock,
        };
        store.resume_dictionary();
        let old_active = store.writer.as_ref().is_some_and(|w| {
            w.lock()
                .active
                .as_ref()
                .is_some_and(|a| a.version != SegmentVersion::CURRENT)
        });
        if old_active {
            // An older segment may not hold the blocks this build writes
            // (tree trailers, framed blocks): close it, and the next write
            // starts a current-version segment.
            store.seal()?;
        }
        if upgrade && store.writer.is_some() {
            // Write the recounted usage into a current-version checkpoint, so
            // the old format is read only once.
            store.checkpoint()?;
        }
        Ok(store)
    }

    /// The writer, unless the store is read-only or an earlier write failed.
    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?.lock();
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(w)
    }

    /// Commits outstanding writes and checkpoints, so the next open replays
    /// nothing. Dropping the store does the same but cannot report errors.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// Closes the store without committing: writes since the last commit are
    /// discarded, and the next open recovers exactly the last committed state.
    /// Use it when a multi-step operation failed half-way.
    pub fn abandon(self) {
        if let Some(w) = &self.writer {
            w.lock().poisoned = true;
        }
    }

    fn shutdown(&self) -> Result<()> {
        let Some(w) = &self.writer else {
            return Ok(());
        };
        let mut w = w.lock();
        if w.poisoned {
            return Ok(());
        }
        self.commit_locked(&mut w)?;
        if !self.state.read().memtable.is_empty() {
            self.checkpoint_locked(&mut w)?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
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

fn lock_store(layout: &Layout) -> Result<Box<dyn LockGuard>> {
    let path = layout.lock_file();
    // flock belongs to the open file description. A child forked by another
    // thread of this process (to run a command) holds a copy of every open
    // descriptor until it execs, so a lock released just before it was forked
    // stays held for that moment. Retrying briefly tells that apart from a real
    // second writer, which holds the lock for as long as it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        match layout.io.try_lock(&path) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Locked(path));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(Error::io(format!("lock {}", path.display()), e)),
        }
    }
}

/// Makes a new, empty store and returns its writer lock, still held. STORE is
/// written last, so a crash part-way leaves a directory that `create` finishes
/// next time and `open` refuses.
fn create_layout(layout: &Layout) -> Result<Box<dyn LockGuard>> {
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
    let lock = lock_store(layout)?;
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
fn recount_usage(
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
            st.live += e.len;
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
fn open_snapshots(
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
) -> Result<()> {
    let keep_index: Vec<String> = ckpt
        .index_files
        .iter()
        .map(|i| crate::index::file::index_file_name(*i))
        .collect();
    let keep_log = log::log_file_name(ckpt.log_file);
    sweep(layout, &layout.index_dir(), |n| keep_index.iter().any(|k| k == n))?;
    sweep(layout, &layout.log_dir(), |n| n == keep_log)?;
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

/// A lower layer's corruption error, told about the artifact it concerns.
pub(crate) fn artifact_error(e: impl Into<Error>, id: ArtifactId) -> Error {
    match e.into() {
        Error::Corrupt { file, detail } => Error::CorruptArtifact { id, file, detail },
        other => other,
    }
}

#[cfg(test)]
mod tests;
