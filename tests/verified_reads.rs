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

#[test]
fn a_misdirected_chunk_is_stopped_before_it_is_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let s = StoreOptions::new()
        .create(true)
        .compression(None)
        .chunk_size(CHUNK)
        .open(&d)
        .unwrap();
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
