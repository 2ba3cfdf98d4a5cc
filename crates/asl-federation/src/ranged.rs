//! Large artifacts across domains: fetched chunk by chunk, each chunk
//! verified against the artifact's id as it arrives, and resumed after an
//! interruption without sending again what was verified.
//!
//! The id is the BLAKE3 of the bytes, a binary tree over chunks; the chain
//! values of [`TRANSFER_CHUNK`]-byte chunks (the *tree*, 32 bytes per MiB)
//! merge into the id, so once a receiver has checked the tree against the id
//! it can check every chunk on its own (`block::tree`, the idea of Bao). The
//! sender serves the tree (`GET /v1/artifacts/{id}/tree`, or computed from
//! a directory peer), then the bytes from any offset.
//!
//! Verified chunks go to a staging file, `fetch/<id>.part` in the store
//! directory (format in `spec/federation.md`): a header with the tree, then
//! the bytes from offset 0. A fetch that is cut off leaves it; the next one
//! (from the same remote or another of the domain) checks the tree against
//! the id and every staged chunk against the tree again, keeps the verified
//! prefix and asks only for the rest. When the last chunk is in, the file is
//! put into the store with a put that must hash to the id, committed, and
//! removed. This costs one more write of a large artifact's bytes, which is
//! what resuming across a process's death needs: the store's open segment
//! keeps nothing uncommitted across a crash.

use std::io::Read;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::error::{FederationError as Error, Result};
use asl_core::chunk_tree as tree;
use asl_core::io::{read_full, OpenMode, StoreFile};
use asl_core::{ArtifactId, PutOptions, Store};

/// Bytes per transfer chunk: a power of two, fixed so that any two stores
/// cut the same artifact the same way (and equal to the store's default
/// chunk, whose tree a sender then has already).
pub const TRANSFER_CHUNK: usize = 1 << 20;

/// Artifacts from this size on are fetched chunk-verified and resumably.
pub const RANGED_MIN: u64 = 8 << 20;

const PART_MAGIC: &[u8; 8] = b"ASLPART\0";
const PART_VERSION: u32 = 1;
/// magic, version, chunk size, length, id, chunk count, CRC32C.
const PART_HEADER: usize = 8 + 4 + 4 + 8 + 32 + 4 + 4;
/// fsync the staged bytes every so many chunks (what a power cut may cost).
const SYNC_EVERY: u64 = 16;

/// The tree of artifact `id` in this store: its [`TRANSFER_CHUNK`] chunks'
/// chaining values, read from the stored chunk tree when it has that chunk
/// size, else computed from the verified bytes on all cores.
pub fn tree_of(store: &Store, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
    let mut reader = store.open_reader(id)?;
    if let Some(cvs) = reader.chunk_tree(TRANSFER_CHUNK) {
        return Ok(cvs);
    }
    let len = reader.len();
    let n = len.div_ceil(TRANSFER_CHUNK as u64).max(1);
    let mut cvs = Vec::with_capacity(n as usize);
    // A few chunks at a time, hashed in parallel: bounded memory.
    let batch = 16usize;
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut idx = 0u64;
    while idx < n {
        bufs.clear();
        for _ in 0..batch {
            if idx + bufs.len() as u64 >= n {
                break;
            }
            let take = (len - (idx + bufs.len() as u64) * TRANSFER_CHUNK as u64).min(TRANSFER_CHUNK as u64);
            let mut b = vec![0u8; take as usize];
            reader.read_exact(&mut b).map_err(asl_core::Error::from_reader_io)?;
            bufs.push(b);
        }
        let base = idx;
        let got: Vec<[u8; 32]> = bufs
            .par_iter()
            .enumerate()
            .map(|(i, b)| tree::chunk_cv(b, base + i as u64, TRANSFER_CHUNK))
            .collect();
        idx += got.len() as u64;
        cvs.extend(got);
    }
    Ok(cvs)
}

