//! Trust across domains through the real `aslctl`: manifests accepted only
//! with the co-signatures a remote's policy asks for (k of n keys, from a
//! directory and over HTTP, one manifest at a time), and PEL receipts
//! fetched from another domain answering the action cache only when the
//! store's trust policy (`pel trust`) counts enough of their signers. And
//! no path by which one domain receives anything from another carries the
//! id of an internal artifact.

use std::path::Path;

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, noise, stderr_of as err};

fn ids(store: &Path) -> Vec<String> {
    ok(store, &["ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn ingest(store: &Path, file: &Path, bytes: &[u8]) -> String {
    std::fs::write(file, bytes).unwrap();
    common::ingest_file(store, file)
}

/// A fetch refused by the policy: exit 2, the reason, nothing stored.
fn refused(store: &Path, remote: &str, why: &str) {
    let before = ids(store);
    let o = aslctl(store, &["fetch", remote]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains(why), "{}", err(&o));
    assert_eq!(ids(store), before, "nothing stored");
}

#[test]
fn manifests_need_the_cosignatures_the_policy_asks_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let x0 = ingest(&a, &tmp.path().join("x0"), &noise(1, 5000));
    let x1 = ingest(&a, &tmp.path().join("x1"), &noise(2, 7000));
    ok(&a, &["publish", &x0]);
    let (k1, k2) = (tmp.path().join("release.key"), tmp.path().join("stranger.key"));
    let trusted = ok(&a, &["domain", "keygen", k1.to_str().unwrap()]).trim().to_string();
    ok(&a, &["domain", "keygen", k2.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&k1)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );
    let o = aslctl(&a, &["domain", "keygen", k1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a key file is never overwritten");

    // A policy no manifest could meet is refused when it is set.
    let o = aslctl(
        &b,
        &[
            "remote",
            "add",
            "a",
            a.to_str().unwrap(),
            "--cosigner",
            &trusted,
            "--threshold",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("cannot be met"), "{}", err(&o));

    ok(
        &b,
        &[
            "remote",
            "add",
            "a",
            a.to_str().unwrap(),
            "--cosigner",
            &trusted,
            "--threshold",
            "2",
        ],
    );
    refused(&b, "a", "signed by 1 of the 2 keys");
    // A co-signature by a key the policy does not name does not count.
    ok(&a, &["domain", "cosign", "--key", k2.to_str().unwrap()]);
    refused(&b, "a", "signed by 1 of the 2 keys");
    ok(&a, &["domain", "cosign", "--key", k1.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!((r["seq"].as_u64(), r["fetched"].as_u64()), (Some(1), Some(1)), "{r}");
    assert!(ids(&b).contains(&x0));

    // Over HTTP the co-signatures come with the publication.
    let serve_dir = tempfile::tempdir().unwrap();
    let s = common::server::start_on(
        serve_dir,
        a.clone(),
        &[],
        Some(
            r#"{"tokens": [{"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#,
        ),
    );
    let c = tmp.path().join("c");
    ok(
        &c,
        &[
            "remote",
            "add",
            "a",
            &s.url,
            "--token",
            "peer-token-0123456789",
            "--cosigner",
            &trusted,
            "--threshold",
            "2",
        ],
    );
    let r = json(&c, &["fetch", "a"]);
    assert_eq!(r["fetched"], 1, "{r}");
    drop(s);

    // A co-signature is for one manifest: the next one needs its own.
    ok(&a, &["publish", &x1]);
    refused(&b, "a", "signed by 1 of the 2 keys");
    assert!(!ids(&b).contains(&x1));
    ok(&a, &["domain", "cosign", "--key", k1.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a"]);
    assert_eq!((r["seq"].as_u64(), r["fetched"].as_u64()), (Some(2), Some(1)), "{r}");

    // Lowering the policy is the consumer's decision, and is kept.
    ok(&b, &["remote", "trust", "a", "--threshold", "1"]);
    ok(&a, &["unpublish", &x1]);
    assert_eq!(json(&b, &["fetch", "a"])["seq"], 3);
    assert_eq!(common::aslctl_lines(&b, &["remote", "list"])[0]["threshold"], 1);
}

const PIPELINE: &str = r#"name: words
nodes:
  sorted:
    op: exec
    inputs: {words.txt: "file:WORDS"}
    params:
      cmd: sort -u words.txt > sorted.txt
      outputs: [sorted.txt]
  packed:
    op: zstd.compress
    inputs: ["@sorted"]
    params: {level: 19}
"#;

/// How many nodes a run executed, and the reasons receipts were passed over.
fn run(store: &Path, prog: &Path) -> (usize, Vec<String>) {
    let r = json(store, &["pel", "run", prog.to_str().unwrap()]);
    assert_eq!(r["outcome"], "OK", "{r}");
    let rejected = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| {
            n["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
        })
        .collect();
    (r["executed"].as_array().unwrap().len(), rejected)
}

#[test]
fn receipts_from_another_domain_answer_the_cache_only_under_the_trust_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let words = tmp.path().join("words.txt");
    std::fs::write(&words, "pear\napple\nfig\napple\n").unwrap();
    let prog = tmp.path().join("words.yaml");
    std::fs::write(&prog, PIPELINE.replace("WORDS", words.to_str().unwrap())).unwrap();

    // The builder runs the pipeline and publishes its receipts; without
    // --closure that is refused, since a receipt names its internal inputs.
    let builder = tmp.path().join("builder");
    let r = json(&builder, &["pel", "run", prog.to_str().unwrap()]);
    let receipts: Vec<String> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["receipt"].as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["publish"];
    args.extend(receipts.iter().map(String::as_str));
    let o = aslctl(&builder, &args);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("names internal artifact"), "{}", err(&o));
    args.push("--closure");
    ok(&builder, &args);
    let builder_key = ok(&builder, &["pel", "key"]).trim().to_string();

    let consumer = |name: &str, trust: &[(&str, &str)], threshold: usize, remotes: &[&Path]| {
        let d = tmp.path().join(name);
        for (i, r) in remotes.iter().enumerate() {
            let n = format!("r{i}");
            ok(&d, &["remote", "add", &n, r.to_str().unwrap()]);
            ok(&d, &["fetch", &n]);
        }
        for (n, k) in trust {
            ok(&d, &["pel", "trust", "add", k, "--name", n]);
        }
        ok(&d, &["pel", "trust", "threshold", &threshold.to_string()]);
        d
    };

    // Fetched but not trusted: every node runs, and says why.
    let untrusting = consumer("untrusting", &[], 1, &[&builder]);
    let (executed, rejected) = run(&untrusting, &prog);
    assert_eq!(executed, 2, "{rejected:?}");
    assert!(rejected.iter().any(|r| r.contains(&builder_key)), "{rejected:?}");

    // The builder's key trusted: the imported receipts answer.
    let trusting = consumer("trusting", &[("builder", &builder_key)], 1, &[&builder]);
    assert_eq!(run(&trusting, &prog).0, 0);

    // Two of two: the builder's word alone is not enough...
    let rebuilder = tmp.path().join("rebuilder");
    ok(&rebuilder, &["remote", "add", "b", builder.to_str().unwrap()]);
    let rebuilder_key = ok(&rebuilder, &["pel", "key"]).trim().to_string();
    let both = [("builder", builder_key.as_str()), ("rebuilder", rebuilder_key.as_str())];
    let strict = consumer("strict", &both, 2, &[&builder]);
    let (executed, rejected) = run(&strict, &prog);
    assert_eq!(executed, 2, "{rejected:?}");
    assert!(rejected.iter().any(|r| r.contains("2 trusted key(s)")), "{rejected:?}");

    // ...until an independent rebuilder, having fetched the receipts and
    // checked them, signs and publishes them too.
    ok(&rebuilder, &["fetch", "b"]);
    let mut sigs: Vec<String> = Vec::new();
    for rid in &receipts {
        let sig = ok(&rebuilder, &["pel", "sign", rid]).trim().to_string();
        sigs.push(sig);
    }
    let mut args = vec!["publish", "--closure"];
    args.extend(sigs.iter().map(String::as_str));
    ok(&rebuilder, &args);
    let strict2 = consumer("strict2", &both, 2, &[&builder, &rebuilder]);
    assert_eq!(run(&strict2, &prog).0, 0);
}

/// Everything another domain can receive from this one — every artifact a
/// fetch stores, and every answer `aslctl serve` gives a published-only
/// token on its read paths — is scanned for the id (32 bytes, or hex) of
/// every internal artifact: none appears. The domain holds what could leak
/// one: a tree with an internal entry, PEL receipts whose inputs and logs
/// are internal, labels, a run record, signed batches.
#[test]
fn no_internal_id_reaches_another_domain_by_any_path() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let words = tmp.path().join("words.txt");
    std::fs::write(&words, "kiwi\nlime\nkiwi\n").unwrap();
    let prog = tmp.path().join("words.yaml");
    std::fs::write(&prog, PIPELINE.replace("WORDS", words.to_str().unwrap())).unwrap();
    let r = json(&a, &["pel", "run", prog.to_str().unwrap()]);
    let receipts: Vec<String> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["receipt"].as_str().unwrap().to_string())
        .collect();
    let out = r["nodes"][1]["outputs"]["out"].as_str().unwrap().to_string();
    let tree_dir = tmp.path().join("tree");
    std::fs::create_dir_all(tree_dir.join("secret")).unwrap();
    std::fs::write(tree_dir.join("open.txt"), noise(3, 2000)).unwrap();
    std::fs::write(tree_dir.join("secret/plan.txt"), noise(4, 3000)).unwrap();
    let whole = common::ingest_tree(&a, &tree_dir);
    std::fs::remove_dir_all(tree_dir.join("secret")).unwrap();
    let open = common::ingest_tree(&a, &tree_dir);
    ok(&a, &["label", &out, "team=fruit"]);
    ok(&a, &["label", &whole, "team=fruit"]);

    // The whole tree names an internal file: refused, nothing published.
    let o = aslctl(&a, &["publish", &whole]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("names internal artifact"), "{}", err(&o));
    let mut args = vec!["publish", "--closure", "--tree", &open, &out];
    args.extend(receipts.iter().map(String::as_str));
    ok(&a, &args);
    let internal: Vec<String> = common::aslctl_lines(&a, &["ls"])
        .iter()
        .filter(|e| e["visibility"] == "internal")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(internal.contains(&whole) && internal.len() > 5, "{internal:?}");
    let no_internal_in = |what: &str, bytes: &[u8]| {
        for id in &internal {
            let raw: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            assert!(
                !bytes.windows(32).any(|w| w == raw.as_slice()),
                "{what} holds internal id {id} (bytes)"
            );
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains(id.as_str()), "{what} holds internal id {id} (hex)");
        }
    };

    // A fetch: every artifact it stored.
    let b = tmp.path().join("b");
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&b, &["fetch", "a"]);
    let got: Vec<String> = common::aslctl_lines(&b, &["ls"])
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(got.contains(&out) && got.contains(&open));
    for id in &got {
        let o = aslctl(&b, &["cat", id]);
        assert!(o.status.success());
        no_internal_in(&format!("fetched artifact {id}"), &o.stdout);
    }

    // Over HTTP, a published-only token on every read path.
    let serve_dir = tempfile::tempdir().unwrap();
    let s = common::server::start_on(
        serve_dir,
        a.clone(),
        &[],
        Some(
            r#"{"tokens": [{"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#,
        ),
    );
    let auth = "Authorization: Bearer peer-token-0123456789";
    let mut paths = vec![
        "/v1/artifacts".to_string(),
        "/v1/publication".to_string(),
        "/v1/snapshots".to_string(),
        "/v1/find?label=team=fruit".to_string(),
        "/v1/find?type=asl/pel-receipt".to_string(),
        "/v1/find?type=asl/signature".to_string(),
        format!("/v1/lineage/{out}"),
        format!("/v1/lineage/{out}?descendants=true"),
        format!("/v1/records/{open}"),
    ];
    for rid in &receipts {
        paths.push(format!("/v1/records/{rid}"));
        paths.push(format!("/v1/lineage/{rid}?descendants=true"));
    }
    for id in &got {
        paths.push(format!("/v1/artifacts/{id}"));
    }
    for p in &paths {
        let (code, body) = common::server::curl(&["-H", auth, &format!("{}{p}", s.url)]);
        assert!(code == 200 || code == 404, "{p}: {code}");
        no_internal_in(p, &body);
    }
    // The missing check answers an internal id as missing, like an absent one.
    let body = format!(r#"{{"ids": ["{}", "{}"]}}"#, whole, "0".repeat(64));
    let (code, resp) = common::server::curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("{}/v1/artifacts:missing", s.url),
    ]);
    assert_eq!(code, 200);
    let v = common::server::json(&resp);
    assert_eq!(v["missing"].as_array().unwrap().len(), 2, "{v}");
}
