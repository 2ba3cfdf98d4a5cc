//! The store's public surface beyond artifacts, grouped by what a caller is
//! doing: [`Snapshots`] (named, frozen states of CURRENT), [`Pins`] (names
//! that keep one artifact), [`Maintenance`] (checks, GC, durability points)
//! and [`SideFiles`] (small files the upper layers keep beside the store).
//! Each is a borrowed handle, as cheap as the `&Store` it holds; artifacts
//! themselves are read and written on [`Store`] directly.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::Result;
use crate::id::ArtifactId;
use crate::io::{OpenMode, StoreFile};
use crate::snapshot::catalog::SnapshotMeta;

use super::changes::{Changes, LogCursor};
use super::gc::{GcOptions, GcReport};
use super::maint::{MemoryUse, StoreStat, VerifyReport};
use super::read::ArtifactReader;
use super::side::SideFileAccess;
use super::snapshots::{Retention, SnapshotDiff};
use super::Store;
use crate::snapshot::current::CurrentId;

impl Store {
    /// Taking, listing, comparing and deleting snapshots.
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots(self)
    }

    /// Pins: names that keep one artifact (a GC root each).
    pub fn pins(&self) -> Pins<'_> {
        Pins(self)
    }

    /// Checking, collecting garbage, and making state durable.
    pub fn maintenance(&self) -> Maintenance<'_> {
        Maintenance {
            store: self,
            progress: None,
        }
    }

    /// Small files upper layers keep in the store's directory, written
    /// through the store's I/O backend.
    pub fn side_files(&self) -> SideFiles<'_> {
        SideFiles(self)
    }
}

/// See [`Store::snapshots`](crate::Store::snapshots).
///
/// A snapshot keeps what CURRENT held when it was taken, readable by name
/// after the artifacts are removed, until it is deleted and GC runs:
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path())?;
/// let id = store.put(b"release 1")?;
/// store.snapshots().create("v1")?;
/// store.remove(&id)?;
/// store.commit()?;
/// assert!(!store.contains(&id)?);
/// assert_eq!(store.at("v1")?.get(&id)?, b"release 1");
/// assert_eq!(store.snapshots().list()[0].name, "v1");
/// store.snapshots().delete("v1")?;
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Snapshots<'a>(&'a Store);

impl Snapshots<'_> {
    /// Takes a named snapshot of CURRENT (committing buffered writes first) and
    /// returns its catalog entry; `identity` is CURRENT's identity, the same
    /// for the same content wherever its bytes sit. The writer waits while the
    /// snapshot's index file is written (one sequential pass over the index).
    pub fn create(&self, name: &str) -> Result<SnapshotMeta> {
        self.0.snapshot_filtered(name, None)
    }

    /// Takes a named snapshot holding only the artifacts `ids` (each must be
    /// in CURRENT, else [`crate::Error::NotFound`] and no snapshot): what a
    /// tree and everything below it needs, say, so that a backup of one
    /// directory is kept, listed and restored on its own. The identity is
    /// that of a CURRENT holding just those artifacts.
    pub fn create_of(&self, name: &str, ids: &HashSet<ArtifactId>) -> Result<SnapshotMeta> {
        self.0.snapshot_filtered(name, Some(ids))
    }

    /// The snapshots, in name order.
    pub fn list(&self) -> Vec<SnapshotMeta> {
        self.0.snapshot_list()
    }

    /// The ZFS snapshots mirroring ASL snapshots
    /// ([`StoreOptions::zfs`](crate::StoreOptions::zfs)), full ZFS name by
    /// ASL name; empty when the store is not on ZFS.
    #[cfg(feature = "zfs")]
    pub fn zfs_list(&self) -> Result<std::collections::BTreeMap<String, String>> {
        super::zfs::list(self.0.path())
    }

    /// One snapshot's catalog entry.
    pub fn get(&self, name: &str) -> Result<SnapshotMeta> {
        self.0.snapshot_meta(name)
    }

    /// Deletes a snapshot. Artifacts only it held become garbage for the next
    /// [`Maintenance::gc`](crate::Maintenance::gc); until then they stay on disk.
    pub fn delete(&self, name: &str) -> Result<SnapshotMeta> {
        self.0.delete_snapshot(name)
    }

    /// Artifacts added and removed from snapshot `a` to snapshot `b`.
    pub fn diff(&self, a: &str, b: &str) -> Result<SnapshotDiff> {
        self.0.diff_snapshots(a, b)
    }

    /// Deletes every snapshot no rule of `policy` keeps and returns them (with
    /// `dry_run`, only returns them). A policy with no rule is refused rather
    /// than read as "keep nothing".
    pub fn prune(&self, policy: &Retention, dry_run: bool) -> Result<Vec<SnapshotMeta>> {
        self.0.prune_snapshots(policy, dry_run)
    }
}

