//! `aslctl serve` as a real process, driven by real clients: curl and
//! Python's requests for the API, raw sockets for what clients do wrong
//! (cut off mid-upload, send slowly). Every bad request gets its status
//! and stores nothing; every acknowledged put survives the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{noise, stderr_of as err, stdout_of as out};

struct Server {
    child: Child,
    url: String,
    addr: String,
    store: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Kills the server (as a crash would) and keeps its store.
    fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str], tokens: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    start_on(dir, store, extra, tokens)
}

fn start_on(dir: tempfile::TempDir, store: PathBuf, extra: &[&str], tokens: Option<&str>) -> Server {
    let mut cmd = Command::new(common::aslctl_bin());
    cmd.arg("--store")
        .arg(&store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra);
    if let Some(t) = tokens {
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, t).unwrap();
        cmd.arg("--tokens").arg(&p);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    let addr = url.trim_start_matches("http://").to_string();
    Server {
        child,
        url,
        addr,
        store,
        dir: Some(dir),
    }
}

/// curl with `args`, printing the status code after the body.
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let o: Output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (see .ci/run)");
    let mut body = o.stdout;
    let at = body.iter().rposition(|b| *b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&body[at + 1..]).parse().unwrap();
    body.truncate(at);
    (code, body)
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

fn put_file(s: &Server, p: &Path) -> serde_json::Value {
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", p.display()),
        &format!("{}/v1/artifacts", s.url),
    ]);
    assert!(code == 201 || code == 200, "{code}: {}", String::from_utf8_lossy(&body));
    json(&body)
}

fn list_ids(s: &Server) -> Vec<String> {
    let (_, b) = curl(&[&format!("{}/v1/artifacts", s.url)]);
    json(&b)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn artifacts_go_in_and_come_out_verified_with_ranges_and_caching() {
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let big = dir.path().join("big");
    std::fs::write(&small, b"hello, store\n").unwrap();
    let bytes = noise(7, 5 << 20);
    std::fs::write(&big, &bytes).unwrap();
    let id = blake3::hash(&bytes).to_hex().to_string();
    let r = put_file(&s, &big);
    assert_eq!(
        (r["id"].as_str(), r["len"].as_u64(), r["new"].as_bool()),
        (Some(&*id), Some(5 << 20), Some(true))
    );
    assert_eq!(
        put_file(&s, &big)["new"],
        false,
        "a second put of the same bytes is a no-op"
    );
    put_file(&s, &small);

    let art = format!("{}/v1/artifacts/{id}", s.url);
    let (code, got) = curl(&[&art]);
    assert_eq!((code, blake3::hash(&got).to_hex().to_string()), (200, id.clone()));
    // HEAD: the headers a cache needs, no body.
    let o = Command::new("curl").args(["-sI", &art]).output().unwrap();
    let head = out(&o).to_ascii_lowercase();
    assert!(head.contains(&format!("etag: \"{id}\"")), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    assert!(head.contains(&format!("content-length: {}", 5 << 20)), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    // Ranges, 206, including across chunk boundaries and the tail.
    for (spec, a, b) in [
        ("0-0", 0, 0),
        ("1048570-1048600", 1048570, 1048600),
        ("5242000-", 5242000, 5242879),
    ] {
        let (code, got) = curl(&["-H", &format!("Range: bytes={spec}"), &art]);
        assert_eq!(code, 206, "{spec}");
        assert_eq!(got, &bytes[a..=b], "{spec}");
    }
    let (code, got) = curl(&["-H", "Range: bytes=-10", &art]);
    assert_eq!((code, &got[..]), (206, &bytes[bytes.len() - 10..]));
    for bad in ["bytes=6000000-", "bytes=10-5", "bytes=-0"] {
        let (code, _) = curl(&["-H", &format!("Range: {bad}"), &art]);
        assert_eq!(code, 416, "{bad}");
    }
    let (code, _) = curl(&["-H", &format!("If-None-Match: \"{id}\""), &art]);
    assert_eq!(code, 304);

    // PUT with the id: checked against the body.
    let (code, b) = curl(&["-X", "PUT", "--data-binary", &format!("@{}", small.display()), &art]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    let small_id = blake3::hash(b"hello, store\n").to_hex().to_string();
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", small.display()),
        &format!("{}/v1/artifacts/{small_id}", s.url),
    ]);
    assert_eq!(code, 200, "already there");

    // Have/want.
    let absent = blake3::hash(b"absent").to_hex().to_string();
    let (code, b) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        &format!("{{\"ids\": [\"{id}\", \"{absent}\", \"{small_id}\"]}}"),
        &format!("{}/v1/artifacts:missing", s.url),
    ]);
    assert_eq!(code, 200);
    assert_eq!(json(&b)["missing"], serde_json::json!([absent]));

    // Listing in pages.
    let (_, b) = curl(&[&format!("{}/v1/artifacts?limit=1", s.url)]);
    let p1 = json(&b);
    assert_eq!(p1["artifacts"].as_array().unwrap().len(), 1);
    let next = p1["next"].as_str().unwrap().to_string();
    let (_, b) = curl(&[&format!("{}/v1/artifacts?limit=1&after={next}", s.url)]);
    let p2 = json(&b);
    assert_eq!(p2["artifacts"].as_array().unwrap().len(), 1);
    assert!(p2["next"].is_null(), "{p2}");
    let mut all = list_ids(&s);
    all.sort();
    let mut want = vec![id.clone(), small_id.clone()];
    want.sort();
    assert_eq!(all, want);

    // Path parameters are ids and nothing else.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "3e1f", "ZZ", &"a".repeat(65)] {
        let (code, _) = curl(&[&format!("{}/v1/artifacts/{bad}", s.url)]);
        assert_eq!(code, 400, "{bad}");
    }
    let (code, _) = curl(&["--path-as-is", &format!("{}/v1/artifacts/../../etc/passwd", s.url)]);
    assert!(code == 404 || code == 400, "{code}");
    let (code, _) = curl(&[&format!("{}/v1/artifacts/{absent}", s.url)]);
    assert_eq!(code, 404);

    // What was acknowledged survives the server being killed.
    let store = s.store.clone();
    let _keep = s.kill();
    for want in [&id, &small_id] {
        let o = common::aslctl(&store, &["cat", want]);
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(blake3::hash(&o.stdout).to_hex().as_str(), want.as_str());
    }
}

