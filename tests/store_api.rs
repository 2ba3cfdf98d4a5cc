//! Black-box tests of the library API: round trips, durability across reopen,
//! streaming, locking, recovery from torn tails, corruption and repair.

mod common;
use common::{copy_dir, noise};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use asl::{ArtifactId, Error, Store, StoreOptions};

fn small_opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .block_target(4096)
        .small_threshold(2048)
        .chunk_size(4096)
        .segment_target(64 << 10)
}

#[test]
fn put_get_remove_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Vec<u8>> = (0..300).map(|i| noise(i, (i as usize * 37) % 5000)).collect();
    let ids: Vec<ArtifactId>;
    {
        let s = small_opts().open(dir.path()).unwrap();
        ids = items.iter().map(|b| s.put(b).unwrap()).collect();
        for (id, b) in ids.iter().zip(&items) {
            assert_eq!(id.to_hex(), blake3::hash(b).to_hex().as_str());
            assert_eq!(&s.get(id).unwrap(), b, "read-your-writes before commit");
        }
        s.commit().unwrap();
        assert!(s.remove(&ids[0]).unwrap());
        assert!(!s.remove(&ids[0]).unwrap());
        s.commit().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert!(matches!(s.get(&ids[0]), Err(Error::NotFound(_))));
    for (id, b) in ids.iter().zip(&items).skip(1) {
        assert_eq!(&s.get(id).unwrap(), b);
    }
    let listed: Vec<ArtifactId> = s.list().unwrap().into_iter().map(|a| a.id).collect();
    let mut want: Vec<ArtifactId> = ids[1..].to_vec();
    want.sort();
    want.dedup();
    assert_eq!(listed, want);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn uncommitted_writes_are_dropped_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let kept = s.put(b"kept").unwrap();
    s.commit().unwrap();
    let lost = s.put(&noise(1, 10_000)).unwrap();
    // Simulate a crash: skip Drop's commit.
    std::mem::forget(s);
    let s = Store::open(dir.path());
    // The forgotten store still holds the lock in this process (flock is per open
    // file description), so a second open must be refused...
    assert!(matches!(s, Err(Error::Locked { .. })));
    // ...while a read-only open sees exactly the committed state.
    let r = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(r.get(&kept).unwrap(), b"kept");
    assert!(!r.contains(&lost).unwrap());
}

#[test]
fn dedup_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let big = noise(9, 50_000);
    let a = s.put(&big).unwrap();
    s.commit().unwrap();
    let before = s.maintenance().stat().unwrap().physical_bytes;
    for _ in 0..5 {
        assert_eq!(s.put(&big).unwrap(), a);
        assert_eq!(s.put_reader(&big[..]).unwrap(), a);
        assert_eq!(s.put(b"tiny").unwrap(), ArtifactId::of(b"tiny"));
    }
    s.commit().unwrap();
    let after = s.maintenance().stat().unwrap();
    assert_eq!(after.artifacts, 2);
    assert!(
        after.physical_bytes < before + 1024,
        "{} vs {before}",
        after.physical_bytes
    );
}

#[test]
fn large_streaming_reader_and_seek() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().compression(Some(1)).open(dir.path()).unwrap();
    let mut data = noise(3, 100_000);
    data.extend(std::iter::repeat_n(7u8, 50_000));
    let id = s.put_reader(&data[..]).unwrap();
    s.commit().unwrap();
    assert_eq!(s.get(&id).unwrap(), data);
    let mut r = s.open_reader(&id).unwrap();
    assert_eq!(r.len(), data.len() as u64);
    for at in [0u64, 1, 4095, 4096, 70_000, 149_999] {
        r.seek(SeekFrom::Start(at)).unwrap();
        let mut b = [0u8; 300];
        let n = r.read(&mut b).unwrap();
        assert!(n > 0);
        assert_eq!(&b[..n], &data[at as usize..at as usize + n]);
    }
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 10..]);
}

