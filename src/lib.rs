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
//! Start with [`Store`]; [`PutOptions`] says whose an artifact is, and
//! [`Store::ingest`] stores files and directory trees. The byte layouts are in
//! `spec/format.md`.
//!
//! # Layers
//!
//! Each layer calls only the layers below it.
//!
//! | module | public | owns |
//! |---|---|---|
//! | `io` | no | the file operations the store needs, behind [`io::Backend`]: local files (mmap confined to one module) and a simulated-crash backend for tests |
//! | `block` | no | segment files, the one block writer and the one block scanner, packing, compression, checksums, sealing |
//! | `index` | no | artifact → location records, shadowing, tombstones, sorted index files, merging |
//! | `snapshot` | no | the log, checkpoints, `replay` (log + checkpoint → CURRENT, a pure function), CURRENT's identity, the snapshot catalog |
//! | `store` | via [`Store`] | the write and read paths, GC, verify, repair, library-level ingest |
//! | [`records`] | yes | canonical CBOR, typed records and their schemas, labels and the derived query index, trees, lineage chains |
//! | [`formats`] | yes | HDF5 (index, logical digests, reads through the index), templates, YAML overlays, RVLS import |
//! | [`pel`] | yes | programs over artifacts: execution, receipts, the action cache, replay, lineage, attestations, the format conversion graph |
//! | `server` | feature `server` | the HTTP API and build-cache protocols behind `aslctl serve` |
//! | `s3` | feature `s3` | a mirror of the store's immutable files on S3-compatible storage |
//! | [`codec`] | yes | every on-disk encoder and decoder, for tools, golden tests and fuzzing |
//! | [`version`] | yes | the format versions this build reads and writes |
//! | [`id`], [`error`] | yes | artifact ids and prefixes; the public error type |
//! | `bench` | feature `bench` | the packing benchmark harness behind `aslctl bench` |
//!
//! `block`, `index` and `snapshot` are private so their types can change
//! without breaking programs that embed the store; what a user of the format
//! needs from them is re-exported in [`codec`].
//!
//! # Features
//!
//! `cli` (the `aslctl` binary: clap, indicatif, serde_json), `bench` (the
//! harness, plotters) and `server` (the HTTP API, `asl::server`: axum, tokio)
//! are on by default for the binary; an embedder takes
//! `default-features = false` and gets none of them. `hdf5` indexes HDF5
//! files over the HDF5 C library; `h5read`, `yaml` and `json` are the pure
//! Rust parts of the typed formats. `zfs` snapshots the ZFS
//! dataset holding the store with each named snapshot.

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub(crate) mod block;
pub mod codec;
pub mod error;
pub mod federation;
pub mod formats;
pub(crate) mod fsutil;
pub mod id;
pub(crate) mod index;
pub mod io;
pub(crate) mod par;
pub mod pel;
pub mod records;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "server")]
pub mod server;
pub(crate) mod snapshot;
mod store;
#[cfg(test)]
mod testutil;
pub mod textfile;
pub mod version;

pub use error::{DecodeError, Error, Result};
pub use id::{ArtifactId, IdPrefix};
pub use index::{DomainId, Placement, Visibility};
pub use snapshot::{CurrentId, SnapshotMeta};
pub use store::{
    ArtifactInfo, ArtifactReader, AtomicSection, Changes, FileStamp, FilesCacheMode, GcOptions, GcReport, IngestEvent,
    IngestInput, IngestLink, IngestOptions, IngestPlan, IngestReport, Ingested, Iter, LogCursor, Problem, Put,
    PutOptions, RepairReport, Retention, SnapshotDiff, SnapshotView, Store, StoreOptions, StoreStat, VerifyReport,
    DEFAULT_GC_THRESHOLD,
};
