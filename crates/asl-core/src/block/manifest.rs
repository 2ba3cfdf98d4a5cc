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
//!
//! An artifact of more than [`PART_CHUNKS`] chunks (about 256 MiB) keeps its
//! chunk list in *parts* (segment version 5): each part is a run of the list
//! stored as a chunk of its own, whose key the manifest names. A writer then
//! holds one part of the list, not all of it, and hands the finished parts to
//! the store as it goes: a 1 TiB artifact would otherwise keep 16 million
//! entries (576 MiB) in memory until its end.

use crate::error::DecodeError;
use crate::fsutil::{le_u32, le_u64};
use crate::id::ArtifactId;

use super::cdc::MAX_CHUNK;
use super::tree;

/// Bytes before the lists: id, length, grid size, counts of pieces, chunks, parts.
const HEAD_LEN: usize = 56;
/// Bytes per chunk in the list: key and length.
const CHUNK_LEN: usize = 36;
/// Bytes per part in a manifest's part list: key, bytes spanned, chunks.
const PART_LEN: usize = 44;
/// Bytes before a part's chunk list: magic, version, count.
const PART_HEAD_LEN: usize = 16;
/// A part's magic (then version 1).
const PART_MAGIC: &[u8; 8] = b"ASLPARTS";
/// Chunks per part when a writer cuts its list into parts (the last part may
/// hold fewer). A part of 4096 entries is 147 472 bytes, within a chunk.
pub const PART_CHUNKS: usize = 4096;
/// Most chunks a part can hold: its list must fit in one chunk's bytes.
pub const MAX_PART_CHUNKS: usize = (MAX_CHUNK - PART_HEAD_LEN) / CHUNK_LEN;

/// One content-defined chunk of an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestChunk {
    /// The chunk's key (see [`super::cdc::chunk_key`]).
    pub key: ArtifactId,
    /// Its length.
    pub len: u32,
}

/// One part of a long chunk list: a chunk whose bytes are a run of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestPart {
    /// The part's chunk key (of its encoded list, see [`encode_part`]).
    pub key: ArtifactId,
    /// Bytes of the artifact its chunks hold.
    pub span: u64,
    /// Chunks it lists.
    pub count: u32,
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
    /// The chunks holding the bytes, in order (empty when `parts` is not).
    pub chunks: Vec<ManifestChunk>,
    /// The parts listing the chunks, in order (empty for a list kept whole).
    pub parts: Vec<ManifestPart>,
}

impl Manifest {
    /// Encodes the raw block body.
    pub fn encode(&self) -> Vec<u8> {
        let lists = self.chunks.len() * CHUNK_LEN + self.parts.len() * PART_LEN;
        let mut b = Vec::with_capacity(HEAD_LEN + self.cvs.len() * 32 + lists);
        b.extend_from_slice(self.id.as_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.grid.to_le_bytes());
        b.extend_from_slice(&(self.cvs.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.chunk_count() as u32).to_le_bytes());
        b.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for cv in &self.cvs {
            b.extend_from_slice(cv);
        }
        for c in &self.chunks {
            b.extend_from_slice(c.key.as_bytes());
            b.extend_from_slice(&c.len.to_le_bytes());
        }
        for p in &self.parts {
            b.extend_from_slice(p.key.as_bytes());
            b.extend_from_slice(&p.span.to_le_bytes());
            b.extend_from_slice(&p.count.to_le_bytes());
        }
        b
    }

    /// Chunks the artifact is stored in (repeats counted).
    pub fn chunk_count(&self) -> u64 {
        if self.parts.is_empty() {
            self.chunks.len() as u64
        } else {
            self.parts.iter().map(|p| p.count as u64).sum()
        }
    }

    /// Decodes a raw body, checking that it holds together: the grid covers
    /// the length, its values merge to the id, the chunks (or the parts'
    /// spans) add up to the length. (A grid of one piece is checked when the
    /// piece is read: its bytes hash to the id; a part's list when the part
    /// is read: see [`decode_part`].)
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
        let n_parts = le_u32(b, 52) as u64;
        let listed = if n_parts == 0 {
            n_chunks * CHUNK_LEN as u64
        } else {
            n_parts * PART_LEN as u64
        };
        if b.len() as u64 != HEAD_LEN as u64 + n_grid * 32 + listed {
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
        if n_parts > 0 {
            let mut parts = Vec::with_capacity(n_parts as usize);
            let (mut total, mut count) = (0u64, 0u64);
            for p in b[at..].chunks_exact(PART_LEN) {
                let mut key = [0u8; 32];
                key.copy_from_slice(&p[..32]);
                let (span, n) = (le_u64(p, 32), le_u32(p, 40));
                if n == 0 || n as usize > MAX_PART_CHUNKS || span < n as u64 || span > n as u64 * MAX_CHUNK as u64 {
                    return bad(format!("part of {n} chunks spanning {span} bytes"));
                }
                total += span;
                count += n as u64;
                parts.push(ManifestPart {
                    key: ArtifactId::from_bytes(key),
                    span,
                    count: n,
                });
            }
            if total != len || count != n_chunks {
                return bad(format!(
                    "parts add up to {total} bytes in {count} chunks, not {len} in {n_chunks}"
                ));
            }
            return Ok(Self {
                id: ArtifactId::from_bytes(id),
                len,
                grid,
                cvs,
                chunks: Vec::new(),
                parts,
            });
        }
        let (chunks, total) = match chunk_list(&b[at..]) {
            Ok(v) => v,
            Err(m) => return bad(m),
        };
        if total != len {
            return bad(format!("chunks add up to {total} bytes, not {len}"));
        }
        Ok(Self {
            id: ArtifactId::from_bytes(id),
            len,
            grid,
            cvs,
            chunks,
            parts: Vec::new(),
        })
    }

