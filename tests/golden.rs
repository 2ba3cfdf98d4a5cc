//! Golden bytes: the hex examples in `spec/format.md` decode with the real
//! decoders to the values the spec describes, and re-encode to the same bytes.
//! Regenerate the examples with `cargo test --test golden -- --ignored --nocapture`.

use asl::codec::Entry;
use asl::codec::SegmentState;
use asl::codec::{
    decode_follower, decode_framed_table, decode_packed_table, decode_store_file, encode_follower, encode_store_file,
    parse_log, BlockHeader, BlockKind, Checkpoint, LargeTrailer, Record, SegmentFooter, SegmentHeader,
};
use asl::version::SegmentVersion;
use asl::{ArtifactId, CurrentId, DomainId, SnapshotMeta, Visibility};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spec/format.md")).unwrap()
}

/// The bytes of the example tagged `<!-- golden: NAME -->`.
fn golden(name: &str) -> Vec<u8> {
    let s = spec();
    let tag = format!("<!-- golden: {name} -->");
    let at = s
        .find(&tag)
        .unwrap_or_else(|| panic!("spec has no golden example {name}"));
    let rest = &s[at..];
    let start = rest.find("```text\n").unwrap() + 8;
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end]
        .split_whitespace()
        .filter(|t| !t.ends_with(':'))
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex {t:?} in {name}")))
        .collect()
}

fn hexdump(b: &[u8]) -> String {
    b.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let bytes: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
            format!("{:04x}: {}", i * 16, bytes.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn example_entry() -> Entry {
    Entry {
        id: ArtifactId::of(b"a"),
        segment: 1,
        block_offset: 32,
        inner: 80,
        len: 1,
        domain: DomainId::LOCAL,
        source: u16::MAX,
        visibility: Visibility::Internal,
        flags: 0,
    }
}

fn examples() -> Vec<(&'static str, Vec<u8>)> {
    let mut b = asl::codec::PackedBuilder::default();
    b.push(ArtifactId::of(b"a"), b"a");
    b.push(ArtifactId::of(b"bc"), b"bc");
    let (raw, _) = b.finish();
    let block = raw_block(BlockKind::Packed, &raw, 2);
    let seg = SegmentHeader {
        version: SegmentVersion::V3,
        id: 1,
        store_id: 0x0807_0605_0403_0201,
    }
    .encode()
    .to_vec();
    let footer = SegmentFooter {
        version: SegmentVersion::V3,
        block_count: 1,
        data_len: 147,
        raw_total: 83,
        data_crc: 0x1122_3344,
    }
    .encode()
    .to_vec();
    let mut entry = vec![0u8; 56];
    example_entry().encode(&mut entry);
    let mut log = asl::codec::encode_log_header(1, 0x0807_0605_0403_0201).to_vec();
    Record::Entry(example_entry()).encode(1, &mut log);
    Record::Commit { segment: 1, len: 147 }.encode(2, &mut log);
    let ckpt = Checkpoint {
        version: asl::version::CheckpointVersion::V2,
        store_id: 0x0807_0605_0403_0201,
        next_seq: 3,
        log_file: 2,
        next_segment: 2,
        next_index: 2,
        index_files: vec![1],
        segments: vec![SegmentState {
            id: 1,
            len: 195,
            sealed: true,
            live: 3,
            total: 3,
        }],
        snapshots: vec![example_snapshot()],
        pins: vec![("keep".into(), ArtifactId::of(b"a"))],
    }
    .encode();
    let mut catalog = Vec::new();
    Record::SnapshotCreated(example_snapshot()).encode(3, &mut catalog);
    Record::Pinned {
        name: "keep".into(),
        id: ArtifactId::of(b"a"),
    }
    .encode(4, &mut catalog);
    Record::SegmentUsage {
        id: 1,
        live: 1,
        total: 3,
    }
    .encode(5, &mut catalog);
    Record::SegmentDropped { id: 1 }.encode(6, &mut catalog);
    let trailer = LargeTrailer {
        id: ArtifactId::of(b"x"),
        len: 5,
        chunk_size: 4,
        chunks: vec![
            asl::codec::ChunkRef { offset: 32, raw_len: 4 },
            asl::codec::ChunkRef { offset: 68, raw_len: 1 },
        ],
        cvs: None,
    }
    .encode();
    let tree_trailer = tree_trailer_example().encode();
    vec![
        ("packed-block", block),
        ("framed-block", framed_block_example()),
        ("segment-header", seg),
        ("segment-footer", footer),
        ("index-entry", entry),
        ("log", log),
        ("checkpoint", ckpt),
        ("log-catalog", catalog),
        ("large-trailer", trailer),
        ("tree-trailer", tree_trailer),
        ("cdc-chunk", cdc_chunk_example()),
        ("manifest", manifest_example().encode()),
        ("manifest-part", asl::codec::encode_part(&manifest_example().chunks)),
        ("manifest-parted", parted_manifest_example().encode()),
        ("store-file", encode_store_file(0x0807_0605_0403_0201).to_vec()),
        ("follower-note", encode_follower(42).to_vec()),
    ]
}

/// A framed block holding `a` and `bc` as raw frames, its dictionary at 32.
/// Built by hand: the writer only frames against a trained dictionary, whose
/// bytes depend on zstd's trainer.
fn framed_block_example() -> Vec<u8> {
    let mut body = 32u64.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 8]);
    for a in [&b"a"[..], b"bc"] {
        body.extend_from_slice(ArtifactId::of(a).as_bytes());
        body.extend_from_slice(&(a.len() as u32).to_le_bytes());
        body.extend_from_slice(&(a.len() as u32).to_le_bytes());
    }
    body.extend_from_slice(b"abc");
    raw_block(BlockKind::Framed, &body, 2)
}

