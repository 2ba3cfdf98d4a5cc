//! Command blocks, lineage and working copies through the real `aslctl`:
//! `batch` (JSON and YAML), `lineage show|revert`, `worktree
//! add|status|commit|discard`, and bad blocks refused with nothing written.

use std::fs;
use std::path::Path;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

fn field(line: &str, n: usize) -> String {
    line.split_whitespace().nth(n).unwrap().to_string()
}

#[test]
fn a_yaml_block_applies_whole_and_leaves_one_lineage_step() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    fs::write(tmp.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    let old = ok(aslctl(
        &store,
        &["ingest", tmp.path().join("data.csv").to_str().unwrap()],
    ))[..64]
        .to_string();
    let block = tmp.path().join("block.yaml");
    fs::write(
        &block,
        format!(
            "# a comment, dropped\nops:\n  - {{op: put, file: data.csv, as: table}}\n  - {{op: put, text: \"summary: 2 rows\\n\", as: note}}\n  - op: label\n    target: note\n    labels: {{kind: summary, tool: mill}}\n    media_type: text/plain\n  - {{op: remove, id: \"{}\"}}\nlineage:\n  actor: ci\n  summary: import table and note\n  intent: nightly import\n  tests: {{passed: 3}}\n",
            &old[..12]
        ),
    )
    .unwrap();
    let text = ok(aslctl(&store, &["batch", block.to_str().unwrap()]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("put ") && lines[0].ends_with("  table"), "{text}");
    assert_eq!(field(lines[0], 1), old, "the same bytes are the same artifact");
    assert_eq!(lines[2], format!("removed {old}"));
    let note = field(lines[1], 1);
    let step = field(lines[4], 1);
    assert!(lines[4].starts_with("lineage "), "{text}");
    // The removal happened, the label is findable, the step lists it all.
    assert_eq!(aslctl(&store, &["cat", &old]).status.code(), Some(1));
    let found = ok(aslctl(&store, &["find", "--label", "kind=summary"]));
    assert!(found.starts_with(&note), "{found}");
    let shown = ok(aslctl(&store, &["--json", "lineage", "show", &step]));
    let v: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(v["actor"], "ci");
    assert_eq!(v["seq"], 0);
    assert_eq!(v["tests"]["passed"], 3);
    assert_eq!(v["changes"]["removed"][0], old);
    assert_eq!(
        v["changes"]["added"].as_array().unwrap().len(),
        1,
        "only the note is new"
    );
    // Keys come out sorted, so the export is stable text.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(shown, ok(aslctl(&store, &["--json", "lineage", "show", &step])));

    // A second block continues the chain.
    let next = tmp.path().join("next.json");
    fs::write(
        &next,
        format!(
            r#"{{"ops": [{{"op": "put", "hex": "00ff"}}], "lineage": {{"parent": "{}", "summary": "more"}}}}"#,
            &step[..16]
        ),
    )
    .unwrap();
    let text = ok(aslctl(&store, &["batch", next.to_str().unwrap()]));
    let step2 = field(text.lines().last().unwrap(), 1);
    let chain = ok(aslctl(&store, &["lineage", "show", &step2]));
    assert_eq!(chain.lines().count(), 2);
    assert!(chain.lines().next().unwrap().contains("seq 1"), "{chain}");
}

#[test]
fn bad_blocks_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    fs::write(tmp.path().join("x"), "x").unwrap();
    ok(aslctl(&store, &["ingest", tmp.path().join("x").to_str().unwrap()]));
    let before = ok(aslctl(&store, &["ls"]));
    let cases: Vec<(&str, &str, i32)> = vec![
        (
            r#"[{"op": "put", "text": "new"}, {"op": "remove", "id": "0000000000000000000000000000000000000000000000000000000000000000"}]"#,
            "not found",
            1,
        ),
        (
            r#"[{"op": "put", "text": "new"}, {"op": "put", "file": "missing.bin"}]"#,
            "missing.bin",
            2,
        ),
        (
            r#"[{"op": "put", "text": "new", "as": "n"}, {"op": "label", "target": "n", "labels": {"k": ""}}]"#,
            "empty value",
            2,
        ),
        (r#"[{"op": "explode"}]"#, "unknown op", 2),
        (r#"[{"op": "put", "text": "a", "file": "x"}]"#, "exactly one", 2),
        (
            r#"{"ops": [{"op": "put", "text": "a"}], "lineage": {"parent": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}}"#,
            "not found",
            1,
        ),
        (r#"{"ops": [], "surprise": 1}"#, "unknown key", 2),
        ("not json", "not JSON", 2),
    ];
    for (i, (doc, want, code)) in cases.into_iter().enumerate() {
        let f = tmp.path().join(format!("b{i}.json"));
        fs::write(&f, doc).unwrap();
        let o = aslctl(&store, &["batch", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(code), "{doc}: {}", err(&o));
        assert!(err(&o).contains(want), "{doc}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
    assert_eq!(ok(aslctl(&store, &["ls"])), before, "nothing was written");
}

fn write(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

#[test]
fn a_working_copy_commits_reverts_and_discards() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let src = tmp.path().join("src");
    write(&src, "a.txt", "alpha\n");
    write(&src, "sub/b.txt", "beta\n");
    write(&src, "sub/c.txt", "gamma\n");
    let text = ok(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    let tree0 = field(text.lines().last().unwrap(), 0);
    let wt = tmp.path().join("wt");
    let added = ok(aslctl(&store, &["worktree", "add", wt.to_str().unwrap(), &tree0]));
    let step0 = field(&added, 0);
    assert_eq!(field(&added, 1), tree0);
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");

    write(&wt, "a.txt", "alpha, edited\n");
    write(&wt, "sub/new.txt", "new\n");
    fs::remove_file(wt.join("sub/c.txt")).unwrap();
    let st = ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()]));
    assert_eq!(st, "M\ta.txt\nD\tsub/c.txt\nA\tsub/new.txt\n");

    let c = ok(aslctl(
        &store,
        &[
            "worktree",
            "commit",
            wt.to_str().unwrap(),
            "-m",
            "edit",
            "--actor",
            "me",
        ],
    ));
    let (step1, tree1) = (field(&c, 0), field(&c, 1));
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");
    let diff = ok(aslctl(&store, &["diff-tree", &tree0, &tree1]));
    assert_eq!(diff, "M\ta.txt\nD\tsub/c.txt\nA\tsub/new.txt\n");
    let chain = ok(aslctl(&store, &["lineage", "show", &step1]));
    assert_eq!(chain.lines().count(), 2);
    assert!(chain.lines().nth(1).unwrap().starts_with(&step0));
    // Nothing changed: nothing to commit.
    let o = aslctl(&store, &["worktree", "commit", wt.to_str().unwrap(), "-m", "again"]);
    assert!(o.status.success() && out(&o).is_empty(), "{}", err(&o));

    // Reverting the commit gives back the first tree, as a new step.
    let r = ok(aslctl(&store, &["lineage", "revert", &step1]));
    assert_eq!(field(&r, 1), tree0, "reverting the only change restores the tree");
    let chain = ok(aslctl(&store, &["lineage", "show", &field(&r, 0)]));
    assert_eq!(chain.lines().count(), 3, "history is kept, not rewritten");
    // The first step has no parent: nothing to revert to.
    let o = aslctl(&store, &["lineage", "revert", &step0]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    // Discard puts the directory back to its base tree.
    write(&wt, "a.txt", "scribble\n");
    write(&wt, "junk.txt", "junk\n");
    fs::remove_file(wt.join("sub/b.txt")).unwrap();
    assert!(aslctl(&store, &["worktree", "discard", wt.to_str().unwrap()])
        .status
        .success());
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");
    assert_eq!(fs::read_to_string(wt.join("a.txt")).unwrap(), "alpha, edited\n");
    assert_eq!(fs::read_to_string(wt.join("sub/b.txt")).unwrap(), "beta\n");
    assert!(!wt.join("junk.txt").exists());

    // A damaged state file is reported, not trusted.
    let state = wt.join(".asl-worktree");
    let mut b = fs::read(&state).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    fs::write(&state, b).unwrap();
    let o = aslctl(&store, &["worktree", "status", wt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("damaged"), "{}", err(&o));
}

#[test]
fn records_can_be_written_in_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let f = tmp.path().join("run.yaml");
    fs::write(
        &f,
        "# run of the mill\nrun_id: r-9\ncreated_at: \"2026-11-30T10:00:00Z\"\nmode: strict\ntool: mill\nstatus: BLOCKED\ndecision:\n  block_reason: too risky\n  score: 0.9\n",
    )
    .unwrap();
    let id = ok(aslctl(
        &store,
        &["record", "put", "--type", "asl/run", f.to_str().unwrap()],
    ));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(aslctl(&store, &["--json", "record", "show", id.trim()]))).unwrap();
    assert_eq!(shown["body"]["decision"]["block_reason"], "too risky");
    assert_eq!(shown["body"]["status"], "BLOCKED");
    let bad = tmp.path().join("bad.yaml");
    fs::write(&bad, "run_id: [unclosed\n").unwrap();
    let o = aslctl(&store, &["record", "put", "--type", "asl/run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("not YAML"), "{}", err(&o));
}

/// A working copy sees symbolic links and empty directories: a retargeted
/// link is modified, a new empty directory added; a commit keeps them (a
/// link as a link), a revert of it gives the old tree back, and discard
/// puts them back.
#[test]
fn a_working_copy_keeps_links_and_empty_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let src = tmp.path().join("src");
    write(&src, "a.txt", "alpha\n");
    fs::create_dir_all(src.join("keep")).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("l")).unwrap();
    let text = ok(aslctl(&store, &["ingest", "--tree", src.to_str().unwrap()]));
    let tree0 = field(text.lines().last().unwrap(), 0);
    let wt = tmp.path().join("wt");
    ok(aslctl(&store, &["worktree", "add", wt.to_str().unwrap(), &tree0]));
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");
    assert_eq!(fs::read_link(wt.join("l")).unwrap(), Path::new("a.txt"));
    assert!(wt.join("keep").is_dir());

    fs::remove_file(wt.join("l")).unwrap();
    std::os::unix::fs::symlink("elsewhere", wt.join("l")).unwrap();
    fs::create_dir(wt.join("new-empty")).unwrap();
    fs::remove_dir(wt.join("keep")).unwrap();
    let st = ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()]));
    assert_eq!(st, "D\tkeep\nM\tl\nA\tnew-empty\n");
    let c = ok(aslctl(
        &store,
        &["worktree", "commit", wt.to_str().unwrap(), "-m", "links"],
    ));
    let (step1, tree1) = (field(&c, 0), field(&c, 1));
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");
    let diff = ok(aslctl(&store, &["diff-tree", &tree0, &tree1]));
    assert_eq!(diff, "D\tkeep\nM\tl\nA\tnew-empty\n");
    let co = tmp.path().join("co");
    assert!(aslctl(&store, &["checkout", &tree1, co.to_str().unwrap()])
        .status
        .success());
    assert_eq!(fs::read_link(co.join("l")).unwrap(), Path::new("elsewhere"));
    assert!(co.join("new-empty").is_dir() && !co.join("keep").exists());
    let r = ok(aslctl(&store, &["lineage", "revert", &step1]));
    assert_eq!(field(&r, 1), tree0, "reverting gives the old tree, links and all");

    // Discard puts them back.
    fs::remove_file(wt.join("l")).unwrap();
    fs::remove_dir(wt.join("new-empty")).unwrap();
    fs::create_dir(wt.join("junk-dir")).unwrap();
    assert!(aslctl(&store, &["worktree", "discard", wt.to_str().unwrap()])
        .status
        .success());
    assert_eq!(ok(aslctl(&store, &["worktree", "status", wt.to_str().unwrap()])), "");
    assert_eq!(fs::read_link(wt.join("l")).unwrap(), Path::new("elsewhere"));
    assert!(wt.join("new-empty").is_dir() && !wt.join("junk-dir").exists());
}
