//! The I/O backend: the few file operations the store needs, behind one trait.
//!
//! Everything the store reads or writes under its directory goes through a
//! [`Backend`]: [`LocalBackend`] is the real file system (positioned reads and
//! writes, fsync, rename, memory maps of immutable files); [`SimBackend`] keeps
//! files in memory, records what was made durable and can produce the image a
//! power cut at any moment would leave, for crash tests; `TieredBackend`
//! (feature `s3`) keeps sealed segments in an S3-compatible bucket instead
//! of on local disk, reading them back in ranges through a bounded cache.
//!
//! The store's durability rules are written against these operations: data is
//! durable after [`StoreFile::sync_data`], a new name after
//! [`Backend::sync_dir`] of its directory, and nothing else is promised.

#[cfg(feature = "s3")]
pub use crate::s3::bucket;
mod local;
mod sim;
#[cfg(feature = "s3")]
pub use crate::s3::tiered;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;

#[cfg(feature = "s3")]
pub use crate::s3::tiered::{TierConfig, TieredBackend};
pub use local::{check_readable, GrowingMap, LocalBackend};
pub use sim::{CrashMode, SimBackend, EIO, ENOSPC};

/// What the tiered backend is doing, for `aslctl s3 status` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStatus {
    /// The bucket.
    pub url: String,
    /// Segments in the bucket.
    pub remote_segments: usize,
    /// Sealed or open segments with a local copy.
    pub local_segments: usize,
    /// Uploads and deletions waiting (including one under way).
    pub queued: usize,
    /// Why the last attempt failed, while the queue is stuck on it.
    pub last_error: Option<String>,
    /// Bytes in the page cache, and its budget.
    pub cache_bytes: u64,
    /// The page cache budget.
    pub cache_budget: u64,
    /// Ranged requests made for reads, and the bytes they fetched.
    pub fetches: u64,
    /// Bytes fetched by those requests.
    pub fetched_bytes: u64,
    /// Page reads served by the cache.
    pub cache_hits: u64,
}

/// A store directory holding this file lives in a bucket: its sealed
/// segments are on object storage (`tiered`, feature `s3`).
pub const BUCKET_FILE: &str = "BUCKET";

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Create a new file; fails if the name exists.
    CreateNew,
    /// Create or truncate.
    CreateTruncate,
    /// Create or truncate, readable and writable by the owner only (keys,
    /// tokens): mode 0600 on local files.
    CreatePrivate,
}

