//! Only verified bytes leave the store: each chunk of a large artifact is
//! checked against the artifact's chunk tree before any byte of it is returned,
//! so a misdirected write (another artifact's valid chunk block in this one's
//! place) stops a stream at that chunk, not after it has been emitted.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::process::Command;

use asl::codec::{BlockHeader, BlockKind, BLOCK_HEADER_LEN};
use asl::StoreOptions;
use common::noise;

const CHUNK: usize = 64 << 10;

/// (offset, total length) of every chunk block of a segment, in file order.
fn chunk_blocks(seg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 32;
    while off + BLOCK_HEADER_LEN <= seg.len() {
        let Ok(h) = BlockHeader::decode(&seg[off..]) else { break };
        if h.kind == BlockKind::LargeChunk {
            out.push((off, h.total_len() as usize));
        }
        off += h.total_len() as usize;
    }
    out
}

/// A store whose chunks are stored raw in fixed chunk blocks, so tests can
/// move and damage them (content-defined chunks: `tests/cdc.rs`).
fn raw_store(d: &std::path::Path) -> asl::Store {
    StoreOptions::new()
        .create(true)
        .chunk_dedup(false)
        .compression(None)
        .chunk_size(CHUNK)
        .open(d)
        .unwrap()
}

#[test]
fn a_misdirected_chunk_is_stopped_before_it_is_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let s = raw_store(&d);
    let a = noise(1, 5 * CHUNK - 100);
    let b = noise(2, 5 * CHUNK - 100);
    s.put(&a).unwrap();
    let id_b = s.put(&b).unwrap();
    s.close().unwrap();

    // B's chunk 1 replaced by A's chunk 1: a valid block (CRC, kind and chunk
    // number all check), just not B's bytes.
    let seg_path = d.join("segments").join("00000001.seg");
    let mut seg = fs::read(&seg_path).unwrap();
    let chunks = chunk_blocks(&seg);
    assert_eq!(chunks.len(), 10);
    let (from, len) = chunks[1];
    let (to, len_b) = chunks[6];
    assert_eq!(len, len_b);
    let block = seg[from..from + len].to_vec();
    seg[to..to + len].copy_from_slice(&block);
    fs::write(&seg_path, &seg).unwrap();

    let s = StoreOptions::new().read_only(true).open(&d).unwrap();
    let mut r = s.open_reader(&id_b).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let err = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("read B to the end through a foreign chunk"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("chunk 1"), "{err}");
    assert_eq!(got, b[..CHUNK], "bytes past chunk 0 were emitted");
    // A seek straight into the bad chunk fails too; one past it reads fine.
    assert!(r.seek(SeekFrom::Start(CHUNK as u64 + 10)).is_ok());
    assert!(r.read(&mut buf).is_err());
    r.seek(SeekFrom::Start(2 * CHUNK as u64)).unwrap();
    let n = r.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], &b[2 * CHUNK..2 * CHUNK + n]);
    assert!(s.get(&id_b).unwrap_err().is_corruption());
    drop(s);

    // The CLI streams only the verified prefix, then exits 1.
    let o = Command::new(env!("CARGO_BIN_EXE_aslctl"))
        .args(["--store", d.to_str().unwrap(), "cat", &id_b.to_hex()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.len() <= CHUNK, "cat wrote {} bytes", o.stdout.len());
    assert_eq!(o.stdout, b[..o.stdout.len()]);
}

/// Ranges are proven against the id and read only the chunks they cover: with
/// one chunk damaged, every range that stays off it reads, every range that
/// touches it fails; the CLI's `cat --range` agrees.
#[test]
fn ranges_read_only_the_chunks_they_need_and_only_proven_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let s = raw_store(&d);
    let big = noise(5, 5 * CHUNK + 777);
    let small = noise(6, 3000);
    let id = s.put(&big).unwrap();
    let sid = s.put(&small).unwrap();
    s.snapshots().create("snap").unwrap();
    s.close().unwrap();
    let s = StoreOptions::new().read_only(true).open(&d).unwrap();
    let cases = [
        (0, 1),
        (0, CHUNK),
        (CHUNK - 3, 10),
        (2 * CHUNK + 5, 3 * CHUNK),
        (5 * CHUNK + 700, 77),
        (5 * CHUNK + 777, 5),
    ];
    for (off, len) in cases {
        let want = &big[off.min(big.len())..(off + len).min(big.len())];
        assert_eq!(s.read_range(&id, off as u64, len as u64).unwrap(), want, "{off}+{len}");
        assert_eq!(
            s.at("snap").unwrap().read_range(&id, off as u64, len as u64).unwrap(),
            want
        );
    }
    assert_eq!(s.read_range(&sid, 100, 50).unwrap(), small[100..150]);
    assert!(matches!(
        s.read_range(&id, big.len() as u64 + 1, 1),
        Err(asl::Error::InvalidArgument(_))
    ));
    drop(s);

    // Damage the body of chunk 3.
    let seg_path = d.join("segments").join("00000001.seg");
    let mut seg = fs::read(&seg_path).unwrap();
    let (at, _) = chunk_blocks(&seg)[3];
    seg[at + BLOCK_HEADER_LEN + 100] ^= 1;
    fs::write(&seg_path, &seg).unwrap();
    let s = StoreOptions::new().read_only(true).open(&d).unwrap();
    assert_eq!(s.read_range(&id, 0, 3 * CHUNK as u64).unwrap(), big[..3 * CHUNK]);
    assert_eq!(
        s.read_range(&id, 4 * CHUNK as u64, 2 * CHUNK as u64).unwrap(),
        big[4 * CHUNK..]
    );
    assert!(s.read_range(&id, 3 * CHUNK as u64 - 1, 2).unwrap_err().is_corruption());
    assert!(s.get(&id).unwrap_err().is_corruption());
    drop(s);

    let cat = |range: &str| {
        Command::new(env!("CARGO_BIN_EXE_aslctl"))
            .args(["--store", d.to_str().unwrap(), "cat", &id.to_hex(), "--range", range])
            .output()
            .unwrap()
    };
    let o = cat("10-19");
    assert!(o.status.success());
    assert_eq!(o.stdout, big[10..20]);
    let o = cat("-100");
    assert!(o.status.success());
    assert_eq!(o.stdout, big[big.len() - 100..]);
    let o = cat(&format!("{}-{}", 3 * CHUNK, 3 * CHUNK + 9));
    assert_eq!(o.status.code(), Some(1), "a range over the damaged chunk");
    assert!(o.stdout.is_empty());
    let o = cat("9-3");
    assert_eq!(o.status.code(), Some(2));
}

