//! CURRENT's identity: a BLAKE3 over the logical content of the store, the sorted
//! list of live artifact ids with their domain and visibility. Where bytes sit
//! (segment, offset, compression) is left out on purpose, so repacking or
//! repairing a store keeps its identity.

use std::fmt;

use crate::id::ArtifactId;
use crate::index::entry::Entry;

const DOMAIN_TAG: &[u8] = b"asl CURRENT v1\0";

/// The identity of a logical state of the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurrentId(pub [u8; 32]);

impl fmt::Display for CurrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ArtifactId::from_bytes(self.0).to_hex())
    }
}

impl fmt::Debug for CurrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurrentId({self})")
    }
}

/// Feeds live entries, in id order, into the identity hash.
pub struct CurrentHasher {
    h: blake3::Hasher,
    count: u64,
}

impl Default for CurrentHasher {
    fn default() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN_TAG);
        Self { h, count: 0 }
    }
}

impl CurrentHasher {
    /// Adds one live entry (callers pass them sorted by id, tombstones excluded).
    pub fn add(&mut self, e: &Entry) {
        self.h.update(e.id.as_bytes());
        self.h.update(&e.domain.0.to_le_bytes());
        self.h.update(&[e.visibility as u8]);
        self.count += 1;
    }

    /// Closes the hash; the count is mixed in so the encoding is prefix-free.
    pub fn finish(mut self) -> CurrentId {
        self.h.update(&self.count.to_le_bytes());
        CurrentId(*self.h.finalize().as_bytes())
    }
}