/// An open file: positioned reads and writes, length, fsync.
pub trait StoreFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` when the
    /// file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (fsync).
    fn sync_all(&self) -> io::Result<()>;
    /// Asks the OS to start writing `len` bytes at `offset` to the disk now,
    /// without waiting: a hint that makes a later `sync_data` shorter,
    /// never a promise of durability. The default does nothing.
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// What to tell the OS about a file map (see [`Mapped::with_hints`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapHint {
    /// Drop the pages this process has touched (they stay cached).
    Release,
    /// Reads will be random: fault in single pages, read nothing ahead.
    Random,
}

/// The bytes of a whole immutable file, mapped or loaded.
pub struct Mapped(
    Box<dyn Deref<Target = [u8]> + Send + Sync>,
    /// Passes hints to the OS (a file map's only).
    Option<fn(&[u8], MapHint)>,
);

impl Mapped {
    /// Wraps anything that derefs to bytes.
    pub fn new(bytes: impl Deref<Target = [u8]> + Send + Sync + 'static) -> Self {
        Self(Box::new(bytes), None)
    }

    /// Wraps a file map, with the function that passes [`MapHint`]s for it
    /// to the OS.
    pub fn with_hints(bytes: impl Deref<Target = [u8]> + Send + Sync + 'static, hint: fn(&[u8], MapHint)) -> Self {
        Self(Box::new(bytes), Some(hint))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Gives the pages of a file map back (a no-op for loaded bytes): a long
    /// pass of lookups (GC) then does not keep a whole index resident.
    pub fn release_pages(&self) {
        if let Some(f) = self.1 {
            f(&self.0, MapHint::Release);
        }
    }

    /// Gives back the pages of a file map within `len` bytes from `offset`
    /// (whole pages only; a no-op for loaded bytes).
    pub fn release_range(&self, offset: usize, len: usize) {
        if let (Some(f), Some(part)) = (self.1, self.0.get(offset..offset.saturating_add(len))) {
            f(part, MapHint::Release);
        }
    }

    /// Says that reads of a file map will be random (index lookups): the OS
    /// then maps single pages on a fault instead of reading around them.
    pub fn expect_random(&self) {
        if let Some(f) = self.1 {
            f(&self.0, MapHint::Random);
        }
    }
}

impl fmt::Debug for Mapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapped({} bytes)", self.0.len())
    }
}

/// A held writer lock; released when dropped.
pub trait LockGuard: Send + Sync {
    /// Replaces the note kept with the lock, which a process refused the
    /// lock reads with [`Backend::lock_note`] (who holds it). Not durable.
    fn note(&self, _text: &str) -> io::Result<()> {
        Ok(())
    }
}

/// The file operations a store needs.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>>;
    /// Reads a whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The whole of a file that is never written again (sealed segments,
    /// index files), mapped where the backend can.
    fn map(&self, path: &Path) -> io::Result<Mapped>;
    /// Renames a file, replacing `to`; durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; durable after `sync_dir`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names in a directory, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` (and its parents) for files only the owner may read:
    /// mode 0700 on local files, set even when it exists already.
    fn create_private_dir(&self, dir: &Path) -> io::Result<()> {
        self.create_dir_all(dir)
    }
    /// Whether a file exists.
    fn is_file(&self, path: &Path) -> bool;
    /// Whether a directory exists.
    fn is_dir(&self, path: &Path) -> bool;
    /// The length of a file.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Takes the exclusive writer lock held in `path` (created if missing),
    /// without waiting: `WouldBlock` when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// The note the holder of the lock in `path` left (see [`LockGuard::note`]).
    fn lock_note(&self, path: &Path) -> Option<String> {
        String::from_utf8(self.read(path).ok()?).ok()
    }
    /// Asks the backend to drop cached pages of a file (cold-read
    /// measurements); a hint, may do nothing.
    fn drop_cache(&self, _path: &Path) {}
    /// A sealed segment read through positioned reads rather than a map,
    /// when the backend wants that (its bytes may not be on local disk);
    /// `None`, the default, means map it.
    fn open_sealed(&self, _path: &Path) -> io::Result<Option<Box<dyn StoreFile>>> {
        Ok(None)
    }
    /// A map of a file that is still being appended to (the open segment),
    /// reserved `reserve` bytes long whatever the file's length now, with
    /// `published` bytes readable from the start. `None`, the default, where
    /// the backend cannot map a file (its reads then use `pread`).
    fn map_growing(&self, _path: &Path, _reserve: u64, _published: u64) -> io::Result<Option<GrowingMap>> {
        Ok(None)
    }
    /// Says that the seal of this segment is committed: a backend that
    /// keeps sealed segments elsewhere may move it there now. The default
    /// does nothing.
    fn offload(&self, _path: &Path) {}
    /// Whether the backend copies `CHECKPOINT` elsewhere as it changes: the
    /// store then checkpoints right after a snapshot or pin changes, so the
    /// copy names them.
    fn mirrors_catalog(&self) -> bool {
        false
    }
    /// Waits for work `offload` and file changes started in the background
    /// (uploads); an error when it cannot finish now. The default has none.
    fn settle(&self) -> io::Result<()> {
        Ok(())
    }
    /// Where sealed segments live, for a backend that tiers them.
    fn tier_status(&self) -> Option<TierStatus> {
        None
    }
    /// Tells the backend the address the store is served at (a bucket
    /// names it beside the lease, for replicas to send writes to). The
    /// default keeps it nowhere.
    fn announce(&self, _url: &str) -> io::Result<()> {
        Ok(())
    }
    /// Looks again at which segments exist elsewhere (a bucket written by
    /// another process); a no-op for local files.
    fn relist(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads until `buf` is full or the reader ends, retrying interrupted reads;
/// returns how many bytes were read (less than `buf.len()` only at the end).
pub fn read_full(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fills `buf` from the operating system's random source: the one source
/// of every random id and key ASL makes (domain ids, signing keys, run ids).
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, buf)
}
