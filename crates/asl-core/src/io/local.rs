//! The local file system, and the only module with `unsafe`: read-only memory
//! maps of immutable files and of the open segment's written part, and
//! asking the kernel to drop a file's cached pages (for the benchmark's cold
//! reads).
//!
//! Sealed segments and index files are never written again once their name is
//! visible (they are built under a temp name, fsynced and renamed), and the store
//! never truncates them in place; GC and compaction delete them only by unlinking,
//! which leaves existing mappings valid on Unix. So the mapped bytes do not change
//! under a reader, which is what `memmap2::Mmap::map` requires for soundness.
//! The open segment is the one file mapped while it grows ([`GrowingMap`]):
//! only its published, final bytes are ever sliced.
//! A process outside ASL that truncates a store file could still fault a reader:
//! that is outside what any mmap-based engine can defend against.

#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, LockGuard, MapHint, Mapped, OpenMode, StoreFile};

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalBackend;

struct Local(File);

impl StoreFile for Local {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor this value owns.
        let r = unsafe {
            libc::sync_file_range(
                self.0.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// The locked file; the lock is released when it is closed.
struct Held {
    _file: File,
}

impl LockGuard for Held {
    fn note(&self, text: &str) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self._file.set_len(0)?;
        self._file.write_all_at(text.as_bytes(), 0)
    }
}

/// Zero bytes: mapping an empty file fails on Linux.
struct Empty;

impl std::ops::Deref for Empty {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &[]
    }
}

impl Backend for LocalBackend {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
            OpenMode::CreatePrivate => o.read(true).write(true).create(true).truncate(true).mode(0o600),
        };
        Ok(Box::new(Local(o.open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn map(&self, path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mapped::new(Empty));
        }
        // SAFETY: see the module docs: store files are immutable once mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Mapped::with_hints(map, map_hint))
    }

    fn map_growing(&self, path: &Path, reserve: u64, published: u64) -> io::Result<Option<GrowingMap>> {
        let Ok(len) = usize::try_from(reserve) else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(None);
        }
        let file = File::open(path)?;
        // A raw map: no `&[u8]` over the whole reservation ever exists, only
        // slices of what the writer has published (see `GrowingMap`).
        let map = memmap2::MmapOptions::new().len(len).map_raw_read_only(&file)?;
        Ok(Some(GrowingMap {
            map,
            published: AtomicU64::new(published),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_private_dir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(Held { _file: f })),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn drop_cache(&self, path: &Path) {
        use std::os::fd::AsRawFd;
        let Ok(file) = File::open(path) else { return };
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is
        // valid for the duration of the call because `file` is alive.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

/// Whether this process may read the file at `path` (`faccessat` with the
/// effective ids, so root, ACLs and capabilities count as the kernel counts
/// them): what opening it would say, without creating and closing a file
/// description. Ingest asks this of every file before storing any, so that
/// an unreadable file stops it before anything is written.
pub fn check_readable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call;
    // faccessat only reads it.
    let r = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::R_OK, libc::AT_EACCESS) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A live, read-only map of the open segment in the writer's own process:
/// reserved longer than the file, so that blocks appended later read through
/// it too, and gated by the length the writer has published. A read inside
/// that length is a slice of the page cache, where `pread` costs a system
/// call and a copy into a fresh buffer on every small get; a read past it
/// gets `None` and goes to the file instead, so pages past the file's end
/// (which fault with SIGBUS) are never touched.
///
/// The writer publishes a length only after the bytes below it are written,
/// never writes below a published length again, and withdraws a length
/// before it cuts the file back (a rolled-back tail that no record points
/// at). The map is raw: no `&[u8]` over the whole reservation ever exists,
/// only slices of published bytes.
pub struct GrowingMap {
    map: memmap2::MmapRaw,
    published: AtomicU64,
}

impl GrowingMap {
    /// Says that every byte below `len` is written and final (or, lowered,
    /// that the bytes past `len` are about to be cut off).
    /// Crate-private: a wrong length would hand out pages past the file's
    /// end, so only the open segment's writer may say it.
    pub(crate) fn publish(&self, len: u64) {
        self.published.store(len, Ordering::Release);
    }

    /// The published bytes at `offset`, or `None` when the range is not all
    /// published or lies past the reservation.
    pub fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len as u64)?;
        if end > self.published.load(Ordering::Acquire) || end > self.map.len() as u64 {
            return None;
        }
        // SAFETY: the range lies inside the map and was published, so it is
        // written, stays in the file and does not change (the type's docs).
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) })
    }
}

impl std::fmt::Debug for GrowingMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.published.load(Ordering::Relaxed);
        write!(f, "GrowingMap({n} of {} bytes)", self.map.len())
    }
}

/// `madvise` over the whole pages inside `bytes`, a part of a read-only file
/// map from [`LocalBackend::map`]. `Release` is `MADV_DONTNEED`: the
/// process's pages of the map go, the file's bytes stay (in the page cache
/// and on disk), and the next access faults them in again. `Random` is
/// `MADV_RANDOM`. Failure is ignored: these are hints.
fn map_hint(bytes: &[u8], hint: MapHint) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let start = (bytes.as_ptr() as usize).next_multiple_of(page);
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end <= start {
            return;
        }
        let advice = match hint {
            MapHint::Release => libc::MADV_DONTNEED,
            MapHint::Random => libc::MADV_RANDOM,
        };
        // SAFETY: [start, end) is whole pages inside a live, read-only,
        // file-backed mapping made by `memmap2::Mmap::map`; neither advice
        // can change what later reads of it see.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, advice);
        }
    }
}
