//! Records through the real `aslctl`: `record put`, `record show`, `types`,
//! and bad input refused with exit 2 and nothing written.

use std::fs;
use std::process::Command;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

const RUN: &str = r#"{"run_id": "r-7", "created_at": "2026-11-30T10:00:00.250Z", "mode": "strict",
  "tool": "mill", "status": "ERROR", "meta": {"attempt": 2, "note": "timeout"},
  "input_sha256": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}"#;

#[test]
fn a_run_record_round_trips_and_its_id_is_the_blake3_of_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let file = tmp.path().join("run.json");
    fs::write(&file, RUN).unwrap();
    let o = aslctl(&store, &["record", "put", "--type", "asl/run", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(err(&o), "", "a registered type gets no note");
    let id = out(&o).trim().to_string();
    let bytes = aslctl(&store, &["get", &id]).stdout;
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), id);
    assert!(bytes.starts_with(&asl::records::MAGIC));

    let o = aslctl(&store, &["--json", "record", "show", &id[..10]]);
    assert!(o.status.success(), "{}", err(&o));
    let shown: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let sent: serde_json::Value = serde_json::from_str(RUN).unwrap();
    assert_eq!(shown["body"], sent);
    assert_eq!(shown["type"], "asl/run");
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["known"], true);

    // The same record again is the same artifact.
    let o = aslctl(
        &store,
        &["--json", "record", "put", "--type", "asl/run", file.to_str().unwrap()],
    );
    let again: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["new"], false);
}

