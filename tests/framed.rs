//! Framed packed blocks (segment format 3): compressible small artifacts are
//! compressed one by one against their segment's dictionary, each read
//! decompresses only its own frame, and damage stays with the frame (or the
//! dictionary) it hits: found, reported, contained, salvaged by repair.

mod common;

use std::path::{Path, PathBuf};

use asl::codec::{decode_framed_table, BlockHeader, BlockKind, FramedEntry, BLOCK_HEADER_LEN};
use asl::{ArtifactId, Error, Store, StoreOptions};
use common::text;

struct Block {
    offset: u64,
    kind: BlockKind,
    /// For a framed block: its dictionary's offset and its frames.
    frames: Option<(u64, Vec<FramedEntry>)>,
}

fn segment(dir: &Path, id: u32) -> PathBuf {
    dir.join("segments").join(format!("{id:08}.seg"))
}

/// The blocks of a segment file, walked by their headers.
fn blocks(path: &Path) -> Vec<Block> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = 32usize;
    while off + BLOCK_HEADER_LEN <= b.len() {
        let Ok(h) = BlockHeader::decode(&b[off..]) else { break };
        let body = &b[off + BLOCK_HEADER_LEN..off + h.total_len() as usize];
        let frames = (h.kind == BlockKind::Framed).then(|| decode_framed_table(body, h.count).unwrap());
        out.push(Block {
            offset: off as u64,
            kind: h.kind,
            frames,
        });
        off += h.total_len() as usize;
    }
    out
}

