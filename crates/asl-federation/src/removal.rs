//! Removing artifacts the way a user asks for it (`aslctl rm`, `DELETE` on
//! the server): [`Store::remove`] drops an id from CURRENT and nothing more,
//! while a removal asked for by a person or a service first keeps the
//! promises the store has made — an artifact this domain publishes, or one
//! a live PEL receipt holds as an output, is refused unless forced, and a
//! forced removal withdraws it from the publication first so that no signed
//! manifest lists what the store no longer sends. Eviction from a build
//! cache ([`evict`]) keeps the same promises, and the store's roots too;
//! so does the sweep of expired ephemeral artifacts ([`expire`]).

use std::collections::HashSet;

use asl_core::{ArtifactId, SnapshotView, Store, Visibility};
use asl_records::cache::{Entries, Victim};
use asl_records::query::QueryIndex;

use crate::error::{FederationError, Result};
use crate::publish::{withdraw, Published};

/// What a removal did.
#[derive(Debug, Default)]
pub struct Removal {
    /// Removed from CURRENT.
    pub removed: Vec<ArtifactId>,
    /// Not live, so not removed.
    pub not_found: Vec<ArtifactId>,
    /// The publication's new manifest, when a forced removal took published
    /// artifacts out of it.
    pub withdrawn: Option<Published>,
}

/// Removes `ids` from CURRENT and commits. Without `force`, refuses with
/// nothing changed when one of them is published or held by a live
/// receipt; with it, withdraws the published ones from the publication and
/// removes them all.
pub fn remove(store: &Store, index: &QueryIndex, ids: &[ArtifactId], force: bool) -> Result<Removal> {
    let mut out = Removal::default();
    if force {
        out.withdrawn = withdraw(store, ids)?;
    } else {
        for id in ids {
            if store.info(id)?.is_some_and(|i| i.visibility == Visibility::Published) {
                return Err(FederationError::Refused(format!(
                    "{id} is published (other domains may rely on it): unpublish it first, or force the \
                     removal, which unpublishes it with a new manifest; nothing removed"
                )));
            }
        }
        asl_pel::check_removable(index, store, ids)?;
    }
    for id in ids {
        if store.remove(id)? {
            out.removed.push(*id);
        } else {
            out.not_found.push(*id);
        }
    }
    store.commit()?;
    Ok(out)
}

/// What eviction must leave in place: anything pinned, in a snapshot,
/// published, or held by a live PEL receipt.
pub struct Keep<'s> {
    store: &'s Store,
    pins: HashSet<ArtifactId>,
    snapshots: Vec<SnapshotView<'s>>,
}

impl<'s> Keep<'s> {
    /// The store's roots as they are now.
    pub fn new(store: &'s Store) -> Result<Keep<'s>> {
        let pins = store.pins().list().into_iter().map(|(_, id)| id).collect();
        let mut snapshots = Vec::new();
        for meta in store.snapshots().list() {
            snapshots.push(store.at(&meta.name)?);
        }
        Ok(Keep { store, pins, snapshots })
    }

    /// Whether `id` must stay.
    pub fn keeps(&self, index: &QueryIndex, id: &ArtifactId) -> Result<bool> {
        if self.pins.contains(id) {
            return Ok(true);
        }
        for s in &self.snapshots {
            if s.contains(id)? {
                return Ok(true);
            }
        }
        if self
            .store
            .info(id)?
            .is_some_and(|i| i.visibility == Visibility::Published)
        {
            return Ok(true);
        }
        Ok(!asl_pel::held_by(index, self.store, id)?.is_empty())
    }
}

/// Evicts least recently used build-cache entries when the namespace
/// counts more than `trigger` bytes, down to `target`
/// ([`Entries::evict`]), leaving what [`Keep`] keeps. Returns what went;
/// the bytes are reclaimed by the next GC.
pub fn evict(
    store: &Store,
    index: &mut QueryIndex,
    entries: &Entries,
    trigger: u64,
    target: u64,
) -> Result<Vec<Victim>> {
    if entries.space().usage().bytes <= trigger {
        return Ok(Vec::new());
    }
    let keep = Keep::new(store)?;
    entries.evict(store, index, trigger, target, |index, id| keep.keeps(index, id))
}

/// What a sweep of expired artifacts did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Expired {
    /// Expired artifacts taken out of CURRENT, with their expiry records.
    pub removed: Vec<ArtifactId>,
    /// Expired, but held by a pin, a snapshot, publication or a live PEL
    /// receipt (as an input or an output): left until nothing holds them.
    pub held: Vec<ArtifactId>,
    /// Expiry records removed whose artifact was already gone.
    pub stale_records: usize,
}

/// Takes out of CURRENT every artifact whose expiry time
/// ([`asl_records::expiry`]) is at or before `now` (seconds since 1970)
/// and that nothing holds, with the records that gave it the time, and
/// commits; GC then reclaims their bytes. With `dry_run`, only says what
/// it would do.
pub fn expire(store: &Store, index: &mut QueryIndex, now: u64, dry_run: bool) -> Result<Expired> {
    index.refresh(store)?;
    let mut out = Expired::default();
    let due = asl_records::expiry::due(index, now)?;
    if due.is_empty() {
        return Ok(out);
    }
    let keep = Keep::new(store)?;
    let mut gone = Vec::new();
    for hit in due {
        if !store.contains(&hit.subject)? {
            out.stale_records += hit.records.len();
            gone.extend(hit.records);
            continue;
        }
        // Keep holds outputs of live receipts; a replay needs the inputs too.
        let mut held = keep.keeps(index, &hit.subject)?;
        for (_, receipt) in index.records_with(asl_records::query::RECEIPT_IN, hit.subject.as_bytes())? {
            held = held || store.contains(&receipt)?;
        }
        if held {
            out.held.push(hit.subject);
            continue;
        }
        out.removed.push(hit.subject);
        gone.push(hit.subject);
        gone.extend(hit.records);
    }
    if dry_run || gone.is_empty() {
        return Ok(out);
    }
    for id in &gone {
        store.remove(id)?;
    }
    store.commit()?;
    Ok(out)
}
