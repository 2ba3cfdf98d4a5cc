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
