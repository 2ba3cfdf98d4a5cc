//! ZFS snapshots beside ASL snapshots, on a file-backed pool served by
//! Debian's zfs-fuse (installed by scripts/setup, started here as a child
//! and stopped at the end): `snapshot create --zfs` takes
//! `<dataset>@asl-NAME` once the ASL snapshot is durable, `list` shows it,
//! `delete` destroys it, `restore` rolls the store back to it, a clone of
//! it opens as a store holding the snapshot; off ZFS the switch is refused
//! with nothing left behind. Where the machine has no /dev/fuse, zfs-fuse
//! cannot run: the test says so and checks only the refusal off ZFS.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

fn ok(store: &Path, args: &[&str]) -> String {
    let o = aslctl(store, args);
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    out(&o)
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A pool on a file, and the zfs-fuse daemon serving it when this test
/// started one; both gone on drop.
struct Pool {
    name: String,
    daemon: Option<Child>,
}

impl Pool {
    fn new(dir: &Path) -> Pool {
        let mut daemon = None;
        if !run("zpool", &["list"]).0 {
            daemon = Some(
                Command::new("zfs-fuse")
                    .arg("--no-daemon")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("zfs-fuse runs (scripts/setup installs it)"),
            );
            let t = Instant::now();
            while !run("zpool", &["list"]).0 {
                assert!(t.elapsed() < Duration::from_secs(20), "zfs-fuse did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let name = format!("asltest{}", std::process::id());
        let img = dir.join("pool.img");
        fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
        let mnt = dir.join("mnt");
        // No cache file: a pool left behind is not imported again by the
        // next daemon, whose file may be gone with its temporary directory.
        let (made, said) = run(
            "zpool",
            &[
                "create",
                "-o",
                "cachefile=none",
                "-m",
                mnt.to_str().unwrap(),
                &name,
                img.to_str().unwrap(),
            ],
        );
        assert!(made, "zpool create: {said}");
        Pool { name, daemon }
    }
}

/// Runs `zfs`/`zpool` ARGS until it succeeds: zfs-fuse releases a mount a
/// moment after its last file is closed, and says "busy" until then.
fn until_done(cmd: &str, args: &[&str]) {
    let t = Instant::now();
    loop {
        let (done, said) = run(cmd, args);
        if done {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{cmd} {args:?}: {said}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            until_done("zpool", &["destroy", "-f", &self.name]);
        } else {
            let _ = run("zpool", &["destroy", "-f", &self.name]);
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

#[test]
fn zfs_snapshots_follow_asl_snapshots_and_restore_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    // Off ZFS: a clear refusal, no snapshot, no orphan file.
    let plain = tmp.path().join("plain");
    let f = tmp.path().join("a.txt");
    fs::write(&f, "first\n").unwrap();
    common::ingest_file(&plain, &f);
    let o = aslctl(&plain, &["snapshot", "create", "x", "--zfs"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("not on a ZFS dataset"), "{}", err(&o));
    assert_eq!(err(&o).trim().lines().count(), 1, "{}", err(&o));
    assert_eq!(ok(&plain, &["snapshot", "list"]), "");
    let o = aslctl(&plain, &["serve", "--zfs", "--listen", "127.0.0.1:0"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("not on a ZFS dataset"), "{}", err(&o));
    let idx = fs::read_dir(plain.join("snapshots")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(idx, 0, "no snapshot file left behind");

    if !Path::new("/dev/fuse").exists() {
        eprintln!("zfs test: no /dev/fuse on this machine, so no zfs-fuse pool: checked the refusal off ZFS only");
        return;
    }
    let pool = Pool::new(tmp.path());
    let ds = format!("{}/store", pool.name);
    assert!(run("zfs", &["create", &ds]).0);
    let store = tmp.path().join("mnt/store/s");
    let a = common::ingest_file(&store, &f);
    let first = ok(&store, &["snapshot", "create", "s1", "--zfs"]);
    assert!(first.contains("s1"), "{first}");
    let g = tmp.path().join("b.txt");
    fs::write(&g, "second\n").unwrap();
    let b = common::ingest_file(&store, &g);
    ok(&store, &["rm", &a]);
    ok(&store, &["snapshot", "create", "s2", "--zfs"]);
    let listed = ok(&store, &["snapshot", "list"]);
    assert!(listed.contains(&format!("s1  {ds}@asl-s1")), "{listed}");
    assert!(listed.contains(&format!("s2  {ds}@asl-s2")), "{listed}");

    // A clone of the first image is a store holding snapshot s1, clean.
    let clone = format!("{}/clone", pool.name);
    assert!(run("zfs", &["clone", &format!("{ds}@asl-s1"), &clone]).0);
    let cloned = tmp.path().join("mnt/clone/s");
    assert!(ok(&cloned, &["snapshot", "list"]).contains("s1"));
    assert!(ok(&cloned, &["ls"]).contains(&a));
    ok(&cloned, &["verify"]);
    // ZFS refuses to destroy a snapshot a clone depends on: the ASL
    // snapshot stays too.
    let o = aslctl(&store, &["snapshot", "delete", "s1"]);
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert!(ok(&store, &["snapshot", "list"]).contains("s1"));
    until_done("zfs", &["destroy", &clone]);

    // Restore: refused while a newer ZFS snapshot would go, then the store
    // as s1 was taken, s1 in it.
    let o = aslctl(&store, &["snapshot", "restore", "s1"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("--destroy-newer"), "{}", err(&o));
    let said = ok(&store, &["--json", "snapshot", "restore", "s1", "--destroy-newer"]);
    common::check_json("snapshot-restore", &said);
    assert!(said.contains(&format!("{ds}@asl-s1")), "{said}");
    let ls = ok(&store, &["ls"]);
    assert!(ls.contains(&a) && !ls.contains(&b), "{ls}");
    let listed = ok(&store, &["snapshot", "list"]);
    assert!(listed.contains("s1") && !listed.contains("s2"), "{listed}");
    ok(&store, &["verify"]);

    // Deleting the ASL snapshot deletes its ZFS snapshot.
    ok(&store, &["snapshot", "delete", "s1"]);
    let (_, zl) = run("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"]);
    assert!(!zl.contains("@asl-s1"), "{zl}");

    // Through a server started with --zfs: snapshots made and deleted over
    // HTTP do the same.
    let srv = common::server::start_on(tempfile::tempdir().unwrap(), store.clone(), &["--zfs"], None);
    let (code, said) = common::server::curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"name": "s3"}"#,
        &format!("{}/v1/snapshots", srv.url),
    ]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&said));
    let (_, zl) = run("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"]);
    assert!(zl.contains(&format!("{ds}@asl-s3")), "{zl}");
    let (code, _) = common::server::curl(&["-X", "DELETE", &format!("{}/v1/snapshots/s3", srv.url)]);
    assert_eq!(code, 200);
    let (_, zl) = run("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"]);
    assert!(!zl.contains("@asl-s3"), "{zl}");
    srv.terminate();
    drop(pool);
}
