//! Atomic sections: several writes that become durable in one commit or
//! not at all, also across a crash.
//!
//! A commit is one log batch ending in one `Commit` record, and recovery
//! replays whole batches only, so what one commit holds is all or nothing
//! after a crash. What a section adds is that nothing else commits while it
//! is open: a commit from another thread (an explicit `commit`, a snapshot,
//! a pin, GC, a checkpoint) waits until the section ends, so the section's
//! writes cannot be split over two commits. Writes from other threads are
//! not held up, and those made meanwhile are committed with the section.
//!
//! A section that ends without committing (dropped, or an error) after it
//! wrote something leaves the writer unusable ([`Error::Poisoned`]) so that
//! its writes are never committed later by someone else; reopening the
//! store recovers the last commit. Other threads of the process can read a
//! section's puts before it commits, as they can read any uncommitted put;
//! other processes and every reopen see all of it or none.

use parking_lot::MutexGuard;

use crate::error::{Error, Result};

use super::{Store, Writer};

/// An open atomic section of one thread (see the module docs). End it with
/// [`AtomicSection::commit`]; dropping it instead abandons its writes.
pub struct AtomicSection<'a> {
    store: &'a Store,
    done: bool,
}

impl Store {
    /// Opens an atomic section for this thread: every write it makes until
    /// [`AtomicSection::commit`] is committed together, or never. Waits
    /// while another thread's section is open. Writes not yet committed are
    /// committed first, so that the section holds only its own.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
    /// let old = store.put(b"v1").unwrap();
    /// store.commit().unwrap();
    /// let section = store.begin_atomic().unwrap();
    /// store.put(b"v2").unwrap();
    /// store.remove(&old).unwrap();
    /// section.commit().unwrap(); // both, or after a crash neither
    /// ```
    pub fn begin_atomic(&self) -> Result<AtomicSection<'_>> {
        let mut w = self.writer_to_commit()?;
        w.commit(self)?;
        w.atomic_owner = Some(std::thread::current().id());
        Ok(AtomicSection {
            store: self,
            done: false,
        })
    }

    /// The writer, for an operation that commits: waits while another
    /// thread's atomic section is open.
    pub(crate) fn writer_to_commit(&self) -> Result<MutexGuard<'_, Writer>> {
        let mut w = self.writer_state()?;
        let me = std::thread::current().id();
        while w.atomic_owner.is_some_and(|t| t != me) {
            self.atomic_done.wait(&mut w);
        }
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(w)
    }
}

/// Whether `w` may commit on this thread: not while another thread's
/// section is open (every commit path waits for that first; this is the
/// check that a path which does not cannot split a section).
pub(crate) fn may_commit(w: &Writer) -> Result<()> {
    match w.atomic_owner {
        Some(t) if t != std::thread::current().id() => Err(Error::SectionOpen),
        _ => Ok(()),
    }
}

impl AtomicSection<'_> {
    /// Commits everything written since the section began, in one commit.
    pub fn commit(mut self) -> Result<()> {
        let s = self.store;
        let mut w = s.writer.as_ref().ok_or(Error::ReadOnly)?.lock();
        let r = if w.poisoned { Err(Error::Poisoned) } else { w.commit(s) };
        release(s, &mut w, r.is_err());
        self.done = true;
        r
    }
}

impl Drop for AtomicSection<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let s = self.store;
        let Some(writer) = &s.writer else { return };
        let mut w = writer.lock();
        // The section began with nothing uncommitted (it committed first).
        let wrote = !w.batch.is_empty() || !w.tombstones.is_empty() || !s.pending.read().is_empty();
        release(s, &mut w, wrote);
    }
}

fn release(s: &Store, w: &mut Writer, poison: bool) {
    if poison {
        // Written but not committed: must never be committed by anyone.
        w.poisoned = true;
    }
    w.atomic_owner = None;
    s.atomic_done.notify_all();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::{Error, Store, StoreOptions};

    #[test]
    fn another_threads_commit_waits_for_the_section() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let ended = AtomicBool::new(false);
        let section = store.begin_atomic().unwrap();
        let a = store.put(b"in the section").unwrap();
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                store.put(b"from another thread").unwrap();
                store.commit().unwrap();
                // Its commit could not return before the section ended.
                assert!(ended.load(Ordering::SeqCst), "a commit split the section");
            });
            std::thread::sleep(std::time::Duration::from_millis(150));
            ended.store(true, Ordering::SeqCst);
            section.commit().unwrap();
            other.join().unwrap();
        });
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.contains(&a).unwrap());
    }

    #[test]
    fn a_section_dropped_after_writing_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let kept = store.put(b"before").unwrap();
        let section = store.begin_atomic().unwrap();
        let lost = store.put(b"half a batch").unwrap();
        drop(section);
        assert!(matches!(store.commit(), Err(Error::Poisoned)));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.contains(&kept).unwrap(), "what was there before is committed");
        assert!(!store.contains(&lost).unwrap(), "the abandoned section left nothing");
        // A section that wrote nothing leaves the store usable.
        drop(store.begin_atomic().unwrap());
        store.put(b"after").unwrap();
        store.commit().unwrap();
    }
}
