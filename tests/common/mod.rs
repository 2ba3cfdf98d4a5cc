//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

#[cfg(feature = "server")]
pub mod s3;
pub mod server;

use std::fs;
use std::path::Path;

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Copies a store directory as a disk image would hold it (used to "crash" a
/// store whose handle was leaked and so still holds the lock).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Crash-test workload: the bytes of artifact `seed`. Sizes span packed
/// artifacts and multi-chunk large ones; half compress, half do not. The seed
/// leads, so no two seeds share an id; every twentieth is a version of one
/// of two shared bases, so large puts share content-defined chunks with
/// earlier ones (and with puts a crash cut short).
pub fn crash_data(seed: u64) -> Vec<u8> {
    if seed.is_multiple_of(20) {
        let base = if seed.is_multiple_of(40) {
            noise(4040, 200_000)
        } else {
            (0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
        };
        let cut = (seed as usize * 7919) % base.len();
        let mut v = seed.to_le_bytes().to_vec();
        v.extend_from_slice(&base[..cut]);
        v.extend_from_slice(&noise(seed, 500 + (seed % 3000) as usize));
        v.extend_from_slice(&base[cut..]);
        return v;
    }
    let len = match seed % 10 {
        0 => 70_000 + (seed % 7) as usize * 10_000,
        1..=3 => (seed % 4000) as usize,
        _ => 200 + (seed % 1500) as usize,
    };
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = seed.to_le_bytes().to_vec();
    for i in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(if seed.is_multiple_of(2) {
            (x >> 24) as u8
        } else {
            (i % 13) as u8
        });
    }
    v
}

/// Small sizes so that a short run seals segments and checkpoints often.
pub fn crash_opts() -> asl::StoreOptions {
    asl::StoreOptions::new()
        .create(true)
        .block_target(16 << 10)
        .small_threshold(8 << 10)
        .chunk_size(16 << 10)
        .segment_target(256 << 10)
        .memtable_limit(300)
        .max_index_files(3)
        // Chunk lists of more than two chunks in parts, each committed as
        // the put goes: crashes and power cuts land between those commits.
        .part_chunks(2)
}

/// The child's loop: put, sometimes remove, commit, and only then print
/// `<seed> <id>` for each artifact the commit made durable. Never returns.
pub fn crash_child_loop(dir: &str, base: u64) -> ! {
    let s = crash_opts().open(dir).unwrap();
    let mut seed = base;
    loop {
        let batch = 1 + seed % 8;
        let mut put = Vec::new();
        for _ in 0..batch {
            let id = s.put(&crash_data(seed)).unwrap();
            put.push((seed, id));
            seed += 1;
        }
        if seed.is_multiple_of(5) {
            s.remove(&put[0].1).unwrap();
            put.remove(0);
        }
        s.commit().unwrap();
        for (sd, id) in put {
            println!("{sd} {id}");
        }
        if seed.is_multiple_of(37) {
            s.maintenance().seal().unwrap();
        }
    }
}

/// xorshift, seeded per run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs this test binary's `child_test` as a child with `envs`, lets it work
/// for `ms` milliseconds, SIGKILLs it and returns what it acknowledged.
pub fn run_and_kill(child_test: &str, envs: &[(&str, String)], ms: u64) -> Vec<(u64, asl::ArtifactId)> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let mut it = l.split(' ');
            if let (Some(a), Some(b)) = (it.next(), it.next()) {
                if let (Ok(sd), Ok(id)) = (a.parse::<u64>(), b.parse::<asl::ArtifactId>()) {
                    lines.push((sd, id));
                }
            }
        }
        lines
    });
    std::thread::sleep(std::time::Duration::from_millis(ms));
    // SIGKILL: no destructor, no flush.
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
    reader.join().unwrap()
}

/// Asserts that every acknowledged artifact (but those in `removed`) reads back
/// byte-identical.
pub fn check_acked(
    s: &asl::Store,
    acked: &[(u64, asl::ArtifactId)],
    removed: &std::collections::HashSet<asl::ArtifactId>,
    round: u32,
) {
    for (sd, id) in acked {
        if removed.contains(id) {
            continue;
        }
        let bytes = s
            .get(id)
            .unwrap_or_else(|e| panic!("round {round}: acknowledged {id} (seed {sd}) lost: {e}"));
        assert_eq!(bytes, crash_data(*sd), "round {round}: {id} differs");
    }
}

/// The first seed for the next round: past everything the last child used.
pub fn next_seed_after(got: &[(u64, asl::ArtifactId)], prev: u64) -> u64 {
    got.iter().map(|(s, _)| *s + 100).max().unwrap_or(0).max(prev + 100)
}

