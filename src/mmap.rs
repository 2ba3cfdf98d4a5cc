//! The only module with `unsafe`: read-only memory maps of immutable files,
//! and asking the kernel to drop a file's cached pages (for the benchmark's
//! cold reads).
//!
//! Sealed segments and index files are never written again once their name is
//! visible (they are built under a temp name, fsynced and renamed), and the store
//! never truncates them in place; GC and compaction delete them only by unlinking,
//! which leaves existing mappings valid on Unix. So the mapped bytes do not change
//! under a reader, which is what `memmap2::Mmap::map` requires for soundness.
//! A process outside ASL that truncates a store file could still fault a reader:
//! that is outside what any mmap-based engine can defend against.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use crate::error::{IoContext, Result};

/// A read-only mapping of a whole immutable file.
pub(crate) struct Map {
    map: Option<memmap2::Mmap>,
}

impl Map {
    /// Maps `file` (at `path`, for error messages). Empty files get no mapping,
    /// because mapping zero bytes fails on Linux.
    pub(crate) fn open(file: &File, path: &Path) -> Result<Self> {
        let len = file.metadata().ctx(|| format!("stat {}", path.display()))?.len();
        if len == 0 {
            return Ok(Self { map: None });
        }
        // SAFETY: see the module docs: store files are immutable once mapped.
        let map = unsafe { memmap2::Mmap::map(file) }.ctx(|| format!("mmap {}", path.display()))?;
        Ok(Self { map: Some(map) })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

#[cfg(feature = "bench")]
/// Asks the kernel to drop `file`'s clean pages from the page cache (pages
/// still mapped by a live `Map` stay). Advisory: errors are ignored.
pub(crate) fn drop_cached_pages(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is
    // valid for the duration of the call because `file` is borrowed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
