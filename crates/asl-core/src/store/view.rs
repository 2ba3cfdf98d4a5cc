//! What one audience may read of a store: a [`View`] over CURRENT and its
//! snapshots in which the artifacts hidden from that audience do not exist,
//! on every read path (existence, lengths, bytes, ranges, listings, puts'
//! answers).
//!
//! Visibility is decided here and nowhere else. A door that serves other
//! domains (the HTTP API, a peer fetching, the protocol doors to come) takes
//! one view per request and reads only through it, so no handler has to
//! remember a check; the layers above take a view where they answer for an
//! audience (the records layer's `find`, PEL's lineage).

use crate::error::{Error, Result};
use crate::id::ArtifactId;
use crate::index::Visibility;

use super::iter::Iter;
use super::read::{ArtifactInfo, ArtifactReader};
use super::snapshots::SnapshotView;
use super::Store;

/// Who is reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The store's own domain: every live artifact exists.
    Owner,
    /// Another domain: only published artifacts exist. An internal one is
    /// exactly as absent as one the store never held: reads say
    /// [`Error::NotFound`], listings leave it out, and a put of its bytes is
    /// answered as new.
    Published,
}

impl Audience {
    /// Whether an artifact with `visibility` exists for this audience.
    pub fn admits(self, visibility: Visibility) -> bool {
        self == Audience::Owner || visibility == Visibility::Published
    }
}

/// One snapshot's entry in a listing as an audience may see it: another
/// domain learns a snapshot's name and time, not how much it holds (the
/// counts would tell how much internal data there is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotListing {
    /// Its name.
    pub name: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Number of artifacts it holds, for the owner.
    pub artifacts: Option<u64>,
    /// Their total length in bytes, for the owner.
    pub bytes: Option<u64>,
}

/// The store as one audience sees it (see [`Store::view`](crate::Store::view)).
#[derive(Clone, Copy)]
pub struct View<'a> {
    store: &'a Store,
    audience: Audience,
}

impl Store {
    /// The store as `audience` sees it: every read through the view treats
    /// what the audience may not see as absent.
    pub fn view(&self, audience: Audience) -> View<'_> {
        View { store: self, audience }
    }
}

impl<'a> View<'a> {
    /// Who this view is for.
    pub fn audience(&self) -> Audience {
        self.audience
    }

    /// The store itself, for writes. Its reads see every artifact: read
    /// through the view.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// What the index says of `id` (length, domain, visibility); `None`
    /// when it is not live or not visible to this audience.
    pub fn info(&self, id: &ArtifactId) -> Result<Option<ArtifactInfo>> {
        Ok(self.store.info(id)?.filter(|i| self.audience.admits(i.visibility)))
    }

    /// Whether `id` is live and visible.
    pub fn contains(&self, id: &ArtifactId) -> Result<bool> {
        Ok(self.info(id)?.is_some())
    }

    /// [`Error::NotFound`] when `id` is absent to this audience. The owner
    /// sees every live artifact, so its reads skip the extra index lookup
    /// and let the read itself say whether `id` is there.
    fn check(&self, id: &ArtifactId) -> Result<()> {
        if self.audience == Audience::Owner || self.contains(id)? {
            Ok(())
        } else {
            Err(Error::NotFound(*id))
        }
    }

    /// Size of a live, visible artifact.
    pub fn len_of(&self, id: &ArtifactId) -> Result<u64> {
        self.check(id)?;
        self.store.len_of(id)
    }

    /// Reads a whole visible artifact, verified against its id.
    pub fn get(&self, id: &ArtifactId) -> Result<Vec<u8>> {
        self.check(id)?;
        self.store.get(id)
    }

    /// A streaming, verified reader over a visible artifact.
    pub fn open_reader(&self, id: &ArtifactId) -> Result<ArtifactReader> {
        self.check(id)?;
        self.store.open_reader(id)
    }

    /// Reads a range of a visible artifact, proven against its id.
    pub fn read_range(&self, id: &ArtifactId, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.check(id)?;
        self.store.read_range(id, offset, len)
    }

