//! `aslctl serve` as a build cache for real clients: the Bazel HTTP cache
//! protocol (CAS checked against SHA-256, AC replaced by newer puts), a C
//! project built twice with Debian's ccache, and a Bazel target built twice
//! with Debian's bazel-bootstrap and `--remote_cache`.

use std::process::Command;

mod common;
use common::server::*;
use common::{noise, stderr_of as err, stdout_of as out};

/// The Bazel HTTP cache protocol: CAS entries are checked against their
/// SHA-256 (a wrong body is 400 and leaves nothing), AC entries are any
/// bytes under a key and a newer put replaces the answer.
#[test]
fn bazel_cache_protocol() {
    use sha2::Digest;
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let body = noise(21, 3 << 20);
    let f = dir.path().join("blob");
    std::fs::write(&f, &body).unwrap();
    let sha = hex(&sha2::Sha256::digest(&body));
    let cas = format!("{}/cas/{sha}", s.url);
    assert_eq!(curl(&[&cas]).0, 404);
    let (code, b) = curl(&["-X", "PUT", "--data-binary", &format!("@{}", f.display()), &cas]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let (code, got) = curl(&[&cas]);
    assert_eq!((code, got == body), (200, true));
    assert_eq!(curl(&["-I", &cas]).0, 200);
    // A body that is not what the key says.
    let other = dir.path().join("other");
    std::fs::write(&other, noise(22, 2 << 20)).unwrap();
    let before = list_ids(&s).len();
    let (code, b) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", other.display()),
        &format!("{}/cas/{}", s.url, "ab".repeat(32)),
    ]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    assert_eq!(list_ids(&s).len(), before, "nothing stored");

    let key = "cd".repeat(32);
    let ac = format!("{}/ac/{key}", s.url);
    assert_eq!(curl(&[&ac]).0, 404);
    for v in ["first result", "second result"] {
        let (code, _) = curl(&["-X", "PUT", "--data-binary", v, &ac]);
        assert!(code == 201 || code == 200);
        let (code, got) = curl(&[&ac]);
        assert_eq!((code, String::from_utf8_lossy(&got).to_string()), (200, v.to_string()));
    }
    assert_eq!(curl(&[&format!("{}/ac/not-a-key", s.url)]).0, 400);

    // Conditional writes: create-only, and compare-and-swap on the ETag.
    let ac2 = format!("{}/ac/{}", s.url, "9a".repeat(32));
    let cput = |cond: &str, v: &str| curl(&["-X", "PUT", "-H", cond, "--data-binary", v, &ac2]).0;
    assert_eq!(cput("If-None-Match: *", "v1"), 201);
    assert_eq!(cput("If-None-Match: *", "v2"), 412, "exists");
    let v1 = blake3::hash(b"v1").to_hex().to_string();
    let o = Command::new("curl").args(["-sI", &ac2]).output().unwrap();
    assert!(
        out(&o).contains(&format!("\"{v1}\"")),
        "the ETag is the answer's id: {}",
        out(&o)
    );
    assert_eq!(
        cput(&format!("If-Match: \"{}\"", "0".repeat(64)), "v3"),
        412,
        "not the current answer"
    );
    assert_eq!(curl(&[&ac2]).1, b"v1");
    assert_eq!(cput(&format!("If-Match: \"{v1}\""), "v4"), 201);
    assert_eq!(curl(&[&ac2]).1, b"v4");
}

