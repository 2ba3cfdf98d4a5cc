//! The typed-format conversion graph end to end, on an HDF5 file h5py
//! writes: template extraction, YAML overlays read back by PyYAML (a second
//! parser) and turned into CBOR with comments logged, dataset values under
//! the size limit, every forbidden edge refused naming its rule, bad
//! overlays refused with nothing stored, and lineage from a PEL run's output
//! back through the conversions' receipts to the HDF5 file's index.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: std::path::PathBuf,
    file: String,
    index: String,
    x: Vec<f64>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join("store");
    // The README's example file.
    let h5 = root.join("heat.h5");
    let o = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/formats/heat.py"))
        .arg(&h5)
        .output()
        .expect("python3 runs (needs h5py: see .ci/run)");
    assert!(o.status.success(), "{}", err(&o));
    let o = aslctl(&store, &["--json", "h5", "ingest", h5.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    Fixture {
        _dir: dir,
        root,
        store,
        file: r["file"].as_str().unwrap().into(),
        index: r["index"].as_str().unwrap().into(),
        // What heat.py wrote to /grid/x, as numpy computes it.
        x: {
            let o = Command::new("python3")
                .args([
                    "-c",
                    "import json, numpy as np; print(json.dumps(np.linspace(0.0, 1.0, 64).tolist()))",
                ])
                .output()
                .unwrap();
            serde_json::from_slice::<Vec<f64>>(&o.stdout).unwrap()
        },
    }
}

fn convert(f: &Fixture, from: &str, to: &str, id: &str, extra: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json", "convert", "--from", from, "--to", to, id];
    a.extend(extra);
    let o = aslctl(&f.store, &a);
    assert!(o.status.success(), "{from} -> {to}: {}", err(&o));
    serde_json::from_str(out(&o).trim()).unwrap()
}

fn show(f: &Fixture, id: &str) -> serde_json::Value {
    let o = aslctl(&f.store, &["record", "show", id]);
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_str(&out(&o)).unwrap()
}

fn pyyaml(path: &Path) -> serde_json::Value {
    let o = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("python3 with PyYAML (see .ci/run)");
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `convert --from yaml --to cbor file:PATH`, as it ran.
fn yaml_to_cbor(f: &Fixture, p: &Path) -> std::process::Output {
    let file = format!("file:{}", p.display());
    aslctl(&f.store, &["convert", "--from", "yaml", "--to", "cbor", &file])
}

fn count(f: &Fixture) -> usize {
    out(&aslctl(&f.store, &["ls"])).lines().count()
}

#[test]
fn a_template_references_datasets_and_round_trips_through_yaml() {
    let f = fixture();
    let t = convert(&f, "hdf5", "cbor", &f.file, &[]);
    let tid = t["output"].as_str().unwrap();
    let rec = show(&f, tid);
    assert_eq!(rec["type"], "asl/template");
    let b = &rec["body"];
    assert_eq!(
        (b["name"].as_str(), b["kind"].as_str()),
        (Some("heat-1d"), Some("Simulation"))
    );
    assert_eq!(
        (b["source"].as_str(), b["index"].as_str()),
        (Some(&*f.file), Some(&*f.index))
    );
    assert_eq!(b["parameters"]["alpha"], 0.25);
    assert_eq!(b["groups"]["/grid"]["units"], "m");
    let ds = b["datasets"].as_array().unwrap();
    assert_eq!(ds.len(), 2);
    for d in ds {
        assert_eq!(d["artifact"].as_str(), Some(&*f.file), "referenced by (artifact, path)");
        assert!(d["digest"].is_string());
    }
    let size = out(&aslctl(&f.store, &["cat", tid])).len();
    assert!(
        size < 2048,
        "metadata only, never the 512 KiB of elements: {size} bytes"
    );
    // Converting again is answered by the receipt.
    assert_eq!(convert(&f, "hdf5", "cbor", &f.file, &[])["cached"], true);

    // The overlay: a second YAML parser reads what ASL wrote as the
    // record's JSON form.
    let y = f.root.join("t.yaml");
    let ov = convert(&f, "hdf5", "yaml", &f.index, &["-o", y.to_str().unwrap()]);
    let text = fs::read_to_string(&y).unwrap();
    assert!(text.starts_with(&format!("## asl overlay of {tid}\n")), "{text}");
    assert!(text.contains("## /initial: <f8 [65536], stays in HDF5"), "{text}");
    let parsed = pyyaml(&y);
    assert_eq!(parsed["type"], rec["type"]);
    assert_eq!(parsed["body"], rec["body"], "PyYAML reads the same record");
    assert_eq!(
        out(&aslctl(&f.store, &["cat", ov["output"].as_str().unwrap()])),
        text,
        "-o wrote the stored overlay"
    );

    // Unedited, it becomes the very same CBOR object, and nothing changed.
    let back = convert(&f, "yaml", "cbor", ov["output"].as_str().unwrap(), &[]);
    assert_eq!(back["output"].as_str(), Some(tid), "the same canonical bytes");
    let log = show(&f, back["log"].as_str().unwrap());
    assert_eq!(log["body"]["changed"], serde_json::json!([]));
    assert_eq!(log["body"]["annotations"], serde_json::json!([]));
    assert_eq!(log["body"]["base"].as_str(), Some(tid));

    // Edited with comments: the CBOR has the new value and no comment; the
    // log has both comments, where they were, and what changed.
    let edited = text.replace(
        "    alpha: 0.25\n",
        "    # halved: the 0.25 run was unstable\n    alpha: 0.125 # CFL-safe\n",
    );
    assert_ne!(edited, text);
    let e = f.root.join("edited.yaml");
    fs::write(&e, &edited).unwrap();
    let r = convert(&f, "yaml", "cbor", &format!("file:{}", e.display()), &[]);
    let obj = r["output"].as_str().unwrap();
    let new = show(&f, obj);
    assert_eq!(new["body"]["parameters"]["alpha"], 0.125);
    let bytes = Command::new(common::aslctl_bin())
        .args(["--store", f.store.to_str().unwrap(), "cat", obj])
        .output()
        .unwrap()
        .stdout;
    assert!(!String::from_utf8_lossy(&bytes).contains("CFL"), "comments stripped");
    let log = show(&f, r["log"].as_str().unwrap())["body"].clone();
    assert_eq!(log["changed"], serde_json::json!(["body.parameters.alpha"]));
    let notes: Vec<(&str, &str)> = log["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["at"].as_str().unwrap(), a["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        notes,
        [
            ("body.parameters.alpha", "halved: the 0.25 run was unstable"),
            ("body.parameters.alpha", "CFL-safe")
        ]
    );

    // CBOR -> JSON: ids stay ids.
    let j = convert(&f, "cbor", "json", obj, &[]);
    let jt: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&f.store, &["cat", j["output"].as_str().unwrap()]))).unwrap();
    assert_eq!(jt["body"]["source"].as_str(), Some(&*f.file));
}

