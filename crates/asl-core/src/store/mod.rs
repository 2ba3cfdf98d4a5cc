//! The store: one directory, one writer process, any number of readers.
//!
//! `Store` ties the layers together: it appends blocks to the open segment,
//! records index entries in the log, keeps the not-yet-checkpointed entries in
//! memory and the rest in mapped index files, and rebuilds that state on open
//! from the checkpoint plus the log tail.

mod atomic;
mod block_cache;
mod cdc_plan;
mod changes;
mod checkpoint;
mod chunked;
mod filehash;
mod files_cache;
mod followers;
mod gc;
mod handles;
mod holder;
mod ingest;
mod large;
mod layout;
mod maint;
mod open;
pub(crate) use holder::lock_store_waiting;
use open::open_snapshots;
mod iter;
mod options;
mod packing;
mod pending;
mod put;
mod read;
mod reader;
mod refresh;
mod repair;
mod scrub;
mod side;
mod sink;
mod snapshots;
mod tier;
mod view;
mod visibility;
mod walk;
mod write;
#[cfg(feature = "zfs")]
mod zfs;
#[cfg(feature = "zfs")]
pub use zfs::rollback as zfs_rollback;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::block::segment::{ActiveSegment, Segment};
use crate::error::{Error, Result};
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::file::IndexFile;
use crate::io::LockGuard;
use crate::snapshot::catalog::SnapshotMeta;
use crate::snapshot::checkpoint::SegmentState;
use crate::snapshot::log::{LogWriter, Record};
use crate::snapshot::CurrentId;

pub use crate::lock::LockHolder;
pub use atomic::AtomicSection;
pub use changes::{Changes, LogCursor};
pub use followers::{decode_follower, encode_follower};
pub use gc::{GcOptions, GcReport, DEFAULT_THRESHOLD as DEFAULT_GC_THRESHOLD};
pub use handles::{Maintenance, Pins, Sealed, SideFiles, Snapshots};
pub use ingest::{
    FileStamp, FilesCacheMode, IngestEvent, IngestInput, IngestLink, IngestOptions, IngestPlan, IngestReport, Ingested,
};
pub use iter::{Iter, ListFilter};
pub(crate) use layout::Layout;
pub use layout::{decode_store_file, encode_store_file};
pub use maint::{MemoryUse, Problem, StoreStat, VerifyReport};
pub use options::{PutOptions, StoreOptions};
pub use put::release_thread_buffers;
pub use put::Put;
pub use read::{ArtifactInfo, ArtifactReader, Piece};
pub use repair::RepairReport;
pub use scrub::{ScrubBudget, ScrubOptions, ScrubStatus};
pub use side::SideFileAccess;
pub use sink::PutWriter;
pub use snapshots::{Retention, SnapshotDiff, SnapshotView};
pub use view::{Audience, SnapshotAt, SnapshotListing, View};

/// A content-addressed artifact store in one directory.
///
/// Writes are buffered into packed blocks and become durable at [`Store::commit`](crate::Store::commit)
/// (one fsync of the segment, one of the log, however many puts came before).
/// Every read is verified against the artifact's BLAKE3 id or the block's CRC.
/// `Store` is `Send + Sync`: reads run concurrently with the writer.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use asl_core::Store;
///
/// let store = Store::create(dir.path())?;
/// let id = store.put(b"hello artifact")?;
/// store.commit()?;                       // durable from here on
/// assert_eq!(store.get(&id)?, b"hello artifact");
/// assert_eq!(id.to_hex(), blake3::hash(b"hello artifact").to_hex().as_str());
/// store.remove(&id)?;
/// store.commit()?;
/// assert!(!store.contains(&id)?);
/// # Ok::<(), asl_core::Error>(())
/// ```
pub struct Store {
    layout: Layout,
    store_id: u64,
    opts: StoreOptions,
    /// Shared with open readers, which resolve chunk lists as they go.
    state: Arc<RwLock<State>>,
    writer: Option<Mutex<Writer>>,
    /// Small artifacts put but not yet written (readable without the writer).
    pending: RwLock<pending::Pending>,
    /// Signalled when the last large artifact being streamed finishes.
    streams_done: parking_lot::Condvar,
    /// Signalled when an atomic section ends.
    atomic_done: parking_lot::Condvar,
    /// Shared with the readers of large artifacts, which keep verified
    /// pieces in it.
    block_cache: Arc<Mutex<block_cache::BlockCache>>,
    /// The lengths of large artifacts stored, built on first need (see
    /// `Store::may_hold_length`); `None` until then.
    large_lengths: Mutex<Option<std::collections::HashSet<u64>>>,
    /// Held by a GC from start to end: one runs at a time (each trusts its
    /// own lookups of a victim, see `store::gc::lookup`).
    gc_lock: Mutex<()>,
    /// What reading single frames of framed blocks needs again and again.
    frames: Mutex<read::FrameCache>,
    /// What the handle saw when it opened or was last refreshed.
    seen: RwLock<Seen>,
    lock: Option<Box<dyn LockGuard>>,
}

