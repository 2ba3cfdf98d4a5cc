//! PEL through the real `aslctl`: the README's example pipeline run twice,
//! its lineage and attestations (checked by Python's cryptography,
//! in-toto-attestation and prov packages), removal of held outputs, replay's
//! exit code, bad programs refused with nothing written, and a command
//! printing hundreds of megabytes in bounded memory.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    out(&o)
}

const PIPELINE: &str = r#"# Sort the words, compress the result, checksum it.
name: words
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
  sum:
    op: hash
    inputs: ["@packed"]
    params: {format: sha256sum, name: sorted.txt.zst}
"#;

fn setup(dir: &Path, words: &str) -> String {
    let w = dir.join("words.txt");
    fs::write(&w, words).unwrap();
    let p = dir.join("words.yaml");
    fs::write(&p, PIPELINE.replace("WORDS", w.to_str().unwrap())).unwrap();
    p.to_str().unwrap().to_string()
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_example_pipeline_runs_caches_traces_and_attests() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let prog = setup(dir.path(), "pear\napple\nfig\napple\n");
    let first = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &prog])));
    assert_eq!(first["outcome"], "OK");
    assert_eq!(first["executed"].as_array().unwrap().len(), 3);
    let second = ok(aslctl(&store, &["pel", "run", &prog]));
    assert!(second.contains("3 nodes, 0 executed, 3 cached, OK"), "{second}");

    let sorted = first["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "sorted")
        .unwrap()["outputs"]["sorted.txt"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ok(aslctl(&store, &["cat", &sorted])), "apple\nfig\npear\n");
    let sum = first["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "sum")
        .unwrap()["outputs"]["out"]
        .as_str()
        .unwrap()
        .to_string();
    let line = ok(aslctl(&store, &["cat", &sum]));
    assert!(line.ends_with("  sorted.txt.zst\n"), "{line}");

    // Lineage: text, JSON, dot.
    let text = ok(aslctl(&store, &["lineage", &sum]));
    for want in [
        "made by node \"sum\" (hash)",
        "made by node \"packed\" (zstd.compress)",
        "made by node \"sorted\" (exec)",
    ] {
        assert!(text.contains(want), "{text}");
    }
    let j = json_of(&ok(aslctl(&store, &["--json", "lineage", &sum])));
    assert_eq!(j["steps"].as_array().unwrap().len(), 3);
    let dot = ok(aslctl(&store, &["lineage", "--dot", &sorted, "--descendants"]));
    assert!(
        dot.starts_with("digraph lineage {") && dot.contains("zstd.compress"),
        "{dot}"
    );

    // Attestation: ours verifies; Python's independent tools agree.
    let run_id = first["run_id"].as_str().unwrap();
    let att = dir.path().join("att.json");
    let prov = dir.path().join("prov.json");
    ok(aslctl(&store, &["pel", "attest", run_id, "-o", att.to_str().unwrap()]));
    ok(aslctl(
        &store,
        &["pel", "attest", run_id, "--prov", "-o", prov.to_str().unwrap()],
    ));
    let v = ok(aslctl(&store, &["pel", "verify-attestation", att.to_str().unwrap()]));
    assert!(
        v.starts_with("ok: signed by") && v.contains("3 subject(s) and 1 dependencies"),
        "{v}"
    );
    let key = ok(aslctl(&store, &["pel", "key"])).trim().to_string();
    let py = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/check_attestation.py"))
        .args([&att, &prov])
        .arg(&key)
        .output()
        .expect("python3 runs (needs cryptography, in-toto-attestation, prov: see .ci/run)");
    assert!(py.status.success(), "{}{}", out(&py), err(&py));
    assert!(out(&py).starts_with("ok: dsse signature valid"), "{}", out(&py));
    // An artifact's own attestation: the receipt that made it.
    let one = dir.path().join("one.json");
    ok(aslctl(
        &store,
        &["pel", "attest", "--artifact", &sum, "-o", one.to_str().unwrap()],
    ));
    ok(aslctl(&store, &["pel", "verify-attestation", one.to_str().unwrap()]));

    // A changed statement no longer verifies.
    let mut env: serde_json::Value = json_of(&fs::read_to_string(&att).unwrap());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    env["payload"] = b64.encode(payload.replacen("sorted.txt", "sorted.TXT", 1)).into();
    fs::write(&att, env.to_string()).unwrap();
    let o = aslctl(&store, &["pel", "verify-attestation", att.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("FAIL no valid signature"), "{}", out(&o));

    // Another store's attestation is not trusted until its key is.
    let other = dir.path().join("other");
    ok(aslctl(&other, &["pel", "run", &prog]));
    let theirs = dir.path().join("theirs.json");
    let their_run = json_of(&ok(aslctl(&other, &["--json", "pel", "run", &prog])))["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(aslctl(
        &other,
        &["pel", "attest", &their_run, "-o", theirs.to_str().unwrap()],
    ));
    let o = aslctl(&store, &["pel", "verify-attestation", theirs.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("signed only by keys this store does not trust"),
        "{}",
        out(&o)
    );
    let their_key = ok(aslctl(&other, &["pel", "key"])).trim().to_string();
    ok(aslctl(&store, &["pel", "trust", "add", &their_key, "--name", "other"]));
    ok(aslctl(&store, &["pel", "verify-attestation", theirs.to_str().unwrap()]));
}

#[test]
fn held_outputs_are_not_removed_without_force_and_lineage_outlives_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let prog = setup(dir.path(), "b\na\n");
    let run = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &prog])));
    let node = |n: &str, o: &str| {
        run["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .unwrap()["outputs"][o]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (packed, sum) = (node("packed", "out"), node("sum", "out"));
    let o = aslctl(&store, &["rm", &packed]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("is an output of PEL receipt"), "{}", err(&o));
    assert!(ok(aslctl(&store, &["ls"])).contains(&packed), "nothing removed");

    ok(aslctl(&store, &["rm", "--force", &packed]));
    ok(aslctl(&store, &["gc"]));
    let text = ok(aslctl(&store, &["lineage", &sum]));
    assert!(text.contains(&format!("{packed} (content removed)")), "{text}");
    let text = ok(aslctl(&store, &["lineage", &packed]));
    assert!(text.starts_with(&format!("{packed} (content removed)")), "{text}");
    // The cache knows: the next run makes it again, and only it.
    let again = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &prog])));
    assert_eq!(again["executed"], serde_json::json!(["packed"]));
    assert!(ok(aslctl(&store, &["ls"])).contains(&packed));
}

