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
        {"name": "ci", "token": "write-token-0123456789", "scope": "write"}]}"#;
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
    assert_eq!(call(root, "POST", "/v1/seal", None).0, 204);

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

    let (code, b) = call(root, "POST", "/v1/gc", Some(r#"{"threshold": 1.0}"#));
    let gc = json(&b);
    assert_eq!(code, 200, "{gc}");
    assert!(gc["reclaimed_bytes"].as_u64().unwrap() > 0, "{gc}");
    assert!(
        gc["physical_after"].as_u64().is_some() && gc["seconds"].as_f64().is_some(),
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
    let (code, b) = call(root, "GET", &format!("/v1/artifacts/{kept}"), None);
    assert_eq!((code, b), (200, noise(2, 300_000)));
    assert_eq!(call(root, "DELETE", "/v1/pins/keep", None).0, 200);
    assert_eq!(call(root, "DELETE", "/v1/pins/keep", None).0, 404);

    // The CLI on the served store: what writes goes through the server its
    // lock names (with the token from $ASL_TOKEN), reads open the store
    // beside it, and --server sends any upkeep there.
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut c = Command::new(common::aslctl_bin());
        c.arg("--store")
            .arg(&s.store)
            .args(args)
            .env_remove("ASL_STORE")
            .env_remove("ASL_SERVER");
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
                s.remove(&p.id).unwrap();
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
