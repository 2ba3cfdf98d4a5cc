//! The seal of the query index: a list of every file under `derived/query/`
//! with its length and BLAKE3, written after the index is written and
//! checked before the index is opened.
//!
//! fjall neither checksums everything it reads nor fails cleanly on
//! damage: a flipped bit in a partition's `config` panics inside its open
//! and then again in a destructor (an abort no caller can catch), and one
//! in a segment can drop rows without any error (a query that answers
//! less, with success). Derived data must never abort a command and never
//! answer wrongly, so the index is never handed to fjall unless every byte
//! of it is what this program last wrote: a seal that is missing, does not
//! decode, or disagrees with one file means the directory is deleted
//! unopened and rebuilt from the records.
//!
//! The seal is removed before the index is written and written again once
//! the write is durable, so a process that dies in between also leaves an
//! unsealed index, rebuilt on next use. A file fjall's background threads
//! change after the seal was written (a flush or compaction) costs the
//! same rebuild, never a wrong answer.
//!
//! Format (little-endian; spec/records.md "Query index seal"):
//! `"ASLQSEAL"`, version u32 = 1, count u32, then per file: path length
//! u16, the path relative to the index directory (`/`-separated), length
//! u64, BLAKE3-256 of the contents; then the BLAKE3-256 of every byte
//! before it.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::time::now_ns;
use asl_core::codec::{le_u32, le_u64};

const MAGIC: [u8; 8] = *b"ASLQSEAL";
const VERSION: u32 = 1;

/// One sealed file: its length and hash, and the metadata it had when this
/// process hashed or checked it, with the time it did (so a file unchanged
/// since is not hashed again when the seal is renewed).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sealed {
    len: u64,
    hash: [u8; 32],
    seen: Option<(Stamp, i64)>,
}

/// Inode, modification time (s, ns).
type Stamp = (u64, i64, i64);

/// How recent a modification may be for a hash taken after it to be
/// trusted without hashing again: a write in the same timestamp tick as
/// the hash would leave the metadata as it was (git's "racily clean").
const RACY_NS: i64 = 1_000_000_000;

/// The files of one index directory as sealed or checked.
#[derive(Clone, Debug, Default)]
pub(super) struct Seal {
    files: BTreeMap<String, Sealed>,
}

/// Where the seal of the index in `dir` lives: beside it.
pub(super) fn path_of(dir: &Path) -> PathBuf {
    dir.with_file_name("query.seal")
}

/// Every regular file below `dir`, by path relative to it.
fn walk(dir: &Path) -> std::io::Result<BTreeMap<String, std::fs::Metadata>> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, std::fs::Metadata>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let md = e.metadata()?;
            let p = e.path();
            if md.is_dir() {
                go(root, &p, out)?;
            } else {
                let rel = p.strip_prefix(root).map_err(std::io::Error::other)?;
                out.insert(rel.to_string_lossy().into_owned(), md);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out)?;
    Ok(out)
}

fn stamp(md: &std::fs::Metadata) -> Stamp {
    (md.ino(), md.mtime(), md.mtime_nsec())
}

fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, *h.finalize().as_bytes()))
}

impl Seal {
    /// Reads the seal of the index in `dir` and checks every file against
    /// it: `Ok(seal)` when all of them (and no others) are as sealed,
    /// otherwise why not, in a few words.
    pub(super) fn check(dir: &Path) -> Result<Seal, String> {
        let bytes = match std::fs::read(path_of(dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("not sealed: written by an older version, or its writer stopped part-way".into())
            }
            Err(e) => return Err(format!("read its seal: {e}")),
        };
        let mut seal = decode(&bytes).ok_or("its seal is damaged")?;
        let found = walk(dir).map_err(|e| format!("list it: {e}"))?;
        if let Some(extra) = found.keys().find(|k| !seal.files.contains_key(*k)) {
            return Err(format!("{extra} is not in its seal"));
        }
        if let Some(name) = seal.files.keys().find(|k| !found.contains_key(*k)) {
            return Err(format!("{name} is missing"));
        }
        // Every byte is read on each open: the files on all cores.
        use rayon::prelude::*;
        let at = now_ns();
        seal.files.par_iter_mut().try_for_each(|(name, s)| {
            let (len, hash) = hash_file(&dir.join(name)).map_err(|e| format!("read {name}: {e}"))?;
            if (len, hash) != (s.len, s.hash) {
                return Err(format!("{name} differs from its seal"));
            }
            s.seen = Some((stamp(&found[name]), at));
            Ok(())
        })?;
        Ok(seal)
    }