#[test]
fn put_file_detects_dedup_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("input.bin");
    fs::write(&f, noise(5, 300_000)).unwrap();
    let s = small_opts().open(dir.path().join("store")).unwrap();
    let opts = asl::PutOptions::new();
    let p1 = s.put_file_with(&f, &opts).unwrap();
    assert!(p1.new);
    let p2 = s.put_file_with(&f, &opts).unwrap();
    assert!(!p2.new);
    assert_eq!(p1.id, p2.id);
    assert_eq!(p1.id.to_hex(), blake3::hash(&fs::read(&f).unwrap()).to_hex().as_str());
    // The plain form gives the id, and takes any path-like argument.
    assert_eq!(s.put_file(f.to_str().unwrap()).unwrap(), p1.id);
}

#[test]
fn prefix_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let ids: Vec<ArtifactId> = (0..64u32).map(|i| s.put(&i.to_le_bytes()).unwrap()).collect();
    s.commit().unwrap();
    s.maintenance().checkpoint().unwrap();
    let id = ids[5];
    assert_eq!(s.resolve(&id.to_hex()[..12]).unwrap(), id);
    assert!(matches!(s.resolve("zz"), Err(Error::InvalidId { .. })));
    let first = &id.to_hex()[..1];
    assert!(matches!(s.resolve(first), Err(Error::AmbiguousPrefix { .. })));
    let missing = (0..16u8)
        .map(|n| format!("{n:x}{:x}", 0))
        .find(|p| !ids.iter().any(|i| i.to_hex().starts_with(p.as_str())));
    if let Some(p) = missing {
        assert!(matches!(s.resolve(&p), Err(Error::PrefixNotFound(_))));
    }
}

#[test]
fn second_writer_is_refused_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_opts().open(dir.path()).unwrap();
    let id = w.put(b"one").unwrap();
    w.commit().unwrap();
    // The refusal names the holder from the note it left in the lock, and
    // where it serves the store once it says so.
    let refused = |url: Option<&str>| match Store::open(dir.path()) {
        Err(Error::Locked { path, holder }) => {
            assert!(path.ends_with("LOCK"));
            let h = holder.expect("the holder left a note");
            assert_eq!(h.pid, std::process::id());
            assert_eq!(h.url.as_deref(), url);
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second writer"),
    };
    refused(None);
    w.maintenance().announce("http://127.0.0.1:1").unwrap();
    refused(Some("http://127.0.0.1:1"));
    let e = Store::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("serving it at http://127.0.0.1:1"), "{e}");
    let r = Store::open_read_only(dir.path()).unwrap();
    assert!(matches!(r.maintenance().announce("http://x"), Err(Error::ReadOnly)));
    assert_eq!(r.get(&id).unwrap(), b"one");
    assert!(matches!(r.put(b"x"), Err(Error::ReadOnly)));
}

#[test]
fn concurrent_reads_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(small_opts().memtable_limit(500).open(dir.path()).unwrap());
    let first: Vec<ArtifactId> = (0..200u32).map(|i| s.put(&noise(i as u64, 700)).unwrap()).collect();
    s.commit().unwrap();
    std::thread::scope(|sc| {
        let s2 = s.clone();
        sc.spawn(move || {
            for i in 200..3000u32 {
                s2.put(&noise(i as u64, 700)).unwrap();
                if i % 97 == 0 {
                    s2.commit().unwrap();
                }
            }
            s2.commit().unwrap();
        });
        for _ in 0..20 {
            for (i, id) in first.iter().enumerate() {
                assert_eq!(s.get(id).unwrap(), noise(i as u64, 700));
            }
        }
    });
    assert_eq!(s.maintenance().stat().unwrap().artifacts, 3000);
}

