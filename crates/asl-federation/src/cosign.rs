//! Co-signatures on publication manifests, and the trust policy a remote's
//! manifests must meet (k of n keys).
//!
//! Every manifest is signed by its domain's key, which says "this is what
//! I publish". A consumer can ask for more before it believes that: a
//! release manager's key, an auditor's, two of three rebuilders'. Such a
//! co-signer signs the domain's latest manifest with its own key
//! ([`cosign`], `aslctl domain cosign --key FILE`); the signature record is
//! published and pinned as `asl.publication.cosig.<key prefix>`, and served
//! beside the manifest. A co-signature is over one manifest: the next
//! publish makes it stale, and it is unpinned and made internal then, so a
//! co-signer approves each manifest anew.
//!
//! A remote's [`Policy`] lists the co-signers the consumer trusts and a
//! threshold: the number of distinct keys, the domain's own counted as one,
//! that must have signed a manifest for it to be accepted. The domain's own
//! signature is always required (a manifest the domain did not sign is not
//! the domain's, however many others vouch for it).

use std::collections::BTreeSet;

use super::manifest;
use crate::error::{FederationError as Error, Result};
use asl_core::Visibility;
use asl_core::{ArtifactId, PutOptions, Store};
use asl_pel::keys::{self, hex, PublicKey, Signer};
use asl_records::Record;

/// Co-signature pins start with this; the rest is the key's first 16 hex digits.
pub const COSIG_PIN_PREFIX: &str = "asl.publication.cosig.";

/// How many keys, of which, must have signed a remote's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The keys trusted to co-sign (besides the domain's).
    pub cosigners: Vec<PublicKey>,
    /// Distinct signers needed, the domain's key counted as one; 1 means
    /// the domain's signature alone.
    pub threshold: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cosigners: Vec::new(),
            threshold: 1,
        }
    }
}

impl Policy {
    /// Refuses a policy no manifest could meet.
    pub fn check(&self) -> Result<()> {
        let distinct: BTreeSet<_> = self.cosigners.iter().collect();
        if self.threshold == 0 || self.threshold > distinct.len() + 1 {
            return Err(Error::Invalid(format!(
                "a threshold of {} cannot be met by the domain's key and {} co-signer(s)",
                self.threshold,
                distinct.len()
            )));
        }
        Ok(())
    }

    /// Whether a manifest signed by `signers` (each signature already
    /// checked) meets the policy for a domain whose key is `domain_key`.
    pub fn meets(&self, domain_key: &PublicKey, signers: &BTreeSet<PublicKey>) -> std::result::Result<(), String> {
        if !signers.contains(domain_key) {
            return Err("not signed by the domain's key".into());
        }
        let cosigned = self
            .cosigners
            .iter()
            .filter(|k| *k != domain_key && signers.contains(*k))
            .collect::<BTreeSet<_>>()
            .len();
        if 1 + cosigned < self.threshold {
            return Err(format!(
                "signed by {} of the {} keys the trust policy asks for (the domain's and {} of {} trusted co-signer(s))",
                1 + cosigned,
                self.threshold,
                cosigned,
                self.cosigners.len()
            ));
        }
        Ok(())
    }
}

/// The keys whose signature records among `sigs` verify over `manifest`
/// (records that do not decode or verify are left out, not errors: anyone
/// can put a record beside a manifest).
pub fn signers_of(manifest: &ArtifactId, sigs: &[Vec<u8>]) -> BTreeSet<PublicKey> {
    sigs.iter()
        .filter_map(|b| Record::decode(b).ok())
        .filter_map(|r| keys::signer_of(&r, manifest))
        .collect()
}