#[test]
fn lineage_runs_from_a_pel_output_back_to_the_hdf5_index() {
    let f = fixture();
    let y = f.root.join("t.yaml");
    convert(&f, "hdf5", "yaml", &f.file, &["-o", y.to_str().unwrap()]);
    // A person edits the overlay: no receipt made the edited file.
    let edited = fs::read_to_string(&y)
        .unwrap()
        .replace("    alpha: 0.25\n", "    alpha: 0.5 # try it\n");
    fs::write(&y, edited).unwrap();
    let back = convert(&f, "yaml", "cbor", &format!("file:{}", y.display()), &[]);
    let obj = back["output"].as_str().unwrap();
    let prog = f.root.join("p.yaml");
    fs::write(
        &prog,
        format!("nodes:\n  params:\n    op: cbor.to_json\n    inputs: [\"b3:{obj}\"]\n"),
    )
    .unwrap();
    let o = aslctl(&f.store, &["--json", "pel", "run", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let run: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    let result = run["nodes"][0]["outputs"]["out"].as_str().unwrap().to_string();
    let o = aslctl(&f.store, &["--json", "lineage", &result]);
    assert!(o.status.success(), "{}", err(&o));
    let g: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    let ops: Vec<&str> = g["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["op"].as_str().unwrap())
        .collect();
    for op in ["cbor.to_json", "yaml.to_cbor", "hdf5.template"] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
    let edits = g["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 1, "the edit by hand is a step: {g}");
    assert_eq!(edits[0]["log"], back["log"]);
    assert!(
        g["artifacts"].get(&f.index).is_some(),
        "the chain reaches the HDF5 index: {g}"
    );
    let text = out(&aslctl(&f.store, &["lineage", &result]));
    assert!(text.contains("edited by hand from an overlay of"), "{text}");
    // And forward from the index: the edit and the run's output are found.
    let o = aslctl(&f.store, &["--json", "lineage", "--descendants", &f.index]);
    let d: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert!(d["artifacts"].get(&result).is_some(), "{d}");
}

#[test]
fn small_datasets_become_text_and_large_ones_are_refused_naming_the_limit() {
    let f = fixture();
    let r = convert(&f, "dataset", "json", &format!("{}:/grid/x", f.file), &[]);
    let v: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&f.store, &["cat", r["output"].as_str().unwrap()]))).unwrap();
    assert_eq!(v["dtype"], "<f8");
    let got: Vec<f64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got, f.x, "the values h5py wrote");
    let r = convert(&f, "dataset", "yaml", &format!("{}:/grid/x", f.file), &[]);
    let y = f.root.join("x.yaml");
    fs::write(&y, out(&aslctl(&f.store, &["cat", r["output"].as_str().unwrap()]))).unwrap();
    assert_eq!(pyyaml(&y)["data"], v["data"]);

    let before = count(&f);
    let o = aslctl(
        &f.store,
        &[
            "convert",
            "--from",
            "dataset",
            "--to",
            "json",
            &format!("{}:/initial", f.file),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("rule large-dataset") && e.contains("524288 bytes") && e.contains("65536-byte limit"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
    assert_eq!(count(&f), before, "nothing stored");
}

#[test]
fn every_forbidden_edge_is_refused_naming_its_rule() {
    let f = fixture();
    let t = convert(&f, "hdf5", "cbor", &f.file, &[]);
    let tid = t["output"].as_str().unwrap().to_string();
    let list = out(&aslctl(&f.store, &["--json", "convert", "--list"]));
    let edges: Vec<serde_json::Value> = list.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let forbidden: Vec<&serde_json::Value> = edges.iter().filter(|e| e["allowed"] == false).collect();
    assert!(forbidden.len() >= 10, "{list}");
    for needed in [("cbor", "hdf5"), ("json", "hdf5"), ("dataset", "json")] {
        assert!(
            edges
                .iter()
                .any(|e| (e["from"].as_str(), e["to"].as_str()) == (Some(needed.0), Some(needed.1))),
            "{needed:?}"
        );
    }
    let before = count(&f);
    for e in forbidden {
        let (from, to, rule) = (
            e["from"].as_str().unwrap(),
            e["to"].as_str().unwrap(),
            e["rule"].as_str().unwrap(),
        );
        let id = if from == "dataset" {
            format!("{}:/grid/x", f.file)
        } else {
            tid.clone()
        };
        let o = aslctl(&f.store, &["convert", "--from", from, "--to", to, &id]);
        assert_eq!(o.status.code(), Some(2), "{from} -> {to}: {}", err(&o));
        assert!(err(&o).contains(&format!("forbidden by rule {rule}")), "{}", err(&o));
        assert_eq!(err(&o).lines().count(), 1);
    }
    assert_eq!(count(&f), before, "nothing stored");
    let dot = out(&aslctl(&f.store, &["convert", "--dot"]));
    assert!(dot.starts_with("digraph conversions {"), "{dot}");
    assert!(
        dot.contains("json -> hdf5 [label=\"json-is-audit-trail\", style=dashed"),
        "{dot}"
    );
}

#[test]
fn bad_overlays_are_refused_with_where_and_nothing_is_stored() {
    let f = fixture();
    let y = f.root.join("t.yaml");
    convert(&f, "hdf5", "yaml", &f.file, &["-o", y.to_str().unwrap()]);
    let text = fs::read_to_string(&y).unwrap();
    let cases = [
        (
            "type: asl/template\nversion: 1\nbody:\n  name: [unclosed\n".to_string(),
            "line 5",
        ),
        (text.replace("  kind:", "  knd:"), "unknown field \"knd\""),
        (
            text.replace("      shape: [64]", "      shape: [65]"),
            "/grid/x: shape differs",
        ),
        (text.replace("  name:", "  name: 7\n  old_name:"), "unknown field"),
        (
            text.replace("type: \"asl/template\"", "type: \"someone/else\""),
            "not registered",
        ),
        ("- just\n- a list\n".to_string(), "a map of type, version and body"),
        (
            text.replace("  kind:", "  kind: \"Other\"\n  kind:"),
            "duplicate entry with key \"kind\"",
        ),
    ];
    let before = count(&f);
    for (i, (bad, want)) in cases.iter().enumerate() {
        assert_ne!(bad, &text, "case {i} edits something");
        let p = f.root.join(format!("bad{i}.yaml"));
        fs::write(&p, bad).unwrap();
        let o = yaml_to_cbor(&f, &p);
        assert_eq!(o.status.code(), Some(2), "case {i}: {}", err(&o));
        assert!(err(&o).contains(want), "case {i}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
    assert_eq!(count(&f), before, "nothing stored");
}

/// Any registered record has an overlay, not only templates: an `asl/run`
/// record rendered, a value changed and commented, read back checked.
#[test]
fn any_record_round_trips_through_an_overlay() {
    let f = fixture();
    let r = f.root.join("run.yaml");
    fs::write(
        &r,
        "run_id: r-1\ncreated_at: \"2026-12-01T10:00:00Z\"\nmode: strict\ntool: mill\nstatus: OK\n",
    )
    .unwrap();
    let o = aslctl(&f.store, &["record", "put", "--type", "asl/run", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let rec = out(&o).trim().to_string();
    let y = f.root.join("o.yaml");
    convert(&f, "cbor", "yaml", &rec, &["-o", y.to_str().unwrap()]);
    let text = fs::read_to_string(&y).unwrap();
    assert_eq!(pyyaml(&y)["body"], show(&f, &rec)["body"]);
    let back = convert(&f, "yaml", "cbor", &format!("file:{}", y.display()), &[]);
    assert_eq!(back["output"].as_str(), Some(&*rec), "unedited: the same record");
    let edited = text.replace(
        "  status: \"OK\"\n",
        "  # re-run after the fix\n  status: \"BLOCKED\"\n",
    );
    assert_ne!(edited, text);
    fs::write(&y, edited).unwrap();
    let back = convert(&f, "yaml", "cbor", &format!("file:{}", y.display()), &[]);
    assert_eq!(show(&f, back["output"].as_str().unwrap())["body"]["status"], "BLOCKED");
    let log = show(&f, back["log"].as_str().unwrap())["body"].clone();
    assert_eq!(log["changed"], serde_json::json!(["body.status"]));
    assert_eq!(log["annotations"][0]["at"], "body.status");
    assert_eq!(log["type"], "asl/run");
    // A value the schema refuses is refused here too.
    fs::write(&y, text.replace("  status: \"OK\"\n", "  status: \"MAYBE\"\n")).unwrap();
    let o = yaml_to_cbor(&f, &y);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("status"), "{}", err(&o));
}

/// `file:` with `--from hdf5` ingests the file first, as `h5 ingest` does:
/// the same index, so the same template.
#[test]
fn an_hdf5_file_can_be_converted_straight_from_disk() {
    let f = fixture();
    let t = convert(&f, "hdf5", "cbor", &f.file, &[]);
    let fresh = f.root.join("fresh");
    let h5 = f.root.join("heat.h5");
    let o = aslctl(
        &fresh,
        &[
            "--json",
            "convert",
            "--from",
            "hdf5",
            "--to",
            "cbor",
            &format!("file:{}", h5.display()),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(r["output"], t["output"]);
    assert_eq!(r["input"].as_str(), Some(&*f.index));
}