/// Text like source or logs: about 3-4x with zstd.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "fn", "let", "match", "segment", "block", "index", "commit", "reader", "writer", "offset", "length", "error",
        "result", "value", "buffer", "store",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 24);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 8 {
            0 => out.extend_from_slice(format!("{} ", x >> 40).as_bytes()),
            1 => out.extend_from_slice(b"();\n    "),
            _ => {
                out.extend_from_slice(WORDS[(x >> 8) as usize % 16].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// The `aslctl` binary cargo built for these tests (feature `cli`).
pub fn aslctl_bin() -> &'static str {
    // Not env!: test crates that never run the binary must still build
    // without feature cli.
    match option_env!("CARGO_BIN_EXE_aslctl") {
        Some(bin) => bin,
        None => panic!("the aslctl binary is built with feature cli"),
    }
}

/// Runs the real `aslctl` on `store` with `args` (`$ASL_STORE` cleared).
pub fn aslctl(store: &Path, args: &[&str]) -> std::process::Output {
    aslctl_cmd(store, args).output().unwrap()
}

/// Runs `cmd` on a pseudo-terminal (made by `script`), as a person at a
/// shell would; what it wrote to the terminal, stdout and stderr together,
/// comes back as stdout. The command must succeed.
pub fn on_tty(cmd: &std::process::Command) -> String {
    let quote = |a: &std::ffi::OsStr| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''"));
    let mut line = quote(cmd.get_program());
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut tty = std::process::Command::new("script");
    tty.args(["-qec", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => tty.env(k, v),
            None => tty.env_remove(k),
        };
    }
    let o = tty.output().expect("script (util-linux) runs");
    assert!(o.status.success(), "{line}: {}", stdout_of(&o));
    stdout_of(&o)
}

/// Whether a terminal's output shows a progress bar of `phase`: the phase,
/// then the bar and its `eta`.
pub fn shows_bar(out: &str, phase: &str) -> bool {
    out.lines().any(|l| l.contains(phase) && l.contains(" eta "))
}

/// `aslctl --store STORE ARGS` as a command not yet run (`$ASL_STORE`
/// cleared).
pub fn aslctl_cmd(store: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(aslctl_bin());
    c.arg("--store").arg(store).args(args).env_remove("ASL_STORE");
    c
}

/// A command's stdout as text.
pub fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `python3 SCRIPT ARG` (SCRIPT relative to the repository) and
/// parses what it prints as JSON; `needs` says what to install when it fails.
pub fn py_json(script: &str, arg: &Path, needs: &str) -> serde_json::Value {
    let o = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("python3 runs (needs {needs}: see .ci/run): {e}"));
    assert!(o.status.success(), "{script} (needs {needs}): {}", stderr_of(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `aslctl --store STORE ARGS`, which must succeed: its stdout.
pub fn aslctl_ok(store: &Path, args: &[&str]) -> String {
    let o = aslctl(store, args);
    assert!(o.status.success(), "{args:?}: {}", stderr_of(&o));
    stdout_of(&o)
}

/// `aslctl --store STORE --json ARGS`, which must succeed: its JSON.
pub fn aslctl_json(store: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = aslctl_ok(store, &a);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// `aslctl ingest FILE` in `store`: the file's id.
pub fn ingest_file(store: &Path, file: &Path) -> String {
    let line = aslctl_ok(store, &["ingest", file.to_str().unwrap()]);
    line.split_whitespace().next().unwrap().to_string()
}

/// `aslctl ingest --tree DIR` in `store`: the id of DIR's tree.
pub fn ingest_tree(store: &Path, dir: &Path) -> String {
    let d = dir.to_str().unwrap();
    let lines = aslctl_ok(store, &["ingest", "--tree", d]);
    let want = format!("{d}/");
    lines
        .lines()
        .find_map(|l| {
            l.split_once("  ")
                .filter(|(_, p)| *p == want)
                .map(|(id, _)| id.to_string())
        })
        .unwrap_or_else(|| panic!("no tree line in {lines}"))
}

/// A helper process killed however the test ends (an orphan holding a
/// pipe would hang whatever reads the test's output).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks a command's `--json` output (every line of it) against its
/// schema in `spec/cli/NAME.schema.json`, with Python's `jsonschema` (an
/// independent validator; see tests/py/cli_json.py).
pub fn check_json(schema: &str, output: &str) {
    use std::io::Write;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .arg(root.join("tests/py/cli_json.py"))
        .arg(root.join("spec/cli"))
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 runs (needs jsonschema: see scripts/setup): {e}"));
    child.stdin.take().unwrap().write_all(output.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{schema}: {}", stdout_of(&o));
}

/// The values of an NDJSON output (a list under `--json`): one per line.
pub fn ndjson(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `aslctl --store STORE --json ARGS` for a list, which must succeed: its
/// NDJSON lines.
pub fn aslctl_lines(store: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    ndjson(&aslctl_ok(store, &a))
}

/// NDJSON lines as one object keyed by each line's `key` (a fetch's
/// reports by remote, say).
pub fn by_key(lines: Vec<serde_json::Value>, key: &str) -> serde_json::Value {
    let map = lines
        .into_iter()
        .map(|v| {
            (
                v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}")).to_string(),
                v,
            )
        })
        .collect();
    serde_json::Value::Object(map)
}
