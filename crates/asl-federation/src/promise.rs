//! Promised artifacts: another domain's published artifacts this store
//! refers to without holding their bytes, fetched and verified when first
//! read (git's partial clone, for a content-addressed store).
//!
//! A lazy fetch ([`super::sync::fetch_lazy`], `aslctl fetch --lazy`)
//! checks the remote's manifest like any fetch and records an `asl/import`
//! record whose `promised` field lists what the manifest publishes and this
//! store lacks. Each such id is a reference (domain, manifest, digest): the
//! import record names the domain and the signed manifest that lists it.
//! Trees, records and PEL inputs here may name it like any artifact.
//!
//! The store layer knows nothing of promises (a read of a promised id is
//! `NotFound` there); this layer resolves them: [`open`], [`read`],
//! [`materialize`] and the [`Promising`] source fetch a promised artifact
//! from the remote whose import promised it (falling back to the other
//! remotes of its domain), through the same verified put as a fetch — a
//! remote that sends other bytes stores nothing — and commit it before it
//! is read. Once present, an id is no longer promised.

use std::collections::BTreeMap;

use super::peers::peer_for;
use super::remote;
use super::sync::{pinned_imports, put_one};
use crate::error::{FederationError as Error, Result};
use asl_core::{ArtifactId, ArtifactReader, PutOptions, Store};
use asl_records::{self as records, Record, Source};

/// Where a promised artifact is to come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The remote whose import promised it.
    pub remote: String,
    /// The publishing domain.
    pub domain: [u8; 16],
    /// The signed manifest that lists it.
    pub manifest: ArtifactId,
    /// The import record.
    pub import: ArtifactId,
    /// The domain's local number (what the artifact's index record will carry).
    pub local: u16,
}

/// Every promised id not in the store, with where it is to come from (the
/// first remote in pin order that promises it).
pub fn promised(store: &Store) -> Result<BTreeMap<ArtifactId, Promise>> {
    let mut out = BTreeMap::new();
    for imp in pinned_imports(store)? {
        for id in &imp.promised {
            if out.contains_key(id) || store.contains(id)? {
                continue;
            }
            out.insert(
                *id,
                Promise {
                    remote: imp.remote.clone(),
                    domain: imp.domain,
                    manifest: imp.manifest,
                    import: imp.id,
                    local: imp.local,
                },
            );
        }
    }
    Ok(out)
}

/// Whether `id` is promised (and absent), and by whom.
pub fn promise_of(store: &Store, id: &ArtifactId) -> Result<Option<Promise>> {
    Ok(promised(store)?.remove(id))
}

/// An id or unique prefix, among the store's artifacts and then among the
/// promised ones.
pub fn resolve(store: &Store, text: &str) -> Result<ArtifactId> {
    match store.resolve(text) {
        Err(asl_core::Error::PrefixNotFound(p)) => {
            let prefix = asl_core::IdPrefix::parse(text)?;
            let hits: Vec<ArtifactId> = promised(store)?.into_keys().filter(|id| prefix.matches(id)).collect();
            match hits[..] {
                [one] => Ok(one),
                [] => Err(asl_core::Error::PrefixNotFound(p).into()),
                _ => Err(asl_core::Error::AmbiguousPrefix {
                    prefix: p,
                    count: hits.len(),
                    candidates: hits.iter().take(asl_core::AMBIGUOUS_SHOWN).copied().collect(),
                }
                .into()),
            }
        }
        other => Ok(other?),
    }
}

/// Whether `e` is a read that missed an artifact this store has promised.
pub fn is_promised_miss(store: &Store, e: &asl_core::Error) -> bool {
    matches!(e, asl_core::Error::NotFound(id) if promise_of(store, id).is_ok_and(|p| p.is_some()))
}

/// Fetches promised artifacts `ids` (those already present are skipped),
/// verified, and commits them. An id nothing promises is `NotFound`.
pub fn fetch(store: &Store, ids: &[ArtifactId]) -> Result<usize> {
    let table = promised(store)?;
    let mut n = 0;
    for id in ids {
        if store.contains(id)? {
            continue;
        }
        let p = table.get(id).ok_or(asl_core::Error::NotFound(*id))?;
        fetch_one(store, id, p)?;
        n += 1;
    }
    if n > 0 {
        store.commit()?;
    }
    Ok(n)
}

/// From the remote that promised it, else from another remote of the same
/// domain; the first error is reported when none sends it right.
fn fetch_one(store: &Store, id: &ArtifactId, p: &Promise) -> Result<()> {
    let placed = PutOptions::new()
        .domain(asl_core::DomainId(p.local))
        .source(Some(asl_core::DomainId(p.local)));
    let mut candidates = vec![remote::get(store, &p.remote).map_err(|_| {
        Error::NotFound(format!(
            "{id} is promised by remote {}, which is no longer configured (aslctl remote add)",
            p.remote
        ))
    })];
    for r in remote::remotes(store)? {
        if r.name != p.remote && r.domain == Some(p.domain) {
            candidates.push(Ok(r));
        }
    }
    let mut first_err = None;
    for r in candidates {
        let attempt = r.and_then(|r| {
            let peer = peer_for(&r)?;
            let shared = super::sync::Shared::new(None, 0);
            put_one(store, &*peer, &r.name, id, None, placed, &shared)
                .map(drop)
                .map_err(|e| match e {
                    Error::Store(asl_core::Error::NotFound(_)) => Error::Remote(format!(
                        "{id} is promised by remote {}, which no longer serves it (a fetch updates the promises)",
                        r.name
                    )),
                    e => e,
                })
        });
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.expect("at least one candidate"))
}

