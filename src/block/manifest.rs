//! The manifest: the closing block of a large artifact stored in
//! content-defined chunks (block kind 9, segment version 4).
//!
//! Two lists with two jobs. The *grid* is the artifact's BLAKE3 tree cut
//! into equal power-of-two pieces, one chaining value each, exactly as a
//! tree trailer keeps them: it is the proof, since the values merge to the
//! id. The *chunk list* names the content-defined chunks that hold the
//! bytes, in order, by key and length: it is the storage, and it is what
//! versions of a file share. The two do not line up; a reader assembles a
//! grid piece from the chunks overlapping it and checks the piece against
//! its value before returning a byte.

use crate::error::DecodeError;
use crate::fsutil::{le_u32, le_u64};
use crate::id::ArtifactId;

use super::cdc::MAX_CHUNK;
use super::tree;

/// Bytes before the lists: id, length, grid size, counts, reserved.
const HEAD_LEN: usize = 56;
/// Bytes per chunk in the list: key and length.
const CHUNK_LEN: usize = 36;

/// One content-defined chunk of an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestChunk {
    /// The chunk's key (see [`super::cdc::chunk_key`]).
    pub key: ArtifactId,
    /// Its length.
    pub len: u32,
}

/// The decoded body of a manifest block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The artifact.
    pub id: ArtifactId,
    /// Its length.
    pub len: u64,
    /// Bytes per grid piece (a power of two; the last piece may be short).
    pub grid: u32,
    /// Each grid piece's chaining value.
    pub cvs: Vec<[u8; 32]>,
    /// The chunks holding the bytes, in order.
    pub chunks: Vec<ManifestChunk>,
}

impl Manifest {
    /// Encodes the raw block body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN + self.cvs.len() * 32 + self.chunks.len() * CHUNK_LEN);
        b.extend_from_slice(self.id.as_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.grid.to_le_bytes());
        b.extend_from_slice(&(self.cvs.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for cv in &self.cvs {
            b.extend_from_slice(cv);
        }
        for c in &self.chunks {
            b.extend_from_slice(c.key.as_bytes());
            b.extend_from_slice(&c.len.to_le_bytes());
        }
        b
    }

    /// Decodes a raw body, checking that it holds together: the grid covers
    /// the length, its values merge to the id, the chunks add up to the
    /// length. (A grid of one piece is checked when the piece is read: its
    /// bytes hash to the id.)
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < HEAD_LEN {
            return Err(DecodeError::Truncated {
                what: "manifest",
                need: HEAD_LEN as u64,
                have: b.len() as u64,
            });
        }
        let bad = |m: String| Err(DecodeError::Invalid(format!("manifest: {m}")));
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let len = le_u64(b, 32);
        let grid = le_u32(b, 40);
        let n_grid = le_u32(b, 44) as u64;
        let n_chunks = le_u32(b, 48) as u64;
        if le_u32(b, 52) != 0 {
            return bad("reserved field is not zero".into());
        }
        if b.len() as u64 != HEAD_LEN as u64 + n_grid * 32 + n_chunks * CHUNK_LEN as u64 {
            return bad("length does not match its counts".into());
        }
        if len == 0 || !tree::valid_chunk_size(grid as u64) || n_grid != len.div_ceil(grid as u64) {
            return bad(format!("{n_grid} grid pieces of {grid} bytes for {len} bytes"));
        }
        let cvs: Vec<[u8; 32]> = b[HEAD_LEN..HEAD_LEN + n_grid as usize * 32]
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte slices"))
            .collect();
        if let Some(root) = tree::root(&cvs) {
            if root.as_bytes() != &id {
                return bad("chunk tree does not hash to its id".into());
            }
        }
        let at = HEAD_LEN + cvs.len() * 32;
        let mut chunks = Vec::with_capacity(n_chunks as usize);
        let mut total = 0u64;
        for c in b[at..].chunks_exact(CHUNK_LEN) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&c[..32]);
            let clen = le_u32(c, 32);
            if clen == 0 || clen as usize > MAX_CHUNK {
                return bad(format!("chunk of {clen} bytes"));
            }
            total += clen as u64;
            chunks.push(ManifestChunk {
                key: ArtifactId::from_bytes(key),
                len: clen,
            });
        }
        if total != len {
            return bad(format!("chunks add up to {total} bytes, not {len}"));
        }
        Ok(Self {
            id: ArtifactId::from_bytes(id),
            len,
            grid,
            cvs,
            chunks,
        })
    }

    /// Each chunk's offset in the artifact, and the length as the last.
    pub fn starts(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.chunks.len() + 1);
        let mut at = 0u64;
        out.push(0);
        for c in &self.chunks {
            at += c.len as u64;
            out.push(at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::cdc::{chunk_key, cuts};
    use crate::block::tree::{chunk_cv, first_chunk};

    fn manifest_of(data: &[u8], grid: usize) -> Manifest {
        let mut cvs: Vec<[u8; 32]> = data
            .chunks(grid)
            .enumerate()
            .map(|(i, c)| chunk_cv(c, i as u64, grid))
            .collect();
        if cvs.len() == 1 {
            cvs[0] = first_chunk(data).0;
        }
        Manifest {
            id: ArtifactId::of(data),
            len: data.len() as u64,
            grid: grid as u32,
            cvs,
            chunks: cuts(data, true)
                .iter()
                .map(|(o, l)| ManifestChunk {
                    key: chunk_key(&data[*o..o + l]),
                    len: *l as u32,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_rejects_what_does_not_add_up() {
        let data: Vec<u8> = (0..700_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let m = manifest_of(&data, 1 << 16);
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        assert_eq!(*m.starts().last().unwrap(), data.len() as u64);
        // A flipped CV, a wrong length, a chunk length that no longer adds
        // up, a truncated body: each refused.
        let mut x = b.clone();
        x[HEAD_LEN] ^= 1;
        assert!(Manifest::decode(&x).is_err());
        let mut x = b.clone();
        x[32] ^= 1;
        assert!(Manifest::decode(&x).is_err());
        let mut x = b.clone();
        let n = x.len();
        x[n - 4] ^= 1;
        assert!(Manifest::decode(&x).is_err());
        assert!(Manifest::decode(&b[..b.len() - 1]).is_err());
        assert!(Manifest::decode(&b[..10]).is_err());
    }
}
