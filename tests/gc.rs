//! Snapshots, pins, retention and GC through the library.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use asl::{ArtifactId, Error, GcOptions, Retention, Store, StoreOptions};
use common::noise;

fn small_opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .block_target(8 << 10)
        .small_threshold(16 << 10)
        .chunk_size(16 << 10)
        .segment_target(64 << 10)
        .memtable_limit(500)
        .max_index_files(2)
}

fn gc(s: &Store) -> asl::GcReport {
    s.maintenance().gc(&GcOptions::default()).unwrap()
}

/// Bytes of all segment files.
fn segment_bytes(s: &Store) -> u64 {
    std::fs::read_dir(s.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn snapshot_keeps_removed_artifact_until_deleted_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let keep: Vec<ArtifactId> = (0..50).map(|i| s.put(&noise(i, 3000)).unwrap()).collect();
    let big = noise(999, 100_000);
    let doomed_big = s.put(&big).unwrap();
    let doomed: Vec<ArtifactId> = (100..150).map(|i| s.put(&noise(i, 3000)).unwrap()).collect();
    s.commit().unwrap();
    let before = s.maintenance().current_id().unwrap();
    let snap = s.snapshots().create("before-cleanup").unwrap();
    assert_eq!(snap.identity, before, "a snapshot's identity is CURRENT's");
    assert_eq!(snap.artifacts, 101);
    for id in doomed.iter().chain([&doomed_big]) {
        assert!(s.remove(id).unwrap());
    }
    s.commit().unwrap();
    gc(&s);
    let at = s.at(&snap).unwrap();
    for (i, id) in (100..150).zip(&doomed) {
        assert!(!s.contains(id).unwrap());
        assert_eq!(at.get(id).unwrap(), noise(i, 3000), "removed but snapshotted");
    }
    assert_eq!(at.get(&doomed_big).unwrap(), big);
    assert_eq!(at.list().unwrap().len(), 101);
    assert!(s.maintenance().verify().unwrap().is_clean());
    // Survives reopen, including the catalog and the retained bytes.
    drop(at);
    s.close().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    assert_eq!(s.snapshots().list().len(), 1);
    assert_eq!(
        s.at("before-cleanup").unwrap().get(&doomed[7]).unwrap(),
        noise(107, 3000)
    );
    let physical_before = segment_bytes(&s);
    s.snapshots().delete("before-cleanup").unwrap();
    let r = gc(&s);
    assert!(r.reclaimed_bytes > 0);
    for id in doomed.iter().chain([&doomed_big]) {
        assert!(matches!(s.get(id), Err(Error::NotFound(_))));
    }
    for (i, id) in keep.iter().enumerate() {
        assert_eq!(s.get(id).unwrap(), noise(i as u64, 3000));
    }
    let physical_after = segment_bytes(&s);
    // 50 × 3000 + 100 000 bytes of incompressible garbage went away.
    assert!(
        physical_before - physical_after >= 200_000,
        "{physical_before} -> {physical_after}"
    );
    let st = s.maintenance().stat().unwrap();
    assert!(st.garbage_bytes < st.live_bytes, "{st:?}");
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn gc_reclaims_everything_garbage_and_keeps_identity() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let ids: Vec<ArtifactId> = (0..400).map(|i| s.put(&noise(i, 1000 + i as usize)).unwrap()).collect();
    s.commit().unwrap();
    for id in ids.iter().step_by(2) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    let ident = s.maintenance().current_id().unwrap();
    let dry = s
        .maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: true,
        })
        .unwrap();
    assert!(dry.garbage_before > 0 && dry.segments_deleted > 0);
    let seg_before = segment_bytes(&s);
    let r = s
        .maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert!(
        segment_bytes(&s) < seg_before,
        "repacking half-dead segments shrinks them"
    );
    assert_eq!(r.garbage_after, 0, "{r:?}");
    assert!(r.artifacts_copied >= 100, "{r:?}");
    assert!(r.peak_memory_bytes > 0);
    assert_eq!(
        s.maintenance().current_id().unwrap(),
        ident,
        "GC changes no logical content"
    );
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(s.get(id).unwrap(), noise(i as u64, 1000 + i));
        } else {
            assert!(!s.contains(id).unwrap());
        }
    }
    // A second run finds nothing to do.
    let again = gc(&s);
    assert_eq!(again.segments_deleted, 0, "{again:?}");
    s.close().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    assert_eq!(s.maintenance().current_id().unwrap(), ident);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn pins_are_roots() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let a = s.put(&noise(1, 5000)).unwrap();
    let b = s.put(&noise(2, 5000)).unwrap();
    s.pins().add("keep-a", &a).unwrap();
    s.pins().add("keep-a", &a).unwrap(); // the same pin again: a no-op
                                         // A name holding another artifact is not moved silently.
    assert!(matches!(s.pins().add("keep-a", &b), Err(Error::PinExists { id, .. }) if id == a));
    assert_eq!(s.pins().list(), vec![("keep-a".to_string(), a)]);
    s.pins().set("moving", &a).unwrap();
    s.pins().set("moving", &b).unwrap();
    assert_eq!(s.pins().remove("moving").unwrap(), b);
    assert!(matches!(s.pins().add("bad name", &a), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        s.pins().add("ghost", &ArtifactId::of(b"never stored")),
        Err(Error::NotFound(_))
    ));
    s.remove(&a).unwrap();
    s.remove(&b).unwrap();
    s.commit().unwrap();
    s.maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    s.close().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    assert_eq!(s.pins().list(), vec![("keep-a".to_string(), a)]);
    // Pinned but not in CURRENT: a pin can be re-pinned under another name.
    s.pins().add("keep-a-too", &a).unwrap();
    assert_eq!(s.pins().remove("keep-a").unwrap(), a);
    assert!(matches!(s.pins().remove("keep-a"), Err(Error::PinNotFound(_))));
    s.pins().remove("keep-a-too").unwrap();
    let r = gc(&s);
    assert!(r.segments_deleted > 0, "{r:?}");
    assert_eq!(segment_bytes(&s), 0, "nothing is retained any more");
}

