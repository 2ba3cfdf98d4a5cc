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

/// Bazel (Debian's bazel-bootstrap, installed by `.ci/run`) with
/// `--remote_cache` pointed at the server: a second build from a clean
/// output base takes its action from the server (Bazel reports a remote
/// cache hit) and produces the same output.
#[test]
fn bazel_builds_twice_and_hits_the_remote_cache() {
    if Command::new("bazel").arg("--version").output().is_err() {
        panic!("bazel is not installed (see .ci/run: bazel-bootstrap)");
    }
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("WORKSPACE"), "").unwrap();
    std::fs::write(
        ws.join("BUILD"),
        "genrule(\n    name = \"greeting\",\n    outs = [\"greeting.txt\"],\n    cmd = \"echo hello from bazel through asl > $@\",\n)\n",
    )
    .unwrap();
    let build = |n: usize| -> (String, String) {
        let root = dir.path().join(format!("root{n}"));
        let o = Command::new("bazel")
            .arg("--batch")
            .arg(format!("--output_user_root={}", root.display()))
            .args(["build", "//:greeting", &format!("--remote_cache={}", s.url)])
            .current_dir(&ws)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err(&o));
        let text = std::fs::read_to_string(ws.join("bazel-bin/greeting.txt")).unwrap();
        (err(&o), text)
    };
    let (first, a) = build(1);
    assert!(!first.contains("remote cache hit"), "{first}");
    let (second, b) = build(2);
    assert!(second.contains("1 remote cache hit"), "{second}");
    assert_eq!(
        (a.as_str(), b.as_str()),
        ("hello from bazel through asl\n", "hello from bazel through asl\n")
    );
}
