//! Side files: small files the layers above the engine keep in the store
//! directory beside the engine's own (a domain's identity, its remotes, the
//! signing key). They are replaced whole, never edited in place, and go
//! through the store's I/O backend like every other file the store owns, so
//! the crash and fault tests cover them and a store on another backend
//! keeps them there too.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{read, write_atomic_as};
use crate::io::{OpenMode, StoreFile};

use super::Store;

/// Who may read a side file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideFileAccess {
    /// Like the store's other files.
    Shared,
    /// The owner only (keys, tokens): the file mode 0600, its directory
    /// 0700 when it is not the store directory itself.
    Private,
}

impl Store {
    /// [`SideFiles::path`](crate::SideFiles::path)'s body.
    pub(crate) fn side_file_path(&self, name: &str) -> Result<PathBuf> {
        let rel = Path::new(name);
        let plain = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(Error::InvalidArgument(format!(
                "side file {name:?} is not a relative path of plain names"
            )));
        }
        Ok(self.path().join(rel))
    }

    /// [`SideFiles::read`](crate::SideFiles::read)'s body.
    pub(crate) fn read_side_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.side_file_path(name)?;
        let io = &*self.layout.io;
        if !io.is_file(&path) {
            return Ok(None);
        }
        Ok(Some(read(io, &path)?))
    }

    /// [`SideFiles::write`](crate::SideFiles::write)'s body.
    pub(crate) fn write_side_file(&self, name: &str, bytes: &[u8], access: SideFileAccess) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let path = self.side_file_path(name)?;
        let io = &*self.layout.io;
        let dir = path.parent().unwrap_or(self.path());
        let mode = match access {
            SideFileAccess::Shared => {
                io.create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
                OpenMode::CreateTruncate
            }
            SideFileAccess::Private => {
                if dir != self.path() {
                    io.create_private_dir(dir).ctx(|| format!("create {}", dir.display()))?;
                }
                OpenMode::CreatePrivate
            }
        };
        Ok(write_atomic_as(io, &path, bytes, mode)?)
    }
}

impl Store {
    /// [`SideFiles::open`](crate::SideFiles::open)'s body.
    pub(crate) fn open_side_file(&self, name: &str, mode: OpenMode) -> Result<Option<Box<dyn StoreFile>>> {
        let path = self.side_file_path(name)?;
        let io = &*self.layout.io;
        match mode {
            OpenMode::Read | OpenMode::ReadWrite if !io.is_file(&path) => return Ok(None),
            OpenMode::Read => {}
            _ if self.is_read_only() => return Err(Error::ReadOnly),
            OpenMode::ReadWrite => {}
            _ => {
                let dir = path.parent().unwrap_or(self.path());
                io.create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
            }
        }
        Ok(Some(io.open(&path, mode).ctx(|| format!("open {}", path.display()))?))
    }

    /// [`SideFiles::remove`](crate::SideFiles::remove)'s body.
    pub(crate) fn remove_side_file(&self, name: &str) -> Result<bool> {
        let path = self.side_file_path(name)?;
        let io = &*self.layout.io;
        if !io.is_file(&path) {
            return Ok(false);
        }
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        io.remove(&path).ctx(|| format!("remove {}", path.display()))?;
        Ok(true)
    }

    /// [`SideFiles::list_dir`](crate::SideFiles::list_dir)'s body.
    pub(crate) fn list_side_dir(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.side_file_path(dir)?;
        let io = &*self.layout.io;
        if !io.is_dir(&path) {
            return Ok(Vec::new());
        }
        Ok(io.list(&path).ctx(|| format!("list {}", path.display()))?)
    }

    /// [`SideFiles::sync_dir`](crate::SideFiles::sync_dir)'s body.
    pub(crate) fn sync_side_dir(&self, dir: &str) -> Result<()> {
        let path = self.side_file_path(dir)?;
        Ok(crate::fsutil::sync_dir(&*self.layout.io, &path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{CrashMode, SimBackend};
    use crate::store::StoreOptions;
    use std::sync::Arc;

    #[test]
    fn side_files_are_replaced_whole_and_survive_a_power_cut() {
        let root = Path::new("/s");
        let open = |sim: &Arc<SimBackend>| StoreOptions::new().backend(sim.clone()).open(root).unwrap();
        let sim = Arc::new(SimBackend::new());
        let s = StoreOptions::new()
            .create(true)
            .backend(sim.clone())
            .open(root)
            .unwrap();
        assert_eq!(s.read_side_file("domain").unwrap(), None);
        s.write_side_file("keys/k", b"secret", SideFileAccess::Private).unwrap();
        assert_eq!(s.read_side_file("keys/k").unwrap().as_deref(), Some(&b"secret"[..]));
        for bad in ["", "../x", "/etc/passwd", "a/../b", "./a"] {
            assert!(matches!(s.side_file_path(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
        drop(s);
        // A power cut at every step of a second write leaves the old bytes
        // or the new ones, never a mix or nothing.
        let mut cut = 0;
        loop {
            let sim = Arc::new(SimBackend::new());
            let s = StoreOptions::new()
                .create(true)
                .backend(sim.clone())
                .open(root)
                .unwrap();
            s.write_side_file("domain", b"one", SideFileAccess::Shared).unwrap();
            sim.cut_after(Some(sim.ops() + cut));
            let done = s.write_side_file("domain", b"two", SideFileAccess::Shared).is_ok();
            for seed in 0..4 {
                let after = Arc::new(sim.crash_image(CrashMode::Torn { seed }));
                let got = open(&after).read_side_file("domain").unwrap();
                assert!(
                    matches!(got.as_deref(), Some(b"one") | Some(b"two")),
                    "cut {cut}: {got:?}"
                );
                if done {
                    assert_eq!(got.as_deref(), Some(&b"two"[..]), "acknowledged, then cut");
                }
            }
            if done {
                break;
            }
            cut += 1;
        }
        assert!(cut >= 3, "the write took {cut} steps");
    }
}
