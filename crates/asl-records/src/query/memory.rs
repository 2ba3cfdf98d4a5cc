//! What the query index holds in memory, for a server's metrics.

use super::{QueryIndex, KEYSPACES, MEMTABLE_BYTES};

/// What [`QueryIndex::memory`] reports, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexMemory {
    /// Blocks of the index's files kept for the next queries.
    pub cache_bytes: u64,
    /// The most the cache keeps.
    pub cache_budget: u64,
    /// Rows written and not yet flushed to a table file.
    pub memtable_bytes: u64,
    /// Past this the memtables are flushed (they hold more only while a
    /// flush is behind).
    pub memtable_budget: u64,
}

impl QueryIndex {
    /// The heap the index holds now: fjall's block cache (at most 32 MiB)
    /// and its memtables, the rows written since the last flush (4 MiB per
    /// keyspace before a flush starts; more while flushes lag behind).
    pub fn memory(&self) -> IndexMemory {
        let ks = &self.p().ks;
        IndexMemory {
            cache_bytes: ks.cache_size(),
            cache_budget: ks.cache_capacity(),
            memtable_bytes: ks.write_buffer_size(),
            memtable_budget: KEYSPACES * MEMTABLE_BYTES,
        }
    }
}
