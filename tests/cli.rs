//! End-to-end tests of the real `aslctl` binary: output formats, exit codes,
//! and that bad input leaves the store as it was.

mod common;
use common::noise;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_aslctl");
use common::{aslctl, stderr_of as stderr, stdout_of as stdout};

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store = root.join("store");
    Env { _tmp: tmp, root, store }
}

/// The store's first segment file.
fn first_segment(store: &Path) -> PathBuf {
    fs::read_dir(store.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// The logical state a failed command must not change.
fn state(store: &Path) -> (String, String) {
    let ls = aslctl(store, &["ls"]);
    let st = aslctl(store, &["--json", "stat"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    (stdout(&ls), v["current_id"].as_str().unwrap().to_string())
}

#[test]
fn ingest_prints_b3sum_lines_and_everything_reads_back() {
    let e = env();
    let files = e.root.join("in");
    fs::create_dir_all(files.join("sub")).unwrap();
    fs::write(files.join("a.txt"), b"hello\n").unwrap();
    fs::write(files.join("sub/big.bin"), noise(1, 3 << 20)).unwrap();
    fs::write(files.join("empty"), b"").unwrap();
    let o = aslctl(&e.store, &["ingest", files.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut expected = String::new();
    for name in ["a.txt", "empty", "sub/big.bin"] {
        let p = files.join(name);
        let id = blake3::hash(&fs::read(&p).unwrap()).to_hex();
        expected.push_str(&format!("{id}  {}\n", p.display()));
    }
    assert_eq!(out, expected);
    assert!(stderr(&o).contains("ingested 3 files"), "{}", stderr(&o));
    // Where the real b3sum is installed, the lines must match it byte for byte.
    if let Ok(b3) = Command::new("b3sum").arg(files.join("a.txt")).output() {
        let one = aslctl(&e.store, &["ingest", files.join("a.txt").to_str().unwrap()]);
        assert_eq!(stdout(&one), stdout(&b3));
    }
    // Round trip through get, cat and a prefix.
    let big_id = blake3::hash(&fs::read(files.join("sub/big.bin")).unwrap())
        .to_hex()
        .to_string();
    let dst = e.root.join("out.bin");
    let g = aslctl(&e.store, &["get", &big_id[..10], "-o", dst.to_str().unwrap()]);
    assert!(g.status.success(), "{}", stderr(&g));
    assert_eq!(fs::read(&dst).unwrap(), fs::read(files.join("sub/big.bin")).unwrap());
    let small_id = blake3::hash(b"hello\n").to_hex().to_string();
    let c = aslctl(&e.store, &["cat", &small_id]);
    assert_eq!(c.stdout, b"hello\n");
    let ls = stdout(&aslctl(&e.store, &["ls"]));
    // Three files and the trees of in/ and in/sub/.
    assert_eq!(ls.lines().count(), 5);
    assert!(ls.contains(&format!("{small_id} 6")));
    // Re-ingest is all deduplicated.
    let again = aslctl(&e.store, &["ingest", files.to_str().unwrap()]);
    assert!(stderr(&again).contains("0 new files"), "{}", stderr(&again));
    let v = aslctl(&e.store, &["verify"]);
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn json_outputs_parse() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, b"json please").unwrap();
    let o = aslctl(&e.store, &["--json", "ingest", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"][0]["new"], true);
    assert_eq!(v["summary"]["files"], 1);
    for cmd in [&["--json", "ls"][..], &["--json", "stat"], &["--json", "verify"]] {
        let o = aslctl(&e.store, cmd);
        assert!(o.status.success());
        let _: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|x| panic!("{cmd:?}: {x}"));
    }
    let id = blake3::hash(b"json please").to_hex().to_string();
    let o = aslctl(&e.store, &["--json", "rm", &id]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"][0], id.as_str());
    let s: serde_json::Value = serde_json::from_slice(&aslctl(&e.store, &["--json", "stat"]).stdout).unwrap();
    assert_eq!(s["artifacts"], 0);
}

#[test]
fn id_errors_have_documented_exit_codes() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, b"x").unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    for i in 0..40u32 {
        let p = e.root.join(format!("g{i}"));
        fs::write(&p, i.to_le_bytes()).unwrap();
        assert!(aslctl(&e.store, &["ingest", p.to_str().unwrap()]).status.success());
    }
    let before = state(&e.store);
    let malformed = aslctl(&e.store, &["get", "not-hex"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(stderr(&malformed).contains("invalid artifact id"));
    let ids: Vec<String> = stdout(&aslctl(&e.store, &["ls"]))
        .lines()
        .map(|l| l[..1].to_string())
        .collect();
    let shared = ids.iter().find(|c| ids.iter().filter(|d| d == c).count() > 1).unwrap();
    let ambiguous = aslctl(&e.store, &["cat", shared]);
    assert_eq!(ambiguous.status.code(), Some(2), "{}", stderr(&ambiguous));
    assert!(stderr(&ambiguous).contains("ambiguous"));
    let absent = blake3::hash(b"never stored").to_hex().to_string();
    let missing = aslctl(&e.store, &["get", &absent]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("not found"));
    let rm = aslctl(&e.store, &["rm", &absent]);
    assert_eq!(rm.status.code(), Some(1));
    assert_eq!(aslctl(&e.store, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(state(&e.store), before);
}

#[test]
fn bad_paths_are_refused_before_anything_is_written() {
    let e = env();
    let missing = aslctl(&e.store, &["ingest", e.root.join("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
    assert!(!e.store.exists(), "a failed first ingest must not create the store");

    let ok = e.root.join("ok");
    fs::write(&ok, b"fine").unwrap();
    assert!(aslctl(&e.store, &["ingest", ok.to_str().unwrap()]).status.success());
    let before = state(&e.store);

    let sock_path = e.root.join("sock");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let other = e.root.join("other");
    fs::write(&other, b"not stored because the socket fails the command").unwrap();
    let o = aslctl(
        &e.store,
        &["ingest", other.to_str().unwrap(), sock_path.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    assert_eq!(state(&e.store), before);

    // An unreadable file. Root reads everything, so as root the command runs as
    // `nobody` through setpriv.
    let secret = e.root.join("secret");
    fs::write(&secret, b"top secret").unwrap();
    let mut perms = fs::metadata(&secret).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    fs::set_permissions(&secret, perms).unwrap();
    let is_root = running_as_root();
    let o = if is_root {
        chmod_r(&e.root, 0o777);
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "--store"])
            .arg(&e.store)
            .args(["ingest", other.to_str().unwrap(), secret.to_str().unwrap()])
            .output()
            .unwrap()
    } else {
        aslctl(&e.store, &["ingest", other.to_str().unwrap(), secret.to_str().unwrap()])
    };
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("ermission denied"), "{}", stderr(&o));
    assert_eq!(state(&e.store), before);
}

/// Root reads everything, so permission tests run their command as `nobody`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn chmod_r(p: &Path, mode: u32) {
    let mut perms = fs::metadata(p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
    fs::set_permissions(p, perms).unwrap();
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if (e.file_type().unwrap().is_dir() || e.file_type().unwrap().is_file()) && e.file_name() != "secret" {
                chmod_r(&e.path(), mode);
            }
        }
    }
}

#[test]
fn second_writer_gets_a_clear_error() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, b"one").unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    let holder = asl::Store::open(&e.store).unwrap();
    let o = aslctl(&e.store, &["ingest", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // The refusal names the holder: this test process.
    let holder_pid = format!("(pid {})", std::process::id());
    assert!(stderr(&o).contains("store is locked by"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&holder_pid), "{}", stderr(&o));
    assert!(stderr(&o).contains("LOCK"));
    // Readers are not blocked by the writer.
    assert!(aslctl(&e.store, &["ls"]).status.success());
    drop(holder);
}

#[test]
fn foreign_and_truncated_store_files() {
    let e = env();
    fs::create_dir_all(&e.store).unwrap();
    fs::write(e.store.join("README"), b"someone else's directory").unwrap();
    let f = e.root.join("f");
    fs::write(&f, b"data").unwrap();
    let o = aslctl(&e.store, &["ingest", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not an ASL store"), "{}", stderr(&o));
    assert_eq!(fs::read(e.store.join("README")).unwrap(), b"someone else's directory");

    let e = env();
    fs::write(&f, noise(3, 300_000)).unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    assert!(aslctl(&e.store, &["seal"]).status.success());
    let seg = first_segment(&e.store);
    let good = fs::read(&seg).unwrap();
    fs::write(&seg, &good[..good.len() / 2]).unwrap();
    let o = aslctl(&e.store, &["ls"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(seg.file_name().unwrap().to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    fs::write(&seg, &good).unwrap();
    assert!(aslctl(&e.store, &["verify"]).status.success());
}

#[test]
fn verify_lists_corruption_and_repair_rebuilds() {
    let e = env();
    let dir = e.root.join("in");
    fs::create_dir_all(&dir).unwrap();
    let mut contents = Vec::new();
    for i in 0..30u64 {
        let b = noise(i, 2000);
        fs::write(dir.join(format!("f{i:02}")), &b).unwrap();
        contents.push(b);
    }
    assert!(aslctl(&e.store, &["ingest", dir.to_str().unwrap()]).status.success());
    assert!(aslctl(&e.store, &["seal"]).status.success());
    let seg = first_segment(&e.store);
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.windows(32).position(|w| w == &contents[4][500..532]).unwrap();
    bytes[at] ^= 0x80;
    fs::write(&seg, &bytes).unwrap();
    let bad_id = blake3::hash(&contents[4]).to_hex().to_string();
    let v = aslctl(&e.store, &["verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(stdout(&v).contains(&bad_id), "{}", stdout(&v));
    let c = aslctl(&e.store, &["cat", &bad_id]);
    assert_eq!(c.status.code(), Some(1));
    assert!(
        stderr(&c).contains("corrupt") && stderr(&c).contains(".seg"),
        "{}",
        stderr(&c)
    );
    bytes[at] ^= 0x80;
    fs::write(&seg, &bytes).unwrap();

    fs::remove_dir_all(e.store.join("index")).unwrap();
    fs::remove_dir_all(e.store.join("log")).unwrap();
    let r = aslctl(&e.store, &["repair"]);
    assert!(r.status.success(), "{}", stderr(&r));
    // The 30 files and their directory's tree.
    assert!(stdout(&r).contains("31 artifacts"), "{}", stdout(&r));
    for b in &contents {
        let id = blake3::hash(b).to_hex().to_string();
        assert_eq!(aslctl(&e.store, &["cat", &id]).stdout, *b);
    }
}

/// A full disk: a 2 MiB tmpfs in a private mount namespace. The failing ingest
/// exits 2 with the OS error, and the store keeps exactly its earlier content.
#[test]
fn full_disk_fails_cleanly() {
    let e = env();
    let small = e.root.join("small");
    let big = e.root.join("big");
    fs::write(&small, b"fits").unwrap();
    fs::write(&big, noise(8, 4 << 20)).unwrap();
    let mnt = e.root.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let store = mnt.join("s");
    let script = format!(
        "set -u; mount -t tmpfs -o size=2m tmpfs {mnt} || exit 99; \
         {bin} --store {store} ingest {small} >/dev/null 2>&1 || exit 98; \
         before=$({bin} --store {store} --json stat); \
         {bin} --store {store} ingest {big}; echo \"rc=$?\"; \
         after=$({bin} --store {store} --json stat); \
         {bin} --store {store} verify || echo verify-failed; \
         {bin} --store {store} ls; \
         [ \"$before\" = \"$after\" ] && echo same-stat",
        mnt = mnt.display(),
        bin = BIN,
        store = store.display(),
        small = small.display(),
        big = big.display()
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = stdout(&o);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(99), "cannot mount a tmpfs here: {err}");
    assert!(out.contains("rc=2"), "out: {out}\nerr: {err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(!out.contains("verify-failed"), "{out}");
    assert!(out.contains(&format!("{} 4", blake3::hash(b"fits").to_hex())), "{out}");
    assert!(out.contains("same-stat"), "{out}");
}

/// `verify` from another process while a writer is mid-write: bytes past the
/// open segment's last commit are not the store's yet and must not be reported.
#[test]
fn verify_beside_a_writer_ignores_the_uncommitted_tail() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, noise(4, 50_000)).unwrap();
    let w = asl::Store::create(&e.store).unwrap();
    w.put(&fs::read(&f).unwrap()).unwrap();
    w.commit().unwrap();
    let seg = first_segment(&e.store);
    // A block write in flight: a header's worth of bytes that is not yet a block.
    let mut tail = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut tail, b"ASLB-half-written-block-header").unwrap();
    let v = aslctl(&e.store, &["verify"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    drop(w);
}

#[test]
fn snapshots_pins_and_gc_from_the_command_line() {
    let e = env();
    let files = e.root.join("in");
    fs::create_dir_all(&files).unwrap();
    for i in 0..20u64 {
        fs::write(files.join(format!("f{i}")), noise(i, 20_000 + i as usize)).unwrap();
    }
    let o = aslctl(&e.store, &["ingest", files.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ids[i] is the id of file f{i} (ingest prints them in walk order).
    let mut ids = vec![String::new(); 20];
    for l in stdout(&o).lines() {
        let i: usize = l.rsplit('f').next().unwrap().parse().unwrap();
        ids[i] = l[..64].to_string();
    }
    let st = |store: &Path| -> serde_json::Value {
        serde_json::from_slice(&aslctl(store, &["--json", "stat"]).stdout).unwrap()
    };
    let current = st(&e.store)["current_id"].as_str().unwrap().to_string();

    let o = aslctl(&e.store, &["snapshot", "create", "v1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).split_whitespace().next().unwrap(),
        current,
        "identity printed on creation"
    );
    let o = aslctl(&e.store, &["snapshot", "create", "v1"]);
    assert_eq!(o.status.code(), Some(2), "duplicate name");
    let o = aslctl(&e.store, &["snapshot", "create", "../escape"]);
    assert_eq!(o.status.code(), Some(2), "bad name: {}", stderr(&o));

    // Remove half from CURRENT; still readable at the snapshot after GC.
    let half: Vec<&str> = ids[..10].iter().map(|s| s.as_str()).collect();
    let mut args = vec!["rm"];
    args.extend(&half);
    assert!(aslctl(&e.store, &args).status.success());
    assert!(aslctl(&e.store, &["pin", "keep-one", &ids[0][..10]]).status.success());
    let o = aslctl(&e.store, &["--json", "gc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(g["artifacts_copied"], 0, "everything is still retained by v1: {g}");
    let o = aslctl(
        &e.store,
        &["get", "--at", "v1", &ids[3], "-o", e.root.join("out").to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(e.root.join("out")).unwrap(), noise(3, 20_003));
    assert_eq!(
        aslctl(&e.store, &["cat", &ids[3]]).status.code(),
        Some(1),
        "gone from CURRENT"
    );
    let ls_at = stdout(&aslctl(&e.store, &["ls", "--at", "v1"]));
    // The files and the tree of their directory.
    assert_eq!(ls_at.lines().count(), 21);
    assert_eq!(stdout(&aslctl(&e.store, &["ls"])).lines().count(), 11);

    assert!(aslctl(&e.store, &["snapshot", "create", "v2"]).status.success());
    let d: serde_json::Value =
        serde_json::from_slice(&aslctl(&e.store, &["--json", "snapshot", "diff", "v1", "v2"]).stdout).unwrap();
    assert_eq!(d["removed"].as_array().unwrap().len(), 10);
    assert_eq!(d["added"].as_array().unwrap().len(), 0);
    let l = common::ndjson(&stdout(&aslctl(&e.store, &["--json", "snapshot", "list"])));
    assert_eq!(l.len(), 2);
    let o = aslctl(&e.store, &["--json", "snapshot", "show", "v1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["artifacts"], 21);
    assert_eq!(aslctl(&e.store, &["snapshot", "show", "nope"]).status.code(), Some(1));
    assert_eq!(
        aslctl(&e.store, &["snapshot", "prune"]).status.code(),
        Some(2),
        "no keep rule"
    );
    let o = aslctl(&e.store, &["--json", "snapshot", "prune", "--keep", "v2", "--dry-run"]);
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["deleted"][0]["name"], "v1");
    assert_eq!(
        aslctl(&e.store, &["snapshot", "list"])
            .stdout
            .split(|b| *b == b'\n')
            .count(),
        3
    );
    let o = aslctl(&e.store, &["snapshot", "prune", "--keep", "v2", "--keep-last", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // v1 gone: the removed artifacts are garbage except the pinned one.
    let before = st(&e.store);
    assert!(before["garbage_bytes"].as_u64().unwrap() > 150_000, "{before}");
    let dry: serde_json::Value =
        serde_json::from_slice(&aslctl(&e.store, &["--json", "gc", "--dry-run", "--threshold", "1"]).stdout).unwrap();
    assert_eq!(
        st(&e.store)["garbage_bytes"],
        before["garbage_bytes"],
        "dry run changes nothing"
    );
    assert!(dry["reclaimed_bytes"].as_u64().unwrap() > 0);
    let o = aslctl(&e.store, &["gc", "--threshold", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = st(&e.store);
    assert_eq!(after["garbage_bytes"], 0, "{after}");
    assert!(after["physical_bytes"].as_u64().unwrap() < before["physical_bytes"].as_u64().unwrap());
    let pins = stdout(&aslctl(&e.store, &["pins"]));
    assert!(pins.starts_with(&ids[0]) && pins.contains("keep-one"));
    assert_eq!(aslctl(&e.store, &["unpin", "nope"]).status.code(), Some(1));
    assert!(aslctl(&e.store, &["unpin", "keep-one"]).status.success());
    assert_eq!(aslctl(&e.store, &["gc", "--threshold", "2"]).status.code(), Some(2));
    assert!(aslctl(&e.store, &["verify"]).status.success());
}

#[test]
fn bench_smoke_sweep_produces_parseable_output() {
    let e = env();
    let work = e.root.join("bench-work");
    let plot = e.root.join("plot.svg");
    let csv = e.root.join("r.csv");
    let o = Command::new(BIN)
        .args(["--json", "bench", "--smoke", "--workload", "tiny,random,huge"])
        .args(["--block", "64K,1M", "--zstd", "off,3", "--work"])
        .arg(&work)
        .arg("--plot")
        .arg(&plot)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    common::check_json("bench", &String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3 * 2 * 2);
    assert!(v["limits"]["blake3_one_thread"].as_f64().unwrap() > 0.0);
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    for r in results {
        assert!(r["ingest_mb_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["space_amplification"].as_f64().unwrap() > 0.0, "{r}");
        if r["workload"] == "random" && r["packing"]["compression"].is_null() {
            // Incompressible and raw: the segments hold the bytes plus framing.
            let amp = r["space_amplification"].as_f64().unwrap();
            assert!((1.0..1.2).contains(&amp), "{r}");
        }
    }
    assert_eq!(fs::read_to_string(&csv).unwrap().lines().count(), 1 + 12);
    assert!(fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    assert!(!work.exists(), "the harness cleans up after itself");
    let bad = Command::new(BIN)
        .args(["bench", "--smoke", "--zstd", "99"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `repair` over a segment it cannot use: the segment is set aside, not
/// deleted, the command says so and exits 1; the rest of the store works.
#[test]
fn repair_quarantines_and_exits_1_when_it_cannot_keep_everything() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, noise(9, 3000)).unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    assert!(aslctl(&e.store, &["seal"]).status.success());
    let g = e.root.join("g");
    fs::write(&g, noise(10, 3000)).unwrap();
    assert!(aslctl(&e.store, &["ingest", g.to_str().unwrap()]).status.success());
    // The segment claims another store (a valid header with another store
    // id): not this store's to use.
    let seg = first_segment(&e.store);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[20] ^= 1;
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(&seg, &bytes).unwrap();
    let r = aslctl(&e.store, &["repair"]);
    assert_eq!(r.status.code(), Some(1), "{}{}", stdout(&r), stderr(&r));
    assert!(stderr(&r).contains("quarantined"), "{}", stderr(&r));
    assert!(
        stderr(&r).contains(&blake3::hash(&noise(9, 3000)).to_hex().to_string()),
        "{}",
        stderr(&r)
    );
    let id = blake3::hash(&noise(10, 3000)).to_hex().to_string();
    assert_eq!(aslctl(&e.store, &["cat", &id]).stdout, noise(10, 3000));
    assert!(e.store.join("quarantine").join(seg.file_name().unwrap()).is_file());
}

/// Smaller command-line fixes, each once wrong: `--keep-last 0` is not a rule;
/// an empty `ASL_STORE` means the default store; a STORE file with a bad
/// checksum is corruption (exit 1); a name with a carriage return is printed
/// as the b3sum installed here prints it; `ingest .` beside the default store
/// skips the store.
#[test]
fn small_cli_fixes() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, b"one").unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    for name in ["a", "b"] {
        assert!(aslctl(&e.store, &["snapshot", "create", name]).status.success());
    }
    let p = aslctl(&e.store, &["snapshot", "prune", "--keep-last", "0"]);
    assert_eq!(p.status.code(), Some(2), "{}", stderr(&p));
    assert_eq!(stdout(&aslctl(&e.store, &["snapshot", "list"])).lines().count(), 2);

    // An empty ASL_STORE: the default ./.asl in the working directory.
    let cwd = e.root.join("work");
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("x"), b"in the working directory").unwrap();
    fs::write(cwd.join("cr\rname"), b"carriage return").unwrap();
    let o = Command::new(BIN)
        .current_dir(&cwd)
        .env("ASL_STORE", "")
        .args(["ingest", "x", "cr\rname"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cwd.join(".asl").join("STORE").is_file());
    // The carriage-return line is exactly b3sum's.
    let b3 = Command::new("b3sum")
        .current_dir(&cwd)
        .arg("cr\rname")
        .output()
        .unwrap();
    let line = stdout(&o).lines().nth(1).unwrap().to_string();
    assert_eq!(format!("{line}\n"), stdout(&b3));
    // `ingest .` with the default store: its own files are left out.
    let o = Command::new(BIN)
        .current_dir(&cwd)
        .env_remove("ASL_STORE")
        .args(["ingest", "."])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(the store itself)"), "{}", stderr(&o));
    assert!(!stdout(&o).contains(".asl"), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 2);

    // `pin NAME ID` never moves an existing pin silently; --force does.
    let other = blake3::hash(b"in the working directory").to_hex().to_string();
    let x = cwd.join(".asl");
    assert!(aslctl(&x, &["pin", "p", &other]).status.success());
    let p = aslctl(&x, &["pin", "p", &blake3::hash(b"carriage return").to_hex()]);
    assert_eq!(p.status.code(), Some(2), "{}", stderr(&p));
    assert!(stderr(&p).contains("already holds"), "{}", stderr(&p));
    assert!(stdout(&aslctl(&x, &["pins"])).starts_with(&other));
    let p = aslctl(&x, &["pin", "p", "--force", &blake3::hash(b"carriage return").to_hex()]);
    assert!(p.status.success(), "{}", stderr(&p));
    assert!(!stdout(&aslctl(&x, &["pins"])).contains(&other));

    // A flipped bit in STORE: corruption, exit 1 (not "not a store", exit 2).
    let store_file = e.store.join("STORE");
    let mut b = fs::read(&store_file).unwrap();
    b[16] ^= 1;
    fs::write(&store_file, &b).unwrap();
    let s = aslctl(&e.store, &["stat"]);
    assert_eq!(s.status.code(), Some(1), "{}", stderr(&s));
    assert!(stderr(&s).contains("corrupt"), "{}", stderr(&s));
}

/// `get -o` touches only what it creates: a corrupt artifact leaves an existing
/// file as it was, a device node is written in place and never removed, the
/// store's own files are refused, and `-` is stdout.
#[test]
fn get_output_touches_only_what_it_creates() {
    let e = env();
    let f = e.root.join("f");
    let data = noise(21, 5000);
    fs::write(&f, &data).unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    let id = blake3::hash(&data).to_hex().to_string();

    let o = aslctl(&e.store, &["get", &id, "-o", "-"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, data);

    let seg = first_segment(&e.store);
    let before = fs::read(&seg).unwrap();
    let o = aslctl(&e.store, &["get", &id, "-o", seg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("inside the store"), "{}", stderr(&o));
    assert_eq!(fs::read(&seg).unwrap(), before);

    // A private full device (root only; skipped with a message otherwise).
    let dev = e.root.join("full");
    let made = Command::new("mknod")
        .args([dev.to_str().unwrap(), "c", "1", "7"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let o = aslctl(&e.store, &["get", &id, "-o", dev.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::metadata(&dev).unwrap().file_type().is_char_device(),
            "the device node is gone"
        );
    } else {
        eprintln!("mknod not permitted here: device-node case skipped");
    }

    // Corrupt the artifact: an existing output file keeps its contents.
    let out = e.root.join("out");
    fs::write(&out, b"the user's own file").unwrap();
    let mut b = fs::read(&seg).unwrap();
    let at = b.windows(32).position(|w| w == &data[100..132]).unwrap();
    b[at] ^= 1;
    fs::write(&seg, &b).unwrap();
    let o = aslctl(&e.store, &["get", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), b"the user's own file");
    let leftovers: Vec<_> = fs::read_dir(&e.root)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains(".aslctl-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
}

/// Output errors: a closed pipe ends `cat` quietly with exit 0; a full stdout
/// is one line and exit 2 (never a panic), and `ingest` reports that its files
/// were committed although their lines were lost.
#[test]
fn output_errors_are_handled() {
    use std::io::Read;
    use std::process::Stdio;
    let e = env();
    let f = e.root.join("f");
    let data = noise(31, 3 << 20);
    fs::write(&f, &data).unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    let id = blake3::hash(&data).to_hex().to_string();
    // `cat BIG | head -c 10`: read ten bytes, close the pipe.
    let mut child = Command::new(BIN)
        .args(["--store", e.store.to_str().unwrap(), "cat", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(&head, &data[..10]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));

    // A full stdout: a private /dev/full node (root only).
    let dev = e.root.join("full");
    let made = Command::new("mknod")
        .args([dev.to_str().unwrap(), "c", "1", "7"])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("mknod not permitted here: full-stdout cases skipped");
        return;
    }
    for args in [vec!["stat"], vec!["snapshot", "create", "s1"], vec!["pins"]] {
        let full = fs::OpenOptions::new().write(true).open(&dev).unwrap();
        let o = Command::new(BIN)
            .arg("--store")
            .arg(&e.store)
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        if args[0] == "pins" {
            // Nothing to print, nothing fails.
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("No space left"), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    // The snapshot was made although its line could not be printed.
    assert!(stdout(&aslctl(&e.store, &["snapshot", "list"])).contains("s1"));
    let g = e.root.join("g");
    fs::write(&g, b"another file").unwrap();
    let full = fs::OpenOptions::new().write(true).open(&dev).unwrap();
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&e.store)
        .args(["ingest", g.to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("the command itself completed"), "{}", stderr(&o));
    let gid = blake3::hash(b"another file").to_hex().to_string();
    assert_eq!(aslctl(&e.store, &["cat", &gid]).stdout, b"another file");
}

/// A command whose work is committed but whose closing checkpoint fails says
/// so the same way everywhere: its normal output, then one line saying the
/// changes are committed, exit 2; the work is there on the next open. The
/// checkpoint fails because `index/` is not writable (as root, the commands
/// run as `nobody`, whom the permissions bind).
#[test]
fn a_failed_closing_checkpoint_after_a_commit_is_reported_alike() {
    let e = env();
    let f1 = e.root.join("f1");
    let f2 = e.root.join("f2");
    fs::write(&f1, b"first").unwrap();
    fs::write(&f2, b"second").unwrap();
    assert!(aslctl(&e.store, &["ingest", f1.to_str().unwrap()]).status.success());
    let is_root = running_as_root();
    chmod_r(&e.root, 0o777);
    let index = e.store.join("index");
    let mut perms = fs::metadata(&index).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    fs::set_permissions(&index, perms).unwrap();
    let run = |args: &[&str]| {
        let mut c = if is_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        c.arg("--store").arg(&e.store).args(args).output().unwrap()
    };
    let id2 = blake3::hash(b"second").to_hex().to_string();
    let o = run(&["ingest", f2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&id2), "{}", stdout(&o));
    assert!(stderr(&o).contains("changes are committed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("ingested 1 files"), "{}", stderr(&o));
    let o = run(&["rm", &id2]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("removed {id2}\n"));
    assert!(stderr(&o).contains("changes are committed"), "{}", stderr(&o));
    let o = run(&["pin", "keep", &blake3::hash(b"first").to_hex()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("changes are committed"), "{}", stderr(&o));
    chmod_r(&e.root, 0o777);
    let ls = stdout(&aslctl(&e.store, &["ls"]));
    assert!(ls.contains(&blake3::hash(b"first").to_hex().to_string()), "{ls}");
    assert!(!ls.contains(&id2), "the committed rm was lost: {ls}");
    assert!(stdout(&aslctl(&e.store, &["pins"])).contains("keep"));
}

/// `ingest -` stores standard input (small or streamed large) and prints the
/// line `b3sum -` prints; `-` cannot be mixed with paths.
#[test]
fn ingest_reads_standard_input() {
    use std::io::Write as _;
    let e = env();
    for data in [b"from a pipe\n".to_vec(), noise(77, 3 << 20)] {
        let mut child = Command::new(BIN)
            .arg("--store")
            .arg(&e.store)
            .args(["ingest", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let mut b3 = Command::new("b3sum")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        b3.stdin.take().unwrap().write_all(&data).unwrap();
        assert_eq!(stdout(&o), stdout(&b3.wait_with_output().unwrap()));
        let id = stdout(&o)[..64].to_string();
        assert_eq!(aslctl(&e.store, &["cat", &id]).stdout, data);
    }
    // Under --json, the shape of any other ingest: one file named `-`.
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(&e.store)
        .args(["--json", "ingest", "--sha256", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"json from a pipe").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    common::check_json("ingest", &stdout(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["files"][0]["path"], "-");
    assert_eq!(v["files"][0]["len"], 16);
    assert_eq!(v["files"][0]["id"], blake3::hash(b"json from a pipe").to_hex().as_str());
    assert_eq!(v["files"][0]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        (
            v["summary"]["new_files"].as_u64(),
            v["summary"]["deduplicated_files"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let f = e.root.join("f");
    fs::write(&f, b"x").unwrap();
    let o = aslctl(&e.store, &["ingest", "-", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("standard input"), "{}", stderr(&o));
}

/// A store written by a newer version (STORE's version field above what this
/// build knows, checksum intact) is refused by every command, `repair`
/// included, and left byte for byte as it was.
#[test]
fn a_store_of_a_future_version_is_refused_and_untouched() {
    let e = env();
    let f = e.root.join("f");
    fs::write(&f, b"from the future").unwrap();
    assert!(aslctl(&e.store, &["ingest", f.to_str().unwrap()]).status.success());
    let store_file = e.store.join("STORE");
    let mut b = fs::read(&store_file).unwrap();
    b[8] = 9;
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(&store_file, &b).unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for en in fs::read_dir(&d).unwrap() {
                let p = en.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let before = snapshot(&e.store);
    for args in [
        &["repair"][..],
        &["stat"],
        &["verify"],
        &["ingest", f.to_str().unwrap()],
    ] {
        let o = aslctl(&e.store, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("version 9"), "{args:?}: {}", stderr(&o));
    }
    assert!(snapshot(&e.store) == before, "a refused command changed the store");
}

/// Two versions of a large file share their content-defined chunks; after
/// one is removed, `gc` sweeps the chunks only it had and the other still
/// reads; `--fixed-chunks` stores each version whole.
#[test]
fn versions_share_chunks_and_gc_sweeps_what_only_a_removed_one_had() {
    let e = env();
    let v1 = noise(901, 3 << 20);
    let mut v2 = v1.clone();
    v2.splice(1_500_000..1_500_000, noise(902, 5000));
    fs::write(e.root.join("v1"), &v1).unwrap();
    fs::write(e.root.join("v2"), &v2).unwrap();
    let physical = |store: &Path| -> u64 {
        let st = aslctl(store, &["--json", "stat"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        v["physical_bytes"].as_u64().unwrap()
    };
    let (p1, p2) = (e.root.join("v1"), e.root.join("v2"));
    let o = aslctl(&e.store, &["ingest", p1.to_str().unwrap(), p2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shared = physical(&e.store);
    assert!(shared < (3 << 20) + (1 << 20), "two versions took {shared} bytes");
    let fixed = e.root.join("fixed");
    let o = aslctl(
        &fixed,
        &["ingest", "--fixed-chunks", p1.to_str().unwrap(), p2.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(physical(&fixed) > 6 << 20);
    let id1 = blake3::hash(&v1).to_hex().to_string();
    let id2 = blake3::hash(&v2).to_hex().to_string();
    assert!(aslctl(&e.store, &["rm", &id1]).status.success());
    let o = aslctl(&e.store, &["gc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("chunk sweep: "), "{}", stdout(&o));
    let o = aslctl(&e.store, &["cat", &id2]);
    assert!(o.status.success() && o.stdout == v2);
    assert!(aslctl(&e.store, &["verify"]).status.success());
}

/// A full disk while the query index must be created: the error is the
/// OS's ("No space left on device", naming the index), exit 2, not an
/// "invalid argument"; and a server started on that full disk still serves
/// the artifacts.
#[test]
fn a_full_disk_is_reported_as_such_and_a_server_still_serves_reads() {
    let e = env();
    let small = e.root.join("small");
    fs::write(&small, b"fits").unwrap();
    let id = blake3::hash(b"fits").to_hex().to_string();
    let mnt = e.root.join("mnt-full");
    fs::create_dir_all(&mnt).unwrap();
    let store = mnt.join("s");
    let script = format!(
        "set -u; mount -t tmpfs -o size=4m tmpfs {mnt} || exit 99; \
         {bin} --store {store} ingest {small} >/dev/null 2>&1 || exit 98; \
         dd if=/dev/zero of={mnt}/fill bs=64k 2>/dev/null; \
         {bin} --store {store} find --label a=b; echo \"rc=$?\"; \
         {bin} --store {store} serve --listen 127.0.0.1:0 --quiet > {mnt}/../addr & pid=$!; \
         for i in $(seq 100); do grep -q listening {mnt}/../addr 2>/dev/null && break; sleep 0.1; done; \
         url=$(sed 's/listening on //' {mnt}/../addr); \
         echo \"got=$(curl -s $url/v1/artifacts/{id})\"; kill $pid; wait $pid",
        mnt = mnt.display(),
        bin = BIN,
        store = store.display(),
        small = small.display(),
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = stdout(&o);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(99), "cannot mount a tmpfs here: {err}");
    assert!(out.contains("rc=2"), "out: {out}\nerr: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("derived/query"), "names the index: {err}");
    assert!(!err.contains("invalid argument"), "{err}");
    assert!(out.contains("got=fits"), "served on a full disk: {out}\n{err}");
}
