//! `aslctl domain|publish|unpublish`: a store's domain identity, what it
//! publishes, and its signed publication manifests, checked by an
//! independent implementation (Python's `cryptography` for Ed25519 and
//! `cbor2` for the records, both installed by `.ci/run`).

use std::path::Path;
use std::process::Command;

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, stderr_of as err, stdout_of as out};

/// Checks a manifest and its signature record the way another domain's
/// code would, sharing nothing with ASL's: prints the manifest's fields.
const CHECK: &str = r#"
import sys, json, cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
manifest, signature = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
mid, key = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
def record(b):
    v = cbor2.loads(b)
    v = v.value if isinstance(v, cbor2.CBORTag) else v
    assert v[0] == "asl", v[0]
    return v[1], v[2], v[3]
t, ver, sig = record(signature)
assert (t, ver) == ("asl/signature", 1), (t, ver)
assert sig["subject"] == mid, "signs another artifact"
assert sig["key"] == key, "signed by another key"
Ed25519PublicKey.from_public_bytes(key).verify(sig["signature"], b"asl signature v1\x00" + mid)
t, ver, m = record(manifest)
assert (t, ver) == ("asl/publication", 1), (t, ver)
assert m["key"] == key
print(json.dumps({"seq": m["seq"], "domain": m["domain"].hex(), "name": m["name"],
                  "published": [p.hex() for p in m["published"]],
                  "prev": m["prev"].hex() if "prev" in m else None}))
"#;

fn independent_check(store: &Path, dir: &Path, manifest: &str, signature: &str, key: &str) -> serde_json::Value {
    let (mf, sf) = (dir.join("m.cbor"), dir.join("s.cbor"));
    std::fs::write(&mf, aslctl(store, &["cat", manifest]).stdout).unwrap();
    std::fs::write(&sf, aslctl(store, &["cat", signature]).stdout).unwrap();
    let o = Command::new("python3")
        .args(["-c", CHECK])
        .arg(&mf)
        .arg(&sf)
        .args([manifest, key])
        .output()
        .unwrap();
    assert!(o.status.success(), "the independent check: {}", err(&o));
    serde_json::from_str(out(&o).trim()).unwrap()
}