    /// Each chunk's offset in the artifact, and the length as the last, for
    /// a list kept whole (a list in parts is read part by part).
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

/// Decodes a list of 36-byte chunk entries (its length a multiple of 36,
/// checked by the caller), each length checked; returns it and its total.
fn chunk_list(b: &[u8]) -> Result<(Vec<ManifestChunk>, u64), String> {
    let mut out = Vec::with_capacity(b.len() / CHUNK_LEN);
    let mut total = 0u64;
    for c in b.chunks_exact(CHUNK_LEN) {
        let mut key = [0u8; 32];
        key.copy_from_slice(&c[..32]);
        let len = le_u32(c, 32);
        if len == 0 || len as usize > MAX_CHUNK {
            return Err(format!("chunk of {len} bytes"));
        }
        total += len as u64;
        out.push(ManifestChunk {
            key: ArtifactId::from_bytes(key),
            len,
        });
    }
    Ok((out, total))
}

/// The bytes of a part: magic, version 1, the count, then each chunk's key
/// and length.
pub fn encode_part(chunks: &[ManifestChunk]) -> Vec<u8> {
    let mut b = Vec::with_capacity(PART_HEAD_LEN + chunks.len() * CHUNK_LEN);
    b.extend_from_slice(PART_MAGIC);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for c in chunks {
        b.extend_from_slice(c.key.as_bytes());
        b.extend_from_slice(&c.len.to_le_bytes());
    }
    b
}

/// Decodes the bytes of `part` (already proven against its key), checking
/// them against what the manifest says of it: as many chunks, spanning as
/// many bytes.
pub fn decode_part(b: &[u8], part: &ManifestPart) -> Result<Vec<ManifestChunk>, DecodeError> {
    let bad = |m: String| Err(DecodeError::Invalid(format!("manifest part {}: {m}", part.key)));
    if b.len() < PART_HEAD_LEN || &b[..8] != PART_MAGIC {
        return bad("not a chunk list".into());
    }
    if le_u32(b, 8) != 1 {
        return bad(format!("version {}", le_u32(b, 8)));
    }
    let n = le_u32(b, 12);
    if n != part.count || b.len() != PART_HEAD_LEN + n as usize * CHUNK_LEN {
        return bad(format!(
            "{n} chunks in {} bytes, the manifest says {}",
            b.len(),
            part.count
        ));
    }
    let (out, total) = match chunk_list(&b[PART_HEAD_LEN..]) {
        Ok(v) => v,
        Err(m) => return bad(m),
    };
    if total != part.span {
        return bad(format!("chunks add up to {total} bytes, not {}", part.span));
    }
    Ok(out)
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
            parts: Vec::new(),
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

    #[test]
    fn a_list_in_parts_round_trips_and_each_part_is_held_to_the_manifest() {
        let data: Vec<u8> = (0..900_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let flat = manifest_of(&data, 1 << 16);
        let lists: Vec<&[ManifestChunk]> = flat.chunks.chunks(3).collect();
        let parts: Vec<ManifestPart> = lists
            .iter()
            .map(|l| ManifestPart {
                key: chunk_key(&encode_part(l)),
                span: l.iter().map(|c| c.len as u64).sum(),
                count: l.len() as u32,
            })
            .collect();
        assert!(parts.len() >= 2, "{} chunks", flat.chunks.len());
        let m = Manifest {
            chunks: Vec::new(),
            parts: parts.clone(),
            ..flat.clone()
        };
        let b = m.encode();
        let back = Manifest::decode(&b).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.chunk_count(), flat.chunks.len() as u64);
        let mut again = Vec::new();
        for (p, l) in parts.iter().zip(&lists) {
            again.extend(decode_part(&encode_part(l), p).unwrap());
        }
        assert_eq!(again, flat.chunks);
        // A part that lists other lengths, fewer chunks, or is not a list.
        let wrong = ManifestPart {
            span: parts[0].span + 1,
            ..parts[0]
        };
        assert!(decode_part(&encode_part(lists[0]), &wrong).is_err());
        assert!(decode_part(&encode_part(&lists[0][..1]), &parts[0]).is_err());
        assert!(decode_part(&data[..200], &parts[0]).is_err());
        // Spans that do not add up, or a chunk count that disagrees.
        let mut x = b.clone();
        let at = HEAD_LEN + m.cvs.len() * 32 + 32;
        x[at] ^= 1;
        assert!(Manifest::decode(&x).is_err());
        let mut x = b.clone();
        x[48] ^= 1;
        assert!(Manifest::decode(&x).is_err());
    }
}
