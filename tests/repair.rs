//! Repair never makes a damaged store worse: it keeps what it cannot parse
//! (in `quarantine/`), resynchronises after a damaged block, salvages the
//! intact artifacts of a damaged packed block by their own BLAKE3, and says
//! what was lost.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use asl::codec::{BlockHeader, BlockKind, BLOCK_HEADER_LEN};
use asl::{ArtifactId, Store, StoreOptions};
use common::noise;

fn build(dir: &Path, compression: Option<i32>) -> Vec<(ArtifactId, Vec<u8>)> {
    let s = StoreOptions::new()
        .create(true)
        .compression(compression)
        .block_target(4 << 10)
        .open(dir)
        .unwrap();
    let mut out = Vec::new();
    for i in 0..120u64 {
        let b = noise(i, 300 + (i as usize * 7) % 400);
        out.push((s.put(&b).unwrap(), b));
    }
    s.maintenance().seal().unwrap();
    for i in 1000..1040u64 {
        let b = noise(i, 500);
        out.push((s.put(&b).unwrap(), b));
    }
    s.close().unwrap();
    out
}

fn segment(dir: &Path, n: u32) -> PathBuf {
    dir.join("segments").join(format!("{n:08}.seg"))
}

/// Offsets of the packed blocks of a segment file, with their headers.
fn packed_blocks(bytes: &[u8]) -> Vec<(usize, BlockHeader)> {
    let mut out = Vec::new();
    let mut off = 32;
    while off + BLOCK_HEADER_LEN <= bytes.len() {
        let Ok(h) = BlockHeader::decode(&bytes[off..]) else {
            break;
        };
        if h.kind == BlockKind::Packed {
            out.push((off, h));
        }
        off += h.total_len() as usize;
    }
    out
}

/// Whether `bytes` appear in some segment file (raw blocks only).
fn on_disk(dir: &Path, bytes: &[u8]) -> bool {
    fs::read_dir(dir.join("segments")).unwrap().any(|e| {
        let b = fs::read(e.unwrap().path()).unwrap();
        b.windows(bytes.len()).any(|w| w == bytes)
    })
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x20;
    fs::write(path, b).unwrap();
}

fn readable(s: &Store, items: &[(ArtifactId, Vec<u8>)]) -> usize {
    items
        .iter()
        .filter(|(id, b)| s.get(id).map(|got| got == *b).unwrap_or(false))
        .count()
}

/// A segment header with a flipped bit is rebuilt from the file name and the
/// store id when the blocks behind it read (its old bytes kept in
/// quarantine): nothing is lost.
#[test]
fn a_damaged_segment_header_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path(), Some(3));
    let seg = segment(dir.path(), 1);
    let before = fs::read(&seg).unwrap();
    flip(&seg, 20);
    let rep = Store::repair(dir.path()).unwrap();
    assert!(rep.quarantined.is_empty(), "{rep:?}");
    assert_eq!(rep.rebuilt_headers.len(), 1, "{rep:?}");
    assert!(rep.is_complete(), "{rep:?}");
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(readable(&s, &items), items.len());
    assert!(s.maintenance().verify().unwrap().is_clean());
    drop(s);
    let kept = fs::read(dir.path().join("quarantine").join("00000001.seg.header")).unwrap();
    assert_eq!(kept[..20], before[..20]);
    assert_eq!(kept[20], before[20] ^ 0x20);
}

