//! `--json` as an interface: every command that prints JSON is run here (or,
//! for those that need an S3 server, HDF5 or ZFS, in their own test through
//! `common::check_json`), and what it prints is checked against its schema
//! in `spec/cli/` by Python's `jsonschema`, an independent validator. Every
//! command of the CLI has a schema or refuses `--json`, and every schema is
//! exercised by some test; a failed command's error is JSON too.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{aslctl_bin, stderr_of, stdout_of};

/// Commands whose output is data of its own kind: they refuse `--json`.
const WITHOUT_JSON: &[&str] = &["cat", "get", "completions", "man", "serve", "export-rvls"];

/// Runs commands in one directory on one store, keeping each `--json`
/// output beside the schema it must meet.
struct Session {
    dir: PathBuf,
    store: PathBuf,
    cases: Vec<serde_json::Value>,
}

impl Session {
    fn run(&self, store: &Path, args: &[&str]) -> std::process::Output {
        Command::new(aslctl_bin())
            .arg("--store")
            .arg(store)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// `aslctl --json ARGS`, which must succeed; its output is checked
    /// against `schema` and returned.
    fn json(&mut self, schema: &str, args: &[&str]) -> String {
        let store = self.store.clone();
        self.json_in(&store, schema, args)
    }

    fn json_in(&mut self, store: &Path, schema: &str, args: &[&str]) -> String {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(store, &a);
        assert!(o.status.success(), "{args:?}: {}", stderr_of(&o));
        let out = stdout_of(&o);
        self.cases
            .push(serde_json::json!({"schema": schema, "output": out, "what": args.join(" ")}));
        out
    }

    /// A field of the first line of a `--json` output.
    fn field(out: &str, key: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_string()
    }
}

#[test]
fn every_json_output_meets_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Session {
        dir: tmp.path().to_path_buf(),
        store: tmp.path().join("s"),
        cases: Vec::new(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::copy_dir(&root.join("examples"), &tmp.path().join("examples"));
    let d = tmp.path().join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), "hello\n").unwrap();
    fs::write(d.join("sub/b.txt"), "world\n").unwrap();
    fs::write(tmp.path().join("c.txt"), "more\n").unwrap();

