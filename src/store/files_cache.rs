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
use crate::io::Backend;

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

/// The cache, loaded. Keyed by the path's bytes: hashing and ordering a
/// `Path` goes component by component, which dominated a re-ingest of 46 000
/// unchanged files.
#[derive(Debug, Default)]
pub(crate) struct FilesCache {
    entries: HashMap<Box<[u8]>, Entry>,
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
        io.read(path).ok().and_then(|b| decode(&b)).unwrap_or_default()
    }

    /// The id `path` held when recorded, if its stamp is unchanged and the
    /// entry was not recorded within the timestamp granularity of a change.
    pub(crate) fn lookup(&self, path: &Path, stamp: &FileStamp) -> Option<ArtifactId> {
        let e = self.entries.get(path.as_os_str().as_bytes())?;
        let settled = e.stamp.mtime_ns.max(e.stamp.ctime_ns) < e.recorded_ns - RACY_NS;
        (e.stamp == *stamp && settled).then_some(e.id)
    }

    /// Records what `path` held, by an ingest that started at `recorded_ns`.
    pub(crate) fn record(&mut self, path: PathBuf, stamp: FileStamp, id: ArtifactId, recorded_ns: i64) {
        let key = path.into_os_string().into_vec().into_boxed_slice();
        self.entries.insert(key, Entry { stamp, recorded_ns, id });
    }

    /// Writes the cache file (temp, fsync, rename).
    pub(crate) fn save(&self, io: &dyn Backend, path: &Path) -> Result<()> {
        Ok(write_atomic(io, path, &self.encode())?)
    }

    fn encode(&self) -> Vec<u8> {
        let mut paths: Vec<&Box<[u8]>> = self.entries.keys().collect();
        paths.sort_unstable();
        let mut b = Vec::with_capacity(24 + paths.len() * (ENTRY_FIXED + 64));
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(paths.len() as u64).to_le_bytes());
        for p in paths {
            let e = &self.entries[p];
            let raw: &[u8] = p;
            b.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            b.extend_from_slice(raw);
            for v in [
                e.stamp.size,
                e.stamp.mtime_ns as u64,
                e.stamp.ctime_ns as u64,
                e.stamp.ino,
                e.stamp.dev,
                e.recorded_ns as u64,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(e.id.as_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Decodes a cache file image; `None` for anything that does not check.
fn decode(b: &[u8]) -> Option<FilesCache> {
    if b.len() < 28 || b[..8] != MAGIC || le_u32(b, 8) != VERSION {
        return None;
    }
    let body = &b[..b.len() - 4];
    if crc32c::crc32c(body) != le_u32(b, b.len() - 4) {
        return None;
    }
    let count = le_u64(b, 16);
    let mut at = 24usize;
    let mut entries = HashMap::new();
    for _ in 0..count {
        let n = le_u32(body.get(at..at + 4)?, 0) as usize;
        at += 4;
        let raw = body.get(at..at + n)?;
        at += n;
        let f = body.get(at..at + ENTRY_FIXED)?;
        at += ENTRY_FIXED;
        let v = |i: usize| le_u64(f, i * 8);
        let id = ArtifactId::from_bytes(f[48..80].try_into().ok()?);
        entries.insert(
            Box::<[u8]>::from(raw),
            Entry {
                stamp: FileStamp {
                    size: v(0),
                    mtime_ns: v(1) as i64,
                    ctime_ns: v(2) as i64,
                    ino: v(3),
                    dev: v(4),
                },
                recorded_ns: v(5) as i64,
                id,
            },
        );
    }
    (at == body.len()).then_some(FilesCache { entries })
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
        let d = decode(&b).unwrap();
        assert_eq!(d.entries, c.entries);
        for at in [0, 9, 30, b.len() - 1] {
            let mut x = b.clone();
            x[at] ^= 1;
            assert!(decode(&x).is_none(), "flip at {at} accepted");
        }
        assert!(decode(&b[..b.len() - 5]).is_none());
    }

    #[test]
    fn only_settled_unchanged_entries_are_trusted() {
        let mut c = FilesCache::default();
        let t = 100 * RACY_NS;
        c.record("/old".into(), stamp(t - 5 * RACY_NS), ArtifactId::of(b"o"), t);
        c.record("/racy".into(), stamp(t - RACY_NS / 2), ArtifactId::of(b"r"), t);
        assert_eq!(
            c.lookup(Path::new("/old"), &stamp(t - 5 * RACY_NS)),
            Some(ArtifactId::of(b"o"))
        );
        assert_eq!(c.lookup(Path::new("/racy"), &stamp(t - RACY_NS / 2)), None);
        let mut changed = stamp(t - 5 * RACY_NS);
        changed.ctime_ns += 1;
        assert_eq!(c.lookup(Path::new("/old"), &changed), None);
        assert_eq!(c.lookup(Path::new("/other"), &stamp(1)), None);
    }
}
