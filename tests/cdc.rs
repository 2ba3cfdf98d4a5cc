//! Large artifacts in content-defined chunks: shapes round-trip, versions
//! share chunks, ranges are verified across chunk boundaries, damage is named
//! by chunk, and the chunk sweep keeps exactly what retained manifests name.

mod common;

use std::fs;

use asl::{ArtifactId, GcOptions, StoreOptions};
use common::noise;

fn store(d: &std::path::Path) -> asl::Store {
    StoreOptions::new().create(true).chunk_size(64 << 10).open(d).unwrap()
}

/// Stores `data` alone in a new store whose blocks are raw (so tests can
/// find and alter them), commits and closes it; returns its id.
fn put_raw(d: &std::path::Path, data: &[u8]) -> ArtifactId {
    let s = StoreOptions::new()
        .create(true)
        .compression(None)
        .chunk_size(64 << 10)
        .open(d)
        .unwrap();
    let id = s.put(data).unwrap();
    s.commit().unwrap();
    id
}

/// Offset and header of every block of `kind` in a segment file's bytes.
fn blocks_of(seg: &[u8], kind: asl::codec::BlockKind) -> Vec<(usize, asl::codec::BlockHeader)> {
    let mut out = Vec::new();
    let mut off = 32;
    while off + asl::codec::BLOCK_HEADER_LEN <= seg.len() {
        let Ok(h) = asl::codec::BlockHeader::decode(&seg[off..]) else {
            break;
        };
        if h.kind == kind {
            out.push((off, h));
        }
        off += h.total_len() as usize;
    }
    out
}

/// `base` with `n` edits at spread places: insertions, deletions, overwrites.
fn edited(base: &[u8], seed: u64, n: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for i in 0..n {
        let at = (seed as usize * 7919 + i * 1_000_003) % v.len();
        match i % 3 {
            0 => {
                v.splice(at..at, noise(seed + i as u64, 100));
            }
            1 => {
                let end = (at + 50).min(v.len());
                v.drain(at..end);
            }
            _ => {
                let end = (at + 64).min(v.len());
                v[at..end].fill(0xAB);
            }
        }
    }
    v
}

#[test]
fn every_shape_round_trips_with_its_blake3_id() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let sizes = [
        (128 << 10) + 1,
        200_000,
        256 << 10,
        (256 << 10) + 1,
        1 << 20,
        (1 << 20) + 12345,
        3 << 20,
        (9 << 20) + 7,
    ];
    for (i, n) in sizes.into_iter().enumerate() {
        let data = noise(i as u64 + 1, n);
        let id = s.put(&data).unwrap();
        assert_eq!(id.to_hex(), blake3::hash(&data).to_hex().as_str());
        assert_eq!(s.get(&id).unwrap(), data, "size {n}");
        let mut r = s.open_reader(&id).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out).unwrap();
        assert_eq!(out, data);
    }
    // A repeated pattern: the same chunk many times inside one artifact.
    let block = noise(99, 300_000);
    let rep: Vec<u8> = block.iter().cycle().take(5 << 20).copied().collect();
    let id = s.put(&rep).unwrap();
    s.commit().unwrap();
    drop(s);
    let s = store(d.path());
    assert_eq!(s.get(&id).unwrap(), rep);
    assert!(s.maintenance().verify().unwrap().problems.is_empty());
    // Chunk records are not artifacts.
    assert_eq!(s.list().unwrap().len(), sizes.len() + 1);
}

#[test]
fn versions_share_chunks_and_ranges_are_verified_across_them() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let v1 = noise(5, 8 << 20);
    let id1 = s.put(&v1).unwrap();
    s.commit().unwrap();
    let before = s.maintenance().stat().unwrap().physical_bytes;
    let v2 = edited(&v1, 3, 6);
    let id2 = s.put(&v2).unwrap();
    s.commit().unwrap();
    let grew = s.maintenance().stat().unwrap().physical_bytes - before;
    // Six edits touch at most two chunks each (~64 KiB average, 256 KiB max).
    assert!(grew < 2 << 20, "a lightly edited 8 MiB version added {grew} bytes");
    assert_eq!(s.get(&id1).unwrap(), v1);
    assert_eq!(s.get(&id2).unwrap(), v2);
    for (off, len) in [
        (0u64, 10u64),
        (65_535, 3),
        (1 << 20, 1),
        (3_000_000, 500_000),
        (8_388_000, 10_000),
    ] {
        let got = s.read_range(&id2, off, len).unwrap();
        let end = ((off + len) as usize).min(v2.len());
        assert_eq!(got, &v2[off as usize..end], "range {off}+{len}");
    }
}

