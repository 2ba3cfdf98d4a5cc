//! The only module with `unsafe`: read-only memory maps of immutable files.
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