/// A segment whose header checks but names another store, or a format
/// version this build does not know, is not this build's to use: it is
/// moved to quarantine (never deleted), its artifacts are reported lost,
/// and the rest of the store works.
#[test]
fn a_foreign_or_future_segment_is_quarantined_not_deleted() {
    for (field, value) in [(16usize, 0xEEu8), (8, 6)] {
        let dir = tempfile::tempdir().unwrap();
        let items = build(dir.path(), Some(3));
        let seg = segment(dir.path(), 1);
        let mut b = fs::read(&seg).unwrap();
        b[field] = value;
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        fs::write(&seg, &b).unwrap();
        let rep = Store::repair(dir.path()).unwrap();
        assert_eq!(rep.quarantined.len(), 1, "{rep:?}");
        assert!(
            !rep.lost.is_empty(),
            "the artifacts of the quarantined segment are not reported lost"
        );
        // A writer opens and closes the repaired store; the file survives.
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(readable(&s, &items[120..]), 40);
        drop(s);
        let kept = dir.path().join("quarantine").join("00000001.seg");
        assert_eq!(fs::read(&kept).expect("quarantined segment is gone"), b);
    }
}

#[test]
fn repair_resynchronises_after_a_damaged_block_header() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path(), Some(3));
    let seg = segment(dir.path(), 1);
    let blocks = packed_blocks(&fs::read(&seg).unwrap());
    assert!(blocks.len() > 10);
    let (at, h) = blocks[3];
    flip(&seg, at + 9);
    let rep = Store::repair(dir.path()).unwrap();
    assert!(rep.damaged_regions >= 1, "{rep:?}");
    let s = Store::open(dir.path()).unwrap();
    // Only the artifacts of the damaged block may be lost.
    let lost = items.len() - readable(&s, &items);
    assert!(lost <= h.count as usize, "{lost} lost, the block held {}", h.count);
    // The block is raw: its own table names its artifacts and their BLAKE3
    // proves them, so the damaged header costs nothing.
    assert_eq!(lost, 0, "{rep:?}");
    assert_eq!(rep.salvaged, h.count as u64, "{rep:?}");
}

#[test]
fn repair_salvages_the_intact_artifacts_of_a_damaged_raw_block() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path(), None);
    let seg = segment(dir.path(), 1);
    let blocks = packed_blocks(&fs::read(&seg).unwrap());
    let (at, h) = blocks[2];
    // Damage the last bytes of the body: one artifact's bytes, not the table.
    let end = at + h.total_len() as usize;
    flip(&seg, end - 3);
    let rep = Store::repair(dir.path()).unwrap();
    assert_eq!(rep.lost.len(), 1, "{rep:?}");
    assert_eq!(rep.salvaged as usize, h.count as usize - 1, "{rep:?}");
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(readable(&s, &items), items.len() - 1);
    let lost: ArtifactId = rep.lost[0].parse().unwrap();
    assert!(items.iter().any(|(id, _)| *id == lost));
    assert!(s.get(&lost).is_err());
}

#[test]
fn a_torn_tail_is_kept_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let items = build(dir.path(), Some(3));
    // The open segment (2) gets a garbage tail, as after a crash mid-write.
    let seg = segment(dir.path(), 2);
    let mut b = fs::read(&seg).unwrap();
    let tail = noise(77, 5000);
    b.extend_from_slice(&tail);
    fs::write(&seg, b).unwrap();
    let rep = Store::repair(dir.path()).unwrap();
    assert_eq!(rep.truncated_bytes, 5000);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(readable(&s, &items), items.len());
    let q: Vec<_> = fs::read_dir(dir.path().join("quarantine")).unwrap().flatten().collect();
    assert_eq!(q.len(), 1);
    assert_eq!(fs::read(q[0].path()).unwrap(), tail);
}