#[test]
fn checkpoint_compaction_keeps_state_and_identity() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts()
        .memtable_limit(50)
        .max_index_files(2)
        .open(dir.path())
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..1000u32 {
        ids.push(s.put(&noise(i as u64, 100)).unwrap());
        if i % 10 == 9 {
            s.commit().unwrap();
        }
        if i % 7 == 0 {
            s.remove(&ids[i as usize / 2]).unwrap();
        }
    }
    s.commit().unwrap();
    let before = s.maintenance().stat().unwrap();
    assert!(before.index_files <= 3, "index files {}", before.index_files);
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let after = s.maintenance().stat().unwrap();
    assert_eq!(before.current_id, after.current_id);
    assert_eq!(before.artifacts, after.artifacts);
    assert_eq!(after.memtable_records, 0, "clean close leaves nothing to replay");
}

/// A checkpoint over too many index files merges the newest ones only while
/// they outweigh the next older one: a large base file is not rewritten for
/// a few new records, and tombstones merged into a newer file go on hiding
/// the records they removed in the base (only a merge of every file may drop
/// them).
#[test]
fn a_partial_merge_keeps_the_base_file_and_its_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts()
        .memtable_limit(100_000)
        .max_index_files(2)
        .open(dir.path())
        .unwrap();
    let ids: Vec<ArtifactId> = (0..2000).map(|i| s.put(&noise(i, 64)).unwrap()).collect();
    s.maintenance().checkpoint().unwrap();
    let base = index_files(dir.path());
    assert_eq!(base.len(), 1);
    for id in &ids[..5] {
        assert!(s.remove(id).unwrap());
    }
    s.maintenance().checkpoint().unwrap();
    for i in 0..3u64 {
        for j in 0..10 {
            s.put(&noise(10_000 + i * 100 + j, 64)).unwrap();
        }
        s.maintenance().checkpoint().unwrap();
        let files = index_files(dir.path());
        assert_eq!(files.len(), 2, "after merge {i}: {files:?}");
        assert!(
            files.contains(&base[0]),
            "the base file was rewritten for 10 records: {files:?}"
        );
    }
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    for id in &ids[..5] {
        assert!(!s.contains(id).unwrap(), "a removed artifact came back");
    }
    assert!(s.contains(&ids[5]).unwrap());
    assert_eq!(s.maintenance().stat().unwrap().artifacts, 2000 - 5 + 30);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

fn index_files(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".idx"))
        .collect();
    v.sort();
    v
}

#[test]
fn identity_ignores_physical_placement() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = small_opts().open(a.path()).unwrap();
    let sb = StoreOptions::new()
        .create(true)
        .compression(None)
        .open(b.path())
        .unwrap();
    for i in (0..100u64).rev() {
        sa.put(&noise(i, 3000)).unwrap();
    }
    for i in 0..100u64 {
        sb.put(&noise(i, 3000)).unwrap();
    }
    sa.commit().unwrap();
    sb.commit().unwrap();
    assert_eq!(
        sa.maintenance().current_id().unwrap(),
        sb.maintenance().current_id().unwrap()
    );
    sb.remove(&ArtifactId::of(&noise(0, 3000))).unwrap();
    assert_ne!(
        sa.maintenance().current_id().unwrap(),
        sb.maintenance().current_id().unwrap()
    );
}

fn append_garbage(p: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(bytes).unwrap();
}

fn only_file(dir: &Path) -> std::path::PathBuf {
    let mut v: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v.pop().unwrap()
}