/// ccache (from Debian, installed by `.ci/run`) pointed at the server with
/// its HTTP remote storage, in each of its three layouts (bazel, flat, and
/// subdirs, its default): a second build from an empty local cache is all
/// remote hits, and its objects are the first build's.
#[test]
fn ccache_builds_twice_and_hits_the_second_time() {
    if Command::new("ccache").arg("--version").output().is_err() {
        panic!("ccache is not installed (see .ci/run)");
    }
    // With a token, as a shared cache would run.
    let s = start(
        &[],
        Some(r#"{"tokens": [{"name": "ci", "token": "ccache-token-0123456789", "scope": "write"}]}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files = ["main", "util", "math"];
    for (i, f) in files.iter().enumerate() {
        std::fs::write(
            src.join(format!("{f}.c")),
            format!("int {f}_f(int x) {{ return x * {} + 1; }}\n", i + 2),
        )
        .unwrap();
    }
    let build = |n: usize, storage: &str| -> std::collections::BTreeMap<String, u64> {
        let out_dir = dir.path().join(format!("build{n}"));
        std::fs::create_dir(&out_dir).unwrap();
        let cc_dir = dir.path().join(format!("ccache{n}"));
        for f in files {
            let o = Command::new("ccache")
                .env("CCACHE_DIR", &cc_dir)
                .env(
                    "CCACHE_REMOTE_STORAGE",
                    format!("{storage}|bearer-token=ccache-token-0123456789"),
                )
                .env("CCACHE_REMOTE_ONLY", "true")
                .args(["cc", "-c"])
                .arg(src.join(format!("{f}.c")))
                .arg("-o")
                .arg(out_dir.join(format!("{f}.o")))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", err(&o));
        }
        let o = Command::new("ccache")
            .env("CCACHE_DIR", &cc_dir)
            .arg("--print-stats")
            .output()
            .unwrap();
        out(&o)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    };
    let layouts = [
        format!("{}|layout=bazel", s.url),
        format!("{}/ccache|layout=flat", s.url),
        format!("{}/ccache", s.url),
    ];
    for (i, storage) in layouts.iter().enumerate() {
        let first = build(2 * i + 1, storage);
        // flat and subdirs are two spellings of one key: the subdirs run
        // finds what the flat one stored.
        let (miss, hit) = if i == 2 { (0, 3) } else { (3, 0) };
        assert_eq!(first["remote_storage_miss"], miss, "{storage}: {first:?}");
        assert_eq!(first["remote_storage_hit"], hit, "{storage}: {first:?}");
        assert_eq!(first["remote_storage_error"], 0, "{storage}: {first:?}");
        let second = build(2 * i + 2, storage);
        assert_eq!(second["remote_storage_hit"], 3, "{storage}: {second:?}");
        assert_eq!(second["remote_storage_error"], 0, "{storage}: {second:?}");
        for f in files {
            let a = std::fs::read(dir.path().join(format!("build{}/{f}.o", 2 * i + 1))).unwrap();
            let b = std::fs::read(dir.path().join(format!("build{}/{f}.o", 2 * i + 2))).unwrap();
            assert_eq!(a, b, "{storage}: {f}.o");
        }
    }
    // Nonsense under /ccache/ is refused, not stored.
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Authorization: Bearer ccache-token-0123456789",
        "--data-binary",
        "x",
        &format!("{}/ccache/abc/def", s.url),
    ]);
    assert_eq!(code, 400);
}

