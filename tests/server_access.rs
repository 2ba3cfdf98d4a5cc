//! Who may do what through `aslctl serve`: bearer tokens and their scopes,
//! and visibility: to a token that sees only published artifacts an
//! internal one does not exist on any read path, checked path by path
//! beside a token that sees all.

use std::process::Command;

mod common;
use common::server::*;
use common::{noise, stderr_of as err, stdout_of as out};

#[test]
fn tokens_decide_who_reads_and_writes() {
    let tokens = r#"{"tokens": [
        {"name": "ci", "token": "write-token-0123456789", "scope": "write"},
        {"name": "viewer", "token": "read-token-0123456789", "scope": "read"}]}"#;
    let s = start(&[], Some(tokens));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"guarded").unwrap();
    let id = blake3::hash(b"guarded").to_hex().to_string();
    let put = |tok: Option<&str>| {
        let mut a = vec!["-X", "PUT", "--data-binary"];
        let data = format!("@{}", f.display());
        a.push(&data);
        let h;
        if let Some(t) = tok {
            h = format!("Authorization: Bearer {t}");
            a.extend(["-H", &h]);
        }
        let u = format!("{}/v1/artifacts", s.url);
        a.push(&u);
        curl(&a).0
    };
    assert_eq!(put(None), 401);
    assert_eq!(put(Some("guess-token-0123456789")), 401);
    assert_eq!(put(Some("read-token-0123456789")), 403, "read-only");
    assert_eq!(put(Some("write-token-0123456789")), 201);
    let art = format!("{}/v1/artifacts/{id}", s.url);
    assert_eq!(curl(&[&art]).0, 401, "reads need a token too");
    let (code, body) = curl(&["-H", "Authorization: Bearer read-token-0123456789", &art]);
    assert_eq!((code, &body[..]), (200, &b"guarded"[..]));
    let o = Command::new("curl").args(["-sI", &art]).output().unwrap();
    assert!(
        out(&o).to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{}",
        out(&o)
    );

    // Without tokens, only loopback.
    let o = Command::new(common::aslctl_bin())
        .args([
            "--store",
            dir.path().join("s").to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not a loopback address"), "{}", err(&o));

    // A tokens file others may read holds no secret: refused, naming the
    // mode, and nothing is served.
    let t = dir.path().join("open-tokens.json");
    std::fs::write(&t, r#"{"tokens": []}"#).unwrap();
    std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = Command::new(common::aslctl_bin())
        .args([
            "--store",
            dir.path().join("s").to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tokens")
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("mode 0644") && err(&o).contains("chmod 600"),
        "{}",
        err(&o)
    );
}

/// A token that sees only published artifacts is told an internal one does
/// not exist on every read path — GET, HEAD, a range, the listing, the
/// missing check, the action cache and the CAS — with the very answers a
/// truly absent one gets (404, listed as missing), never 403.
#[test]
fn internal_artifacts_do_not_exist_for_published_only_tokens() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (public, internal) = (b"for everyone".to_vec(), noise(31, 2 << 20));
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        s.put_with(&public, &asl::PutOptions::new().visibility(asl::Visibility::Published))
            .unwrap();
        s.put_reader_with(&internal[..], &asl::PutOptions::new()).unwrap();
        s.commit().unwrap();
    }
    let tokens = r#"{"tokens": [
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#;
    let s = start_on(dir, store, &[], Some(tokens));
    let (pid, iid) = (
        blake3::hash(&public).to_hex().to_string(),
        blake3::hash(&internal).to_hex().to_string(),
    );
    let absent = blake3::hash(b"never stored").to_hex().to_string();
    let ops = "Authorization: Bearer write-token-0123456789";
    let peer = "Authorization: Bearer peer-token-0123456789";
    // Cache entries (internal, as everything the server stores).
    let key = "ef".repeat(32);
    assert_eq!(
        curl(&[
            "-H",
            ops,
            "-X",
            "PUT",
            "--data-binary",
            "result",
            &format!("{}/ac/{key}", s.url)
        ])
        .0,
        201
    );
    let sha = hex(&sha2::Sha256::digest(b"cas bytes"));
    assert_eq!(
        curl(&[
            "-H",
            ops,
            "-X",
            "PUT",
            "--data-binary",
            "cas bytes",
            &format!("{}/cas/{sha}", s.url)
        ])
        .0,
        201
    );

    // A ccache entry, read back through both of ccache's own layouts.
    let (cc_dir, cc_rest) = ("1a", "bcdefghij0123456789klmnopqrstuv");
    let cck = format!("{cc_dir}{cc_rest}");
    assert_eq!(
        curl(&[
            "-H",
            ops,
            "-X",
            "PUT",
            "--data-binary",
            "object",
            &format!("{}/ccache/{cck}", s.url)
        ])
        .0,
        201
    );

    let art = |id: &str| format!("{}/v1/artifacts/{id}", s.url);
    for (who, sees_internal) in [(ops, true), (peer, false)] {
        // The published artifact: everyone.
        assert_eq!(curl(&["-H", who, &art(&pid)]).0, 200);
        // The internal one: like an absent one, for the peer.
        for path in [
            art(&iid),
            format!("{}/ac/{key}", s.url),
            format!("{}/cas/{sha}", s.url),
            format!("{}/ccache/{cck}", s.url),
            format!("{}/ccache/{cc_dir}/{cc_rest}", s.url),
        ] {
            let (code, body) = curl(&["-H", who, &path]);
            let (code_absent, body_absent) = curl(&[
                "-H",
                who,
                &path
                    .replace(&iid, &absent)
                    .replace(&key, &"00".repeat(32))
                    .replace(&sha, &"11".repeat(32))
                    .replace(&cck, &"2".repeat(33))
                    .replace(cc_rest, &"3".repeat(31)),
            ]);
            if sees_internal {
                assert_eq!(code, 200, "{path}");
            } else {
                assert_eq!(code, 404, "{path}");
                assert_eq!(code_absent, 404);
                let strip = |b: &[u8]| String::from_utf8_lossy(b).replace(&iid, "ID").replace(&absent, "ID");
                assert_eq!(
                    strip(&body),
                    strip(&body_absent),
                    "the same answer as for an absent one: {path}"
                );
            }
            let (code, _) = curl(&["-H", who, "-I", &path]);
            assert_eq!(code, if sees_internal { 200 } else { 404 }, "HEAD {path}");
        }
        let (code, _) = curl(&["-H", who, "-H", "Range: bytes=0-9", &art(&iid)]);
        assert_eq!(code, if sees_internal { 206 } else { 404 });
        let (_, b) = curl(&["-H", who, &format!("{}/v1/artifacts", s.url)]);
        let listed: Vec<String> = json(&b)["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        assert!(listed.contains(&pid));
        assert_eq!(listed.contains(&iid), sees_internal, "{listed:?}");
        let (_, b) = curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &format!("{{\"ids\": [\"{pid}\", \"{iid}\", \"{absent}\"]}}"),
            &format!("{}/v1/artifacts:missing", s.url),
        ]);
        let want = if sees_internal {
            serde_json::json!([absent])
        } else {
            serde_json::json!([iid, absent])
        };
        assert_eq!(json(&b)["missing"], want);
    }
}