/// A damaged record of an acknowledged batch is corruption, not a torn tail:
/// the writer refuses to open (and so cuts nothing), a read-only open works,
/// `verify` is not clean, and repair brings the artifact back from its segment.
#[test]
fn damaged_log_record_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = StoreOptions::new().create(true).open(d).unwrap();
    let big = noise(7, 400_000);
    let id = s.put(&big).unwrap();
    s.commit().unwrap();
    let snap = s.snapshots().create("after-big").unwrap();
    // Leave the batches in the log, as a crash before the close-time checkpoint does.
    s.abandon();
    let log = fs::read_dir(d.join("log")).unwrap().next().unwrap().unwrap().path();
    flip(&log, 32 + 20);
    let err = Store::open(d).err().expect("writer opened over a damaged log");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("repair"), "{err}");
    let ro = Store::open_read_only(d).unwrap();
    let rep = ro.maintenance().verify().unwrap();
    assert!(!rep.is_clean(), "verify clean with an acknowledged artifact unreadable");
    drop(ro);
    let seg = segment(d, 1);
    let seg_len = fs::metadata(&seg).unwrap().len();
    assert!(Store::open(d).is_err());
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        seg_len,
        "a refused open cut the segment"
    );
    Store::repair(d).unwrap();
    let s = Store::open(d).unwrap();
    assert_eq!(s.get(&id).unwrap(), big);
    assert!(s.maintenance().verify().unwrap().is_clean());
    // The snapshot only the damaged log named is taken in again from its file.
    let found = s.snapshots().list().into_iter().find(|m| m.identity == snap.identity);
    let found = found.expect("the snapshot named only in the damaged log is gone");
    assert_eq!(s.at(&found.name).unwrap().get(&id).unwrap(), big);
}

/// A truncated header of the newest log: writers are refused, but reads of
/// what the checkpoint holds go on (read-only), `verify` names the log, and
/// `repair` makes the store whole and writable again.
#[test]
fn a_truncated_log_header_stops_writers_not_readers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = StoreOptions::new().create(true).open(d).unwrap();
    let old = s.put(b"checkpointed").unwrap();
    s.commit().unwrap();
    s.maintenance().checkpoint().unwrap();
    let newer = s.put(b"only in the log").unwrap();
    s.commit().unwrap();
    s.abandon();
    let ckpt = asl::codec::Checkpoint::decode(&fs::read(d.join("CHECKPOINT")).unwrap()).unwrap();
    let log = d.join("log").join(format!("{:012}.log", ckpt.log_file));
    let bytes = fs::read(&log).unwrap();
    fs::write(&log, &bytes[..10]).unwrap();
    let err = Store::open(d).err().expect("a writer opened over a damaged log");
    assert!(err.is_corruption(), "{err}");
    let ro = Store::open_read_only(d).expect("readers go on");
    assert_eq!(ro.get(&old).unwrap(), b"checkpointed");
    assert!(ro.get(&newer).is_err(), "what only the damaged log held is not read");
    let rep = ro.maintenance().verify().unwrap();
    assert!(!rep.is_clean());
    assert!(rep.problems.iter().any(|p| p.file == log), "{:?}", rep.problems);
    drop(ro);
    let ls = std::process::Command::new(common::aslctl_bin())
        .args(["--store", d.to_str().unwrap(), "ls"])
        .output()
        .unwrap();
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
    assert!(String::from_utf8_lossy(&ls.stdout).contains(&old.to_hex().to_string()));
    Store::repair(d).unwrap();
    let s = Store::open(d).unwrap();
    assert_eq!(s.get(&old).unwrap(), b"checkpointed");
    s.put(b"writable again").unwrap();
    s.commit().unwrap();
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// A damaged snapshot file fails alone: the store opens for writing, reads at
/// other snapshots and CURRENT work, reads at it and `verify` report it, GC
/// keeps everything it may have held, and `snapshot delete` and `repair` work.
#[test]
fn a_damaged_snapshot_fails_alone() {
    for at in [20usize, 200] {
        // 20: inside the header (the file does not open); 200: inside the body.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = StoreOptions::new().create(true).open(d).unwrap();
        let kept = s.put(&noise(1, 3000)).unwrap();
        let only_a = s.put(&noise(2, 3000)).unwrap();
        // Garbage in the same segment, so that GC repacks it.
        let junk = s.put(&noise(4, 9000)).unwrap();
        s.remove(&junk).unwrap();
        s.snapshots().create("a").unwrap();
        s.remove(&only_a).unwrap();
        s.put(&noise(3, 3000)).unwrap();
        s.snapshots().create("b").unwrap();
        s.maintenance().seal().unwrap();
        s.close().unwrap();
        let ident = Store::open_read_only(d).unwrap().snapshots().get("a").unwrap().identity;
        flip(&d.join("snapshots").join(format!("{ident}.idx")), at);

        let s = Store::open(d).unwrap();
        assert!(s.at("a").and_then(|v| v.get(&only_a)).unwrap_err().is_corruption());
        assert_eq!(s.at("b").unwrap().get(&kept).unwrap(), noise(1, 3000));
        assert!(s.snapshots().diff("a", "b").unwrap_err().is_corruption());
        let rep = s.maintenance().verify().unwrap();
        assert!(
            rep.problems.iter().any(|p| p.detail.contains("snapshot a is damaged")),
            "{:?}",
            rep.problems
        );
        s.put(b"still writable").unwrap();
        s.commit().unwrap();
        // GC must assume the damaged snapshot holds the removed artifact.
        let g = s
            .maintenance()
            .gc(&asl::GcOptions {
                threshold: 1.0,
                ..Default::default()
            })
            .unwrap();
        assert!(g.reclaimed_bytes > 0, "{g:?}");
        drop(s);
        assert!(on_disk(d, &noise(2, 3000)), "GC dropped what the damaged snapshot held");
        let r = Store::repair(d).unwrap();
        assert!(
            r.lost.iter().any(|l| l.contains("snapshot a is damaged")) && !r.is_complete(),
            "{r:?}"
        );
        let s = Store::open(d).unwrap();
        assert!(s.at("a").is_ok(), "repair dropped the damaged snapshot's catalog entry");
        s.snapshots().delete("a").unwrap();
        assert!(
            s.maintenance().verify().unwrap().is_clean(),
            "{:?}",
            s.maintenance().verify().unwrap().problems
        );
        assert_eq!(s.get(&kept).unwrap(), noise(1, 3000));
        drop(s);
    }
}

