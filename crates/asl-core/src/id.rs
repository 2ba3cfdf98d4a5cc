//! Artifact identity: the BLAKE3-256 of an artifact's bytes.
//!
//! The hex form is lower-case and 64 characters long, so `b3sum FILE` prints the
//! same id that `aslctl ingest FILE` does.

use std::fmt;
use std::str::FromStr;

/// A string that is not an artifact id or prefix (becomes
/// [`Error::InvalidId`](crate::Error::InvalidId) at the store's API).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid artifact id {input:?}: {reason}")]
pub struct IdError {
    /// The input.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

/// The identity of an artifact: BLAKE3-256 of its bytes, the same as
/// `b3sum` prints, written as 64 lowercase hex digits.
///
/// ```
/// use asl_core::{ArtifactId, IdPrefix};
///
/// let id = ArtifactId::of(b"hello\n");
/// // what `printf 'hello\n' | b3sum` prints
/// assert_eq!(id.to_hex(), "8e4c7c1b99dbfd50e7a95185fead5ee1448fa904a2fdd778eaf5f2dbfd629a99");
/// assert_eq!(id.to_string().parse::<ArtifactId>().unwrap(), id);
/// assert!(IdPrefix::parse("8e4c7c").unwrap().matches(&id));
/// assert!("not hex".parse::<ArtifactId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArtifactId([u8; 32]);

impl std::hash::Hash for ArtifactId {
    // The id is already a uniform hash: its first 8 bytes are as good a key as
    // any hasher could make, and equal ids still give equal keys.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(a));
    }
}

/// A `Hasher` for maps keyed by [`ArtifactId`]: passes the id's first 8 bytes
/// through instead of running SipHash over them.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

/// `BuildHasher` for [`IdHasher`].
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;

impl ArtifactId {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// Hashes `bytes` and returns their id.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps 32 raw bytes as an id (no hashing).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// The first 8 bytes as a number that orders as the id does: many ids
    /// sort by it without 32-byte comparisons (an equal key is as good as
    /// never seen, and callers only need an order close to the ids').
    pub(crate) fn order_key(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// The hex form in a buffer of its own (no allocation: listings print
    /// tens of thousands of ids).
    pub fn hex_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A validated hex prefix of an id (1 to 64 hex digits), used to find an artifact
/// from a shortened id the way git resolves abbreviated object names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPrefix {
    nibbles: Vec<u8>,
    text: String,
}

impl IdPrefix {
    /// Parses a hex prefix; rejects empty input, non-hex characters and more than 64 digits.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let bad = |reason: &str| IdError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.len() > 64 {
            return Err(bad("longer than 64 hex digits"));
        }
        let nibbles = input
            .bytes()
            .map(nibble)
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("not a hex string"))?;
        Ok(Self {
            nibbles,
            text: input.to_ascii_lowercase(),
        })
    }

    /// The prefix as typed, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The full id when all 64 digits are given.
    pub fn full(&self) -> Option<ArtifactId> {
        if self.nibbles.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in self.nibbles.chunks(2).enumerate() {
            out[i] = (pair[0] << 4) | pair[1];
        }
        Some(ArtifactId(out))
    }

    /// The smallest id that carries this prefix.
    pub fn lower_bound(&self) -> ArtifactId {
        let mut out = [0u8; 32];
        for (i, n) in self.nibbles.iter().enumerate() {
            out[i / 2] |= if i % 2 == 0 { n << 4 } else { *n };
        }
        ArtifactId(out)
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &ArtifactId) -> bool {
        self.nibbles.iter().enumerate().all(|(i, n)| {
            let b = id.0[i / 2];
            let got = if i % 2 == 0 { b >> 4 } else { b & 15 };
            got == *n
        })
    }
}

impl FromStr for ArtifactId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = IdPrefix::parse(s)?;
        p.full().ok_or_else(|| IdError {
            input: s.to_string(),
            reason: format!("expected 64 hex digits, got {}", s.len()),
        })
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex_bytes();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits"))
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_matches_blake3() {
        let id = ArtifactId::of(b"hello");
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(id.to_hex().parse::<ArtifactId>().unwrap(), id);
    }

    #[test]
    fn prefix_rules() {
        let id = ArtifactId::of(b"x");
        let hex = id.to_hex();
        for n in 1..=64 {
            let p = IdPrefix::parse(&hex[..n]).unwrap();
            assert!(p.matches(&id));
            assert!(p.lower_bound() <= id);
        }
        assert!(IdPrefix::parse("").is_err());
        assert!(IdPrefix::parse("xyz").is_err());
        assert!(IdPrefix::parse(&"a".repeat(65)).is_err());
        assert!("abc".parse::<ArtifactId>().is_err());
        let other = IdPrefix::parse(if hex.starts_with('0') { "1" } else { "0" }).unwrap();
        assert!(!other.matches(&id));
    }
}