/// See [`Store::pins`](crate::Store::pins).
///
/// A pin is a named GC root for one artifact:
///
/// ```
/// # use std::io::Read;
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path())?;
/// let id = store.put(b"model weights")?;
/// store.pins().add("best-model", &id)?;
/// store.remove(&id)?;
/// store.commit()?;
/// let mut bytes = Vec::new();
/// store.pins().open("best-model")?.read_to_end(&mut bytes).unwrap();
/// assert_eq!(bytes, b"model weights");
/// assert_eq!(store.pins().remove("best-model")?, id);
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Pins<'a>(&'a Store);

impl Pins<'_> {
    /// Pins `id` under `name`: a GC root that keeps it even once nothing
    /// else does. The artifact must be retained now: live in CURRENT, in a
    /// snapshot, or pinned already. Pinning the same artifact under the same
    /// name again is a no-op; a name that holds another artifact is refused
    /// with [`crate::Error::PinExists`], since moving it silently would take
    /// a GC root away from what it held ([`Pins::set`](crate::Pins::set) moves it on purpose).
    pub fn add(&self, name: &str, id: &ArtifactId) -> Result<()> {
        self.0.pin_inner(name, id, false)
    }

    /// Pins `id` under `name`, moving the pin if it held another artifact
    /// (which then loses this root).
    pub fn set(&self, name: &str, id: &ArtifactId) -> Result<()> {
        self.0.pin_inner(name, id, true)
    }

    /// Removes a pin; returns the artifact it named.
    pub fn remove(&self, name: &str) -> Result<ArtifactId> {
        self.0.unpin(name)
    }

    /// A verified reader over the artifact pinned as `name`, whether or not it
    /// is still in CURRENT.
    pub fn open(&self, name: &str) -> Result<ArtifactReader> {
        self.0.open_pinned(name)
    }

    /// The pins, in name order.
    pub fn list(&self) -> Vec<(String, ArtifactId)> {
        self.0.pin_list()
    }
}

/// See [`Store::maintenance`](crate::Store::maintenance).
///
/// Removing an artifact only marks it; GC gives its space back, and
/// verify reads every block and artifact and names what is damaged:
///
/// ```
/// use asl_core::GcOptions;
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path())?;
/// let keep = store.put(&vec![1u8; 1 << 20])?;
/// let drop = store.put(&vec![2u8; 1 << 20])?;
/// store.maintenance().seal()?;
/// store.remove(&drop)?;
/// store.commit()?;
/// let gc = store.maintenance().gc(&GcOptions { threshold: 1.0, ..GcOptions::default() })?;
/// assert!(gc.reclaimed_bytes > 0);
/// let report = store.maintenance().verify()?;
/// assert!(report.problems.is_empty());
/// assert_eq!(store.get(&keep)?.len(), 1 << 20);
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Maintenance<'a> {
    store: &'a Store,
    progress: Option<crate::ProgressFn<'a>>,
}

