//! Store options: every knob of block packing in one place, so the benchmark
//! harness can sweep them.

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::index::{DomainId, Placement, Visibility};
use crate::io::{Backend, LocalBackend};
use crate::{ArtifactId, Store};

/// Options for opening or creating a store, with documented defaults.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new()
///     .create(true)
///     .compression(None)
///     .open(dir.path())?;
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(crate) backend: Arc<dyn Backend>,
    /// Set by [`StoreOptions::backend`]: a `BUCKET` file does not override it.
    pub(crate) backend_chosen: bool,
    pub(crate) small_threshold: usize,
    pub(crate) block_target: usize,
    pub(crate) block_cache: usize,
    pub(crate) chunk_size: usize,
    pub(crate) segment_target: u64,
    pub(crate) compression: Option<i32>,
    pub(crate) memtable_limit: usize,
    pub(crate) max_index_files: usize,
    pub(crate) log_history: u64,
    pub(crate) create: bool,
    pub(crate) read_only: bool,
    pub(crate) lock_wait: std::time::Duration,
    #[cfg(feature = "zfs")]
    pub(crate) zfs: bool,
    pub(crate) cdc: bool,
    /// Chunks per manifest part (tests make it small to get many parts).
    pub(crate) part_chunks: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            backend: Arc::new(LocalBackend),
            backend_chosen: false,
            small_threshold: 128 << 10,
            block_target: 256 << 10,
            block_cache: 64 << 20,
            chunk_size: 1 << 20,
            segment_target: 256 << 20,
            compression: Some(3),
            memtable_limit: 200_000,
            max_index_files: 4,
            log_history: super::changes::LOG_HISTORY_BYTES,
            create: false,
            read_only: false,
            lock_wait: std::time::Duration::ZERO,
            #[cfg(feature = "zfs")]
            zfs: false,
            cdc: true,
            part_chunks: crate::block::manifest::PART_CHUNKS,
        }
    }
}

impl StoreOptions {
    /// How far past its end the open segment is mapped for this process's
    /// readers: it stays open past its target only while a large artifact
    /// streams in, and reads past the map go through `pread`. Address
    /// space, not memory: pages are mapped only as they are read.
    pub(crate) fn active_map_reserve(&self) -> u64 {
        self.segment_target.saturating_mul(2).max(64 << 20)
    }

    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Artifacts up to this many bytes are packed many to a block; larger ones get
    /// chunk blocks of their own. Default 128 KiB.
    pub fn small_threshold(mut self, bytes: usize) -> Self {
        self.small_threshold = bytes.clamp(1, 64 << 20);
        self
    }

    /// A packed block is closed once its raw body reaches this size. Default
    /// 256 KiB, chosen with `aslctl bench` (docs/packing.md): reading one small
    /// artifact of a compressed block decompresses the whole block.
    pub fn block_target(mut self, bytes: usize) -> Self {
        self.block_target = bytes.clamp(1, 256 << 20);
        self
    }

    /// Bytes of decompressed packed blocks kept for reads (CLOCK eviction),
    /// shared with small artifacts' decoded frames and large artifacts'
    /// proven pieces, each kept once read twice; a cached piece is served
    /// without being hashed again. Default 64 MiB; 0 keeps none (every
    /// read proves its bytes again).
    pub fn block_cache(mut self, bytes: usize) -> Self {
        self.block_cache = bytes;
        self
    }