#[test]
fn torn_tails_of_segment_and_log_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    {
        let s = small_opts().segment_target(1 << 30).open(dir.path()).unwrap();
        for i in 0..50u64 {
            acked.push((s.put(&noise(i, 900)).unwrap(), noise(i, 900)));
        }
        s.commit().unwrap();
        std::mem::forget(s);
    }
    let seg = only_file(&dir.path().join("segments"));
    let log = only_file(&dir.path().join("log"));
    // A torn write: garbage past the committed end of both files, and a partial
    // record that claims a plausible length.
    append_garbage(&seg, &noise(77, 3000));
    let mut torn = vec![60u8, 0, 0, 0, 1, 2, 3, 4];
    torn.extend(noise(78, 30));
    append_garbage(&log, &torn);
    let seg_len = fs::metadata(&seg).unwrap().len();
    let s = open_retry(dir.path());
    for (id, b) in &acked {
        assert_eq!(&s.get(id).unwrap(), b);
    }
    assert!(fs::metadata(&seg).unwrap().len() < seg_len, "segment tail cut");
    assert!(s.maintenance().verify().unwrap().is_clean());
    let id = s.put(b"after recovery").unwrap();
    s.commit().unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.get(&id).unwrap(), b"after recovery");
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// Opens a store left behind by a leaked (`mem::forget`) handle. That handle
/// still holds the flock, so the "crashed" directory is copied, as a disk image
/// would be, and the copy is opened in its place.
fn open_retry(dir: &Path) -> Store {
    match Store::open(dir) {
        Ok(s) => s,
        Err(Error::Locked { .. }) => {
            let copy = tempfile::tempdir().unwrap().keep();
            copy_dir(dir, &copy);
            fs::remove_dir_all(dir).unwrap();
            fs::rename(&copy, dir).unwrap_or_else(|_| copy_dir(&copy, dir));
            Store::open(dir).unwrap()
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bit_flip_in_sealed_segment_is_reported_and_contained() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Vec<u8>> = (0..40u64).map(|i| noise(i, 1000)).collect();
    let ids: Vec<ArtifactId>;
    {
        let s = small_opts().open(dir.path()).unwrap();
        ids = items.iter().map(|b| s.put(b).unwrap()).collect();
        s.maintenance().seal().unwrap();
    }
    // Find where artifact 7's bytes are and flip one of them.
    let seg = only_file(&dir.path().join("segments"));
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.windows(64).position(|w| w == &items[7][100..164]).unwrap();
    bytes[at + 10] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();

    let s = Store::open(dir.path()).unwrap();
    match s.get(&ids[7]) {
        Err(Error::CorruptArtifact { id, file, .. }) => {
            assert_eq!(id, ids[7]);
            assert_eq!(file, seg);
        }
        other => panic!("expected corruption, got {:?}", other.map(|v| v.len())),
    }
    for (i, (id, b)) in ids.iter().zip(&items).enumerate() {
        if i != 7 {
            assert_eq!(&s.get(id).unwrap(), b, "artifact {i} should still read");
        }
    }
    let rep = s.maintenance().verify().unwrap();
    assert!(!rep.is_clean());
    assert!(rep
        .problems
        .iter()
        .any(|p| p.artifact.as_deref() == Some(ids[7].to_hex().as_str())));
    assert!(rep.problems.iter().all(|p| p.file == seg));
}

#[test]
fn repair_rebuilds_index_and_log_from_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Vec::new();
    let removed;
    let current;
    {
        let s = small_opts().memtable_limit(100).open(dir.path()).unwrap();
        for i in 0..400u64 {
            let len = if i % 50 == 0 { 20_000 } else { 500 + i as usize };
            live.push((s.put(&noise(i, len)).unwrap(), noise(i, len)));
        }
        s.commit().unwrap();
        removed = live.remove(3).0;
        s.remove(&removed).unwrap();
        // Removed then put back: must come back as live after repair.
        let again = live[10].clone();
        s.remove(&again.0).unwrap();
        s.put(&again.1).unwrap();
        s.commit().unwrap();
        current = s.maintenance().current_id().unwrap();
    }
    for d in ["index", "log"] {
        fs::remove_dir_all(dir.path().join(d)).unwrap();
    }
    fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    assert!(Store::open(dir.path()).is_err());
    let rep = Store::repair(dir.path()).unwrap();
    assert_eq!(rep.artifacts as usize, live.len());
    let s = Store::open(dir.path()).unwrap();
    for (id, b) in &live {
        assert_eq!(&s.get(id).unwrap(), b);
    }
    assert!(!s.contains(&removed).unwrap());
    assert_eq!(s.maintenance().current_id().unwrap(), current);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn foreign_and_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    assert!(matches!(Store::create(dir.path()), Err(Error::NotAStore { .. })));
    assert!(matches!(Store::open(dir.path()), Err(Error::NotAStore { .. })));

    let dir = tempfile::tempdir().unwrap();
    {
        let s = small_opts().open(dir.path()).unwrap();
        s.put(&noise(1, 5000)).unwrap();
        s.maintenance().seal().unwrap();
    }
    let seg = only_file(&dir.path().join("segments"));
    let good = fs::read(&seg).unwrap();
    fs::write(&seg, &good[..good.len() - 7]).unwrap();
    let e = Store::open(dir.path())
        .err()
        .expect("truncated sealed segment must not open");
    assert!(e.is_corruption(), "{e}");
    fs::write(&seg, b"this is not a segment at all, just text").unwrap();
    assert!(Store::open(dir.path()).err().unwrap().is_corruption());
    fs::write(&seg, &good).unwrap();
    assert!(Store::open(dir.path()).is_ok(), "restoring the file restores the store");
    fs::write(dir.path().join("CHECKPOINT"), b"garbage").unwrap();
    assert!(Store::open(dir.path()).err().unwrap().is_corruption());
}

#[test]
fn put_batch_matches_single_puts() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let mut items: Vec<Vec<u8>> = (0..500u64).map(|i| noise(i, (i as usize * 13) % 3000)).collect();
    items.push(items[3].clone());
    items.push(noise(1000, 50_000));
    let opts = asl::PutOptions::new();
    assert_eq!(
        s.put_batch(&items[..3]).unwrap(),
        items[..3].iter().map(|b| ArtifactId::of(b)).collect::<Vec<_>>(),
        "the plain form gives the ids"
    );
    let puts = s.put_batch_with(&items, &opts).unwrap();
    assert_eq!(puts.len(), items.len());
    for (p, b) in puts.iter().zip(&items) {
        assert_eq!(p.id, ArtifactId::of(b));
        assert_eq!(&s.get(&p.id).unwrap(), b);
    }
    assert!(puts[3].new);
    assert!(!puts[500].new, "a duplicate inside the batch is stored once");
    s.commit().unwrap();
    let again = s.put_batch_with(&items, &opts).unwrap();
    assert!(again.iter().all(|p| !p.new));
}