#[test]
fn re_put_of_removed_artifact_held_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let x = s.put(&noise(5, 2000)).unwrap();
    s.snapshots().create("s").unwrap();
    s.remove(&x).unwrap();
    s.put(&noise(5, 2000)).unwrap();
    s.remove(&x).unwrap();
    s.put(&noise(5, 2000)).unwrap();
    s.commit().unwrap();
    s.maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert_eq!(s.get(&x).unwrap(), noise(5, 2000));
    assert_eq!(s.at("s").unwrap().get(&x).unwrap(), noise(5, 2000));
    s.snapshots().delete("s").unwrap();
    s.remove(&x).unwrap();
    s.commit().unwrap();
    gc(&s);
    assert_eq!(segment_bytes(&s), 0);
}

#[test]
fn snapshot_catalog_diff_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let a = s.put(b"alpha").unwrap();
    let one = s.snapshots().create("one").unwrap();
    assert!(matches!(s.snapshots().create("one"), Err(Error::SnapshotExists(_))));
    assert!(matches!(
        s.snapshots().create("no/slash"),
        Err(Error::InvalidArgument(_))
    ));
    let b = s.put(b"beta").unwrap();
    s.remove(&a).unwrap();
    s.snapshots().create("two").unwrap();
    // Same content as "two": shares its file, same identity.
    let three = s.snapshots().create("three").unwrap();
    assert_eq!(three.identity, s.snapshots().get("two").unwrap().identity);
    assert_ne!(three.identity, one.identity);
    let d = s.snapshots().diff("one", "two").unwrap();
    assert_eq!(d.added.iter().map(|i| i.id).collect::<Vec<_>>(), vec![b]);
    assert_eq!(d.removed.iter().map(|i| i.id).collect::<Vec<_>>(), vec![a]);
    assert!(s.snapshots().diff("two", "three").unwrap().added.is_empty());
    assert!(matches!(s.at("nope"), Err(Error::SnapshotNotFound(_))));
    assert!(matches!(
        s.snapshots().prune(&Retention::default(), false),
        Err(Error::InvalidArgument(_))
    ));
    let p = Retention {
        keep_last: Some(1),
        keep_names: vec!["one".into()],
        ..Default::default()
    };
    // All three were made within the same second; keep-last 1 keeps the one
    // whose name sorts last among equals, deterministically.
    let doomed = s.snapshots().prune(&p, true).unwrap();
    assert_eq!(doomed.len(), 1);
    assert_eq!(s.snapshots().list().len(), 3, "dry run changes nothing");
    s.snapshots().prune(&p, false).unwrap();
    assert_eq!(s.snapshots().list().len(), 2);
    // Deleting one of two names sharing a file keeps the file for the other.
    let left: Vec<String> = s.snapshots().list().into_iter().map(|m| m.name).collect();
    assert!(left.contains(&"one".to_string()));
    let other = left.iter().find(|n| *n != "one").unwrap().clone();
    assert_eq!(s.at(&other).unwrap().get(&b).unwrap(), b"beta");
    s.close().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    assert_eq!(s.at("one").unwrap().get(&a).unwrap(), b"alpha");
    assert_eq!(s.at("one").unwrap().resolve(&a.to_hex()[..6]).unwrap(), a);
}

