//! A store living in a bucket (`aslctl s3 create|tier|attach|status`,
//! `--store s3://...`) against real S3-compatible servers: moto's, and
//! s3s-fs, which keeps its objects on disk and so can be killed in the
//! middle of an upload and started again.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::s3::{moto, s3s_fs, S3};
use common::{noise, stderr_of as err, stdout_of as out};

fn run(s: &S3, store: &Path, args: &[&str]) -> std::process::Output {
    s.aslctl(store, args).output().unwrap()
}

fn ok(s: &S3, store: &Path, args: &[&str]) -> String {
    let o = run(s, store, args);
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    out(&o)
}

fn status(s: &S3, store: &Path) -> serde_json::Value {
    let said = ok(s, store, &["--json", "s3", "status"]);
    common::check_json("s3-status", &said);
    serde_json::from_str(said.trim()).unwrap()
}

fn listing(s: &S3, store: &Path) -> Vec<String> {
    let mut v: Vec<String> = ok(s, store, &["ls"]).lines().map(String::from).collect();
    v.sort();
    v
}

fn verify_clean(s: &S3, store: &Path) {
    let o = run(s, store, &["verify"]);
    let said = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success() && said.contains(": clean"), "{said}");
}

fn dir_bytes(d: &Path) -> (u64, usize) {
    let mut n = (0, 0);
    for e in std::fs::read_dir(d).unwrap().flatten() {
        n.0 += e.metadata().unwrap().len();
        n.1 += 1;
    }
    n
}

