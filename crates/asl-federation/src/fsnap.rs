//! Federated snapshots: a named snapshot of CURRENT, which may hold
//! artifacts imported from other domains, plus a signed record that says
//! where those came from — for each other domain, the publication manifest
//! (and its signature) the imports were accepted under.
//!
//! The `asl/federated-snapshot` record's id is the federated snapshot's
//! identity: it is derived from its content (the snapshot's own identity,
//! the manifests, the domain and key), so two that say the same thing are
//! the same. It and its signature are pinned (`asl.fsnap.<name>` and
//! `asl.fsnap.<name>.sig`), and the snapshot holds every member, the
//! manifests and their signatures included, so all of it stays through GC.
//! [`verify`] checks it offline: the signature, that the snapshot is the
//! one named, each manifest's signature with the key pinned for its
//! domain, that every imported member is listed by its domain's manifest,
//! and that every member reads back whole.

use std::collections::BTreeMap;

use super::domain::Domain;
use super::publish;
use super::remote;
use crate::error::{FederationError as Error, Result};
use asl_core::SnapshotMeta;
use asl_core::{ArtifactId, Store};
use asl_pel::keys::{self, hex, PublicKey};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, Source};

/// The record type.
pub const FSNAP_TYPE: &str = "asl/federated-snapshot";

/// Where one other domain's artifacts in the snapshot came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The domain.
    pub domain: [u8; 16],
    /// The manifest the imports were accepted under, and its signature.
    pub manifest: ArtifactId,
    /// Its signature record.
    pub signature: ArtifactId,
    /// The manifest's sequence number.
    pub seq: u64,
}

/// A federated snapshot as created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// The record (its id is the identity).
    pub id: ArtifactId,
    /// Its signature record.
    pub signature: ArtifactId,
    /// The snapshot.
    pub meta: SnapshotMeta,
    /// The other domains it draws on.
    pub sources: Vec<Origin>,
}

fn pin_names(name: &str) -> (String, String) {
    (format!("asl.fsnap.{name}"), format!("asl.fsnap.{name}.sig"))
}

fn bytes32(v: Option<&Value>) -> Option<ArtifactId> {
    match v {
        Some(Value::Bytes(b)) => <[u8; 32]>::try_from(b.as_slice()).ok().map(ArtifactId::from_bytes),
        _ => None,
    }
}

/// The import records this store pinned, by the local domain number they
/// are for: (domain id, manifest, signature, seq).
fn imports_by_number(store: &Store) -> Result<BTreeMap<u16, Origin>> {
    let mut out: BTreeMap<u16, Origin> = BTreeMap::new();
    for imp in super::sync::pinned_imports(store)? {
        let o = Origin {
            domain: imp.domain,
            manifest: imp.manifest,
            signature: imp.signature,
            seq: imp.seq,
        };
        // Two remotes may name one domain: keep its newest manifest.
        match out.get(&imp.local) {
            Some(e) if e.seq >= o.seq => {}
            _ => {
                out.insert(imp.local, o);
            }
        }
    }
    Ok(out)
}

/// The import record of each other domain snapshot `name` holds artifacts
/// of, or promises some: refused when one is gone (a source that cannot be
/// named cannot be signed for).
#[allow(clippy::type_complexity)]
fn sources_of(
    store: &Store,
    name: &str,
    known: &BTreeMap<u16, Origin>,
) -> Result<(Vec<Origin>, BTreeMap<ArtifactId, super::promise::Promise>)> {
    let mut used = BTreeMap::new();
    for info in store.at(name)?.iter()? {
        let info = info?;
        if info.domain.0 != 0 {
            let src = known.get(&info.domain.0).ok_or_else(|| {
                Error::Invalid(format!(
                    "{} comes from domain number {} but no import record names it (fetch from that domain again)",
                    info.id, info.domain.0
                ))
            })?;
            used.insert(info.domain.0, src.clone());
        }
    }
    // Artifacts referred to but promised (not fetched): recorded with their
    // domain, whose manifest must list them.
    let promised = super::promise::promised(store)?;
    for p in promised.values() {
        let src = known
            .get(&p.local)
            .ok_or_else(|| Error::Invalid(format!("domain number {} has no import record", p.local)))?;
        used.insert(p.local, src.clone());
    }
    Ok((used.into_values().collect(), promised))
}