/// The Bazel protocol under `--max-size`: an action result goes before
/// the blobs it names (at no moment does the action answer while one of
/// its outputs is gone), a pinned blob is never evicted, bytes uploaded
/// through `/v1` as well are never removed, and the namespace stays under
/// its mark.
#[test]
fn eviction_takes_action_results_before_their_outputs_and_spares_pins() {
    use sha2::Digest;
    let s = start(&["--max-size", "1M", "--segment-size", "128K"], None);
    let dir = tempfile::tempdir().unwrap();
    let put_cas = |seed: u64, len: usize| -> (String, Vec<u8>) {
        let body = noise(seed, len);
        let sha = hex(&sha2::Sha256::digest(&body));
        let f = dir.path().join(format!("b{seed}"));
        std::fs::write(&f, &body).unwrap();
        let (code, b) = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("{}/cas/{sha}", s.url),
        ]);
        assert!(code == 201 || code == 200, "{code}: {}", String::from_utf8_lossy(&b));
        (sha, body)
    };
    let cas_code = |sha: &str| curl(&["-I", &format!("{}/cas/{sha}", s.url)]).0;
    // Whether an artifact is live, by a read that, unlike one through the
    // cache's routes, does not count as a use of the entry.
    let live = |body: &[u8]| {
        let id = blake3::hash(body).to_hex().to_string();
        curl(&["-I", &format!("{}/v1/artifacts/{id}", s.url)]).0 == 200
    };
    // An action result naming one output file: REAPI's ActionResult with
    // output_files[0].digest = {hash, size_bytes}, encoded by hand.
    let (out_sha, out_body) = put_cas(1, 150_000);
    let mut digest = vec![0x0a, 64];
    digest.extend_from_slice(out_sha.as_bytes());
    digest.push(0x10);
    let mut n = out_body.len() as u64;
    while n >= 0x80 {
        digest.push((n as u8) | 0x80);
        n >>= 7;
    }
    digest.push(n as u8);
    let mut file = vec![0x12, digest.len() as u8];
    file.extend_from_slice(&digest);
    let mut result = vec![0x12, file.len() as u8];
    result.extend_from_slice(&file);
    let rf = dir.path().join("result");
    std::fs::write(&rf, &result).unwrap();
    let ac = format!("{}/ac/{}", s.url, "5e".repeat(32));
    let (code, _) = curl(&["-X", "PUT", "--data-binary", &format!("@{}", rf.display()), &ac]);
    assert_eq!(code, 201);
    // A pinned blob, and one uploaded through /v1 too.
    let (pinned_sha, pinned_body) = put_cas(2, 100_000);
    let pinned_id = blake3::hash(&pinned_body).to_hex().to_string();
    let (code, b) = curl(&[
        "-X",
        "PUT",
        "-d",
        &format!(r#"{{"id": "{pinned_id}"}}"#),
        &format!("{}/v1/pins/keep", s.url),
    ]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let (shared_sha, shared_body) = put_cas(3, 100_000);
    let shared_id = put_file(&s, &dir.path().join("b3"))["id"].as_str().unwrap().to_string();
    assert_eq!(shared_id, blake3::hash(&shared_body).to_hex().to_string());

    let mut action_went = false;
    for seed in 10..40 {
        put_cas(seed, 100_000);
        // Output first: eviction runs beside these reads, and it removes
        // the action before the output, so an output seen gone means the
        // action is gone by the next read.
        let output = live(&out_body);
        let action = live(&result);
        assert!(
            !action || output,
            "after blob {seed}: the action result is live but its output {out_sha} is gone"
        );
        action_went |= !action;
    }
    assert!(action_went, "the action result was never evicted");
    assert_eq!(curl(&["-I", &ac]).0, 404);
    assert_eq!(cas_code(&out_sha), 404, "the output went after its action");
    assert_eq!(cas_code(&pinned_sha), 200, "a pinned blob stays");
    // The /v1 upload's bytes stay, though its cache entry may go.
    assert_eq!(curl(&["-I", &format!("{}/v1/artifacts/{shared_id}", s.url)]).0, 200);
    let _ = shared_sha;
    let m = String::from_utf8(curl(&[&format!("{}/metrics", s.url)]).1).unwrap();
    let gauge = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    assert!(gauge("asl_cache_size_bytes") <= 1024.0 * 1024.0 * 0.95, "{m}");
    assert!(gauge("asl_cache_evictions_total") >= 20.0, "{m}");
    // Stopped as a service manager stops it, the server keeps the entries'
    // access times for its next start.
    let store = s.store.clone();
    let (status, _dir) = s.terminate();
    assert!(status.success());
    let access = std::fs::read(store.join("cache/access")).unwrap();
    assert!(access.starts_with(b"ASLCACC\n"));
}

/// ccache building more than `--max-size` through the server: the store's
/// segments stay under the limit plus one segment, an entry read again
/// outlives older ones (least recently used goes first), the latest
/// entries still hit, and `verify` finds nothing wrong.
#[test]
fn ccache_over_the_max_size_evicts_and_keeps_hitting() {
    const MAX: u64 = 3 << 20;
    const SEGMENT: u64 = 256 << 10;
    let s = start(&["--max-size", "3M", "--segment-size", "256K"], None);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Each object carries 100 KB of noise that ccache cannot compress:
    // 60 of them are twice the limit.
    let files = 60;
    for i in 0..files {
        let bytes = noise(100 + i as u64, 100_000);
        let mut c = format!("const unsigned char blob_{i}[] = {{");
        for b in bytes {
            c.push_str(&b.to_string());
            c.push(',');
        }
        c.push_str("};\n");
        std::fs::write(src.join(format!("f{i}.c")), c).unwrap();
    }
    let storage = format!("{}/ccache", s.url);
    // Compiles file `i` with an empty local cache; true when the server had it.
    let compile = |i: usize| -> bool {
        let cc_dir = tempfile::tempdir().unwrap();
        let o = Command::new("ccache")
            .env("CCACHE_DIR", cc_dir.path())
            .env("CCACHE_REMOTE_STORAGE", &storage)
            .env("CCACHE_REMOTE_ONLY", "true")
            .args(["cc", "-c"])
            .arg(src.join(format!("f{i}.c")))
            .arg("-o")
            .arg(cc_dir.path().join("out.o"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err(&o));
        let o = Command::new("ccache")
            .env("CCACHE_DIR", cc_dir.path())
            .arg("--print-stats")
            .output()
            .unwrap();
        let stats = out(&o);
        assert!(stats.contains("remote_storage_error\t0"), "{stats}");
        stats.contains("remote_storage_hit\t1")
    };
    let segments = || -> u64 {
        std::fs::read_dir(s.store.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let mut peak = 0;
    for i in 0..files {
        assert!(!compile(i), "f{i} was never built");
        peak = peak.max(segments());
        // f0 is read every tenth build, so it stays among the recently used.
        if i % 10 == 9 {
            assert!(compile(0), "f0 is still in the cache after f{i}");
        }
    }
    // The last round of eviction and GC runs after the last put.
    std::thread::sleep(std::time::Duration::from_millis(500));
    peak = peak.max(segments());
    assert!(peak <= MAX + SEGMENT, "segments reached {peak} bytes");
    assert!(compile(0), "f0, read again, outlived older entries");
    assert!(!compile(1), "f1, least recently used, was evicted");
    for i in files - 10..files {
        assert!(compile(i), "f{i}, among the newest, still hits");
    }
    let o = Command::new(common::aslctl_bin())
        .arg("--store")
        .arg(&s.store)
        .args(["verify", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    eprintln!("segments peaked at {peak} bytes (limit {MAX}, segment {SEGMENT})");
}

/// Bazel (Debian's bazel-bootstrap, installed by `.ci/run`) with
/// `--remote_cache` pointed at the server, over the HTTP cache protocol and
/// over gRPC (REAPI v2): a second build from a clean output base takes both
/// actions from the server (Bazel reports remote cache hits) and produces
/// the same outputs, a 6 MB one included (over gRPC, one that goes through
/// ByteStream rather than a batch).
#[test]
fn bazel_builds_twice_and_hits_the_remote_cache() {
    if Command::new("bazel").arg("--version").output().is_err() {
        panic!("bazel is not installed (see .ci/run: bazel-bootstrap)");
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("WORKSPACE"), "").unwrap();
    std::fs::write(
        ws.join("BUILD"),
        "genrule(\n    name = \"greeting\",\n    outs = [\"greeting.txt\"],\n    cmd = \"echo hello from bazel through asl > $@\",\n)\n\
         genrule(\n    name = \"big\",\n    outs = [\"big.bin\"],\n    cmd = \"head -c 6000000 /dev/urandom > $@\",\n)\n",
    )
    .unwrap();
    for protocol in ["http", "grpc"] {
        let s = start(&[], None);
        let cache = s.url.replacen("http", protocol, 1);
        let build = |n: usize| -> (String, String, Vec<u8>) {
            let root = dir.path().join(format!("{protocol}{n}"));
            let o = Command::new("bazel")
                .arg("--batch")
                .arg(format!("--output_user_root={}", root.display()))
                .args(["build", "//:greeting", "//:big", &format!("--remote_cache={cache}")])
                .current_dir(&ws)
                .output()
                .unwrap();
            assert!(o.status.success(), "{protocol}: {}", err(&o));
            let text = std::fs::read_to_string(ws.join("bazel-bin/greeting.txt")).unwrap();
            (err(&o), text, std::fs::read(ws.join("bazel-bin/big.bin")).unwrap())
        };
        let (first, a, big_a) = build(1);
        assert!(!first.contains("remote cache hit"), "{protocol}: {first}");
        let (second, b, big_b) = build(2);
        assert!(second.contains("2 remote cache hit"), "{protocol}: {second}");
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("hello from bazel through asl\n", "hello from bazel through asl\n")
        );
        assert_eq!(big_a.len(), 6_000_000);
        assert!(big_a == big_b, "{protocol}: the big output came back as it was built");
    }
}
