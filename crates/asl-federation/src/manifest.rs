//! The publication manifest: its record, its pins, and how another domain
//! checks one. Read by publishing (which writes the next) and co-signing
//! (which signs the latest); it needs neither.

use super::domain::Domain;
use crate::error::{FederationError as Error, Result};
use asl_core::{ArtifactId, Store};
use asl_pel::keys::{self, PublicKey};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, Source};

/// The record type of publication manifests.
pub const PUBLICATION_TYPE: &str = "asl/publication";
/// The pin naming the latest publication manifest.
pub const PUBLICATION_PIN: &str = "asl.publication";
/// The pin naming its signature record.
pub const SIGNATURE_PIN: &str = "asl.publication.sig";

/// A publication manifest, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The publishing domain's id.
    pub domain: [u8; 16],
    /// Its name when the manifest was made.
    pub name: String,
    /// Its public key (the one that must have signed this manifest).
    pub key: PublicKey,
    /// 1 for the first manifest, one more for each after it.
    pub seq: u64,
    /// The manifest this one follows.
    pub prev: Option<ArtifactId>,
    /// Every published artifact, sorted.
    pub published: Vec<ArtifactId>,
    /// Their lengths, in the same order (empty in a manifest written
    /// before sizes were listed): a fetch knows from them which artifacts
    /// to fetch chunk by chunk without asking first.
    pub sizes: Vec<u64>,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
}

impl Manifest {
    /// The record.
    pub fn to_record(&self) -> Record {
        let mut m = vec![
            (Value::text("domain"), Value::Bytes(self.domain.to_vec())),
            (Value::text("name"), Value::text(self.name.clone())),
            (Value::text("key"), Value::Bytes(self.key.to_vec())),
            (Value::text("seq"), Value::Unsigned(self.seq)),
            (
                Value::text("published"),
                Value::Array(
                    self.published
                        .iter()
                        .map(|id| Value::Bytes(id.as_bytes().to_vec()))
                        .collect(),
                ),
            ),
            (Value::text("created_at"), Value::text(self.created_at.clone())),
        ];
        if let Some(p) = self.prev {
            m.push((Value::text("prev"), Value::Bytes(p.as_bytes().to_vec())));
        }
        if !self.sizes.is_empty() {
            m.push((
                Value::text("sizes"),
                Value::Array(self.sizes.iter().map(|n| Value::Unsigned(*n)).collect()),
            ));
        }
        Record::new(PUBLICATION_TYPE, 1, Value::Map(m))
    }

    /// Reads a manifest record back; a one-line reason when it is not one.
    pub fn from_record(r: &Record) -> std::result::Result<Manifest, String> {
        if r.type_name != PUBLICATION_TYPE || r.version != 1 {
            return Err(format!(
                "a {} v{} record, not {PUBLICATION_TYPE} v1",
                r.type_name, r.version
            ));
        }
        let bytes = |k: &str| match r.body.get(k) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            _ => Err(format!("no {k}")),
        };
        let id = |b: &[u8]| {
            <[u8; 32]>::try_from(b)
                .map(ArtifactId::from_bytes)
                .map_err(|_| "an id is not 32 bytes".to_string())
        };
        let published = match r.body.get("published") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => id(b),
                    _ => Err("published holds a non-id".into()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
            _ => return Err("no published list".into()),
        };
        if published.windows(2).any(|w| w[0] >= w[1]) {
            return Err("published is not sorted and distinct".into());
        }
        let sizes = match r.body.get("sizes") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.len() == published.len() => a
                .iter()
                .map(|v| match v {
                    Value::Unsigned(n) => Ok(*n),
                    _ => Err("sizes holds a non-integer".to_string()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Some(_) => return Err("sizes does not match published".into()),
        };
        Ok(Manifest {
            sizes,
            domain: bytes("domain")?.try_into().map_err(|_| "domain is not 16 bytes")?,
            name: match r.body.get("name") {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err("no name".into()),
            },
            key: bytes("key")?.try_into().map_err(|_| "key is not 32 bytes")?,
            seq: match r.body.get("seq") {
                Some(Value::Unsigned(n)) => *n,
                _ => return Err("no seq".into()),
            },
            prev: match r.body.get("prev") {
                Some(Value::Bytes(b)) => Some(id(b)?),
                _ => None,
            },
            published,
            created_at: match r.body.get("created_at") {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err("no created_at".into()),
            },
        })
    }
}

/// A manifest as another domain checks it: its bytes must decode, be
/// signed by `key`, and be newer than `after` (the last sequence number
/// accepted from that domain).
pub fn check_manifest(
    manifest: &[u8],
    signature: &[u8],
    key: &PublicKey,
    after: u64,
) -> std::result::Result<Manifest, String> {
    let id = ArtifactId::of(manifest);
    let r = Record::decode(manifest).map_err(|e| format!("manifest: {e}"))?;
    let m = Manifest::from_record(&r)?;
    let sig = Record::decode(signature).map_err(|e| format!("signature: {e}"))?;
    match keys::signer_of(&sig, &id) {
        Some(k) if k == *key && m.key == *key => {}
        Some(_) => return Err("signed by another key than the domain's".into()),
        None => return Err("the signature does not verify".into()),
    }
    if m.seq <= after {
        return Err(format!(
            "manifest {} is not newer than {after}, the last accepted: an old manifest replayed",
            m.seq
        ));
    }
    Ok(m)
}

/// The latest manifest and its signature record, by their pins.
pub fn latest_ids(store: &Store) -> Option<(ArtifactId, ArtifactId)> {
    let pins = store.pins().list();
    let get = |name: &str| pins.iter().find(|(n, _)| n == name).map(|(_, id)| *id);
    Some((get(PUBLICATION_PIN)?, get(SIGNATURE_PIN)?))
}

/// The latest manifest this store published, with its id.
pub fn latest(store: &Store) -> Result<Option<(ArtifactId, Manifest)>> {
    let Some((_, id)) = store.pins().list().into_iter().find(|(n, _)| n == PUBLICATION_PIN) else {
        return Ok(None);
    };
    let r = records::get(store as &dyn Source, &id)?;
    let m = Manifest::from_record(&r).map_err(|e| Error::Invalid(format!("manifest {id}: {e}")))?;
    Ok(Some((id, m)))
}

/// The signature record over manifest `id` (the one this domain stored).
pub fn signature_of(store: &Store, id: &ArtifactId) -> Result<Option<ArtifactId>> {
    let signer = Domain::signer(store)?;
    let bytes = signer.signature_record(id).encode()?;
    // Ed25519 signatures are deterministic: the record is the same bytes.
    let sid = ArtifactId::of(&bytes);
    Ok(store.contains(&sid)?.then_some(sid))
}
