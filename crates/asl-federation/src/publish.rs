//! Publishing: what other domains may read of this one.
//!
//! Publishing sets an artifact's visibility to published (a new index
//! record, no byte moves; see [`Store::set_visibility`]); a published
//! artifact is a GC root. After every change the domain writes a new
//! **publication manifest**, an `asl/publication` record listing every
//! published artifact, numbered one more than the last and naming it, and
//! signs it with the domain's key (an `asl/signature` record). Both are
//! published themselves, so another domain reads them like anything else
//! it may read; the pin [`PUBLICATION_PIN`] names the latest.
//!
//! A reader accepts a manifest only with a valid signature by the key it
//! expects, and only with a sequence number above the last one it
//! accepted from that domain, so an old manifest replayed is refused.

use std::collections::BTreeSet;

use super::domain::Domain;
pub use super::manifest::{
    check_manifest, latest, latest_ids, signature_of, Manifest, PUBLICATION_PIN, PUBLICATION_TYPE, SIGNATURE_PIN,
};
use crate::error::Result;
use asl_core::Visibility;
use asl_core::{ArtifactId, PutOptions, Store};
use asl_records::{self as records, Record, Source};

/// What a publish or unpublish did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Artifacts whose visibility changed.
    pub changed: Vec<ArtifactId>,
    /// The new manifest and its signature record (`None` when nothing changed).
    pub manifest: Option<(ArtifactId, ArtifactId)>,
    /// Its sequence number (the current one when nothing changed).
    pub seq: u64,
    /// How many artifacts the domain publishes now.
    pub total: usize,
}

/// Publishes `ids` and writes a new signed manifest.
/// Refused when a record among them names an internal artifact (see
/// [`super::mentions`]); [`publish_closure`] publishes what they name too.
pub fn publish(store: &Store, ids: &[ArtifactId]) -> Result<Published> {
    let mut all = super::mentions::publish_set(store, ids, false)?;
    all.extend(sign_receipts(store, &all)?);
    change(store, &all, Visibility::Published)
}

/// Publishes `ids` and everything the records among them name, recursively.
pub fn publish_closure(store: &Store, ids: &[ArtifactId]) -> Result<Published> {
    let mut all = super::mentions::publish_set(store, ids, true)?;
    all.extend(sign_receipts(store, &all)?);
    change(store, &all, Visibility::Published)
}

