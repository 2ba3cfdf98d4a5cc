//! A simulated file system for crash tests: files live in memory, every write
//! and fsync is recorded, and [`SimBackend::crash_image`] produces what a
//! power cut at that instant would leave on a disk.
//!
//! The model, stated so that tests know what they prove:
//! - A file's bytes are durable as of its last `sync_data`/`sync_all`. Writes
//!   and truncations after it are kept in order; a power cut keeps none of
//!   them ([`CrashMode::DropUnsynced`]) or a prefix of them whose last write
//!   may be torn part-way ([`CrashMode::Torn`]).
//! - A name (created, renamed, removed) is durable as of the last `sync_dir`
//!   of its directory; a cut undoes later changes, so a file created and
//!   fsynced but whose directory was not synced is gone.
//! - Directories themselves are durable once created (the store creates them
//!   once, at store creation, and syncs the root after).
//!
//! [`SimBackend::cut_after`] makes every mutating operation after the first
//! `n` fail, as if the machine lost power there: the store sees I/O errors and
//! stops, and the crash image is the disk at operation `n`. Running the same
//! deterministic workload with each `n` in turn tests every crash point.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Backend, LockGuard, Mapped, OpenMode, StoreFile};

/// The errno of an I/O error (what [`SimBackend::fail_at`] injects).
pub const EIO: i32 = 5;
/// The errno of a full disk.
pub const ENOSPC: i32 = 28;

/// What a power cut keeps of the writes after a file's last fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Nothing.
    DropUnsynced,
    /// A prefix of them, the last one possibly torn; chosen per file by `seed`.
    Torn {
        /// Seeds the choice of how much of each file's unsynced tail survives.
        seed: u64,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    unsynced: Vec<Op>,
}

#[derive(Debug, Default)]
struct Fs {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    lock_notes: BTreeMap<PathBuf, String>,
    ops: u64,
    cut_after: Option<u64>,
    /// Operations (by number, counting from 0) that fail once with the given
    /// errno, without taking effect; later ones go on working.
    fail_at: BTreeMap<u64, i32>,
    /// Reads performed so far (file reads, whole-file reads, maps).
    reads: u64,
    /// Reads (by number) that fail once with the given errno.
    fail_read_at: BTreeMap<u64, i32>,
    /// What each mutating operation was, when tracing.
    trace: Option<Vec<String>>,
}

fn cut_error() -> io::Error {
    io::Error::other("simulated power cut")
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", p.display()))
}

impl Fs {
    /// Counts one mutating operation (described by `what` when tracing);
    /// fails once past the cut.
    fn step_on(&mut self, what: impl FnOnce() -> String) -> io::Result<()> {
        if self.cut_after.is_some_and(|n| self.ops >= n) {
            return Err(cut_error());
        }
        self.ops += 1;
        if let Some(errno) = self.fail_at.remove(&(self.ops - 1)) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if let Some(t) = &mut self.trace {
            t.push(what());
        }
        Ok(())
    }