/// The committed state a handle read at opening (or at its last
/// [`Maintenance::refresh`]), beside [`State`].
pub(crate) struct Seen {
    /// A read-only handle reads the open segment up to the committed
    /// length recorded here (a writer tracks its own).
    pub(crate) segs: BTreeMap<u32, SegmentState>,
    /// Damage found while opening that a read-only handle works around (a
    /// writer refuses to open over it): `verify` reports it.
    pub(crate) damage: Vec<(PathBuf, String)>,
    /// Where the committed history ended (what a read-only handle goes on
    /// seeing until refreshed).
    pub(crate) at: changes::LogCursor,
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
        self.newest_from(id, &mut [])
    }

    /// [`State::newest`] of ids asked in ascending order: `from` holds a
    /// position per index file (see [`IndexFile::get_from`]); files past
    /// its end are searched whole.
    pub(crate) fn newest_from(&self, id: &ArtifactId, from: &mut [u64]) -> Result<Option<Entry>> {
        if let Some(e) = self.memtable.get(id) {
            return Ok(Some(*e));
        }
        for (k, f) in self.indexes.iter().enumerate() {
            let mut whole = 0;
            if let Some(e) = f.get_from(id, from.get_mut(k).unwrap_or(&mut whole))? {
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

/// What only the holder of the writer lock touches, and the write path over
/// it: packing and group commit (`write.rs`, `packing.rs`), large and chunked
/// streams (`large.rs`, `chunked.rs`), sealing, checkpoints and GC's copies.
/// Its methods take the store for what readers share with it: the index
/// state, the put buffer, the caches and the I/O backend.
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
    /// Chunks that large puts in flight refer to (by key, with the number of
    /// streams): roots for the chunk sweep until their manifests are indexed.
    /// A put registers the stored chunks of the part of its list it holds.
    chunk_refs: std::collections::HashMap<ArtifactId, u32>,
    /// The manifest parts large puts in flight have handed over (by key, with
    /// the number of streams): roots whose listed chunks the sweep keeps.
    part_refs: std::collections::HashMap<ArtifactId, (crate::block::manifest::ManifestPart, u32)>,
    /// Whether something may have stopped referring to chunks since the last
    /// sweep (set at open, by removals, snapshot deletes and unpins).
    sweep_due: bool,
    /// A snapshot or pin changed since the last checkpoint.
    catalog_dirty: bool,
    /// The thread whose atomic section is open: commits by others wait.
    atomic_owner: Option<std::thread::ThreadId>,
    /// While GC runs: the ids whose records changed other than by its own
    /// copies (see `store::gc::lookup`).
    watch: Option<std::collections::HashSet<ArtifactId>>,
}

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

    /// The store's random 64-bit identity, fixed at creation (the STORE
    /// file): what tells two stores apart when a path is reused.
    pub fn store_id(&self) -> u64 {
        self.store_id
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

    /// Whether the store was opened read-only (it takes no writes, and
    /// files beside it must not be created either).
    pub fn is_read_only(&self) -> bool {
        self.opts.read_only
    }

    /// The options the store was opened with.
    pub fn config(&self) -> &StoreOptions {
        &self.opts
    }

    /// The writer, unless the store is read-only or an earlier write failed.
    fn writer_state(&self) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?.lock();
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(w)
    }

    /// Commits outstanding writes and checkpoints, so the next open replays
    /// nothing. Dropping the store does the same but cannot report errors.
    ///
    /// For a store living in a bucket it then waits for the uploads of
    /// sealed segments; an error says they could not finish now (the bytes
    /// stay on local disk and are sent by a later open).
    pub fn close(self) -> Result<()> {
        self.shutdown()?;
        self.settle()
    }

    /// [`Maintenance::settle`](crate::Maintenance::settle)'s body.
    pub(crate) fn settle(&self) -> Result<()> {
        self.layout
            .io
            .settle()
            .map_err(|e| Error::io(format!("settle {}", self.layout.root.display()), e))
    }

    /// [`Maintenance::tier_status`](crate::Maintenance::tier_status)'s body.
    pub(crate) fn tier_status(&self) -> Option<crate::io::TierStatus> {
        self.layout.io.tier_status()
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
        w.commit(self)?;
        // A backend that mirrors CHECKPOINT gets one naming the catalog as
        // it is now (snapshots and pins), for a rebuild from the mirror.
        if !self.state.read().memtable.is_empty() || (w.catalog_dirty && self.layout.io.mirrors_catalog()) {
            w.checkpoint(self)?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
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
