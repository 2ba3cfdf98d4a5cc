//! Block format round trips and the damage each check catches.

use super::*;

#[test]
fn header_round_trip_and_corruption() {
    let body = b"hello world".to_vec();
    let h = header_for(BlockKind::Packed, Compression::None, &body, body.len(), 0);
    let enc = h.encode();
    assert_eq!(BlockHeader::decode(&enc).unwrap(), h);
    h.check_body(&body).unwrap();
    let mut bad = body.clone();
    bad[0] ^= 1;
    assert!(matches!(h.check_body(&bad), Err(DecodeError::Checksum { .. })));
    for i in 0..BLOCK_HEADER_LEN {
        let mut e = enc;
        e[i] ^= 0x40;
        assert!(BlockHeader::decode(&e).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn packed_round_trip() {
    let mut b = PackedBuilder::default();
    let items: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; i as usize * 7]).collect();
    for it in &items {
        b.push(ArtifactId::of(it), it);
    }
    assert_eq!(b.get(3).unwrap(), &items[3][..]);
    let (raw, entries) = b.finish();
    let dec = decode_packed_table(&raw, entries.len() as u32).unwrap();
    assert_eq!(dec, entries);
    for (e, it) in dec.iter().zip(&items) {
        assert_eq!(&raw[e.offset as usize..(e.offset + e.len) as usize], &it[..]);
    }
    assert!(decode_packed_table(&raw, 11).is_err());
}

#[test]
fn compression_only_when_it_pays() {
    let zeros = vec![0u8; 4096];
    assert_eq!(maybe_compress(&zeros, Some(3)).1, Compression::Zstd);
    assert_eq!(maybe_compress(&zeros, None).1, Compression::None);
    let mut x = 88172645463325252u64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (stored, c) = maybe_compress(&noise, Some(3));
    assert_eq!(c, Compression::None);
    assert_eq!(&stored[..], &noise[..]);
    // Compressible data spread over a large body is still compressed.
    let mut mixed = noise.clone();
    for (i, b) in mixed.iter_mut().enumerate() {
        if i % 4096 < 3072 {
            *b = 0;
        }
    }
    assert_eq!(maybe_compress(&mixed, Some(3)).1, Compression::Zstd);
}

#[test]
fn trailer_round_trip() {
    let t = LargeTrailer {
        id: ArtifactId::of(b"big"),
        len: 2500,
        chunk_size: 1000,
        chunks: vec![
            ChunkRef {
                offset: 32,
                raw_len: 1000,
            },
            ChunkRef {
                offset: 1064,
                raw_len: 1000,
            },
            ChunkRef {
                offset: 2096,
                raw_len: 500,
            },
        ],
        cvs: None,
    };
    assert_eq!(LargeTrailer::decode(&t.encode()).unwrap(), t);
    let mut bad = t.clone();
    bad.len = 2600;
    assert!(LargeTrailer::decode(&bad.encode()).is_err());
}

#[test]
fn tree_trailer_roundtrip_and_root_check() {
    let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
    let cvs: Vec<[u8; 32]> = data
        .chunks(1024)
        .enumerate()
        .map(|(i, c)| crate::block::tree::chunk_cv(c, i as u64, 1024))
        .collect();
    let t = LargeTrailer {
        id: ArtifactId::of(&data),
        len: 2500,
        chunk_size: 1024,
        chunks: (0..3)
            .map(|i| ChunkRef {
                offset: 32 + i * 1100,
                raw_len: if i < 2 { 1024 } else { 452 },
            })
            .collect(),
        cvs: Some(cvs),
    };
    assert_eq!(t.kind(), BlockKind::TreeTrailer);
    let b = t.encode();
    assert_eq!(LargeTrailer::decode_kind(BlockKind::TreeTrailer, &b).unwrap(), t);
    // A kind-3 reader of the same bytes sees the wrong length.
    assert!(LargeTrailer::decode(&b).is_err());
    // A CV that does not belong: the tree no longer hashes to the id.
    let mut bad = t.clone();
    bad.cvs.as_mut().unwrap()[1][0] ^= 1;
    assert!(LargeTrailer::decode_kind(BlockKind::TreeTrailer, &bad.encode()).is_err());
    // Chunk sizes that are no BLAKE3 subtree are refused.
    let mut odd = t.clone();
    odd.chunk_size = 1000;
    assert!(LargeTrailer::decode_kind(BlockKind::TreeTrailer, &odd.encode()).is_err());
}
