//! Changing who may see an artifact outside this domain: a new index
//! record with the same location and the other visibility, which shadows
//! the old one. No byte moves. A published artifact is a GC root, so
//! publishing an artifact that was removed from CURRENT is refused, and
//! unpublishing one releases its bytes to GC unless a pin or snapshot
//! still holds them.

use super::{Store, Writer};
use crate::error::{Error, Result};
use crate::index::Visibility;
use crate::snapshot::log::Record;
use crate::ArtifactId;

impl Store {
    /// Sets the visibility of each of `ids`; returns those whose visibility
    /// changed, committed. An id that is not in CURRENT is
    /// [`Error::NotFound`], except that an artifact removed from CURRENT
    /// while published may be unpublished.
    pub fn set_visibility(&self, ids: &[ArtifactId], visibility: Visibility) -> Result<Vec<ArtifactId>> {
        let mut w = self.writer_to_commit()?;
        // Puts still being packed get their records first.
        w.commit(self)?;
        // Every id is checked before anything is written (a refusal leaves
        // the writer usable).
        let plan = self.visibility_plan(ids, visibility)?;
        let changed = w.guard(|w| w.apply_visibility(self, plan, visibility))?;
        w.commit(self)?;
        Ok(changed)
    }

    fn visibility_plan(&self, ids: &[ArtifactId], v: Visibility) -> Result<Vec<crate::index::entry::Entry>> {
        let mut plan = Vec::new();
        for id in ids {
            let e = self.state.read().newest(id)?;
            match e {
                Some(e) if e.is_chunk() => return Err(Error::NotFound(*id)),
                Some(e) if e.visibility == v => {}
                Some(e) if e.is_tombstone() && v == Visibility::Published => return Err(Error::NotFound(*id)),
                Some(e) => plan.push(e),
                None => return Err(Error::NotFound(*id)),
            }
        }
        Ok(plan)
    }
}

impl Writer {
    fn apply_visibility(
        &mut self,
        s: &Store,
        plan: Vec<crate::index::entry::Entry>,
        v: Visibility,
    ) -> Result<Vec<ArtifactId>> {
        let mut changed = Vec::new();
        for e in plan {
            let new = e.with_visibility(v);
            if e.is_tombstone() && !s.state.read().held(&new, None)? {
                // Removed, and now nothing holds it: its bytes become garbage.
                self.add_usage(e.segment, -(e.usage() as i64), 0);
                self.sweep_due |= e.is_manifest();
            }
            s.state.write().memtable.insert(e.id, new);
            self.watched(e.id);
            self.batch.push(Record::Entry(new));
            changed.push(e.id);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use crate::index::Visibility;
    use crate::{ArtifactId, GcOptions, Store, StoreOptions};

    fn gc(s: &Store) {
        s.seal().unwrap();
        s.gc(
            &GcOptions {
                threshold: 1.0,
                dry_run: false,
            },
            None,
        )
        .unwrap();
    }

    /// The bytes behind `id`'s newest record, removed or not.
    fn kept(s: &Store, id: &ArtifactId) -> Option<Vec<u8>> {
        let e = s.state.read().newest(id).unwrap()?;
        s.read_entry(&e, s.segment(&e).ok()?).ok()
    }

    #[test]
    fn a_published_artifact_is_a_gc_root_until_unpublished() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new()
            .create(true)
            .compression(None)
            .open(d.path())
            .unwrap();
        let x = s.put(&vec![7u8; 5000]).unwrap();
        let y = s.put(&vec![8u8; 5000]).unwrap();
        s.commit().unwrap();
        assert_eq!(s.set_visibility(&[x, y], Visibility::Published).unwrap(), vec![x, y]);
        assert!(
            s.set_visibility(&[x], Visibility::Published).unwrap().is_empty(),
            "no change"
        );
        assert_eq!(s.info(&x).unwrap().unwrap().visibility, Visibility::Published);
        // Out of CURRENT, still published: GC keeps the bytes.
        s.remove(&x).unwrap();
        s.remove(&y).unwrap();
        s.set_visibility(&[y], Visibility::Internal).unwrap();
        s.commit().unwrap();
        gc(&s);
        assert!(!s.contains(&x).unwrap());
        assert!(kept(&s, &x) == Some(vec![7u8; 5000]), "published: kept");
        assert!(kept(&s, &y).is_none(), "unpublished and removed: collected");
        // Reopened (log replay), the same.
        drop(s);
        let s = StoreOptions::new().open(d.path()).unwrap();
        gc(&s);
        assert!(kept(&s, &x) == Some(vec![7u8; 5000]));
        // A removed artifact cannot be published again, an unknown id never.
        assert!(s.set_visibility(&[y], Visibility::Published).is_err());
        assert!(s
            .set_visibility(&[ArtifactId::of(b"nope")], Visibility::Published)
            .is_err());
        // Unpublished, it goes at the next collection.
        s.set_visibility(&[x], Visibility::Internal).unwrap();
        gc(&s);
        assert!(kept(&s, &x).is_none());
    }
}