/// A verified reader over `id`, fetching it first if it is promised.
pub fn open(store: &Store, id: &ArtifactId) -> Result<ArtifactReader> {
    match store.open_reader(id) {
        Err(asl_core::Error::NotFound(_)) => {
            fetch(store, &[*id])?;
            Ok(store.open_reader(id)?)
        }
        other => Ok(other?),
    }
}

/// `id`'s bytes, fetching it first if it is promised.
pub fn read(store: &Store, id: &ArtifactId) -> Result<Vec<u8>> {
    match store.get(id) {
        Err(asl_core::Error::NotFound(_)) => {
            fetch(store, &[*id])?;
            Ok(store.get(id)?)
        }
        other => Ok(other?),
    }
}

/// Makes `id` whole here: fetched if promised, and when it is a tree,
/// every promised artifact under it too (what a run or a checkout of it
/// will read). Returns how many artifacts were fetched.
pub fn materialize(store: &Store, id: &ArtifactId) -> Result<usize> {
    let before = promised(store)?.len();
    if before == 0 {
        return Ok(0);
    }
    match fetch(store, &[*id]) {
        Ok(_) | Err(Error::Store(asl_core::Error::NotFound(_))) => {}
        Err(e) => return Err(e),
    }
    let is_tree = store
        .read_range(id, 0, 8)
        .is_ok_and(|head| records::looks_like_record(&head))
        && store
            .get(id)
            .ok()
            .and_then(|b| Record::decode(&b).ok())
            .is_some_and(|r| r.type_name == records::tree::TREE_TYPE);
    if is_tree {
        // The walk fetches promised subtrees as it reads them.
        let entries = records::tree::walk(&Promising::new(store), id)?;
        let table = promised(store)?;
        let wanted: Vec<ArtifactId> = entries
            .iter()
            .map(|(_, e)| e.id)
            .filter(|e| table.contains_key(e))
            .collect();
        fetch(store, &wanted)?;
    }
    Ok(before.saturating_sub(promised(store)?.len()))
}

/// A PEL input resolver (see [`asl_pel::InputResolver`]): every input of
/// a run that is promised is fetched (verified) before the run checks its
/// inputs, a tree with every promised artifact under it.
pub fn input_resolver() -> asl_pel::InputResolver {
    Box::new(|store, id| {
        materialize(store, id)
            .map(drop)
            .map_err(|e| asl_pel::PelError::Resolve {
                id: *id,
                kind: e.kind(),
                detail: e.to_string(),
            })
    })
}

/// A [`Source`] over a store that fetches promised artifacts on a miss, so
/// tree walks, checkouts and record reads see through promises. The table
/// of promises is read once, at the first miss (a walk over a promised tree
/// misses once per directory).
pub struct Promising<'a> {
    store: &'a Store,
    table: std::sync::OnceLock<BTreeMap<ArtifactId, Promise>>,
}

impl<'a> Promising<'a> {
    /// Over `store` (opened to write: what it fetches is stored).
    pub fn new(store: &'a Store) -> Self {
        Promising {
            store,
            table: std::sync::OnceLock::new(),
        }
    }

    /// Fetches `id` if it is promised; `NotFound` otherwise.
    fn fetch(&self, id: &ArtifactId) -> Result<()> {
        if self.table.get().is_none() {
            let _ = self.table.set(promised(self.store)?);
        }
        let p = self
            .table
            .get()
            .and_then(|t| t.get(id))
            .ok_or(asl_core::Error::NotFound(*id))?;
        fetch_one(self.store, id, p)?;
        Ok(self.store.commit()?)
    }

    /// Fetches `id` for a read through [`Source`], whose errors are the
    /// store's: a failure to get the bytes from elsewhere is an I/O failure
    /// of that read (the federation's error kept as its source).
    fn fetch_for_read(&self, id: &ArtifactId) -> asl_core::Result<()> {
        self.fetch(id).map_err(|e| match e {
            Error::Store(e) | Error::Record(records::RecordError::Store(e)) => e,
            e => asl_core::Error::io(format!("fetch promised {id}"), std::io::Error::other(e)),
        })
    }
}

impl Source for Promising<'_> {
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>> {
        match self.store.get(id) {
            Err(asl_core::Error::NotFound(_)) => {
                self.fetch_for_read(id)?;
                self.store.get(id)
            }
            other => other,
        }
    }
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<ArtifactReader> {
        match self.store.open_reader(id) {
            Err(asl_core::Error::NotFound(_)) => {
                self.fetch_for_read(id)?;
                self.store.open_reader(id)
            }
            other => other,
        }
    }
}
