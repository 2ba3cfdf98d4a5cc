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