    /// Raw bytes per chunk block of a large artifact. Default 1 MiB. Rounded
    /// down to a power of two (4 KiB to 256 MiB): each chunk is then one
    /// subtree of the artifact's BLAKE3 tree, which is how reads verify a
    /// chunk before returning any of it.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        let b = bytes.clamp(4096, 256 << 20);
        self.chunk_size = 1 << (usize::BITS - 1 - b.leading_zeros());
        self
    }

    /// The open segment is sealed once it reaches this size. Default 256 MiB.
    pub fn segment_target(mut self, bytes: u64) -> Self {
        self.segment_target = bytes.max(4096);
        self
    }

    /// zstd level for block bodies, or `None` to store raw. Blocks that do not
    /// shrink by at least 1/32 are stored raw either way. Default `Some(3)`.
    pub fn compression(mut self, level: Option<i32>) -> Self {
        self.compression = level;
        self
    }

    /// Records held in memory before they are written to an index file. Default 200 000.
    pub fn memtable_limit(mut self, records: usize) -> Self {
        self.memtable_limit = records.max(1);
        self
    }

    /// Index files kept before they are merged into one. Default 4.
    pub fn max_index_files(mut self, n: usize) -> Self {
        self.max_index_files = n.max(1);
        self
    }

    /// Bytes of retired log files kept at most as history for
    /// [`Maintenance::changes_since`](crate::Maintenance::changes_since), so that indexes
    /// kept outside the store catch up without a rescan. Default 64 MiB;
    /// never more than a sixteenth of the store's segment bytes (but 1 MiB
    /// at least), and only what a follower that has said so
    /// ([`Maintenance::note_follower`](crate::Maintenance::note_follower)) still needs.
    pub fn log_history(mut self, bytes: u64) -> Self {
        self.log_history = bytes;
        self
    }

    /// Store large artifacts in content-defined chunks shared across
    /// artifacts and versions (segment format 4; see `docs/chunking.md`).
    /// Default true. With false, large artifacts are written as before: one
    /// run of fixed chunk blocks per artifact, deduplicated only whole.
    pub fn chunk_dedup(mut self, yes: bool) -> Self {
        self.cdc = yes;
        self
    }

    /// Chunks per manifest part: an artifact stored in more content-defined
    /// chunks than this keeps its chunk list in parts of this many chunks,
    /// each handed over (written, indexed, committed) as the put goes, so a
    /// writer's memory does not grow with the artifact. Default 4096 (about
    /// 256 MiB of artifact per part); at most 7281, the most one chunk can
    /// list. Readers take parts of any size.
    pub fn part_chunks(mut self, chunks: usize) -> Self {
        self.part_chunks = chunks.clamp(1, crate::block::manifest::MAX_PART_CHUNKS);
        self
    }

    /// Create the store if the directory holds none. Default false.
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// Also take a ZFS snapshot (`<dataset>@asl-<name>`) of the dataset holding
    /// the store whenever [`Snapshots::create`](crate::Snapshots::create) runs (feature `zfs`; needs the
    /// `zfs` command and permission to snapshot).
    #[cfg(feature = "zfs")]
    pub fn zfs(mut self, yes: bool) -> Self {
        self.zfs = yes;
        self
    }

    /// How long to wait for the writer lock while another process holds
    /// it, rather than fail at once with [`Error::Locked`](crate::Error::Locked).
    /// Default zero (a brief grace of 200 ms still applies, for a lock
    /// being released). Readers never wait: they take no lock.
    pub fn lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Open without the writer lock: reads only, of the last committed state.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// The backend every file of the store is reached through. Default the
    /// local file system ([`LocalBackend`]); tests use
    /// [`crate::io::SimBackend`] to cut the power at any operation.
    ///
    /// A store directory with a `BUCKET` file lives in a bucket and is
    /// opened through the tiered backend (feature `s3`) unless a backend is
    /// chosen here.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = backend;
        self.backend_chosen = true;
        self
    }

    /// Opens (or creates) the store at `path` with these options.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path.as_ref(), self)
    }

    /// Rebuilds the store at `path` from its segments (see [`Store::repair`](crate::Store::repair)),
    /// through these options' backend.
    pub fn repair(self, path: impl AsRef<Path>) -> Result<crate::RepairReport> {
        Store::repair_with(path.as_ref(), &self, None)
    }

    /// [`StoreOptions::repair`], telling `progress` the bytes of segments
    /// read (phase `"segments"`).
    pub fn repair_with_progress(
        self,
        path: impl AsRef<Path>,
        progress: Option<crate::ProgressFn<'_>>,
    ) -> Result<crate::RepairReport> {
        Store::repair_with(path.as_ref(), &self, progress)
    }
}

/// How a put files what it stores: the owning domain, the visibility and the
/// cross-domain source written into the artifact's index record. The default
/// is this store's own domain, internal, not imported.
///
/// The options apply when a put stores the artifact (it was absent or
/// removed). An artifact that is already live keeps the placement it has, and
/// [`crate::Put::placement`] reports it: a plain put never publishes or
/// unpublishes anything by accident.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use asl_core::{DomainId, PutOptions, Store, Visibility};
///
/// let store = Store::create(dir.path())?;
/// let opts = PutOptions::new().visibility(Visibility::Published);
/// let put = store.put_with(b"for everyone", &opts)?;
/// assert_eq!(put.placement.visibility, Visibility::Published);
/// assert_eq!(store.list()?[0].visibility, Visibility::Published);
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub(crate) placement: Placement,
    pub(crate) sha256: bool,
    pub(crate) expect: Option<ArtifactId>,
    pub(crate) size_hint: Option<u64>,
}

impl PutOptions {
    /// This store's domain, internal, not imported.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also compute the bytes' SHA-256 as they pass for the put
    /// ([`Put::sha256`](crate::Put::sha256)), in the same pass over them
    /// (a file hashed first is then read front to back, at SHA-256's speed,
    /// rather than in pieces on all cores). Default false.
    pub fn sha256(mut self, yes: bool) -> Self {
        self.sha256 = yes;
        self
    }

    /// Whether [`PutOptions::sha256`] asked for the SHA-256.
    pub fn wants_sha256(&self) -> bool {
        self.sha256
    }

    /// The id the bytes must have ([`Store::put_reader_with`](crate::Store::put_reader_with)):
    /// when they hash to another, the put fails with
    /// [`Error::IdMismatch`](crate::Error::IdMismatch) and nothing of it
    /// stays (what a large one wrote is cut off again). Default none.
    pub fn expect(mut self, id: Option<ArtifactId>) -> Self {
        self.expect = id;
        self
    }

    /// How long the input of [`Store::put_reader_with`](crate::Store::put_reader_with)
    /// is said to be (an HTTP `Content-Length`, say): a large put then
    /// holds windows of about that size rather than of 8 MiB. Only a hint:
    /// a longer or shorter input is stored as it is. Default none.
    pub fn size_hint(mut self, len: Option<u64>) -> Self {
        self.size_hint = len;
        self
    }

    /// The owning domain. Default [`DomainId::LOCAL`].
    pub fn domain(mut self, domain: DomainId) -> Self {
        self.placement.domain = domain;
        self
    }

    /// Who may see the artifact outside its domain. Default internal.
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.placement.visibility = visibility;
        self
    }

    /// The domain the artifact was imported from, if any. Default none.
    pub fn source(mut self, source: Option<DomainId>) -> Self {
        self.placement.source = source;
        self
    }

    /// All three at once.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
}
