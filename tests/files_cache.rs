//! The files cache of ingest: unchanged files are not read again, anything
//! that may have changed is, and the cache never vouches for an artifact the
//! store no longer holds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use asl::{ArtifactId, FilesCacheMode, IngestOptions, Store, StoreOptions};

fn ingest(s: &Store, dir: &Path, mode: FilesCacheMode) -> asl::IngestReport {
    let opts = IngestOptions {
        files_cache: mode,
        ..IngestOptions::default()
    };
    s.ingest(&[dir.to_path_buf()], &opts, &mut |_| {}).unwrap()
}

fn id_of(rep: &asl::IngestReport, p: &Path) -> ArtifactId {
    rep.files.iter().find(|f| f.path == p).unwrap().put.id
}

/// Past the timestamp granularity the cache allows for (1 s): files written
/// before this are settled for an ingest that starts after it.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

#[test]
fn unchanged_files_are_not_read_and_changed_ones_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = (0..40).map(|i| dir.join(format!("f{i}"))).collect();
    for (i, f) in files.iter().enumerate() {
        fs::write(f, format!("file {i} ").repeat(i * 50 + 1)).unwrap();
    }
    fs::write(dir.join("big"), vec![7u8; 300_000]).unwrap();
    settle();
    let s = StoreOptions::new().create(true).open(tmp.path().join("store")).unwrap();
    let first = ingest(&s, &dir, FilesCacheMode::Use);
    assert_eq!(first.cached_files, 0);
    let cache_file = tmp.path().join("store").join("files-cache");
    let written = fs::read(&cache_file).unwrap();
    let second = ingest(&s, &dir, FilesCacheMode::Use);
    assert_eq!(second.cached_files, 41, "unchanged files were read again");
    // Nothing was read, so nothing new was learnt: the cache file stays
    // byte for byte (rewriting it was a third of a re-ingest's time).
    assert_eq!(fs::read(&cache_file).unwrap(), written, "the files cache was rewritten");
    assert_eq!(
        first.files.iter().map(|f| f.put.id).collect::<Vec<_>>(),
        second.files.iter().map(|f| f.put.id).collect::<Vec<_>>()
    );

    // Same size, new content: ctime moves, so it is read again.
    let same_len = fs::read(&files[3]).unwrap().iter().map(|b| b ^ 1).collect::<Vec<u8>>();
    fs::write(&files[3], &same_len).unwrap();
    // A file written just now is recorded but not trusted until it settles.
    fs::write(dir.join("fresh"), b"just written").unwrap();
    let third = ingest(&s, &dir, FilesCacheMode::Use);
    assert_eq!(third.cached_files, 40, "a changed file was taken from the cache");
    assert_eq!(id_of(&third, &files[3]), ArtifactId::of(&same_len));
    let fourth = ingest(&s, &dir, FilesCacheMode::Use);
    assert!(
        fourth.cached_files < 42,
        "a racily clean entry (written within the granularity of its ingest) was trusted"
    );

    // The cache never vouches for an artifact the store dropped.
    let gone = id_of(&fourth, &files[5]);
    assert!(s.remove(&gone).unwrap());
    s.commit().unwrap();
    let fifth = ingest(&s, &dir, FilesCacheMode::Use);
    assert!(fifth.files.iter().any(|f| f.path == files[5] && f.put.new));
    assert!(s.contains(&gone).unwrap());

    // Refresh reads everything; a damaged cache is ignored and rewritten.
    let refresh = ingest(&s, &dir, FilesCacheMode::Refresh);
    assert_eq!(refresh.cached_files, 0);
    let cache = tmp.path().join("store").join("files-cache");
    let mut b = fs::read(&cache).unwrap();
    b[30] ^= 1;
    fs::write(&cache, &b).unwrap();
    settle();
    assert_eq!(ingest(&s, &dir, FilesCacheMode::Use).cached_files, 0);
    assert_eq!(ingest(&s, &dir, FilesCacheMode::Use).cached_files, 42);
    assert_eq!(ingest(&s, &dir, FilesCacheMode::Off).cached_files, 0);
}

#[test]
fn aslctl_ingest_uses_the_cache_unless_told_not_to() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        fs::write(dir.join(format!("f{i}")), format!("content {i}")).unwrap();
    }
    settle();
    let store = tmp.path().join("store");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aslctl"))
            .arg("--store")
            .arg(&store)
            .arg("ingest")
            .args(extra)
            .arg(&dir)
            .output()
            .unwrap()
    };
    let a = run(&[]);
    let b = run(&[]);
    let c = run(&["--no-cache"]);
    for o in [&a, &b, &c] {
        assert!(o.status.success());
    }
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, c.stdout);
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err(&a).contains("not read"), "{}", err(&a));
    assert!(err(&b).contains("5 unchanged files not read"), "{}", err(&b));
    assert!(!err(&c).contains("not read"), "{}", err(&c));
}

#[test]
fn the_cache_answers_each_file_of_a_large_tree_for_itself() {
    // More files than one stretch of the parallel lookups (4096), so that
    // every answer must land on its own file across stretches.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    let body = |i: usize, v: u8| format!("{v} {i:05}").into_bytes();
    let files: Vec<PathBuf> = (0..9000)
        .map(|i| dir.join(format!("d{:02}/f{i:05}", i / 700)))
        .collect();
    for (i, f) in files.iter().enumerate() {
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, body(i, 0)).unwrap();
    }
    settle();
    let s = StoreOptions::new().create(true).open(tmp.path().join("store")).unwrap();
    assert_eq!(ingest(&s, &dir, FilesCacheMode::Use).new_files, 9000);
    let changed = [7, 4095, 4096, 8191, 8999];
    for &i in &changed {
        fs::write(&files[i], body(i, 1)).unwrap();
    }
    // One whose artifact the store dropped, in the last stretch.
    let dropped = 8500;
    assert!(s.remove(&ArtifactId::of(&body(dropped, 0))).unwrap());
    s.commit().unwrap();
    let again = ingest(&s, &dir, FilesCacheMode::Use);
    assert_eq!(again.cached_files, 9000 - changed.len() as u64 - 1);
    assert_eq!(again.files.len(), 9000);
    for (i, (f, path)) in again.files.iter().zip(&files).enumerate() {
        assert_eq!(&f.path, path);
        let v = u8::from(changed.contains(&i));
        assert_eq!(f.put.id, ArtifactId::of(&body(i, v)), "{}", path.display());
        assert_eq!(f.put.new, v == 1 || i == dropped, "{}", path.display());
    }
}
