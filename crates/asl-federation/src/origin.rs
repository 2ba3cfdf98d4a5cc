//! Where an artifact came from: this domain, another domain through an
//! import (which remote, under which signed manifest), or a promise not
//! yet fetched.
//!
//! An imported artifact's index record carries the local number of its
//! domain (see [`super::remote`]); the domain table names the domain, and
//! the pinned `asl/import` records name the remote and the manifest it was
//! accepted under. That is the reference (source domain, manifest,
//! digest) the artifact keeps.

use super::promise::{self, Promise};
use super::remote;
use super::sync::pinned_imports;
use crate::error::{FederationError as Error, Result};
use asl_core::{ArtifactId, Store};

/// An import: its remote, its record, the manifest it was accepted under
/// and that manifest's sequence number.
pub type Import = (String, ArtifactId, ArtifactId, u64);

/// Where an artifact came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Made or ingested here.
    Local,
    /// From another domain.
    Imported {
        /// The domain's id.
        domain: [u8; 16],
        /// Its name, as the domain table has it.
        name: String,
        /// Its local number.
        local: u16,
        /// The import that brought it (none when it was pushed here, or its
        /// import record was replaced by a later one that did not list it):
        /// remote, import record, manifest, sequence number.
        import: Option<Import>,
    },
    /// Promised by another domain, not fetched yet.
    Promised(Promise),
}

/// Where `id` came from; `NotFound` when it is neither here nor promised.
pub fn origin(store: &Store, id: &ArtifactId) -> Result<Origin> {
    let Some(info) = store.info(id)? else {
        return match promise::promise_of(store, id)? {
            Some(p) => Ok(Origin::Promised(p)),
            None => Err(asl_core::Error::NotFound(*id).into()),
        };
    };
    let n = info.domain.0;
    if n == 0 {
        return Ok(Origin::Local);
    }
    let (domain, name) = remote::domains(store)?
        .into_iter()
        .find(|(k, _, _)| *k == n)
        .map(|(_, d, name)| (d, name))
        .ok_or_else(|| Error::Invalid(format!("{id} is from domain number {n}, which the domain table lacks")))?;
    // The import that fetched or promised it, else the newest of its domain.
    let best = pinned_imports(store)?
        .into_iter()
        .filter(|imp| imp.local == n)
        .max_by_key(|imp| (imp.fetched.contains(id) || imp.promised.contains(id), imp.seq))
        .map(|imp| (imp.remote, imp.id, imp.manifest, imp.seq));
    Ok(Origin::Imported {
        domain,
        name,
        local: n,
        import: best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{publish, remote::Remote, sync};
    use asl_core::StoreOptions;

    #[test]
    fn imported_artifacts_name_their_domain_remote_and_manifest() {
        let d = tempfile::tempdir().unwrap();
        let a = StoreOptions::new().create(true).open(d.path().join("a")).unwrap();
        let b = StoreOptions::new().create(true).open(d.path().join("b")).unwrap();
        let x = a.put(b"from a").unwrap();
        a.commit().unwrap();
        crate::Domain::init(&a, "alpha").unwrap();
        let mid = publish::publish(&a, &[x]).unwrap().manifest.unwrap().0;
        drop(a);
        remote::add(
            &b,
            Remote {
                name: "ra".into(),
                url: d.path().join("a").display().to_string(),
                key: None,
                domain: None,
                seq: 0,
                token: None,
                policy: Default::default(),
            },
        )
        .unwrap();
        let rep = sync::fetch(&b, "ra").unwrap();
        let own = b.put(b"made here").unwrap();
        b.commit().unwrap();
        assert_eq!(origin(&b, &own).unwrap(), Origin::Local);
        match origin(&b, &x).unwrap() {
            Origin::Imported { name, import, .. } => {
                assert_eq!(name, "alpha");
                assert_eq!(import, Some(("ra".into(), rep.import.unwrap(), mid, 1)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            origin(&b, &ArtifactId::of(b"nowhere")),
            Err(crate::FederationError::Store(asl_core::Error::NotFound(_)))
        ));
    }
}