/// Checks a tree a remote sent for an artifact of `len` bytes: the right
/// number of chaining values, merging into the id.
pub fn check_tree(id: &ArtifactId, len: u64, cvs: &[[u8; 32]]) -> std::result::Result<(), String> {
    let want = len.div_ceil(TRANSFER_CHUNK as u64);
    if cvs.len() as u64 != want || want < 2 {
        return Err(format!("a tree of {} chunks for {len} bytes (want {want})", cvs.len()));
    }
    match tree::root(cvs) {
        Some(r) if r.as_bytes() == id.as_bytes() => Ok(()),
        _ => Err("the tree does not merge into the id".into()),
    }
}

/// A large artifact being fetched: its staging file, tree checked, bytes
/// verified up to `verified`.
pub struct Partial {
    id: ArtifactId,
    len: u64,
    cvs: Vec<[u8; 32]>,
    file: Box<dyn StoreFile>,
    path: PathBuf,
    data_at: u64,
    verified: u64,
}

/// Where fetches are staged, as a side file directory of the store (so the
/// staging files go through its I/O backend).
const FETCH_DIR: &str = "fetch";

fn part_name(id: &ArtifactId) -> String {
    format!("{FETCH_DIR}/{id}.part")
}

fn part_path(store: &Store, id: &ArtifactId) -> PathBuf {
    store.path().join(part_name(id))
}

/// Reads a staged artifact's bytes out of its file, from `pos` to `end`.
struct StagedBytes<'a> {
    file: &'a dyn StoreFile,
    pos: u64,
    end: u64,
}

