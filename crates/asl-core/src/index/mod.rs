//! The artifact → location index.
//!
//! Records are fixed-size [`Entry`]s. Sealed state lives in immutable sorted index
//! files read through mmap (a fanout table on the id's leading bits, then a binary
//! search inside one bucket); only records newer than the last index file are kept
//! in an in-memory table. A newer record shadows an older one for the same id; a
//! tombstone removes the id from CURRENT. Index files are merged when there are
//! more than a configured number, so a lookup probes a bounded number of files.

pub mod entry;
pub(crate) mod error;
pub(crate) mod file;
pub(crate) mod merge;

pub use entry::{DomainId, Placement, Visibility};