/// A block of `kind` with an uncompressed `body` of `count` entries.
fn raw_block(kind: BlockKind, body: &[u8], count: u32) -> Vec<u8> {
    let h = BlockHeader {
        kind,
        compression: asl::codec::Compression::None,
        stored_len: body.len() as u32,
        raw_len: body.len() as u32,
        count,
        body_crc: crc32c::crc32c(body),
    };
    let mut block = h.encode().to_vec();
    block.extend_from_slice(body);
    block
}

/// 1030 bytes `x` in chunks of 1024: two chunks, two chaining values.
fn tree_trailer_example() -> LargeTrailer {
    let data = [b'x'; 1030];
    LargeTrailer {
        id: ArtifactId::of(&data),
        len: 1030,
        chunk_size: 1024,
        chunks: vec![
            asl::codec::ChunkRef {
                offset: 32,
                raw_len: 1024,
            },
            asl::codec::ChunkRef {
                offset: 1088,
                raw_len: 6,
            },
        ],
        cvs: Some(vec![
            asl::codec::chunk_cv(&data[..1024], 0, 1024),
            asl::codec::chunk_cv(&data[1024..], 1, 1024),
        ]),
    }
}

/// A content-defined chunk block holding `abc`.
fn cdc_chunk_example() -> Vec<u8> {
    let key = asl::codec::chunk_key(b"abc");
    let mut body = key.as_bytes().to_vec();
    body.extend_from_slice(b"abc");
    raw_block(BlockKind::CdcChunk, &body, 0)
}

/// The manifest of 1030 bytes `x` on a grid of 1024: two grid values, one
/// content-defined chunk (FastCDC does not cut under 16 KiB).
fn manifest_example() -> asl::codec::Manifest {
    let data = [b'x'; 1030];
    asl::codec::Manifest {
        id: ArtifactId::of(&data),
        len: 1030,
        grid: 1024,
        cvs: vec![
            asl::codec::chunk_cv(&data[..1024], 0, 1024),
            asl::codec::chunk_cv(&data[1024..], 1, 1024),
        ],
        chunks: vec![asl::codec::ManifestChunk {
            key: asl::codec::chunk_key(&data),
            len: 1030,
        }],
        parts: Vec::new(),
    }
}

