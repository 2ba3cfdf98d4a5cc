//! ASL: a content-addressed artifact store engine.
//!
//! Artifacts are immutable byte strings named by the BLAKE3-256 of their bytes.
//! Small artifacts are packed many to a block, large ones streamed into blocks of
//! their own; blocks are appended to segment files and every read is verified.
//! An on-disk sorted index maps ids to locations, and CURRENT is rebuilt on open
//! from the latest checkpoint plus the log written since. Named snapshots
//! freeze CURRENT; pins and snapshots are GC roots, and [`Store::gc`] reclaims
//! the rest while readers and writers carry on.
//!
//! Start with [`Store`]. The byte layouts are in `spec/format.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod error;
pub(crate) mod fsutil;
pub mod id;
pub mod index;
pub(crate) mod mmap;
pub mod snapshot;
mod store;
pub mod version;

pub use error::{DecodeError, Error, Result};
pub use id::{ArtifactId, IdPrefix};
pub use index::{DomainId, Entry, Visibility};
pub use snapshot::{CurrentId, SnapshotMeta};
pub use store::{
    ArtifactInfo, ArtifactReader, GcOptions, GcReport, Iter, Problem, Put, RepairReport, Retention, SnapshotDiff,
    SnapshotView, Store, StoreOptions, StoreStat, VerifyReport,
};

pub mod codec;
