//! `aslctl s3 push|restore` against a real S3-compatible server: moto's
//! (`moto_server`, installed by `.ci/run`). A pushed store is rebuilt from
//! the bucket alone, artifact for artifact, verifying clean; pushes send
//! only what is missing, follow GC's deletions, resume after being cut
//! off, and refuse a bucket prefix that holds another store.

use std::process::Stdio;
use std::time::Duration;

mod common;
use common::s3::{moto, S3};
use common::{noise, stderr_of as err, stdout_of as out};

fn aslctl(m: &S3, store: &std::path::Path, args: &[&str]) -> std::process::Output {
    m.aslctl(store, args).output().unwrap()
}

fn listing(store: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = out(&common::aslctl(store, &["ls"])).lines().map(String::from).collect();
    v.sort();
    v
}

fn restore_matches(m: &S3, url: &str, store: &std::path::Path, into: &std::path::Path) {
    let o = aslctl(m, store, &["--json", "s3", "restore", url, into.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("s3-restore", &out(&o));
    assert_eq!(listing(into), listing(store), "the same artifacts");
    let o = common::aslctl(into, &["verify"]);
    let said = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success() && said.contains(": clean"), "{:?}: {said}", o.status);
}

#[test]
fn a_store_is_rebuilt_from_the_bucket_alone() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..20 {
        std::fs::write(files.join(format!("f{i}")), noise(i, 1000 + i as usize * 700)).unwrap();
    }
    std::fs::write(files.join("big"), noise(99, 12 << 20)).unwrap();
    let o = common::aslctl(&a, &["ingest", files.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let kept = blake3::hash(&noise(1, 1700)).to_hex().to_string();
    assert!(common::aslctl(&a, &["snapshot", "create", "s1"]).status.success());
    assert!(common::aslctl(&a, &["pin", "keep", &kept]).status.success());
    let url = "s3://asl-test/stores/a";
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("s3-push", &out(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert!(r["uploaded"].as_u64().unwrap() >= 1, "{r}");
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(r["uploaded"], 0, "nothing new: {r}");
    restore_matches(&m, url, &a, &dir.path().join("b"));
    // The snapshot and the pin come back with their names.
    let b = dir.path().join("b");
    assert!(out(&common::aslctl(&b, &["snapshot", "list"])).contains("s1"));
    assert!(out(&common::aslctl(&b, &["pins"])).contains(&format!("{kept} keep")));
    // At a terminal, both show how far they got.
    let tty_url = "s3://asl-test/stores/tty";
    let shown = common::on_tty(&m.aslctl(&a, &["s3", "push", tty_url]));
    assert!(common::shows_bar(&shown, "upload"), "{shown}");
    let into = dir.path().join("tty");
    let shown = common::on_tty(&m.aslctl(&a, &["s3", "restore", tty_url, into.to_str().unwrap()]));
    for phase in ["download", "segments"] {
        assert!(common::shows_bar(&shown, phase), "no {phase} bar: {shown}");
    }

    // More data, a removal and GC: the mirror follows.
    std::fs::write(files.join("late"), noise(123, 5000)).unwrap();
    assert!(common::aslctl(&a, &["ingest", files.join("late").to_str().unwrap()])
        .status
        .success());
    let gone = blake3::hash(&noise(99, 12 << 20)).to_hex().to_string();
    assert!(common::aslctl(&a, &["rm", &gone]).status.success());
    let o = common::aslctl(&a, &["gc", "--threshold", "1"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert!(r["uploaded"].as_u64().unwrap() >= 1, "{r}");
    restore_matches(&m, url, &a, &dir.path().join("c"));
    assert!(
        !listing(&dir.path().join("c")).iter().any(|l| l.starts_with(&gone)),
        "the removal holds"
    );

    // Another store may not push over this one; restore wants a new directory.
    let other = dir.path().join("other");
    assert!(common::aslctl(&other, &["ingest", files.join("f1").to_str().unwrap()])
        .status
        .success());
    let o = aslctl(&m, &other, &["s3", "push", url]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("holds another store"), "{}", err(&o));
    let o = aslctl(&m, &a, &["s3", "restore", url, dir.path().join("c").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not empty"), "{}", err(&o));
}

#[test]
fn a_push_cut_off_part_way_resumes() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let f = dir.path().join("big");
    // Large enough that its upload (~2 s to moto) is surely under way at
    // the kill, 300 ms in.
    std::fs::write(&f, noise(7, 160 << 20)).unwrap();
    assert!(common::aslctl(&a, &["ingest", f.to_str().unwrap()]).status.success());
    let url = "s3://asl-test/stores/cut";
    let mut child = m
        .aslctl(&a, &["s3", "push", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(r["uploaded"], 1, "the cut-off upload is done again: {r}");
    restore_matches(&m, url, &a, &dir.path().join("b"));
}

/// The first run against S3 goes nowhere wrong: a bucket that does not
/// exist is named as such, and a failed create leaves nothing that a retry
/// or a later `--store s3://…` would trip over or silently write to; a
/// directory not attached to the bucket is never used for it; and missing
/// credentials say so.
#[test]
fn a_first_run_against_s3_never_writes_to_the_wrong_place() {
    let m = moto();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let url = "s3://no-such-bucket/p";
    let file = tmp.path().join("f");
    std::fs::write(&file, b"where does it go").unwrap();
    let with_cache = |args: &[&str]| {
        m.aslctl(&tmp.path().join("unused"), args)
            .env("ASL_S3_CACHE", &cache)
            .output()
            .unwrap()
    };
    let o = with_cache(&["s3", "create", url]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("bucket no-such-bucket does not exist"), "{}", err(&o));
    let local = cache.join("no-such-bucket").join("p");
    assert!(!local.join("STORE").exists(), "a failed create left a store behind");
    // Through --store: refused, nothing written anywhere.
    let o = m
        .aslctl(std::path::Path::new(url), &["ingest", file.to_str().unwrap()])
        .env("ASL_S3_CACHE", &cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(!local.join("STORE").exists(), "wrote to a local store instead");
    // A local store that happens to sit where the URL's local part goes,
    // not attached to that bucket: never used for it.
    let url = format!("s3://{}/q", common::s3::BUCKET);
    let local = cache.join(common::s3::BUCKET).join("q");
    common::aslctl_ok(&local, &["ingest", file.to_str().unwrap()]);
    let o = m
        .aslctl(std::path::Path::new(&url), &["ls"])
        .env("ASL_S3_CACHE", &cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not attached to"), "{}", err(&o));
    // No credentials at all.
    let o = std::process::Command::new(common::aslctl_bin())
        .args(["s3", "create", &format!("s3://{}/r", common::s3::BUCKET)])
        .env("ASL_S3_CACHE", &cache)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", m.port))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no AWS credentials found"), "{}", err(&o));
    assert!(!cache.join(common::s3::BUCKET).join("r").join("STORE").exists());
}
