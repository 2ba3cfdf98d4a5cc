//! `aslctl remote|fetch`: one domain fetching what another publishes, from
//! its directory and over `aslctl serve`; and what a fetch refuses — a
//! replayed older manifest, a manifest signed by the wrong key, bytes that
//! do not hash to their id (from a lying HTTP peer, played by Python).

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, noise, stderr_of as err, stdout_of as out, Killed};

fn ids(store: &Path) -> Vec<String> {
    ok(store, &["ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// A store `dir` holding `n` files (ids returned in order).
fn stocked(root: &Path, dir: &Path, n: u64, seed: u64) -> Vec<String> {
    let files = root.join(format!("files-{}", dir.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&files).unwrap();
    let mut v = Vec::new();
    for i in 0..n {
        let p = files.join(format!("f{i}"));
        // One large artifact among small ones.
        let len = if i == 0 { 300_000 } else { 100 + i as usize * 37 };
        std::fs::write(&p, noise(seed + i, len)).unwrap();
        let line = ok(dir, &["ingest", p.to_str().unwrap()]);
        v.push(line.split_whitespace().next().unwrap().to_string());
    }
    v
}

#[test]
fn fetch_sends_only_what_is_missing_from_a_directory_and_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let x = stocked(tmp.path(), &a, 6, 1000);
    ok(&a, &["publish", &x[0], &x[1], &x[2]]);
    // b already holds one of them.
    std::fs::create_dir_all(tmp.path().join("pre")).unwrap();
    std::fs::write(tmp.path().join("pre/f1"), noise(1001, 137)).unwrap();
    ok(&b, &["ingest", tmp.path().join("pre/f1").to_str().unwrap()]);

    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!(
        (r["listed"].as_u64(), r["present"].as_u64(), r["fetched"].as_u64()),
        (Some(3), Some(1), Some(2)),
        "{r}"
    );
    let have = ids(&b);
    for id in &x[..3] {
        assert!(have.contains(id), "{id} fetched");
    }
    for id in &x[3..] {
        assert!(!have.contains(id), "{id} is internal to a: never sent");
    }
    // Again: nothing travels. A new publication: only it does.
    let r = json(&b, &["fetch", "a"]);
    assert_eq!(r["fetched"], 0, "{r}");
    ok(&a, &["publish", &x[3]]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!((r["seq"].as_u64(), r["fetched"].as_u64()), (Some(2), Some(1)), "{r}");
    let listed = common::aslctl_lines(&b, &["remote", "list"]);
    assert_eq!(listed[0]["seq"], 2);
    assert_eq!(listed[0]["key"], json(&a, &["domain", "show"])["key"]);
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));

    // Over HTTP, with a token that sees only what a publishes.
    let serve_dir = tempfile::tempdir().unwrap();
    let s = common::server::start_on(
        serve_dir,
        a.clone(),
        &[],
        Some(
            r#"{"tokens": [{"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#,
        ),
    );
    ok(&c, &["remote", "add", "a", &s.url, "--token", "peer-token-0123456789"]);
    let r = json(&c, &["fetch", "a"]);
    assert_eq!((r["listed"].as_u64(), r["fetched"].as_u64()), (Some(4), Some(4)), "{r}");
    let have = ids(&c);
    for id in &x[..4] {
        assert!(have.contains(id));
    }
    assert!(!have.contains(&x[4]) && !have.contains(&x[5]));
    ok(
        &c,
        &["remote", "add", "bad", &s.url, "--token", "wrong-token-0123456789"],
    );
    let o = aslctl(&c, &["fetch", "bad"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("401"), "{}", err(&o));
}

#[test]
fn a_replayed_or_forged_manifest_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, f) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("forger"));
    let x = stocked(tmp.path(), &a, 3, 1000);
    ok(&a, &["publish", &x[0]]);
    let old = tmp.path().join("a-old");
    common::copy_dir(&a, &old);
    ok(&a, &["publish", &x[1]]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    assert_eq!(json(&b, &["fetch", "a"])["seq"], 2);

    // a is rolled back to its older state: its manifest 1 is a replay.
    std::fs::rename(&a, tmp.path().join("a-new")).unwrap();
    std::fs::rename(&old, &a).unwrap();
    let before = ids(&b);
    let o = aslctl(&b, &["fetch", "a"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("replayed"), "{}", err(&o));
    assert_eq!(ids(&b), before, "nothing stored");

    // Another store's manifest where a's key is expected.
    let y = stocked(tmp.path(), &f, 2, 5000);
    ok(&f, &["publish", &y[1]]);
    let a_key = json(&a, &["domain", "show"])["key"].as_str().unwrap().to_string();
    ok(&b, &["remote", "add", "forged", f.to_str().unwrap(), "--key", &a_key]);
    let o = aslctl(&b, &["fetch", "forged"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("another key"), "{}", err(&o));
    assert!(!ids(&b).contains(&y[1]), "nothing stored");
}

/// Serves a's real manifest and signature, and for the published
/// artifacts other bytes (or a cut-off body), as a lying peer would.
const LIAR: &str = r#"
import http.server, json, os, sys
files, mode = sys.argv[1], sys.argv[2]
man, sig = open(os.path.join(files, "ids")).read().split()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/v1/publication":
            body = json.dumps({"manifest": man, "signature": sig}).encode()
        else:
            i = self.path.rsplit("/", 1)[1]
            p = os.path.join(files, i)
            if not os.path.exists(p):
                self.send_response(404); self.end_headers(); return
            body = open(p, "rb").read()
            if i not in (man, sig):
                if mode == "wrong":
                    body = body[:-1] + bytes([body[-1] ^ 1])
                elif mode == "short":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// Starts a Python peer (`script` with `args`) that prints its port first.
fn python_peer(script: &str, args: &[&str]) -> (Killed, u16) {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut port).unwrap();
    (Killed(child), port.trim().parse().unwrap())
}

/// Starts the lying peer over `files`; its port.
fn liar(files: &Path, mode: &str) -> (Killed, u16) {
    python_peer(LIAR, &[files.to_str().unwrap(), mode])
}

#[test]
fn bytes_that_do_not_hash_to_their_id_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let x = stocked(tmp.path(), &a, 3, 1000);
    ok(&a, &["publish", &x[0], &x[1]]);
    let files = tmp.path().join("served");
    std::fs::create_dir(&files).unwrap();
    let m = json(&a, &["domain", "manifest"]);
    let (man, sig) = (m["manifest"].as_str().unwrap(), m["signature"].as_str().unwrap());
    std::fs::write(files.join("ids"), format!("{man} {sig}")).unwrap();
    for id in [man, sig, &x[0], &x[1]] {
        std::fs::write(files.join(id), aslctl(&a, &["cat", id]).stdout).unwrap();
    }
    for mode in ["wrong", "short"] {
        let (_liar, port) = liar(&files, mode);
        let b = tmp.path().join(format!("b-{mode}"));
        ok(&b, &["remote", "add", "liar", &format!("http://127.0.0.1:{port}")]);
        let o = aslctl(&b, &["fetch", "liar"]);
        assert_eq!(o.status.code(), Some(2), "{mode}: {}", err(&o));
        let have = ids(&b);
        assert!(have.is_empty(), "{mode}: nothing of the lies stored: {have:?}");
        assert!(!ok(&b, &["pins"]).contains("asl.import"), "{mode}: no import recorded");
        let o = aslctl(&b, &["verify"]);
        assert!(o.status.success(), "{mode}: {}", err(&o));
    }
}

#[test]
fn a_fetch_killed_part_way_resumes_without_sending_again_what_it_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files = tmp.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..48u64 {
        std::fs::write(files.join(format!("f{i:02}")), noise(7000 + i, 64 << 10)).unwrap();
    }
    ok(&a, &["ingest", files.to_str().unwrap()]);
    ok(&a, &["snapshot", "create", "all"]);
    // The snapshot also holds what ingest recorded beside the files.
    assert!(
        json(&a, &["publish", "--snapshot", "all"])["published"]
            .as_u64()
            .unwrap()
            >= 48
    );
    let published: Vec<String> = json(&a, &["domain", "manifest"])["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let n = published.len();
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    // 512 KiB/s down: the 3 MiB take about 6 s.
    let port = common::s3::proxy_down(s.addr.rsplit(':').next().unwrap().parse().unwrap(), 512 << 10);
    ok(&b, &["remote", "add", "a", &format!("http://127.0.0.1:{port}")]);
    let mut child = Command::new(common::aslctl_bin())
        .arg("--store")
        .arg(&b)
        .args(["fetch", "a"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(child.try_wait().unwrap().is_none(), "still fetching when killed");
    child.kill().unwrap();
    child.wait().unwrap();

    // What the killed fetch committed is whole and verified; the rest is absent.
    let kept = ids(&b);
    assert!(!kept.is_empty() && kept.len() < n, "{} kept", kept.len());
    assert!(
        kept.iter().all(|k| published.contains(k)),
        "only published artifacts, whole"
    );
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!ok(&b, &["pins"]).contains("asl.import"), "no import recorded yet");

    let r = json(&b, &["fetch", "a"]);
    assert_eq!(r["present"].as_u64().unwrap() as usize, kept.len(), "{r}");
    assert_eq!(
        r["fetched"].as_u64().unwrap() as usize,
        n - kept.len(),
        "only the rest travels: {r}"
    );
    let have = ids(&b);
    assert!(published.iter().all(|p| have.contains(p)));
}

#[test]
fn two_domains_fetching_from_each_other_converge_and_push_composes_with_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let x = stocked(tmp.path(), &a, 4, 100);
    let y = stocked(tmp.path(), &b, 4, 200);
    ok(&a, &["publish", &x[0], &x[1]]);
    ok(&b, &["publish", &y[0], &y[1], &y[2]]);
    ok(&a, &["remote", "add", "b", b.to_str().unwrap()]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    for _ in 0..2 {
        ok(&a, &["fetch", "b"]);
        ok(&b, &["fetch", "a"]);
    }
    let (ha, hb) = (ids(&a), ids(&b));
    for id in [&x[0], &x[1], &y[0], &y[1], &y[2]] {
        assert!(ha.contains(id) && hb.contains(id), "{id} on both sides");
    }
    assert!(!hb.contains(&x[2]) && !ha.contains(&y[3]), "internal ones stay home");
    // An import is internal where it lands: it is not passed on.
    let pa = json(&a, &["domain", "manifest"])["published"].clone();
    assert!(!pa.as_array().unwrap().iter().any(|v| v == y[0].as_str()), "{pa}");

    // Push to a directory, then a fetch from there finds it all present.
    ok(&c, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&a, &["remote", "add", "c", c.to_str().unwrap()]);
    let r = json(&a, &["push", "c"]);
    assert_eq!((r["published"].as_u64(), r["sent"].as_u64()), (Some(4), Some(4)), "{r}");
    assert_eq!(json(&a, &["push", "c"])["sent"], 0, "nothing twice");
    let r = json(&c, &["fetch", "a"]);
    assert_eq!(
        (r["fetched"].as_u64(), r["present"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );

    // Push over HTTP needs a write token.
    let d = tmp.path().join("d");
    std::fs::write(tmp.path().join("d-own"), b"d's own").unwrap();
    ok(&d, &["ingest", tmp.path().join("d-own").to_str().unwrap()]);
    let s = common::server::start_on(
        tempfile::tempdir().unwrap(),
        d.clone(),
        &[],
        Some(
            r#"{"tokens": [{"name": "w", "token": "write-token-0123456789", "scope": "write"},
                           {"name": "r", "token": "read-token-01234567890", "scope": "read"}]}"#,
        ),
    );
    ok(
        &a,
        &["remote", "add", "dr", &s.url, "--token", "read-token-01234567890"],
    );
    let o = aslctl(&a, &["push", "dr"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    ok(
        &a,
        &["remote", "add", "dw", &s.url, "--token", "write-token-0123456789"],
    );
    let r = json(&a, &["push", "dw"]);
    assert_eq!(r["sent"], 4, "{r}");
    assert_eq!(json(&a, &["push", "dw"])["sent"], 0);
    let (status, body) = common::server::curl(&[
        "-H",
        "Authorization: Bearer read-token-01234567890",
        &format!("{}/v1/artifacts/{}", s.url, x[1]),
    ]);
    assert_eq!(status, 200);
    assert_eq!(body, noise(101, 100 + 37));
}

#[test]
fn a_federated_snapshot_records_its_sources_and_verifies_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let x = stocked(tmp.path(), &a, 3, 300);
    stocked(tmp.path(), &b, 2, 400);
    ok(&a, &["publish", &x[0], &x[1]]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&b, &["fetch", "a"]);
    let c = json(&b, &["snapshot", "create", "release-1", "--federated"]);
    assert_eq!(c["sources"], 1, "{c}");
    let v = json(&b, &["snapshot", "verify", "release-1"]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert!(v["imported"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["id"], c["id"], "the identity is the record's id");
    // a publishes more and b fetches it: the snapshot still stands on the
    // manifest it was taken under.
    ok(&a, &["publish", &x[2]]);
    ok(&b, &["fetch", "a"]);
    ok(&b, &["gc"]);
    let v = json(&b, &["snapshot", "verify", "release-1"]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    // A second one draws on the same domain, now under its newer manifest.
    let two = json(&b, &["snapshot", "create", "release-2", "--federated"]);
    assert_eq!(two["sources"], 1);
    assert_ne!(two["id"], c["id"]);
    let o = aslctl(&b, &["snapshot", "verify", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    // Damage under the snapshot is found, and exits 1.
    let seg = std::fs::read_dir(b.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let o = aslctl(&b, &["snapshot", "verify", "release-1"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("problem:"), "{}", out(&o));
}

#[test]
fn several_remotes_of_one_domain_share_a_fetch_and_cover_for_a_liar() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let x = stocked(tmp.path(), &a, 8, 600);
    let refs: Vec<&str> = x.iter().map(String::as_str).collect();
    let mut args = vec!["publish"];
    args.extend_from_slice(&refs);
    ok(&a, &args);
    // The same domain through its directory and through a lying server.
    let files = tmp.path().join("served");
    std::fs::create_dir(&files).unwrap();
    let m = json(&a, &["domain", "manifest"]);
    let (man, sig) = (m["manifest"].as_str().unwrap(), m["signature"].as_str().unwrap());
    std::fs::write(files.join("ids"), format!("{man} {sig}")).unwrap();
    for id in [man, sig].into_iter().chain(refs.iter().copied()) {
        std::fs::write(files.join(id), aslctl(&a, &["cat", id]).stdout).unwrap();
    }
    let (_liar, port) = liar(&files, "wrong");
    let b = tmp.path().join("b");
    ok(&b, &["remote", "add", "liar", &format!("http://127.0.0.1:{port}")]);
    ok(&b, &["remote", "add", "dir", a.to_str().unwrap()]);
    let r = common::by_key(common::aslctl_lines(&b, &["fetch", "liar", "dir"]), "remote");
    assert!(
        r["liar"]["refused"].as_u64().unwrap() >= 1,
        "the liar was given work and failed it: {r}"
    );
    assert_eq!(r["liar"]["fetched"], 0, "{r}");
    assert_eq!(r["dir"]["fetched"], 8, "the honest mirror covered everything: {r}");
    let have = ids(&b);
    assert!(x.iter().all(|i| have.contains(i)));
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));

    // Two honest mirrors split the work.
    let c = tmp.path().join("c");
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    ok(&c, &["remote", "add", "dir", a.to_str().unwrap()]);
    ok(&c, &["remote", "add", "http", &s.url]);
    let r = common::by_key(common::aslctl_lines(&c, &["fetch", "dir", "http"]), "remote");
    let (d, h) = (
        r["dir"]["fetched"].as_u64().unwrap(),
        r["http"]["fetched"].as_u64().unwrap(),
    );
    assert!(d > 0 && h > 0 && d + h == 8, "{r}");
    // Remotes of different domains are not mixed in one fetch.
    let e = tmp.path().join("e");
    let y = stocked(tmp.path(), &e, 1, 700);
    ok(&e, &["publish", &y[0]]);
    ok(&c, &["remote", "add", "other", e.to_str().unwrap()]);
    let o = aslctl(&c, &["fetch", "dir", "other"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

/// Forwards every GET to the real server at argv[1] and flips one bit of
/// each body it passes on — the manifest, the signature, every artifact
/// and every range of one — as a corrupting mirror in front of an honest
/// server would.
const FLIPPER: &str = r#"
import http.server, sys, urllib.request, urllib.error
up = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        req = urllib.request.Request(up + self.path)
        for h in ("Range", "Authorization"):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        try:
            r = urllib.request.urlopen(req)
            code, headers, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            code, headers, body = e.code, e.headers, e.read()
        if body and code < 300:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 4]) + body[i + 1:]
        self.send_response(code)
        for k in ("Content-Type", "Content-Range", "ETag", "Accept-Ranges"):
            if headers.get(k):
                self.send_header(k, headers[k])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A mirror that corrupts everything it passes on, beside an honest one of
/// the same domain (over HTTP, and as a directory): the fetch takes it all
/// from the honest one — a 20 MiB artifact and small ones — and says the
/// liar's manifest was refused.
#[test]
fn a_lying_mirror_beside_an_honest_one_does_not_fail_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let mut x = stocked(tmp.path(), &a, 3, 800);
    let big = tmp.path().join("big");
    std::fs::write(&big, noise(801, 20 << 20)).unwrap();
    x.push(common::ingest_file(&a, &big));
    let refs: Vec<&str> = x.iter().map(String::as_str).collect();
    ok(&a, &[&["publish"][..], &refs].concat());
    let s = common::server::start_on(tempfile::tempdir().unwrap(), a.clone(), &[], None);
    let (_flipper, port) = python_peer(FLIPPER, &[&s.url]);
    let liar = format!("http://127.0.0.1:{port}");
    for (store, honest) in [("b", s.url.clone()), ("c", a.display().to_string())] {
        let b = tmp.path().join(store);
        ok(&b, &["remote", "add", "liar", &liar]);
        ok(&b, &["remote", "add", "honest", &honest]);
        let o = aslctl(&b, &["--json", "fetch", "liar", "honest"]);
        assert!(o.status.success(), "{store}: {}", err(&o));
        let r = common::by_key(common::ndjson(&out(&o)), "remote");
        assert!(r["liar"]["manifest_refused"].is_string(), "{store}: {r}");
        assert_eq!(r["honest"]["fetched"], 4, "{store}: {r}");
        let have = ids(&b);
        assert!(x.iter().all(|i| have.contains(i)), "{store}");
        assert_eq!(aslctl(&b, &["cat", &x[3]]).stdout, noise(801, 20 << 20), "{store}");
        let o = aslctl(&b, &["verify"]);
        assert!(o.status.success(), "{store}: {}", err(&o));
        // Alone, the liar is refused outright, and nothing is stored.
        let d = tmp.path().join(format!("{store}-alone"));
        ok(&d, &["remote", "add", "liar", &liar]);
        let o = aslctl(&d, &["fetch", "liar"]);
        assert!(matches!(o.status.code(), Some(1 | 2)), "{}", err(&o));
        assert!(ids(&d).is_empty(), "nothing of the lies stored");
    }
}

/// `rm --force` of a published artifact publishes a manifest without it
/// (and is refused while a published record names it); a fetch from a
/// remote that lists an artifact it no longer has reports that one and
/// fetches the rest.
#[test]
fn a_forced_removal_unpublishes_and_a_fetch_goes_on_past_what_a_remote_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let x = stocked(tmp.path(), &a, 3, 900);
    ok(&a, &["publish", &x[0], &x[1], &x[2]]);
    let o = aslctl(&a, &["rm", "--force", &x[1]]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("unpublished 1"), "{}", err(&o));
    let m = json(&a, &["domain", "manifest"]);
    let listed = m.to_string();
    assert!(!listed.contains(&x[1]) && listed.contains(&x[0]), "{m}");
    let b = tmp.path().join("b");
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!((r["fetched"].as_u64(), r["listed"].as_u64()), (Some(2), Some(2)), "{r}");
    // A published tree names its files: removing one of them is refused.
    let dir = tmp.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), b"in a published tree").unwrap();
    let tree = common::ingest_tree(&a, &dir);
    ok(&a, &["publish", "--tree", &tree]);
    let file = blake3::hash(b"in a published tree").to_hex().to_string();
    let o = aslctl(&a, &["rm", "--force", &file]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(ids(&a).contains(&file), "nothing removed");

    // A remote (an HTTP peer here) whose manifest lists an artifact it
    // cannot send: reported, exit 1, and the others are fetched.
    let files = tmp.path().join("served");
    std::fs::create_dir(&files).unwrap();
    let m = json(&a, &["domain", "manifest"]);
    let (man, sig) = (m["manifest"].as_str().unwrap(), m["signature"].as_str().unwrap());
    std::fs::write(files.join("ids"), format!("{man} {sig}")).unwrap();
    for id in [man, sig, &x[0], &tree] {
        std::fs::write(files.join(id), aslctl(&a, &["cat", id]).stdout).unwrap();
    }
    let (_peer, port) = liar(&files, "honest");
    let c = tmp.path().join("c");
    ok(&c, &["remote", "add", "gappy", &format!("http://127.0.0.1:{port}")]);
    let o = aslctl(&c, &["fetch", "gappy"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&x[2]) && err(&o).contains("does not have it"),
        "{}",
        err(&o)
    );
    let have = ids(&c);
    assert!(
        have.contains(&x[0]) && have.contains(&tree) && !have.contains(&x[2]),
        "{have:?}"
    );
}
