//! Named snapshots and pins as the log and the checkpoint record them.
//!
//! A snapshot's entries live in an index file named after its identity
//! (`snapshots/<identity>.idx`), so two snapshots of the same content share one
//! file; the catalog entry here carries the name, identity, creation time and
//! totals. A pin names one artifact as a GC root. Both are small, so the whole
//! catalog is written into every checkpoint and changes go through the log.

use crate::error::DecodeError;
use crate::fsutil::{le_u16, le_u64};
use crate::id::ArtifactId;

use super::current::CurrentId;

/// Longest snapshot or pin name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A named snapshot as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Its name, unique in the store.
    pub name: String,
    /// CURRENT's identity when it was taken (also names its index file).
    pub identity: CurrentId,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Number of artifacts it holds.
    pub artifacts: u64,
    /// Their total length in bytes.
    pub bytes: u64,
}

/// Checks a snapshot or pin name: 1 to 128 bytes of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `-` (names become file and command-line arguments).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name must be 1 to {MAX_NAME_LEN} bytes long"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("name {name:?} must not start with '.' or '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "name {name:?} holds {c:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Appends `len u16 | bytes` for a name.
pub fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// Reads a name written by [`put_name`] at `*at`, advancing it.
pub fn get_name(b: &[u8], at: &mut usize) -> Result<String, DecodeError> {
    let bad = |what: &str| DecodeError::Invalid(format!("name: {what}"));
    if b.len() < *at + 2 {
        return Err(bad("truncated length"));
    }
    let n = le_u16(b, *at) as usize;
    let s = b.get(*at + 2..*at + 2 + n).ok_or_else(|| bad("truncated"))?;
    let s = std::str::from_utf8(s).map_err(|_| bad("not UTF-8"))?.to_string();
    validate_name(&s).map_err(|e| bad(&e))?;
    *at += 2 + n;
    Ok(s)
}

fn get_32(b: &[u8], at: &mut usize) -> Result<[u8; 32], DecodeError> {
    let s = b
        .get(*at..*at + 32)
        .ok_or_else(|| DecodeError::Invalid("truncated 32-byte field".into()))?;
    *at += 32;
    let mut a = [0u8; 32];
    a.copy_from_slice(s);
    Ok(a)
}

fn get_u64(b: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    if b.len() < *at + 8 {
        return Err(DecodeError::Invalid("truncated integer".into()));
    }
    *at += 8;
    Ok(le_u64(b, *at - 8))
}

impl SnapshotMeta {
    /// `identity[32] | created u64 | artifacts u64 | bytes u64 | name`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.identity.0);
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(&self.artifacts.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        put_name(out, &self.name);
    }

    /// Decodes one meta at `*at`, advancing it.
    pub fn decode(b: &[u8], at: &mut usize) -> Result<Self, DecodeError> {
        let identity = CurrentId(get_32(b, at)?);
        let created = get_u64(b, at)?;
        let artifacts = get_u64(b, at)?;
        let bytes = get_u64(b, at)?;
        let name = get_name(b, at)?;
        Ok(Self {
            name,
            identity,
            created,
            artifacts,
            bytes,
        })
    }
}

/// `id[32] | name`.
pub fn encode_pin(out: &mut Vec<u8>, name: &str, id: &ArtifactId) {
    out.extend_from_slice(id.as_bytes());
    put_name(out, name);
}

/// Decodes a pin at `*at`, advancing it.
pub fn decode_pin(b: &[u8], at: &mut usize) -> Result<(String, ArtifactId), DecodeError> {
    let id = ArtifactId::from_bytes(get_32(b, at)?);
    Ok((get_name(b, at)?, id))
}

/// File name of a snapshot's index file.
pub fn snapshot_file_name(identity: &CurrentId) -> String {
    format!("{identity}.idx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "nightly-2026.11.22", "A_b-9", &"x".repeat(128)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meta_round_trip() {
        let m = SnapshotMeta {
            name: "release-1".into(),
            identity: CurrentId([7; 32]),
            created: 1_700_000_000,
            artifacts: 3,
            bytes: 99,
        };
        let mut b = Vec::new();
        m.encode(&mut b);
        encode_pin(&mut b, "keep", &ArtifactId::of(b"x"));
        let mut at = 0;
        assert_eq!(SnapshotMeta::decode(&b, &mut at).unwrap(), m);
        assert_eq!(decode_pin(&b, &mut at).unwrap(), ("keep".into(), ArtifactId::of(b"x")));
        assert_eq!(at, b.len());
        let mut at = 0;
        assert!(SnapshotMeta::decode(&b[..40], &mut at).is_err());
    }
}
