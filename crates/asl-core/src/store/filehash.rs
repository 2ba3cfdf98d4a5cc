//! Hashing a file for its id before anything is written: the first pass of
//! a put that may turn out to be a duplicate.
//!
//! A duplicate costs this pass and nothing else, so it should run at least
//! as fast as `b3sum`. `b3sum` maps the file; a store reads it instead (a
//! mapped file that another process truncates kills the reader with SIGBUS,
//! which a library must not do to the program embedding it), and copying
//! out of the page cache costs about as much CPU as hashing. So the file is
//! cut into pieces of the store's grid, each a complete subtree of the
//! BLAKE3 tree (see `block::tree`), and every core reads and hashes pieces
//! of its own with `pread`; the pieces' chaining values merge into the id.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use blake3::hazmat::ChainingValue;

use crate::block::tree;
use crate::error::{Error, IoContext, Result};
use crate::id::ArtifactId;

/// Pieces a worker claims at a time: few enough claims to keep the shared
/// counter quiet, small enough that the workers end close together.
const CLAIM: u64 = 4;

/// The id of the first `len` bytes of `f`, read in pieces of `grid` bytes
/// (a valid tree chunk size) on up to one thread per core. `progress(done)`
/// is called on this thread with the bytes hashed so far. A file that is
/// shorter or longer than `len` by the end is reported as changed.
pub(super) fn hash_file(
    f: &File,
    len: u64,
    grid: usize,
    label: &str,
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<ArtifactId> {
    debug_assert!(tree::valid_chunk_size(grid as u64));
    let pieces = len.div_ceil(grid as u64).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let threads = cores.min(pieces.div_ceil(CLAIM)).max(1);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let work = |buf: &mut Vec<u8>, report: &mut dyn FnMut(u64)| -> Result<Vec<(u64, Piece)>> {
        if buf.len() < grid {
            buf.resize(grid, 0);
        }
        let mut out = Vec::new();
        loop {
            let first = next.fetch_add(CLAIM, Ordering::Relaxed);
            if first >= pieces {
                return Ok(out);
            }
            for i in first..(first + CLAIM).min(pieces) {
                let at = i * grid as u64;
                let n = (len - at).min(grid as u64) as usize;
                f.read_exact_at(&mut buf[..n], at).map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Error::InputChanged(label.to_string()),
                    _ => Error::io(format!("read {label}"), e),
                })?;
                out.push((i, Piece::of(&buf[..n], i, grid)));
                report(done.fetch_add(n as u64, Ordering::Relaxed) + n as u64);
            }
        }
    };
    let mut got = std::thread::scope(|s| -> Result<Vec<(u64, Piece)>> {
        let helpers: Vec<_> = (1..threads)
            .map(|_| s.spawn(|| work(&mut Vec::new(), &mut |_| {})))
            .collect();
        let mut all = work(buf, progress);
        for h in helpers {
            let part = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            // The first error wins; the others' work is dropped with it.
            match (&mut all, part) {
                (Ok(a), Ok(p)) => a.extend(p),
                (Ok(_), Err(e)) => all = Err(e),
                (Err(_), _) => {}
            }
        }
        all
    })?;
    // A file that grew since its length was taken would be stored under the
    // id of its first `len` bytes.
    let mut probe = [0u8; 1];
    if f.read_at(&mut probe, len).ctx(|| format!("read {label}"))? != 0 {
        return Err(Error::InputChanged(label.to_string()));
    }
    got.sort_unstable_by_key(|(i, _)| *i);
    let cvs: Vec<ChainingValue> = got.iter().map(|(_, p)| p.cv).collect();
    let id = match tree::root(&cvs) {
        Some(root) => *root.as_bytes(),
        None => got[0].1.root.expect("piece 0 carries its root"),
    };
    Ok(ArtifactId::from_bytes(id))
}

/// [`hash_file`] that also computes the file's SHA-256 in the same pass.
/// SHA-256 cannot be split into pieces, so the file is read front to back in
/// windows, each hashed by BLAKE3 on all cores while SHA-256 runs over it on
/// another: the pass goes at SHA-256's speed.
pub(super) fn hash_file_sha256(
    f: &File,
    len: u64,
    label: &str,
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(ArtifactId, [u8; 32])> {
    use sha2::Digest;
    const WINDOW: usize = 8 << 20;
    if buf.len() < WINDOW {
        buf.resize(WINDOW, 0);
    }
    let mut b3 = blake3::Hasher::new();
    let mut sha = sha2::Sha256::new();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(WINDOW as u64) as usize;
        f.read_exact_at(&mut buf[..n], at).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::InputChanged(label.to_string()),
            _ => Error::io(format!("read {label}"), e),
        })?;
        let win = &buf[..n];
        rayon::join(|| b3.update_rayon(win), || sha.update(win));
        at += n as u64;
        progress(at);
    }
    let mut probe = [0u8; 1];
    if f.read_at(&mut probe, len).ctx(|| format!("read {label}"))? != 0 {
        return Err(Error::InputChanged(label.to_string()));
    }
    Ok((ArtifactId::from_bytes(*b3.finalize().as_bytes()), sha.finalize().into()))
}

/// What hashing one piece gives: its chaining value, and for piece 0 the
/// root its bytes have on their own (the id when the file is one piece).
struct Piece {
    cv: ChainingValue,
    root: Option<[u8; 32]>,
}

impl Piece {
    fn of(data: &[u8], index: u64, grid: usize) -> Piece {
        if index == 0 {
            let (cv, root) = tree::first_chunk(data);
            Piece {
                cv,
                root: Some(*root.as_bytes()),
            }
        } else {
            Piece {
                cv: tree::chunk_cv(data, index, grid),
                root: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_id_is_b3sum_of_the_file_for_every_shape() {
        let grid = 4096;
        for len in [
            1usize,
            1023,
            1024,
            4095,
            4096,
            4097,
            8192,
            5 * 4096 + 17,
            64 * 4096,
            100_003,
        ] {
            let data = crate::testutil::noise(len as u64, len);
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&data).unwrap();
            let mut seen = 0;
            let id = hash_file(&f, len as u64, grid, "t", &mut Vec::new(), &mut |d| seen = seen.max(d)).unwrap();
            assert_eq!(id.as_bytes(), blake3::hash(&data).as_bytes(), "len {len}");
            assert!(seen <= len as u64);
        }
    }

    #[test]
    fn a_file_that_changed_length_is_reported() {
        let data = crate::testutil::noise(3, 50_000);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        for claimed in [40_000u64, 60_000] {
            let r = hash_file(&f, claimed, 4096, "t", &mut Vec::new(), &mut |_| {});
            assert!(matches!(r, Err(Error::InputChanged(_))), "claimed {claimed}: {r:?}");
        }
    }
}