impl<'a> Maintenance<'a> {
    /// The same handle, reporting the progress of its long operations
    /// ([`Maintenance::scrub`], [`Maintenance::gc`]) to `f`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let store = asl_core::Store::create(dir.path())?;
    /// store.put(&[7u8; 300_000])?;
    /// store.commit()?;
    /// let seen = AtomicU64::new(0);
    /// let report = |s: asl_core::Step<'_>| seen.store(s.done, Ordering::Relaxed);
    /// store.maintenance().with_progress(&report).verify()?;
    /// assert!(seen.load(Ordering::Relaxed) >= 300_000);
    /// # Ok::<(), asl_core::Error>(())
    /// ```
    pub fn with_progress(self, f: crate::ProgressFn<'a>) -> Self {
        Self {
            progress: Some(f),
            ..self
        }
    }
    /// Full scrub: every index file's checksum, every block's checksums in every
    /// segment, every sealed segment's footer, and every live artifact read back
    /// and hashed. Problems are collected, not returned as an error.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.store.scrub(&crate::ScrubOptions::default(), self.progress)
    }

    /// A scrub in budget: [`Maintenance::verify`]'s checks over the
    /// segments `opts` chooses, least recently verified first, and the
    /// live artifacts stored in them; index and snapshot files every time.
    /// Each run is recorded in the store's `SCRUB` file, so repeated runs
    /// read the whole store in rotation. Damage is reported exactly as a
    /// full scrub reports it.
    pub fn scrub(&self, opts: &crate::ScrubOptions) -> Result<VerifyReport> {
        self.store.scrub(opts, self.progress)
    }

    /// Where the scrub rotation stands: the least recent verification, and
    /// the bytes never verified.
    pub fn scrub_status(&self) -> crate::ScrubStatus {
        self.store.scrub_status()
    }

    /// Reclaims the space of artifacts nothing retains (see [`GcOptions`]).
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        self.store.gc(opts, self.progress)
    }

    /// Counts CURRENT and computes its identity (one pass over the index).
    pub fn stat(&self) -> Result<StoreStat> {
        self.store.stat()
    }

    /// CURRENT's identity: BLAKE3 over the sorted live ids with domain and
    /// visibility.
    pub fn current_id(&self) -> Result<CurrentId> {
        self.store.current_id()
    }

    /// Writes the in-memory index to an index file and starts a fresh log, so
    /// the next open has nothing to replay.
    pub fn checkpoint(&self) -> Result<()> {
        self.store.checkpoint()
    }

    /// Commits, then seals the open segment: footer written, fsynced, never
    /// written again. The next write starts a new segment. Waits for large
    /// artifacts being streamed by other threads to finish (their chunks must
    /// share a segment with their trailer). For a store living in a bucket it
    /// publishes ([`Maintenance::publish`]), so read replicas see what was
    /// sealed. Returns the segment it sealed, or `None` when no segment
    /// was open (nothing written since the last seal).
    pub fn seal(&self) -> Result<Option<Sealed>> {
        self.store.seal()
    }

    /// Seals the open segment and checkpoints, with no write in between:
    /// for a store living in a bucket, what read replicas follow is then
    /// whole there (every entry the checkpoint names points into a sealed
    /// segment, uploaded before the checkpoint is mirrored).
    pub fn publish(&self) -> Result<()> {
        self.store.publish()
    }

    /// Brings a read-only handle up to what the store's files hold now:
    /// the checkpoint and log a writer (or a replica's follow) wrote since
    /// it opened. Returns whether anything changed. A writer always sees
    /// its own state: a no-op there.
    pub fn refresh(&self) -> Result<bool> {
        self.store.refresh()
    }

    /// Names this process in the store's lock as serving the store at
    /// `url`, so that another process refused the lock can say where the
    /// store is served (`aslctl` then acts through that server). Fails on
    /// a read-only store, which holds no lock.
    pub fn announce(&self, url: &str) -> Result<()> {
        self.store.announce(url)
    }

    /// Waits until what the backend does in the background is done: for a
    /// store living in a bucket, the uploads of sealed segments and mirrored
    /// files. Returns at once for a local store.
    pub fn settle(&self) -> Result<()> {
        self.store.settle()
    }

    /// Where the sealed segments of a store living in a bucket are: counts,
    /// the upload queue, the page cache. `None` for a local store.
    pub fn tier_status(&self) -> Option<crate::io::TierStatus> {
        self.store.tier_status()
    }

    /// Once the store's mapped file pages resident in this process pass
    /// `budget` bytes (`RssFile` on Linux; elsewhere always), gives them
    /// back: index, snapshot and segment maps. Nothing is lost (the pages
    /// stay in the page cache, the next reads fault them in again); a
    /// long-running reader calls it now and then so that its resident size
    /// shows its own memory, not every segment it ever read.
    pub fn release_mapped_pages_over(&self, budget: u64) {
        self.store.release_mapped_pages_over(budget);
    }

    /// What the store's in-memory parts hold now, against their bounds:
    /// cheap (no I/O, two short locks), for a server's metrics.
    pub fn memory(&self) -> MemoryUse {
        self.store.memory()
    }

    /// Where the committed history this handle sees ends now. A read-only
    /// handle sees the store as of opening it.
    pub fn log_cursor(&self) -> LogCursor {
        self.store.log_cursor()
    }

    /// The artifacts whose index records changed in the commits from `from`
    /// up to [`Maintenance::log_cursor`](crate::Maintenance::log_cursor); `None` when that history is no
    /// longer kept (more than one checkpoint back, from a repaired store's
    /// earlier numbering, or from another store), so the caller must rescan.
    /// Chunks of large artifacts are not artifacts and are left out.
    pub fn changes_since(&self, from: LogCursor) -> Result<Option<Changes>> {
        self.store.changes_since(from)
    }

    /// Says that the follower `name` (an index kept outside the store that
    /// reads [`changes_since`](Self::changes_since)) has read, and made
    /// durable on its side, the history up to `cursor`. Checkpoints keep
    /// retired log files only while some follower still needs them (within
    /// `StoreOptions::log_history`, and at most a sixteenth of the store's
    /// segment bytes): a store nobody follows keeps no history, so what GC
    /// frees is not taken back by the log it wrote. Cheap to call after
    /// every refresh: the note is rewritten only when the cursor reaches a
    /// newer log file. Names: 1 to 64 letters, digits, `-` or `_`.
    pub fn note_follower(&self, name: &str, cursor: LogCursor) -> Result<()> {
        self.store.layout.note_follower(name, cursor)
    }

    /// Removes follower `name`'s note (an index deleted for good): the
    /// history kept for it goes at the next checkpoint.
    pub fn forget_follower(&self, name: &str) -> Result<()> {
        self.store.layout.forget_follower(name)
    }

    /// The followers that have noted their place, each with the oldest log
    /// file it still needs (0 for a note that does not read).
    pub fn followers(&self) -> Result<Vec<(String, u64)>> {
        self.store.layout.followers()
    }
}

