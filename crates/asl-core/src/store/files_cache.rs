//! The files cache of ingest: what each file path last ingested into this
//! store held, keyed by the file's metadata, so that an unchanged file is
//! not read again (restic's files cache, git's index).
//!
//! It is a cache in the strict sense: derived from ingests, never a source of
//! truth. A missing, damaged or foreign-version cache file is ignored and
//! written anew; an entry is used only while its artifact is live in the
//! store; and an entry recorded while its file could still change within the
//! file system's timestamp granularity ("racily clean", as git calls it) is
//! not trusted, so such a file is read again.

use std::collections::HashMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsutil::{le_u32, le_u64, write_atomic};
use crate::id::ArtifactId;
use crate::io::{Backend, Mapped};

/// Magic at the start of the cache file.
const MAGIC: [u8; 8] = *b"ASLFCACH";
const VERSION: u32 = 1;
/// Fixed bytes of an entry after its path.
const ENTRY_FIXED: usize = 8 * 6 + 32;
/// How close to the moment it was recorded a file's timestamps may be before
/// the entry is not trusted: wider than any file system's granularity that
/// matters here (FAT's 2 s aside).
const RACY_NS: i64 = 1_000_000_000;

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch (changes on any write
    /// and cannot be set back by a user).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of `md`.
    pub fn of(md: &std::fs::Metadata) -> Self {
        Self {
            size: md.len(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            dev: md.dev(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    stamp: FileStamp,
    /// When the ingest that recorded it started (ns since the epoch).
    recorded_ns: i64,
    id: ArtifactId,
}

impl Entry {
    /// Decodes the fixed part of an entry (after its path).
    fn decode(f: &[u8]) -> Self {
        let v = |i: usize| le_u64(f, i * 8);
        Self {
            stamp: FileStamp {
                size: v(0),
                mtime_ns: v(1) as i64,
                ctime_ns: v(2) as i64,
                ino: v(3),
                dev: v(4),
            },
            recorded_ns: v(5) as i64,
            id: ArtifactId::from_bytes(f[48..80].try_into().expect("32 bytes")),
        }
    }

    fn encode(&self, b: &mut Vec<u8>) {
        for v in [
            self.stamp.size,
            self.stamp.mtime_ns as u64,
            self.stamp.ctime_ns as u64,
            self.stamp.ino,
            self.stamp.dev,
            self.recorded_ns as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(self.id.as_bytes());
    }
}

/// The cache, loaded: the file's image as it was read, searched in place
/// (its entries are sorted by path), and what this ingest recorded since.
/// Decoding the file into a map took an allocation and a hash per entry,
/// a tenth of an unchanged re-ingest of 56 000 files; the walk meets the
/// paths nearly in the file's order, so most lookups are answered by the
/// entry after the previous one (the caller keeps that hint, one per thread
/// looking up).
#[derive(Debug)]
pub(crate) struct FilesCache {
    /// Mapped, not read: a read's copy into a fresh buffer faulted in every
    /// page of it (8 MiB for 56 000 files).
    image: Mapped,
    /// Where each entry of `image` starts (at its path's length).
    at: Vec<usize>,
    /// Recorded since loading, keyed by the path's bytes; these win.
    added: HashMap<Box<[u8]>, Entry>,
}

impl Default for FilesCache {
    fn default() -> Self {
        Self {
            image: Mapped::new(Vec::new()),
            at: Vec::new(),
            added: HashMap::new(),
        }
    }
}

/// Now, in nanoseconds since the epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl FilesCache {
    /// Loads the cache file; anything unreadable gives an empty cache.
    pub(crate) fn load(io: &dyn Backend, path: &Path) -> Self {
        // The file is only ever replaced whole (renamed over), never
        // changed in place, so a map of it stays what it was.
        io.map(path)
            .or_else(|_| io.read(path).map(Mapped::new))
            .ok()
            .and_then(decode)
            .unwrap_or_default()
    }

    /// The id `path` held when recorded, if its stamp is unchanged and the
    /// entry was not recorded within the timestamp granularity of a change.
    #[cfg(test)]
    pub(crate) fn lookup(&self, path: &Path, stamp: &FileStamp, hint: &mut usize) -> Option<ArtifactId> {
        self.lookup_key(path.as_os_str().as_bytes(), stamp, hint)
    }

    /// [`FilesCache::lookup`] of a path given as its key's bytes. `hint`
    /// is where the lookup looks first, and is set past what it finds
    /// (start at 0; any value is safe, a good one is fast).
    pub(crate) fn lookup_key(&self, key: &[u8], stamp: &FileStamp, hint: &mut usize) -> Option<ArtifactId> {
        let e = self.get(key, hint)?;
        let settled = e.stamp.mtime_ns.max(e.stamp.ctime_ns) < e.recorded_ns - RACY_NS;
        (e.stamp == *stamp && settled).then_some(e.id)
    }

    fn get(&self, key: &[u8], hint: &mut usize) -> Option<Entry> {
        if let Some(e) = self.added.get(key) {
            return Some(*e);
        }
        let k = if self.at.get(*hint).is_some_and(|&at| self.path_at(at) == key) {
            *hint
        } else {
            self.at.binary_search_by(|&at| self.path_at(at).cmp(key)).ok()?
        };
        *hint = k + 1;
        Some(self.entry_at(self.at[k]))
    }

    /// The entry at `at` in the image, after its path.
    fn entry_at(&self, at: usize) -> Entry {
        let n = le_u32(self.image.bytes(), at) as usize;
        Entry::decode(&self.image.bytes()[at + 4 + n..at + 4 + n + ENTRY_FIXED])
    }

    /// The path of the entry at `at` in the image.
    fn path_at(&self, at: usize) -> &[u8] {
        let n = le_u32(self.image.bytes(), at) as usize;
        &self.image.bytes()[at + 4..at + 4 + n]
    }

    /// Records what `path` held, by an ingest that started at `recorded_ns`.
    #[cfg(test)]
    pub(crate) fn record(&mut self, path: PathBuf, stamp: FileStamp, id: ArtifactId, recorded_ns: i64) {
        self.record_key(path.into_os_string().into_vec(), stamp, id, recorded_ns);
    }

    /// [`FilesCache::record`] of a path given as its bytes.
    pub(crate) fn record_key(&mut self, key: Vec<u8>, stamp: FileStamp, id: ArtifactId, recorded_ns: i64) {
        self.added
            .insert(key.into_boxed_slice(), Entry { stamp, recorded_ns, id });
    }

    /// Writes the cache file (temp, fsync, rename).
    pub(crate) fn save(&self, io: &dyn Backend, path: &Path) -> Result<()> {
        Ok(write_atomic(io, path, &self.encode())?)
    }

    /// Every entry, each path once (a recorded one over a loaded one).
    fn entries(&self) -> Vec<(&[u8], Entry)> {
        let mut all: Vec<(&[u8], Entry)> = self
            .at
            .iter()
            .map(|&at| (self.path_at(at), at))
            .filter(|(p, _)| !self.added.contains_key(*p))
            .map(|(p, at)| (p, self.entry_at(at)))
            .chain(self.added.iter().map(|(k, e)| (&k[..], *e)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    fn encode(&self) -> Vec<u8> {
        let all = self.entries();
        let mut b = Vec::with_capacity(24 + all.len() * (ENTRY_FIXED + 64));
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(all.len() as u64).to_le_bytes());
        for (p, e) in all {
            b.extend_from_slice(&(p.len() as u32).to_le_bytes());
            b.extend_from_slice(p);
            e.encode(&mut b);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// The cache's key for a path: its absolute form, as `std::path::absolute`
/// gives it against the working directory taken once. An ingest asks for
/// tens of thousands of paths, most in the directory of the one before, so
/// the parent's absolute form is kept and the file name appended.
#[derive(Clone)]
pub(crate) struct Keys {
    cwd: Option<PathBuf>,
    parent: Option<(PathBuf, Vec<u8>)>,
}

impl Keys {
    pub(crate) fn new() -> Self {
        Self {
            cwd: std::env::current_dir().ok(),
            parent: None,
        }
    }

    fn absolute(&self, p: &Path) -> Option<PathBuf> {
        match (&self.cwd, p.is_relative()) {
            (Some(cwd), true) => std::path::absolute(cwd.join(p)).ok(),
            _ => std::path::absolute(p).ok(),
        }
    }

    /// The key of `p` (`None` when it has no absolute form).
    pub(crate) fn key(&mut self, p: &Path) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.key_into(p, &mut out).then_some(out)
    }

    /// Writes the key of `p` into `out`; false when it has none.
    pub(crate) fn key_into(&mut self, p: &Path, out: &mut Vec<u8>) -> bool {
        out.clear();
        // Only a plain last component can be appended to its parent's form
        // (`..`, a trailing `.` or `/` would be resolved differently).
        let plain = !p.as_os_str().as_bytes().ends_with(b"/") && !p.as_os_str().as_bytes().ends_with(b"/.");
        let parent = p.parent().filter(|d| plain && !d.as_os_str().is_empty());
        let (Some(parent), Some(name)) = (parent, p.file_name()) else {
            return match self.absolute(p) {
                Some(a) => {
                    out.extend_from_slice(a.as_os_str().as_bytes());
                    true
                }
                None => false,
            };
        };
        if self.parent.as_ref().is_none_or(|(d, _)| d != parent) {
            let Some(a) = self.absolute(parent) else { return false };
            self.parent = Some((parent.to_path_buf(), a.into_os_string().into_vec()));
        }
        let (_, base) = self.parent.as_ref().expect("set above");
        out.extend_from_slice(base);
        if base.last() != Some(&b'/') {
            out.push(b'/');
        }
        out.extend_from_slice(name.as_bytes());
        true
    }
}

/// Checks a cache file image and finds its entries; `None` for anything
/// that does not check, including entries out of order (every writer sorts
/// them, and a lookup searches them in that order).
fn decode(image: Mapped) -> Option<FilesCache> {
    let b = image.bytes();
    if b.len() < 28 || b[..8] != MAGIC || le_u32(b, 8) != VERSION {
        return None;
    }
    let body = &b[..b.len() - 4];
    if crc32c::crc32c(body) != le_u32(b, b.len() - 4) {
        return None;
    }
    let count = le_u64(b, 16);
    let mut at = 24usize;
    let mut starts = Vec::with_capacity(count.min(body.len() as u64 / (4 + ENTRY_FIXED) as u64) as usize);
    let mut prev: Option<&[u8]> = None;
    for _ in 0..count {
        let n = le_u32(body.get(at..at + 4)?, 0) as usize;
        let raw = body.get(at + 4..at + 4 + n)?;
        body.get(at + 4 + n..at + 4 + n + ENTRY_FIXED)?;
        if prev.is_some_and(|p| p >= raw) {
            return None;
        }
        prev = Some(raw);
        starts.push(at);
        at += 4 + n + ENTRY_FIXED;
    }
    (at == body.len()).then(|| FilesCache {
        image,
        at: starts,
        ..FilesCache::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_ns: i64) -> FileStamp {
        FileStamp {
            size: 10,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
            dev: 1,
        }
    }

    #[test]
    fn round_trip_and_damage_is_an_empty_cache() {
        let mut c = FilesCache::default();
        c.record("/a/b".into(), stamp(5), ArtifactId::of(b"x"), 10 * RACY_NS);
        c.record("/a/\u{e9}".into(), stamp(6), ArtifactId::of(b"y"), 10 * RACY_NS);
        let b = c.encode();
        let d = decode(Mapped::new(b.clone())).unwrap();
        assert_eq!(d.entries(), c.entries());
        assert_eq!(d.encode(), b);
        for at in [0, 9, 30, b.len() - 1] {
            let mut x = b.clone();
            x[at] ^= 1;
            assert!(decode(Mapped::new(x)).is_none(), "flip at {at} accepted");
        }
        assert!(decode(Mapped::new(b[..b.len() - 5].to_vec())).is_none());
    }

    #[test]
    fn a_loaded_cache_answers_in_any_order_and_what_is_recorded_wins() {
        let t = 100 * RACY_NS;
        let mut c = FilesCache::default();
        let paths: Vec<String> = (0..200).map(|i| format!("/d{}/f{i:03}", i % 7)).collect();
        let id = |p: &str| ArtifactId::of(p.as_bytes());
        for (i, p) in paths.iter().enumerate() {
            c.record(p.into(), stamp(i as i64), id(p), t);
        }
        let mut d = decode(Mapped::new(c.encode())).unwrap();
        assert!(d.added.is_empty() && d.at.len() == 200);
        let mut h = 0;
        // In walk order, backwards and skipping: the hint misses, the search finds.
        let order = (0..200).chain((0..200).rev()).chain((0..200).step_by(7));
        for i in order {
            let p = &paths[i];
            assert_eq!(d.lookup(Path::new(p), &stamp(i as i64), &mut h), Some(id(p)), "{p}");
        }
        assert_eq!(d.lookup(Path::new("/d0/zzz"), &stamp(0), &mut h), None);
        assert_eq!(d.lookup(Path::new("/"), &stamp(0), &mut h), None);
        d.record(paths[5].clone().into(), stamp(999), id("new"), t);
        d.record("/new".into(), stamp(1000), id("newer"), t);
        let e = decode(Mapped::new(d.encode())).unwrap();
        assert_eq!(e.at.len(), 201);
        // A hint from elsewhere, or out of range, only costs a search.
        for bad in [0, 7, 200, 201, usize::MAX - 1] {
            h = bad;
            assert_eq!(e.lookup(Path::new(&paths[9]), &stamp(9), &mut h), Some(id(&paths[9])));
        }
        assert_eq!(e.lookup(Path::new(&paths[5]), &stamp(999), &mut h), Some(id("new")));
        assert_eq!(e.lookup(Path::new(&paths[5]), &stamp(5), &mut h), None);
        assert_eq!(e.lookup(Path::new("/new"), &stamp(1000), &mut h), Some(id("newer")));
    }

    #[test]
    fn keys_are_the_absolute_paths() {
        let mut keys = Keys::new();
        let cwd = std::env::current_dir().unwrap();
        for p in [
            "a",
            "a/b",
            "a/b/c",
            "./a/b",
            "a/./b",
            "a//b",
            "../a/b",
            "a/../b",
            "/x/y",
            "/x/./y",
            "/",
            "a/b/",
            ".",
            "..",
            "a/..",
            "a/.",
            "./a",
            "/x//y/z",
            "x\u{e9}/y",
        ] {
            let p = Path::new(p);
            let want = std::path::absolute(cwd.join(p)).unwrap();
            assert_eq!(keys.key(p).unwrap(), want.as_os_str().as_bytes(), "{}", p.display());
        }
    }

    #[test]
    fn entries_out_of_order_are_not_trusted() {
        let mut c = FilesCache::default();
        c.record("/a".into(), stamp(1), ArtifactId::of(b"a"), 10 * RACY_NS);
        c.record("/b".into(), stamp(2), ArtifactId::of(b"b"), 10 * RACY_NS);
        let b = c.encode();
        let one = 4 + 2 + ENTRY_FIXED;
        let mut x = b[..24].to_vec();
        x.extend_from_slice(&b[24 + one..24 + 2 * one]);
        x.extend_from_slice(&b[24..24 + one]);
        let crc = crc32c::crc32c(&x);
        x.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(Mapped::new(b)).is_some());
        assert!(decode(Mapped::new(x)).is_none());
    }

    #[test]
    fn only_settled_unchanged_entries_are_trusted() {
        let mut c = FilesCache::default();
        let t = 100 * RACY_NS;
        c.record("/old".into(), stamp(t - 5 * RACY_NS), ArtifactId::of(b"o"), t);
        c.record("/racy".into(), stamp(t - RACY_NS / 2), ArtifactId::of(b"r"), t);
        let mut h = 0;
        assert_eq!(
            c.lookup(Path::new("/old"), &stamp(t - 5 * RACY_NS), &mut h),
            Some(ArtifactId::of(b"o"))
        );
        assert_eq!(c.lookup(Path::new("/racy"), &stamp(t - RACY_NS / 2), &mut h), None);
        let mut changed = stamp(t - 5 * RACY_NS);
        changed.ctime_ns += 1;
        assert_eq!(c.lookup(Path::new("/old"), &changed, &mut h), None);
        assert_eq!(c.lookup(Path::new("/other"), &stamp(1), &mut h), None);
    }
}
