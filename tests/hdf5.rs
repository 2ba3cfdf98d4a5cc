//! HDF5 ingest against files h5py writes (installed by `.ci/run`) in four
//! layouts — contiguous, chunked, chunked with gzip and shuffle, compact —
//! and against h5py's own low-level view of where each dataset's bytes lie:
//! every chunk's grid offset, byte address and size in ASL's index equal
//! h5py's, and each range's BLAKE3 is that of the file's bytes there.

use std::fs;
use std::path::Path;

mod common;
use common::{aslctl, stderr_of as err, stdout_of as out};

fn fixtures(dir: &std::path::Path) -> serde_json::Value {
    common::py_json("tests/py/h5_fixtures.py", dir, "h5py")
}

#[test]
fn the_index_matches_h5py_for_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let fx = fixtures(dir.path());
    let path = fx["path"].as_str().unwrap();
    let bytes = fs::read(path).unwrap();
    let o = aslctl(&store, &["--json", "h5", "ingest", path]);
    assert!(o.status.success(), "{}", err(&o));
    common::check_json("h5-ingest", &out(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(
        r["file"].as_str().unwrap(),
        blake3::hash(&bytes).to_hex().as_str(),
        "the file is an artifact like any other"
    );
    assert_eq!(r["datasets"], 5);

    let listed = out(&aslctl(&store, &["--json", "h5", "ls", r["file"].as_str().unwrap()]));
    common::check_json("h5-ls", &listed);
    let digests = out(&aslctl(
        &store,
        &["--json", "h5", "digest", r["file"].as_str().unwrap()],
    ));
    common::check_json("h5-digest", &digests);
    let idx: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let datasets = idx["datasets"].as_array().unwrap();
    let oracle = fx["datasets"].as_object().unwrap();
    assert_eq!(datasets.len(), oracle.len());
    let hash = |addr: u64, size: u64| {
        blake3::hash(&bytes[addr as usize..(addr + size) as usize])
            .to_hex()
            .to_string()
    };
    let mut chunks_seen = 0;
    for d in datasets {
        let p = d["path"].as_str().unwrap();
        let want = &oracle[p];
        assert_eq!(d["layout"], want["layout"], "{p}");
        assert_eq!(d["shape"], want["shape"], "{p}");
        match want["layout"].as_str().unwrap() {
            "contiguous" => {
                let s = &d["storage"];
                assert_eq!((&s["addr"], &s["size"]), (&want["addr"], &want["size"]), "{p}");
                assert_eq!(
                    s["blake3"].as_str().unwrap(),
                    hash(want["addr"].as_u64().unwrap(), want["size"].as_u64().unwrap())
                );
            }
            "chunked" => {
                let got = d["chunks"].as_array().unwrap();
                let exp = want["chunks"].as_array().unwrap();
                assert_eq!(got.len(), exp.len(), "{p}");
                for (g, e) in got.iter().zip(exp) {
                    assert_eq!(
                        (&g["offset"], &g["addr"], &g["size"]),
                        (&e["offset"], &e["addr"], &e["size"]),
                        "{p}"
                    );
                    assert_eq!(
                        g["blake3"].as_str().unwrap(),
                        hash(e["addr"].as_u64().unwrap(), e["size"].as_u64().unwrap())
                    );
                    chunks_seen += 1;
                }
            }
            _ => assert!(
                d.get("storage").is_none() && d.get("chunks").is_none(),
                "{p}: compact data has no range"
            ),
        }
    }
    assert_eq!(chunks_seen, 16 + 8, "4x4 plain chunks and 4x2 gzip ones");
    let gz = datasets.iter().find(|d| d["path"] == "/gzip_shuffle").unwrap();
    assert_eq!(gz["filters"], serde_json::json!(["Shuffle", "Deflate(4)"]));
    let c = datasets.iter().find(|d| d["path"] == "/contiguous").unwrap();
    assert_eq!(c["attributes"], serde_json::json!({"scale": 2.5, "units": "m"}));
    assert!(idx["groups"].as_array().unwrap().iter().any(|g| g == "/nested/deeper"));

    // The text listing.
    let ls = out(&aslctl(&store, &["h5", "ls", r["index"].as_str().unwrap()]));
    assert!(
        ls.contains("/gzip_shuffle  Integer(U2)  [60, 100]  chunked  8 chunks of 16x64  Shuffle,Deflate(4)"),
        "{ls}"
    );
    assert!(ls.contains("/compact  Unsigned(U1)  [16]  compact"), "{ls}");
}

#[test]
fn a_file_that_is_not_hdf5_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = dir.path().join("fake.h5");
    fs::write(&f, b"\x89HDF\r\n\x1a\n but not really").unwrap();
    let o = aslctl(&store, &["h5", "ingest", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("fake.h5"), "{}", err(&o));
    assert_eq!(err(&o).lines().count(), 1, "one line: {}", err(&o));
    assert!(out(&aslctl(&store, &["ls"])).is_empty(), "nothing stored");
}

#[test]
fn logical_digests_see_through_layout_and_time_but_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let fx = fixtures(dir.path());
    let ingest = |p: &str| -> serde_json::Value {
        let o = aslctl(&store, &["--json", "h5", "ingest", p]);
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_str(out(&o).trim()).unwrap()
    };
    let a = ingest(fx["path"].as_str().unwrap());
    let b = ingest(fx["relaid"].as_str().unwrap());
    let c = ingest(fx["changed"].as_str().unwrap());
    assert_ne!(a["file"], b["file"], "other bytes");
    assert_eq!(a["digest"], b["digest"], "the same data");
    assert_ne!(a["digest"], c["digest"], "one element differs");
    let digests = |r: &serde_json::Value| -> Vec<String> {
        out(&aslctl(&store, &["h5", "digest", r["file"].as_str().unwrap()]))
            .lines()
            .map(String::from)
            .collect()
    };
    let (da, dc) = (digests(&a), digests(&c));
    assert_eq!(da.len(), 6, "the file and its five datasets: {da:?}");
    assert_eq!(da[0], format!("{}  /", a["digest"].as_str().unwrap()));
    let differ: Vec<&str> = da
        .iter()
        .zip(&dc)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x[66..])
        .collect();
    assert_eq!(
        differ,
        ["/", "/contiguous"],
        "only the changed dataset (and so the file) differs"
    );
}