impl Read for StagedBytes<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end - self.pos).min(out.len() as u64) as usize;
        self.file.read_exact_at(&mut out[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn io_err(what: &str, p: &std::path::Path, e: std::io::Error) -> Error {
    asl_core::Error::io(format!("{what} {}", p.display()), e).into()
}

impl Partial {
    /// Starts staging `id` of `len` bytes with tree `cvs` (checked here);
    /// replaces a staging file that did not hold up.
    pub fn create(store: &Store, id: &ArtifactId, len: u64, cvs: Vec<[u8; 32]>) -> Result<Partial> {
        check_tree(id, len, &cvs).map_err(|e| Error::Remote(format!("{id}: {e}")))?;
        let path = part_path(store, id);
        let mut head = Vec::with_capacity(PART_HEADER + 32 * cvs.len());
        head.extend_from_slice(PART_MAGIC);
        head.extend_from_slice(&PART_VERSION.to_le_bytes());
        head.extend_from_slice(&(TRANSFER_CHUNK as u32).to_le_bytes());
        head.extend_from_slice(&len.to_le_bytes());
        head.extend_from_slice(id.as_bytes());
        head.extend_from_slice(&(cvs.len() as u32).to_le_bytes());
        let mut crc = crc32c::crc32c(&head);
        for cv in &cvs {
            crc = crc32c::crc32c_append(crc, cv);
        }
        head.extend_from_slice(&crc.to_le_bytes());
        for cv in &cvs {
            head.extend_from_slice(cv);
        }
        let file = store
            .side_files()
            .open(&part_name(id), OpenMode::CreateTruncate)?
            .expect("a created file is there");
        file.write_all_at(&head, 0)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_err("write", &path, e))?;
        store.side_files().sync_dir(FETCH_DIR)?;
        Ok(Partial {
            id: *id,
            len,
            cvs,
            file,
            path,
            data_at: head.len() as u64,
            verified: 0,
        })
    }

    /// The staging file of `id`, if one holds up: its header and tree
    /// checked against the id, every staged chunk against the tree, cut
    /// back to the verified prefix. A damaged one is removed (`None`).
    pub fn resume(store: &Store, id: &ArtifactId) -> Result<Option<Partial>> {
        let path = part_path(store, id);
        let Some(file) = store.side_files().open(&part_name(id), OpenMode::ReadWrite)? else {
            return Ok(None);
        };
        let parsed = (|| -> Option<(u64, Vec<[u8; 32]>, u64)> {
            let mut head = [0u8; PART_HEADER];
            file.read_exact_at(&mut head, 0).ok()?;
            if &head[..8] != PART_MAGIC
                || u32::from_le_bytes(head[8..12].try_into().ok()?) != PART_VERSION
                || u32::from_le_bytes(head[12..16].try_into().ok()?) as usize != TRANSFER_CHUNK
                || head[24..56] != id.as_bytes()[..]
            {
                return None;
            }
            let len = u64::from_le_bytes(head[16..24].try_into().ok()?);
            let n = u32::from_le_bytes(head[56..60].try_into().ok()?) as usize;
            if n as u64 != len.div_ceil(TRANSFER_CHUNK as u64) {
                return None;
            }
            let mut raw = vec![0u8; 32 * n];
            file.read_exact_at(&mut raw, PART_HEADER as u64).ok()?;
            let cvs: Vec<[u8; 32]> = raw.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect();
            let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..60]), &raw);
            if crc.to_le_bytes() != head[60..64] || check_tree(id, len, &cvs).is_err() {
                return None;
            }
            Some((len, cvs, (PART_HEADER + 32 * n) as u64))
        })();
        let Some((len, cvs, data_at)) = parsed else {
            drop(file);
            store.side_files().remove(&part_name(id))?;
            return Ok(None);
        };
        let mut p = Partial {
            id: *id,
            len,
            cvs,
            file,
            path,
            data_at,
            verified: 0,
        };
        let staged = p
            .file
            .len()
            .map_err(|e| io_err("stat", &p.path, e))?
            .saturating_sub(data_at);
        let mut buf = vec![0u8; TRANSFER_CHUNK];
        while p.verified < staged {
            let want = p.chunk_len(p.verified / TRANSFER_CHUNK as u64);
            if p.verified + want as u64 > staged {
                break;
            }
            p.file
                .read_exact_at(&mut buf[..want], data_at + p.verified)
                .map_err(|e| io_err("read", &p.path, e))?;
            if !p.matches(p.verified / TRANSFER_CHUNK as u64, &buf[..want]) {
                break;
            }
            p.verified += want as u64;
        }
        p.file
            .set_len(data_at + p.verified)
            .map_err(|e| io_err("truncate", &p.path, e))?;
        Ok(Some(p))
    }

    /// Bytes verified so far (where the next read starts).
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// The artifact's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the artifact is empty (never: staged artifacts are large).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn matches(&self, idx: u64, data: &[u8]) -> bool {
        tree::chunk_matches(data, idx, TRANSFER_CHUNK, &self.cvs, self.id.as_bytes())
    }

    /// Reads from `from` (positioned at [`verified`](Self::verified)) up
    /// to byte `end` (a chunk boundary, or the length), verifying each chunk
    /// before it is staged. A chunk that does not match is refused and
    /// nothing of it is kept; what was verified before it stays staged for
    /// the next attempt.
    pub fn fill_until(&mut self, from: &mut dyn Read, end: u64, remote: &str) -> Result<()> {
        let mut buf = vec![0u8; TRANSFER_CHUNK];
        let mut since_sync = 0;
        while self.verified < end.min(self.len) {
            let idx = self.next_index();
            let want = self.chunk_len(idx);
            let got = read_full(from, &mut buf[..want])
                .map_err(|e| asl_core::Error::io(format!("read {} from remote {remote}", self.id), e))?;
            if got < want {
                self.sync()?;
                return Err(Error::Remote(format!(
                    "remote {remote}: the stream of {} ended at byte {} of {}; the verified {} bytes are kept for the next fetch",
                    self.id,
                    self.verified + got as u64,
                    self.len,
                    self.verified
                )));
            }
            if !self.push(&buf[..want])? {
                self.sync()?;
                return Err(Error::Remote(format!(
                    "remote {remote}: chunk {idx} of {} does not match the artifact's tree (refused); the verified {} bytes before it are kept",
                    self.id, self.verified
                )));
            }
            since_sync += 1;
            if since_sync >= SYNC_EVERY {
                self.sync()?;
                since_sync = 0;
            }
        }
        Ok(())
    }

    /// [`fill_until`](Self::fill_until) the end.
    pub fn fill(&mut self, from: &mut dyn Read, remote: &str) -> Result<()> {
        self.fill_until(from, self.len, remote)
    }

    /// The index of the next chunk to stage.
    pub fn next_index(&self) -> u64 {
        self.verified / TRANSFER_CHUNK as u64
    }

    /// Chunk `idx`'s chaining value.
    pub fn cv(&self, idx: u64) -> &[u8; 32] {
        &self.cvs[idx as usize]
    }

    /// Chunk `idx`'s length.
    pub fn chunk_len(&self, idx: u64) -> usize {
        (self.len - idx * TRANSFER_CHUNK as u64).min(TRANSFER_CHUNK as u64) as usize
    }

    /// Stages `data` as the next chunk if it matches the tree (`false`, and
    /// nothing written, if it does not).
    pub fn push(&mut self, data: &[u8]) -> Result<bool> {
        let idx = self.next_index();
        if data.len() != self.chunk_len(idx) || !self.matches(idx, data) {
            return Ok(false);
        }
        self.push_verified(data)?;
        Ok(true)
    }

    /// Stages `data` as the next chunk without hashing it again: for bytes
    /// a verified read of the store proved against this very chaining
    /// value. (The put in [`finish`](Self::finish) hashes everything once
    /// more all the same.)
    pub fn push_verified(&mut self, data: &[u8]) -> Result<()> {
        debug_assert_eq!(data.len(), self.chunk_len(self.next_index()));
        self.file
            .write_all_at(data, self.data_at + self.verified)
            .map_err(|e| io_err("write", &self.path, e))?;
        self.verified += data.len() as u64;
        Ok(())
    }

    /// The tree.
    pub fn cvs(&self) -> &[[u8; 32]] {
        &self.cvs
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| io_err("fsync", &self.path, e))
    }

    /// Puts the staged artifact into the store (the put checks the id once
    /// more), commits, and removes the staging file. Returns its length.
    pub fn finish(self, store: &Store, placed: PutOptions) -> Result<u64> {
        if self.verified != self.len {
            return Err(Error::Invalid(format!(
                "{}: {} of {} bytes staged",
                self.id, self.verified, self.len
            )));
        }
        let bytes = StagedBytes {
            file: &*self.file,
            pos: self.data_at,
            end: self.data_at + self.len,
        };
        let put = store.put_reader_with(bytes, &placed.expect(Some(self.id)))?;
        store.commit()?;
        drop(self.file);
        store.side_files().remove(&part_name(&self.id))?;
        Ok(put.len)
    }
}