#[test]
fn replay_check_exits_1_when_an_output_differs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = dir.path().join("p.json");
    fs::write(
        &p,
        r#"{"nodes": {"stable": {"op": "exec", "params": {"cmd": "echo same"}},
                      "clock": {"op": "exec", "params": {"cmd": "date +%s%N"}}}}"#,
    )
    .unwrap();
    let run = json_of(&ok(aslctl(&store, &["--json", "pel", "run", p.to_str().unwrap()])));
    let id = run["run"].as_str().unwrap();
    let o = aslctl(&store, &["pel", "replay", id, "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains("DIFFERS clock stdout") && text.contains("first difference at byte"),
        "{text}"
    );
    assert!(
        text.contains("replayed 2 node(s): 1 matched, 1 output(s) differ"),
        "{text}"
    );
    let o = aslctl(
        &store,
        &[
            "pel",
            "replay",
            run["run_id"].as_str().unwrap(),
            "--check",
            "--node",
            "stable",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    let shown = ok(aslctl(&store, &["pel", "show", id]));
    assert!(shown.contains("stable") && shown.contains("clock"), "{shown}");
}

#[test]
fn bad_programs_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cases = [
        (
            "nodes: {a: {op: concat, inputs: ['@b']}, b: {op: concat, inputs: ['@a']}}",
            "cycle",
        ),
        ("nodes: {a: {op: nope}}", "unknown operation"),
        (
            "nodes: {a: {op: exec, params: {cmd: 'true', outputs: [x, x]}}}",
            "declared twice",
        ),
        (
            "nodes: {a: {op: concat, inputs: ['file:/definitely/not/here']}}",
            "not/here",
        ),
        ("nodes: [", "not YAML"),
    ];
    for (text, want) in cases {
        let p = dir.path().join("bad.yaml");
        fs::write(&p, text).unwrap();
        let o = aslctl(&store, &["pel", "run", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", err(&o));
        assert!(err(&o).contains(want), "{text}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "one line: {}", err(&o));
    }
    assert!(!store.exists(), "refused before the store was made");
    let p = dir.path().join("missing.yaml");
    fs::write(
        &p,
        format!("nodes: {{a: {{op: concat, inputs: ['b3:{}']}}}}", "ab".repeat(32)),
    )
    .unwrap();
    let o = aslctl(&store, &["pel", "run", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("missing inputs, nothing ran"), "{}", err(&o));
}

/// The largest resident set of any child this process has waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    ru.ru_maxrss
}

#[test]
fn a_command_printing_hundreds_of_megabytes_is_streamed_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = dir.path().join("p.yaml");
    let n: u64 = 400 << 20;
    fs::write(
        &p,
        format!("nodes: {{big: {{op: exec, params: {{cmd: 'head -c {n} /dev/urandom'}}}}}}"),
    )
    .unwrap();
    let run = json_of(&ok(aslctl(&store, &["--json", "pel", "run", p.to_str().unwrap()])));
    let rss = children_max_rss_kib();
    let id = run["nodes"][0]["outputs"]["stdout"].as_str().unwrap();
    let ls = ok(aslctl(&store, &["ls"]));
    assert!(
        ls.lines().any(|l| l.starts_with(id) && l.ends_with(&format!(" {n}"))),
        "{ls}"
    );
    // 400 MiB went through a process whose resident set stayed far below it.
    assert!(rss < 160 * 1024, "peak RSS of aslctl {rss} KiB");
}

/// Ephemeral artifacts: once expired, `gc` removes them and reclaims their
/// bytes, but never one a live receipt holds; when the receipt goes, so
/// does the artifact at the next `gc`.
#[test]
fn expired_ephemeral_artifacts_go_at_gc_unless_a_live_receipt_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let i = dir.path().join("in.bin");
    fs::write(&i, common::noise(4, 1000)).unwrap();
    let input = common::ingest_file(&store, &i);
    let p = dir.path().join("p.json");
    let prog = format!(
        r#"{{"nodes": {{"say": {{"op": "exec", "inputs": {{"in.bin": "b3:{input}"}}, "params": {{"cmd": "echo scratch"}}}}}}}}"#
    );
    fs::write(&p, prog).unwrap();
    let run = json_of(&ok(aslctl(&store, &["--json", "pel", "run", p.to_str().unwrap()])));
    let held = run["nodes"][0]["outputs"]["stdout"].as_str().unwrap().to_string();
    let receipt = run["nodes"][0]["receipt"].as_str().unwrap().to_string();
    let f = dir.path().join("tmp.bin");
    fs::write(&f, common::noise(5, 100_000)).unwrap();
    let free = common::ingest_file(&store, &f);

    // Not yet due: nothing goes.
    let o = ok(aslctl(&store, &["ephemeral", &free, "--ttl", "1h"]));
    assert!(o.contains(&free) && o.contains("expires"), "{o}");
    let gc = json_of(&ok(aslctl(&store, &["--json", "gc"])));
    assert_eq!(
        (gc["expired"].as_u64(), gc["expired_held"].as_u64()),
        (Some(0), Some(0)),
        "{gc}"
    );
    // A later time wins: the hour-long life stands beside a past expiry.
    // The receipt holds its input and its output.
    ok(aslctl(
        &store,
        &["ephemeral", &free, &held, &input, "--until", "2000-01-01"],
    ));
    let dry = json_of(&ok(aslctl(&store, &["--json", "gc", "--dry-run"])));
    assert_eq!(
        (dry["expired"].as_u64(), dry["expired_held"].as_u64()),
        (Some(0), Some(2)),
        "{dry}"
    );
    // Another artifact, due: it goes; the receipt's output stays.
    let g = dir.path().join("gone.bin");
    fs::write(&g, common::noise(6, 100_000)).unwrap();
    let gone = common::ingest_file(&store, &g);
    ok(aslctl(&store, &["ephemeral", &gone, "--until", "2000-01-01"]));
    let dry = json_of(&ok(aslctl(&store, &["--json", "gc", "--dry-run"])));
    assert_eq!(
        (dry["expired"].as_u64(), dry["expired_held"].as_u64()),
        (Some(1), Some(2)),
        "{dry}"
    );
    assert!(ok(aslctl(&store, &["ls"])).contains(&gone), "a dry run removes nothing");
    let gc = ok(aslctl(&store, &["gc"]));
    assert!(gc.contains("removed 1 ephemeral artifacts (2 held"), "{gc}");
    let ls = ok(aslctl(&store, &["ls"]));
    assert!(!ls.contains(&gone) && ls.contains(&held) && ls.contains(&free), "{ls}");
    let st = json_of(&ok(aslctl(&store, &["--json", "stat"])));
    assert_eq!(st["garbage_bytes"].as_u64(), Some(0), "GC reclaimed it: {st}");

    // The receipt removed, its output goes at the next gc.
    ok(aslctl(&store, &["rm", "--force", &receipt]));
    let gc = json_of(&ok(aslctl(&store, &["--json", "gc"])));
    assert_eq!(gc["expired"].as_u64(), Some(2), "{gc}");
    let ls = ok(aslctl(&store, &["ls"]));
    assert!(!ls.contains(&held) && !ls.contains(&input), "{ls}");
    let o = aslctl(&store, &["ephemeral", &held, "--ttl", "1h"]);
    assert_eq!(o.status.code(), Some(1), "gone: {}", err(&o));
    let o = aslctl(&store, &["ephemeral", &receipt[..8]]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

/// Inputs read at a named snapshot: they run while CURRENT no longer holds
/// them, the receipt and the action key carry the snapshot, and a replay
/// reads at the same snapshot — and says so once it is gone.
#[test]
fn inputs_taken_at_a_snapshot_are_read_there_recorded_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = dir.path().join("data.txt");
    fs::write(&f, "as it was\n").unwrap();
    let a = common::ingest_file(&store, &f);
    ok(aslctl(&store, &["snapshot", "create", "s1"]));
    ok(aslctl(&store, &["rm", &a]));
    let prog = |name: &str, body: &str| {
        let p = dir.path().join(name);
        fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let at_snap = prog(
        "snap.json",
        &format!(
            r#"{{"nodes": {{"count": {{"op": "exec", "inputs": {{"d.txt": "snap:s1:b3:{a}"}}, "params": {{"cmd": "wc -c < d.txt"}}}},
                           "joined": {{"op": "concat", "inputs": ["snap:s1:{a}", "snap:s1:{a}"]}}}}}}"#
        ),
    );
    let run = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &at_snap])));
    assert_eq!(run["outcome"], "OK", "{run}");
    let node = |n: &str| {
        run["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .unwrap()
            .clone()
    };
    let count = node("count");
    let said = ok(aslctl(&store, &["cat", count["outputs"]["stdout"].as_str().unwrap()]));
    assert_eq!(said.trim(), "10");
    let joined = ok(aslctl(
        &store,
        &["cat", node("joined")["outputs"]["out"].as_str().unwrap()],
    ));
    assert_eq!(joined, "as it was\nas it was\n");
    let receipt = json_of(&ok(aslctl(
        &store,
        &["record", "show", count["receipt"].as_str().unwrap()],
    )));
    assert_eq!(receipt["body"]["inputs"][0]["snapshot"], "s1", "{receipt}");

    // From CURRENT the same id is missing; stored again, it runs under
    // another action key (no hit from the snapshot's run).
    let current = prog(
        "current.json",
        &format!(
            r#"{{"nodes": {{"count": {{"op": "exec", "inputs": {{"d.txt": "b3:{a}"}}, "params": {{"cmd": "wc -c < d.txt"}}}}}}}}"#
        ),
    );
    let o = aslctl(&store, &["pel", "run", &current]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    common::ingest_file(&store, &f);
    let again = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &current])));
    assert_eq!(again["executed"], serde_json::json!(["count"]), "{again}");
    let cached = json_of(&ok(aslctl(&store, &["--json", "pel", "run", &at_snap])));
    assert_eq!(
        cached["executed"],
        serde_json::json!([]),
        "the snapshot's run is cached: {cached}"
    );

    // A replay reads at the snapshot.
    let o = aslctl(&store, &["pel", "replay", run["run"].as_str().unwrap(), "--check"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    ok(aslctl(&store, &["snapshot", "delete", "s1"]));
    let o = aslctl(&store, &["pel", "replay", run["run"].as_str().unwrap(), "--check"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("snapshot \"s1\", which does not exist"), "{}", err(&o));

    // Refused before anything runs: another node's output at a snapshot,
    // a snapshot that does not hold the input.
    ok(aslctl(&store, &["snapshot", "create", "s2"]));
    let bad = prog(
        "bad.json",
        r#"{"nodes": {"a": {"op": "exec", "params": {"cmd": "true"}}, "b": {"op": "concat", "inputs": ["snap:s2:@a"]}}}"#,
    );
    let o = aslctl(&store, &["pel", "run", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("cannot hold the output of node"), "{}", err(&o));
    let absent = prog(
        "absent.json",
        &format!(
            r#"{{"nodes": {{"c": {{"op": "concat", "inputs": ["snap:s2:{}"]}}}}}}"#,
            "ab".repeat(32)
        ),
    );
    let o = aslctl(&store, &["pel", "run", &absent]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not in snapshot \"s2\""), "{}", err(&o));
}