/// See [`Store::side_files`](crate::Store::side_files).
#[derive(Clone, Copy)]
pub struct SideFiles<'a>(&'a Store);

impl SideFiles<'_> {
    /// Where side file `name` lives: `name` is relative to the store
    /// directory, one or more plain components (`domain`, `keys/trust`).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        self.0.side_file_path(name)
    }

    /// Side file `name`'s bytes, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.0.read_side_file(name)
    }

    /// Replaces side file `name` with `bytes`, atomically and durably
    /// (a temporary file, fsynced, renamed over, the directory fsynced):
    /// after a crash the file holds the old bytes or the new ones. Refused
    /// on a store open read-only.
    pub fn write(&self, name: &str, bytes: &[u8], access: SideFileAccess) -> Result<()> {
        self.0.write_side_file(name, bytes, access)
    }

    /// Opens side file `name` for positioned reads and writes (a fetch
    /// staged chunk by chunk, say). `Read` and `ReadWrite` give `None` when
    /// it does not exist; the create modes make its directory first. The
    /// caller fsyncs what must be durable (and the directory, see
    /// [`SideFiles::sync_dir`](crate::SideFiles::sync_dir), after creating it).
    pub fn open(&self, name: &str, mode: OpenMode) -> Result<Option<Box<dyn StoreFile>>> {
        self.0.open_side_file(name, mode)
    }

    /// Removes side file `name`; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.0.remove_side_file(name)
    }

    /// The names in side directory `dir` (empty when it does not exist).
    pub fn list_dir(&self, dir: &str) -> Result<Vec<String>> {
        self.0.list_side_dir(dir)
    }

    /// Makes the names in side directory `dir` durable (after a file in it
    /// was created or removed).
    pub fn sync_dir(&self, dir: &str) -> Result<()> {
        self.0.sync_side_dir(dir)
    }
}

/// A segment [`Maintenance::seal`] sealed: its number and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// The segment's number (its file is `segments/NNNNNNNN.seg`).
    pub segment: u32,
    /// Its length in bytes, footer included.
    pub len: u64,
}
