//! Labels, queries and run records through the real `aslctl`: `label`,
//! `labels`, `find`, `reindex`, `runs ls|prune`, the derived index thrown
//! away or damaged and rebuilt, and bad input refused with nothing written.

use std::fs;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

fn ids(text: &str) -> Vec<String> {
    text.lines().map(|l| l[..64].to_string()).collect()
}

fn put_text(store: &std::path::Path, dir: &std::path::Path, name: &str, body: &str) -> String {
    let f = dir.join(name);
    fs::write(&f, body).unwrap();
    ok(aslctl(store, &["ingest", f.to_str().unwrap()]))[..64].to_string()
}

#[test]
fn labels_are_found_by_key_media_type_and_time_and_survive_a_lost_index() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let a = put_text(&store, tmp.path(), "a.csv", "x,y\n1,2\n");
    let b = put_text(&store, tmp.path(), "b.txt", "hello\n");
    let la = ok(aslctl(
        &store,
        &["label", &a, "tool=mill", "status=BLOCKED", "--media-type", "text/csv"],
    ));
    ok(aslctl(&store, &["label", &b[..12], "tool=mill"]));
    ok(aslctl(&store, &["label", &b, "status=OK"]));

    // The artifact's id does not change: its bytes are as they were.
    assert_eq!(ok(aslctl(&store, &["cat", &a])), "x,y\n1,2\n");
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    let mut got = ids(&ok(aslctl(&store, &["find", "--label", "tool=mill"])));
    got.sort();
    assert_eq!(got, both);
    assert_eq!(
        ids(&ok(aslctl(
            &store,
            &["find", "--label", "tool=mill", "--label", "status=OK"]
        ))),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&ok(aslctl(&store, &["find", "--media-type", "text/csv"]))),
        vec![a.clone()]
    );
    assert_eq!(ok(aslctl(&store, &["find", "--label", "tool=lathe"])), "");
    assert_eq!(
        ok(aslctl(
            &store,
            &["find", "--since", "2000-01-01", "--until", "2000-01-02"]
        )),
        ""
    );
    let today = asl::records::time::now()[..10].to_string();
    assert_eq!(
        ids(&ok(aslctl(
            &store,
            &["find", "--since", &today, "--media-type", "text/csv"]
        ))),
        vec![a.clone()]
    );

    // Labels of one artifact: every annotation, merged in JSON.
    let shown: serde_json::Value = serde_json::from_str(&ok(aslctl(&store, &["--json", "labels", &b]))).unwrap();
    assert_eq!(shown["labels"], serde_json::json!({"tool": "mill", "status": "OK"}));
    assert_eq!(shown["annotations"].as_array().unwrap().len(), 2);
    let text = ok(aslctl(&store, &["labels", &a]));
    assert!(
        text.starts_with(la.trim()) && text.contains("status=BLOCKED tool=mill media_type=text/csv"),
        "{text}"
    );

    // Removing an annotation takes its labels out of the answers.
    ok(aslctl(&store, &["rm", la.trim()]));
    assert_eq!(
        ids(&ok(aslctl(&store, &["find", "--label", "tool=mill"]))),
        vec![b.clone()]
    );
    // Removing the subject hides it even while its annotations stay.
    ok(aslctl(&store, &["rm", &b]));
    assert_eq!(ok(aslctl(&store, &["find", "--label", "tool=mill"])), "");

    // The index is derived: deleted or damaged, it is rebuilt from the records.
    ok(aslctl(&store, &["ingest", tmp.path().join("b.txt").to_str().unwrap()]));
    let idx = store.join("derived/query");
    fs::remove_dir_all(&idx).unwrap();
    let o = aslctl(&store, &["find", "--label", "status=OK"]);
    assert!(err(&o).contains("query index rebuilt: 2 records"), "{}", err(&o));
    assert_eq!(ids(&out(&o)), vec![b.clone()]);
    fs::write(idx.join("version"), vec![0x5a; 64]).unwrap();
    let o = aslctl(&store, &["find", "--label", "status=OK"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("did not open"), "{}", err(&o));
    assert_eq!(ids(&out(&o)), vec![b.clone()]);
    let o = aslctl(&store, &["--json", "reindex"]);
    let r: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(r["records"], 2);
}

