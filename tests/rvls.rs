//! `aslctl import rvls`: a good file becomes typed, labelled, queryable
//! records in one commit; every kind of bad file is refused with the line
//! that is wrong, and nothing is stored.

use std::fs;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

const PATTERN: &str = r#"{"type":"pattern","data":{"id":"p1","strategy":"split, then sort","embedding_weights":{"sort":0.5,"split":0.25},"success_rate":0.8,"use_count":3,"domain":"text","quality":0.9,"is_long_term":true,"last_used":"2026-11-30T10:00:00.123456Z"}}"#;
const TRAJECTORY: &str = r#"{"type":"trajectory","data":{"id":"t1","steps":[{"input":"a","output":"b","duration_ms":12,"confidence":0.7}],"outcome":"success","duration_ms":12,"domain":"text","created_at":"2026-11-30T10:00:01+00:00"}}"#;
const EWC: &str =
    r#"{"type":"ewc","data":{"tasks_learned":2,"protection_strength":1000.0,"task_weights":{"t":[0.1,0.2]}}}"#;

fn rvls(lines: &[&str]) -> String {
    let mut s = String::from("RVLS\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("REND");
    s
}

#[test]
fn a_good_file_becomes_labelled_records_in_one_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = dir.path().join("learn.rvls");
    fs::write(&f, rvls(&[PATTERN, "", TRAJECTORY, EWC])).unwrap();
    let o = aslctl(
        &store,
        &[
            "--json",
            "import",
            "rvls",
            f.to_str().unwrap(),
            "--label",
            "team=search",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(
        (r["patterns"].as_u64(), r["trajectories"].as_u64(), r["ewc"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    let records: Vec<String> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();

    let found = out(&aslctl(
        &store,
        &["find", "--label", "rvls.domain=text", "--label", "team=search"],
    ));
    assert_eq!(found.lines().count(), 2, "{found}");
    let found = out(&aslctl(
        &store,
        &["find", "--type", "rvls/trajectory", "--since", "2026-11-30"],
    ));
    assert!(found.starts_with(&records[1]), "{found}");
    let shown: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&store, &["record", "show", &records[0]]))).unwrap();
    assert_eq!(shown["type"], "rvls/pattern");
    assert_eq!(shown["known"], true);
    assert_eq!(shown["body"]["strategy"], "split, then sort");
    assert_eq!(shown["body"]["labels"]["rvls.id"], "p1");
    let shown: serde_json::Value =
        serde_json::from_str(&out(&aslctl(&store, &["record", "show", &records[1]]))).unwrap();
    assert_eq!(
        shown["body"]["created_at"], "2026-11-30T10:00:01Z",
        "+00:00 is UTC, written as Z"
    );
    // The file itself is stored too, byte for byte.
    let src = aslctl(&store, &["cat", r["source"].as_str().unwrap()]);
    assert_eq!(src.stdout, fs::read(&f).unwrap());
    // The import record lists what it made.
    let imp: serde_json::Value = serde_json::from_str(&out(&aslctl(
        &store,
        &["record", "show", r["import"].as_str().unwrap()],
    )))
    .unwrap();
    assert_eq!(imp["body"]["records"].as_array().unwrap().len(), 3);
    assert_eq!(imp["body"]["source_name"], "learn.rvls");
}

#[test]
fn bad_files_name_the_line_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // A store with something in it: a refused import must leave it as it was.
    let seed = dir.path().join("seed.txt");
    fs::write(&seed, "seed").unwrap();
    assert!(aslctl(&store, &["ingest", seed.to_str().unwrap()]).status.success());
    let before = out(&aslctl(&store, &["ls"]));
    let missing_field = PATTERN.replace(r#""use_count":3,"#, "");
    let wrong_type = PATTERN.replace(r#""use_count":3"#, r#""use_count":"three""#);
    let unknown_field = PATTERN.replace(r#""use_count":3"#, r#""use_count":3,"extra":1"#);
    let local_time = TRAJECTORY.replace("+00:00", "+02:00");
    let cases: Vec<(String, &str)> = vec![
        (rvls(&[PATTERN]).replacen("RVLS", "RVLX", 1), "line 1: not an RVLS file"),
        (
            rvls(&[PATTERN]).trim_end_matches("REND").to_string(),
            "no REND end marker",
        ),
        (rvls(&[PATTERN, "{not json"]), "line 3: not JSON"),
        (
            rvls(&[PATTERN, &missing_field]),
            "line 3: pattern: missing field \"use_count\"",
        ),
        (
            rvls(&[&wrong_type]),
            "line 2: pattern.use_count: \"three\" is not a non-negative integer",
        ),
        (rvls(&[&unknown_field]), "line 2: pattern: unknown field \"extra\""),
        (
            rvls(&[r#"{"type":"model","data":{}}"#]),
            "line 2: type \"model\" is not pattern, trajectory or ewc",
        ),
        (rvls(&[&local_time]), "line 2: trajectory.created_at"),
        (rvls(&[EWC, EWC]), "line 3: a second ewc state (the first is on line 2)"),
        (
            rvls(&["[1]", PATTERN, "{\"type\":\"pattern\"}"]),
            "line 2: not a JSON object; line 4: pattern: no \"data\"",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.rvls"));
        fs::write(&f, text).unwrap();
        let o = aslctl(&store, &["import", "rvls", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "case {i}: {}", err(&o));
        assert!(err(&o).contains(want), "case {i}: {} lacks {want:?}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "one line: {}", err(&o));
        assert_eq!(out(&aslctl(&store, &["ls"])), before, "case {i}: nothing stored");
    }
    // Never to a store that did not exist either.
    let f = dir.path().join("bad0.rvls");
    let none = dir.path().join("none");
    assert_eq!(
        aslctl(&none, &["import", "rvls", f.to_str().unwrap()]).status.code(),
        Some(2)
    );
    assert!(!none.exists());
}

/// `aslctl export rvls` writes what was imported back as an RVLS file: by
/// import or by labels, each line JSON with `type` and `data`, and the file
/// imports into another store as the very same records.
#[test]
fn export_writes_a_file_that_imports_to_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let f = dir.path().join("learn.rvls");
    fs::write(&f, rvls(&[PATTERN, TRAJECTORY, EWC])).unwrap();
    let import = |store: &std::path::Path, file: &std::path::Path| -> serde_json::Value {
        let o = aslctl(
            store,
            &[
                "--json",
                "import",
                "rvls",
                file.to_str().unwrap(),
                "--label",
                "team=search",
            ],
        );
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_str(&out(&o)).unwrap()
    };
    let first = import(&a, &f);

    let g = dir.path().join("back.rvls");
    let o = aslctl(
        &a,
        &[
            "export",
            "rvls",
            "--import",
            first["import"].as_str().unwrap(),
            "-o",
            g.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = fs::read_to_string(&g).unwrap();
    assert!(text.starts_with("RVLS\n") && text.ends_with("\nREND"), "{text}");
    let kinds: Vec<String> = text
        .lines()
        .skip(1)
        .take_while(|l| *l != "REND")
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["data"].is_object() && v["data"].get("labels").is_none(), "{l}");
            v["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["pattern", "trajectory", "ewc"]);
    // The same records, in the same order, from the exported file.
    let second = import(&b, &g);
    assert_eq!(second["records"], first["records"]);
    // By labels, to standard output: the same file.
    let o = aslctl(&a, &["export", "rvls", "--label", "team=search"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), text);
    let o = aslctl(&a, &["export", "rvls", "--label", "team=nobody"]);
    assert_eq!(out(&o), "RVLS\nREND");

    // A second import's EWC state beside the first: no one file holds both.
    let h = dir.path().join("more.rvls");
    fs::write(&h, rvls(&[&EWC.replace("\"tasks_learned\":2", "\"tasks_learned\":3")])).unwrap();
    import(&a, &h);
    let o = aslctl(&a, &["export", "rvls"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("two ewc states"), "{}", err(&o));
    // Not an import record.
    let o = aslctl(&a, &["export", "rvls", "--import", first["source"].as_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
}
