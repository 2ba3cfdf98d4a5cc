//! Cross-domain references without copying: `aslctl fetch --lazy` records
//! what another domain publishes as promised, `ls` shows those entries as
//! such, and reading one — `cat` by id prefix, `ls-tree`, `checkout`, a PEL
//! input — fetches it then, verified, from the remote that promised it.

use std::path::Path;

mod common;
use common::{aslctl, aslctl_json as json, aslctl_ok as ok, noise, stderr_of as err};

fn promised(store: &Path) -> Vec<String> {
    json(store, &["ls"])
        .as_array()
        .unwrap()
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
    let info = json(&b, &["ls"]);
    let entry = info
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == big_id.as_str())
        .unwrap();
    assert_eq!(entry["size"].as_u64(), Some(big_bytes.len() as u64));

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
