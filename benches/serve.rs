//! `aslctl serve` on loopback, printed as tables:
//!
//! 1. GET of 4 KiB and 4 MiB artifacts, and PUT of 4 KiB ones, by N client
//!    threads, against Python's `http.server` serving the same files from a
//!    directory in the same run (GET only: it takes no uploads), as
//!    requests/s, MB/s and ratios;
//! 2. a mixed load (put, get, range, missing) of N clients × M requests:
//!    throughput, p50/p99 latency, errors (must be 0) and the server's peak
//!    RSS;
//! 3. ccache: a C project of 120 files built twice, from an empty local
//!    cache the second time, with the server as ccache's remote storage,
//!    against the same two builds with ccache's own local cache (and
//!    against no ccache at all): times and hit counts.
//!
//! The client is a minimal HTTP/1.1 one over `TcpStream` (keep-alive where
//! the server allows it; Python's server closes after each response, so it
//! pays a connect per request, which is how it is used).
//!
//! `cargo bench --bench serve` (ASL_SERVE_CLIENTS, ASL_SERVE_REQUESTS). The
//! machine is shared and noisy: compare the ratios within one run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// One keep-alive connection (reopened when the server closes it).
struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// Sends one request; the status and body.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::with_capacity(256 << 10, s));
        }
        let c = self.conn.as_mut().unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let s = c.get_mut();
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        c.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        let mut len = None;
        let mut close = line.starts_with("HTTP/1.0");
        loop {
            line.clear();
            c.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
            if lower == "connection: close" {
                close = true;
            }
        }
        let mut out = Vec::new();
        match len {
            Some(n) => {
                out.resize(n, 0);
                c.read_exact(&mut out)?;
            }
            None => {
                c.read_to_end(&mut out)?;
                close = true;
            }
        }
        if close {
            self.conn = None;
        }
        Ok((status, out))
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aslctl() -> String {
    // The bench binary lives in target/<profile>/deps; aslctl beside it.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("aslctl").display().to_string()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `clients` threads each making `per` calls from `make(client, thread, i)`;
/// wall time and every call's latency, and the error count.
fn run(
    addr: &str,
    clients: usize,
    per: usize,
    make: impl Fn(&mut Client, usize, usize) -> bool + Sync,
) -> (Duration, Vec<Duration>, usize) {
    let t = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..clients)
            .map(|k| {
                let make = &make;
                sc.spawn(move || {
                    let mut c = Client::new(addr);
                    let mut lat = Vec::with_capacity(per);
                    let mut errors = 0;
                    for i in 0..per {
                        let t = Instant::now();
                        if !make(&mut c, k, i) {
                            errors += 1;
                        }
                        lat.push(t.elapsed());
                    }
                    (lat, errors)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = t.elapsed();
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    lat.sort();
    (wall, lat, results.iter().map(|r| r.1).sum())
}

fn pct(lat: &[Duration], p: f64) -> f64 {
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    let clients = env("ASL_SERVE_CLIENTS", 8);
    let per = env("ASL_SERVE_REQUESTS", 400);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let small: Vec<Vec<u8>> = (0..256).map(|i| noise(i, 4096)).collect();
    let large: Vec<Vec<u8>> = (0..8).map(|i| noise(1000 + i, 4 << 20)).collect();
    let mut child = Command::new(aslctl())
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("aslctl built (cargo bench builds it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = child.id();
    let _srv = Proc(child);
    let addr = line.trim().trim_start_matches("listening on http://").to_string();
    let mut ids_small = Vec::new();
    let mut ids_large = Vec::new();
    let mut c = Client::new(&addr);
    for (i, b) in small.iter().enumerate() {
        let (code, body) = c.call("PUT", "/v1/artifacts", &[], b).unwrap();
        assert!(code == 201 || code == 200, "{code}");
        let id = String::from_utf8_lossy(&body)[7..71].to_string();
        std::fs::write(files.join(format!("s{i}")), b).unwrap();
        ids_small.push(id);
    }
    for (i, b) in large.iter().enumerate() {
        let (code, body) = c.call("PUT", "/v1/artifacts", &[], b).unwrap();
        assert!(code == 201 || code == 200, "{code}");
        ids_large.push(String::from_utf8_lossy(&body)[7..71].to_string());
        std::fs::write(files.join(format!("l{i}")), b).unwrap();
    }
    let py = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let _ = Path::new(".");
    let mut py = Proc(py);
    let mut pl = String::new();
    BufReader::new(py.0.stdout.take().unwrap()).read_line(&mut pl).unwrap();
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let pport = pl.split_whitespace().nth(5).unwrap().to_string();
    let paddr = format!("127.0.0.1:{pport}");

    println!("loopback, {clients} clients; the same files from ASL and from python3 -m http.server");
    println!(
        "{:<34} {:>10} {:>10} {:>9} {:>8}",
        "", "req/s", "MB/s", "p99 ms", "vs py"
    );
    let table = |name: &str,
                 a: &str,
                 paths: &(dyn Fn(usize, usize) -> String + Sync),
                 n: usize,
                 size: usize,
                 base: Option<f64>|
     -> f64 {
        let (wall, lat, errors) = run(
            a,
            clients,
            n,
            |c, k, i| matches!(c.call("GET", &paths(k, i), &[], &[]), Ok((200, b)) if b.len() == size),
        );
        assert_eq!(errors, 0, "{name}: errors");
        let rps = (clients * n) as f64 / wall.as_secs_f64();
        println!(
            "{:<34} {:>10.0} {:>10.1} {:>9.2} {:>8}",
            name,
            rps,
            rps * size as f64 / 1e6,
            pct(&lat, 0.99),
            base.map_or("1.00".to_string(), |b| format!("{:.2}", rps / b))
        );
        rps
    };
    let py4k = table(
        "GET 4 KiB, python http.server",
        &paddr,
        &|k, i| format!("/s{}", (k * 31 + i) % 256),
        per,
        4096,
        None,
    );
    table(
        "GET 4 KiB, aslctl serve",
        &addr,
        &|k, i| format!("/v1/artifacts/{}", ids_small[(k * 31 + i) % 256]),
        per,
        4096,
        Some(py4k),
    );
    let n_large = (per / 20).max(4);
    let py4m = table(
        "GET 4 MiB, python http.server",
        &paddr,
        &|k, i| format!("/l{}", (k + i) % 8),
        n_large,
        4 << 20,
        None,
    );
    table(
        "GET 4 MiB, aslctl serve",
        &addr,
        &|k, i| format!("/v1/artifacts/{}", ids_large[(k + i) % 8]),
        n_large,
        4 << 20,
        Some(py4m),
    );
    let (wall, lat, errors) = run(&addr, clients, per, |c, k, i| {
        let b = noise(((k + 1) * 1_000_000 + i) as u64, 4096);
        matches!(c.call("PUT", "/v1/artifacts", &[], &b), Ok((201, _)))
    });
    let rps = (clients * per) as f64 / wall.as_secs_f64();
    println!(
        "{:<34} {:>10.0} {:>10.1} {:>9.2} {:>8}",
        "PUT 4 KiB (each committed)",
        rps,
        rps * 4096.0 / 1e6,
        pct(&lat, 0.99),
        "-"
    );
    assert_eq!(errors, 0);

    // Mixed load.
    let (wall, lat, errors) = run(&addr, clients, per, |c, k, i| match i % 4 {
        0 => matches!(
            c.call("PUT", "/v1/artifacts", &[], &noise((k * 7_000_000 + i) as u64, 8192)),
            Ok((201, _))
        ),
        1 => {
            matches!(c.call("GET", &format!("/v1/artifacts/{}", ids_small[(k + i) % 256]), &[], &[]), Ok((200, b)) if b.len() == 4096)
        }
        2 => matches!(
            c.call("GET", &format!("/v1/artifacts/{}", ids_large[(k + i) % 8]), &[("Range", "bytes=1000000-1065535")], &[]),
            Ok((206, b)) if b.len() == 65536
        ),
        _ => {
            let body = format!("{{\"ids\": [\"{}\", \"{}\"]}}", ids_small[i % 256], "0".repeat(64));
            matches!(
                c.call(
                    "POST",
                    "/v1/artifacts:missing",
                    &[("Content-Type", "application/json")],
                    body.as_bytes()
                ),
                Ok((200, _))
            )
        }
    });
    println!();
    println!(
        "mixed load (put 8 KiB / get 4 KiB / range 64 KiB of 4 MiB / missing), {clients} clients x {per} requests:"
    );
    println!(
        "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {errors}, server peak RSS {} MiB",
        (clients * per) as f64 / wall.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        peak_rss_kib(pid) / 1024
    );
    ccache(&addr, dir.path());
}

/// Compiles every `.c` under `src` into `out` with `cc` (through ccache
/// when `env` is given); seconds taken and ccache's hit count.
fn build(src: &Path, out: &Path, env: Option<&[(&str, String)]>) -> (f64, u64) {
    std::fs::create_dir_all(out).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let t = Instant::now();
    for f in &files {
        let o = out.join(f.file_stem().unwrap()).with_extension("o");
        let mut cmd = match env {
            Some(vars) => {
                let mut c = Command::new("ccache");
                c.arg("cc");
                for (k, v) in vars {
                    c.env(k, v);
                }
                c
            }
            None => Command::new("cc"),
        };
        let st = cmd.args(["-O2", "-c"]).arg(f).arg("-o").arg(&o).status().unwrap();
        assert!(st.success());
    }
    let secs = t.elapsed().as_secs_f64();
    let hits = env
        .and_then(|vars| {
            let dir = vars.iter().find(|(k, _)| *k == "CCACHE_DIR")?.1.clone();
            let o = Command::new("ccache")
                .env("CCACHE_DIR", dir)
                .arg("--print-stats")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let get = |k: &str| -> u64 {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}\t")))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            Some(get("direct_cache_hit") + get("preprocessed_cache_hit"))
        })
        .unwrap_or(0);
    (secs, hits)
}

fn ccache(addr: &str, dir: &Path) {
    if Command::new("ccache").arg("--version").output().is_err() {
        println!("\nccache: not installed, skipped");
        return;
    }
    let src = dir.join("csrc");
    std::fs::create_dir_all(&src).unwrap();
    let n = 120;
    for i in 0..n {
        let mut c = String::from("#include <string.h>\n#include <stdlib.h>\n");
        for j in 0..10 {
            c.push_str(&format!(
                "int f{i}_{j}(const char *s, int k) {{ int a = (int)strlen(s) * {j}; for (int x = 0; x < k; x++) a = a * 31 + x % {i}1; return a ^ k; }}\n"
            ));
        }
        std::fs::write(src.join(format!("m{i}.c")), c).unwrap();
    }
    let d = |name: &str| dir.join(name).display().to_string();
    let plain = build(&src, &dir.join("o0"), None).0;
    let local = vec![("CCACHE_DIR", d("cc-local"))];
    let (l1, _) = build(&src, &dir.join("o1"), Some(&local));
    let (l2, lh) = build(&src, &dir.join("o2"), Some(&local));
    let remote = |k: &str| {
        vec![
            ("CCACHE_DIR", d(k)),
            ("CCACHE_REMOTE_STORAGE", format!("http://{addr}|layout=bazel")),
            ("CCACHE_REMOTE_ONLY", "true".to_string()),
        ]
    };
    let (r1, _) = build(&src, &dir.join("o3"), Some(&remote("cc-r1")));
    let (r2, rh) = build(&src, &dir.join("o4"), Some(&remote("cc-r2")));
    println!();
    println!("ccache, {n} C files compiled one after another (cc -O2):");
    println!("{:<52} {:>8} {:>9}", "", "seconds", "hits");
    println!("{:<52} {:>8.2} {:>9}", "no ccache", plain, "-");
    println!("{:<52} {:>8.2} {:>9}", "ccache, local cache, first build", l1, "-");
    println!("{:<52} {:>8.2} {:>6}/{n}", "ccache, local cache, second build", l2, lh);
    println!("{:<52} {:>8.2} {:>9}", "ccache -> aslctl serve, first build", r1, "-");
    println!(
        "{:<52} {:>8.2} {:>6}/{n}",
        "ccache -> aslctl serve, second (empty local cache)", r2, rh
    );
    println!("  remote second build / local second build: {:.2}", r2 / l2);
}