    /// Counts one read; fails it when asked to.
    fn read_step(&mut self) -> io::Result<()> {
        self.reads += 1;
        match self.fail_read_at.remove(&(self.reads - 1)) {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn inode(&self, p: &Path) -> io::Result<u64> {
        self.names.get(p).copied().ok_or_else(|| not_found(p))
    }

    fn parent_exists(&self, p: &Path) -> io::Result<()> {
        match p.parent() {
            Some(d) if !d.as_os_str().is_empty() && !self.dirs.contains(d) => Err(not_found(d)),
            _ => Ok(()),
        }
    }
}

/// A shared, in-memory file system (clones share it).
#[derive(Clone, Debug, Default)]
pub struct SimBackend {
    fs: Arc<Mutex<Fs>>,
}

impl SimBackend {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts recording a line per mutating operation (see [`SimBackend::trace`]).
    pub fn start_trace(&self) {
        self.fs.lock().trace = Some(Vec::new());
    }

    /// The operations recorded since [`SimBackend::start_trace`], one line
    /// each, in order (for finding which step a failing crash point cut).
    pub fn trace(&self) -> Vec<String> {
        self.fs.lock().trace.clone().unwrap_or_default()
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> u64 {
        self.fs.lock().ops
    }

    /// Lets `n` more mutating operations in total succeed (counted from the
    /// start); every later one fails as if power was lost. `None` lifts it.
    pub fn cut_after(&self, n: Option<u64>) {
        self.fs.lock().cut_after = n;
    }

    /// Makes mutating operation number `n` (counting from 0, as [`SimBackend::ops`]
    /// counts) fail with EIO without taking effect — a failed write, fsync or
    /// rename — while the machine keeps running.
    pub fn fail_at(&self, n: u64) {
        self.fail_at_with(n, EIO);
    }

    /// Like [`SimBackend::fail_at`], with another errno (`ENOSPC` for a full disk).
    pub fn fail_at_with(&self, n: u64, errno: i32) {
        self.fs.lock().fail_at.insert(n, errno);
    }

    /// Reads (of a file range, a whole file, or a map) performed so far.
    pub fn reads(&self) -> u64 {
        self.fs.lock().reads
    }

    /// Makes read number `n` (counting from 0, as [`SimBackend::reads`]
    /// counts) fail with `errno` — a disk that cannot return a sector.
    pub fn fail_read_at(&self, n: u64, errno: i32) {
        self.fs.lock().fail_read_at.insert(n, errno);
    }

    /// The file system a power cut now would leave: durable names only, each
    /// file's synced bytes plus what `mode` keeps of its later writes.
    pub fn crash_image(&self, mode: CrashMode) -> SimBackend {
        let fs = self.fs.lock();
        let mut out = Fs {
            dirs: fs.dirs.clone(),
            durable: fs.durable.clone(),
            names: fs.durable.clone(),
            next_inode: fs.next_inode,
            ..Default::default()
        };
        for ino in fs.durable.values() {
            if out.inodes.contains_key(ino) {
                continue;
            }
            let Some(node) = fs.inodes.get(ino) else { continue };
            let mut data = node.synced.clone();
            if let CrashMode::Torn { seed } = mode {
                // splitmix64 over (seed, inode): small seeds still spread.
                let mut x = seed ^ ino.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next = move || {
                    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = x;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^ (z >> 31)
                };
                let keep = (next() % (node.unsynced.len() as u64 + 1)) as usize;
                for (i, op) in node.unsynced.iter().enumerate().take(keep + 1) {
                    match op {
                        Op::SetLen(n) if i < keep => data.resize(*n as usize, 0),
                        Op::Write(at, bytes) => {
                            // The write after the last kept one may be torn.
                            let n = if i < keep {
                                bytes.len()
                            } else {
                                (next() % (bytes.len() as u64 + 1)) as usize
                            };
                            apply_write(&mut data, *at, &bytes[..n]);
                        }
                        _ => {}
                    }
                }
            }
            out.inodes.insert(
                *ino,
                Inode {
                    synced: data.clone(),
                    data,
                    unsynced: Vec::new(),
                },
            );
        }
        SimBackend {
            fs: Arc::new(Mutex::new(out)),
        }
    }

    /// Bytes written since their file's last fsync, over every file (a test
    /// uses it to check that a crash point left something to lose).
    pub fn unsynced_bytes(&self) -> u64 {
        let fs = self.fs.lock();
        fs.inodes
            .values()
            .map(|n| {
                n.unsynced
                    .iter()
                    .map(|o| match o {
                        Op::Write(_, b) => b.len() as u64,
                        Op::SetLen(_) => 0,
                    })
                    .sum::<u64>()
            })
            .sum()
    }
}

fn apply_write(data: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let end = at as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[at as usize..end].copy_from_slice(bytes);
}

struct SimFile {
    fs: Arc<Mutex<Fs>>,
    ino: u64,
    writable: bool,
    path: PathBuf,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inode) -> T) -> io::Result<T> {
        let mut fs = self.fs.lock();
        let node = fs
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("stale inode"))?;
        Ok(f(node))
    }

    fn mutate<T>(&self, what: &str, f: impl FnOnce(&mut Inode) -> T) -> io::Result<T> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        self.fs.lock().step_on(|| format!("{what} {}", self.path.display()))?;
        self.with(f)
    }
}