/// Snapshots, records, find and lineage over HTTP, with scopes (creating a
/// snapshot needs admin) and visibility (a published-only token sees no
/// internal artifact, record about one or step that touched one).
#[test]
fn snapshots_records_find_and_lineage_with_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (public, internal) = (b"public bytes".to_vec(), b"internal bytes".to_vec());
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        s.put_with(&public, &asl::PutOptions::new().visibility(asl::Visibility::Published))
            .unwrap();
        s.put(&internal).unwrap();
        s.commit().unwrap();
    }
    let (pid, iid) = (
        blake3::hash(&public).to_hex().to_string(),
        blake3::hash(&internal).to_hex().to_string(),
    );
    let o = common::aslctl(&store, &["label", &pid, "team=a"]);
    assert!(o.status.success(), "{}", err(&o));
    let label = out(&o).trim().to_string();
    let prog = dir.path().join("p.yaml");
    std::fs::write(
        &prog,
        format!("nodes:\n  h:\n    op: hash\n    inputs: [\"b3:{pid}\"]\n"),
    )
    .unwrap();
    let o = common::aslctl(&store, &["--json", "pel", "run", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let made = json(out(&o).trim().as_bytes())["nodes"][0]["outputs"]["out"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = r#"{"tokens": [
        {"name": "root", "token": "admin-token-0123456789", "scope": "admin"},
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "peer", "token": "peer-token-0123456789", "scope": "read", "sees": "published"}]}"#;
    let s = start_on(dir, store, &[], Some(tokens));
    let (root, ops, peer) = (
        "Authorization: Bearer admin-token-0123456789",
        "Authorization: Bearer write-token-0123456789",
        "Authorization: Bearer peer-token-0123456789",
    );
    let u = |p: &str| format!("{}{p}", s.url);
    let post = |who: &str, body: &str| {
        curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &u("/v1/snapshots"),
        ])
    };
    assert_eq!(post(ops, r#"{"name": "s1"}"#).0, 403, "a snapshot needs admin");
    assert_eq!(post(root, r#"{"name": "s1"}"#).0, 201);
    assert_eq!(post(root, r#"{"name": "s1"}"#).0 / 100, 4, "exists");
    assert_eq!(post(root, r#"{"name": "../x"}"#).0, 400, "a bad name");
    let (_, b) = curl(&["-H", ops, &u("/v1/snapshots")]);
    assert_eq!(json(&b)["snapshots"][0]["name"], "s1");
    assert!(json(&b)["snapshots"][0]["artifacts"].as_u64().unwrap() >= 2);
    let (_, b) = curl(&["-H", peer, &u("/v1/snapshots")]);
    assert!(
        json(&b)["snapshots"][0].get("artifacts").is_none(),
        "no counts for a peer"
    );

    for (who, all) in [(ops, true), (peer, false)] {
        let code = |p: &str| curl(&["-H", who, &u(p)]).0;
        let want = |visible: bool| if visible { 200 } else { 404 };
        assert_eq!(code(&format!("/v1/snapshots/s1/artifacts/{pid}")), 200);
        assert_eq!(code(&format!("/v1/snapshots/s1/artifacts/{iid}")), want(all));
        assert_eq!(code(&format!("/v1/records/{label}")), want(all));
        assert_eq!(code(&format!("/v1/lineage/{made}")), want(all));
        let (_, b) = curl(&["-H", who, &u("/v1/find?label=team=a")]);
        let hits = json(&b)["hits"].clone();
        assert_eq!(hits[0]["subject"].as_str(), Some(&*pid));
        assert_eq!(hits[0]["records"].as_array().unwrap().len(), usize::from(all), "{hits}");
        let (_, b) = curl(&["-H", who, &u(&format!("/v1/lineage/{pid}?descendants=true"))]);
        let g = json(&b);
        assert_eq!(g["steps"].as_array().unwrap().len(), usize::from(all), "{g}");
        assert_eq!(g["artifacts"].get(&made).is_some(), all, "{g}");
    }
    let (_, b) = curl(&["-H", ops, &u(&format!("/v1/records/{label}"))]);
    assert_eq!(json(&b)["type"], "asl/annotation");
    let (_, b) = curl(&["-H", ops, &u(&format!("/v1/lineage/{made}"))]);
    assert_eq!(json(&b)["steps"][0]["op"], "hash");
}

/// Records and labels go in over HTTP with a write token: a record checked
/// against its schema (400 naming the field otherwise), a label found by
/// `find` at once.
#[test]
fn records_and_labels_go_in() {
    let tokens = r#"{"tokens": [
        {"name": "ops", "token": "write-token-0123456789", "scope": "write"},
        {"name": "viewer", "token": "read-token-0123456789", "scope": "read"}]}"#;
    let s = start(&[], Some(tokens));
    let (ops, viewer) = (
        "Authorization: Bearer write-token-0123456789",
        "Authorization: Bearer read-token-0123456789",
    );
    let u = |p: &str| format!("{}{p}", s.url);
    let post = |who: &str, path: &str, body: &str| {
        curl(&[
            "-H",
            who,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &u(path),
        ])
    };
    let run = r#"{"type": "asl/run", "body": {"run_id": "r-1", "created_at": "2026-12-01T10:00:00Z", "mode": "strict", "tool": "mill", "status": "OK"}}"#;
    assert_eq!(post(viewer, "/v1/records", run).0, 403);
    let (code, b) = post(ops, "/v1/records", run);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let rid = json(&b)["id"].as_str().unwrap().to_string();
    let (_, b) = curl(&["-H", viewer, &u(&format!("/v1/records/{rid}"))]);
    assert_eq!(json(&b)["body"]["tool"], "mill");
    let (code, b) = post(ops, "/v1/records", &run.replace("\"OK\"", "\"MAYBE\""));
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&b).contains("status"),
        "{}",
        String::from_utf8_lossy(&b)
    );

    let (code, b) = curl(&[
        "-H",
        ops,
        "-X",
        "PUT",
        "--data-binary",
        "dataset bytes",
        &u("/v1/artifacts"),
    ]);
    assert_eq!(code, 201);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            viewer,
            &format!("/v1/artifacts/{id}/labels"),
            r#"{"labels": {"team": "ml"}}"#
        )
        .0,
        403
    );
    let (code, _) = post(
        ops,
        &format!("/v1/artifacts/{id}/labels"),
        r#"{"labels": {"team": "ml"}, "media_type": "text/plain"}"#,
    );
    assert_eq!(code, 201);
    assert_eq!(
        post(
            ops,
            &format!("/v1/artifacts/{}/labels", "0".repeat(64)),
            r#"{"labels": {"a": "b"}}"#
        )
        .0,
        404
    );
    let (_, b) = curl(&["-H", viewer, &u("/v1/find?label=team=ml")]);
    assert_eq!(json(&b)["hits"][0]["subject"].as_str(), Some(&*id));
    let (_, b) = curl(&["-H", viewer, &u("/v1/find?media_type=text/plain")]);
    assert_eq!(json(&b)["hits"][0]["subject"].as_str(), Some(&*id));
    // GET sends the media type the newest annotation gives.
    let content_type = |id: &str| {
        let o = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{content_type}", "-H", viewer])
            .arg(u(&format!("/v1/artifacts/{id}")))
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(content_type(&id), "text/plain");
    let (code, _) = post(
        ops,
        &format!("/v1/artifacts/{id}/labels"),
        r#"{"labels": {}, "media_type": "text/csv"}"#,
    );
    assert_eq!(code, 201);
    assert_eq!(content_type(&id), "text/csv", "the newer annotation's");
    assert_eq!(content_type(&rid), "application/octet-stream", "no media type given");

    // Times and a limit, as the CLI takes them; a JSON body needs no
    // Content-Type (curl -d sends a form type).
    let run2 = run.replace("r-1", "r-2").replace("2026-12-01", "2026-12-03");
    let (code, b) = curl(&["-H", ops, "-d", &run2, &u("/v1/records")]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let rid2 = json(&b)["id"].as_str().unwrap().to_string();
    let found = |q: &str| -> Vec<String> {
        let (code, b) = curl(&["-H", viewer, &u(&format!("/v1/find?type=asl/run&{q}"))]);
        assert_eq!(code, 200, "{q}: {}", String::from_utf8_lossy(&b));
        json(&b)["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["subject"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(found("since=2026-12-02"), vec![rid2.clone()]);
    assert_eq!(found("until=2026-12-02"), vec![rid.clone()]);
    assert_eq!(
        found("since=2026-12-01T00:00:00Z&until=2026-12-04"),
        vec![rid.clone(), rid2.clone()]
    );
    assert_eq!(found("limit=1"), vec![rid2]);
    // What the endpoint does not take is refused, named, not ignored.
    for (q, named) in [("sinse=2026-12-02", "sinse"), ("since=yesterday", "yesterday")] {
        let (code, b) = curl(&["-H", viewer, &u(&format!("/v1/find?type=asl/run&{q}"))]);
        let text = String::from_utf8_lossy(&b);
        assert_eq!(code, 400, "{q}: {text}");
        assert!(text.contains(named), "{q}: {text}");
    }
}

/// A published-only token with write scope learns nothing of internal
/// content from its puts either: sending an internal artifact's exact bytes
/// (or wrong bytes under its id) gets, byte for byte, the answer that bytes
/// the store lacks get — small and large, plain and through the CAS.
#[test]
fn puts_by_a_published_only_writer_do_not_confirm_internal_content() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    // Internal bytes, and bytes of the same lengths the store lacks.
    let cases = [
        ("small", noise(41, 1000), noise(42, 1000)),
        ("large", noise(43, 2 << 20), noise(44, 2 << 20)),
    ];
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        for (_, internal, _) in &cases {
            s.put_reader_with(&internal[..], &asl::PutOptions::new()).unwrap();
        }
        s.commit().unwrap();
    }
    let tokens = r#"{"tokens": [
        {"name": "peer", "token": "peer-writer-0123456789", "scope": "write", "sees": "published"}]}"#;
    let s = start_on(tempfile::tempdir().unwrap(), store, &[], Some(tokens));
    let peer = "Authorization: Bearer peer-writer-0123456789";
    let put = |path: &str, file: &std::path::Path| {
        let (code, body) = curl(&[
            "-H",
            peer,
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{}{path}", s.url),
        ]);
        (code, String::from_utf8_lossy(&body).to_string())
    };
    for (what, internal, absent) in &cases {
        let (fi, fa) = (files.join(format!("{what}-i")), files.join(format!("{what}-a")));
        std::fs::write(&fi, internal).unwrap();
        std::fs::write(&fa, absent).unwrap();
        let (ii, ia) = (
            blake3::hash(internal).to_hex().to_string(),
            blake3::hash(absent).to_hex().to_string(),
        );
        let (si, sa) = (hex(&sha2::Sha256::digest(internal)), hex(&sha2::Sha256::digest(absent)));
        let same = |a: (u16, String), b: (u16, String), how: &str| {
            let strip = |t: &str| {
                t.replace(&ii, "ID")
                    .replace(&ia, "ID")
                    .replace(&si, "SHA")
                    .replace(&sa, "SHA")
            };
            assert_eq!((a.0, strip(&a.1)), (b.0, strip(&b.1)), "{what}, {how}");
        };
        // Wrong bytes under the id: refused alike (before the right ones
        // make the absent one present).
        let other = files.join("other");
        std::fs::write(&other, noise(45, internal.len())).unwrap();
        same(
            put(&format!("/v1/artifacts/{ii}"), &other),
            put(&format!("/v1/artifacts/{ia}"), &other),
            "wrong bytes under the id",
        );
        let a = put(&format!("/cas/{sa}"), &fa);
        assert_eq!(a.0, 201, "{what}: {}", a.1);
        same(put(&format!("/cas/{si}"), &fi), a, "PUT /cas");
        same(
            put("/v1/artifacts", &fi),
            put("/v1/artifacts", &fa),
            "PUT /v1/artifacts",
        );
        same(
            put(&format!("/v1/artifacts/{ii}"), &fi),
            put(&format!("/v1/artifacts/{ia}"), &fa),
            "PUT by id",
        );
    }
}

/// Every route of the router, walked from the server's own route table
/// (`asl::server::route_table`), by a published-only token that may write:
/// on none of them does an internal artifact exist. Reads that name one
/// answer 404, listings and queries leave it out, puts of its bytes are
/// answered as new, and no answer carries its id, its SHA-256 or its bytes.
/// The table is checked against the router too: every method a route does
/// not list is refused with 405, every one it lists is routed.
#[test]
fn every_route_sees_no_internal_artifact_through_a_published_only_view() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let internal = noise(61, 3000);
    let (iid, isha) = (
        blake3::hash(&internal).to_hex().to_string(),
        hex(&sha2::Sha256::digest(&internal)),
    );
    let public = b"published bytes".to_vec();
    let pid = blake3::hash(&public).to_hex().to_string();
    {
        let s = asl::StoreOptions::new().create(true).open(&store).unwrap();
        s.put_with(&public, &asl::PutOptions::new().visibility(asl::Visibility::Published))
            .unwrap();
        s.commit().unwrap();
    }
    // A receipt that read the internal artifact, for lineage.
    let input = dir.path().join("internal");
    std::fs::write(&input, &internal).unwrap();
    let prog = dir.path().join("p.yaml");
    std::fs::write(
        &prog,
        format!(
            "nodes:\n  h:\n    op: hash\n    inputs: [\"file:{}\"]\n",
            input.display()
        ),
    )
    .unwrap();
    let o = common::aslctl(&store, &["pel", "run", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let tokens = r#"{"tokens": [
        {"name": "root", "token": "admin-token-0123456789", "scope": "admin"},
        {"name": "peer", "token": "peer-writer-0123456789", "scope": "write", "sees": "published"}]}"#;
    let s = start_on(dir, store, &[], Some(tokens));
    let (root, peer) = (
        "Authorization: Bearer admin-token-0123456789",
        "Authorization: Bearer peer-writer-0123456789",
    );
    let files = tempfile::tempdir().unwrap();
    let body_file = files.path().join("body");
    std::fs::write(&body_file, &internal).unwrap();
    let send = |who: &str, method: &str, path: &str, body: Option<&str>| {
        let url = format!("{}{path}", s.url);
        let mut args = vec!["-H", who, "-X", method];
        let data;
        match (method, body) {
            ("HEAD", _) => args = vec!["-H", who, "-I"],
            (_, Some(b)) => {
                data = b.to_string();
                args.extend(["-H", "content-type: application/json", "--data-binary", &data]);
            }
            ("PUT", None) => {
                data = format!("@{}", body_file.display());
                args.extend(["--data-binary", &data]);
            }
            _ => {}
        }
        args.push(&url);
        curl(&args)
    };
    // The owner stores the internal bytes under every build-cache key, labels
    // them and takes a snapshot holding them.
    let (ac, cc) = ("ab".repeat(32), "0123456789abcdef0123456789abcdef".to_string());
    for p in [
        format!("/cas/{isha}"),
        format!("/ac/{ac}"),
        format!("/ccache/{cc}"),
        format!("/ccache/{}/{}", &cc[..2], &cc[2..]),
        format!("/v1/artifacts/{iid}"),
    ] {
        let (code, b) = send(root, "PUT", &p, None);
        assert!(
            code == 200 || code == 201,
            "PUT {p}: {code} {}",
            String::from_utf8_lossy(&b)
        );
    }
    let label = r#"{"labels": {"team": "secret"}}"#.to_string();
    assert_eq!(
        send(root, "POST", &format!("/v1/artifacts/{iid}/labels"), Some(&label)).0,
        201
    );
    assert_eq!(send(root, "POST", "/v1/snapshots", Some(r#"{"name": "s1"}"#)).0, 201);
    assert_eq!(send(root, "GET", &format!("/v1/artifacts/{iid}"), None).0, 200);

    // Its twin: bytes, keys and names the store lacks, asked for the same
    // way. To the peer, the internal artifact must be answered exactly as
    // its twin is.
    let absent = noise(62, internal.len());
    let (aid, asha) = (
        blake3::hash(&absent).to_hex().to_string(),
        hex(&sha2::Sha256::digest(&absent)),
    );
    let (ac2, cc2) = ("cd".repeat(32), "fedcba9876543210fedcba9876543210".to_string());
    let absent_file = files.path().join("absent");
    std::fs::write(&absent_file, &absent).unwrap();
    let normal = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        let text: String = text
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
            .collect::<Vec<_>>()
            .join("\n");
        [(&iid, &aid), (&isha, &asha), (&ac, &ac2), (&cc, &cc2)]
            .iter()
            .fold(text, |t, (a, b)| t.replace(a.as_str(), "X").replace(b.as_str(), "X"))
            .replace(&cc[2..], "X")
            .replace(&cc2[2..], "X")
    };
    let leaks = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        text.contains(&iid) || text.contains(&isha) || answer.windows(64).any(|w| w == &internal[..64])
    };
    let mut walked = 0;
    for (route, methods) in asl::server::route_table() {
        let fill = |id: &str, sha: &str, ac: &str, cc: &str| {
            let path = route
                .replace("{id}", id)
                .replace("{name}", "s1")
                .replace("{dir}", &cc[..2])
                .replace("{rest}", &cc[2..]);
            match route {
                "/ac/{key}" => path.replace("{key}", ac),
                "/cas/{key}" => path.replace("{key}", sha),
                "/ccache/{key}" => path.replace("{key}", cc),
                "/v1/find" => format!("{path}?label=team=secret"),
                _ => path,
            }
        };
        let (path, twin) = (fill(&iid, &isha, &ac, &cc), fill(&aid, &asha, &ac2, &cc2));
        assert!(
            !path.contains('{'),
            "a route the test does not know how to call: {route}"
        );
        let names_it = path != twin;
        for method in ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"] {
            if !methods.contains(&method) {
                assert_eq!(
                    send(root, method, &path, None).0,
                    405,
                    "{method} {route} is not in the table"
                );
                continue;
            }
            walked += 1;
            let body = |id: &str| match (method, route) {
                ("POST", "/v1/artifacts:missing") => Some(format!(r#"{{"ids": ["{id}"]}}"#)),
                ("POST", "/v1/records") => Some(
                    r#"{"type": "asl/annotation", "body": {"subject": "b3:PID", "labels": {"k": "v"}}}"#
                        .replace("PID", &pid),
                ),
                ("POST", "/v1/artifacts/{id}/labels") => Some(label.clone()),
                ("POST", "/v1/snapshots") => Some(r#"{"name": "s2"}"#.to_string()),
                _ => None,
            };
            let (code, answer) = send(peer, method, &path, body(&iid).as_deref());
            let what = format!("{method} {path}: {code} {}", String::from_utf8_lossy(&answer));
            assert_ne!(code, 405, "{what}: the table says the route takes it");
            if names_it || method == "PUT" || route == "/v1/artifacts:missing" {
                if method == "PUT" {
                    std::fs::copy(&absent_file, &body_file).unwrap();
                }
                let (tcode, tanswer) = send(peer, method, &twin, body(&aid).as_deref());
                std::fs::write(&body_file, &internal).unwrap();
                assert_eq!(
                    (code, normal(&answer)),
                    (tcode, normal(&tanswer)),
                    "{method} {route}: the internal artifact is answered unlike one the store lacks"
                );
            } else {
                assert!(
                    !leaks(&answer),
                    "{what}: the answer names or carries the internal artifact"
                );
                assert!(code < 500, "{what}");
            }
        }
    }
    assert!(walked >= 30, "{walked} route and method pairs walked");
}
