//! The `BUCKET` file: which bucket a store directory lives in, its page
//! cache budget, its writer identity, the delete grace, and whether it is
//! a read replica.

use super::{BUCKET_MAGIC, DEFAULT_CACHE_BYTES, DEFAULT_DELETE_GRACE};

/// Which bucket a store lives in and how much local disk its page cache
/// may use: the `BUCKET` file, a few `key=value` lines after a magic and
/// version line, closed by a CRC32C of everything before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierConfig {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Page cache budget in bytes.
    pub cache_bytes: u64,
    /// This directory's writer identity (32 hex digits): what the bucket's
    /// `LEASE` must name for it to write.
    pub holder: String,
    /// Seconds a segment GC drops stays in the bucket before it is
    /// deleted, for read replicas still reading through an older
    /// checkpoint (0: deleted at once).
    pub delete_grace: u64,
    /// A read replica: never writes, never takes the lease, and follows
    /// what the writer publishes (`crate::s3::follow`).
    pub replica: bool,
}

impl TierConfig {
    /// A configuration with a new random holder identity.
    pub fn new(url: &str, cache_bytes: u64) -> Self {
        let mut id = [0u8; 16];
        for (i, c) in id.chunks_mut(8).enumerate() {
            c.copy_from_slice(&rand_suffix().wrapping_add(i as u64).to_le_bytes());
        }
        Self {
            url: url.to_string(),
            cache_bytes,
            holder: id.iter().map(|b| format!("{b:02x}")).collect(),
            delete_grace: DEFAULT_DELETE_GRACE,
            replica: false,
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::textfile::frame(
            BUCKET_MAGIC,
            &[
                format!("url={}", self.url),
                format!("cache_bytes={}", self.cache_bytes),
                format!("holder={}", self.holder),
                format!("delete_grace={}", self.delete_grace),
                format!("replica={}", u8::from(self.replica)),
            ],
        )
    }

    /// Reads the file back; a one-line reason when it is not one.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        use crate::textfile::field;
        let lines = crate::textfile::unframe(b, BUCKET_MAGIC)?;
        // Lines added after the first files were written default to what
        // those files meant.
        let number = |key: &str, default: u64| match field(&lines, key) {
            Some(v) => v.parse().map_err(|_| format!("bad {key} {v:?}")),
            None => Ok(default),
        };
        Ok(Self {
            url: field(&lines, "url").ok_or("no url line")?.to_string(),
            cache_bytes: number("cache_bytes", DEFAULT_CACHE_BYTES)?,
            holder: field(&lines, "holder").ok_or("no holder line")?.to_string(),
            delete_grace: number("delete_grace", DEFAULT_DELETE_GRACE)?,
            replica: number("replica", 0)? == 1,
        })
    }
}

pub(super) fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_file_round_trips_and_checks() {
        let c = TierConfig::new("s3://b/p/q", 12345);
        assert_eq!(c.holder.len(), 32);
        assert_ne!(c.holder, TierConfig::new("s3://b/p/q", 1).holder);
        let b = c.encode();
        assert_eq!(TierConfig::decode(&b).unwrap(), c);
        let mut bad = b.clone();
        bad[15] ^= 1;
        assert!(TierConfig::decode(&bad).unwrap_err().contains("checksum"));
        let v2 = String::from_utf8(b).unwrap().replace("ASLBUCKET 1", "ASLBUCKET 2");
        assert!(TierConfig::decode(v2.as_bytes()).is_err());
    }
}