#[test]
fn bad_labels_and_queries_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let a = put_text(&store, tmp.path(), "a", "a");
    let before = ok(aslctl(&store, &["ls"]));
    for (args, want) in [
        (vec!["label", &a, "tool="], "empty value"),
        (vec!["label", &a, "=mill"], "label key: empty"),
        (vec!["label", &a, "toolmill"], "not key=value"),
        (vec!["label", &a], "at least one"),
        (vec!["find", "--since", "yesterday"], "not a date"),
        (vec!["find", "--label", "nokey"], "not key=value"),
        (vec!["runs", "prune", "--older-than", "soon"], "want a number"),
        (
            vec!["runs", "prune", "--older-than", "9d", "--status", "FINE"],
            "want OK, BLOCKED or ERROR",
        ),
    ] {
        let o = aslctl(&store, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
    let long = format!("k={}", "v".repeat(4097));
    let o = aslctl(&store, &["label", &a, &long]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = aslctl(&store, &["label", &"0".repeat(64), "tool=mill"]);
    assert_eq!(o.status.code(), Some(1), "labels on nothing: {}", err(&o));
    assert_eq!(ok(aslctl(&store, &["ls"])), before, "nothing was written");
}

#[test]
fn run_records_are_listed_by_status_and_pruned_by_age() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let now = asl::records::time::now();
    let mut by_status = std::collections::BTreeMap::new();
    for (i, (when, status, tool)) in [
        ("2020-01-01T00:00:00Z", "OK", "mill"),
        ("2020-01-02T00:00:00Z", "BLOCKED", "mill"),
        ("2020-01-03T00:00:00Z", "OK", "lathe"),
        (now.as_str(), "OK", "mill"),
    ]
    .into_iter()
    .enumerate()
    {
        let f = tmp.path().join(format!("run{i}.json"));
        fs::write(
            &f,
            format!(r#"{{"run_id": "r{i}", "created_at": "{when}", "mode": "fast", "tool": "{tool}", "status": "{status}"}}"#),
        )
        .unwrap();
        let id = ok(aslctl(
            &store,
            &["record", "put", "--type", "asl/run", f.to_str().unwrap()],
        ));
        by_status.insert(i, id.trim().to_string());
    }
    let ls = ok(aslctl(&store, &["runs", "ls", "--label", "tool=mill"]));
    assert_eq!(
        ids(&ls),
        vec![by_status[&0].clone(), by_status[&1].clone(), by_status[&3].clone()]
    );
    assert!(ls.lines().nth(1).unwrap().contains("  BLOCKED  mill  fast  r1"), "{ls}");
    let day = ok(aslctl(
        &store,
        &["runs", "ls", "--since", "2020-01-02", "--until", "2020-01-03"],
    ));
    assert_eq!(ids(&day), vec![by_status[&1].clone()]);
    // One run published: a view per visibility.
    ok(aslctl(&store, &["publish", &by_status[&3]]));
    let only = |v: &str| {
        ids(&ok(aslctl(
            &store,
            &["runs", "ls", "--label", "tool=mill", "--visibility", v],
        )))
    };
    assert_eq!(only("published"), vec![by_status[&3].clone()]);
    assert_eq!(only("internal"), vec![by_status[&0].clone(), by_status[&1].clone()]);

    let o = aslctl(
        &store,
        &["runs", "prune", "--older-than", "90d", "--status", "OK", "--dry-run"],
    );
    assert_eq!(ids(&ok(o)), vec![by_status[&0].clone(), by_status[&2].clone()]);
    assert_eq!(
        ids(&ok(aslctl(&store, &["runs", "ls"]))).len(),
        4,
        "a dry run removes nothing"
    );
    let o = aslctl(&store, &["runs", "prune", "--older-than", "90d", "--status", "OK"]);
    assert!(err(&o).contains("removed 2 run records"), "{}", err(&o));
    assert_eq!(
        ids(&ok(aslctl(&store, &["runs", "ls"]))),
        vec![by_status[&1].clone(), by_status[&3].clone()]
    );
    // Gone from CURRENT, so GC may take their bytes.
    let o = aslctl(&store, &["get", &by_status[&0]]);
    assert_eq!(o.status.code(), Some(1));
}

/// A store whose query index an earlier version wrote with fjall 2 (the
/// fixture `query-fjall2`, sealed as that version left it): fjall 3 cannot
/// read it, so it is replaced and rebuilt from the records on first use,
/// and finds what it found before.
#[test]
fn an_index_written_by_fjall_2_is_rebuilt_on_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/query-fjall2"),
        &store,
    );
    let o = aslctl(&store, &["find", "--label", "tool=mill"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("query index did not open"), "{}", err(&o));
    assert!(err(&o).contains("query index rebuilt: 1 records"), "{}", err(&o));
    assert_eq!(
        ids(&out(&o)),
        vec!["76b2ee0134c6e5678a1da614f652f0e84071e3c515b55956f986a21e804da3fe".to_string()]
    );
    // Rebuilt and sealed: the next command opens it as it is.
    let o = aslctl(&store, &["find", "--label", "status=OK"]);
    assert_eq!(err(&o), "", "opened without a rebuild");
    assert_eq!(ids(&out(&o)).len(), 1);
}
