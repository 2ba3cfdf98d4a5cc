//! The ASL engine: a content-addressed artifact store.
//!
//! Artifacts are immutable byte strings named by the BLAKE3-256 of their bytes.
//! Small artifacts are packed many to a block, large ones streamed into blocks of
//! their own; blocks are appended to segment files and every read is verified.
//! An on-disk sorted index maps ids to locations, and CURRENT is rebuilt on open
//! from the latest checkpoint plus the log written since. Named snapshots
//! freeze CURRENT; pins and snapshots are GC roots, and [`Maintenance::gc`](crate::Maintenance::gc) reclaims
//! the rest while readers and writers carry on.
//!
//! Start with [`Store`]; [`PutOptions`] says whose an artifact is, and
//! [`Store::ingest`](crate::Store::ingest) stores files and directory trees. The byte layouts are in
//! `spec/format.md`.
//!
//! This crate is the bottom of the workspace and imports no other ASL crate.
//! Records, formats, PEL, federation and the server are crates above it that
//! use only what it makes public; the facade crate `asl` re-exports them all.
//!
//! # Modules
//!
//! | module | public | owns |
//! |---|---|---|
//! | [`io`] | yes | the file operations the store needs, behind [`io::Backend`]: local files (mmap confined to one module), a simulated-crash backend for tests, S3 (feature `s3`) |
//! | `block` | no | segment files, the one block writer and the one block scanner, packing, compression, checksums, sealing |
//! | `index` | no | artifact → location records, shadowing, tombstones, sorted index files, merging |
//! | `snapshot` | no | the log, checkpoints, `replay` (log + checkpoint → CURRENT, a pure function), CURRENT's identity, the snapshot catalog |
//! | `store` | via [`Store`] | the write and read paths, GC, verify, repair, library-level ingest |
//! | [`chunk_tree`] | yes | the verified chunk tree of a large artifact: chaining values and their root, for range proofs between stores |
//! | [`codec`] | yes | every on-disk encoder and decoder, for tools, golden tests and fuzzing |
//! | [`version`] | yes | the format versions this build reads and writes |
//! | [`id`], [`error`] | yes | artifact ids and prefixes; the public error type |
//! | `s3` | feature `s3` | a store in an S3-compatible bucket and a local store's mirror there |
//! | `bench` | feature `bench` | the packing benchmark harness behind `aslctl bench` |
//!
//! `block`, `index` and `snapshot` are private so their types can change
//! without breaking programs that embed the store; what a user of the format
//! needs from them is re-exported in [`codec`].
//!
//! # Features
//!
//! None by default: an embedder gets the engine and nothing else. `s3` adds
//! object storage (object_store, tokio), `bench` the packing harness
//! (plotters), `zfs` a ZFS snapshot of the dataset holding the store with
//! each named snapshot.

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub(crate) mod block;
pub use block::tree as chunk_tree;
pub mod codec;
pub mod error;
pub(crate) mod fsutil;
pub mod id;
pub(crate) mod index;
pub mod io;
pub(crate) mod lock;
pub(crate) mod par;
pub mod progress;
#[cfg(feature = "s3")]
pub mod s3;
pub(crate) mod snapshot;
mod store;
#[cfg(test)]
mod testutil;
pub mod textfile;
pub mod version;

pub use error::{DecodeError, Error, ErrorKind, Result, AMBIGUOUS_SHOWN};
pub use id::{ArtifactId, IdError, IdPrefix};
pub use index::{DomainId, Placement, Visibility};
pub use progress::{Meter, Metered, ProgressFn, Step};
pub use snapshot::{CurrentId, SnapshotMeta};
#[cfg(feature = "zfs")]
pub use store::zfs_rollback;
pub use store::{
    release_thread_buffers, ArtifactInfo, ArtifactReader, AtomicSection, Audience, Changes, FileStamp, FilesCacheMode,
    GcOptions, GcReport, IngestEvent, IngestInput, IngestLink, IngestOptions, IngestPlan, IngestReport, Ingested, Iter,
    ListFilter, LockHolder, LogCursor, Maintenance, MemoryUse, Piece, Pins, Problem, Put, PutOptions, PutWriter,
    RepairReport, Retention, ScrubBudget, ScrubOptions, ScrubStatus, Sealed, SideFileAccess, SideFiles, SnapshotAt,
    SnapshotDiff, SnapshotListing, SnapshotView, Snapshots, Store, StoreOptions, StoreStat, VerifyReport, View,
    DEFAULT_GC_THRESHOLD,
};