/// The 1 MiB chunks of the large artifacts this store holds, by chaining
/// value. A chaining value depends on the chunk's bytes and its position,
/// so a match is the same bytes at the same offset: a new version of an
/// artifact that was appended to or changed in place (a dataset, a disk
/// image, a log) is fetched as only the chunks that differ. Read from the
/// stored chunk trees (no artifact bytes are read); 64 bytes per MiB of
/// large artifacts held.
#[derive(Default)]
pub struct LocalChunks(std::collections::HashMap<[u8; 32], ArtifactId>);

impl LocalChunks {
    /// The index of `store`'s large artifacts stored with 1 MiB chunks.
    pub fn of_store(store: &Store) -> Result<LocalChunks> {
        let mut map = std::collections::HashMap::new();
        for info in store.iter()? {
            let info = info?;
            if info.len < RANGED_MIN {
                continue;
            }
            let Ok(r) = store.open_reader(&info.id) else {
                continue; // damaged: not a source of bytes
            };
            for cv in r.chunk_tree(TRANSFER_CHUNK).unwrap_or_default() {
                map.entry(cv).or_insert(info.id);
            }
        }
        Ok(LocalChunks(map))
    }

    /// An artifact here holding the chunk whose chaining value is `cv`.
    pub fn get(&self, cv: &[u8; 32]) -> Option<&ArtifactId> {
        self.0.get(cv)
    }

    /// Adds the chunks of `id`, just stored (a fetch's later artifacts may
    /// share them).
    pub fn add(&mut self, id: ArtifactId, cvs: &[[u8; 32]]) {
        for cv in cvs {
            self.0.entry(*cv).or_insert(id);
        }
    }
}

/// The artifacts with a staging file.
pub fn staged(store: &Store) -> Vec<ArtifactId> {
    store
        .side_files()
        .list_dir(FETCH_DIR)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.strip_suffix(".part").and_then(|n| n.parse::<ArtifactId>().ok()))
        .collect()
}

