//! A store living in a bucket, against the bucket's own speed: s3s-fs on
//! loopback (its objects on this machine's disk), printed as a table.
//!
//! - **Upload**: `ingest` of a 256 MiB random file into a store living in
//!   the bucket, then `seal` (which waits for the upload), against the same
//!   two commands on a local store and against `curl -T` of the same file
//!   to the same server.
//! - **Cold read**: `cat` of the artifact with an empty page cache (every
//!   byte fetched in ranged GETs) against `curl` GETting the segment object
//!   whole, and against `cat` from a local store.
//! - **Warm read**: the same `cat` again, from the page cache.
//! - **A small range, cold**: `cat --range` of 4 KiB from the middle, with
//!   an empty cache: the time to first bytes of a store in a bucket.
//!
//! `cargo bench --bench s3` (needs `s3s-fs` and `curl` on PATH; ASL_S3_MB
//! sets the file size). The machine is shared and noisy: compare the
//! ratios within one run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn aslctl() -> String {
    // The bench binary lives in target/<profile>/deps; aslctl beside it.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("aslctl").display().to_string()
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command with the bucket's environment; its wall time in seconds.
fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let o = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    t.elapsed().as_secs_f64()
}

fn best(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let mb: usize = std::env::var("ASL_S3_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3");
    std::fs::create_dir_all(root.join("bench")).unwrap();
    let p = port();
    let mut server = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &p.to_string(), "--access-key", "bench"])
        .args(["--secret-key", "benchbench"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs on PATH (cargo install s3s-fs@0.14.1 --features binary)");
    while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{p}");
    let env = [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "benchbench"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let asl = |store: &Path, args: &[&str]| {
        let mut c = Command::new(aslctl());
        c.arg("--store").arg(store).args(args).envs(env);
        c
    };
    let curl = |args: &[&str]| {
        let mut c = Command::new("curl");
        c.args([
            "-sf",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            "bench:benchbench",
        ])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(args);
        c
    };

    let file = tmp.path().join("data");
    let mut data = vec![0u8; mb << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    std::fs::write(&file, &data).unwrap();
    let id = blake3::hash(&data).to_hex().to_string();
    drop(data);
    let f = file.to_str().unwrap();

    // Upload: three runs each, best kept.
    let mut n = 0;
    let tiered_put = best(3, || {
        n += 1;
        let d = tmp.path().join(format!("t{n}"));
        let url = format!("s3://bench/t{n}");
        timed(&mut asl(&d, &["s3", "create", &url, "--dir", d.to_str().unwrap()]));
        timed(&mut asl(&d, &["ingest", f])) + timed(&mut asl(&d, &["seal"]))
    });
    let local_put = best(3, || {
        n += 1;
        let d = tmp.path().join(format!("l{n}"));
        timed(&mut asl(&d, &["ingest", f])) + timed(&mut asl(&d, &["seal"]))
    });
    let curl_put = best(3, || timed(&mut curl(&["-T", f, &format!("{endpoint}/bench/raw")])));

    // Reads from the first tiered store and the last local one.
    let t1 = tmp.path().join("t1");
    let l = tmp.path().join(format!("l{n}"));
    let cold = best(3, || {
        std::fs::remove_dir_all(t1.join("cache")).unwrap();
        std::fs::create_dir(t1.join("cache")).unwrap();
        timed(&mut asl(&t1, &["cat", &id]))
    });
    let warm = best(3, || timed(&mut asl(&t1, &["cat", &id])));
    let local = best(3, || timed(&mut asl(&l, &["cat", &id])));
    let seg = std::fs::read_dir(root.join("bench/t1/segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let key = format!("{endpoint}/bench/t1/segments/{}", seg.file_name().to_string_lossy());
    let curl_get = best(3, || timed(&mut curl(&["-o", "/dev/null", &key])));
    let mid = (mb << 19).to_string();
    let range = format!("{mid}-{}", (mb << 19) + 4095);
    let small = best(5, || {
        std::fs::remove_dir_all(t1.join("cache")).unwrap();
        std::fs::create_dir(t1.join("cache")).unwrap();
        timed(&mut asl(&t1, &["cat", &id, "--range", &range]))
    });
    let small_local = best(5, || timed(&mut asl(&l, &["cat", &id, "--range", &range])));
    let _ = server.kill();
    let _ = server.wait();

    let rate = |s: f64| mb as f64 * 1.048576 / s;
    println!("store living in a bucket: s3s-fs on loopback, {mb} MiB random, best of 3");
    println!("{:<44} {:>9} {:>9} {:>8}", "", "seconds", "MB/s", "ratio");
    let row = |what: &str, s: f64, base: f64| println!("{what:<44} {s:>9.3} {:>9.0} {:>7.2}x", rate(s), s / base);
    row("upload: curl -T to the server", curl_put, curl_put);
    row("upload: ingest + seal, store in the bucket", tiered_put, curl_put);
    row("        ingest + seal, local store", local_put, curl_put);
    row("read: curl GET of the segment object", curl_get, curl_get);
    row("read: cat, cold (empty page cache)", cold, curl_get);
    row("      cat, warm (page cache)", warm, curl_get);
    row("      cat, local store", local, curl_get);
    println!(
        "4 KiB range, cold: {:.1} ms; local store: {:.1} ms ({:.2}x)",
        small * 1e3,
        small_local * 1e3,
        small / small_local
    );
}