#[test]
fn repair_keeps_snapshots_readable() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let ids: Vec<ArtifactId> = (0..60).map(|i| s.put(&noise(i, 2500)).unwrap()).collect();
    s.snapshots().create("base").unwrap();
    for id in &ids[..30] {
        s.remove(id).unwrap();
    }
    s.close().unwrap();
    // Lose the index and the log: repair rebuilds from segments and keeps the catalog.
    for d in ["index", "log"] {
        for e in std::fs::read_dir(dir.path().join(d)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    Store::repair(dir.path()).unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    gc(&s);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(s.at("base").unwrap().get(id).unwrap(), noise(i as u64, 2500));
        assert_eq!(s.contains(id).unwrap(), i >= 30);
    }
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// The classic race: GC starts while artifacts are dead, a writer puts them
/// again (deduplicated against nothing, since they are dead) while GC runs.
/// Every artifact the writer committed must stay readable.
#[test]
fn gc_racing_a_writer_loses_nothing() {
    for round in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(small_opts().open(dir.path()).unwrap());
        let n = 600u64;
        let ids: Vec<ArtifactId> = (0..n)
            .map(|i| s.put(&noise(round * 10_000 + i, 1500)).unwrap())
            .collect();
        s.commit().unwrap();
        s.snapshots().create("old").unwrap();
        for id in &ids {
            s.remove(id).unwrap();
        }
        s.commit().unwrap();
        s.snapshots().delete("old").unwrap();
        // Everything is dead now. A writer revives half of it (and writes new
        // things) while GC runs, over and over.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let s = s.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut committed: HashSet<u64> = HashSet::new();
                let mut pending = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) || i < n {
                    let seed = if i < n {
                        round * 10_000 + (i * 7 % n)
                    } else {
                        round * 10_000 + i
                    };
                    if i < n && i % 2 == 1 {
                        i += 1;
                        continue;
                    }
                    s.put(&noise(seed, 1500)).unwrap();
                    pending.push(seed);
                    if i.is_multiple_of(13) {
                        s.commit().unwrap();
                        committed.extend(pending.drain(..));
                    }
                    i += 1;
                }
                s.commit().unwrap();
                committed.extend(pending.drain(..));
                committed
            })
        };
        let mut runs = 0;
        while runs < 4 || !writer.is_finished() && runs < 40 {
            s.maintenance()
                .gc(&GcOptions {
                    threshold: 1.0,
                    dry_run: false,
                })
                .unwrap();
            runs += 1;
            if runs == 4 {
                stop.store(true, Ordering::Relaxed);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let committed = writer.join().unwrap();
        s.maintenance()
            .gc(&GcOptions {
                threshold: 1.0,
                dry_run: false,
            })
            .unwrap();
        for seed in &committed {
            let want = noise(*seed, 1500);
            assert_eq!(
                s.get(&ArtifactId::of(&want))
                    .unwrap_or_else(|e| panic!("round {round}: seed {seed} lost: {e}")),
                want
            );
        }
        let s = Arc::try_unwrap(s).ok().unwrap();
        s.close().unwrap();
        let s = small_opts().open(dir.path()).unwrap();
        for seed in &committed {
            let want = noise(*seed, 1500);
            assert_eq!(
                s.get(&ArtifactId::of(&want)).unwrap(),
                want,
                "round {round}: after reopen"
            );
        }
        assert!(s.maintenance().verify().unwrap().is_clean());
    }
}

#[test]
fn compaction_drops_tombstones_nothing_holds_and_keeps_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    // With one index file allowed, every checkpoint merges all of them (a
    // partial merge must keep every tombstone: see store_api's
    // `a_partial_merge_keeps_the_base_file_and_its_tombstones`).
    let s = small_opts().max_index_files(1).open(dir.path()).unwrap();
    let ids: Vec<ArtifactId> = (0..600).map(|i| s.put(&noise(i, 100)).unwrap()).collect();
    s.maintenance().checkpoint().unwrap();
    s.snapshots().create("half").unwrap();
    for id in &ids[..300] {
        s.remove(id).unwrap();
    }
    s.maintenance().checkpoint().unwrap();
    s.put(b"one more").unwrap();
    s.maintenance().checkpoint().unwrap();
    let held = s.maintenance().stat().unwrap().index_bytes;
    assert_eq!(s.at("half").unwrap().get(&ids[5]).unwrap(), noise(5, 100));
    // Without the snapshot the 300 tombstones have nothing to hold.
    s.snapshots().delete("half").unwrap();
    s.put(b"and another").unwrap();
    s.maintenance().checkpoint().unwrap();
    s.put(b"and a third").unwrap();
    s.maintenance().checkpoint().unwrap();
    let dropped = s.maintenance().stat().unwrap().index_bytes;
    assert!(
        held >= dropped + 280 * 56,
        "index {held} B with held tombstones, {dropped} B after they were dropped"
    );
    assert_eq!(s.list().unwrap().len(), 303);
}

