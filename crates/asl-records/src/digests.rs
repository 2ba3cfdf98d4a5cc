//! SHA-256 aliases: an `asl/digest` record says that an artifact's bytes have
//! a given SHA-256, so that the digests OCI, REAPI, SLSA and the seed's run
//! records use resolve to ASL artifacts (`aslctl get sha256:HEX`).
//!
//! The SHA-256 is computed by the store in the same pass over the bytes
//! that stores them ([`asl_core::PutOptions::sha256`]); a digest record carries
//! no time, so recording the same digest again is the same artifact and
//! costs nothing.

use super::cbor::Value;
use super::query::{Query, QueryIndex};
use super::{Record, RecordError};
use asl_core::{ArtifactId, PutOptions, Store};

/// The record type digests are stored as.
pub const DIGEST: &str = "asl/digest";

/// Lower-case hex of a digest (the same 32-byte hex codec as artifact ids).
pub fn hex(d: &[u8; 32]) -> String {
    ArtifactId::from_bytes(*d).to_hex()
}

/// A SHA-256 from 64 hex characters (either case), or from `sha256:HEX`.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let h = text.strip_prefix("sha256:").unwrap_or(text);
    h.parse::<ArtifactId>().ok().map(|id| *id.as_bytes())
}

/// The digest record for `subject`.
pub fn digest_record(subject: &ArtifactId, sha256: &[u8; 32], size: u64) -> Record {
    Record::new(
        DIGEST,
        1,
        Value::Map(vec![
            (Value::text("subject"), Value::Bytes(subject.as_bytes().to_vec())),
            (Value::text("sha256"), Value::text(hex(sha256))),
            (Value::text("size"), Value::Unsigned(size)),
        ]),
    )
}

/// Stores a digest record for each `(artifact, sha256, size)`; returns how
/// many were new. Visible after the store's next commit.
pub fn record(store: &Store, items: &[(ArtifactId, [u8; 32], u64)]) -> Result<usize, RecordError> {
    let bytes = items
        .iter()
        .map(|(id, sha, size)| digest_record(id, sha, *size).encode())
        .collect::<Result<Vec<_>, _>>()?;
    let puts = store.put_batch_with(&bytes, &PutOptions::default())?;
    Ok(puts.iter().filter(|p| p.new).count())
}

/// The SHA-256 of a stored artifact, read back (verified) from CURRENT or
/// a snapshot: for an artifact whose digest was not taken when it was
/// stored.
pub fn sha256_of_stored(from: &dyn crate::Source, id: &ArtifactId) -> Result<[u8; 32], RecordError> {
    use sha2::Digest;
    let mut r = from.reader(id)?;
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut r, &mut buf) {
            Ok(0) => break,
            Ok(n) => sha.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RecordError::Store(asl_core::Error::from_reader_io(e))),
        }
    }
    Ok(sha.finalize().into())
}

/// The SHA-256 a live digest record gives for `subject`, if any.
pub fn digest_of(store: &Store, index: &QueryIndex, subject: &ArtifactId) -> Result<Option<[u8; 32]>, RecordError> {
    for rid in index.annotations_of(subject)? {
        let r = super::get(store, &rid)?;
        if r.type_name == DIGEST {
            if let Some(Value::Text(h)) = r.body.get("sha256") {
                return Ok(parse_sha256(h));
            }
        }
    }
    Ok(None)
}

/// The live artifact whose SHA-256 is `sha256`, if a digest record names one.
///
/// ```
/// use asl_records::{digests, query::QueryIndex};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
/// let put = store.put_with(b"abc", &asl_core::PutOptions::new().sha256(true)).unwrap();
/// digests::record(&store, &[(put.id, put.sha256.unwrap(), put.len)]).unwrap();
/// store.commit().unwrap();
/// let (index, _) = QueryIndex::open(&store).unwrap();
/// let sha = digests::parse_sha256("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
/// assert_eq!(digests::resolve(&store, &index, &sha).unwrap(), Some(put.id));
/// ```
pub fn resolve(store: &Store, index: &QueryIndex, sha256: &[u8; 32]) -> Result<Option<ArtifactId>, RecordError> {
    let q = Query {
        labels: vec![("sha256".into(), hex(sha256))],
        type_name: Some(DIGEST.into()),
        ..Query::default()
    };
    Ok(index.find_live(store, &q)?.first().map(|h| h.subject))
}
