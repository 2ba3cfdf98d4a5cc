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
/// UTF-8, and what a tree leaves out: an empty directory and a symlink.
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
    assert_eq!(names, ["README", "caf\u{fffd}.txt", "empty", "run.sh", "src"]);
    assert!(out(&o).contains("exec "), "{}", out(&o));
    let o = aslctl(&store, &["--json", "ls-tree", "-r", &tid[..12]]);
    let rows: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let paths: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"src/deep/er/data.bin"), "{paths:?}");
    let src_row = rows.as_array().unwrap().iter().find(|r| r["path"] == "src").unwrap();
    assert_eq!(src_row["size"], 300_000 + 14, "a directory's size is its files'");

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
        !co.join("nothing").exists() && !co.join("link").exists(),
        "trees hold no empty dirs or links"
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
    let below: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&store, &["--json", "ls-tree", "-r", &tid]))).unwrap();
    let mut ids: Vec<String> = below
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
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
    assert_eq!(out(&o).lines().count(), below.as_array().unwrap().len());

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