    /// The visible live artifacts in id order.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<ArtifactInfo>> + 'a> {
        Ok(self.admitted(self.store.iter()?))
    }

    /// [`View::iter`] from the first visible artifact whose id is at least
    /// `from`.
    pub fn iter_from(&self, from: &ArtifactId) -> Result<impl Iterator<Item = Result<ArtifactInfo>> + 'a> {
        Ok(self.admitted(self.store.iter_from(from)?))
    }

    fn admitted(&self, it: Iter) -> impl Iterator<Item = Result<ArtifactInfo>> + 'a {
        let audience = self.audience;
        it.filter(move |i| i.as_ref().map_or(true, |i| audience.admits(i.visibility)))
    }

    /// Whether a put is answered as new to this audience: for another
    /// domain, whether the artifact was absent *to it*. Bytes it sends that
    /// the store holds as internal are answered as new, exactly as bytes
    /// the store lacked, so a put never tells it what internal content
    /// exists.
    /// `new` is what the store said of the put ([`Put::new`](crate::Put::new)).
    pub fn shown_new(&self, id: &ArtifactId, new: bool) -> Result<bool> {
        if new || self.audience == Audience::Owner {
            return Ok(new);
        }
        Ok(!self.contains(id)?)
    }

    /// The named snapshots, oldest first, as this audience may list them.
    pub fn snapshots(&self) -> Vec<SnapshotListing> {
        let owner = self.audience == Audience::Owner;
        self.store
            .snapshot_list()
            .into_iter()
            .map(|m| SnapshotListing {
                name: m.name,
                created: m.created,
                artifacts: owner.then_some(m.artifacts),
                bytes: owner.then_some(m.bytes),
            })
            .collect()
    }

    /// Snapshot `name` as this audience sees it.
    pub fn at(&self, name: impl AsRef<str>) -> Result<SnapshotAt<'a>> {
        Ok(SnapshotAt {
            snap: self.store.at(name)?,
            audience: self.audience,
        })
    }
}

/// A snapshot as one audience sees it (see [`View::at`]): an artifact
/// exists in it when the snapshot holds it with a visibility the audience
/// is admitted to.
pub struct SnapshotAt<'a> {
    snap: SnapshotView<'a>,
    audience: Audience,
}

impl SnapshotAt<'_> {
    /// What the snapshot's index says of `id`; `None` when it does not hold
    /// it or the audience may not see it.
    pub fn info(&self, id: &ArtifactId) -> Result<Option<ArtifactInfo>> {
        Ok(self.snap.info(id)?.filter(|i| self.audience.admits(i.visibility)))
    }

    /// Whether the snapshot holds `id` visibly.
    pub fn contains(&self, id: &ArtifactId) -> Result<bool> {
        Ok(self.info(id)?.is_some())
    }

    fn visible(&self, id: &ArtifactId) -> Result<ArtifactInfo> {
        self.info(id)?.ok_or(Error::NotFound(*id))
    }

    /// Reads a whole visible artifact of the snapshot, verified.
    pub fn get(&self, id: &ArtifactId) -> Result<Vec<u8>> {
        self.visible(id)?;
        self.snap.get(id)
    }

    /// A streaming, verified reader over a visible artifact of the snapshot.
    pub fn open_reader(&self, id: &ArtifactId) -> Result<ArtifactReader> {
        self.visible(id)?;
        self.snap.open_reader(id)
    }

    /// The snapshot's visible artifacts in id order.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<ArtifactInfo>> + '_> {
        let audience = self.audience;
        Ok(self
            .snap
            .iter()?
            .filter(move |i| i.as_ref().map_or(true, |i| audience.admits(i.visibility))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PutOptions, StoreOptions};

    #[test]
    fn internal_artifacts_are_absent_to_other_domains_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let internal = s.put(b"kept inside").unwrap();
        let published = s
            .put_with(b"shown", &PutOptions::new().visibility(Visibility::Published))
            .unwrap()
            .id;
        s.commit().unwrap();
        s.snapshots().create("v1").unwrap();

        let owner = s.view(Audience::Owner);
        assert!(owner.contains(&internal).unwrap());
        assert_eq!(owner.get(&internal).unwrap(), b"kept inside");
        assert_eq!(owner.iter().unwrap().count(), 2);

        let peer = s.view(Audience::Published);
        let id = internal;
        assert!(!peer.contains(&id).unwrap());
        assert!(peer.info(&id).unwrap().is_none());
        assert!(matches!(peer.get(&id), Err(Error::NotFound(_))));
        assert!(matches!(peer.open_reader(&id), Err(Error::NotFound(_))));
        assert!(matches!(peer.read_range(&id, 0, 1), Err(Error::NotFound(_))));
        assert!(matches!(peer.len_of(&id), Err(Error::NotFound(_))));
        assert!(matches!(peer.at("v1").unwrap().get(&id), Err(Error::NotFound(_))));
        assert_eq!(peer.get(&published).unwrap(), b"shown");
        let listed: Vec<ArtifactId> = peer.iter().unwrap().map(|i| i.unwrap().id).collect();
        assert_eq!(listed, vec![published]);
        let in_snap: Vec<ArtifactId> = peer.at("v1").unwrap().iter().unwrap().map(|i| i.unwrap().id).collect();
        assert_eq!(in_snap, vec![published]);
        assert_eq!(peer.snapshots()[0].artifacts, None);
        assert_eq!(owner.snapshots()[0].artifacts, Some(2));

        // A put of internal bytes is news to another domain, not to the owner.
        let again = s.put_with(b"kept inside", &PutOptions::new()).unwrap();
        assert!(!again.new);
        assert!(peer.shown_new(&again.id, again.new).unwrap());
        assert!(!owner.shown_new(&again.id, again.new).unwrap());
    }
}
