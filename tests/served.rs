//! Upkeep of a served store: everything `aslctl` does to a store, while
//! `aslctl serve` holds it — over the admin API, through `aslctl
//! --server`, and through the server the store's lock names.

mod common;

use std::process::Command;

use common::server::*;
use common::{noise, stderr_of as err, stdout_of as out};

/// Upkeep of a served store over HTTP, with admin tokens only: removal
/// (refused for a writer, 404 the second time), pins, a snapshot deleted,
/// GC reclaiming the removed bytes while serving, figures, verify, seal —
/// and `aslctl` run on the served store names the server in its refusal.
#[test]
fn a_served_store_is_kept_up_over_http() {
    let tokens = r#"{"tokens": [
        {"name": "root", "token": "admin-token-0123456789", "scope": "admin"},
        {"name": "ci", "token": "write-token-0123456789", "scope": "write"},
        {"name": "peer", "token": "peer-read-token-0123456789", "scope": "read", "sees": "published"}]}"#;
    let s = start(&[], Some(tokens));
    let (root, writer) = (
        "Authorization: Bearer admin-token-0123456789",
        "Authorization: Bearer write-token-0123456789",
    );
    let call = |who: &str, method: &str, path: &str, body: Option<&str>| {
        let url = format!("{}{path}", s.url);
        let mut args = vec!["-H", who, "-X", method];
        if let Some(b) = body {
            args.extend(["-H", "content-type: application/json", "--data-binary", b]);
        }
        args.push(&url);
        curl(&args)
    };
    let files = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for seed in [1, 2] {
        let p = files.path().join(format!("f{seed}"));
        std::fs::write(&p, noise(seed, 300_000)).unwrap();
        let data = format!("@{}", p.display());
        let (code, b) = curl(&[
            "-H",
            root,
            "-X",
            "PUT",
            "--data-binary",
            &data,
            &format!("{}/v1/artifacts", s.url),
        ]);
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
        ids.push(json(&b)["id"].as_str().unwrap().to_string());
    }
    let (gone, kept) = (&ids[0], &ids[1]);
    let (code, b) = call(root, "POST", "/v1/seal", None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["sealed"]["segment"], 1, "the segment the puts went to");
    assert_eq!(
        json(&call(root, "POST", "/v1/seal", None).1)["sealed"],
        serde_json::Value::Null
    );
    // The metrics count internal artifacts: not for a published-only token.
    assert_eq!(call(writer, "GET", "/metrics", None).0, 200);
    let peer = "Authorization: Bearer peer-read-token-0123456789";
    assert_eq!(call(peer, "GET", "/metrics", None).0, 403);

    let pin = format!(r#"{{"id": "{kept}"}}"#);
    assert_eq!(call(writer, "PUT", "/v1/pins/keep", Some(&pin)).0, 403);
    assert_eq!(call(root, "PUT", "/v1/pins/keep", Some(&pin)).0, 201);
    let (code, b) = call(root, "GET", "/v1/pins", None);
    assert_eq!((code, json(&b)["pins"][0]["id"].as_str()), (200, Some(kept.as_str())));

    assert_eq!(call(root, "POST", "/v1/snapshots", Some(r#"{"name": "s1"}"#)).0, 201);
    assert_eq!(call(root, "DELETE", "/v1/snapshots/s1", None).0, 200);
    assert_eq!(call(root, "DELETE", "/v1/snapshots/s1", None).0, 404);

    assert_eq!(call(writer, "DELETE", &format!("/v1/artifacts/{gone}"), None).0, 403);
    let (code, b) = call(root, "DELETE", &format!("/v1/artifacts/{gone}"), None);
    assert_eq!((code, json(&b)["removed"][0].as_str()), (200, Some(gone.as_str())));
    assert_eq!(call(root, "DELETE", &format!("/v1/artifacts/{gone}"), None).0, 404);
    assert_eq!(call(root, "GET", &format!("/v1/artifacts/{gone}"), None).0, 404);
    let many = format!(r#"{{"ids": ["{gone}", "{}"]}}"#, "0".repeat(64));
    let (code, b) = call(root, "POST", "/v1/artifacts:remove", Some(&many));
    assert_eq!((code, json(&b)["not_found"].as_array().map(Vec::len)), (200, Some(2)));

    // Ephemeral: admin scope, since it schedules a removal.
    let (code, b) = call(root, "PUT", "/v1/artifacts", Some("scratch bytes"));
    let scratch = json(&b)["id"].as_str().unwrap().to_string();
    assert_eq!(code, 201);
    let expiry = format!("/v1/artifacts/{scratch}/expiry");
    assert_eq!(call(writer, "POST", &expiry, Some(r#"{"ttl": 0}"#)).0, 403);
    for bad in [
        r#"{}"#,
        r#"{"ttl": 1, "until": "2000-01-01"}"#,
        r#"{"until": "soon"}"#,
        r#"{"ttl": -1}"#,
    ] {
        assert_eq!(call(root, "POST", &expiry, Some(bad)).0, 400, "{bad}");
    }
    let (code, b) = call(root, "POST", &expiry, Some(r#"{"until": "2000-01-01"}"#));
    assert_eq!(
        (code, json(&b)["expires_at"].as_str()),
        (201, Some("2000-01-01T00:00:00Z"))
    );
    let nowhere = format!("/v1/artifacts/{}/expiry", "0".repeat(64));
    assert_eq!(call(root, "POST", &nowhere, Some(r#"{"ttl": 1}"#)).0, 404);

    let (code, b) = call(root, "POST", "/v1/gc", Some(r#"{"threshold": 1.0}"#));
    let gc = json(&b);
    assert_eq!(code, 200, "{gc}");
    assert!(gc["reclaimed_bytes"].as_u64().unwrap() > 0, "{gc}");
    assert_eq!(
        call(root, "GET", &format!("/v1/artifacts/{scratch}"), None).0,
        404,
        "expired at GC"
    );
    assert!(
        gc["physical_after"].as_u64().is_some()
            && gc["seconds"].as_f64().is_some()
            && gc["expired"].as_u64() == Some(1),
        "{gc}"
    );
    assert_eq!(call(root, "POST", "/v1/gc", Some(r#"{"threshold": 2}"#)).0, 400);
    let (code, b) = call(root, "GET", "/v1/stat", None);
    assert_eq!((code, json(&b)["artifacts"].as_u64()), (200, Some(1)));
    assert_eq!(call(writer, "GET", "/v1/stat", None).0, 403);
    let (code, b) = call(root, "POST", "/v1/verify", None);
    let v = json(&b);
    assert_eq!(code, 200);
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(v["artifacts"].as_u64().unwrap() >= 1, "{v}");
    // In budget: at least one segment, the rotation recorded.
    let (code, b) = call(root, "POST", "/v1/verify?budget=1&since_last=false", None);
    let v = json(&b);
    assert_eq!(
        (code, v["partial"].as_bool(), v["segments"].as_u64()),
        (200, Some(true), Some(1)),
        "{v}"
    );
    assert!(v["scrub"]["oldest_verified_at"].as_u64().is_some(), "{v}");
    for bad in ["sample=2", "budget=1&sample=0.5", "budget=lots", "every=1"] {
        assert_eq!(call(root, "POST", &format!("/v1/verify?{bad}"), None).0, 400, "{bad}");
    }
    let (code, b) = call(root, "GET", &format!("/v1/artifacts/{kept}"), None);
    assert_eq!((code, b), (200, noise(2, 300_000)));
    assert_eq!(call(root, "DELETE", "/v1/pins/keep", None).0, 200);
    assert_eq!(call(root, "DELETE", "/v1/pins/keep", None).0, 404);

    // The CLI on the served store: what writes goes through the server its
    // lock names (with the token from $ASL_TOKEN), reads open the store
    // beside it, and --server sends any upkeep there.
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut c = Command::new(common::aslctl_bin());
        c.arg("--store").arg(&s.store).args(args).env_remove("ASL_STORE");
        match token {
            Some(t) => c.env("ASL_TOKEN", t),
            None => c.env_remove("ASL_TOKEN"),
        };
        c.output().unwrap()
    };
    let admin = Some("admin-token-0123456789");
    let o = cli(None, &["rm", kept]);
    assert_eq!(o.status.code(), Some(2), "no token: refused by the server");
    assert!(
        err(&o).contains("acting through the server") && err(&o).contains(&s.url),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("401"), "{}", err(&o));
    let o = cli(admin, &["pin", "keep2", kept]);
    assert!(o.status.success() && out(&o).contains("pinned"), "{}", err(&o));
    let o = cli(None, &["--json", "pins"]);
    assert!(
        out(&o).contains("keep2"),
        "a local read sees the server's pin: {}",
        out(&o)
    );
    let o = cli(
        None,
        &[
            "--server",
            &s.url,
            "--token",
            "admin-token-0123456789",
            "--json",
            "stat",
        ],
    );
    assert_eq!(json(&o.stdout)["artifacts"].as_u64(), Some(1), "{}", err(&o));
    let o = cli(admin, &["--json", "gc"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(json(&o.stdout)["physical_after"].as_u64().is_some(), "{}", out(&o));
    let o = cli(admin, &["snapshot", "create", "s9"]);
    assert!(
        o.status.success() && out(&o).ends_with(" s9\n"),
        "{}{}",
        out(&o),
        err(&o)
    );
    let o = cli(admin, &["snapshot", "delete", "s9"]);
    assert_eq!(out(&o), "deleted s9\n", "{}", err(&o));
    let o = cli(admin, &["rm", &kept[..12]]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("full id"), "{}", err(&o));
    assert!(cli(admin, &["unpin", "keep2"]).status.success());
    let o = cli(admin, &["rm", kept]);
    assert_eq!(out(&o), format!("removed {kept}\n"), "{}", err(&o));
    let o = cli(admin, &["rm", kept]);
    assert_eq!(o.status.code(), Some(1), "not there any more: {}", err(&o));
    let o = cli(admin, &["--server", &s.url, "ls"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("does not act through a server"), "{}", err(&o));
    let o = cli(None, &["verify"]);
    assert!(o.status.success(), "a scrub beside the server: {}", err(&o));
    let o = cli(admin, &["--json", "verify", "--since-last"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out(&o)).unwrap()["partial"],
        true
    );
    // A server that is not there: one line saying why, exit 2.
    let o = cli(admin, &["--server", "http://127.0.0.1:9", "stat"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).to_lowercase().contains("refused"), "{}", err(&o));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
}

/// GC over HTTP while uploads go on. Every upload is acknowledged and reads
/// back, the run reclaims what was removed, the store verifies clean — and
/// uploads are answered while the run goes on: it takes the writer one batch
/// of copies at a time, never for the whole run, so uploads both start and
/// finish between its start and its end (about 30 in a 0.8 s run here; 1
/// when the run was made to hold the writer throughout).
#[test]
fn gc_runs_online_while_uploads_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    {
        // Nine in ten of 30,000 artifacts removed, spread over every segment.
        let s = asl::StoreOptions::new()
            .create(true)
            .segment_target(1 << 20)
            .open(&store)
            .unwrap();
        let items: Vec<Vec<u8>> = (0..30_000).map(|i| noise(i, 2048)).collect();
        let puts = s.put_batch(&items).unwrap();
        for (i, p) in puts.iter().enumerate() {
            if i % 10 != 0 {
                s.remove(p).unwrap();
            }
        }
        s.close().unwrap();
    }
    let s = start_on(dir, store, &[], None);
    let files = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let (gc, uploads) = std::thread::scope(|scope| {
        let uploader = scope.spawn(|| {
            let mut done = Vec::new();
            let mut seed = 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let p = files.path().join(format!("u{seed}"));
                std::fs::write(&p, noise(seed, 5000)).unwrap();
                let t0 = Instant::now();
                let (code, b) = curl(&[
                    "-X",
                    "PUT",
                    "--data-binary",
                    &format!("@{}", p.display()),
                    &format!("{}/v1/artifacts", s.url),
                ]);
                done.push((
                    seed,
                    code,
                    json(&b)["id"].as_str().map(String::from),
                    t0,
                    Instant::now(),
                ));
                seed += 1;
            }
            done
        });
        // Let uploads start first, so the run begins among them.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let start = Instant::now();
        let (code, b) = curl(&[
            "-X",
            "POST",
            "-d",
            r#"{"threshold": 0.95}"#,
            &format!("{}/v1/gc", s.url),
        ]);
        let end = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        ((code, json(&b), start, end), uploader.join().unwrap())
    });
    let (code, report, start, end) = gc;
    assert_eq!(code, 200, "{report}");
    assert!(report["reclaimed_bytes"].as_u64().unwrap() > 30 << 20, "{report}");
    // A run that held the writer throughout would let through only the one
    // or two uploads answered before its request reached the server.
    let during = uploads.iter().filter(|u| u.3 >= start && u.4 <= end).count();
    assert!(
        during >= 5,
        "{} uploads answered during a {:?} GC run ({} in all): GC held the writer throughout",
        during,
        end - start,
        uploads.len()
    );
    for (seed, code, id, _, _) in &uploads {
        assert_eq!(*code, 201, "upload {seed}");
        let (code, body) = curl(&[&format!("{}/v1/artifacts/{}", s.url, id.as_deref().unwrap())]);
        assert_eq!((code, body.len()), (200, 5000), "upload {seed}");
        assert_eq!(body, noise(*seed, 5000), "upload {seed}");
    }
    let (code, b) = curl(&["-X", "POST", &format!("{}/v1/verify", s.url)]);
    assert_eq!((code, json(&b)["problems"].as_array().map(Vec::len)), (200, Some(0)));
    eprintln!(
        "GC over HTTP: {:?}, {} uploads answered during it, {} in all",
        end - start,
        during,
        uploads.len()
    );
}

/// `/metrics` after some traffic, parsed by the Prometheus project's own
/// Python parsers (OpenMetrics, and the older text format): requests by
/// route template and status, a cache hit and a miss, body bytes both ways,
/// latency histograms, a GC run, the store's figures and the process's RSS
/// — and no label naming an artifact. The access log, as JSON lines, has
/// one object per request naming its route.
#[test]
fn metrics_are_scraped_and_the_log_is_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (mut child, url) = listening(
        Command::new(common::aslctl_bin())
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--block-cache", "3M"])
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let body = noise(5, 100_000);
    let file = dir.path().join("body");
    std::fs::write(&file, &body).unwrap();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let data = format!("@{}", file.display());
    assert_eq!(
        curl(&["-X", "PUT", "--data-binary", &data, &format!("{url}/cas/{sha}")]).0,
        201
    );
    assert_eq!(curl(&[&format!("{url}/cas/{sha}")]).0, 200);
    assert_eq!(curl(&[&format!("{url}/cas/{}", "0".repeat(64))]).0, 404);
    let id = blake3::hash(&body).to_hex().to_string();
    assert_eq!(curl(&[&format!("{url}/v1/artifacts/{id}")]).0, 200);
    assert_eq!(curl(&["-X", "POST", "-d", "{}", &format!("{url}/v1/gc")]).0, 200);
    // Counting the bytes keeps each body's length: small answers still go
    // out with Content-Length, not chunked.
    let (code, head) = curl(&["-s", "-D", "-", "-o", "/dev/null", &format!("{url}/v1/health")]);
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(code == 200 && head.contains("content-length: 15"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
    let (code, text) = curl(&[&format!("{url}/metrics")]);
    assert_eq!(code, 200);
    let text = String::from_utf8(text).unwrap();
    assert!(
        !text.contains(&id) && !text.contains(&sha),
        "a label names an artifact:\n{text}"
    );
    let check = r##"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
from prometheus_client.parser import text_string_to_metric_families as prom
text = sys.stdin.read()
samples = {}
for f in om(text):
    for s in f.samples:
        samples.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
legacy = sorted({f.name for f in prom(text.replace("# EOF\n", ""))})
print(json.dumps({"samples": samples, "legacy": legacy}))
"##;
    let mut py = Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let o = py.wait_with_output().unwrap();
    assert!(o.status.success(), "{}\n{text}", err(&o));
    let parsed = json(&o.stdout);
    let samples = &parsed["samples"];
    let value = |name: &str, want: &[(&str, &str)]| -> f64 {
        samples[name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .iter()
            .filter(|s| want.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    let get = [("route", "/v1/artifacts/{id}"), ("method", "GET"), ("status", "200")];
    assert_eq!(value("asl_http_requests_total", &get), 1.0, "{text}");
    assert_eq!(
        value("asl_cache_lookups_total", &[("protocol", "cas"), ("result", "hit")]),
        1.0
    );
    assert_eq!(
        value("asl_cache_lookups_total", &[("protocol", "cas"), ("result", "miss")]),
        1.0
    );
    assert!(value("asl_http_received_bytes_total", &[]) >= 100_000.0, "{text}");
    assert!(value("asl_http_sent_bytes_total", &[]) >= 200_000.0, "{text}");
    let lat = [("route", "/cas/{key}"), ("method", "GET")];
    assert_eq!(value("asl_http_request_duration_seconds_count", &lat), 2.0, "{text}");
    assert_eq!(value("asl_gc_runs_total", &[]), 1.0);
    // The bytes, the record of their SHA-256 and their cache entry.
    assert_eq!(value("asl_store_artifacts", &[]), 3.0, "{text}");
    assert_eq!(value("asl_cache_entries", &[]), 1.0, "{text}");
    assert!(value("asl_cache_size_bytes", &[]) >= 100_000.0, "{text}");
    assert!(value("asl_process_resident_memory_bytes", &[]) > 1e6);
    // The heap by its parts, each within its bound; --block-cache sets one.
    let part = |name: &str, p: &str| value(name, &[("part", p)]);
    assert_eq!(part("asl_memory_bound_bytes", "block_cache"), 3.0 * 1048576.0, "{text}");
    for p in ["block_cache", "index_memtable", "read_buffers", "query_cache"] {
        assert!(
            part("asl_memory_bytes", p) <= part("asl_memory_bound_bytes", p),
            "{p}: {text}"
        );
    }
    // The three puts' index records, and the cache entry's rows in the
    // query index, are in memory until written out.
    assert!(part("asl_memory_bytes", "index_memtable") > 0.0, "{text}");
    assert!(part("asl_memory_bytes", "query_memtables") > 0.0, "{text}");
    assert!(
        part("asl_heap_bytes", "in_use") > part("asl_memory_bytes", "index_memtable"),
        "{text}"
    );
    // The heap's figures come from the allocator the binary runs on.
    let allocator = if cfg!(feature = "jemalloc") {
        "jemalloc"
    } else {
        "glibc"
    };
    assert_eq!(value("asl_allocator_info", &[("name", allocator)]), 1.0, "{text}");
    if cfg!(feature = "jemalloc") {
        // The settings built in (src/bin/aslctl/jemalloc.rs), as jemalloc
        // reports them.
        let settings = "narenas=1 dirty_decay_ms=1000 muzzy_decay_ms=0";
        assert_eq!(value("asl_allocator_info", &[("settings", settings)]), 1.0, "{text}");
    }
    assert!(part("asl_heap_bytes", "free") > 0.0, "{text}");
    assert!(parsed["legacy"].as_array().unwrap().len() >= 10, "{parsed}");
    // A gRPC call that fails (no action result for this digest): HTTP 200,
    // and its gRPC status in the log line.
    let mut request = vec![0x12, 68, 0x0a, 64];
    request.extend_from_slice("0".repeat(64).as_bytes());
    request.extend_from_slice(&[0x10, 1]);
    let mut frame = vec![0];
    frame.extend_from_slice(&(request.len() as u32).to_be_bytes());
    frame.extend_from_slice(&request);
    let framed = dir.path().join("grpc-frame");
    std::fs::write(&framed, &frame).unwrap();
    let (code, _) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        &format!("@{}", framed.display()),
        &format!("{url}/build.bazel.remote.execution.v2.ActionCache/GetActionResult"),
    ]);
    assert_eq!(code, 200);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| json(l.as_bytes()))
        .collect();
    let put = lines.iter().find(|l| l["method"] == "PUT").expect("the PUT is logged");
    assert_eq!(
        (put["route"].as_str(), put["status"].as_u64()),
        (Some("/cas/{key}"), Some(201))
    );
    assert!(put["path"].as_str().unwrap().ends_with(&sha) && put["ms"].as_f64().is_some());
    let grpc = lines.last().unwrap();
    assert_eq!(
        (grpc["status"].as_u64(), grpc["grpc_status"].as_u64()),
        (Some(200), Some(5)),
        "{grpc}"
    );
    assert_eq!(put["grpc_status"], serde_json::Value::Null);
    assert_eq!(lines.len(), 8, "one line per request: {lines:?}");
}

/// `contrib/asl.service` passes `systemd-analyze verify` without a warning,
/// and its command line, run as written (the binary and the store moved to
/// this test's, the port to a free one), serves and stops cleanly on
/// SIGTERM, as systemd stops it.
#[test]
fn the_systemd_unit_verifies_and_its_command_serves() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/asl.service")).unwrap();
    let bin = common::aslctl_bin();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("asl.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/aslctl", bin)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (scripts/setup installs it)");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", err(&o));
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_string()
    };
    let store = value("Environment=ASL_STORE=");
    assert!(
        store.starts_with("/var/lib/asl/"),
        "the store is in the StateDirectory: {store}"
    );
    let exec = value("ExecStart=");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/aslctl"));
    let args: Vec<String> = words.map(|w| w.replace("127.0.0.1:7878", "127.0.0.1:0")).collect();
    let (mut child, url) = listening(
        Command::new(bin)
            .args(&args)
            .env("ASL_STORE", dir.path().join("store"))
            .stderr(std::process::Stdio::null()),
    );
    assert_eq!(curl(&[&format!("{url}/v1/health")]).0, 200);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}

/// `contrib/Containerfile`'s entry point, run as written (the binary, the
/// store, the tokens file and the address moved to this test's): it serves
/// with the tokens file and answers only a bearer of one. The image itself
/// is not built here: CI machines run no container engine.
#[test]
fn the_container_entry_point_serves_with_tokens() {
    let recipe = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/Containerfile")).unwrap();
    let entry = recipe
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT line");
    let argv: Vec<String> = serde_json::from_str(entry).expect("ENTRYPOINT in exec form (a JSON array)");
    assert_eq!(argv[0], "/usr/local/bin/aslctl");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        r#"{"tokens": [{"name": "ci", "token": "container-token-0123456789", "scope": "admin"}]}"#,
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let moved = |a: &String| match a.as_str() {
        "/data/store" => dir.path().join("store").display().to_string(),
        "/run/secrets/asl-tokens.json" => tokens.display().to_string(),
        "0.0.0.0:7878" => "127.0.0.1:0".to_string(),
        _ => a.clone(),
    };
    let (mut child, url) = listening(
        Command::new(common::aslctl_bin())
            .args(argv[1..].iter().map(moved))
            .env_remove("ASL_STORE")
            .stderr(std::process::Stdio::null()),
    );
    assert_eq!(curl(&[&format!("{url}/v1/artifacts")]).0, 401);
    let auth = "Authorization: Bearer container-token-0123456789";
    assert_eq!(curl(&["-H", auth, &format!("{url}/v1/stat")]).0, 200);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
