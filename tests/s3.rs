//! `aslctl s3 push|restore` against a real S3-compatible server: moto's
//! (`moto_server`, installed by `.ci/run`). A pushed store is rebuilt from
//! the bucket alone, artifact for artifact, verifying clean; pushes send
//! only what is missing, follow GC's deletions, resume after being cut
//! off, and refuse a bucket prefix that holds another store.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{noise, stderr_of as err, stdout_of as out};

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("moto_server")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]', see .ci/run)");
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto_server exited: {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let o = Command::new("curl")
                .args(["-s", "-X", "PUT", &format!("http://127.0.0.1:{port}/asl-test")])
                .output()
                .unwrap();
            assert!(o.status.success());
            return Moto(child, port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("moto_server did not start");
}

fn aslctl(m: &Moto, store: &std::path::Path, args: &[&str]) -> std::process::Output {
    s3cmd(m, store, args).output().unwrap()
}

fn s3cmd(m: &Moto, store: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::aslctl_bin());
    c.arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ASL_STORE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", m.1))
        .env("AWS_ALLOW_HTTP", "true");
    c
}

fn listing(store: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = out(&common::aslctl(store, &["ls"])).lines().map(String::from).collect();
    v.sort();
    v
}

fn restore_matches(m: &Moto, url: &str, store: &std::path::Path, into: &std::path::Path) {
    let o = aslctl(m, store, &["s3", "restore", url, into.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
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
    let url = "s3://asl-test/stores/a";
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert!(r["uploaded"].as_u64().unwrap() >= 1, "{r}");
    let o = aslctl(&m, &a, &["--json", "s3", "push", url]);
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(r["uploaded"], 0, "nothing new: {r}");
    restore_matches(&m, url, &a, &dir.path().join("b"));

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
    let mut child = s3cmd(&m, &a, &["s3", "push", url])
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
