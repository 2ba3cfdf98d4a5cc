//! A store's side of its writer lock: taking it (waiting when asked), its
//! note (see `crate::lock`) naming the server that holds it, and asking who
//! holds another store's.

use super::layout::Layout;
use super::Store;
use crate::error::{Error, Result};
use crate::io::LockGuard;
use crate::lock::LockHolder;

impl Store {
    /// Who holds the writer lock of the store at `path` now, when another
    /// process does and left a note this version reads; `None` when the
    /// lock is free (it is taken and let go at once to tell) or `path`
    /// holds no store. What a program asks before acting on a store that
    /// may be served (`aslctl` then goes through the server it names).
    pub fn lock_holder(path: impl AsRef<std::path::Path>) -> Option<LockHolder> {
        let layout = super::Layout::new(path.as_ref(), super::StoreOptions::new().backend);
        if !layout.io.is_file(&layout.store_file()) {
            return None;
        }
        let lock = layout.lock_file();
        match layout.io.try_lock(&lock) {
            Ok(_free) => None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                layout.io.lock_note(&lock).and_then(|t| LockHolder::parse(&t))
            }
            Err(_) => None,
        }
    }

    /// [`Maintenance::announce`](crate::Maintenance::announce)'s body.
    pub(crate) fn announce(&self, url: &str) -> Result<()> {
        let lock = self.lock.as_ref().ok_or(Error::ReadOnly)?;
        let path = self.layout.lock_file();
        lock.note(&LockHolder::this_process(Some(url)).encode())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        self.layout
            .io
            .announce(url)
            .map_err(|e| Error::io(format!("name {url} as the writer's address"), e))
    }
}

/// How long a writer retries a held lock when not told to wait longer.
/// flock belongs to the open file description. A child forked by another
/// thread of this process (to run a command) holds a copy of every open
/// descriptor until it execs, so a lock released just before it was forked
/// stays held for that moment. Retrying briefly tells that apart from a real
/// second writer, which holds the lock for as long as it runs.
pub(crate) const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the writer lock, retrying while another writer holds it for up to
/// `wait` (at least [`LOCK_GRACE`]), polling with a backoff up to 50 ms.
pub(crate) fn lock_store_waiting(layout: &Layout, wait: std::time::Duration) -> Result<Box<dyn LockGuard>> {
    let path = layout.lock_file();
    let deadline = std::time::Instant::now() + wait.max(LOCK_GRACE);
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match layout.io.try_lock(&path) {
            Ok(l) => {
                // Best effort: the note only helps a refused process say who
                // holds the lock.
                let _ = l.note(&LockHolder::this_process(None).encode());
                return Ok(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    let holder = layout.io.lock_note(&path).and_then(|t| LockHolder::parse(&t));
                    return Err(Error::Locked { path, holder });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(Error::io(format!("lock {}", path.display()), e)),
        }
    }
}
