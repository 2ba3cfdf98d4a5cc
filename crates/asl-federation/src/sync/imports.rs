//! Import records: what each fetch imported under which signed manifest,
//! the pins that keep them, and sweeping what no remote lists any more.

use super::*;

/// An `asl/import` record this store has pinned (`asl.import.<remote>`),
/// decoded.
#[derive(Clone, Debug)]
pub(crate) struct PinnedImport {
    /// The remote whose fetch wrote it.
    pub remote: String,
    /// The record's id.
    pub id: ArtifactId,
    /// The other domain, and its local number here.
    pub domain: [u8; 16],
    pub local: u16,
    /// The manifest the fetch accepted, its signature record and its
    /// sequence number.
    pub manifest: ArtifactId,
    pub signature: ArtifactId,
    pub seq: u64,
    /// What it fetched, and what it promised.
    pub fetched: Vec<ArtifactId>,
    pub promised: Vec<ArtifactId>,
}

/// Every pinned import record that can still be read, in pin order.
///
/// An import record only annotates: it says where fetched or promised
/// artifacts came from. One that is gone (`rm --force`, or lost to damage
/// and `repair`), damaged or malformed is left out, so listings, origins
/// and snapshots built from the rest still complete; the remote's own
/// record (its key and sequence number) is what guards the next fetch.
pub(crate) fn pinned_imports(store: &Store) -> Result<Vec<PinnedImport>> {
    let mut out = Vec::new();
    for (pin, rid) in store.pins().list() {
        let Some(remote) = pin.strip_prefix("asl.import.") else {
            continue;
        };
        if let Some(imp) = decode_import(store, remote, rid)? {
            out.push(imp);
        }
    }
    Ok(out)
}

/// The import record `rid` of `remote`, or `None` when it is gone,
/// damaged or not a well-formed import record. An I/O failure is an error:
/// what cannot be read now is not taken for gone.
fn decode_import(store: &Store, remote: &str, rid: ArtifactId) -> Result<Option<PinnedImport>> {
    let r = match records::get(store as &dyn records::Source, &rid) {
        Ok(r) => r,
        Err(records::RecordError::Store(e @ asl_core::Error::Io { .. })) => return Err(e.into()),
        Err(_) => return Ok(None),
    };
    if r.type_name != IMPORT_TYPE {
        return Ok(None);
    }
    Ok(parse_import(&r, remote, rid))
}

/// The fields of import record `r`, or `None` when one is missing or
/// malformed.
fn parse_import(r: &Record, remote: &str, rid: ArtifactId) -> Option<PinnedImport> {
    let bytes = |k: &str| match r.body.get(k) {
        Some(Value::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    };
    let id32 = |k: &str| {
        bytes(k)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(ArtifactId::from_bytes)
    };
    let ids = |k: &str| -> Option<Vec<ArtifactId>> {
        match r.body.get(k) {
            None => Some(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice()).ok().map(ArtifactId::from_bytes),
                    _ => None,
                })
                .collect(),
            Some(_) => None,
        }
    };
    let uint = |k: &str| match r.body.get(k) {
        Some(Value::Unsigned(n)) => Some(*n),
        _ => None,
    };
    Some(PinnedImport {
        remote: remote.to_string(),
        id: rid,
        domain: bytes("domain")?.try_into().ok()?,
        local: u16::try_from(uint("local")?).ok()?,
        manifest: id32("manifest")?,
        signature: id32("signature")?,
        seq: uint("seq")?,
        fetched: ids("fetched")?,
        promised: ids("promised")?,
    })
}

/// After a fetch: staging files of artifacts that no remote's latest
/// accepted manifest lists any more are removed (nobody would send the
/// rest: a partial artifact nobody publishes is only disk used).
pub(crate) fn sweep_unwanted(store: &Store) -> Result<()> {
    let staged = crate::ranged::staged(store);
    if staged.is_empty() {
        return Ok(());
    }
    let mut wanted = std::collections::HashSet::new();
    for imp in pinned_imports(store)? {
        let manifest = store
            .get(&imp.manifest)
            .ok()
            .and_then(|b| Record::decode(&b).ok())
            .and_then(|r| Manifest::from_record(&r).ok());
        match manifest {
            Some(m) => wanted.extend(m.published),
            // An import whose manifest cannot be read: keep everything.
            None => return Ok(()),
        }
    }
    for id in staged.iter().filter(|id| !wanted.contains(*id)) {
        crate::ranged::discard(store, id)?;
    }
    Ok(())
}

pub(crate) fn import_record(
    m: &Manifest,
    n: DomainId,
    mid: &ArtifactId,
    sid: &ArtifactId,
    cosigs: &[ArtifactId],
    fetched: &[ArtifactId],
    promised: &[ArtifactId],
) -> Record {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ids = |l: &[ArtifactId]| Value::Array(l.iter().map(|i| Value::Bytes(i.as_bytes().to_vec())).collect());
    let mut body = vec![
        (Value::text("domain"), Value::Bytes(m.domain.to_vec())),
        (Value::text("name"), Value::text(m.name.clone())),
        (Value::text("local"), Value::Unsigned(n.0 as u64)),
        (Value::text("manifest"), Value::Bytes(mid.as_bytes().to_vec())),
        (Value::text("signature"), Value::Bytes(sid.as_bytes().to_vec())),
        (Value::text("seq"), Value::Unsigned(m.seq)),
        (Value::text("fetched"), ids(fetched)),
        (Value::text("fetched_at"), Value::text(records::time::format(now))),
    ];
    if !cosigs.is_empty() {
        body.push((Value::text("cosignatures"), ids(cosigs)));
    }
    if !promised.is_empty() {
        body.push((Value::text("promised"), ids(promised)));
    }
    Record::new(IMPORT_TYPE, 1, Value::Map(body))
}
