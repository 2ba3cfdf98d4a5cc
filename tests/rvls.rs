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

#[test]
fn the_seeds_queries_trajectories_by_outcome_and_the_latest_of_a_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let trajectory = |id: &str, outcome: &str, minute: u32| {
        TRAJECTORY
            .replace("\"t1\"", &format!("{id:?}"))
            .replace("\"success\"", &format!("{outcome:?}"))
            .replace("10:00:01", &format!("10:{minute:02}:01"))
    };
    let lines = [
        trajectory("t1", "success", 1),
        trajectory("t2", "failure", 2),
        trajectory("t3", "success", 3),
        trajectory("t4", "success", 4),
        EWC.to_string(),
    ];
    let f = dir.path().join("a.rvls");
    fs::write(&f, rvls(&lines.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    let o = aslctl(&store, &["--json", "import", "rvls", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let first: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let ids: Vec<&str> = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();

    // The two latest successful trajectories, newest first.
    let found = out(&aslctl(
        &store,
        &[
            "find",
            "--label",
            "rvls.outcome=success",
            "--newest-first",
            "--limit",
            "2",
        ],
    ));
    let got: Vec<&str> = found.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(got, [ids[3], ids[2]], "{found}");
    assert!(
        found.lines().next().unwrap().ends_with("2026-11-30T10:04:01Z"),
        "{found}"
    );
    // Oldest first is still the default, with the same limit keeping the newest.
    let found = out(&aslctl(
        &store,
        &["find", "--label", "rvls.outcome=success", "--limit", "2"],
    ));
    let got: Vec<&str> = found.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(got, [ids[2], ids[3]], "{found}");

    // EWC states have no time in the seed's format; each is dated by its
    // import, so the latest update comes first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let g = dir.path().join("b.rvls");
    fs::write(&g, rvls(&[&EWC.replace("\"tasks_learned\":2", "\"tasks_learned\":3")])).unwrap();
    let o = aslctl(&store, &["--json", "import", "rvls", g.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let second: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let found = out(&aslctl(&store, &["find", "--label", "rvls.kind=ewc", "--newest-first"]));
    let got: Vec<&str> = found.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(got, [second["records"][0].as_str().unwrap(), ids[4]], "{found}");
    assert!(
        !found.contains("1970-01-01"),
        "every state has its import's time: {found}"
    );
    let o = aslctl(
        &store,
        &[
            "--json",
            "find",
            "--label",
            "rvls.kind=ewc",
            "--newest-first",
            "--limit",
            "1",
        ],
    );
    let v = common::ndjson(&out(&o));
    assert_eq!(v[0]["id"], second["records"][0]);

    // The same through the HTTP API.
    let srv = common::server::start_on(tempfile::tempdir().unwrap(), store.clone(), &[], None);
    let get = |q: &str| {
        let (code, body) = common::server::curl(&[&format!("{}/v1/find?{q}", srv.url)]);
        assert_eq!(code, 200, "{q}: {}", String::from_utf8_lossy(&body));
        let v = common::server::json(&body);
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["subject"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("label=rvls.outcome=success&order=newest&limit=2"), [ids[3], ids[2]]);
    assert_eq!(get("label=rvls.outcome=success&limit=2"), [ids[2], ids[3]]);
    assert_eq!(
        get("label=rvls.kind=ewc&order=newest")[0],
        second["records"][0].as_str().unwrap()
    );
    let (code, body) = common::server::curl(&[&format!("{}/v1/find?order=sideways", srv.url)]);
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("sideways"));
    srv.terminate();
}
