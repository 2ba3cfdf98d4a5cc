//! The verified chunk tree of a large artifact.
//!
//! An artifact's id is the BLAKE3 of its bytes, and BLAKE3 is itself a binary
//! tree over 1 KiB chunks. When a store chunk holds a power-of-two number of
//! those chunks and starts at a multiple of its own size, it is one complete
//! subtree of that tree, with a *chaining value* (CV) of its own. The trailer
//! keeps every store chunk's CV; merging them the way BLAKE3 builds its tree
//! gives the root, which must equal the id. So a reader checks the CV list
//! against the id once, then each chunk against its CV before emitting a byte
//! of it: no byte leaves that the id does not prove, without reading the rest
//! of the artifact first (the idea of Bao and BLAKE3's verified streaming, at
//! the store's chunk granularity).
//!
//! This uses the `blake3::hazmat` API; the unit tests check every shape
//! against `blake3::hash` of the whole input.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

/// Smallest chunk size the tree allows: BLAKE3's own chunk length.
pub const MIN_CHUNK: usize = blake3::CHUNK_LEN;

/// Whether `size` can be a tree chunk size: a power of two of at least 1 KiB.
pub fn valid_chunk_size(size: u64) -> bool {
    size >= MIN_CHUNK as u64 && size.is_power_of_two()
}

/// The chaining value of chunk `index` (of `chunk_size` bytes each; the data
/// may be shorter for the last chunk). Hashed on the calling thread.
pub fn chunk_cv(data: &[u8], index: u64, chunk_size: usize) -> ChainingValue {
    debug_assert!(valid_chunk_size(chunk_size as u64) && data.len() <= chunk_size);
    blake3::Hasher::new()
        .set_input_offset(index * chunk_size as u64)
        .update(data)
        .finalize_non_root()
}

/// The chaining value of chunk 0 together with the root hash the same bytes
/// have as a whole artifact, in one pass: the two differ only in the flag on
/// the top node, so the halves are hashed once and merged both ways. (An
/// artifact that turns out to have one chunk needs the root; one with more
/// needs the chaining value; which one is known only at the end.)
pub fn first_chunk(data: &[u8]) -> (ChainingValue, blake3::Hash) {
    debug_assert!(!data.is_empty(), "a chunk holds at least one byte");
    if data.len() <= MIN_CHUNK {
        let cv = blake3::Hasher::new().update(data).finalize_non_root();
        return (cv, blake3::hash(data));
    }
    let l = blake3::hazmat::left_subtree_len(data.len() as u64) as usize;
    let left = blake3::Hasher::new().update(&data[..l]).finalize_non_root();
    let right = blake3::Hasher::new()
        .set_input_offset(l as u64)
        .update(&data[l..])
        .finalize_non_root();
    (
        merge_subtrees_non_root(&left, &right, Mode::Hash),
        merge_subtrees_root(&left, &right, Mode::Hash),
    )
}

/// The root hash of an artifact of two or more chunks, from their CVs.
/// (A one-chunk artifact has no interior tree: its bytes hash to the id.)
pub fn root(cvs: &[ChainingValue]) -> Option<blake3::Hash> {
    if cvs.len() < 2 {
        return None;
    }
    let l = left_len(cvs.len());
    Some(merge_subtrees_root(
        &subtree(&cvs[..l]),
        &subtree(&cvs[l..]),
        Mode::Hash,
    ))
}

/// BLAKE3's left subtree holds the largest power of two of chunks that is
/// less than the whole; since store chunks are equal powers of two of BLAKE3
/// chunks (the last possibly short), the same rule holds in store chunks.
fn left_len(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let l = left_len(cvs.len());
    merge_subtrees_non_root(&subtree(&cvs[..l]), &subtree(&cvs[l..]), Mode::Hash)
}

/// Checks one chunk's bytes: against its CV when the artifact has several
/// chunks, against the id itself when it has one.
pub fn chunk_matches(data: &[u8], index: u64, chunk_size: usize, cvs: &[ChainingValue], id: &[u8; 32]) -> bool {
    if cvs.len() == 1 {
        return blake3::hash(data).as_bytes() == id;
    }
    cvs.get(index as usize) == Some(&chunk_cv(data, index, chunk_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 1000) as u8).collect()
    }

    #[test]
    fn root_of_chunk_cvs_is_the_blake3_of_the_whole() {
        for cs in [1024usize, 4096, 65536] {
            for chunks in [2usize, 3, 4, 5, 7, 8, 9, 16, 17, 33] {
                for tail in [1usize, cs / 2, cs - 1, cs] {
                    let len = (chunks - 1) * cs + tail;
                    let d = data(len);
                    let cvs: Vec<_> = d
                        .chunks(cs)
                        .enumerate()
                        .map(|(i, c)| chunk_cv(c, i as u64, cs))
                        .collect();
                    assert_eq!(cvs.len(), chunks);
                    assert_eq!(
                        root(&cvs),
                        Some(blake3::hash(&d)),
                        "cs {cs} chunks {chunks} tail {tail}"
                    );
                    let id = *blake3::hash(&d).as_bytes();
                    for (i, c) in d.chunks(cs).enumerate() {
                        assert!(chunk_matches(c, i as u64, cs, &cvs, &id));
                    }
                    // A chunk in another's place, or one flipped bit, fails.
                    let first = &d[..cs];
                    assert!(!chunk_matches(first, 1, cs, &cvs, &id));
                    let mut bad = first.to_vec();
                    bad[cs / 3] ^= 1;
                    assert!(!chunk_matches(&bad, 0, cs, &cvs, &id));
                }
            }
        }
    }

    #[test]
    fn first_chunk_gives_its_cv_and_its_root_in_one_pass() {
        for len in [1usize, 1023, 1024, 1025, 4096, 5000, 65536, 70_000] {
            let d = data(len);
            let (cv, root) = first_chunk(&d);
            assert_eq!(root, blake3::hash(&d), "root at {len}");
            let size = (len.max(1)).next_power_of_two().max(MIN_CHUNK);
            assert_eq!(cv, chunk_cv(&d, 0, size), "cv at {len}");
        }
    }

    #[test]
    fn one_chunk_is_checked_against_the_id() {
        let d = data(3000);
        let cvs = [chunk_cv(&d, 0, 4096)];
        let id = *blake3::hash(&d).as_bytes();
        assert!(root(&cvs).is_none());
        assert!(chunk_matches(&d, 0, 4096, &cvs, &id));
        assert!(!chunk_matches(&d[1..], 0, 4096, &cvs, &id));
    }
}
