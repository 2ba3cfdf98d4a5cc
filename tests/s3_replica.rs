//! Read replicas of a store living in a bucket: two `aslctl serve`
//! processes over one s3s-fs bucket, the writer publishing every second and
//! the replica following every second. What the writer acknowledges is
//! read from the replica once published; writes sent to the replica are
//! redirected to the writer; segments GC drops stay in the bucket while a
//! replica may still read them; killing the writer leaves the replica
//! serving.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::s3::{s3s_fs, S3};
use common::server::{curl, hex, json, listening, put_at};
use common::{noise, stderr_of as err, stdout_of as out};

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(s: &S3, store: &Path, extra: &[&str]) -> Served {
    let mut cmd = s.aslctl(store, &["serve", "--listen", "127.0.0.1:0", "--quiet"]);
    cmd.args(extra).stderr(Stdio::null());
    let (child, url) = listening(&mut cmd);
    Served { child, url }
}

fn ok(s: &S3, store: &Path, args: &[&str]) -> String {
    let o = s.aslctl(store, args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    out(&o)
}

/// Polls `f` until it holds, for at most `secs`.
fn within(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn put(url: &str, body: &Path) -> String {
    put_at(url, body)["id"].as_str().unwrap().to_string()
}

#[test]
fn a_replica_serves_what_the_writer_published_and_sends_writes_there() {
    let tmp = tempfile::tempdir().unwrap();
    let s = s3s_fs(&tmp.path().join("s3"), 0);
    let url = "s3://asl-test/replicated";
    let (w, r) = (tmp.path().join("w"), tmp.path().join("r"));
    ok(
        &s,
        &w,
        &["s3", "create", url, "--dir", w.to_str().unwrap(), "--delete-grace", "8"],
    );
    let writer = serve(&s, &w, &["--publish-interval", "1", "--segment-size", "1M"]);
    let f1 = tmp.path().join("f1");
    std::fs::write(&f1, noise(1, 300_000)).unwrap();
    let id1 = put(&writer.url, &f1);
    let made = std::cell::RefCell::new(String::new());
    within(20, "the first publish", || {
        let o = s
            .aslctl(&r, &["--json", "s3", "replica", url, "--dir", r.to_str().unwrap()])
            .output()
            .unwrap();
        *made.borrow_mut() = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success()
    });
    common::check_json("s3-replica", &made.borrow());
    common::check_json("s3-follow", &ok(&s, &r, &["--json", "s3", "follow"]));
    assert_eq!(
        std::fs::read_dir(r.join("segments")).unwrap().count(),
        0,
        "a replica keeps no segment"
    );
    let replica = serve(&s, &r, &["--follow-interval", "1"]);
    let get = |base: &str, id: &str| curl(&[&format!("{base}/v1/artifacts/{id}")]);
    assert_eq!(get(&replica.url, &id1), (200, noise(1, 300_000)));

    // A put to the writer, and a build-cache entry (resolved through the
    // replica's own query index), are read from the replica once the writer
    // has published and the replica followed: within publish + follow
    // intervals and the upload.
    let f2 = tmp.path().join("f2");
    std::fs::write(&f2, noise(2, 2 << 20)).unwrap();
    let id2 = put(&writer.url, &f2);
    let blob = noise(3, 5000);
    let sha = hex(&<sha2::Sha256 as sha2::Digest>::digest(&blob));
    let bf = tmp.path().join("blob");
    std::fs::write(&bf, &blob).unwrap();
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", bf.display()),
        &format!("{}/cas/{sha}", writer.url),
    ]);
    assert_eq!(code, 201);
    within(15, "the replica reading the new artifact", || {
        get(&replica.url, &id2).0 == 200
    });
    assert_eq!(get(&replica.url, &id2).1, noise(2, 2 << 20));
    within(5, "the replica answering the cas entry", || {
        curl(&[&format!("{}/cas/{sha}", replica.url)]) == (200, blob.clone())
    });

    // Writes to the replica are sent to the writer: a 307 naming it, which
    // curl -L follows with the body.
    let f3 = tmp.path().join("f3");
    std::fs::write(&f3, noise(4, 1000)).unwrap();
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-X",
            "PUT",
            "--data-binary",
        ])
        .arg(format!("@{}", f3.display()))
        .arg(format!("{}/v1/artifacts", replica.url))
        .output()
        .unwrap();
    assert_eq!(out(&o), format!("307 {}/v1/artifacts", writer.url));
    let o = std::process::Command::new("curl")
        .args(["-s", "-L", "-X", "PUT", "--data-binary"])
        .arg(format!("@{}", f3.display()))
        .arg(format!("{}/v1/artifacts", replica.url))
        .output()
        .unwrap();
    let id3 = json(&o.stdout)["id"].as_str().unwrap().to_string();
    assert_eq!(get(&writer.url, &id3).1, noise(4, 1000), "stored by the writer");
    let (code, _) = curl(&["-X", "DELETE", &format!("{}/v1/artifacts/{id1}", replica.url)]);
    assert_eq!(code, 307);

    // GC on the writer: the segment it drops stays in the bucket while the
    // checkpoint mirrored last names it and for the grace after, so the
    // replica reads on; then it goes.
    let before = s.keys("replicated/segments/");
    let (code, b) = curl(&["-X", "DELETE", &format!("{}/v1/artifacts/{id1}", writer.url)]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    let (code, b) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"threshold": 1.0}"#,
        &format!("{}/v1/gc", writer.url),
    ]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    assert!(
        json(&b)["reclaimed_bytes"].as_u64().unwrap() > 0,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert!(w.join("DELETES").exists(), "the dropped segment waits out its grace");
    assert!(
        before.iter().all(|k| s.keys("replicated/segments/").contains(k)),
        "nothing deleted at once"
    );
    within(20, "the replica no longer seeing the removed artifact", || {
        get(&replica.url, &id1).0 == 404
    });
    within(40, "the dropped segment leaving the bucket", || {
        let now = s.keys("replicated/segments/");
        before.iter().any(|k| !now.contains(k))
    });
    assert_eq!(get(&replica.url, &id2).1, noise(2, 2 << 20));

    // The writer dies: the replica goes on serving what it holds.
    drop(writer);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&replica.url, &id2).1, noise(2, 2 << 20));
    assert_eq!(get(&replica.url, &id3).1, noise(4, 1000));
    let (code, _) = curl(&[&format!("{}/v1/health", replica.url)]);
    assert_eq!(code, 200);
    let o = s.aslctl(&r, &["verify"]).output().unwrap();
    let said = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success() && said.contains(": clean"), "{said}");

    // The replica's directory is never written through.
    let o = s.aslctl(&r, &["ingest", f3.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("read replica"), "{}", err(&o));
}
