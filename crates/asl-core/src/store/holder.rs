//! A store's side of its lock's note (see `crate::lock`): naming the
//! server that holds it, and asking who holds another store's.

use super::Store;
use crate::error::{Error, Result};
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