#[test]
fn publishing_writes_signed_manifests_another_implementation_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    for (n, body) in [("a", "alpha\n"), ("b", "beta\n"), ("sub/c", "gamma\n")] {
        std::fs::write(files.join(n), body).unwrap();
    }
    let lines = ok(&s, &["ingest", "--tree", files.to_str().unwrap()]);
    let id_of = |name: &str| {
        lines
            .lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string()
    };
    let (a, b, c) = (id_of("/a"), id_of("/b"), id_of("/sub/c"));

    let d = json(&s, &["domain", "init", "--name", "lab-1"]);
    assert_eq!(d["name"], "lab-1");
    let o = aslctl(&s, &["domain", "init", "--name", "again"]);
    assert_eq!(o.status.code(), Some(2), "one domain for life: {}", err(&o));
    let o = aslctl(&s, &["domain", "init", "--name", "bad/name"]);
    assert_eq!(o.status.code(), Some(2));

    let r = json(&s, &["publish", &a, &b]);
    assert_eq!((r["seq"].as_u64(), r["published"].as_u64()), (Some(1), Some(2)), "{r}");
    let r = json(&s, &["unpublish", &a]);
    assert_eq!((r["seq"].as_u64(), r["published"].as_u64()), (Some(2), Some(1)), "{r}");
    let m = json(&s, &["domain", "manifest"]);
    let got = independent_check(
        &s,
        tmp.path(),
        m["manifest"].as_str().unwrap(),
        m["signature"].as_str().unwrap(),
        d["key"].as_str().unwrap(),
    );
    assert_eq!(got["seq"], 2);
    assert_eq!(got["domain"], d["id"]);
    assert_eq!(got["name"], "lab-1");
    assert_eq!(got["published"], serde_json::json!([b]));
    assert!(got["prev"].is_string(), "it names the manifest before it");

    // Nothing changed: no new manifest.
    let r = json(&s, &["publish", &b]);
    assert_eq!((r["seq"].as_u64(), r["manifest"].is_null()), (Some(2), true));

    // A tree: the tree records and every file under it.
    let tree = lines
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let r = json(&s, &["publish", "--tree", &tree]);
    let published: Vec<String> = json(&s, &["domain", "manifest"])["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(r["seq"], 3);
    for id in [&a, &b, &c, &tree] {
        assert!(published.contains(id), "{id} in {published:?}");
    }
    // A published artifact is not removed by accident.
    let o = aslctl(&s, &["rm", &c]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("is published"), "{}", err(&o));
    // An unknown id changes nothing.
    let o = aslctl(&s, &["publish", &"0".repeat(64)]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(json(&s, &["domain", "show"])["seq"], 3);
}

/// Per-domain views of CURRENT (seed 004): `ls`, `find` and `runs ls` take
/// `--domain` (the store's own, or one it fetched from: by name, id or
/// number) and `--visibility`; so do `GET /v1/artifacts` and `/v1/find`.
#[test]
fn listings_keep_one_domain_or_one_visibility() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let file = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let put = |store: &Path, name: &str, body: &str| {
        ok(store, &["ingest", &file(name, body)])
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let x = put(&a, "x", "from lab a\n");
    ok(&a, &["domain", "init", "--name", "lab-a"]);
    ok(&a, &["publish", &x]);
    let z = put(&b, "z", "lab b, internal\n");
    let w = put(&b, "w", "lab b, published\n");
    ok(&b, &["domain", "init", "--name", "lab-b"]);
    ok(&b, &["publish", &w]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    assert_eq!(json(&b, &["fetch", "a"])["fetched"], 1);
    for id in [&x, &z] {
        ok(&b, &["label", id, "kind=sample"]);
    }

    let ls = |args: &[&str]| -> Vec<(String, String)> {
        common::aslctl_lines(&b, &[&["ls"], args].concat())
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap().into(),
                    a["visibility"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let ids = |l: &[(String, String)]| l.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
    let all = ids(&ls(&[]));
    assert!([&x, &z, &w].iter().all(|i| all.contains(i)), "{all:?}");
    let own = ids(&ls(&["--domain", "local"]));
    assert!(own.contains(&z) && own.contains(&w) && !own.contains(&x), "{own:?}");
    assert_eq!(ids(&ls(&["--domain", "lab-b"])), own, "the store's own name is local");
    let theirs = ids(&ls(&["--domain", "lab-a"]));
    assert!(
        theirs.contains(&x) && !theirs.contains(&z) && !theirs.contains(&w),
        "{theirs:?}"
    );
    assert_eq!(ids(&ls(&["--domain", "1"])), theirs, "by number");
    let published = ls(&["--visibility", "published"]);
    assert!(published.iter().all(|(_, v)| v == "published"), "{published:?}");
    assert!(ids(&published).contains(&w) && !ids(&published).contains(&z));
    let internal = ids(&ls(&["--domain", "local", "--visibility", "internal"]));
    assert!(internal.contains(&z) && !internal.contains(&w) && !internal.contains(&x));
    let o = aslctl(&b, &["ls", "--domain", "lab-c"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("no domain \"lab-c\"") && err(&o).contains("lab-a"),
        "{}",
        err(&o)
    );
    let o = aslctl(&b, &["ls", "--visibility", "secret"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    let found = |args: &[&str]| -> Vec<String> {
        common::aslctl_lines(&b, &[&["find", "--label", "kind=sample"], args].concat())
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut both = found(&[]);
    both.sort();
    let mut want = vec![x.clone(), z.clone()];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(found(&["--domain", "lab-a"]), vec![x.clone()]);
    assert_eq!(found(&["--domain", "local"]), vec![z.clone()]);
    assert!(found(&["--visibility", "published", "--domain", "local"]).is_empty());

    // The same over HTTP.
    let s = common::server::start_on(tempfile::tempdir().unwrap(), b.clone(), &[], None);
    let get = |path: &str| common::server::curl(&[&format!("{}{path}", s.url)]);
    let listed = |path: &str| -> Vec<String> {
        let (code, body) = get(path);
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let v = common::server::json(&body);
        v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("/v1/artifacts?domain=lab-a"), theirs);
    assert_eq!(listed("/v1/artifacts?domain=local&visibility=internal"), internal);
    let (code, _) = get("/v1/artifacts?visibility=secret");
    assert_eq!(code, 400);
    let (code, body) = get("/v1/artifacts?domain=lab-c");
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    let (code, body) = get("/v1/find?label=kind=sample&domain=lab-a");
    assert_eq!(code, 200);
    let hits = common::server::json(&body)["hits"].clone();
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["subject"], x.as_str());
}