/// `next_piece` hands out a large artifact chunk by chunk, each piece the
/// buffer its chunk was proven in; pieces read twice are kept in the block
/// cache, proven, and served from there; a damaged chunk is never kept.
#[test]
fn pieces_are_proven_chunks_and_those_read_again_are_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let s = raw_store(&d);
    let big = noise(7, 5 * CHUNK + 777);
    let id = s.put(&big).unwrap();
    let other = noise(8, 5 * CHUNK + 777);
    s.put(&other).unwrap();
    s.close().unwrap();

    let pieces = |s: &asl::Store, off: u64, len: u64| {
        let mut r = s.open_reader(&id).unwrap().into_range(off, len).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_piece().unwrap() {
            out.push(p.to_vec());
        }
        out
    };
    let s = StoreOptions::new().read_only(true).open(&d).unwrap();
    let cached = || s.maintenance().memory().block_cache_bytes;
    let whole = pieces(&s, 0, big.len() as u64);
    assert_eq!(
        whole.iter().map(Vec::len).collect::<Vec<_>>(),
        [CHUNK, CHUNK, CHUNK, CHUNK, CHUNK, 777]
    );
    assert_eq!(whole.concat(), big);
    assert_eq!(cached(), 0, "pieces read once are not kept");
    let range = pieces(&s, CHUNK as u64 - 3, 2 * CHUNK as u64);
    assert_eq!(range.iter().map(Vec::len).collect::<Vec<_>>(), [3, CHUNK, CHUNK - 3]);
    assert_eq!(range.concat(), big[CHUNK - 3..3 * CHUNK - 3]);
    // Chunks 0-2 were read twice: kept. A third read is served from them.
    assert_eq!(cached(), 3 * CHUNK as u64);
    assert_eq!(pieces(&s, 0, big.len() as u64).concat(), big);
    assert_eq!(cached(), 5 * CHUNK as u64 + 777);

    // Chunk 3 damaged on disk, and chunk 1 replaced by the other
    // artifact's chunk 1: a valid block (CRC, kind, number), found only by
    // the chunk tree. In place: the open store maps the file.
    let seg_path = d.join("segments").join("00000001.seg");
    let blocks = chunk_blocks(&fs::read(&seg_path).unwrap());
    let (at, _) = blocks[3];
    let mut f = fs::OpenOptions::new().read(true).write(true).open(&seg_path).unwrap();
    let ((mine, len), (theirs, _)) = (blocks[1], blocks[7]);
    let mut foreign = vec![0u8; len];
    f.seek(SeekFrom::Start(theirs as u64)).unwrap();
    f.read_exact(&mut foreign).unwrap();
    f.seek(SeekFrom::Start(mine as u64)).unwrap();
    std::io::Write::write_all(&mut f, &foreign).unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start((at + BLOCK_HEADER_LEN + 100) as u64)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start((at + BLOCK_HEADER_LEN + 100) as u64)).unwrap();
    std::io::Write::write_all(&mut f, &[byte[0] ^ 1]).unwrap();
    drop(f);
    // The open store still serves the bytes it proved before the damage;
    // a store opened now finds it, names the chunk and its CRC, and keeps
    // nothing of it however often it is read.
    assert_eq!(s.get(&id).unwrap(), big);
    // Its verify reads the disk, not the cache: both are found.
    let found = s.maintenance().verify().unwrap().problems;
    assert!(
        found.iter().any(|p| p.detail.contains("chunk 1 ")),
        "the misdirected chunk: {found:?}"
    );
    let fresh = StoreOptions::new().read_only(true).open(&d).unwrap();
    for _ in 0..3 {
        let mut r = fresh
            .open_reader(&id)
            .unwrap()
            .into_range(3 * CHUNK as u64, 10)
            .unwrap();
        let err = r.next_piece().unwrap_err().to_string();
        assert!(err.contains("chunk 3") && err.contains("checksum"), "{err}");
    }
    assert_eq!(fresh.maintenance().memory().block_cache_bytes, 0);
    assert!(!fresh.maintenance().verify().unwrap().problems.is_empty());
}
