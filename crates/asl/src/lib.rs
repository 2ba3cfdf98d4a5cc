//! ASL: a content-addressed artifact store engine, every layer under one name.
//!
//! This facade re-exports the workspace's layer crates for a program that
//! wants all of them; one that wants only the engine depends on `asl-core`
//! alone. The layers, bottom up, each using only the public API of the ones
//! below it:
//!
//! | path | crate | owns |
//! |---|---|---|
//! | `asl::{Store, …}`, [`io`], [`codec`], [`id`], [`error`] | `asl-core` | I/O backends, blocks, the index, the log and snapshots, the [`Store`] |
//! | [`records`] | `asl-records` | canonical CBOR, typed records, trees, labels, lineage, the derived query index |
//! | [`formats`] | `asl-formats` | HDF5, templates, YAML overlays, RVLS import |
//! | [`pel`] | `asl-pel` | programs over artifacts, receipts, the action cache, replay, attestations |
//! | [`federation`] | `asl-federation` | domains, publishing, remotes, sync, promises, trust |
//! | `server` | `asl-server` (feature `server`) | the HTTP API and build-cache protocols |
//! | `client` | `asl-client` (feature `client`, in `server`) | a client of a served store's API |
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let store = asl::StoreOptions::new().create(true).open(dir.path()).unwrap();
//! let id = store.put(b"hello").unwrap();
//! store.commit().unwrap();
//! assert_eq!(store.get(&id).unwrap(), b"hello");
//! ```
//!
//! # Features
//!
//! None by default. `json` and `yaml` (records, programs and attestations as
//! text), `h5read` (HDF5 datasets read back, pure Rust), `hdf5` (HDF5 files
//! indexed, over the C library), `server` (the HTTP API and HTTP remotes, with `client`), `client` (a
//! served store's client),
//! `s3` (object storage), `bench` (the packing harness), `zfs`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use asl_core::*;
pub use asl_federation as federation;
pub use asl_formats as formats;
pub use asl_pel as pel;
pub use asl_records as records;

// The Rust examples of the README, the manual and the design are compiled
// (and the ones that need no files run) as doctests, so the docs cannot
// drift from the API.
#[cfg(all(doctest, feature = "json", asl_repo_docs))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
#[cfg(all(doctest, feature = "json", asl_repo_docs))]
#[doc = include_str!("../../../docs/manual/02-library.md")]
pub struct ManualLibraryExamples;
#[cfg(all(doctest, feature = "json", asl_repo_docs))]
#[doc = include_str!("../../../docs/manual/04-pel.md")]
pub struct ManualPelExamples;
#[cfg(all(doctest, feature = "json", asl_repo_docs))]
#[doc = include_str!("../../../docs/design.md")]
pub struct DesignExamples;
#[cfg(feature = "client")]
pub use asl_client as client;
#[cfg(feature = "server")]
pub use asl_server as server;

/// The on-disk codecs of every layer, for tools, golden tests and fuzzing:
/// the engine's ([`asl_core::codec`]) and canonical CBOR (the records layer's).
pub mod codec {
    pub use asl_core::codec::*;

    /// Names of the fuzz targets, one per on-disk parser of every layer.
    pub const FUZZ_TARGETS: &[&str] = &[
        "block",
        "segment",
        "index",
        "log",
        "checkpoint",
        "entry",
        "cbor",
        "manifest",
        "part",
    ];

    /// Runs one fuzz target's parser over `data` (see
    /// [`asl_core::codec::fuzz_target`]); `cbor` is canonical CBOR, which
    /// must encode back to exactly the bytes it decoded from.
    pub fn fuzz_target(name: &str, data: &[u8]) {
        if name == "cbor" {
            if let Ok(v) = asl_records::cbor::decode(data) {
                assert_eq!(asl_records::cbor::encode(&v).ok().as_deref(), Some(data));
            }
        } else {
            asl_core::codec::fuzz_target(name, data);
        }
    }

    #[cfg(test)]
    mod tests {
        /// The list is the engine's targets and canonical CBOR, nothing
        /// else: a target added to the engine is fuzzed here too.
        #[test]
        fn every_target_of_every_layer_is_listed() {
            let mut want: Vec<&str> = asl_core::codec::FUZZ_TARGETS.to_vec();
            want.push("cbor");
            want.sort_unstable();
            let mut got = super::FUZZ_TARGETS.to_vec();
            got.sort_unstable();
            assert_eq!(got, want);
        }
    }
}
