//! Federation: each store is a domain; its artifacts are internal (never
//! visible outside) or published (readable by other domains, read-only).
//!
//! - [`domain`]: the store's domain identity — a random 128-bit id and a
//!   name, kept in the `domain` file — signing with the store's ed25519 key
//!   (the one PEL receipts are signed with).
//! - [`publish`]: publishing and unpublishing artifacts (whole snapshots
//!   and trees too), and the signed publication manifest that tells other
//!   domains what this one publishes.
//! - [`cosign`]: co-signatures on manifests, and the k-of-n trust
//!   policy a remote's manifests must meet.
//! - [`remote`]: the other domains this store fetches from, and the table
//!   of local numbers index records use for them.
//! - [`mentions`]: no published record names an internal artifact.
//! - [`origin`]: where an artifact came from (this domain, an import
//!   under a signed manifest, a promise).
//! - [`promise`]: other domains' artifacts referred to without their
//!   bytes, fetched and verified when first read.
//! - [`ranged`]: large artifacts fetched chunk-verified and resumed
//!   without sending again what was verified.
//! - [`sync`]: fetching what a remote publishes, verified, resumable,
//!   only what is missing.
//!
//! This crate calls the PEL crate (the store's signing key), the records
//! crate and the engine (`asl-core`), through their public API only.
//! Feature `http` adds remotes reached over HTTP.

pub mod cosign;
pub mod domain;
pub mod error;
pub mod fsnap;
pub mod manifest;
pub mod mentions;
pub mod origin;
pub mod peers;
pub mod promise;
pub mod publish;
pub mod ranged;
pub mod remote;
pub mod removal;
pub mod sync;

pub use domain::Domain;
pub use error::{FederationError, Result};
pub use manifest::{Manifest, PUBLICATION_PIN, PUBLICATION_TYPE, SIGNATURE_PIN};

/// Checks a name of the federation's (a domain's, a remote's): 1 to 64 of
/// letters, digits, `-`, `_`, `.`, since it goes into files and pin names.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(FederationError::Invalid(format!(
            "{name:?} is not a {what} name (1 to 64 of letters, digits, '-', '_', '.')"
        )))
    }
}