/// Removes the staging file of `id`, if there is one.
pub fn discard(store: &Store, id: &ArtifactId) -> Result<()> {
    store.side_files().remove(&part_name(id))?;
    Ok(())
}

/// Removes staging files of artifacts the store now holds (a fetch that
/// died between its commit and the removal).
pub fn sweep(store: &Store) -> Result<()> {
    for id in staged(store) {
        if store.contains(&id)? {
            discard(store, &id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::StoreOptions;
    use std::fs;

    #[test]
    fn staged_chunks_survive_a_cut_and_a_lie_and_only_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let src = StoreOptions::new().create(true).open(dir.path().join("src")).unwrap();
        let dst = StoreOptions::new().create(true).open(dir.path().join("dst")).unwrap();
        let mut bytes = vec![0u8; 9 * TRANSFER_CHUNK + 12345];
        blake3::Hasher::new().update(b"noise").finalize_xof().fill(&mut bytes);
        let id = src.put(&bytes).unwrap();
        src.commit().unwrap();
        let cvs = tree_of(&src, &id).unwrap();
        assert_eq!(cvs.len(), 10);
        // Computed without the stored tree (another chunk size) gives the same.
        let small = StoreOptions::new()
            .create(true)
            .chunk_size(64 << 10)
            .open(dir.path().join("small"))
            .unwrap();
        small.put(&bytes).unwrap();
        small.commit().unwrap();
        assert_eq!(tree_of(&small, &id).unwrap(), cvs);

        // A tree for another artifact, or cut short, is refused.
        let mut bad = cvs.clone();
        bad.swap(0, 1);
        assert!(Partial::create(&dst, &id, bytes.len() as u64, bad).is_err());
        assert!(Partial::create(&dst, &id, bytes.len() as u64, cvs[..9].to_vec()).is_err());

        // Cut after 3.5 chunks: 3 are kept.
        let mut p = Partial::create(&dst, &id, bytes.len() as u64, cvs.clone()).unwrap();
        let cut = 3 * TRANSFER_CHUNK + TRANSFER_CHUNK / 2;
        let e = p.fill(&mut &bytes[..cut], "test").unwrap_err().to_string();
        assert!(e.contains("ended at byte"), "{e}");
        drop(p);
        let mut p = Partial::resume(&dst, &id).unwrap().unwrap();
        assert_eq!(p.verified(), 3 * TRANSFER_CHUNK as u64);
        // A lie in chunk 5: refused there, chunks 3 and 4 kept.
        let mut lie = bytes[3 * TRANSFER_CHUNK..].to_vec();
        lie[2 * TRANSFER_CHUNK + 7] ^= 1;
        let e = p.fill(&mut lie.as_slice(), "liar").unwrap_err().to_string();
        assert!(e.contains("chunk 5"), "{e}");
        drop(p);
        // A staged byte damaged on disk: the chunk holding it is fetched again.
        let path = part_path(&dst, &id);
        let mut raw = fs::read(&path).unwrap();
        let at = raw.len() - 100;
        raw[at] ^= 1;
        fs::write(&path, &raw).unwrap();
        let mut p = Partial::resume(&dst, &id).unwrap().unwrap();
        assert_eq!(p.verified(), 4 * TRANSFER_CHUNK as u64);
        p.fill(&mut &bytes[4 * TRANSFER_CHUNK..], "honest").unwrap();
        assert_eq!(p.finish(&dst, PutOptions::new()).unwrap(), bytes.len() as u64);
        assert_eq!(dst.get(&id).unwrap(), bytes);
        assert!(!path.exists());
        // A damaged header: the file is dropped, not trusted.
        let p = Partial::create(&dst, &id, bytes.len() as u64, cvs).unwrap();
        drop(p);
        let mut raw = fs::read(&path).unwrap();
        raw[70] ^= 1;
        fs::write(&path, &raw).unwrap();
        assert!(Partial::resume(&dst, &id).unwrap().is_none());
        assert!(!path.exists());
    }
}
