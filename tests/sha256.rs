//! SHA-256 aliases: every put path computes the bytes' SHA-256 when asked
//! (checked against `sha256sum`, an independent implementation), `ingest
//! --sha256` records them, and `get sha256:HEX` finds the artifact.

use std::fs;
use std::process::Command;

mod common;
use common::{aslctl, noise, stderr_of as err, stdout_of as out};

use asl::{PutOptions, StoreOptions};

fn sha256sum(path: &std::path::Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils)");
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

fn hex(d: &[u8; 32]) -> String {
    asl::records::digests::hex(d)
}

#[test]
fn every_put_path_computes_the_sha256_of_what_it_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StoreOptions::new()
        .create(true)
        .chunk_size(64 << 10)
        .small_threshold(16 << 10)
        .open(tmp.path().join("s"))
        .unwrap();
    let opts = PutOptions::new().sha256(true);
    // Sizes around every boundary: packed, large hashed first, and large
    // new for certain (16 chunks or more of a length never stored).
    for (i, len) in [0usize, 1, 16 << 10, (16 << 10) + 1, 200_000, 2 << 20, (3 << 20) + 7]
        .into_iter()
        .enumerate()
    {
        let bytes = noise(i as u64, len);
        let f = tmp.path().join(format!("f{i}"));
        fs::write(&f, &bytes).unwrap();
        let want = sha256sum(&f);
        let p = store.put_file_with(&f, &opts).unwrap();
        assert_eq!(hex(&p.sha256.unwrap()), want, "put_file of {len} bytes");
        // Again: now a duplicate, found by the hash-first pass.
        let again = store.put_file_with(&f, &opts).unwrap();
        assert!(!again.new);
        assert_eq!(hex(&again.sha256.unwrap()), want, "duplicate put_file of {len} bytes");
        assert_eq!(
            hex(&store.put_with(&bytes, &opts).unwrap().sha256.unwrap()),
            want,
            "put_with {len}"
        );
        let r = store.put_reader_with(std::io::Cursor::new(&bytes), &opts).unwrap();
        assert_eq!(hex(&r.sha256.unwrap()), want, "put_reader {len}");
        assert_eq!(
            hex(&store.put_batch_with(&[&bytes], &opts).unwrap()[0].sha256.unwrap()),
            want,
            "put_batch {len}"
        );
        assert_eq!(
            store.put_with(&bytes, &PutOptions::new()).unwrap().sha256,
            None,
            "not asked"
        );
    }
}

#[test]
fn ingest_records_digests_and_get_resolves_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let d = tmp.path().join("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("small"), b"abc").unwrap();
    fs::write(d.join("big"), noise(9, 3 << 20)).unwrap();
    let o = aslctl(&store, &["--json", "ingest", "--sha256", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    for f in v["files"].as_array().unwrap() {
        let path = std::path::Path::new(f["path"].as_str().unwrap());
        assert_eq!(f["sha256"].as_str().unwrap(), sha256sum(path));
    }
    let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let o = aslctl(&store, &["cat", abc]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(o.stdout, b"abc");
    let big = format!("sha256:{}", sha256sum(&d.join("big")));
    assert_eq!(aslctl(&store, &["get", &big]).stdout, fs::read(d.join("big")).unwrap());

    // Unknown and malformed digests.
    let o = aslctl(&store, &["cat", &format!("sha256:{}", "0".repeat(64))]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = aslctl(&store, &["cat", "sha256:abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    // A file the files cache skips still gets its digest: recorded already,
    // or read back from the store when an earlier ingest did not take it.
    fs::write(d.join("later"), b"later").unwrap();
    // Old enough for the files cache to trust: a file changed less than a
    // second before the cache recorded it is read again ("racily clean").
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = aslctl(&store, &["ingest", d.join("later").to_str().unwrap()]);
    assert!(o.status.success());
    let o = aslctl(&store, &["ingest", "--sha256", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("1 unchanged files had no SHA-256 recorded"),
        "{}",
        err(&o)
    );
    let later = format!("sha256:{}", sha256sum(&d.join("later")));
    assert_eq!(aslctl(&store, &["cat", &later]).stdout, b"later");
    // Recording the same digests again adds nothing.
    let before = out(&aslctl(&store, &["ls"]));
    assert!(aslctl(&store, &["ingest", "--sha256", d.to_str().unwrap()])
        .status
        .success());
    assert_eq!(out(&aslctl(&store, &["ls"])), before);
    // Standard input too.
    let mut child = Command::new(common::aslctl_bin())
        .args(["--store", store.to_str().unwrap(), "--json", "ingest", "--sha256", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    let o = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let sha = v["files"][0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(aslctl(&store, &["cat", &format!("sha256:{sha}")]).stdout, b"from stdin");
}
