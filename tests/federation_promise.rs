//! Cross-domain references without copying: `aslctl fetch --lazy` records
//! what another domain publishes as promised, `ls` shows those entries as
//! such, and reading one — `cat` by id prefix, `ls-tree`, `checkout`, a PEL
//! input — fetches it then, verified, from the remote that promised it.

use std::path::Path;

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, noise, stderr_of as err};

fn promised(store: &Path) -> Vec<String> {
    common::aslctl_lines(store, &["ls"])
        .iter()
        .filter(|e| e["visibility"] == "promised")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn promised_artifacts_are_listed_and_fetched_when_first_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("one.txt"), noise(1, 3000)).unwrap();
    std::fs::write(src.join("sub/two.txt"), noise(2, 4000)).unwrap();
    let tree = common::ingest_tree(&a, &src);
    let big = tmp.path().join("big.bin");
    let big_bytes = noise(3, 9 << 20);
    std::fs::write(&big, &big_bytes).unwrap();
    let big_id = common::ingest_file(&a, &big);
    let gone = tmp.path().join("gone.txt");
    std::fs::write(&gone, b"published, then not").unwrap();
    let gone_id = common::ingest_file(&a, &gone);
    ok(&a, &["publish", "--tree", &tree, &big_id, &gone_id]);

    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    let r = json(&b, &["fetch", "a", "--lazy"]);
    assert_eq!(
        (r["fetched"].as_u64(), r["promised"].as_u64()),
        (Some(0), Some(6)),
        "{r}"
    );
    // A federated snapshot names the promises, and verifies them offline:
    // each is listed by its domain's signed manifest, so fetchable.
    ok(&b, &["snapshot", "create", "lazy", "--federated"]);
    let v = json(&b, &["snapshot", "verify", "lazy"]);
    assert_eq!(
        (v["promised"].as_u64(), v["problems"].as_array().unwrap().len()),
        (Some(6), 0),
        "{v}"
    );
    let p = promised(&b);
    assert_eq!(p.len(), 6);
    assert!(p.contains(&big_id) && p.contains(&tree));
    assert!(ok(&b, &["ls"]).contains(&format!("{big_id} promised by a")));
    assert_eq!(json(&b, &["origin", &big_id])["origin"], "promised");
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));

    // cat by a prefix: fetched (chunk-verified: it is large), then local.
    let got = aslctl(&b, &["cat", &big_id[..12]]);
    assert!(got.status.success(), "{}", err(&got));
    assert!(got.stdout == big_bytes);
    assert!(!promised(&b).contains(&big_id));
    // Once fetched it says where it came from: the domain, the remote, the
    // manifest that listed it.
    let o = json(&b, &["origin", &big_id]);
    assert_eq!(
        (o["origin"].as_str(), o["remote"].as_str()),
        (Some("imported"), Some("a")),
        "{o}"
    );
    assert_eq!(o["domain"], json(&a, &["domain", "show"])["id"]);
    assert_eq!(o["manifest"], json(&a, &["domain", "manifest"])["manifest"]);
    let info = common::ndjson(&ok(&b, &["--json", "ls"]));
    let entry = info.iter().find(|e| e["id"] == big_id.as_str()).unwrap();
    assert_eq!(entry["len"].as_u64(), Some(big_bytes.len() as u64));

    // ls-tree reads the trees (fetching them), not the files.
    let listing = ok(&b, &["ls-tree", "-r", &tree]);
    assert!(
        listing.contains("one.txt") && listing.contains("sub/two.txt"),
        "{listing}"
    );
    assert_eq!(promised(&b).len(), 3, "the two files and gone.txt are still promised");
    // checkout reads every file.
    let out = tmp.path().join("out");
    ok(&b, &["checkout", &tree, out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("sub/two.txt")).unwrap(), noise(2, 4000));
    assert_eq!(promised(&b), vec![gone_id.clone()]);

    // What the domain no longer publishes cannot be read: an error,
    // nothing stored, still promised.
    ok(&a, &["unpublish", &gone_id]);
    let o = aslctl(&b, &["cat", &gone_id]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no longer serves it"), "{}", err(&o));
    assert_eq!(promised(&b), vec![gone_id.clone()]);
    // A fetch settles the promises with the new manifest.
    ok(&b, &["fetch", "a"]);
    assert!(promised(&b).is_empty());
    let o = aslctl(&b, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn a_pel_run_fetches_its_promised_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let f = tmp.path().join("words.txt");
    std::fs::write(&f, "plum\nfig\nplum\n").unwrap();
    let id = common::ingest_file(&a, &f);
    ok(&a, &["publish", &id]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&b, &["fetch", "a", "--lazy"]);
    assert_eq!(promised(&b), vec![id.clone()]);
    let prog = tmp.path().join("p.yaml");
    std::fs::write(
        &prog,
        format!(
            "name: sort\nnodes:\n  sorted:\n    op: exec\n    inputs: {{words.txt: \"b3:{id}\"}}\n    params:\n      cmd: sort -u words.txt > s.txt\n      outputs: [s.txt]\n"
        ),
    )
    .unwrap();
    let r = json(&b, &["pel", "run", prog.to_str().unwrap()]);
    assert_eq!(r["outcome"], "OK", "{r}");
    let out = r["nodes"][0]["outputs"]["s.txt"].as_str().unwrap().to_string();
    assert_eq!(ok(&b, &["cat", &out]), "fig\nplum\n");
    assert!(promised(&b).is_empty());
}

/// An import record only annotates what a fetch brought or promised: once
/// it is gone (`rm --force`, or lost to damage and `repair`), listings and
/// origins still complete, without it.
#[test]
fn listings_go_on_once_an_import_record_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (f1, f2) = (tmp.path().join("f1"), tmp.path().join("f2"));
    std::fs::write(&f1, noise(11, 5000)).unwrap();
    std::fs::write(&f2, noise(12, 6000)).unwrap();
    let (x1, x2) = (common::ingest_file(&a, &f1), common::ingest_file(&a, &f2));
    ok(&a, &["publish", &x1]);
    ok(&b, &["remote", "add", "a", a.to_str().unwrap()]);
    ok(&b, &["fetch", "a"]);
    ok(&a, &["publish", &x2]);
    ok(&b, &["remote", "add", "lazy", a.to_str().unwrap()]);
    ok(&b, &["fetch", "lazy", "--lazy"]);
    assert_eq!(promised(&b), vec![x2.clone()]);
    let pins = ok(&b, &["pins"]);
    let imports: Vec<&str> = pins
        .lines()
        .filter(|l| l.contains("asl.import."))
        .map(|l| l.split_whitespace().find(|w| w.len() == 64).unwrap())
        .collect();
    assert_eq!(imports.len(), 2, "{pins}");
    for rid in &imports {
        ok(&b, &["rm", "--force", rid]);
    }
    for round in ["after rm", "after gc"] {
        let o = aslctl(&b, &["ls"]);
        assert!(o.status.success(), "{round}: {}", err(&o));
        let listing = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(listing.contains(&x1), "{round}: {listing}");
        assert!(
            !listing.contains("promised by"),
            "{round}: the promise went with its record: {listing}"
        );
        let o = json(&b, &["origin", &x1]);
        assert_eq!(o["origin"], "imported", "{round}: {o}");
        assert!(
            o.get("remote").is_none_or(|r| r.is_null()),
            "{round}: no import names it now: {o}"
        );
        let o = aslctl(&b, &["find", "--type", "asl/import"]);
        assert!(o.status.success(), "{round}: {}", err(&o));
        // A federated snapshot cannot name the source of x1: refused, and
        // no snapshot is left behind without its signed record.
        let o = aslctl(&b, &["snapshot", "create", "fed", "--federated"]);
        assert_eq!(o.status.code(), Some(2), "{round}: {}", err(&o));
        assert!(err(&o).contains("no import record"), "{round}: {}", err(&o));
        assert!(!ok(&b, &["snapshot", "list"]).contains("fed"), "{round}");
        ok(&b, &["gc"]);
    }
    // A new fetch records a new import: the origin is known again.
    ok(&b, &["fetch", "a"]);
    assert_eq!(json(&b, &["origin", &x1])["remote"], "a");
}
