//! Federation sync of a mixed tree between two stores, against `rsync -a`
//! and `restic copy` on the same data in the same run, printed as a table.
//!
//! The corpus (ASL_SYNC_MB, default 1024 MiB) is text-like small files,
//! random medium ones and a few large ones. Each tool syncs it once, then
//! again after 3 % of the files changed (half rewritten, half appended to):
//!
//! - ASL: the source store ingests the tree, snapshots it and publishes the
//!   snapshot; the other store fetches, from the directory and over
//!   `aslctl serve` on loopback. The change is ingested, published, fetched.
//! - rsync: `rsync -a` of the tree to another directory (local, so whole
//!   files, as rsync does between local paths).
//! - restic: a backup of the tree into one repository, then `restic copy`
//!   into a second one (same chunker parameters), the closest thing restic
//!   has to syncing two stores.
//!
//! The ingest into the source store and restic's backup are timed too, but
//! not as part of the sync. `cargo bench --bench sync`; needs rsync and
//! restic on PATH. The machine is shared and noisy: compare ratios within
//! one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn aslctl() -> String {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("aslctl")
        .display()
        .to_string()
}

fn run(c: &mut Command) -> (f64, String) {
    let t = Instant::now();
    let o = c.stderr(Stdio::piped()).output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    (
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn asl(store: &Path, args: &[&str]) -> (f64, String) {
    run(Command::new(aslctl()).arg("--store").arg(store).args(args))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        for c in v.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
        v
    }
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "store", "artifact", "segment", "block", "index", "the", "of", "verified", "fn", "let", "=", "{}\n",
        ];
        let mut v = Vec::with_capacity(n + 16);
        while v.len() < n {
            let w = (self.next() % 12) as usize;
            v.extend_from_slice(WORDS[w].as_bytes());
            v.push(b' ');
        }
        v.truncate(n);
        v
    }
}

/// Writes the corpus; returns its files.
fn corpus(dir: &Path, total: u64, rng: &mut Rng) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut written = 0u64;
    let mut i = 0;
    while written < total {
        let sub = dir.join(format!("d{:02}", i % 37));
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join(format!("f{i:05}"));
        let r = rng.next();
        let body = match i % 100 {
            0 => rng.bytes((16 << 20) + (r % (16 << 20)) as usize),
            1..=30 => rng.bytes((256 << 10) + (r % (1 << 20)) as usize),
            _ => rng.text(1024 + (r % (48 << 10)) as usize),
        };
        written += body.len() as u64;
        std::fs::write(&p, body).unwrap();
        files.push(p);
        i += 1;
    }
    files
}

/// Changes 3 % of the files: half rewritten, half appended to.
fn change(files: &[PathBuf], rng: &mut Rng) {
    for (k, p) in files.iter().enumerate().filter(|(k, _)| k % 33 == 7) {
        let old = std::fs::read(p).unwrap();
        let new = if k % 2 == 0 {
            rng.text(old.len())
        } else {
            let mut v = old;
            v.extend_from_slice(&rng.text(4096));
            v
        };
        std::fs::write(p, new).unwrap();
    }
}

