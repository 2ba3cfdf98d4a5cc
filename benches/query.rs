//! Label queries over many annotated artifacts: the query index's build,
//! catch-up and query times.
//!
//! `cargo bench --bench query` stores `ASL_QUERY_N` artifacts (default
//! 1 000 000, 64 B each) with one annotation each: `tool` one of 10, `status`
//! one of 3, `mode` one of 3, a media type one of 2, and a `created_at`
//! spread over 100 days (commit every 10 000). Then it times: the first open
//! of the query index (a full scan of the store), `reindex`, a catch-up after
//! 1 000 more annotations, and queries (median of 7 runs, after one warm-up),
//! each with its hit count. Results go to stdout as one JSON object. The
//! store lives in `ASL_QUERY_DIR` (default a temporary directory).

use std::time::Instant;

use asl::records::labels::{annotate, Annotation};
use asl::records::query::{Query, QueryIndex};
use asl::records::time;
use asl::StoreOptions;

const TOOLS: [&str; 10] = [
    "mill", "lathe", "drill", "saw", "press", "grind", "weld", "paint", "cut", "bend",
];
const STATUS: [&str; 3] = ["OK", "BLOCKED", "ERROR"];
const MODES: [&str; 3] = ["fast", "safe", "full"];
const BASE: u64 = 1_780_000_000;

fn annotation(store: &asl::Store, i: u64) -> Annotation {
    let mut bytes = [0u8; 64];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes[8..16].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let subject = store.put(&bytes).unwrap();
    let mut a = Annotation::new(subject)
        .label("tool", TOOLS[(i % 10) as usize])
        .label("status", STATUS[(i / 10 % 3) as usize])
        .label("mode", MODES[(i / 30 % 3) as usize])
        .media_type(["text/csv", "application/x-hdf5"][(i / 90 % 2) as usize]);
    a.created_at = Some(time::format(BASE + (i * 8_640) % (100 * 86_400)));
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("ASL_QUERY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("ASL_QUERY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("store"));
    let _ = std::fs::remove_dir_all(&dir);
    let store = StoreOptions::new().create(true).open(&dir).unwrap();
    let t = Instant::now();
    for i in 0..n {
        annotate(&store, &annotation(&store, i)).unwrap();
        if i % 10_000 == 9_999 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
    let put_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (mut index, first) = QueryIndex::open(&store).unwrap();
    let first_s = t.elapsed().as_secs_f64();
    assert!(first.rebuilt && first.indexed as u64 == n);
    let t = Instant::now();
    index.rebuild(&store).unwrap();
    let rebuild_s = t.elapsed().as_secs_f64();
    let index_bytes = index.disk_space().unwrap();

    for i in n..n + 1_000 {
        annotate(&store, &annotation(&store, i)).unwrap();
    }
    store.commit().unwrap();
    let t = Instant::now();
    let r = index.refresh(&store).unwrap();
    let catch_up_s = t.elapsed().as_secs_f64();
    assert!(!r.rebuilt && r.indexed == 1_000, "{r:?}");

    let day = |d: u64| BASE + d * 86_400;
    let label = |k: &str, v: &str| (k.to_string(), v.to_string());
    let queries: Vec<(&str, Query)> = vec![
        (
            "tool=mill & status=BLOCKED, 10 days",
            Query {
                labels: vec![label("tool", "mill"), label("status", "BLOCKED")],
                since: Some(day(10)),
                until: Some(day(20)),
                ..Query::default()
            },
        ),
        (
            "tool=mill & status=BLOCKED & mode=safe, all time",
            Query {
                labels: vec![label("tool", "mill"), label("status", "BLOCKED"), label("mode", "safe")],
                ..Query::default()
            },
        ),
        (
            "media_type=text/csv, one day",
            Query {
                media_type: Some("text/csv".into()),
                since: Some(day(42)),
                until: Some(day(43)),
                ..Query::default()
            },
        ),
        (
            "status=OK, all time (a third of the store)",
            Query {
                labels: vec![label("status", "OK")],
                ..Query::default()
            },
        ),
        (
            "run_id=none (nothing)",
            Query {
                labels: vec![label("run_id", "none")],
                ..Query::default()
            },
        ),
    ];
    let mut results = Vec::new();
    for (name, q) in &queries {
        let hits = index.find(q).unwrap().len();
        let times: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                let h = index.find(q).unwrap();
                assert_eq!(h.len(), hits);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        results.push(serde_json::json!({"query": name, "hits": hits, "median_ms": median(times)}));
    }
    println!(
        "{}",
        serde_json::json!({
            "artifacts": n, "annotate_and_put_s": put_s, "first_open_s": first_s, "rebuild_s": rebuild_s,
            "catch_up_1000_s": catch_up_s, "index_bytes": index_bytes, "queries": results,
        })
    );
}
