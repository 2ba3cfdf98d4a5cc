//! What [`Store::repair`](crate::Store::repair) reports: what it read,
//! salvaged, lost and set aside.

use serde::Serialize;

/// The result of [`Store::repair`](crate::Store::repair).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Segment files read.
    pub segments: u64,
    /// Files (or torn tails) moved to `quarantine/` because they could not be
    /// parsed as this store's segments, with the reason. Nothing is deleted.
    pub quarantined: Vec<String>,
    /// Segments whose damaged header was written anew (file name and store
    /// id give its fields) because the blocks behind it read.
    pub rebuilt_headers: Vec<String>,
    /// Blocks read.
    pub blocks: u64,
    /// Blocks whose checksum failed.
    pub bad_blocks: u64,
    /// Byte ranges inside segments where no block header could be read; the
    /// scan resumed after each at the next valid block.
    pub damaged_regions: u64,
    /// Artifacts of damaged packed blocks kept because their own BLAKE3 proves
    /// their bytes.
    pub salvaged: u64,
    /// Artifacts found to be unreadable (hex ids), or a description where the
    /// damage hides the ids. Empty when nothing was lost.
    pub lost: Vec<String>,
    /// Live artifacts in the rebuilt index.
    pub artifacts: u64,
    /// Removals replayed from tombstone blocks.
    pub tombstones: u64,
    /// Bytes cut from torn segment tails (kept in `quarantine/`).
    pub truncated_bytes: u64,
    /// Segments that had no footer and were sealed.
    pub sealed: u64,
}

impl RepairReport {
    /// True when repair lost or set aside nothing.
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty() && self.quarantined.is_empty()
    }
}
