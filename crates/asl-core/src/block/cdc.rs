//! Content-defined chunks: where a large artifact is cut, what a chunk is
//! called, and the body of a chunk block.
//!
//! Cuts follow the bytes, not their offsets (FastCDC, 2020 variant, through
//! the `fastcdc` crate), so an insertion shifts only the chunks around it and
//! the rest of an edited file is found again among the chunks already
//! stored. The parameters are part of the format: two stores, or two builds,
//! cut the same bytes at the same places, and `spec/format.md` keeps a golden
//! cut list that a test checks.
//!
//! A chunk is named by a *chunk key*, a keyed BLAKE3 of its bytes, rather
//! than by its plain BLAKE3: an artifact whose bytes happen to equal a chunk
//! then has an id that is not the chunk's key, so the two never share (and
//! fight over) one index record.

use std::sync::OnceLock;

use fastcdc::v2020::{FastCDC, Normalization};

use crate::error::DecodeError;
use crate::id::ArtifactId;

/// Smallest chunk FastCDC cuts (the last chunk of an input may be shorter).
pub const MIN_CHUNK: usize = 16 << 10;
/// Average chunk size FastCDC aims for.
pub const AVG_CHUNK: usize = 64 << 10;
/// Largest chunk: FastCDC cuts here when no content boundary came first.
pub const MAX_CHUNK: usize = 256 << 10;

/// The text whose BLAKE3 is the key of the keyed hash that names chunks.
pub const CHUNK_KEY_CONTEXT: &[u8] = b"ASL content-defined chunk key, format 4";

fn hash_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| *blake3::hash(CHUNK_KEY_CONTEXT).as_bytes())
}

/// The key a chunk of `bytes` is stored and indexed under.
pub fn chunk_key(bytes: &[u8]) -> ArtifactId {
    ArtifactId::from_bytes(*blake3::keyed_hash(hash_key(), bytes).as_bytes())
}

/// The next cut points of `data`, as (offset, length) pairs covering a prefix
/// of it. When `eof` is false the chunk that runs into the end of `data` is
/// left out (more input could move its cut); the caller keeps those bytes and
/// puts them in front of the next window. With `eof` every byte is covered.
pub fn cuts(data: &[u8], eof: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(data.len() / AVG_CHUNK + 1);
    for c in FastCDC::with_level(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, Normalization::Level1) {
        if !eof && c.offset + c.length == data.len() {
            break;
        }
        out.push((c.offset, c.length));
    }
    out
}

/// The raw body of a chunk block: the chunk's key, then its bytes.
pub fn encode_chunk(key: &ArtifactId, bytes: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + bytes.len());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(bytes);
    b
}

/// Splits a chunk block's raw body into its key and bytes, checking that the
/// bytes hash to the key.
pub fn decode_chunk(raw: &[u8]) -> Result<(ArtifactId, &[u8]), DecodeError> {
    if raw.len() < 33 {
        return Err(DecodeError::Truncated {
            what: "chunk block",
            need: 33,
            have: raw.len() as u64,
        });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[..32]);
    let key = ArtifactId::from_bytes(key);
    let bytes = &raw[32..];
    if bytes.len() > MAX_CHUNK {
        return Err(DecodeError::Invalid(format!("chunk of {} bytes", bytes.len())));
    }
    if chunk_key(bytes) != key {
        return Err(DecodeError::Invalid(format!("chunk {key} does not hash to its key")));
    }
    Ok((key, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        crate::testutil::noise(seed, len)
    }

    #[test]
    fn cutting_in_windows_gives_the_cuts_of_the_whole() {
        let data = noise(3 << 20, 7);
        let whole = cuts(&data, true);
        for window in [1usize << 20, 300_000, MAX_CHUNK + 1] {
            let mut got = Vec::new();
            let mut start = 0usize;
            let mut carry_from = 0usize;
            while carry_from < data.len() {
                let end = (start + window).min(data.len());
                let eof = end == data.len();
                let piece = &data[carry_from..end];
                let cs = cuts(piece, eof);
                let used: usize = cs.iter().map(|c| c.1).sum();
                got.extend(cs.iter().map(|(o, l)| (o + carry_from, *l)));
                carry_from += used;
                start = end;
                if eof {
                    break;
                }
            }
            assert_eq!(got, whole, "window {window}");
        }
        assert!(whole.iter().all(|c| c.1 <= MAX_CHUNK));
        assert!(whole[..whole.len() - 1].iter().all(|c| c.1 >= MIN_CHUNK));
        assert_eq!(whole.iter().map(|c| c.1).sum::<usize>(), data.len());
    }

    #[test]
    fn an_insertion_moves_only_nearby_cuts() {
        let a = noise(2 << 20, 3);
        let mut b = a.clone();
        b.splice(1_000_000..1_000_000, *b"inserted");
        let keys = |d: &[u8]| -> std::collections::HashSet<ArtifactId> {
            cuts(d, true).iter().map(|(o, l)| chunk_key(&d[*o..o + l])).collect()
        };
        let (ka, kb) = (keys(&a), keys(&b));
        let shared = ka.intersection(&kb).count();
        assert!(shared + 3 >= ka.len(), "{shared} of {} chunks shared", ka.len());
    }

    #[test]
    fn chunk_bodies_check_their_key() {
        let bytes = noise(40_000, 1);
        let key = chunk_key(&bytes);
        assert_ne!(key, ArtifactId::of(&bytes));
        let mut body = encode_chunk(&key, &bytes);
        assert_eq!(decode_chunk(&body).unwrap(), (key, &bytes[..]));
        body[100] ^= 1;
        assert!(decode_chunk(&body).is_err());
        assert!(decode_chunk(&body[..20]).is_err());
    }
}
