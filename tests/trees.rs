//! Trees: `ingest DIR` writes one per directory; `ls-tree`, `checkout` and
//! `diff-tree` read them back through the real `aslctl`, and the library
//! refuses malformed trees.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use asl::records::cbor::Value;
use asl::records::tree::{self, EntryKind, TreeEntry};
use asl::records::{self, Record};

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

/// A tree with nesting, an executable, an empty file, a name that is not
/// UTF-8, an empty directory and a symbolic link.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("src/deep/er")).unwrap();
    fs::write(root.join("README"), b"read me\n").unwrap();
    fs::write(root.join("src/lib.rs"), b"pub fn f() {}\n").unwrap();
    fs::write(root.join("src/deep/er/data.bin"), vec![7u8; 300_000]).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin-1 name\n").unwrap();
    fs::create_dir(root.join("nothing")).unwrap();
    std::os::unix::fs::symlink("README", root.join("link")).unwrap();
}

#[test]
fn ingest_checkout_round_trips_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, store) = (tmp.path().join("src"), tmp.path().join("store"));
    make_tree(&src);
    let o = aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let last = text.lines().last().unwrap();
    let (tid, shown) = last.split_once("  ").unwrap();
    assert_eq!(shown, format!("{}/", src.display()));
    // The b3sum lines are unchanged: one per file, nothing else before.
    assert_eq!(text.lines().count(), 6 + 1);

    let o = aslctl(&store, &["ls-tree", tid]);
    let names: Vec<String> = out(&o)
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["README", "caf\u{fffd}.txt", "empty", "link", "nothing", "run.sh", "src"]
    );
    assert!(out(&o).contains("link "), "{}", out(&o));
    assert!(out(&o).contains("exec "), "{}", out(&o));
    let o = aslctl(&store, &["--json", "ls-tree", "-r", &tid[..12]]);
    let rows = common::ndjson(&out(&o));
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"src/deep/er/data.bin"), "{paths:?}");
    let src_row = rows.iter().find(|r| r["path"] == "src").unwrap();
    assert_eq!(src_row["len"], 300_000 + 14, "a directory's length is its files'");

    let co = tmp.path().join("co");
    let o = aslctl(&store, &["checkout", tid, co.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    for rel in ["README", "src/lib.rs", "src/deep/er/data.bin", "empty", "run.sh"] {
        assert_eq!(
            fs::read(co.join(rel)).unwrap(),
            fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let odd = OsStr::from_bytes(b"caf\xe9.txt");
    assert_eq!(fs::read(co.join(odd)).unwrap(), b"latin-1 name\n");
    assert_ne!(fs::metadata(co.join("run.sh")).unwrap().permissions().mode() & 0o111, 0);
    assert_eq!(fs::metadata(co.join("README")).unwrap().permissions().mode() & 0o111, 0);
    assert!(
        fs::read_dir(co.join("nothing")).unwrap().next().is_none(),
        "the empty directory"
    );
    assert_eq!(
        fs::read_link(co.join("link")).unwrap(),
        Path::new("README"),
        "a link, not a copy"
    );

    // A second checkout into the same place is refused, then allowed.
    let o = aslctl(&store, &["checkout", tid, co.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("not empty"), "{}", err(&o));
    fs::write(co.join("README"), b"changed").unwrap();
    let o = aslctl(&store, &["checkout", "--force", tid, co.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(fs::read(co.join("README")).unwrap(), b"read me\n");

    // Ingesting the checkout gives the same tree.
    let o = aslctl(&store, &["ingest", "--tree", co.to_str().unwrap()]);
    assert!(out(&o).lines().last().unwrap().starts_with(tid), "{}", out(&o));

    // Not a tree: exit 2 with one line.
    let file_id = out(&aslctl(&store, &["ingest", src.join("README").to_str().unwrap()]))[..64].to_string();
    for cmd in ["ls-tree", "checkout"] {
        let mut args = vec![cmd, &file_id];
        let dst = tmp.path().join("x");
        if cmd == "checkout" {
            args.push(dst.to_str().unwrap());
        }
        let o = aslctl(&store, &args);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", err(&o));
        assert!(err(&o).contains("not a record"), "{}", err(&o));
    }
}

#[test]
fn diff_tree_names_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, store) = (tmp.path().join("src"), tmp.path().join("store"));
    make_tree(&src);
    let tree_of = |o: Output| out(&o).lines().last().unwrap()[..64].to_string();
    let a = tree_of(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    fs::write(src.join("src/lib.rs"), b"pub fn g() {}\n").unwrap();
    fs::remove_file(src.join("README")).unwrap();
    fs::write(src.join("src/deep/new.txt"), b"new\n").unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    let b = tree_of(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    let o = aslctl(&store, &["diff-tree", &a, &b]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "D\tREADME\nM\trun.sh\nA\tsrc/deep/new.txt\nM\tsrc/lib.rs\n");
    assert_eq!(out(&aslctl(&store, &["diff-tree", &a, &a])), "");
}

#[test]
fn malformed_trees_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = asl::StoreOptions::new().create(true).open(tmp.path()).unwrap();
    let id = store.put(b"x").unwrap();
    let e = |name: &[u8]| TreeEntry {
        name: name.to_vec(),
        kind: EntryKind::File,
        size: 1,
        id,
    };
    for bad in [
        vec![e(b"a"), e(b"a")],
        vec![e(b"..")],
        vec![e(b"a/b")],
        vec![e(b"")],
        vec![e(b"n\0ul")],
    ] {
        assert!(tree::tree_record(bad.clone()).is_err(), "{bad:?}");
    }
    // A hand-made tree record with its names out of order breaks the schema.
    let entry = |n: &[u8]| {
        Value::Array(vec![
            Value::Bytes(n.to_vec()),
            Value::text("f"),
            Value::Unsigned(1),
            Value::Bytes(id.as_bytes().to_vec()),
        ])
    };
    let body = Value::Map(vec![(
        Value::text("entries"),
        Value::Array(vec![entry(b"b"), entry(b"a")]),
    )]);
    let r = records::put(&store, &Record::new("asl/tree", 1, body));
    assert!(r.unwrap_err().to_string().contains("increasing"));
    let good = tree::tree_record(vec![e(b"b"), e(b"a")]).unwrap();
    let stored = records::put(&store, &good).unwrap();
    let back = tree::read_tree(&store, &stored.id).unwrap();
    assert_eq!(
        back.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
}

#[test]
fn a_snapshot_of_a_tree_keeps_that_directory_and_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, store) = (tmp.path().join("src"), tmp.path().join("store"));
    make_tree(&src);
    let other = tmp.path().join("other.txt");
    fs::write(&other, b"not in the tree\n").unwrap();
    let other_id = out(&aslctl(&store, &["ingest", other.to_str().unwrap()]))[..64].to_string();
    let o = aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]);
    let tid = out(&o).lines().last().unwrap()[..64].to_string();

    let o = aslctl(
        &store,
        &["--json", "snapshot", "create", "backup-1", "--tree", &tid[..16]],
    );
    assert!(o.status.success(), "{}", err(&o));
    let meta: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let below = common::ndjson(&out(&aslctl(&store, &["--json", "ls-tree", "-r", &tid])));
    let mut ids: Vec<String> = below.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.push(tid.clone());
    ids.sort();
    ids.dedup();
    assert_eq!(
        meta["artifacts"],
        ids.len(),
        "the tree, its subtrees and files, nothing else"
    );
    let listed = out(&aslctl(&store, &["ls", "--at", "backup-1"]));
    assert!(!listed.contains(&other_id), "{listed}");

    // Everything leaves CURRENT and GC runs: the snapshot still restores it.
    let mut args = vec!["rm"];
    args.extend(ids.iter().map(|s| s.as_str()));
    assert!(aslctl(&store, &args).status.success());
    assert!(aslctl(&store, &["gc", "--threshold", "1"]).status.success());
    let co = tmp.path().join("restored");
    let o = aslctl(&store, &["checkout", &tid, co.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "gone from CURRENT: {}", err(&o));
    let o = aslctl(&store, &["checkout", "--at", "backup-1", &tid, co.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(fs::read(co.join("src/deep/er/data.bin")).unwrap(), vec![7u8; 300_000]);
    let o = aslctl(&store, &["ls-tree", "--at", "backup-1", "-r", &tid]);
    assert_eq!(out(&o).lines().count(), below.len());

    // A tree that is not in CURRENT any more cannot be snapshotted.
    let o = aslctl(&store, &["snapshot", "create", "backup-2", "--tree", &tid]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!out(&aslctl(&store, &["snapshot", "list"])).contains("backup-2"));
}

#[test]
fn checkout_of_a_damaged_file_stops_without_writing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, store) = (tmp.path().join("src"), tmp.path().join("store"));
    fs::create_dir_all(&src).unwrap();
    // Large enough that the damage, near its end, is met after the first
    // verified pieces were written to the checkout's temporary file.
    let bytes = common::noise(11, 3 << 20);
    fs::write(src.join("a.bin"), &bytes).unwrap();
    let o = aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]);
    let tid = out(&o).lines().last().unwrap()[..64].to_string();
    let seg = fs::read_dir(store.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut raw = fs::read(&seg).unwrap();
    let mark = &bytes[(5 << 19)..(5 << 19) + 32];
    let at = raw.windows(32).position(|w| w == mark).unwrap();
    raw[at] ^= 0x40;
    fs::write(&seg, &raw).unwrap();
    let co = tmp.path().join("co");
    let o = aslctl(&store, &["checkout", &tid, co.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("corrupt"), "{}", err(&o));
    let left: Vec<_> = fs::read_dir(&co).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "no file, whole or partial, is left: {left:?}");
}

/// Every entry below `root` as `(path, what)`: a file's bytes and execute
/// bit, a link's target, or an empty directory; what a round trip must keep.
fn listing(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut empty = true;
        for e in fs::read_dir(&d).unwrap() {
            empty = false;
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_symlink() {
                out.push((rel, format!("link {}", fs::read_link(&p).unwrap().display())));
            } else if md.is_dir() {
                stack.push(p);
            } else {
                let x = md.permissions().mode() & 0o111 != 0;
                out.push((rel, format!("file x={x} {:?}", blake3::hash(&fs::read(&p).unwrap()))));
            }
        }
        if empty && d != root {
            out.push((
                d.strip_prefix(root).unwrap().to_string_lossy().to_string(),
                "empty dir".into(),
            ));
        }
    }
    out.sort();
    out
}

/// Links of every kind (relative, absolute, dangling, to a directory) and
/// empty directories (nested too) come back from a checkout as they went
/// in, never followed; a tree holding a link is version 2, one without
/// stays version 1; diff-tree names them.
#[test]
fn links_and_empty_directories_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, store) = (tmp.path().join("src"), tmp.path().join("store"));
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f.txt"), b"f\n").unwrap();
    let outside = tmp.path().join("outside.txt");
    fs::write(&outside, b"must not be read").unwrap();
    std::os::unix::fs::symlink("../d/f.txt", src.join("a/rel")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("abs")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x", src.join("dangling")).unwrap();
    std::os::unix::fs::symlink("d", src.join("to-dir")).unwrap();
    let tree_of = |o: Output| {
        assert!(o.status.success(), "{}", err(&o));
        out(&o).lines().last().unwrap()[..64].to_string()
    };
    let t = tree_of(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    let rec = common::aslctl_json(&store, &["record", "show", &t]);
    assert_eq!(rec["version"], 2, "{rec}");
    // The outside file was never read: no artifact holds its bytes.
    let outside_id = blake3::hash(b"must not be read").to_hex().to_string();
    assert!(!out(&aslctl(&store, &["ls"])).contains(&outside_id));
    let co = tmp.path().join("co");
    let o = aslctl(&store, &["checkout", &t, co.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(listing(&co), listing(&src));
    assert_eq!(tree_of(aslctl(&store, &["ingest", "--tree", co.to_str().unwrap()])), t);
    // Only files: version 1, as before links were kept.
    let v1 = tree_of(aslctl(&store, &["ingest", "--tree", src.join("d").to_str().unwrap()]));
    assert_eq!(common::aslctl_json(&store, &["record", "show", &v1])["version"], 1);

    // A link retargeted and an empty directory made: both are changes.
    fs::remove_file(src.join("a/rel")).unwrap();
    std::os::unix::fs::symlink("../d", src.join("a/rel")).unwrap();
    fs::create_dir(src.join("d/new-empty")).unwrap();
    fs::remove_dir(src.join("a/b/c")).unwrap();
    let t2 = tree_of(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    let o = aslctl(&store, &["diff-tree", &t, &t2]);
    assert!(o.status.success(), "{}", err(&o));
    // a/b stays (empty now): only c went.
    assert_eq!(out(&o), "D\ta/b/c\nM\ta/rel\nA\td/new-empty\n");
}

/// A tree written before links and empty directories were kept (version
/// 1, tests/fixtures/trees-v1) still lists and checks out; the same
/// directory ingested now is a version 2 tree, and diff-tree says what the
/// old one lacked.
#[test]
fn a_version_1_tree_from_an_older_store_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    common::copy_dir(Path::new("tests/fixtures/trees-v1"), &store);
    let old = "c1e25acf431193ae698400fb7966369589658179ec562d5d2be7c5f4c1614cb4";
    assert_eq!(common::aslctl_json(&store, &["record", "show", old])["version"], 1);
    let o = aslctl(&store, &["ls-tree", "-r", old]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("\tsub/run.sh") && !out(&o).contains("link"),
        "{}",
        out(&o)
    );
    let co = tmp.path().join("co");
    assert!(aslctl(&store, &["checkout", old, co.to_str().unwrap()])
        .status
        .success());
    assert_eq!(fs::read(co.join("a.txt")).unwrap(), b"alpha\n");
    // The directory it was made from, as it was.
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("sub/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/link-to-a")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    let o = aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let new = out(&o).lines().last().unwrap()[..64].to_string();
    let o = aslctl(&store, &["diff-tree", old, &new]);
    assert_eq!(out(&o), "A\tdangling\nA\tempty\nA\tsub/link-to-a\n", "{}", err(&o));
    let o = aslctl(&store, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
}