#[test]
fn python_requests_round_trip() {
    let s = start(&[], None);
    let script = r#"
import hashlib, os, sys, requests
url = sys.argv[1]
data = os.urandom(3 * 1024 * 1024 + 17)
r = requests.put(url + "/v1/artifacts", data=data)
r.raise_for_status()
i = r.json()["id"]
g = requests.get(url + "/v1/artifacts/" + i)
assert g.status_code == 200 and g.content == data, g.status_code
assert g.headers["ETag"] == '"%s"' % i
p = requests.get(url + "/v1/artifacts/" + i, headers={"Range": "bytes=1000-2999"})
assert p.status_code == 206 and p.content == data[1000:3000]
assert p.headers["Content-Range"] == "bytes 1000-2999/%d" % len(data)
m = requests.post(url + "/v1/artifacts:missing", json={"ids": [i, "0" * 64]})
assert m.json() == {"missing": ["0" * 64]}, m.text
print(i)
"#;
    let o = Command::new("python3").args(["-c", script, &s.url]).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(list_ids(&s), [out(&o).trim()]);
}

#[test]
fn tokens_decide_who_reads_and_writes() {
    let tokens = r#"{"tokens": [
        {"name": "ci", "token": "write-token-0123456789", "scope": "write"},
        {"name": "viewer", "token": "read-token-0123456789", "scope": "read"}]}"#;
    let s = start(&[], Some(tokens));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"guarded").unwrap();
    let id = blake3::hash(b"guarded").to_hex().to_string();
    let put = |tok: Option<&str>| {
        let mut a = vec!["-X", "PUT", "--data-binary"];
        let data = format!("@{}", f.display());
        a.push(&data);
        let h;
        if let Some(t) = tok {
            h = format!("Authorization: Bearer {t}");
            a.extend(["-H", &h]);
        }
        let u = format!("{}/v1/artifacts", s.url);
        a.push(&u);
        curl(&a).0
    };
    assert_eq!(put(None), 401);
    assert_eq!(put(Some("guess-token-0123456789")), 401);
    assert_eq!(put(Some("read-token-0123456789")), 403, "read-only");
    assert_eq!(put(Some("write-token-0123456789")), 201);
    let art = format!("{}/v1/artifacts/{id}", s.url);
    assert_eq!(curl(&[&art]).0, 401, "reads need a token too");
    let (code, body) = curl(&["-H", "Authorization: Bearer read-token-0123456789", &art]);
    assert_eq!((code, &body[..]), (200, &b"guarded"[..]));
    let o = Command::new("curl").args(["-sI", &art]).output().unwrap();
    assert!(
        out(&o).to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{}",
        out(&o)
    );

    // Without tokens, only loopback.
    let o = Command::new(common::aslctl_bin())
        .args([
            "--store",
            dir.path().join("s").to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not a loopback address"), "{}", err(&o));
}

#[test]
fn bad_uploads_store_nothing_and_do_not_block_others() {
    let s = start(&["--max-body", "1M", "--timeout", "3"], None);
    let dir = tempfile::tempdir().unwrap();
    // Too large: declared, and (chunked, undeclared) found while streaming.
    let big = dir.path().join("big");
    std::fs::write(&big, noise(3, 2 << 20)).unwrap();
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{}/v1/artifacts", s.url),
    ]);
    assert_eq!(code, 413);
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{}/v1/artifacts", s.url),
    ]);
    assert_eq!(code, 413);

    // A client that goes away half-way through a large upload.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let part = noise(4, 600 << 10);
    write!(
        c,
        "PUT /v1/artifacts HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        900 << 10
    )
    .unwrap();
    c.write_all(&part).unwrap();
    drop(c);

    // A slow client holds its own upload open; others go on meanwhile.
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    write!(
        slow,
        "PUT /v1/artifacts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&[1u8; 1000]).unwrap();
    let quick = dir.path().join("quick");
    std::fs::write(&quick, b"not blocked").unwrap();
    let t = std::time::Instant::now();
    let r = put_file(&s, &quick);
    assert!(t.elapsed() < Duration::from_secs(2), "a slow upload held others up");
    // The slow one is cut off at the timeout, with nothing stored.
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut resp = String::new();
    let _ = slow.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        list_ids(&s),
        [r["id"].as_str().unwrap()],
        "only the good upload is stored"
    );
    // And the store is sound: verify after the server is gone.
    let store = s.store.clone();
    let _keep = s.kill();
    let o = common::aslctl(&store, &["verify"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
}

/// Damage under a running server never becomes wrong bytes: a damaged
/// large artifact's download stops short of its length (curl reports the
/// transfer incomplete), a damaged small one is a 500 before any byte.
#[test]
fn damaged_artifacts_are_never_served() {
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    let bytes = noise(11, 4 << 20);
    std::fs::write(&big, &bytes).unwrap();
    let id = put_file(&s, &big)["id"].as_str().unwrap().to_string();
    let store = s.store.clone();
    let keep = s.kill();
    // Flip one byte in the middle of the segment: inside the artifact.
    let seg = std::fs::read_dir(store.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x40;
    std::fs::write(&seg, &b).unwrap();
    let s = start_on(keep, store, &[], None);
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            dir.path().join("got").to_str().unwrap(),
            &format!("{}/v1/artifacts/{id}", s.url),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "curl must see the transfer fail");
    let got = std::fs::read(dir.path().join("got")).unwrap_or_default();
    assert!(got.len() < bytes.len(), "short, never complete");
    assert_eq!(got[..], bytes[..got.len()], "and every byte sent is right");
}

/// The OpenAPI file is valid (checked by openapi-spec-validator, installed
/// by `.ci/run`) and documents exactly the routes the server answers.
#[test]
fn the_openapi_file_is_valid_and_complete() {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/openapi.yaml");
    let o = Command::new("python3")
        .args(["-m", "openapi_spec_validator", spec])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; print('\\n'.join(sorted(yaml.safe_load(open(sys.argv[1]))['paths'])))",
            spec,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o).lines().collect::<Vec<_>>(),
        [
            "/ac/{key}",
            "/cas/{key}",
            "/v1/artifacts",
            "/v1/artifacts/{id}",
            "/v1/artifacts/{id}/labels",
            "/v1/artifacts:missing",
            "/v1/find",
            "/v1/health",
            "/v1/lineage/{id}",
            "/v1/records",
            "/v1/records/{id}",
            "/v1/snapshots",
            "/v1/snapshots/{name}/artifacts/{id}"
        ]
    );
    // Each answers (not the router's 404) on a running server.
    let s = start(&[], None);
    for (method, path) in [
        ("GET", "/v1/health".to_string()),
        ("GET", "/v1/artifacts".to_string()),
        ("POST", "/v1/artifacts:missing".to_string()),
        ("GET", format!("/v1/artifacts/{}", "0".repeat(64))),
        ("GET", format!("/ac/{}", "0".repeat(64))),
        ("GET", format!("/cas/{}", "0".repeat(64))),
        ("GET", "/v1/snapshots".to_string()),
        ("GET", format!("/v1/snapshots/x/artifacts/{}", "0".repeat(64))),
        ("GET", format!("/v1/records/{}", "0".repeat(64))),
        ("GET", "/v1/find?label=a=b".to_string()),
        ("GET", format!("/v1/lineage/{}", "0".repeat(64))),
    ] {
        let (code, body) = curl(&[
            "-X",
            method,
            "-H",
            "content-type: application/json",
            "-d",
            "{\"ids\": []}",
            &format!("{}{path}", s.url),
        ]);
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(!text.contains("no such route"), "{method} {path}: {code} {text}");
    }
}

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
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// ccache (from Debian, installed by `.ci/run`) pointed at the server with
/// its HTTP remote storage: a second build from an empty local cache is
/// all remote hits, and its objects are the first build's.
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
    let build = |n: usize| -> std::collections::BTreeMap<String, u64> {
        let out_dir = dir.path().join(format!("build{n}"));
        std::fs::create_dir(&out_dir).unwrap();
        let cc_dir = dir.path().join(format!("ccache{n}"));
        for f in files {
            let o = Command::new("ccache")
                .env("CCACHE_DIR", &cc_dir)
                .env(
                    "CCACHE_REMOTE_STORAGE",
                    format!("{}|layout=bazel|bearer-token=ccache-token-0123456789", s.url),
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
    let first = build(1);
    assert_eq!(first["remote_storage_miss"], 3, "{first:?}");
    assert_eq!(first["remote_storage_error"], 0, "{first:?}");
    let second = build(2);
    assert_eq!(second["remote_storage_hit"], 3, "{second:?}");
    assert_eq!(second["remote_storage_error"], 0, "{second:?}");
    for f in files {
        let a = std::fs::read(dir.path().join(format!("build1/{f}.o"))).unwrap();
        let b = std::fs::read(dir.path().join(format!("build2/{f}.o"))).unwrap();
        assert_eq!(a, b, "{f}.o");
    }
}

/// A token that sees only published artifacts is told an internal one does
/// not exist on every read path — GET, HEAD, a range, the listing, the
/// missing check, the action cache and the CAS — with the very answers a
/// truly absent one gets (404, listed as missing), never 403.
#[test]
fn internal_artifacts_do_not_exist_for_published_only_tokens() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (public, internal) = (b"for everyone".to_vec(), noise(31, 2 << 20));
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        s.put_with(&public, &asl::PutOptions::new().visibility(asl::Visibility::Published))
            .unwrap();
        s.put_reader_with(&internal[..], &asl::PutOptions::new()).unwrap();
        s.commit().unwrap();
    }
    let tokens = r#"{"tokens": [
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#;
    let s = start_on(dir, store, &[], Some(tokens));
    let (pid, iid) = (
        blake3::hash(&public).to_hex().to_string(),
        blake3::hash(&internal).to_hex().to_string(),
    );
    let absent = blake3::hash(b"never stored").to_hex().to_string();
    let ops = "Authorization: Bearer write-token-0123456789";
    let peer = "Authorization: Bearer peer-token-0123456789";
    // Cache entries (internal, as everything the server stores).
    let key = "ef".repeat(32);
    assert_eq!(
        curl(&[
            "-H",
            ops,
            "-X",
            "PUT",
            "--data-binary",
            "result",
            &format!("{}/ac/{key}", s.url)
        ])
        .0,
        201
    );
    let sha = hex(&sha2::Sha256::digest(b"cas bytes"));
    assert_eq!(
        curl(&[
            "-H",
            ops,
            "-X",
            "PUT",
            "--data-binary",
            "cas bytes",
            &format!("{}/cas/{sha}", s.url)
        ])
        .0,
        201
    );

    let art = |id: &str| format!("{}/v1/artifacts/{id}", s.url);
    for (who, sees_internal) in [(ops, true), (peer, false)] {
        // The published artifact: everyone.
        assert_eq!(curl(&["-H", who, &art(&pid)]).0, 200);
        // The internal one: like an absent one, for the peer.
        for path in [art(&iid), format!("{}/ac/{key}", s.url), format!("{}/cas/{sha}", s.url)] {
            let (code, body) = curl(&["-H", who, &path]);
            let (code_absent, body_absent) = curl(&[
                "-H",
                who,
                &path
                    .replace(&iid, &absent)
                    .replace(&key, &"00".repeat(32))
                    .replace(&sha, &"11".repeat(32)),
            ]);
            if sees_internal {
                assert_eq!(code, 200, "{path}");
            } else {
                assert_eq!(code, 404, "{path}");
                assert_eq!(code_absent, 404);
                let strip = |b: &[u8]| String::from_utf8_lossy(b).replace(&iid, "ID").replace(&absent, "ID");
                assert_eq!(
                    strip(&body),
                    strip(&body_absent),
                    "the same answer as for an absent one: {path}"
                );
            }
            let (code, _) = curl(&["-H", who, "-I", &path]);
            assert_eq!(code, if sees_internal { 200 } else { 404 }, "HEAD {path}");
        }
        let (code, _) = curl(&["-H", who, "-H", "Range: bytes=0-9", &art(&iid)]);
        assert_eq!(code, if sees_internal { 206 } else { 404 });
        let (_, b) = curl(&["-H", who, &format!("{}/v1/artifacts", s.url)]);
        let listed: Vec<String> = json(&b)["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        assert!(listed.contains(&pid));
        assert_eq!(listed.contains(&iid), sees_internal, "{listed:?}");
        let (_, b) = curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &format!("{{\"ids\": [\"{pid}\", \"{iid}\", \"{absent}\"]}}"),
            &format!("{}/v1/artifacts:missing", s.url),
        ]);
        let want = if sees_internal {
            serde_json::json!([absent])
        } else {
            serde_json::json!([iid, absent])
        };
        assert_eq!(json(&b)["missing"], want);
    }
}