/// A store of 1,500 text artifacts (0.3-2 KiB; several packed blocks), plus
/// a few tiny ones, committed and closed. Returns each artifact with its bytes.
fn build(dir: &Path) -> Vec<(ArtifactId, Vec<u8>)> {
    let s = StoreOptions::new().create(true).open(dir).unwrap();
    let mut items = Vec::new();
    for i in 0..1500u64 {
        let b = if i % 100 == 7 {
            text(i, 12)
        } else {
            text(i, 300 + (i as usize * 131) % 1800)
        };
        items.push((s.put(&b).unwrap(), b));
    }
    s.commit().unwrap();
    s.close().unwrap();
    items
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn text_is_framed_against_a_trained_dictionary_and_reads_back_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path());
    let bl = blocks(&segment(dir.path(), 1));
    let dicts: Vec<u64> = bl
        .iter()
        .filter(|b| b.kind == BlockKind::Dictionary)
        .map(|b| b.offset)
        .collect();
    let framed: Vec<&Block> = bl.iter().filter(|b| b.kind == BlockKind::Framed).collect();
    assert!(
        dicts.len() == 1 && framed.len() >= 3,
        "{} dictionaries, {} framed",
        dicts.len(),
        framed.len()
    );
    for f in &framed {
        let (dict_at, frames) = f.frames.as_ref().unwrap();
        assert!(dicts.contains(dict_at) && *dict_at < f.offset);
        assert!(frames.iter().filter(|e| e.compressed).count() * 10 >= frames.len() * 9);
        // A 12-byte artifact is not worth a frame header: stored raw.
        assert!(frames.iter().filter(|e| e.raw_len < 32).all(|e| !e.compressed));
    }
    let logical: u64 = items.iter().map(|(_, b)| b.len() as u64).sum();
    let stored = std::fs::metadata(segment(dir.path(), 1)).unwrap().len();
    assert!(stored * 2 < logical, "{stored} bytes stored for {logical}");
    // The open segment (read with pread), reopened, then sealed (mapped).
    for seal in [false, true] {
        let s = Store::open(dir.path()).unwrap();
        if seal {
            s.maintenance().seal().unwrap();
        }
        for (id, b) in &items {
            assert_eq!(&s.get(id).unwrap(), b);
            assert_eq!(&s.read_range(id, 1, 5).unwrap()[..], &b[1..6.min(b.len())]);
        }
        assert!(s.maintenance().verify().unwrap().is_clean());
    }
    // GC copies them into a segment with a dictionary of its own: the live
    // half, and of the removed half what a snapshot and a pin still hold.
    let s = Store::open(dir.path()).unwrap();
    s.snapshots().create("before").unwrap();
    s.pins().add("one", &items[0].0).unwrap();
    for (id, _) in items.iter().step_by(2) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    s.snapshots().delete("before").unwrap();
    s.snapshots().create("some").unwrap();
    let full = asl::GcOptions {
        threshold: 1.0,
        ..Default::default()
    };
    let gc = s.maintenance().gc(&full).unwrap();
    assert!(gc.segments_deleted >= 1, "{gc:?}");
    let check = |s: &Store| {
        for (i, (id, b)) in items.iter().enumerate() {
            match i % 2 {
                0 => assert!(matches!(s.get(id), Err(Error::NotFound(_)))),
                _ => assert_eq!(&s.get(id).unwrap(), b),
            }
        }
        let mut pinned = Vec::new();
        std::io::Read::read_to_end(&mut s.pins().open("one").unwrap(), &mut pinned).unwrap();
        assert_eq!(pinned, items[0].1);
    };
    check(&s);
    drop(s);
    let newest = (2..10)
        .rev()
        .map(|i| segment(dir.path(), i))
        .find(|p| p.exists())
        .unwrap();
    let nb = blocks(&newest);
    assert!(nb.iter().any(|b| b.kind == BlockKind::Dictionary) && nb.iter().any(|b| b.kind == BlockKind::Framed));
    let s = Store::open(dir.path()).unwrap();
    check(&s);
    assert!(s.maintenance().verify().unwrap().is_clean());
    // Nothing holds the removed half any more: a second GC drops them, the
    // live half moves again and still reads.
    s.pins().remove("one").unwrap();
    s.snapshots().delete("some").unwrap();
    let gc = s.maintenance().gc(&full).unwrap();
    assert_eq!(gc.garbage_after, 0, "{gc:?}");
    for (id, b) in items.iter().skip(1).step_by(2) {
        assert_eq!(&s.get(id).unwrap(), b);
    }
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn a_damaged_frame_loses_its_artifact_only_and_repair_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path());
    let seg = segment(dir.path(), 1);
    let bl = blocks(&seg);
    let block = bl.iter().find(|b| b.kind == BlockKind::Framed).unwrap();
    let frames = &block.frames.as_ref().unwrap().1;
    let hit = frames.iter().find(|f| f.compressed && f.stored_len > 64).unwrap();
    flip(
        &seg,
        block.offset + BLOCK_HEADER_LEN as u64 + hit.offset as u64 + hit.stored_len as u64 / 2,
    );
    let s = Store::open(dir.path()).unwrap();
    assert!(matches!(s.get(&hit.id), Err(Error::CorruptArtifact { id, .. }) if id == hit.id));
    // Its neighbours in the same block still read.
    for f in frames.iter().filter(|f| f.id != hit.id) {
        let want = &items.iter().find(|(i, _)| *i == f.id).unwrap().1;
        assert_eq!(&s.get(&f.id).unwrap(), want);
    }
    let v = s.maintenance().verify().unwrap();
    assert!(!v.is_clean());
    assert!(v.problems.iter().any(|p| p.artifact == Some(hit.id.to_hex())), "{v:?}");
    drop(s);
    let rep = Store::repair(dir.path()).unwrap();
    assert_eq!(rep.lost, vec![hit.id.to_hex()], "{rep:?}");
    assert_eq!(rep.salvaged as usize, frames.len() - 1, "{rep:?}");
    let s = Store::open(dir.path()).unwrap();
    for (id, b) in &items {
        match *id == hit.id {
            true => assert!(s.get(id).is_err()),
            false => assert_eq!(&s.get(id).unwrap(), b),
        }
    }
    // The damaged block stays (its proven frames are read in place), so
    // verify still names it, but no artifact.
    let v = s.maintenance().verify().unwrap();
    assert!(v.problems.iter().all(|p| p.artifact.is_none()), "{v:?}");
}