/// Takes snapshot `name` of CURRENT and the signed record of where its
/// imported artifacts came from.
pub fn create(store: &Store, name: &str) -> Result<Created> {
    let domain = Domain::ensure(store)?;
    let signer = Domain::signer(store)?;
    let known = imports_by_number(store)?;
    let meta = store.snapshots().create(name)?;
    // A snapshot whose sources cannot all be named is not left behind
    // without its signed record.
    let (sources, promised) = match sources_of(store, name, &known) {
        Ok(s) => s,
        Err(e) => {
            store.snapshots().delete(name)?;
            return Err(e);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rec = Record::new(
        FSNAP_TYPE,
        1,
        Value::Map(vec![
            (Value::text("name"), Value::text(name)),
            (Value::text("snapshot"), Value::Bytes(meta.identity.0.to_vec())),
            (Value::text("domain"), Value::Bytes(domain.id.to_vec())),
            (Value::text("key"), Value::Bytes(signer.public().to_vec())),
            (
                Value::text("sources"),
                Value::Array(
                    sources
                        .iter()
                        .map(|s| {
                            Value::Map(vec![
                                (Value::text("domain"), Value::Bytes(s.domain.to_vec())),
                                (Value::text("manifest"), Value::Bytes(s.manifest.as_bytes().to_vec())),
                                (Value::text("signature"), Value::Bytes(s.signature.as_bytes().to_vec())),
                                (Value::text("seq"), Value::Unsigned(s.seq)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (Value::text("created_at"), Value::text(records::time::format(now))),
        ]),
    );
    let mut rec = rec;
    if let (false, Value::Map(body)) = (promised.is_empty(), &mut rec.body) {
        let list = promised
            .iter()
            .map(|(id, p)| {
                Value::Map(vec![
                    (Value::text("id"), Value::Bytes(id.as_bytes().to_vec())),
                    (Value::text("domain"), Value::Bytes(p.domain.to_vec())),
                ])
            })
            .collect();
        body.push((Value::text("promised"), Value::Array(list)));
    }
    let id = records::put(store, &rec)?.id;
    let signature = signer.sign(store, &id)?;
    store.commit()?;
    let (p, ps) = pin_names(name);
    store.pins().set(&ps, &signature)?;
    store.pins().set(&p, &id)?;
    Ok(Created {
        id,
        signature,
        meta,
        sources,
    })
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The federated snapshot's identity.
    pub id: Option<ArtifactId>,
    /// Members read back whole.
    pub members: u64,
    /// Of those, imported from other domains.
    pub imported: u64,
    /// Other domains' manifests checked.
    pub sources: usize,
    /// Promised artifacts (referred to, not fetched) it names, each present
    /// now or listed by its domain's manifest (fetchable).
    pub promised: u64,
    /// Everything wrong, one line each (empty: good).
    pub problems: Vec<String>,
}

/// Checks federated snapshot `name` offline (see the module docs).
pub fn verify(store: &Store, name: &str) -> Result<Verified> {
    let (p, ps) = pin_names(name);
    let pins: BTreeMap<String, ArtifactId> = store.pins().list().into_iter().collect();
    let (Some(id), Some(sig)) = (pins.get(&p), pins.get(&ps)) else {
        return Err(Error::Invalid(format!("{name} is not a federated snapshot")));
    };
    let mut v = Verified {
        id: Some(*id),
        ..Default::default()
    };
    let rec = records::get(store as &dyn Source, id)?;
    let own: PublicKey = Domain::public_key(store)?;
    let sig_rec = records::get(store as &dyn Source, sig)?;
    if keys::signer_of(&sig_rec, id) != Some(own) {
        v.problems
            .push(format!("the record {id} is not signed by this domain's key"));
    }
    let meta = store.snapshots().get(name)?;
    if bytes32(rec.body.get("snapshot")).map(|s| *s.as_bytes()) != Some(meta.identity.0) {
        v.problems.push(format!(
            "snapshot {name} is not the one the record names (it was replaced)"
        ));
    }
    // Each source manifest: present, signed by the key pinned for its
    // domain (or, with no remote naming it, its own), listing members.
    let remotes = remote::remotes(store)?;
    let mut listed: BTreeMap<[u8; 16], std::collections::BTreeSet<ArtifactId>> = BTreeMap::new();
    let sources = match rec.body.get("sources") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for s in &sources {
        v.sources += 1;
        let (Some(mid), Some(sid)) = (bytes32(s.get("manifest")), bytes32(s.get("signature"))) else {
            v.problems.push("a source without manifest or signature".into());
            continue;
        };
        let (mb, sb) = match (store.get(&mid), store.get(&sid)) {
            (Ok(m), Ok(s)) => (m, s),
            _ => {
                v.problems.push(format!("manifest {mid} or its signature is not here"));
                continue;
            }
        };
        let claimed = match Record::decode(&mb)
            .ok()
            .and_then(|r| publish::Manifest::from_record(&r).ok())
        {
            Some(m) => m,
            None => {
                v.problems.push(format!("manifest {mid} does not decode"));
                continue;
            }
        };
        let key = remotes
            .iter()
            .find(|r| r.domain == Some(claimed.domain))
            .and_then(|r| r.key)
            .unwrap_or(claimed.key);
        match publish::check_manifest(&mb, &sb, &key, 0) {
            Ok(m) => {
                listed.entry(m.domain).or_default().extend(m.published);
            }
            Err(e) => v
                .problems
                .push(format!("manifest {mid} of domain {}: {e}", hex(&claimed.domain))),
        }
    }
    let table: BTreeMap<u16, [u8; 16]> = remote::domains(store)?.into_iter().map(|(n, d, _)| (n, d)).collect();
    let view = store.at(name)?;
    for info in view.iter()? {
        let info = info?;
        // Read whole (every chunk proven), without holding it in memory.
        let read = view.open_reader(&info.id).and_then(|mut r| {
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| asl_core::Error::io(info.id.to_hex(), e))
        });
        match read {
            Ok(_) => v.members += 1,
            Err(e) => v.problems.push(format!("{}: {e}", info.id)),
        }
        if info.domain.0 != 0 {
            v.imported += 1;
            let ok = table
                .get(&info.domain.0)
                .and_then(|d| listed.get(d))
                .is_some_and(|l| l.contains(&info.id));
            // The manifests and signatures themselves are not listed.
            let bookkeeping = sources
                .iter()
                .any(|s| bytes32(s.get("manifest")) == Some(info.id) || bytes32(s.get("signature")) == Some(info.id));
            if !ok && !bookkeeping && !is_import_bookkeeping(store, &info.id) {
                v.problems.push(format!(
                    "{} is imported but no source manifest of its domain lists it",
                    info.id
                ));
            }
        }
    }
    if let Some(Value::Array(items)) = rec.body.get("promised") {
        for item in items {
            v.promised += 1;
            let domain = match item.get("domain") {
                Some(Value::Bytes(b)) => <[u8; 16]>::try_from(b.as_slice()).ok(),
                _ => None,
            };
            let (Some(pid), Some(domain)) = (bytes32(item.get("id")), domain) else {
                v.problems.push("a promised entry without id or domain".into());
                continue;
            };
            let fetchable = listed.get(&domain).is_some_and(|l| l.contains(&pid));
            if !fetchable && !store.contains(&pid)? {
                v.problems.push(format!(
                    "{pid} is promised by domain {} but neither here nor listed by its manifest",
                    hex(&domain)
                ));
            }
        }
    }
    Ok(v)
}

/// An older manifest or signature stored by an earlier fetch.
fn is_import_bookkeeping(store: &Store, id: &ArtifactId) -> bool {
    store
        .get(id)
        .ok()
        .and_then(|b| Record::decode(&b).ok())
        .is_some_and(|r| r.type_name == publish::PUBLICATION_TYPE || r.type_name == keys::SIGNATURE_TYPE)
}