/// The same artifact with its chunk list kept in one part (a writer keeps a
/// list in parts only past 4096 chunks; a reader takes any list so kept).
fn parted_manifest_example() -> asl::codec::Manifest {
    let m = manifest_example();
    let part = asl::codec::encode_part(&m.chunks);
    asl::codec::Manifest {
        chunks: Vec::new(),
        parts: vec![asl::codec::ManifestPart {
            key: asl::codec::chunk_key(&part),
            span: 1030,
            count: 1,
        }],
        ..m
    }
}

/// The input of the golden cut list: BLAKE3's extendable output for the
/// text below, 1 MiB of it (`printf 'ASL CDC golden' | b3sum --length
/// 1048576 --raw`).
fn cut_input() -> Vec<u8> {
    let mut out = vec![0u8; 1 << 20];
    let mut h = blake3::Hasher::new();
    h.update(b"ASL CDC golden");
    h.finalize_xof().fill(&mut out);
    out
}

/// The cut lengths the spec lists after `<!-- golden: cdc-cuts -->`.
fn golden_cuts() -> Vec<usize> {
    let s = spec();
    let at = s
        .find("<!-- golden: cdc-cuts -->")
        .expect("spec has the golden cut list");
    let rest = &s[at..];
    let start = rest.find("```text\n").unwrap() + 8;
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn the_spec_cut_list_is_what_fastcdc_cuts() {
    let cuts: Vec<usize> = asl::codec::cdc_cuts(&cut_input(), true).iter().map(|c| c.1).collect();
    assert_eq!(golden_cuts(), cuts, "FastCDC cuts differ from spec/format.md");
}

fn example_snapshot() -> SnapshotMeta {
    SnapshotMeta {
        name: "v1".into(),
        identity: CurrentId([0xAB; 32]),
        created: 1_763_769_600,
        artifacts: 2,
        bytes: 3,
    }
}

#[test]
#[ignore]
fn print_golden_examples() {
    for (name, bytes) in examples() {
        println!("<!-- golden: {name} -->\n```text\n{}\n```\n", hexdump(&bytes));
    }
    let cuts: Vec<String> = asl::codec::cdc_cuts(&cut_input(), true)
        .iter()
        .map(|c| c.1.to_string())
        .collect();
    println!("<!-- golden: cdc-cuts -->\n```text\n{}\n```\n", cuts.join(" "));
}

#[test]
fn spec_examples_match_the_encoders() {
    for (name, bytes) in examples() {
        assert_eq!(golden(name), bytes, "spec example {name} differs from the encoder");
    }
}

#[test]
fn spec_examples_decode() {
    let b = golden("packed-block");
    let h = BlockHeader::decode(&b).unwrap();
    assert_eq!((h.count, h.raw_len, h.stored_len), (2, 83, 83));
    let body = h.decode_body(&b[32..]).unwrap();
    let t = decode_packed_table(&body, h.count).unwrap();
    assert_eq!(t[0].id, ArtifactId::of(b"a"));
    assert_eq!((t[0].offset, t[0].len, t[1].offset, t[1].len), (80, 1, 81, 2));
    assert_eq!(&body[81..83], b"bc");

    let b = golden("framed-block");
    let h = BlockHeader::decode(&b).unwrap();
    assert_eq!((h.kind, h.count, h.stored_len), (BlockKind::Framed, 2, 99));
    let (dict_at, frames) = decode_framed_table(&h.decode_body(&b[32..]).unwrap(), h.count).unwrap();
    assert_eq!(dict_at, 32);
    assert_eq!(frames[1].id, ArtifactId::of(b"bc"));
    assert_eq!(
        (frames[1].offset, frames[1].raw_len, frames[1].compressed),
        (97, 2, false)
    );

    let s = SegmentHeader::decode(&golden("segment-header")).unwrap();
    assert_eq!((s.id, s.store_id), (1, 0x0807_0605_0403_0201));
    let f = SegmentFooter::decode(&golden("segment-footer")).unwrap();
    assert_eq!(
        (f.block_count, f.data_len, f.raw_total, f.data_crc),
        (1, 147, 83, 0x1122_3344)
    );
    assert_eq!(Entry::decode(&golden("index-entry")).unwrap(), example_entry());
    let log = parse_log(&golden("log")).unwrap();
    assert_eq!(log.records.len(), 2);
    assert_eq!(log.records[1].1, Record::Commit { segment: 1, len: 147 });
    let c = Checkpoint::decode(&golden("checkpoint")).unwrap();
    assert_eq!((c.next_seq, c.log_file, c.index_files.clone()), (3, 2, vec![1]));
    assert_eq!((c.segments[0].live, c.snapshots[0].name.as_str()), (3, "v1"));
    let mut with_header = asl::codec::encode_log_header(3, 1).to_vec();
    with_header.extend_from_slice(&golden("log-catalog"));
    Record::Commit { segment: 0, len: 0 }.encode(7, &mut with_header);
    let log = parse_log(&with_header).unwrap();
    assert_eq!(log.records[0].1, Record::SnapshotCreated(example_snapshot()));
    assert_eq!(log.records[3].1, Record::SegmentDropped { id: 1 });
    let t = LargeTrailer::decode(&golden("large-trailer")).unwrap();
    assert_eq!((t.len, t.chunks.len()), (5, 2));
    let t = LargeTrailer::decode_kind(BlockKind::TreeTrailer, &golden("tree-trailer")).unwrap();
    assert_eq!(t, tree_trailer_example());
    assert_eq!(
        asl::codec::tree_root(t.cvs.as_deref().unwrap()).unwrap().as_bytes(),
        blake3::hash(&[b'x'; 1030]).as_bytes()
    );
    assert_eq!(decode_store_file(&golden("store-file")).unwrap(), 0x0807_0605_0403_0201);
    assert_eq!(decode_follower(&golden("follower-note")).unwrap(), 42);
    let b = golden("cdc-chunk");
    let h = BlockHeader::decode(&b).unwrap();
    assert_eq!((h.kind, h.raw_len), (BlockKind::CdcChunk, 35));
    let body = h.decode_body(&b[32..]).unwrap();
    let (key, bytes) = asl::codec::decode_chunk(&body).unwrap();
    assert_eq!((key, bytes), (asl::codec::chunk_key(b"abc"), &b"abc"[..]));
    let m = asl::codec::Manifest::decode(&golden("manifest")).unwrap();
    assert_eq!(m, manifest_example());
    let parted = asl::codec::Manifest::decode(&golden("manifest-parted")).unwrap();
    assert_eq!(parted, parted_manifest_example());
    let list = asl::codec::decode_part(&golden("manifest-part"), &parted.parts[0]).unwrap();
    assert_eq!(list, m.chunks);
    assert_eq!(parted.parts[0].key, asl::codec::chunk_key(&golden("manifest-part")));
}

/// `spec/records.md` defines every record type the build registers, field
/// by field (here rather than in asl-records, whose package does not ship
/// the spec).
#[test]
fn the_spec_lists_every_registered_record_type() {
    let spec = include_str!("../spec/records.md");
    for t in asl::records::schema::REGISTRY {
        let head = format!("### `{}` version {}", t.name, t.version);
        assert!(spec.contains(&head), "spec/records.md lacks {head}");
        for f in t.fields {
            assert!(
                spec.contains(&format!("{}: ", f.name)),
                "spec lacks field {} of {}",
                f.name,
                t.name
            );
        }
    }
}