/// A PEL receipt is signed here through a batch record that lists the
/// run's other receipts, which may be internal; a published receipt gets a
/// signature of its own by the domain's key instead, published with it, so
/// another domain can check who vouches for it (its trust policy decides
/// whether its action cache may use it).
fn sign_receipts(store: &Store, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>> {
    let signer = Domain::signer(store)?;
    let mut sigs = Vec::new();
    for id in ids {
        if !store.contains(id)? || !records::looks_like_record(&store.read_range(id, 0, 8)?) {
            continue;
        }
        let Ok(r) = Record::decode(&store.get(id)?) else {
            continue;
        };
        if r.type_name == asl_pel::receipt::RECEIPT_TYPE {
            let bytes = signer.signature_record(id).encode()?;
            sigs.push(store.put(&bytes)?);
        }
    }
    if !sigs.is_empty() {
        store.commit()?;
    }
    Ok(sigs)
}

/// Unpublishes `ids` (they become internal: other domains no longer see
/// them, and GC may take one that is no longer in CURRENT) and writes a new
/// signed manifest. Refused while a record that stays published names one.
pub fn unpublish(store: &Store, ids: &[ArtifactId]) -> Result<Published> {
    let mut own: BTreeSet<ArtifactId> = super::cosign::cosignatures(store).into_iter().collect();
    if let Some((id, _)) = latest(store)? {
        own.insert(id);
        own.extend(signature_of(store, &id)?);
    }
    let ids = super::mentions::check_unpublish(store, ids, &own)?;
    change(store, &ids, Visibility::Internal)
}

/// Takes those of `ids` this domain publishes out of its publication (a new
/// signed manifest without them), so that a forced removal never leaves a
/// manifest listing an artifact the store no longer sends. Refused, with
/// nothing changed, where [`unpublish`] refuses (a published record still
/// names one). `None` when none of them was published.
pub fn withdraw(store: &Store, ids: &[ArtifactId]) -> Result<Option<Published>> {
    let mut published = Vec::new();
    for id in ids {
        if store.info(id)?.is_some_and(|i| i.visibility == Visibility::Published) {
            published.push(*id);
        }
    }
    if published.is_empty() {
        return Ok(None);
    }
    unpublish(store, &published).map(Some)
}

/// Every artifact a tree holds, the tree records included.
pub fn tree_members(store: &Store, tree: &ArtifactId) -> Result<Vec<ArtifactId>> {
    let entries = records::tree::walk(store as &dyn Source, tree)?;
    let mut ids = vec![*tree];
    ids.extend(entries.into_iter().map(|(_, e)| e.id));
    Ok(ids)
}

/// Every artifact in snapshot `name`.
pub fn snapshot_members(store: &Store, name: &str) -> Result<Vec<ArtifactId>> {
    let ids: asl_core::Result<Vec<ArtifactId>> = store.at(name)?.iter()?.map(|i| i.map(|i| i.id)).collect();
    Ok(ids?)
}

fn change(store: &Store, ids: &[ArtifactId], v: Visibility) -> Result<Published> {
    let domain = Domain::ensure(store)?;
    let signer = Domain::signer(store)?;
    let uniq: Vec<ArtifactId> = ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let changed = store.set_visibility(&uniq, v)?;
    let prev = latest(store)?;
    if let (true, Some((_, m))) = (changed.is_empty(), &prev) {
        return Ok(Published {
            changed,
            manifest: None,
            seq: m.seq,
            total: m.published.len(),
        });
    }
    // The published set, without the domain's own bookkeeping: the latest
    // manifest and its signature are the only ones published.
    let mut own: BTreeSet<ArtifactId> = super::cosign::cosignatures(store).into_iter().collect();
    if let Some((id, _)) = &prev {
        own.insert(*id);
        own.extend(signature_of(store, id)?);
    }
    let mut published = Vec::new();
    let mut sizes = Vec::new();
    for info in store.iter()? {
        let info = info?;
        if info.visibility == Visibility::Published && !own.contains(&info.id) {
            published.push(info.id);
            sizes.push(info.len);
        }
    }
    let m = Manifest {
        domain: domain.id,
        name: domain.name.clone(),
        key: signer.public(),
        seq: prev.as_ref().map_or(1, |(_, m)| m.seq + 1),
        prev: prev.as_ref().map(|(id, _)| *id),
        published,
        sizes,
        created_at: records::time::format(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
    };
    let rec = m.to_record();
    let bytes = rec.encode()?;
    let sig = signer.signature_record(&ArtifactId::of(&bytes)).encode()?;
    let published_opts = PutOptions::new().visibility(Visibility::Published);
    let mid = store.put_with(&bytes, &published_opts)?.id;
    let sid = store.put_with(&sig, &published_opts)?.id;
    store.commit()?;
    store.set_visibility(&[mid, sid], Visibility::Published)?;
    // The signature first: a reader that finds the manifest pin finds a
    // signature pin at least as new (it checks that they match).
    store.pins().set(SIGNATURE_PIN, &sid)?;
    store.pins().set(PUBLICATION_PIN, &mid)?;
    super::cosign::drop_stale(store, &mid)?;
    // The manifest before this one goes back to internal: only the latest
    // is what the domain says now, and the old one's bytes may be collected.
    if let Some((old, _)) = prev {
        let old_sig = signature_of(store, &old)?;
        let olds: Vec<_> = [Some(old), old_sig].into_iter().flatten().collect();
        store.set_visibility(&olds, Visibility::Internal)?;
    }
    Ok(Published {
        changed,
        manifest: Some((mid, sid)),
        seq: m.seq,
        total: m.published.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::StoreOptions;
    use asl_pel::keys::Signer;
    use asl_records::cbor::Value;

    #[test]
    fn manifests_chain_and_are_checked_like_another_domain_would() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let a = s.put(b"alpha").unwrap();
        let b = s.put(b"beta").unwrap();
        s.commit().unwrap();
        let r1 = publish(&s, &[a, b]).unwrap();
        assert_eq!((r1.seq, r1.total), (1, 2));
        let r2 = unpublish(&s, &[a]).unwrap();
        assert_eq!((r2.seq, r2.total, r2.changed.clone()), (2, 1, vec![a]));
        let again = unpublish(&s, &[a]).unwrap();
        assert_eq!(
            (again.seq, again.manifest),
            (2, None),
            "nothing changed: no new manifest"
        );
        let (m2, s2) = r2.manifest.unwrap();
        let (m1, s1) = r1.manifest.unwrap();
        let (latest_id, latest) = latest(&s).unwrap().unwrap();
        assert_eq!(
            (latest_id, latest.prev, latest.published.clone(), latest.sizes.clone()),
            (m2, Some(m1), vec![b], vec![4])
        );
        // Sizes are optional (manifests before them), but must match.
        let mut old = latest.clone();
        old.sizes.clear();
        assert_eq!(
            Manifest::from_record(&old.to_record()).unwrap().sizes,
            Vec::<u64>::new()
        );
        let mut bad = latest.to_record();
        if let Value::Map(m) = &mut bad.body {
            m.retain(|(k, _)| *k != Value::text("sizes"));
            m.push((
                Value::text("sizes"),
                Value::Array(vec![Value::Unsigned(4), Value::Unsigned(5)]),
            ));
        }
        assert!(Manifest::from_record(&bad).unwrap_err().contains("sizes"));
        // Only the latest manifest is published.
        let vis = |id| s.info(&id).unwrap().unwrap().visibility;
        assert_eq!(
            (vis(m2), vis(s2), vis(m1), vis(s1)),
            (
                Visibility::Published,
                Visibility::Published,
                Visibility::Internal,
                Visibility::Internal
            )
        );

        let key = Domain::public_key(&s).unwrap();
        let (mb, sb) = (s.get(&m2).unwrap(), s.get(&s2).unwrap());
        assert_eq!(check_manifest(&mb, &sb, &key, 1).unwrap().seq, 2);
        // An old manifest replayed, another key, altered bytes, a
        // signature over something else: all refused.
        let (ob, osb) = (s.get(&m1).unwrap(), s.get(&s1).unwrap());
        assert!(check_manifest(&ob, &osb, &key, 2).unwrap_err().contains("replayed"));
        let other = Signer::from_seed([9; 32]).public();
        assert!(check_manifest(&mb, &sb, &other, 0).is_err());
        let mut bad = mb.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(check_manifest(&bad, &sb, &key, 0).is_err());
        assert!(check_manifest(&mb, &osb, &key, 0)
            .unwrap_err()
            .contains("does not verify"));
        // A manifest claiming the key of a domain that did not sign it.
        let forger = Signer::from_seed([5; 32]);
        let mut fake = latest.clone();
        fake.seq = 99;
        let fb = fake.to_record().encode().unwrap();
        let fs = forger.signature_record(&ArtifactId::of(&fb)).encode().unwrap();
        assert!(check_manifest(&fb, &fs, &key, 0).unwrap_err().contains("another key"));
    }
}
