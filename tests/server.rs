//! `aslctl serve` as a real process, driven by real clients: curl and
//! Python's requests for the API, raw sockets for what clients do wrong
//! (cut off mid-upload, send slowly). Every bad request gets its status
//! and stores nothing; every acknowledged put survives the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

mod common;
use common::server::*;
use common::{noise, stderr_of as err, stdout_of as out};

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
    // Every route of the server's own table, with every method it takes
    // (HEAD goes with GET), is documented, and nothing else is.
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\nfor p, ops in sorted(yaml.safe_load(open(sys.argv[1]))['paths'].items()):\n    \
             print(p, ' '.join(sorted(m.upper() for m in ops if m != 'parameters')))",
            spec,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let mut table: Vec<String> = asl::server::route_table()
        .into_iter()
        .map(|(path, methods)| {
            let mut m: Vec<&str> = methods.iter().copied().filter(|m| *m != "HEAD").collect();
            m.sort();
            format!("{path} {}", m.join(" "))
        })
        .collect();
    table.sort();
    let documented: Vec<String> = out(&o)
        .lines()
        .map(|l| l.replace(" HEAD", "").replace("HEAD ", ""))
        .collect();
    assert_eq!(documented, table, "spec/openapi.yaml against the route table");
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

/// `--memtable-records` bounds the index records held in memory: past it
/// the server writes them to an index file.
#[test]
fn memtable_records_bounds_what_the_index_holds_in_memory() {
    let s = start(&["--memtable-records", "4"], None);
    let dir = tempfile::tempdir().unwrap();
    let index_files = || {
        std::fs::read_dir(s.store.join("index"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "idx"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = index_files();
    for i in 0..10u8 {
        let f = dir.path().join(format!("f{i}"));
        std::fs::write(&f, noise(60 + u64::from(i), 1000)).unwrap();
        put_file(&s, &f);
    }
    assert!(
        index_files() > before,
        "ten puts past a 4-record memtable wrote no index file"
    );
    assert_eq!(list_ids(&s).len(), 10);
}

/// SIGTERM stops the server cleanly: exit 0, and the store it leaves
/// verifies clean with everything acknowledged in it.
#[test]
fn sigterm_stops_the_server_cleanly() {
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, noise(51, 3 << 20)).unwrap();
    let id = put_file(&s, &f)["id"].as_str().unwrap().to_string();
    let store = s.store.clone();
    let (status, _keep) = s.terminate();
    assert!(status.success(), "{status:?}");
    let o = common::aslctl(&store, &["verify"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let o = common::aslctl(&store, &["cat", &id]);
    assert_eq!(blake3::hash(&o.stdout).to_hex().as_str(), id);
}

/// The access log: one line per request on stderr (off with `--quiet`).
#[test]
fn requests_are_logged_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    for (quiet, want) in [(false, true), (true, false)] {
        let log = dir.path().join(format!("err-{quiet}"));
        let mut cmd = Command::new(common::aslctl_bin());
        cmd.arg("--store")
            .arg(dir.path().join("store"))
            .args(["serve", "--listen", "127.0.0.1:0"]);
        if quiet {
            cmd.arg("--quiet");
        }
        let (mut child, url) = listening(cmd.stderr(std::fs::File::create(&log).unwrap()));
        assert_eq!(curl(&[&format!("{url}/v1/health")]).0, 200);
        assert_eq!(curl(&[&format!("{url}/v1/nothing-here")]).0, 404);
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.contains(" GET /v1/health 200 "), want, "{text}");
        assert_eq!(text.contains(" GET /v1/nothing-here 404 "), want, "{text}");
    }
}

/// Uploads beyond `--max-uploads` wait for a slot (their bodies unread) and
/// get 503 with Retry-After when none frees within `--timeout`: the
/// server's memory follows its settings, not its clients.
#[test]
fn uploads_beyond_the_limit_wait_then_get_503() {
    let s = start(&["--max-uploads", "1", "--timeout", "2"], None);
    let dir = tempfile::tempdir().unwrap();
    // One upload holds the only slot, sending a little every 0.4 s.
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    let body = noise(7, 300_000);
    write!(
        slow,
        "PUT /v1/artifacts HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    slow.write_all(&body[..1000]).unwrap();
    let sender = std::thread::spawn(move || {
        for piece in body[1000..].chunks(25_000) {
            std::thread::sleep(Duration::from_millis(400));
            slow.write_all(piece).unwrap();
        }
        let mut resp = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = slow.read_to_string(&mut resp);
        resp
    });
    std::thread::sleep(Duration::from_millis(300));
    let quick = dir.path().join("quick");
    std::fs::write(&quick, noise(8, 200_000)).unwrap();
    let put = || {
        let o = Command::new("curl")
            .args(["-s", "-i", "-X", "PUT", "--data-binary"])
            .arg(format!("@{}", quick.display()))
            .arg(format!("{}/v1/artifacts", s.url))
            .output()
            .unwrap();
        out(&o)
    };
    let t = std::time::Instant::now();
    let answer = put();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    assert!(t.elapsed() >= Duration::from_millis(1900), "it waited for a slot first");
    let resp = sender.join().unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "the slow one went through: {resp}");
    // The slot is free again.
    assert!(put().starts_with("HTTP/1.1 201"));
    assert_eq!(list_ids(&s).len(), 2);
}