#[test]
fn a_store_living_in_a_bucket_keeps_only_its_tail_on_local_disk() {
    let s = moto();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let url = "s3://asl-test/stores/live";
    let o = run(
        &s,
        &a,
        &[
            "--json",
            "s3",
            "create",
            url,
            "--dir",
            a.to_str().unwrap(),
            "--cache",
            "3M",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("s3-create", &out(&o));

    // Three segments: small files, a 12 MiB one, more small files.
    let files = tmp.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let mut want = Vec::new();
    for (i, len) in [(1u64, 3000usize), (2, 90_000), (3, 12 << 20), (4, 500), (5, 70_000)] {
        let p = files.join(format!("f{i}"));
        std::fs::write(&p, noise(i, len)).unwrap();
        let id = ok(&s, &a, &["ingest", p.to_str().unwrap()]);
        want.push((id.split_whitespace().next().unwrap().to_string(), p));
        if i % 2 == 1 {
            ok(&s, &a, &["seal"]);
        }
    }
    ok(&s, &a, &["snapshot", "create", "s1"]);
    ok(&s, &a, &["pin", "keep", &want[0].0]);
    ok(&s, &a, &["seal"]);
    let st = status(&s, &a);
    assert_eq!(st["local_segments"], 0, "every sealed segment left the disk: {st}");
    assert_eq!(st["queued"], 0, "{st}");
    let remote = s.keys("stores/live/segments/");
    assert_eq!(
        remote.len() as u64,
        st["remote_segments"].as_u64().unwrap(),
        "{remote:?}"
    );
    assert!(remote.len() >= 3, "{remote:?}");
    assert!(s.keys("stores/live/").iter().any(|k| k == "stores/live/CHECKPOINT"));

    // Every artifact reads back whole through a cache smaller than the data.
    for (id, p) in &want {
        let o = run(&s, &a, &["cat", id]);
        assert!(o.status.success(), "{}", err(&o));
        assert!(o.stdout == std::fs::read(p).unwrap(), "{id}");
    }
    let cache = a.join("cache");
    let (bytes, _) = dir_bytes(&cache);
    assert!(
        bytes <= (3 << 20) + (1 << 20) + 8,
        "the cache keeps to its budget: {bytes}"
    );

    // A range reads only the pages it needs, not the 12 MiB segment.
    std::fs::remove_dir_all(&cache).unwrap();
    let big = &want[2].0;
    let o = run(&s, &a, &["cat", big, "--range", "5000000-5000099"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(o.stdout, noise(3, 12 << 20)[5_000_000..5_000_100]);
    let (_, pages) = dir_bytes(&cache);
    assert!((1..=4).contains(&pages), "{pages} pages fetched for 100 bytes");

    // A damaged cached page is fetched again, not reported as corruption.
    for e in std::fs::read_dir(&cache).unwrap().flatten() {
        let mut b = std::fs::read(e.path()).unwrap();
        b[100] ^= 0x55;
        std::fs::write(e.path(), b).unwrap();
    }
    let o = run(&s, &a, &["cat", big, "--range", "5000000-5000099"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(o.stdout, noise(3, 12 << 20)[5_000_000..5_000_100]);
    verify_clean(&s, &a);

    // Another machine: the local part rebuilt from the bucket alone, with
    // the snapshot and the pin.
    let b = tmp.path().join("b");
    let o = run(&s, &b, &["--json", "s3", "attach", url, "--dir", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("s3-attach", &out(&o));
    assert_eq!(listing(&s, &b), listing(&s, &a));
    assert!(ok(&s, &b, &["snapshot", "list"]).contains("s1"));
    assert!(ok(&s, &b, &["pins"]).contains(&want[0].0));
    verify_clean(&s, &b);
    assert_eq!(dir_bytes(&b.join("segments")).1, 0, "attach keeps no segment locally");

    // One directory writes: the lease is a's, so b may read but not write,
    // until it takes the store over; then a may not.
    let f = tmp.path().join("late");
    std::fs::write(&f, noise(77, 4000)).unwrap();
    let o = run(&s, &b, &["ingest", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("written from another directory"), "{}", err(&o));
    assert_eq!(status(&s, &b)["writer"], false);
    let b2 = tmp.path().join("b2");
    ok(
        &s,
        &b2,
        &["s3", "attach", url, "--dir", b2.to_str().unwrap(), "--take-over"],
    );
    ok(&s, &b2, &["ingest", f.to_str().unwrap()]);
    let o = run(&s, &a, &["ingest", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    ok(
        &s,
        &a,
        &[
            "s3",
            "attach",
            url,
            "--dir",
            tmp.path().join("a2").to_str().unwrap(),
            "--take-over",
            // No read replica to wait for: GC's segments go at once.
            "--delete-grace",
            "0",
        ],
    );
    let a = tmp.path().join("a2");

    // GC deletes what it reclaims from the bucket too.
    ok(&s, &a, &["rm", big]);
    ok(&s, &a, &["snapshot", "delete", "s1"]);
    ok(&s, &a, &["gc", "--threshold", "1"]);
    let after = s.keys("stores/live/segments/");
    // Whether the segment GC wrote has been uploaded yet is up to the
    // upload queue's timing; that a reclaimed one left the bucket is not.
    assert!(remote.iter().any(|k| !after.contains(k)), "{remote:?} -> {after:?}");
    assert!(
        s.keys("stores/live/snapshots/").is_empty(),
        "the deleted snapshot's file went too"
    );
    let o = run(&s, &a, &["cat", big]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    for (id, p) in want.iter().filter(|w| &w.0 != big) {
        assert!(run(&s, &a, &["cat", id]).stdout == std::fs::read(p).unwrap());
    }

    // The same bucket prefix cannot take a second store.
    let c = tmp.path().join("c");
    let o = run(&s, &c, &["s3", "create", url, "--dir", c.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("already holds a store"), "{}", err(&o));
}

#[test]
fn a_local_store_moves_into_a_bucket_and_is_reached_by_url() {
    let s = moto();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let f = tmp.path().join("f");
    std::fs::write(&f, noise(11, 3 << 20)).unwrap();
    let id = ok(&s, &a, &["ingest", f.to_str().unwrap()]);
    let id = id.split_whitespace().next().unwrap().to_string();
    ok(&s, &a, &["seal"]);
    let url = "s3://asl-test/moved";
    let o = run(&s, &a, &["--json", "s3", "tier", url]);
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("s3-tier", &out(&o));
    let st: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(
        (st["local_segments"].as_u64(), st["remote_segments"].as_u64()),
        (Some(0), Some(1))
    );

    // `--store s3://...` attaches on first use in the cache directory.
    let cache = tmp.path().join("cache");
    let o = s
        .aslctl(Path::new(url), &["cat", &id])
        .env("ASL_S3_CACHE", &cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("attaching"), "{}", err(&o));
    assert!(o.stdout == std::fs::read(&f).unwrap());
    assert!(cache.join("asl-test/moved/BUCKET").is_file());
    // A prefix with no store is named, with the command that makes one.
    let o = s
        .aslctl(Path::new("s3://asl-test/nothing"), &["ls"])
        .env("ASL_S3_CACHE", &cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("aslctl s3 create s3://asl-test/nothing"),
        "{}",
        err(&o)
    );
}

#[test]
fn an_upload_cut_off_by_the_s3_server_dying_resumes_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // 4 MiB/s upstream: a 24 MiB segment takes about 6 s to go up.
    let mut s = s3s_fs(&tmp.path().join("s3"), 4 << 20);
    let a = tmp.path().join("a");
    let url = "s3://asl-test/crash";
    let o = run(&s, &a, &["s3", "create", url, "--dir", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let f = tmp.path().join("f");
    std::fs::write(&f, noise(5, 24 << 20)).unwrap();
    let id = ok(&s, &a, &["ingest", f.to_str().unwrap()]);
    let id = id.split_whitespace().next().unwrap().to_string();

    // The seal is committed at once; its upload is what the server's death cuts.
    let child = s
        .aslctl(&a, &["seal"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "the upload could not finish: {}", err(&o));
    assert!(err(&o).contains("safe in the local directory"), "{}", err(&o));
    assert_eq!(dir_bytes(&a.join("segments")).1, 1, "the segment stays on local disk");
    assert!(
        !tmp.path().join("s3/asl-test/crash/segments").exists()
            || dir_bytes(&tmp.path().join("s3/asl-test/crash/segments")).1 == 0,
        "no partial object is visible"
    );

    // Still readable from local disk while the bucket is down.
    let o = run(&s, &a, &["cat", &id]);
    assert!(o.status.success(), "{}", err(&o));

    s.restart();
    let st = status(&s, &a);
    assert_eq!(
        (st["local_segments"].as_u64(), st["queued"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
    let b = tmp.path().join("b");
    let o = run(&s, &b, &["s3", "attach", url, "--dir", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let o = run(&s, &b, &["cat", &id]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        o.stdout == std::fs::read(&f).unwrap(),
        "the acknowledged artifact, whole"
    );
}