/// `h5 cat` against numpy reading the same selections through h5py: the
/// bytes of every case equal numpy's (little-endian, C order), across
/// big-endian data behind deflate + shuffle + fletcher32, unwritten chunks
/// (the fill value), partial edge chunks, 3-D steps, booleans, contiguous,
/// compact and scalar datasets; and only the chunks a selection touches are
/// read.
#[test]
fn cat_reads_what_numpy_reads_and_only_the_chunks_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let fx = common::py_json("tests/py/h5_slices.py", dir.path(), "h5py");
    let o = aslctl(&store, &["--json", "h5", "ingest", fx["path"].as_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let file: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    let file = file["file"].as_str().unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let (ds, sel) = (case["dataset"].as_str().unwrap(), case["slice"].as_str().unwrap());
        let slice = format!("--slice={sel}");
        let o = aslctl(&store, &["h5", "cat", "--raw", file, ds, &slice]);
        assert!(o.status.success(), "{ds}[{sel}]: {}", err(&o));
        let got: String = o.stdout.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, case["hex"].as_str().unwrap(), "{ds}[{sel}]");
        let j = out(&aslctl(&store, &["--json", "h5", "cat", file, ds, &slice]));
        common::check_json("h5-cat", &j);
        let j: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
        assert_eq!(j["shape"], case["shape"], "{ds}[{sel}]");
    }
    let read = |ds: &str, sel: &str| -> u64 {
        let o = aslctl(&store, &["--json", "h5", "cat", file, ds, &format!("--slice={sel}")]);
        let j: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
        j["chunks_read"].as_u64().unwrap()
    };
    assert_eq!(read("/be_filtered", "0:8,0:16"), 1, "exactly one chunk");
    assert_eq!(read("/be_filtered", "3:5,17:20"), 1, "inside one chunk");
    assert_eq!(read("/be_filtered", "7:9,15:17"), 4, "across a corner of four");
    assert_eq!(read("/be_filtered", ""), 35, "7 x 5 chunks");
    assert_eq!(read("/sparse", "30:,30:"), 0, "never written: the fill value");
    assert_eq!(read("/sparse", ""), 1, "the one chunk written");

    let text = out(&aslctl(&store, &["h5", "cat", file, "/contig", "--slice", "2:4,5:9"]));
    assert_eq!(text, "45 46 47 48\n65 66 67 68\n");
    let text = out(&aslctl(&store, &["h5", "cat", file, "/flags", "--slice", "0:4"]));
    assert_eq!(text, "true false false true\n");

    for (args, want) in [
        (vec!["/contig", "--slice", "10"], "out of bounds"),
        (vec!["/contig", "--slice", "1,2,3"], "3 slice parts for 2 dimensions"),
        (vec!["/contig", "--slice", "::-1"], "only positive steps"),
        (vec!["/nope"], "no such dataset"),
    ] {
        let mut a = vec!["h5", "cat", file];
        a.extend(args);
        let o = aslctl(&store, &a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{a:?}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
}

/// kerchunk (an independent reader of HDF5 internals, installed by
/// `.ci/run`) points into the file at exactly the ranges ASL's index
/// records: every chunk key `dataset/i.j` is the chunk at grid offset
/// (i, j) x chunk shape, a contiguous dataset is `dataset/0`; and ASL's
/// BLAKE3 of each range is that of the bytes kerchunk names.
#[test]
fn the_index_agrees_with_kerchunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let fx = fixtures(dir.path());
    let path = fx["path"].as_str().unwrap();
    let bytes = fs::read(path).unwrap();
    let kc = common::py_json("tests/py/h5_kerchunk.py", Path::new(path), "kerchunk");
    let kc = kc.as_object().unwrap();
    let o = aslctl(&store, &["--json", "h5", "ingest", path]);
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    let idx: serde_json::Value = serde_json::from_str(&out(&aslctl(
        &store,
        &["--json", "h5", "ls", r["file"].as_str().unwrap()],
    )))
    .unwrap();
    let mut ours = std::collections::BTreeMap::new();
    for d in idx["datasets"].as_array().unwrap() {
        let p = d["path"].as_str().unwrap();
        if let Some(s) = d.get("storage") {
            ours.insert(format!("{p}/0"), s.clone());
        }
        if let Some(chunks) = d["chunks"].as_array() {
            let cs: Vec<u64> = d["chunk_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            for c in chunks {
                let key: Vec<String> = c["offset"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(&cs)
                    .map(|(o, n)| (o.as_u64().unwrap() / n).to_string())
                    .collect();
                ours.insert(format!("{p}/{}", key.join(".")), c.clone());
            }
        }
    }
    assert!(kc.len() > 20, "kerchunk found the chunks: {}", kc.len());
    let keys: Vec<&String> = ours.keys().collect();
    let theirs: Vec<&String> = kc.keys().collect();
    assert_eq!(keys, theirs, "the same chunks, by key");
    for (k, want) in kc {
        let got = &ours[k];
        let (off, size) = (want["offset"].as_u64().unwrap(), want["size"].as_u64().unwrap());
        assert_eq!(
            (got["addr"].as_u64(), got["size"].as_u64()),
            (Some(off), Some(size)),
            "{k}"
        );
        assert_eq!(
            got["blake3"].as_str().unwrap(),
            blake3::hash(&bytes[off as usize..(off + size) as usize])
                .to_hex()
                .as_str(),
            "{k}"
        );
    }
}

/// A dataset larger than one digest slab (64 MiB) is digested slab by slab;
/// its digest is still exactly the spec's: BLAKE3-derive-key over the head
/// and every element, computed here from the bytes numpy gives.
#[test]
fn a_large_dataset_s_digest_is_the_spec_s() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let h5 = dir.path().join("big.h5");
    let raw = dir.path().join("big.raw");
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, h5py, numpy as np
a = np.random.default_rng(3).random((9001, 1100))
with h5py.File(sys.argv[1], 'w') as f:
    f.create_dataset('big', data=a, chunks=(1000, 1100))
open(sys.argv[2], 'wb').write(a.astype('<f8').tobytes())",
        ])
        .arg(&h5)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let bytes = fs::read(&raw).unwrap();
    assert!(bytes.len() > 64 << 20, "more than one slab");
    let o = aslctl(&store, &["h5", "ingest", h5.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let file = out(&o).split_whitespace().next().unwrap().to_string();
    let digests = out(&aslctl(&store, &["h5", "digest", &file]));
    let got = digests.lines().find(|l| l.ends_with("  /big")).unwrap()[..64].to_string();
    use asl::records::cbor::{encode, Value};
    let head = encode(&Value::Map(vec![
        (Value::text("dtype"), Value::text("<f8")),
        (
            Value::text("shape"),
            Value::Array(vec![Value::Unsigned(9001), Value::Unsigned(1100)]),
        ),
        (Value::text("attributes"), Value::Map(vec![])),
    ]))
    .unwrap();
    let mut h = blake3::Hasher::new_derive_key("asl hdf5 dataset digest v1");
    h.update(&(head.len() as u64).to_le_bytes());
    h.update(&head);
    h.update(&bytes);
    assert_eq!(got, h.finalize().to_hex().as_str());
}

/// Variable-length strings have a logical digest (equal across layouts,
/// different when one string changes); a type with none (fixed-length
/// strings) still counts in the file's digest by its stored bytes, so two
/// files differing only there never get the same file digest.
#[test]
fn strings_are_digested_and_undigested_data_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, h5py, numpy as np
def w(p, names, fixed, chunked):
    with h5py.File(p, 'w') as f:
        f.create_dataset('names', data=names, dtype=h5py.string_dtype(), chunks=(2,) if chunked else None)
        f.create_dataset('fixed', data=np.array(fixed, dtype='S4'))
        f.create_dataset('n', data=np.arange(5))
d = sys.argv[1]
w(d + '/a.h5', ['alpha', 'beta', 'gamma'], [b'x', b'y'], False)
w(d + '/b.h5', ['alpha', 'beta', 'gamma'], [b'x', b'y'], True)
w(d + '/c.h5', ['alpha', 'beta', 'delta'], [b'x', b'y'], False)
w(d + '/d.h5', ['alpha', 'beta', 'gamma'], [b'x', b'z'], False)",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let digests = |name: &str| -> std::collections::BTreeMap<String, String> {
        let p = dir.path().join(name);
        let o = aslctl(&store, &["h5", "ingest", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", err(&o));
        let file = out(&o).split_whitespace().next().unwrap().to_string();
        out(&aslctl(&store, &["h5", "digest", &file]))
            .lines()
            .map(|l| {
                let (dg, path) = l.split_once("  ").unwrap();
                (path.to_string(), dg.to_string())
            })
            .collect()
    };
    let (a, b, c, d) = (digests("a.h5"), digests("b.h5"), digests("c.h5"), digests("d.h5"));
    assert_ne!(a["/names"], "-".repeat(64), "strings have a digest: {a:?}");
    assert_eq!(a["/fixed"], "-", "fixed-length strings have none yet: {a:?}");
    assert_eq!(a["/names"], b["/names"], "contiguous and chunked");
    assert_ne!(a["/names"], c["/names"], "one string changed");
    assert_ne!(a["/"], c["/"]);
    assert_eq!(a["/fixed"], d["/fixed"]);
    assert_ne!(
        a["/"], d["/"],
        "the undigested dataset changed: the file digest sees it"
    );
}
