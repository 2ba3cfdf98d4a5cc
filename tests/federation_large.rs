//! Large artifacts between domains: fetched chunk by chunk, each chunk
//! verified against the id as it arrives (a lying peer, played by Python,
//! is caught at the chunk it altered and what came before is kept), and a
//! fetch killed part-way resumed from the verified prefix, from the same
//! remote or another of the domain, without that prefix sent again; a new
//! version of a large artifact, changed in place and appended to, fetched
//! as only the chunks that differ.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, noise, stderr_of as err, Killed};

const MIB: usize = 1 << 20;

fn ids(store: &Path) -> Vec<String> {
    ok(store, &["ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// A domain publishing one large artifact of `len` bytes; its id and bytes.
fn publisher(root: &Path, len: usize) -> (std::path::PathBuf, String, Vec<u8>) {
    let a = root.join("a");
    let bytes = noise(42, len);
    let f = root.join("big.bin");
    std::fs::write(&f, &bytes).unwrap();
    let id = common::ingest_file(&a, &f);
    ok(&a, &["publish", &id]);
    (a, id, bytes)
}

fn staged(store: &Path, id: &str) -> Option<u64> {
    std::fs::metadata(store.join("fetch").join(format!("{id}.part")))
        .ok()
        .map(|m| m.len())
}

#[test]
fn a_large_fetch_killed_part_way_resumes_from_its_verified_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, id, bytes) = publisher(tmp.path(), 24 * MIB + 4321);
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    // 4 MiB/s down: the 24 MiB take about 6 s.
    let port = common::s3::proxy_down(s.addr.rsplit(':').next().unwrap().parse().unwrap(), 4 << 20);
    let b = tmp.path().join("b");
    ok(&b, &["remote", "add", "slow", &format!("http://127.0.0.1:{port}")]);
    let child = Command::new(common::aslctl_bin())
        .arg("--store")
        .arg(&b)
        .args(["fetch", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(child.0.try_wait().unwrap().is_none(), "still fetching when killed");
    drop(child);

    // Nothing half-imported is visible; the staged prefix is on disk.
    assert!(!ids(&b).contains(&id));
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
    let part = staged(&b, &id).expect("a staging file");
    assert!(part > 2 * MIB as u64, "{part} bytes staged");

    // The next fetch (unthrottled) sends only the rest.
    ok(&b, &["remote", "add", "fast", &s.url]);
    let r = json(&b, &["fetch", "fast"]);
    let resumed = r["resumed"].as_u64().unwrap();
    assert!(
        resumed >= MIB as u64 && resumed.is_multiple_of(MIB as u64) && resumed < bytes.len() as u64,
        "{r}"
    );
    assert_eq!(r["fetched"], 1, "{r}");
    assert_eq!(aslctl(&b, &["cat", &id]).stdout, bytes);
    assert_eq!(staged(&b, &id), None, "the staging file is gone");
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
}

/// Serves a's publication, the big artifact's real tree, and its bytes with
/// one byte flipped at a given offset (Range requests honoured).
const LIAR: &str = r#"
import http.server, json, os, sys
files, flip = sys.argv[1], int(sys.argv[2])
man, sig, big = open(os.path.join(files, "ids")).read().split()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        status, extra = 200, {}
        if self.path == "/v1/publication":
            body = json.dumps({"manifest": man, "signature": sig, "cosignatures": []}).encode()
        elif self.path.endswith("/tree"):
            body = open(os.path.join(files, big + ".tree"), "rb").read()
        else:
            i = self.path.rsplit("/", 1)[1]
            p = os.path.join(files, i)
            if not os.path.exists(p):
                self.send_response(404); self.end_headers(); return
            body = bytearray(open(p, "rb").read())
            if i == big:
                body[flip] ^= 1
            total = len(body)
            r = self.headers.get("Range")
            if r:
                start = int(r.split("=")[1].split("-")[0])
                body = body[start:]
                status = 206
                extra["Content-Range"] = "bytes %d-%d/%d" % (start, total - 1, total)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(bytes(body))
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn a_chunk_sent_wrong_is_refused_there_and_another_remote_sends_only_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, id, bytes) = publisher(tmp.path(), 12 * MIB + 99);
    let files = tmp.path().join("served");
    std::fs::create_dir(&files).unwrap();
    let m = json(&a, &["domain", "manifest"]);
    let (man, sig) = (m["manifest"].as_str().unwrap(), m["signature"].as_str().unwrap());
    std::fs::write(files.join("ids"), format!("{man} {sig} {id}")).unwrap();
    for x in [man, sig, &id] {
        std::fs::write(files.join(x), aslctl(&a, &["cat", x]).stdout).unwrap();
    }
    // The real tree, as the real server sends it.
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    let (code, tree) = common::server::curl(&[&format!("{}/v1/artifacts/{id}/tree", s.url)]);
    assert_eq!((code, tree.len()), (200, 13 * 32));
    std::fs::write(files.join(format!("{id}.tree")), &tree).unwrap();
    drop(s);

    // One byte wrong in chunk 7.
    let mut child = Command::new("python3")
        .args(["-c", LIAR])
        .arg(&files)
        .arg((7 * MIB + 12345).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut port).unwrap();
    let _liar = Killed(child);
    let b = tmp.path().join("b");
    ok(
        &b,
        &["remote", "add", "liar", &format!("http://127.0.0.1:{}", port.trim())],
    );
    let o = aslctl(&b, &["fetch", "liar"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("chunk 7 of"), "{}", err(&o));
    assert!(!ids(&b).contains(&id), "nothing of the lie stored");
    assert!(staged(&b, &id).is_some(), "the 7 verified chunks kept");

    // Another remote of the same domain: only chunks 7 on travel.
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!(r["resumed"].as_u64(), Some(7 * MIB as u64), "{r}");
    assert_eq!(aslctl(&b, &["cat", &id]).stdout, bytes);

    // A staged artifact that its domain stops publishing: the next fetch
    // from the domain removes the staging file (nobody would send the rest).
    let d = tmp.path().join("d");
    ok(
        &d,
        &["remote", "add", "liar", &format!("http://127.0.0.1:{}", port.trim())],
    );
    assert_eq!(aslctl(&d, &["fetch", "liar"]).status.code(), Some(2));
    assert!(staged(&d, &id).is_some());
    let other = tmp.path().join("other.txt");
    std::fs::write(&other, b"still published").unwrap();
    let other_id = common::ingest_file(&a, &other);
    ok(&a, &["publish", &other_id]);
    ok(&a, &["unpublish", &id]);
    ok(&d, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&d, &["fetch", "a"]);
    assert_eq!(
        staged(&d, &id),
        None,
        "the staging file of an unpublished artifact is gone"
    );

    // A tree that does not merge into the id is refused before any byte.
    let c = tmp.path().join("c");
    let mut bad = tree.clone();
    bad[0] ^= 1;
    std::fs::write(files.join(format!("{id}.tree")), &bad).unwrap();
    ok(
        &c,
        &["remote", "add", "liar", &format!("http://127.0.0.1:{}", port.trim())],
    );
    let o = aslctl(&c, &["fetch", "liar"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("does not merge into the id"), "{}", err(&o));
    assert_eq!(staged(&c, &id), None);
}

#[test]
fn a_new_version_of_a_large_artifact_sends_only_the_chunks_that_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, v1, bytes1) = publisher(tmp.path(), 16 * MIB);
    let b = tmp.path().join("b");
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!((r["fetched"].as_u64(), r["reused"].as_u64()), (Some(1), Some(0)), "{r}");

    // Chunk 3 changed in place, 3 MiB and a bit appended.
    let mut bytes2 = bytes1.clone();
    bytes2[3 * MIB + 100] ^= 0xff;
    bytes2.extend(noise(43, 3 * MIB + 5));
    let f = tmp.path().join("big-v2.bin");
    std::fs::write(&f, &bytes2).unwrap();
    let v2 = common::ingest_file(&a, &f);
    ok(&a, &["publish", &v2]);
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    ok(&b, &["remote", "add", "ah", &s.url]);
    let r = json(&b, &["fetch", "ah"]);
    assert_eq!(r["fetched"], 1, "{r}");
    assert_eq!(
        r["reused"].as_u64(),
        Some(15 * MIB as u64),
        "all of v1's chunks but chunk 3: {r}"
    );
    assert_eq!(aslctl(&b, &["cat", &v2]).stdout, bytes2);
    assert_eq!(aslctl(&b, &["cat", &v1]).stdout, bytes1);
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));

    // Both versions in one fetch: the second copies from the first.
    let c = tmp.path().join("c");
    ok(&c, &["remote", "add", "ah", &s.url]);
    let r = json(&c, &["fetch", "ah"]);
    assert_eq!(
        (r["fetched"].as_u64(), r["reused"].as_u64()),
        (Some(2), Some(15 * MIB as u64)),
        "{r}"
    );
    assert_eq!(aslctl(&c, &["cat", &v2]).stdout, bytes2);
}