/// Signs the domain's latest manifest with `signer` (not the domain's own
/// key) and publishes and pins the signature record.
pub fn cosign(store: &Store, signer: &Signer) -> Result<ArtifactId> {
    let (mid, m) = manifest::latest(store)?
        .ok_or_else(|| Error::NotFound("this domain publishes nothing yet: no manifest to co-sign".into()))?;
    if signer.public() == m.key {
        return Err(Error::Invalid(
            "that is the domain's own key, which signs every manifest already".into(),
        ));
    }
    let bytes = signer.signature_record(&mid).encode()?;
    let sid = store
        .put_with(&bytes, &PutOptions::new().visibility(Visibility::Published))?
        .id;
    store.commit()?;
    store.set_visibility(&[sid], Visibility::Published)?;
    store.pins().set(&pin_name(&signer.public()), &sid)?;
    Ok(sid)
}

fn pin_name(key: &PublicKey) -> String {
    format!("{COSIG_PIN_PREFIX}{}", &hex(key)[..16])
}

/// The co-signature records pinned now (some may be over an older manifest
/// if a publish was cut off; readers check each against the manifest).
pub fn cosignatures(store: &Store) -> Vec<ArtifactId> {
    store
        .pins()
        .list()
        .into_iter()
        .filter(|(n, _)| n.starts_with(COSIG_PIN_PREFIX))
        .map(|(_, id)| id)
        .collect()
}

/// After a new manifest: the co-signatures of older ones are unpinned and
/// made internal.
pub(super) fn drop_stale(store: &Store, current: &ArtifactId) -> Result<()> {
    let mut stale = Vec::new();
    for (name, sid) in store.pins().list() {
        if !name.starts_with(COSIG_PIN_PREFIX) {
            continue;
        }
        let over_current = store
            .get(&sid)
            .ok()
            .and_then(|b| Record::decode(&b).ok())
            .and_then(|r| keys::signer_of(&r, current))
            .is_some();
        if !over_current {
            store.pins().remove(&name)?;
            stale.push(sid);
        }
    }
    if !stale.is_empty() {
        store.set_visibility(&stale, Visibility::Internal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish;
    use asl_core::StoreOptions;

    #[test]
    fn thresholds_count_distinct_trusted_keys_and_need_the_domain() {
        let d = Signer::from_seed([1; 32]).public();
        let (a, b, c) = (
            Signer::from_seed([2; 32]).public(),
            Signer::from_seed([3; 32]).public(),
            Signer::from_seed([4; 32]).public(),
        );
        let p = Policy {
            cosigners: vec![a, b],
            threshold: 2,
        };
        let set = |ks: &[PublicKey]| ks.iter().copied().collect::<BTreeSet<_>>();
        assert!(p.meets(&d, &set(&[d, a])).is_ok());
        assert!(p.meets(&d, &set(&[d, c])).unwrap_err().contains("signed by 1 of the 2"));
        assert!(p.meets(&d, &set(&[a, b])).unwrap_err().contains("domain's key"));
        assert!(Policy::default().meets(&d, &set(&[d])).is_ok());
        let three = Policy {
            cosigners: vec![a, a],
            threshold: 3,
        };
        assert!(three.check().is_err(), "a repeated key counts once");
    }

    #[test]
    fn a_cosignature_is_for_one_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let x = s.put(b"x").unwrap();
        s.commit().unwrap();
        let own = crate::Domain::signer(&s).unwrap();
        assert!(cosign(&s, &own).is_err(), "no manifest yet");
        let m1 = publish::publish(&s, &[x]).unwrap().manifest.unwrap().0;
        assert!(cosign(&s, &own).unwrap_err().to_string().contains("own key"));
        let other = Signer::from_seed([7; 32]);
        let sid = cosign(&s, &other).unwrap();
        assert_eq!(cosignatures(&s), vec![sid]);
        let sigs = vec![s.get(&sid).unwrap()];
        assert_eq!(signers_of(&m1, &sigs), [other.public()].into_iter().collect());
        let y = s.put(b"y").unwrap();
        s.commit().unwrap();
        publish::publish(&s, &[y]).unwrap();
        assert!(cosignatures(&s).is_empty(), "stale after a new manifest");
        assert_eq!(s.info(&sid).unwrap().unwrap().visibility, Visibility::Internal);
    }
}