/// Segments do not carry placements: repair takes each artifact's domain,
/// visibility and source from the old index files and log, so a healthy
/// store repaired still serves what it published and keeps where its
/// imports came from. A large (chunk-tree) artifact and a CDC one too.
#[test]
fn repair_keeps_each_artifacts_placement() {
    use asl::{DomainId, Placement, PutOptions, Visibility};
    let dir = tempfile::tempdir().unwrap();
    let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
    let published = Placement {
        visibility: Visibility::Published,
        ..Placement::LOCAL
    };
    let imported = Placement {
        domain: DomainId(7),
        visibility: Visibility::Internal,
        source: Some(DomainId(7)),
    };
    let opts = |p: Placement| {
        PutOptions::new()
            .domain(p.domain)
            .visibility(p.visibility)
            .source(p.source)
    };
    let mut want = Vec::new();
    for (i, (p, len)) in [
        (published, 900),
        (imported, 900),
        (Placement::LOCAL, 900),
        (published, 9 << 20),
    ]
    .into_iter()
    .enumerate()
    {
        let b = noise(i as u64, len);
        s.put_with(&b, &opts(p)).unwrap();
        want.push((b, p));
    }
    // Those above in an index file; these only in the log.
    s.maintenance().checkpoint().unwrap();
    for (i, p) in [(10u64, published), (11, imported)] {
        let b = noise(i, 700);
        s.put_with(&b, &opts(p)).unwrap();
        want.push((b, p));
    }
    s.close().unwrap();
    let r = Store::repair(dir.path()).unwrap();
    assert!(r.lost.is_empty(), "{r:?}");
    let s = StoreOptions::new().open(dir.path()).unwrap();
    for (b, p) in &want {
        // A put of what is there stores nothing and reports its placement.
        let got = s.put_with(b, &PutOptions::new()).unwrap();
        assert!(!got.new);
        assert_eq!(got.placement, *p, "{} ({} bytes)", got.id, b.len());
    }
}