    /// Removes the seal of the index in `dir` (durably: before the index
    /// is written, so a write cut short leaves it unsealed).
    pub(super) fn break_seal(dir: &Path) -> std::io::Result<()> {
        let p = path_of(dir);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        match p.parent() {
            Some(parent) => std::fs::File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    }

    /// Seals the index in `dir` as it is now, hashing only the files not
    /// seen unchanged since this seal last hashed or checked them; keeps
    /// what it hashed for the next renewal.
    pub(super) fn renew(&mut self, dir: &Path) -> std::io::Result<()> {
        // fjall's workers may retire a file (a journal, a compacted segment)
        // while the index is walked: walk it again. The seal written after
        // the last write, once the workers have stopped, is the one an open
        // relies on; one written while they run only has to be true when
        // written.
        let mut tries = 0;
        loop {
            match self.try_renew(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 8 => tries += 1,
                r => return r,
            }
        }
    }

    fn try_renew(&mut self, dir: &Path) -> std::io::Result<()> {
        let found = walk(dir)?;
        let mut files = BTreeMap::new();
        for (name, md) in &found {
            let now = stamp(md);
            let modified = now.1.saturating_mul(1_000_000_000).saturating_add(now.2);
            let s = match self.files.get(name) {
                Some(s) if s.len == md.len() && s.seen.is_some_and(|(st, at)| st == now && modified < at - RACY_NS) => {
                    s.clone()
                }
                _ => {
                    let at = now_ns();
                    let (len, hash) = hash_file(&dir.join(name))?;
                    Sealed {
                        len,
                        hash,
                        seen: Some((now, at)),
                    }
                }
            };
            files.insert(name.clone(), s);
        }
        self.files = files;
        // Beside the index, as fjall writes it: through std, not the
        // store's I/O backend (derived data, rebuilt when in doubt).
        let p = path_of(dir);
        let tmp = p.with_extension("seal-tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &self.encode())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &p)?;
        match p.parent() {
            Some(parent) => std::fs::File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (name, s) in &self.files {
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&s.len.to_le_bytes());
            b.extend_from_slice(&s.hash);
        }
        let sum = *blake3::hash(&b).as_bytes();
        b.extend_from_slice(&sum);
        b
    }
}

fn decode(b: &[u8]) -> Option<Seal> {
    if b.len() < 16 + 32 || b[..8] != MAGIC || le_u32(b, 8) != VERSION {
        return None;
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let count = le_u32(body, 12) as usize;
    let mut at = 16;
    let mut files = BTreeMap::new();
    for _ in 0..count {
        let n = u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2;
        let name = std::str::from_utf8(body.get(at..at + n)?).ok()?.to_string();
        at += n;
        let fixed = body.get(at..at + 40)?;
        let len = le_u64(fixed, 0);
        let hash: [u8; 32] = fixed[8..40].try_into().ok()?;
        at += 40;
        files.insert(name, Sealed { len, hash, seen: None });
    }
    (at == body.len()).then_some(Seal { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_checks_every_byte_and_every_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("query");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), b"alpha").unwrap();
        std::fs::write(dir.join("sub/b"), vec![7u8; 3000]).unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("not sealed"));
        let mut s = Seal::default();
        s.renew(&dir).unwrap();
        let mut s = Seal::check(&dir).unwrap();
        // A flipped bit anywhere, a file more or less: refused.
        let mut b = std::fs::read(dir.join("sub/b")).unwrap();
        b[1234] ^= 8;
        std::fs::write(dir.join("sub/b"), &b).unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("sub/b differs"));
        s.renew(&dir).unwrap();
        Seal::check(&dir).unwrap();
        std::fs::write(dir.join("c"), b"").unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("c is not in its seal"));
        std::fs::remove_file(dir.join("c")).unwrap();
        std::fs::remove_file(dir.join("a")).unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("a is missing"));
        // The seal itself damaged or removed.
        s.renew(&dir).unwrap();
        let mut seal = std::fs::read(path_of(&dir)).unwrap();
        seal[20] ^= 1;
        std::fs::write(path_of(&dir), &seal).unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("seal is damaged"));
        Seal::break_seal(&dir).unwrap();
        assert!(Seal::check(&dir).unwrap_err().contains("not sealed"));
    }
}
