//! The log, checkpoints and CURRENT.
//!
//! Every state change is a log record with a sequence number and a CRC. A
//! checkpoint names the index files that hold all records up to a sequence
//! number; opening a store loads the latest checkpoint and replays the log after
//! it, so recovery time grows with the log tail, not with the store. CURRENT's
//! identity is a BLAKE3 over its logical content.

pub mod catalog;
pub mod checkpoint;
pub mod current;
pub(crate) mod error;
pub mod log;
pub mod replay;

pub use catalog::SnapshotMeta;
pub use current::CurrentId;