    s.json("init", &["init"]);
    let ingest = s.json("ingest", &["ingest", "--sha256", "d", "c.txt"]);
    let tree = serde_json::from_str::<serde_json::Value>(&ingest).unwrap()["trees"][0]["tree"]
        .as_str()
        .unwrap()
        .to_string();
    let c = serde_json::from_str::<serde_json::Value>(&ingest).unwrap()["files"][2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json("ls", &["ls"]);
    s.json("stat", &["stat"]);
    let sealed = s.json("seal", &["seal"]);
    assert!(sealed.contains("\"segment\":1"), "{sealed}");
    assert_eq!(s.json("seal", &["seal"]).trim(), r#"{"sealed":null}"#, "nothing open");
    s.json("snapshot-create", &["snapshot", "create", "one"]);
    fs::write(tmp.path().join("e.txt"), "extra\n").unwrap();
    s.json("ingest", &["ingest", "e.txt"]);
    s.json("snapshot-create", &["snapshot", "create", "two"]);
    let list = s.json("snapshot-list", &["snapshot", "list"]);
    assert_eq!(list.lines().count(), 2, "NDJSON: one snapshot per line");
    s.json("snapshot-show", &["snapshot", "show", "one"]);
    s.json("snapshot-diff", &["snapshot", "diff", "one", "two"]);
    s.json(
        "snapshot-prune",
        &["snapshot", "prune", "--keep-last", "1", "--dry-run"],
    );
    s.json("ls-tree", &["ls-tree", "-r", &tree]);
    s.json("diff-tree", &["diff-tree", &tree, &tree]);
    s.json("checkout", &["checkout", &tree, "out"]);
    let label = s.json("label", &["label", &c, "team=x", "--media-type", "text/plain"]);
    s.json("labels", &["labels", &c]);
    s.json("find", &["find", "--label", "team=x"]);
    s.json("ephemeral", &["ephemeral", &c, "--until", "2099-01-01"]);
    s.json("pin", &["pin", "keep", &c]);
    s.json("pins", &["pins"]);
    s.json("unpin", &["unpin", "keep"]);
    s.json("gc", &["gc", "--dry-run"]);
    s.json("gc", &["gc"]);
    s.json("verify", &["verify"]);
    s.json("reindex", &["reindex"]);
    s.json("types", &["types"]);
    fs::write(
        tmp.path().join("ann.json"),
        format!(r#"{{"subject": "{c}", "labels": {{"k": "v"}}}}"#),
    )
    .unwrap();
    let rec = s.json("record-put", &["record", "put", "--type", "asl/annotation", "ann.json"]);
    let rec = Session::field(&rec, "id");
    s.json("record-show", &["record", "show", &rec]);
    s.json("record-show", &["record", "show", &Session::field(&label, "id")]);
    s.json("schema-add", &["schema", "add", "examples/schemas/logging_base.yaml"]);
    s.json("schema-list", &["schema", "list"]);
    s.json("schema-show", &["schema", "show", "oasm/logging_base"]);

    // PEL: a run, its record, a receipt, a replay, provenance, keys.
    let run = s.json("pel-run", &["pel", "run", "examples/pel/words.yaml"]);
    let run = Session::field(&run, "run");
    let shown = s.json("pel-show", &["pel", "show", &run]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let receipt = v["nodes"][0]["receipt"].as_str().unwrap().to_string();
    s.json("pel-receipt", &["pel", "receipt", &receipt]);
    s.json("pel-replay", &["pel", "replay", &run]);
    let att = s.json("pel-attest", &["pel", "attest", &run]);
    fs::write(tmp.path().join("att.json"), att).unwrap();
    s.json("pel-verify-attestation", &["pel", "verify-attestation", "att.json"]);
    s.json("pel-attest", &["pel", "attest", "--prov", &run]);
    let key = Session::field(&s.json("pel-key", &["pel", "key"]), "key");
    s.json("pel-sign", &["pel", "sign", &rec]);
    s.json("pel-trust-ls", &["pel", "trust", "ls"]);
    s.json("pel-trust-add", &["pel", "trust", "add", &key, "--name", "me"]);
    s.json("pel-trust-threshold", &["pel", "trust", "threshold", "1"]);
    s.json("pel-trust-rm", &["pel", "trust", "rm", "me"]);
    let words_id = stdout_of(&s.run(&s.store, &["ingest", "examples/pel/words.txt"]))[..64].to_string();
    s.json("lineage", &["lineage", &words_id]);
    s.json("convert-list", &["convert", "--list"]);

    // Working copies and lineage chains.
    s.json("worktree-add", &["worktree", "add", "wt", &tree]);
    fs::write(tmp.path().join("wt/c"), "c\n").unwrap();
    s.json("worktree-status", &["worktree", "status", "wt"]);
    let step = Session::field(
        &s.json("worktree-commit", &["worktree", "commit", "wt", "-m", "add c"]),
        "lineage",
    );
    let same = s.json("worktree-commit", &["worktree", "commit", "wt", "-m", "nothing"]);
    assert!(same.contains("\"lineage\":null"), "{same}");
    fs::write(tmp.path().join("wt/a.txt"), "changed\n").unwrap();
    s.json("worktree-discard", &["worktree", "discard", "wt"]);
    s.json("lineage-show", &["lineage", "show", &step]);
    s.json("lineage-revert", &["lineage", "revert", &step]);
    fs::write(
        tmp.path().join("b.json"),
        r#"{"ops":[{"op":"put","text":"hi","as":"x"},{"op":"label","target":"x","labels":{"k":"v"}}]}"#,
    )
    .unwrap();
    s.json("batch", &["batch", "b.json"]);
    fs::write(
        tmp.path().join("l.rvls"),
        "RVLS\n{\"type\":\"ewc\",\"data\":{\"tasks_learned\":2,\"protection_strength\":1000.0,\"task_weights\":{\"t\":[0.1]}}}\nREND",
    )
    .unwrap();
    s.json("import-rvls", &["import", "rvls", "l.rvls"]);

    // Federation: a domain publishing, a second store fetching from it.
    s.json("domain-init", &["domain", "init", "--name", "demo"]);
    s.json("domain-show", &["domain", "show"]);
    s.json("publish", &["publish", &c]);
    s.json("unpublish", &["unpublish", &c]);
    s.json("publish", &["publish", &c, &words_id]);
    s.json("domain-manifest", &["domain", "manifest"]);
    s.json("domain-keygen", &["domain", "keygen", "co.key"]);
    s.json("domain-cosign", &["domain", "cosign", "--key", "co.key"]);
    s.json("origin", &["origin", &c]);
    let other = tmp.path().join("o");
    let up = s.store.display().to_string();
    s.json_in(&other, "remote-add", &["remote", "add", "up", &up]);
    s.json_in(&other, "remote-trust", &["remote", "trust", "up", "--threshold", "1"]);
    s.json_in(&other, "remote-list", &["remote", "list"]);
    s.json_in(&other, "fetch", &["fetch", "up"]);
    s.json_in(&other, "origin", &["origin", &c]);
    s.json_in(&other, "snapshot-create", &["snapshot", "create", "--federated", "fed"]);
    s.json_in(&other, "snapshot-verify", &["snapshot", "verify", "fed"]);
    s.json_in(&other, "remote-remove", &["remote", "remove", "up"]);
    let mirror = tmp.path().join("mirror");
    s.json_in(&mirror, "init", &["init"]);
    let to = mirror.display().to_string();
    s.json("remote-add", &["remote", "add", "down", &to]);
    s.json("push", &["push", "down"]);

    // Runs written as seed 003's service writes them.
    common::py_json("tests/py/seed003_runs.py", tmp.path(), "python3");
    s.json("runs-put", &["runs", "put", "runs"]);
    s.json("runs-check", &["runs", "check"]);
    s.json("runs-ls", &["runs", "ls"]);
    s.json("runs-prune", &["runs", "prune", "--older-than", "1d", "--dry-run"]);

    // Convert a record along the format graph.
    let yaml = s.json("convert", &["convert", "--from", "cbor", "--to", "yaml", &rec]);
    assert!(yaml.contains("\"to\":\"yaml\""), "{yaml}");

    s.json("rm", &["rm", &c, "--force"]);
    s.json("snapshot-delete", &["snapshot", "delete", "one"]);
    s.json("repair", &["repair"]);

    // A failed command: its error is one JSON object on stderr.
    let o = s.run(&s.store, &["--json", "cat", "0000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("--json does not apply"), "{}", stderr_of(&o));
    let mut errors = Vec::new();
    for args in [
        &["--json", "get", &"0".repeat(64)][..],
        &["--json", "snapshot", "show", "nope"],
        &["--json", "ls", "--no-such-flag"],
        &["--json", "cat", "0000"],
    ] {
        let o = s.run(&s.store, args);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(stdout_of(&o), "", "{args:?}: nothing on stdout");
        errors.push(serde_json::json!({"schema": "error", "output": stderr_of(&o), "what": args.join(" ")}));
    }
    s.cases.extend(errors);

    let batch = tmp.path().join("cases.json");
    fs::write(&batch, serde_json::to_vec(&s.cases).unwrap()).unwrap();
    let o = Command::new("python3")
        .arg(root.join("tests/py/cli_json.py"))
        .arg(root.join("spec/cli"))
        .arg("--batch")
        .arg(&batch)
        .output()
        .expect("python3 runs (needs jsonschema: see scripts/setup)");
    assert!(
        o.status.success(),
        "outputs that break their schema:\n{}",
        stdout_of(&o)
    );
}

/// The CLI's commands, from its own man pages: those with no subcommand.
fn leaf_commands() -> BTreeSet<String> {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(aslctl_bin()).arg("man").arg(tmp.path()).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let pages: BTreeSet<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".1")
                .to_string()
        })
        .filter_map(|n| n.strip_prefix("aslctl-").map(String::from))
        .collect();
    let mut leaves: BTreeSet<String> = pages
        .iter()
        .filter(|p| !pages.iter().any(|q| q.starts_with(&format!("{p}-"))))
        .cloned()
        .collect();
    // `lineage ID` runs without a subcommand too.
    leaves.insert("lineage".into());
    leaves
}

#[test]
fn every_command_has_a_schema_or_refuses_json_and_every_schema_is_tested() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas: BTreeSet<String> = fs::read_dir(root.join("spec/cli"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            n.strip_suffix(".schema.json").map(String::from)
        })
        .filter(|n| n != "defs")
        .collect();
    let leaves = leaf_commands();
    let missing: Vec<_> = leaves
        .iter()
        .filter(|c| !schemas.contains(*c) && !WITHOUT_JSON.contains(&c.as_str()))
        .collect();
    assert!(missing.is_empty(), "commands with no schema in spec/cli: {missing:?}");
    for c in WITHOUT_JSON {
        assert!(leaves.contains(*c), "{c} is no command");
        assert!(!schemas.contains(*c), "{c} refuses --json but has a schema");
    }
    // Every schema is used by a test: named first in a call of this file's
    // session or of common::check_json (`"NAME", &...`).
    let mut sources = String::new();
    for e in fs::read_dir(root.join("tests")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            sources.push_str(&fs::read_to_string(&p).unwrap());
        }
    }
    // As rustfmt may break a call's arguments over lines.
    let sources = sources.split_whitespace().collect::<Vec<_>>().join(" ");
    let unused: Vec<_> = schemas
        .iter()
        .filter(|n| !sources.contains(&format!("\"{n}\", &")) && !sources.contains(&format!("\"schema\": \"{n}\"")))
        .collect();
    assert!(unused.is_empty(), "schemas no test checks: {unused:?}");
}