impl StoreFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.fs.lock().read_step()?;
        self.with(|n| {
            let end = offset as usize + buf.len();
            if end > n.data.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
            }
            buf.copy_from_slice(&n.data[offset as usize..end]);
            Ok(())
        })?
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(&format!("write {}@{offset}", buf.len()), |n| {
            apply_write(&mut n.data, offset, buf);
            n.unsynced.push(Op::Write(offset, buf.to_vec()));
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|n| n.data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(&format!("set_len {len}"), |n| {
            n.data.resize(len as usize, 0);
            n.unsynced.push(Op::SetLen(len));
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.mutate("fsync", |n| {
            n.synced = n.data.clone();
            n.unsynced.clear();
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

struct SimLock {
    fs: Arc<Mutex<Fs>>,
    path: PathBuf,
}

impl LockGuard for SimLock {
    fn note(&self, text: &str) -> io::Result<()> {
        // Kept beside the files: a note is not a file operation the crash
        // and fault tests count.
        self.fs.lock().lock_notes.insert(self.path.clone(), text.to_string());
        Ok(())
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Backend for SimBackend {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        let mut fs = self.fs.lock();
        let exists = fs.names.contains_key(path);
        let ino = match mode {
            OpenMode::Read | OpenMode::ReadWrite => fs.inode(path)?,
            OpenMode::CreateNew if exists => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            OpenMode::CreateNew | OpenMode::CreateTruncate | OpenMode::CreatePrivate => {
                fs.parent_exists(path)?;
                fs.step_on(|| format!("create {}", path.display()))?;
                match fs.names.get(path).copied() {
                    Some(ino) => {
                        let n = fs.inodes.get_mut(&ino).ok_or_else(|| io::Error::other("stale inode"))?;
                        n.data.clear();
                        n.unsynced.push(Op::SetLen(0));
                        ino
                    }
                    None => {
                        let ino = fs.next_inode;
                        fs.next_inode += 1;
                        fs.inodes.insert(ino, Inode::default());
                        fs.names.insert(path.to_path_buf(), ino);
                        ino
                    }
                }
            }
        };
        Ok(Box::new(SimFile {
            fs: self.fs.clone(),
            ino,
            writable: mode != OpenMode::Read,
            path: path.to_path_buf(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut fs = self.fs.lock();
        let ino = fs.inode(path)?;
        fs.read_step()?;
        Ok(fs.inodes.get(&ino).map(|n| n.data.clone()).unwrap_or_default())
    }

    fn map(&self, path: &Path) -> io::Result<Mapped> {
        // Only immutable files are mapped, so a copy is as good as a map.
        Ok(Mapped::new(self.read(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        let ino = fs.inode(from)?;
        fs.parent_exists(to)?;
        fs.step_on(|| format!("rename {} {}", from.display(), to.display()))?;
        fs.names.remove(from);
        fs.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        fs.inode(path)?;
        fs.step_on(|| format!("remove {}", path.display()))?;
        fs.names.remove(path);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.lock();
        if !fs.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |p: &&PathBuf| p.parent() == Some(dir);
        let name = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(fs
            .names
            .keys()
            .filter(in_dir)
            .chain(fs.dirs.iter().filter(in_dir))
            .filter_map(name)
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        if fs.dirs.contains(dir) {
            return Ok(());
        }
        fs.step_on(|| format!("mkdir {}", dir.display()))?;
        for a in dir.ancestors() {
            if !a.as_os_str().is_empty() {
                fs.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        if !fs.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        fs.step_on(|| format!("sync_dir {}", dir.display()))?;
        let now: Vec<(PathBuf, u64)> = fs
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        fs.durable.retain(|p, _| p.parent() != Some(dir));
        fs.durable.extend(now);
        Ok(())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.fs.lock().names.contains_key(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.fs.lock().dirs.contains(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let fs = self.fs.lock();
        let ino = fs.inode(path)?;
        Ok(fs.inodes.get(&ino).map(|n| n.data.len() as u64).unwrap_or(0))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut fs = self.fs.lock();
        if !fs.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            fs: self.fs.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn lock_note(&self, path: &Path) -> Option<String> {
        self.fs.lock().lock_notes.get(path).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_keeps_synced_bytes_and_synced_names_only() {
        let b = SimBackend::new();
        let d = Path::new("/s");
        b.create_dir_all(d).unwrap();
        let f = b.open(&d.join("a"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        // Name not yet durable: gone after a cut.
        assert!(!b.crash_image(CrashMode::DropUnsynced).is_file(&d.join("a")));
        b.sync_dir(d).unwrap();
        let img = b.crash_image(CrashMode::DropUnsynced);
        assert_eq!(img.read(&d.join("a")).unwrap(), b"hello");
        // Torn: some prefix of the unsynced write, never more than was written.
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let got = b.crash_image(CrashMode::Torn { seed }).read(&d.join("a")).unwrap();
            assert!(b"hello world".starts_with(&got) && got.len() >= 5);
            seen.insert(got.len());
        }
        assert!(seen.len() > 2, "torn images do not vary: {seen:?}");
        // A rename is undone until the directory is synced.
        b.rename(&d.join("a"), &d.join("b")).unwrap();
        let img = b.crash_image(CrashMode::DropUnsynced);
        assert!(img.is_file(&d.join("a")) && !img.is_file(&d.join("b")));
        // After the cut every mutation fails.
        b.cut_after(Some(b.ops()));
        assert!(f.write_all_at(b"x", 0).is_err());
        assert!(b.sync_dir(d).is_err());
    }
}