#[test]
fn put_file_progress_rises_to_the_length() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("input.bin");
    fs::write(&f, noise(11, 20 << 20)).unwrap();
    let s = small_opts().open(dir.path().join("store")).unwrap();
    for expect_new in [true, false] {
        let mut seen = Vec::new();
        let p = s
            .put_file_with_progress(&f, &asl::PutOptions::new(), &mut |d| seen.push(d))
            .unwrap();
        assert_eq!(p.new, expect_new);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress went backwards");
        assert_eq!(*seen.last().unwrap(), 20 << 20);
        if expect_new {
            assert!(seen.len() > 4, "a 20 MiB file should report progress along the way");
        }
    }
}

/// Found by the model test: a re-put still in the write buffer must be visible
/// even though the index holds a tombstone for the same id.
#[test]
fn put_remove_put_get_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_opts().open(dir.path()).unwrap();
    let b = noise(2, 1528);
    let id = s.put(&b).unwrap();
    assert!(s.remove(&id).unwrap());
    assert!(!s.contains(&id).unwrap());
    assert_eq!(s.put(&b).unwrap(), id);
    assert!(s.contains(&id).unwrap());
    assert_eq!(s.get(&id).unwrap(), b);
    assert_eq!(s.len_of(&id).unwrap(), b.len() as u64);
    assert_eq!(s.resolve(&id.to_hex()[..10]).unwrap(), id);
    s.commit().unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.get(&id).unwrap(), b);
}

