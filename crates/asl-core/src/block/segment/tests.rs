//! Segment headers and footers, sealing and scanning, and reads of the open
//! segment through its map.

use super::*;
use crate::block::format::{header_for, BlockKind, Compression};

#[test]
fn header_footer_round_trip() {
    let h = SegmentHeader {
        version: SegmentVersion::CURRENT,
        id: 7,
        store_id: 99,
    };
    assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
    let f = SegmentFooter {
        version: SegmentVersion::V1,
        block_count: 3,
        data_len: 1000,
        raw_total: 5000,
        data_crc: 0xdead_beef,
    };
    assert_eq!(SegmentFooter::decode(&f.encode()).unwrap(), f);
    assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
    assert_eq!(parse_segment_file_name("x.seg"), None);
}

#[test]
fn write_seal_scan() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(segment_file_name(1));
    let io = crate::io::LocalBackend;
    let mut s = ActiveSegment::create(&io, &p, 1, 5).unwrap();
    let body = b"abcdef";
    let h = header_for(BlockKind::LargeChunk, Compression::None, body, body.len(), 0);
    let at = s.append(&h, body).unwrap();
    assert_eq!(at, SEGMENT_HEADER_LEN);
    s.seal().unwrap();
    let seg = Segment::open_sealed(&io, &p, 1, 5).unwrap();
    let (h2, raw) = seg.read_block(at).unwrap();
    assert_eq!(h2, h);
    assert_eq!(raw, body);
    assert!(Segment::open_sealed(&io, &p, 1, 6).is_err());
    let bytes = std::fs::read(&p).unwrap();
    let sc = scan(&bytes);
    assert!(sc.footer.is_some() && !sc.data_crc_mismatch);
    assert_eq!(sc.blocks.len(), 1);
}

#[test]
fn the_open_segment_reads_through_its_map_only_what_its_writer_published() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(segment_file_name(2));
    let io = crate::io::LocalBackend;
    let mut s = ActiveSegment::create(&io, &p, 2, 5).unwrap();
    // A reservation of two pages: blocks past it are read with pread.
    let seg = s.reader(&io, 8192).unwrap();
    let body = |i: u8| vec![i; 1000 + 300 * i as usize];
    let mut at = Vec::new();
    for i in 0..8u8 {
        let b = body(i);
        let h = header_for(BlockKind::LargeChunk, Compression::None, &b, b.len(), 0);
        at.push(s.append(&h, &b).unwrap());
    }
    let end = s.len;
    assert!(end > 8192, "the blocks run past the reservation");
    for (i, &a) in at.iter().enumerate() {
        let (_, raw) = seg.read_block(a).unwrap();
        assert_eq!(raw, body(i as u8));
        let n = BLOCK_HEADER_LEN + raw.len();
        let mapped = matches!(seg.read(a, n).unwrap(), Cow::Borrowed(_));
        assert_eq!(mapped, a + n as u64 <= 8192, "block {i} at {a}");
    }
    // Bytes written but not published by an append are not mapped.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"tail", end).unwrap();
    assert!(matches!(seg.read(end, 4).unwrap(), Cow::Owned(_)));
    // A rolled-back tail is withdrawn before the file is cut: reading it
    // is an error, not a fault on a page past the file's end.
    s.rollback(at[1], 1, 0).unwrap();
    assert!(seg.read(at[1], 16).is_err());
    assert!(seg.read(at[0], 16).is_ok());
    // Appended again over the cut: the new bytes read through the map.
    let b = vec![0xee; 64];
    let h = header_for(BlockKind::LargeChunk, Compression::None, &b, b.len(), 0);
    assert_eq!(s.append(&h, &b).unwrap(), at[1]);
    assert_eq!(seg.read_block(at[1]).unwrap().1, b);
    assert!(matches!(seg.read(at[1], 16).unwrap(), Cow::Borrowed(_)));
}