#[test]
fn bad_records_are_refused_with_exit_2_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let put = |ty: &str, body: &str| {
        let f = tmp.path().join("in.json");
        fs::write(&f, body).unwrap();
        aslctl(&store, &["record", "put", "--type", ty, f.to_str().unwrap()])
    };
    let cases = [
        (
            "asl/run",
            r#"{"run_id": "r", "mode": "m", "tool": "t", "status": "OK"}"#,
            "missing field \"created_at\"",
        ),
        ("asl/run", &RUN.replace("ERROR", "FINE"), "status"),
        (
            "asl/run",
            &RUN.replace("\"mode\"", "\"mood\""),
            "unknown field \"mood\"",
        ),
        ("asl/annotation", r#"{"subject": "abc"}"#, "not an artifact id"),
        (
            "asl/annotation",
            &format!(r#"{{"subject": "{}", "labels": {{"": "x"}}}}"#, "ab".repeat(32)),
            "label key",
        ),
        ("asl/run", "{not json", "not JSON"),
        ("Not A Type", "{}", "record type"),
    ];
    for (ty, body, want) in cases {
        let o = put(ty, body);
        assert_eq!(o.status.code(), Some(2), "{ty} {body}: {}", err(&o));
        assert!(err(&o).contains(want), "{ty} {body}: {} (expected {want})", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "one line: {}", err(&o));
    }
    assert!(!store.exists(), "a refused record must not even create the store");

    // An artifact that is not a record, and an id that is not there.
    let f = tmp.path().join("plain.txt");
    fs::write(&f, b"plain bytes").unwrap();
    let o = aslctl(&store, &["ingest", f.to_str().unwrap()]);
    let plain = out(&o).split_whitespace().next().unwrap().to_string();
    let o = aslctl(&store, &["record", "show", &plain]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("not a record"), "{}", err(&o));
    let o = aslctl(&store, &["record", "show", &"0".repeat(64)]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}

#[test]
fn unknown_types_are_stored_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let mut child = Command::new(common::aslctl_bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "record",
            "put",
            "--type",
            "lab/sample",
            "--version",
            "4",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"n": [1, -2, 2.5], "who": "x"}"#)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("not registered"), "{}", err(&o));
    let id = out(&o).trim().to_string();
    let o = aslctl(&store, &["--json", "record", "show", &id]);
    let shown: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(shown["known"], false);
    assert_eq!(shown["version"], 4);
    assert_eq!(shown["body"]["n"], serde_json::json!([1, -2, 2.5]));

    // A registered type at a version this build lacks is refused.
    let f = tmp.path().join("run.json");
    std::fs::write(&f, "{}").unwrap();
    let before = out(&aslctl(&store, &["ls"]));
    let o = aslctl(
        &store,
        &[
            "record",
            "put",
            "--type",
            "asl/run",
            "--version",
            "7",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("has no version 7"), "{}", err(&o));
    assert_eq!(out(&aslctl(&store, &["ls"])), before);
}

#[test]
fn types_lists_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let o = aslctl(&tmp.path().join("none"), &["--json", "types"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    let tree_versions: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "asl/tree")
        .map(|t| t["version"].as_u64().unwrap())
        .collect();
    assert_eq!(tree_versions, [1, 2], "trees without and with symbolic links");
    assert_eq!(
        names,
        [
            "asl/tree",
            "asl/tree",
            "asl/annotation",
            "asl/digest",
            "asl/expiry",
            "asl/lineage",
            "asl/run",
            "asl/run-artifact",
            "asl/pel-program",
            "asl/pel-receipt",
            "asl/pel-run",
            "asl/pel-batch",
            "asl/pel-divergence",
            "asl/hdf5-index",
            "asl/template",
            "asl/overlay",
            "asl/cache-entry",
            "asl/cache-entry",
            "rvls/pattern",
            "rvls/trajectory",
            "rvls/ewc",
            "rvls/import",
            "asl/signature"
        ]
    );
}

/// Seed 003's run artifacts, written by a Python program with the seed's
/// own hashing helpers and file layout: stored as written, every declared
/// hash recomputed (a tampered one refused, nothing stored), the request
/// summary rule on request, and found by day, tool, mode, status and run
/// id from the CLI and over HTTP.
#[test]
fn seed_003_run_artifacts_are_stored_as_written_and_their_hashes_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let made = common::py_json("tests/py/seed003_runs.py", tmp.path(), "python3");
    let runs_dir = tmp.path().join("runs");
    let o = aslctl(&store, &["runs", "put", runs_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let put: Vec<Vec<String>> = out(&o)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let verdicts: Vec<(&str, &str)> = put.iter().map(|l| (l[1].as_str(), l[2].as_str())).collect();
    // d4e5f6 declares a toolpaths hash whose payload the artifact does not hold.
    assert_eq!(verdicts, [("a1b2c3", "ok"), ("d4e5f6", "partial"), ("0a0b0c", "ok")]);
    // As written: the stored body is the file's JSON, nulls included.
    let shown: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&store, &["--json", "record", "show", &put[0][0]]))).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(made["runs"][0]["path"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(shown["type"], "asl/run-artifact");
    assert_eq!(shown["body"], file);

    let ls = |args: &[&str]| -> Vec<String> {
        let o = aslctl(&store, &[&["runs", "ls"], args].concat());
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        out(&o)
            .lines()
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ls(&["--since", "2026-12-01", "--until", "2026-12-02"]),
        ["a1b2c3", "d4e5f6"]
    );
    assert_eq!(
        ls(&["--label", "tool=router:vbit", "--newest-first"]),
        ["0a0b0c", "d4e5f6"]
    );
    assert_eq!(ls(&["--label", "mode=saw"]), ["a1b2c3"]);
    assert_eq!(ls(&["--label", "status=ERROR"]), ["0a0b0c"]);
    assert_eq!(ls(&["--label", "run_id=d4e5f6"]), ["d4e5f6"]);
    assert_eq!(ls(&["--label", "run.hashes=partial"]), ["d4e5f6"]);

    // Tampered after hashing: refused, nothing stored; stored only when asked, flagged.
    let tampered = made["tampered"].as_str().unwrap();
    let o = aslctl(&store, &["runs", "put", tampered]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("run bad001: hashes.feasibility_sha256 declares") && err(&o).contains("nothing stored"),
        "{}",
        err(&o)
    );
    assert_eq!(ls(&[]).len(), 3);
    let o = aslctl(&store, &["runs", "put", "--accept-mismatch", tampered]);
    assert!(out(&o).ends_with("bad001  mismatch\n"), "{}", out(&o));
    assert_eq!(ls(&["--label", "run.hashes=mismatch"]), ["bad001"]);
    let o = aslctl(&store, &["runs", "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("feasibility_sha256 declares"), "{}", out(&o));

    // The summary rule, on request.
    let full = made["full_request"].as_str().unwrap();
    let o = aslctl(&store, &["--json", "runs", "put", "--summarize-request", full]);
    assert!(o.status.success(), "{}", err(&o));
    let id = serde_json::from_str::<serde_json::Value>(&out(&o)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&store, &["--json", "record", "show", &id]))).unwrap();
    let summary = &shown["body"]["request_summary"];
    assert!(summary.get("feasibility").is_none(), "{summary}");
    assert_eq!(summary["points"], serde_json::json!({"type": "list", "len": 500}));
    assert_eq!(summary["grid"], serde_json::json!({"type": "dict", "len": 300}));
    assert_eq!(summary["small"], serde_json::json!([1, 2]));

    // Over HTTP: stored through POST /v1/runs, found through /v1/find.
    let srv = common::server::start_on(tempfile::tempdir().unwrap(), store.clone(), &[], None);
    let post = |q: &str, file: &str| {
        common::server::curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &format!("@{file}"),
            &format!("{}/v1/runs{q}", srv.url),
        ])
    };
    let (code, body) = post("", tampered);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, body) = post("?summarize_request=true", full);
    let v = common::server::json(&body);
    assert_eq!((code, v["verdict"].as_str()), (200, Some("ok")), "{v}");
    let (code, body) = common::server::curl(&[&format!(
        "{}/v1/find?type=asl/run-artifact&label=tool=router:vbit&since=2026-12-02",
        srv.url
    )]);
    assert_eq!(code, 200);
    let hits = common::server::json(&body)["hits"].clone();
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["subject"], put[2][0].as_str());
    srv.terminate();
}