#[test]
fn a_damaged_chunk_is_named_and_no_wrong_byte_leaves() {
    let d = tempfile::tempdir().unwrap();
    let data = noise(11, 2 << 20);
    let id = put_raw(d.path(), &data);
    let seg = d.path().join("segments").join("00000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    // Flip a byte in the middle of the artifact's bytes and fix nothing else:
    // the block's CRC catches it, the chunk is named.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&seg, &bytes).unwrap();
    let s = store(d.path());
    let err = s.get(&id).unwrap_err().to_string();
    assert!(err.contains("chunk "), "{err}");
    // Bytes before the damaged chunk's grid piece still read.
    assert_eq!(s.read_range(&id, 0, 1000).unwrap(), &data[..1000]);
    let rep = s.maintenance().verify().unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.artifact.as_deref() == Some(&id.to_hex()) && p.detail.contains("chunk ")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn two_stores_cut_the_same_bytes_the_same_way() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let data = noise(21, 3 << 20);
    let sa = store(a.path());
    // Another store with other settings: the cuts are part of the format.
    let sb = StoreOptions::new()
        .create(true)
        .compression(None)
        .chunk_size(1 << 20)
        .open(b.path())
        .unwrap();
    let ia = sa.put(&data).unwrap();
    let ib = sb.put(&data).unwrap();
    assert_eq!(ia, ib);
    sa.commit().unwrap();
    sb.commit().unwrap();
    let keys = |d: &std::path::Path| -> Vec<String> {
        let seg = fs::read(d.join("segments").join("00000001.seg")).unwrap();
        blocks_of(&seg, asl::codec::BlockKind::CdcChunk)
            .iter()
            .map(|(off, h)| hex(&h.decode_body(&seg[off + 32..off + h.total_len() as usize]).unwrap()[..32]))
            .collect()
    };
    let (ka, kb) = (keys(a.path()), keys(b.path()));
    assert!(ka.len() > 10);
    assert_eq!(ka, kb);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_sweep_drops_chunks_no_retained_manifest_names() {
    let d = tempfile::tempdir().unwrap();
    let s = StoreOptions::new()
        .create(true)
        .chunk_size(64 << 10)
        .segment_target(4 << 20)
        .open(d.path())
        .unwrap();
    let base = noise(31, 6 << 20);
    let versions: Vec<Vec<u8>> = (0..4).map(|i| edited(&base, 40 + i, 20)).collect();
    let ids: Vec<ArtifactId> = versions.iter().map(|v| s.put(v).unwrap()).collect();
    s.commit().unwrap();
    s.snapshots().create("keep1").unwrap();
    // Remove all but version 1 (held by the snapshot too) and version 3.
    for i in [0usize, 1, 2] {
        assert!(s.remove(&ids[i]).unwrap());
    }
    s.pins().add("p", &ids[2]).unwrap();
    s.commit().unwrap();
    let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    // Everything retained reads, through CURRENT, the snapshot and the pin.
    assert_eq!(s.get(&ids[3]).unwrap(), versions[3]);
    assert_eq!(s.at("keep1").unwrap().get(&ids[1]).unwrap(), versions[1]);
    assert_eq!(s.pins().open("p").unwrap().read_all().unwrap(), versions[2]);
    assert!(s.maintenance().verify().unwrap().problems.is_empty());
    // Drop the snapshot and the pin: only version 3 is left; GC must shrink
    // the store to about one version.
    s.snapshots().delete("keep1").unwrap();
    s.pins().remove("p").unwrap();
    s.maintenance().gc(&GcOptions::default()).unwrap();
    let after = s.maintenance().stat().unwrap();
    assert_eq!(s.get(&ids[3]).unwrap(), versions[3]);
    assert!(
        after.physical_bytes < 8 << 20,
        "one 6 MiB version kept in {} bytes",
        after.physical_bytes
    );
    drop(s);
    let s = store(d.path());
    assert_eq!(s.get(&ids[3]).unwrap(), versions[3]);
    assert!(s.maintenance().verify().unwrap().problems.is_empty());
    for id in &ids[..3] {
        assert!(s.get(id).is_err());
    }
}

/// A manifest whose chunk list names real chunks in the wrong order (its
/// CRC recomputed, so only the chunk tree can tell): every chunk proves its
/// own key, but the grid piece they assemble does not match its chaining
/// value, so the read stops there; bytes before it are returned, right.
#[test]
fn a_reordered_chunk_list_is_stopped_by_the_chunk_tree() {
    use asl::codec::{BlockKind, Manifest, BLOCK_HEADER_LEN};
    let d = tempfile::tempdir().unwrap();
    let data = noise(77, 3 << 20);
    let id = put_raw(d.path(), &data);
    let seg = d.path().join("segments").join("00000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let (off, h) = *blocks_of(&bytes, BlockKind::Manifest).last().expect("a manifest block");
    let body = &bytes[off + BLOCK_HEADER_LEN..off + h.total_len() as usize];
    let mut m = Manifest::decode(body).unwrap();
    // Swapping two chunks keeps the lengths' sum, which the manifest checks.
    let (i, j) = (m.chunks.len() / 2, m.chunks.len() / 2 + 1);
    m.chunks.swap(i, j);
    let new = m.encode();
    let mut hdr = h;
    hdr.body_crc = crc32c::crc32c(&new);
    bytes[off..off + BLOCK_HEADER_LEN].copy_from_slice(&hdr.encode());
    bytes[off + BLOCK_HEADER_LEN..off + h.total_len() as usize].copy_from_slice(&new);
    fs::write(&seg, &bytes).unwrap();
    let s = store(d.path());
    let err = match s.get(&id) {
        Ok(_) => panic!("a reordered artifact was read whole"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("chunk tree"), "{err}");
    // Up to the grid piece holding the first swapped chunk, all is right.
    let starts: Vec<u64> = m.starts();
    let good = starts[i] / (64 << 10) * (64 << 10);
    if good > 0 {
        assert_eq!(s.read_range(&id, 0, good).unwrap(), &data[..good as usize]);
    }
    let mut r = s.open_reader(&id).unwrap();
    let mut out = Vec::new();
    assert!(std::io::Read::read_to_end(&mut r, &mut out).is_err());
    assert_eq!(out, &data[..out.len()]);
}

/// Repair rebuilds chunk records and manifests from the segments alone: with
/// index, log and checkpoint gone, every version reads again; a chunk whose
/// block is damaged is reported with the artifacts that need it.
#[test]
fn repair_rebuilds_chunk_records_and_manifests() {
    let d = tempfile::tempdir().unwrap();
    let s = StoreOptions::new()
        .create(true)
        .compression(None)
        .chunk_size(64 << 10)
        .segment_target(2 << 20)
        .open(d.path())
        .unwrap();
    let base = noise(61, 3 << 20);
    let versions: Vec<Vec<u8>> = (0..3).map(|i| edited(&base, 70 + i, 4)).collect();
    let ids: Vec<ArtifactId> = versions.iter().map(|v| s.put(v).unwrap()).collect();
    s.commit().unwrap();
    s.close().unwrap();
    for dir in ["index", "log"] {
        fs::remove_dir_all(d.path().join(dir)).unwrap();
    }
    fs::remove_file(d.path().join("CHECKPOINT")).unwrap();
    let rep = asl::Store::repair(d.path()).unwrap();
    assert!(rep.lost.is_empty(), "{rep:?}");
    assert_eq!(rep.artifacts, 3);
    let s = store(d.path());
    for (id, v) in ids.iter().zip(&versions) {
        assert_eq!(&s.get(id).unwrap(), v);
    }
    assert_eq!(s.list().unwrap().len(), 3);
    assert!(s.maintenance().verify().unwrap().is_clean());
    s.close().unwrap();
    // Damage a chunk block's body in the first segment: repair reports the
    // artifacts whose manifests name it; the others still read.
    let seg = d.path().join("segments").join("00000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[40_000] ^= 0xFF;
    fs::write(&seg, &bytes).unwrap();
    let rep = asl::Store::repair(d.path()).unwrap();
    assert!(
        rep.lost.iter().any(|l| l.contains("chunks unreadable")),
        "{:?}",
        rep.lost
    );
    let s = store(d.path());
    let readable = ids.iter().filter(|id| s.get(id).is_ok()).count();
    assert!(readable < 3);
    assert!(!s.maintenance().verify().unwrap().is_clean());
}

/// A chunk whose bytes were changed with its block CRC made to match (a
/// misdirected or forged write): the grid piece's chaining value catches it,
/// and the error names the chunk whose bytes no longer hash to its key.
#[test]
fn a_chunk_with_a_matching_crc_but_wrong_bytes_is_named() {
    use asl::codec::{BlockKind, BLOCK_HEADER_LEN};
    let d = tempfile::tempdir().unwrap();
    let data = noise(88, 2 << 20);
    let id = put_raw(d.path(), &data);
    let seg = d.path().join("segments").join("00000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let chunks = blocks_of(&bytes, BlockKind::CdcChunk);
    let (off, mut h) = chunks[chunks.len() / 2];
    let body = off + BLOCK_HEADER_LEN;
    let key = hex(&bytes[body..body + 32]);
    bytes[body + 100] ^= 0x01;
    h.body_crc = crc32c::crc32c(&bytes[body..body + h.stored_len as usize]);
    bytes[off..body].copy_from_slice(&h.encode());
    fs::write(&seg, &bytes).unwrap();
    let s = store(d.path());
    let err = match s.get(&id) {
        Ok(_) => panic!("a forged chunk was read"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&key) && err.contains("does not hash to its key"), "{err}");
}