/// A read-only handle opened before GC (here a writer handle in the same
/// process stands in for another process) verifies through the files it
/// opened: segments GC deletes under it still read, and verify is clean.
#[test]
fn a_read_only_verify_survives_gc_dropping_segments_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let ids: Vec<ArtifactId> = (0..200).map(|i| s.put(&noise(i, 2000)).unwrap()).collect();
    s.put(&noise(7777, 100_000)).unwrap();
    s.commit().unwrap();
    for id in &ids[..150] {
        s.remove(id).unwrap();
    }
    s.maintenance().seal().unwrap();
    let reader = StoreOptions::new().read_only(true).open(dir.path()).unwrap();
    let r = s
        .maintenance()
        .gc(&GcOptions {
            threshold: 0.9,
            dry_run: false,
        })
        .unwrap();
    assert!(r.segments_deleted + r.segments_repacked > 0, "{r:?}");
    let rep = reader.maintenance().verify().unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert!(rep.segments > 0);
    // GC measures the process, not only its own account of its buffers.
    if cfg!(target_os = "linux") {
        let rss = r.peak_rss_bytes.expect("peak RSS not measured on Linux");
        assert!(rss > r.peak_memory_bytes && rss > 1 << 20, "{r:?}");
        let heap = r.peak_heap_bytes.expect("heap not measured on Linux");
        assert!(heap > 0 && heap <= rss, "{r:?}");
    }
}

/// A victim holding a damaged block: GC leaves it whole (nothing repair could
/// still find is lost), names the damage, copies nothing from it (its bytes
/// are proven by the block checksum, which fails), and the writer keeps
/// working.
#[test]
fn gc_keeps_a_victim_whose_retained_artifact_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreOptions::new()
        .create(true)
        .compression(None)
        .open(dir.path())
        .unwrap();
    let items: Vec<(ArtifactId, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let b = noise(i, 1000);
            (s.put(&b).unwrap(), b)
        })
        .collect();
    s.commit().unwrap();
    s.maintenance().seal().unwrap();
    for (id, _) in items.iter().step_by(10) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    let seg = dir.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(32).position(|w| w == &items[5].1[..32]).unwrap() + 100;
    b[at] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    let s = Store::open(dir.path()).unwrap();
    let r = gc(&s);
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert!(r.skipped[0].starts_with("segment 1:"), "{r:?}");
    assert!(seg.exists(), "the victim holding a damaged artifact was deleted");
    assert_eq!(r.artifacts_copied, 0, "{r:?}");
    for (i, (id, b)) in items.iter().enumerate() {
        match i {
            5 => assert!(matches!(s.get(id), Err(Error::CorruptArtifact { .. }))),
            _ if i % 10 == 0 => assert!(matches!(s.get(id), Err(Error::NotFound(_)))),
            _ => assert_eq!(&s.get(id).unwrap(), b),
        }
    }
    let after = s.put(b"written after GC").unwrap();
    s.commit().unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.get(&after).unwrap(), b"written after GC");
    assert!(!s.maintenance().verify().unwrap().is_clean());
}

/// `gc --dry-run` predicts what the run then does, the chunk sweep
/// included: content-defined chunks no retained artifact names any more
/// and the segments that frees.
#[test]
fn a_dry_run_predicts_the_run_chunk_sweep_included() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let big: Vec<ArtifactId> = (0..6).map(|i| s.put(&noise(500 + i, 300_000)).unwrap()).collect();
    let small: Vec<ArtifactId> = (0..50).map(|i| s.put(&noise(600 + i, 2000)).unwrap()).collect();
    s.commit().unwrap();
    for id in big.iter().take(4).chain(small.iter().step_by(3)) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    s.maintenance().seal().unwrap();
    for threshold in [0.0, 0.95] {
        let opts = |dry_run| GcOptions { threshold, dry_run };
        let dry = s.maintenance().gc(&opts(true)).unwrap();
        let run = s.maintenance().gc(&opts(false)).unwrap();
        let key = |r: &asl::GcReport| {
            (
                r.chunks_swept,
                r.chunk_bytes_swept,
                r.segments_deleted,
                r.segments_repacked,
                r.reclaimed_bytes,
                r.live_after,
            )
        };
        assert_eq!(key(&dry), key(&run), "threshold {threshold}: dry {dry:?}\nrun {run:?}");
        if threshold == 0.0 {
            assert!(run.chunks_swept > 0 && run.reclaimed_bytes > 0, "{run:?}");
        }
    }
    for id in big.iter().skip(4) {
        assert!(s.get(id).is_ok());
    }
    assert!(s.maintenance().verify().unwrap().is_clean());
}