fn du(p: &Path) -> u64 {
    let o = Command::new("du").args(["-sb"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// What the remote sent of the artifacts' bytes: their length, less what
/// was copied from chunks already here or kept from an interrupted fetch.
fn fetched_bytes(json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    n("bytes") - n("reused") - n("resumed")
}

fn main() {
    let mb: u64 = std::env::var("ASL_SYNC_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = t.join("tree");
    let mut rng = Rng(0x5eed_1234_9876_abcd);
    let files = corpus(&tree, mb << 20, &mut rng);
    let tree_s = tree.to_str().unwrap();
    let (a, b, c) = (t.join("a"), t.join("b"), t.join("c"));

    // Source store: ingest, snapshot, publish.
    let publish = |round: u32| -> f64 {
        let (ti, _) = asl(&a, &["ingest", "--no-cache", tree_s]);
        let name = format!("round{round}");
        asl(&a, &["snapshot", "create", &name]);
        asl(&a, &["publish", "--snapshot", &name]);
        ti
    };
    let ingest1 = publish(1);
    asl(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let (dir1, out) = asl(&b, &["--json", "fetch", "a"]);
    let dir1_bytes = fetched_bytes(&out);
    let serve = |store: &Path| {
        let mut child = Command::new(aslctl())
            .arg("--store")
            .arg(store)
            .args(["serve", "--listen", "127.0.0.1:0", "--quiet"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        (child, line.trim().trim_start_matches("listening on ").to_string())
    };
    let (mut srv, url) = serve(&a);
    asl(&c, &["remote", "add", "a", &url]);
    let (http1, out) = asl(&c, &["--json", "fetch", "a"]);
    let http1_bytes = fetched_bytes(&out);
    let _ = srv.kill();
    let _ = srv.wait();

    let rs = t.join("rsync");
    let rsync = || {
        let (s, out) = run(Command::new("rsync")
            .args(["-a", "--stats", &format!("{tree_s}/")])
            .arg(&rs));
        let bytes = out
            .lines()
            .find_map(|l| l.strip_prefix("Total transferred file size: "))
            .map(|v| v.trim_end_matches(" bytes").replace(',', "").parse().unwrap_or(0))
            .unwrap_or(0);
        (s, bytes)
    };
    let (rsync1, rsync1_bytes) = rsync();

    let (r1, r2) = (t.join("restic1"), t.join("restic2"));
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_FROM_PASSWORD", "bench")
            .args(args)
            .arg("-q");
        c
    };
    run(restic(&["init", "-r", r1.to_str().unwrap()]).stdout(Stdio::null()));
    run(restic(&[
        "init",
        "-r",
        r2.to_str().unwrap(),
        "--from-repo",
        r1.to_str().unwrap(),
        "--copy-chunker-params",
    ])
    .stdout(Stdio::null()));
    let (backup1, _) = run(restic(&["backup", "-r", r1.to_str().unwrap(), tree_s]).stdout(Stdio::null()));
    let size2 = du(&r2);
    let copy = || {
        run(restic(&["copy", "-r", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]).stdout(Stdio::null())).0
    };
    let copy1 = copy();
    let copy1_bytes = du(&r2) - size2;

    change(&files, &mut rng);
    let ingest2 = publish(2);
    let (dir2, out) = asl(&b, &["--json", "fetch", "a"]);
    let dir2_bytes = fetched_bytes(&out);
    let (mut srv, url) = serve(&a);
    // The server moved to another port: point c at it.
    asl(&c, &["remote", "remove", "a"]);
    asl(&c, &["remote", "add", "a", &url]);
    let (http2, out) = asl(&c, &["--json", "fetch", "a"]);
    let http2_bytes = fetched_bytes(&out);
    let _ = srv.kill();
    let _ = srv.wait();
    let (rsync2, rsync2_bytes) = rsync();
    let (backup2, _) = run(restic(&["backup", "-r", r1.to_str().unwrap(), tree_s]).stdout(Stdio::null()));
    let size2 = du(&r2);
    let copy2 = copy();
    let copy2_bytes = du(&r2) - size2;
    let changed = files.iter().enumerate().filter(|(k, _)| k % 33 == 7).count();

    println!(
        "sync of a {mb} MiB tree ({} files; then {changed} changed), one run on this machine",
        files.len()
    );
    println!("{:<40} {:>9} {:>12} {:>9}", "", "seconds", "bytes", "vs rsync");
    let row =
        |what: &str, s: f64, bytes: u64, base: f64| println!("{what:<40} {s:>9.2} {bytes:>12} {:>8.2}x", s / base);
    row("first: rsync -a", rsync1, rsync1_bytes, rsync1);
    row("first: aslctl fetch, directory remote", dir1, dir1_bytes, rsync1);
    row("first: aslctl fetch, HTTP remote", http1, http1_bytes, rsync1);
    row("first: restic copy", copy1, copy1_bytes, rsync1);
    row("3% changed: rsync -a", rsync2, rsync2_bytes, rsync2);
    row("3% changed: aslctl fetch, directory", dir2, dir2_bytes, rsync2);
    row("3% changed: aslctl fetch, HTTP", http2, http2_bytes, rsync2);
    row("3% changed: restic copy", copy2, copy2_bytes, rsync2);
    println!(
        "not part of the sync: aslctl ingest {ingest1:.2} s then {ingest2:.2} s; restic backup {backup1:.2} s then {backup2:.2} s"
    );
}
