//! The cache namespace's access times on disk (`cache/access`, a side
//! file): when each entry was last read, kept approximately. Reads touch
//! only memory; the server writes this file whole every so often and when
//! it stops, so a crash forgets the reads since the last write and nothing
//! else. The file is derived: one that is missing or damaged is reported
//! and ignored (entries then count as last used when they were written),
//! never a reason to refuse to start. Format in `spec/format.md`
//! ("Cache access times").

use std::collections::HashMap;

/// The side file's name.
pub const FILE: &str = "cache/access";

const MAGIC: &[u8; 8] = b"ASLCACC\n";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8;
const ROW: usize = 16 + 8;
const TRAILER: usize = 32;

/// What an entry is known by in the file: the first 16 bytes of the
/// BLAKE3 of its name (collisions only merge two entries' times).
pub type Key = [u8; 16];

/// The key of entry `name`.
pub fn key(name: &str) -> Key {
    let h = blake3::hash(name.as_bytes());
    h.as_bytes()[..16].try_into().expect("16 of 32 bytes")
}

/// The file's bytes for these access times (milliseconds since the epoch).
pub fn encode(times: impl ExactSizeIterator<Item = (Key, u64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + times.len() * ROW + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(times.len() as u64).to_le_bytes());
    for (k, ms) in times {
        out.extend_from_slice(&k);
        out.extend_from_slice(&ms.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The access times a file holds, or why it cannot be read.
pub fn decode(b: &[u8]) -> Result<HashMap<Key, u64>, String> {
    if b.len() < HEADER + TRAILER || &b[..8] != MAGIC {
        return Err("not a cache access file".into());
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "cache access file version {version}, this build reads {VERSION}"
        ));
    }
    let (body, sum) = b.split_at(b.len() - TRAILER);
    if blake3::hash(body).as_bytes() != sum {
        return Err("cache access file fails its checksum".into());
    }
    let count = u64::from_le_bytes(b[12..20].try_into().expect("8 bytes"));
    let rows = &body[HEADER..];
    if rows.len() as u64 != count.saturating_mul(ROW as u64) {
        return Err(format!(
            "cache access file says {count} rows but holds {} bytes of them",
            rows.len()
        ));
    }
    Ok(rows
        .chunks_exact(ROW)
        .map(|r| {
            let k: Key = r[..16].try_into().expect("16 bytes");
            (k, u64::from_le_bytes(r[16..].try_into().expect("8 bytes")))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_any_flipped_byte_is_refused() {
        let rows = vec![(key("ac/1"), 5u64), (key("ccache/abc"), 1_700_000_000_123)];
        let b = encode(rows.clone().into_iter());
        let back = decode(&b).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[&key("ccache/abc")], 1_700_000_000_123);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "byte {i} flipped was accepted");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(decode(&encode(std::iter::empty())).unwrap().is_empty());
    }
}
