//! The on-disk codecs in one place, for tools, golden tests and fuzzing.
//!
//! This is the only public door to the byte layouts: the layers that own them
//! (`block`, `index`, `snapshot`) are private to the crate, so their internals
//! can change without breaking embedders, while a tool that wants to read or
//! write the format (a compatible reader, a fuzzer, the golden tests that
//! check `spec/format.md`) finds every encoder and decoder here.
//!
//! [`fuzz_target`] is the body of every fuzz target under `fuzz/`: the same
//! function replays the committed corpora in the stable test suite, so an input
//! that once crashed a parser stays a regression test without nightly.

pub use crate::block::cdc::{chunk_key, cuts as cdc_cuts, decode_chunk, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use crate::block::format::{
    decode_packed_table, decode_tombstones, BlockHeader, BlockKind, ChunkRef, Compression, LargeTrailer, PackedBuilder,
    BLOCK_HEADER_LEN,
};
pub use crate::block::frames::{decode_framed_table, FramedEntry};
pub use crate::block::manifest::{decode_part, encode_part, Manifest, ManifestChunk, ManifestPart};
pub use crate::block::segment::{SegmentFooter, SegmentHeader};
pub use crate::block::tree::{chunk_cv, root as tree_root};
pub use crate::fsutil::{le_u32, le_u64};
pub use crate::index::entry::{Entry, ENTRY_LEN};
pub use crate::index::file::validate as validate_index;
pub use crate::snapshot::checkpoint::{Checkpoint, SegmentState};
pub use crate::snapshot::log::{encode_header as encode_log_header, parse as parse_log, Record};
pub use crate::store::{decode_follower, decode_store_file, encode_follower, encode_store_file};

/// Names of the fuzz targets, one per on-disk parser of this crate (the
/// facade `asl_core::codec` adds the records layer's `cbor`).
pub const FUZZ_TARGETS: &[&str] = &[
    "block",
    "segment",
    "index",
    "log",
    "checkpoint",
    "entry",
    "manifest",
    "part",
];

/// Bytes before a part's own bytes in a `part` fuzz input: the span (u64)
/// and chunk count (u32) the manifest would say of it.
const PART_INPUT_HEAD: usize = 12;

fn le_u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Runs one fuzz target's parser over `data`. Parsers may reject input, never
/// panic; where they accept it, re-encoding must give the same bytes back.
///
/// Each input is parsed twice: as given, and with its checksums recomputed, so
/// that mutations reach the field checks behind the CRCs instead of stopping
/// at them.
pub fn fuzz_target(name: &str, data: &[u8]) {
    parse_one(name, data);
    if let Some(fixed) = fix_checksums(name, data) {
        parse_one(name, &fixed);
    }
}

fn put_crc(b: &mut [u8], at: usize, crc: u32) {
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The input with the CRCs its format places at fixed positions recomputed.
fn fix_checksums(name: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut b = data.to_vec();
    match name {
        "block" if b.len() >= BLOCK_HEADER_LEN => {
            let body = crc32c::crc32c(&b[BLOCK_HEADER_LEN..]);
            put_crc(&mut b, 20, body);
            let stored = (b.len() - BLOCK_HEADER_LEN) as u32;
            b[8..12].copy_from_slice(&stored.to_le_bytes());
            let h = crc32c::crc32c(&b[..28]);
            put_crc(&mut b, 28, h);
        }
        "index" if b.len() >= 80 => {
            let h = crc32c::crc32c(&b[..60]);
            put_crc(&mut b, 60, h);
            let end = b.len() - 16;
            let body = crc32c::crc32c(&b[64..end]);
            put_crc(&mut b, end, body);
        }
        "checkpoint" if b.len() >= 20 => {
            let body_len = (b.len() - 20) as u32;
            b[12..16].copy_from_slice(&body_len.to_le_bytes());
            let end = b.len() - 4;
            let c = crc32c::crc32c(&b[..end]);
            put_crc(&mut b, end, c);
        }
        "log" if b.len() >= 32 => {
            let c = crc32c::crc32c(&b[16..32]) ^ crc32c::crc32c(&b[..12]);
            put_crc(&mut b, 12, c);
            let mut off = 32;
            while off + 17 <= b.len() {
                let len = u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
                let end = off + 17 + len;
                if end > b.len() {
                    break;
                }
                let c = crc32c::crc32c(&b[off + 8..end]);
                put_crc(&mut b, off + 4, c);
                off = end;
            }
        }
        // The id a grid of two or more pieces must merge to.
        "manifest" if b.len() >= 56 => {
            let n = le_u32_at(&b, 44) as usize;
            if n < 2 || b.len() < 56 + n * 32 {
                return None;
            }
            let cvs: Vec<[u8; 32]> = b[56..56 + n * 32]
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect();
            let root = tree_root(&cvs)?;
            b[..32].copy_from_slice(root.as_bytes());
        }
        // What the manifest would say of the part: its count, and the sum
        // of the lengths it lists.
        "part" if b.len() >= PART_INPUT_HEAD + 16 => {
            let count = le_u32_at(&b, PART_INPUT_HEAD + 12);
            let span: u64 = b[PART_INPUT_HEAD + 16..]
                .chunks_exact(36)
                .map(|c| le_u32_at(c, 32) as u64)
                .sum();
            b[..8].copy_from_slice(&span.to_le_bytes());
            b[8..12].copy_from_slice(&count.to_le_bytes());
        }
        _ => return None,
    }
    Some(b)
}

fn parse_one(name: &str, data: &[u8]) {
    match name {
        "block" => {
            if let Ok(h) = BlockHeader::decode(data) {
                assert_eq!(&h.encode()[..], &data[..BLOCK_HEADER_LEN]);
                if let Ok(raw) = h.decode_body(&data[BLOCK_HEADER_LEN..]) {
                    if let Ok(entries) = decode_packed_table(&raw, h.count) {
                        for e in entries {
                            let _ = &raw[e.offset as usize..(e.offset + e.len) as usize];
                        }
                    }
                    if let Ok(t) = LargeTrailer::decode_kind(h.kind, &raw) {
                        assert_eq!(t.encode(), raw);
                    }
                    let _ = decode_tombstones(&raw, h.count);
                    if h.kind == BlockKind::Manifest {
                        parse_one("manifest", &raw);
                    }
                    if h.kind == BlockKind::CdcChunk {
                        if let Ok((key, bytes)) = decode_chunk(&raw) {
                            assert_eq!(chunk_key(bytes), key);
                        }
                    }
                    if let Ok((_, frames)) = decode_framed_table(&raw, h.count) {
                        for f in frames {
                            let _ = &raw[f.offset as usize..(f.offset + f.stored_len) as usize];
                        }
                    }
                }
            }
        }
        "segment" => {
            let sc = crate::block::segment::scan(data);
            assert!(sc.end <= data.len() as u64);
            if let Ok(f) = SegmentFooter::decode(data) {
                assert_eq!(&f.encode()[..], &data[..48]);
            }
        }
        "index" => {
            if let Ok(h) = validate_index(data) {
                assert!(h.count as usize * ENTRY_LEN <= data.len());
            }
        }
        "log" => {
            if let Ok(c) = parse_log(data) {
                assert!(c.committed_len + c.tail_len == data.len() as u64);
                let mut out = encode_log_header(c.start_seq, c.store_id).to_vec();
                for (seq, r) in &c.records {
                    r.encode(*seq, &mut out);
                }
                assert_eq!(&out[..], &data[..c.committed_len as usize]);
            }
        }
        "checkpoint" => {
            if let Ok(c) = Checkpoint::decode(data) {
                // Older versions are read, but always written as the current one.
                if c.version == <crate::version::CheckpointVersion as crate::version::FormatVersion>::CURRENT {
                    assert_eq!(c.encode(), data);
                }
            }
            let _ = decode_store_file(data);
            if let Ok(n) = decode_follower(data) {
                assert_eq!(&encode_follower(n)[..], data);
            }
        }
        "entry" => {
            if let Ok(e) = Entry::decode(data) {
                let mut out = [0u8; ENTRY_LEN];
                e.encode(&mut out);
                assert_eq!(&out[..], &data[..ENTRY_LEN]);
            }
        }
        "manifest" => {
            if let Ok(m) = Manifest::decode(data) {
                assert_eq!(m.encode(), data);
                let spans: u64 = m.parts.iter().map(|p| p.span).sum();
                let lens: u64 = m.chunks.iter().map(|c| c.len as u64).sum();
                assert_eq!(if m.parts.is_empty() { lens } else { spans }, m.len);
                assert_eq!(m.cvs.len() as u64, m.len.div_ceil(m.grid as u64));
            }
        }
        "part" if data.len() >= PART_INPUT_HEAD => {
            let part = ManifestPart {
                key: crate::id::ArtifactId::from_bytes([0; 32]),
                span: u64::from_le_bytes(data[..8].try_into().expect("8 bytes")),
                count: le_u32_at(data, 8),
            };
            let bytes = &data[PART_INPUT_HEAD..];
            if let Ok(list) = decode_part(bytes, &part) {
                assert_eq!(encode_part(&list), bytes);
                assert_eq!(list.len() as u32, part.count);
                assert_eq!(list.iter().map(|c| c.len as u64).sum::<u64>(), part.span);
            }
        }
        "part" => {}
        other => panic!("unknown fuzz target {other}"),
    }
}