#[test]
fn a_damaged_dictionary_is_reported_and_costs_only_its_compressed_frames() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path());
    let seg = segment(dir.path(), 1);
    let bl = blocks(&seg);
    let dict = bl.iter().find(|b| b.kind == BlockKind::Dictionary).unwrap();
    flip(&seg, dict.offset + BLOCK_HEADER_LEN as u64 + 100);
    let compressed: Vec<ArtifactId> = bl
        .iter()
        .filter_map(|b| b.frames.as_ref())
        .flat_map(|(_, f)| f.iter().filter(|f| f.compressed).map(|f| f.id))
        .collect();
    let s = Store::open(dir.path()).unwrap();
    for (id, b) in &items {
        match compressed.contains(id) {
            true => assert!(matches!(s.get(id), Err(Error::CorruptArtifact { .. })), "{id}"),
            false => assert_eq!(&s.get(id).unwrap(), b),
        }
    }
    assert!(!s.maintenance().verify().unwrap().is_clean());
    drop(s);
    let rep = Store::repair(dir.path()).unwrap();
    for id in &compressed {
        assert!(rep.lost.contains(&id.to_hex()), "{id} not reported lost");
    }
    let s = Store::open(dir.path()).unwrap();
    let readable = items
        .iter()
        .filter(|(id, b)| s.get(id).ok().as_ref() == Some(b))
        .count();
    assert_eq!(readable, items.len() - compressed.len());
    let v = s.maintenance().verify().unwrap();
    assert!(v.problems.iter().all(|p| p.artifact.is_none()), "{v:?}");
}

/// Damage that the block checksum does not see (the checksum recomputed over
/// a changed frame): GC reads each compressed frame and proves it by its
/// BLAKE3, so it copies the rest, keeps the victim and names the artifact.
#[test]
fn gc_keeps_a_frame_that_does_not_prove_itself_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path());
    let s = Store::open(dir.path()).unwrap();
    s.maintenance().seal().unwrap();
    for (id, _) in items.iter().step_by(4) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    let seg = segment(dir.path(), 1);
    let bl = blocks(&seg);
    let block = bl.iter().find(|b| b.kind == BlockKind::Framed).unwrap();
    let frames = &block.frames.as_ref().unwrap().1;
    let hit = frames
        .iter()
        .find(|f| f.compressed && items.iter().position(|(id, _)| *id == f.id).unwrap() % 4 != 0)
        .unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let body_at = block.offset as usize + BLOCK_HEADER_LEN;
    b[body_at + hit.offset as usize + hit.stored_len as usize / 2] ^= 0x10;
    let h = BlockHeader::decode(&b[block.offset as usize..]).unwrap();
    let body_crc = crc32c::crc32c(&b[body_at..body_at + h.stored_len as usize]);
    b[block.offset as usize + 20..][..4].copy_from_slice(&body_crc.to_le_bytes());
    let head_crc = crc32c::crc32c(&b[block.offset as usize..][..28]);
    b[block.offset as usize + 28..][..4].copy_from_slice(&head_crc.to_le_bytes());
    std::fs::write(&seg, &b).unwrap();
    let s = Store::open(dir.path()).unwrap();
    let r = s.maintenance().gc(&asl::GcOptions::default()).unwrap();
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert!(r.skipped[0].contains(&hit.id.to_hex()), "{r:?}");
    assert!(seg.exists(), "the victim was deleted with a damaged artifact in it");
    for (i, (id, b)) in items.iter().enumerate() {
        if *id == hit.id {
            assert!(matches!(s.get(id), Err(Error::CorruptArtifact { .. })));
        } else if i % 4 == 0 {
            assert!(matches!(s.get(id), Err(Error::NotFound(_))));
        } else {
            assert_eq!(&s.get(id).unwrap(), b);
        }
    }
    s.put(b"after").unwrap();
    s.commit().unwrap();
}

/// A writer reopening the segment frames against the dictionary already in
/// it: a run of separate sessions (each `aslctl ingest` is one) does not add
/// a dictionary per session.
#[test]
fn a_reopened_writer_keeps_framing_against_the_segments_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = build(dir.path());
    let count = |kind| {
        blocks(&segment(dir.path(), 1))
            .iter()
            .filter(|b| b.kind == kind)
            .count()
    };
    let framed_before = count(BlockKind::Framed);
    for round in 0..3u64 {
        let s = Store::open(dir.path()).unwrap();
        for i in 0..400u64 {
            let b = text(10_000 * (round + 1) + i, 300 + (i as usize * 97) % 1500);
            items.push((s.put(&b).unwrap(), b));
        }
        s.commit().unwrap();
        s.close().unwrap();
    }
    assert_eq!(
        count(BlockKind::Dictionary),
        1,
        "a session trained a dictionary of its own"
    );
    assert!(count(BlockKind::Framed) >= framed_before + 3);
    let s = Store::open(dir.path()).unwrap();
    for (id, b) in &items {
        assert_eq!(&s.get(id).unwrap(), b);
    }
    assert!(s.maintenance().verify().unwrap().is_clean());
}