/// Snapshots, records, find and lineage over HTTP, with scopes (creating a
/// snapshot needs admin) and visibility (a published-only token sees no
/// internal artifact, record about one or step that touched one).
#[test]
fn snapshots_records_find_and_lineage_with_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (public, internal) = (b"public bytes".to_vec(), b"internal bytes".to_vec());
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        s.put_with(&public, &asl::PutOptions::new().visibility(asl::Visibility::Published))
            .unwrap();
        s.put(&internal).unwrap();
        s.commit().unwrap();
    }
    let (pid, iid) = (
        blake3::hash(&public).to_hex().to_string(),
        blake3::hash(&internal).to_hex().to_string(),
    );
    let o = common::aslctl(&store, &["label", &pid, "team=a"]);
    assert!(o.status.success(), "{}", err(&o));
    let label = out(&o).trim().to_string();
    let prog = dir.path().join("p.yaml");
    std::fs::write(
        &prog,
        format!("nodes:\n  h:\n    op: hash\n    inputs: [\"b3:{pid}\"]\n"),
    )
    .unwrap();
    let o = common::aslctl(&store, &["--json", "pel", "run", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let made = json(out(&o).trim().as_bytes())["nodes"][0]["outputs"]["out"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = r#"{"tokens": [
        {"name": "root", "token": "admin-token-0123456789", "scope": "admin"},
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#;
    let s = start_on(dir, store, &[], Some(tokens));
    let (root, ops, peer) = (
        "Authorization: Bearer admin-token-0123456789",
        "Authorization: Bearer write-token-0123456789",
        "Authorization: Bearer peer-token-0123456789",
    );
    let u = |p: &str| format!("{}{p}", s.url);
    let post = |who: &str, body: &str| {
        curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &u("/v1/snapshots"),
        ])
    };
    assert_eq!(post(ops, r#"{"name": "s1"}"#).0, 403, "a snapshot needs admin");
    assert_eq!(post(root, r#"{"name": "s1"}"#).0, 201);
    assert_eq!(post(root, r#"{"name": "s1"}"#).0 / 100, 4, "exists");
    assert_eq!(post(root, r#"{"name": "../x"}"#).0, 400, "a bad name");
    let (_, b) = curl(&["-H", ops, &u("/v1/snapshots")]);
    assert_eq!(json(&b)["snapshots"][0]["name"], "s1");
    assert!(json(&b)["snapshots"][0]["artifacts"].as_u64().unwrap() >= 2);
    let (_, b) = curl(&["-H", peer, &u("/v1/snapshots")]);
    assert!(
        json(&b)["snapshots"][0].get("artifacts").is_none(),
        "no counts for a peer"
    );

    for (who, all) in [(ops, true), (peer, false)] {
        let code = |p: &str| curl(&["-H", who, &u(p)]).0;
        let want = |visible: bool| if visible { 200 } else { 404 };
        assert_eq!(code(&format!("/v1/snapshots/s1/artifacts/{pid}")), 200);
        assert_eq!(code(&format!("/v1/snapshots/s1/artifacts/{iid}")), want(all));
        assert_eq!(code(&format!("/v1/records/{label}")), want(all));
        assert_eq!(code(&format!("/v1/lineage/{made}")), want(all));
        let (_, b) = curl(&["-H", who, &u("/v1/find?label=team=a")]);
        let hits = json(&b)["hits"].clone();
        assert_eq!(hits[0]["subject"].as_str(), Some(&*pid));
        assert_eq!(hits[0]["records"].as_array().unwrap().len(), usize::from(all), "{hits}");
        let (_, b) = curl(&["-H", who, &u(&format!("/v1/lineage/{pid}?descendants=true"))]);
        let g = json(&b);
        assert_eq!(g["steps"].as_array().unwrap().len(), usize::from(all), "{g}");
        assert_eq!(g["artifacts"].get(&made).is_some(), all, "{g}");
    }
    let (_, b) = curl(&["-H", ops, &u(&format!("/v1/records/{label}"))]);
    assert_eq!(json(&b)["type"], "asl/annotation");
    let (_, b) = curl(&["-H", ops, &u(&format!("/v1/lineage/{made}"))]);
    assert_eq!(json(&b)["steps"][0]["op"], "hash");
}

/// A Rust program embeds the server: `asl::server::serve` on its own tokio
/// runtime over a store it opened, a plain HTTP/1.1 client over a socket,
/// then a graceful shutdown after which the program still has its store.
#[test]
fn a_rust_program_embeds_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(asl::StoreOptions::new().create(true).open(dir.path()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(asl::server::serve(
        listener,
        store.clone(),
        asl::server::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let call = |req: &[u8]| -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    let put = call(b"PUT /v1/artifacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello");
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");
    let id = blake3::hash(b"hello").to_hex();
    let get = call(format!("GET /v1/artifacts/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    assert!(
        get.starts_with("HTTP/1.1 200") && get.ends_with("\r\n\r\nhello"),
        "{get}"
    );
    stop.send(()).unwrap();
    rt.block_on(server).unwrap().unwrap();
    assert_eq!(
        store.get(&id.as_str().parse().unwrap()).unwrap(),
        b"hello",
        "committed, and the program's own"
    );
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

/// Records and labels go in over HTTP with a write token: a record checked
/// against its schema (400 naming the field otherwise), a label found by
/// `find` at once.
#[test]
fn records_and_labels_go_in() {
    let tokens = r#"{"tokens": [
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "viewer", "token": "read-token-0123456789", "scope": "read"}]}"#;
    let s = start(&[], Some(tokens));
    let (ops, viewer) = (
        "Authorization: Bearer write-token-0123456789",
        "Authorization: Bearer read-token-0123456789",
    );
    let u = |p: &str| format!("{}{p}", s.url);
    let post = |who: &str, path: &str, body: &str| {
        curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &u(path),
        ])
    };
    let run = r#"{"type": "asl/run", "body": {"run_id": "r-1", "created_at": "2026-12-01T10:00:00Z", "mode": "strict", "tool": "mill", "status": "OK"}}"#;
    assert_eq!(post(viewer, "/v1/records", run).0, 403);
    let (code, b) = post(ops, "/v1/records", run);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let rid = json(&b)["id"].as_str().unwrap().to_string();
    let (_, b) = curl(&["-H", viewer, &u(&format!("/v1/records/{rid}"))]);
    assert_eq!(json(&b)["body"]["tool"], "mill");
    let (code, b) = post(ops, "/v1/records", &run.replace("\"OK\"", "\"MAYBE\""));
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&b).contains("status"),
        "{}",
        String::from_utf8_lossy(&b)
    );

    let (code, b) = curl(&[
        "-H",
        ops,
        "-X",
        "PUT",
        "--data-binary",
        "dataset bytes",
        &u("/v1/artifacts"),
    ]);
    assert_eq!(code, 201);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            viewer,
            &format!("/v1/artifacts/{id}/labels"),
            r#"{"labels": {"team": "ml"}}"#
        )
        .0,
        403
    );
    let (code, _) = post(
        ops,
        &format!("/v1/artifacts/{id}/labels"),
        r#"{"labels": {"team": "ml"}, "media_type": "text/plain"}"#,
    );
    assert_eq!(code, 201);
    assert_eq!(
        post(
            ops,
            &format!("/v1/artifacts/{}/labels", "0".repeat(64)),
            r#"{"labels": {"a": "b"}}"#
        )
        .0,
        404
    );
    let (_, b) = curl(&["-H", viewer, &u("/v1/find?label=team=ml")]);
    assert_eq!(json(&b)["hits"][0]["subject"].as_str(), Some(&*id));
    let (_, b) = curl(&["-H", viewer, &u("/v1/find?media_type=text/plain")]);
    assert_eq!(json(&b)["hits"][0]["subject"].as_str(), Some(&*id));
}

/// A client that stops reading a large download is cut off after the idle
/// limit: it never gets the whole artifact, and the server goes on serving.
#[test]
fn a_stalled_download_is_cut_off() {
    let s = start(&["--timeout", "2"], None);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    let bytes = noise(41, 48 << 20);
    std::fs::write(&f, &bytes).unwrap();
    let id = put_file(&s, &f)["id"].as_str().unwrap().to_string();
    let mut c = TcpStream::connect(&s.addr).unwrap();
    write!(c, "GET /v1/artifacts/{id} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.len() < bytes.len(),
        "cut off: {} of {} bytes",
        got.len(),
        bytes.len()
    );
    assert_eq!(curl(&[&format!("{}/v1/health", s.url)]).0, 200);
}