/// A program that spawns processes while it opens stores: a child forked while
/// a lock file is open holds that lock until it execs. Creating and reopening
/// stores must not report `Locked` because of it.
#[test]
fn open_is_not_refused_while_other_threads_spawn_processes() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        })
    };
    let root = tempfile::tempdir().unwrap();
    let result = std::panic::catch_unwind(|| {
        for i in 0..150 {
            let dir = root.path().join(format!("s{i}"));
            let s = Store::create(&dir).unwrap_or_else(|e| panic!("create {i}: {e}"));
            s.put(b"x").unwrap();
            s.close().unwrap();
            Store::open(&dir).unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
    result.unwrap();
}

/// A put with an expected id stores nothing when the bytes hash to another
/// (small: refused before writing; large: what it wrote is cut off), and
/// stores them when they match.
#[test]
fn a_put_with_a_wrong_expected_id_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::create(dir.path()).unwrap();
    for len in [100usize, 3 << 20] {
        let bytes = noise(len as u64, len);
        let wrong = ArtifactId::of(b"not these bytes");
        let opts = asl::PutOptions::new().expect(Some(wrong));
        match s.put_reader_with(&bytes[..], &opts) {
            Err(Error::IdMismatch(x)) => assert_eq!(x, wrong),
            other => panic!("{len}: {other:?}"),
        }
        s.commit().unwrap();
        assert!(!s.contains(&ArtifactId::of(&bytes)).unwrap(), "{len}: nothing stored");
        let right = asl::PutOptions::new().expect(Some(ArtifactId::of(&bytes)));
        let put = s.put_reader_with(&bytes[..], &right).unwrap();
        assert_eq!(put.id, ArtifactId::of(&bytes));
    }
    s.commit().unwrap();
    let report = s.maintenance().verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A pushed stream, written in pieces of every size: stored as one
/// artifact on commit, the same id as a put of the same bytes, nothing at
/// all when the writer is dropped, and refused whole when it is not the id
/// expected.
#[test]
fn a_put_writer_stores_pushed_bytes_on_commit_and_nothing_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(small_opts().open(dir.path()).unwrap());
    let big = noise(77, 3_000_000);
    let mut w = asl::PutWriter::new(s.clone(), asl::PutOptions::new().sha256(true));
    let mut at = 0;
    for n in (1..).map(|i: usize| (i * 7919) % 300_000 + 1) {
        let end = (at + n).min(big.len());
        w.write_all(&big[at..end]).unwrap();
        at = end;
        if at == big.len() {
            break;
        }
    }
    let put = w.commit().unwrap();
    assert_eq!(put.id, ArtifactId::of(&big));
    assert!(put.new && put.len == big.len() as u64 && put.sha256.is_some());
    s.commit().unwrap();
    assert_eq!(s.get(&put.id).unwrap(), big);

    // Small, and a duplicate.
    let mut w = asl::PutWriter::new(s.clone(), asl::PutOptions::new());
    w.write_all(b"small").unwrap();
    assert_eq!(w.commit().unwrap().id, ArtifactId::of(b"small"));
    let mut w = asl::PutWriter::new(s.clone(), asl::PutOptions::new());
    w.write_all(&big).unwrap();
    assert!(!w.commit().unwrap().new);

    // Dropped half-way: nothing of it is stored, the store stays whole.
    let other = noise(78, 2_000_000);
    s.commit().unwrap();
    let before = s.maintenance().stat().unwrap().artifacts;
    let mut w = asl::PutWriter::new(s.clone(), asl::PutOptions::new());
    w.write_all(&other[..1_500_000]).unwrap();
    drop(w);
    s.commit().unwrap();
    assert!(s.get(&ArtifactId::of(&other)).is_err());
    assert!(
        s.get(&ArtifactId::of(&other[..1_500_000])).is_err(),
        "no short artifact"
    );
    assert_eq!(s.maintenance().stat().unwrap().artifacts, before);

    // Not the id expected: refused at commit, nothing kept.
    let mut w = asl::PutWriter::new(s.clone(), asl::PutOptions::new().expect(Some(ArtifactId::of(b"else"))));
    w.write_all(&other).unwrap();
    assert!(matches!(w.commit(), Err(asl::Error::IdMismatch(_))));
    s.commit().unwrap();
    assert!(s.get(&ArtifactId::of(&other)).is_err());
    assert!(s.maintenance().verify().unwrap().is_clean());
}
