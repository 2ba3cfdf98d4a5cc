//! Old-format stores written by earlier versions (see tests/fixtures/README.md)
//! must open and read with the current code, read-only and for writing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use asl::{ArtifactId, Store, StoreOptions};

#[derive(Default)]
struct Expected {
    live: BTreeMap<ArtifactId, u64>,
    removed: Vec<ArtifactId>,
    snapshots: BTreeMap<String, String>,
    pins: BTreeMap<String, ArtifactId>,
    current: String,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(Path::new("tests/fixtures").join(format!("{name}.expected"))).unwrap();
    let mut e = Expected::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "live" => {
                e.live.insert(f[1].parse().unwrap(), f[2].parse().unwrap());
            }
            "removed" => e.removed.push(f[1].parse().unwrap()),
            "snapshot" => {
                e.snapshots.insert(f[1].to_string(), f[2].to_string());
            }
            "pin" => {
                e.pins.insert(f[1].to_string(), f[2].parse().unwrap());
            }
            "current" => e.current = f[1].to_string(),
            other => panic!("unknown line kind {other}"),
        }
    }
    assert!(!e.live.is_empty() && !e.removed.is_empty() && !e.current.is_empty());
    e
}

/// Everything the fixture promises, read through `store`.
fn check(store: &Store, e: &Expected) {
    let listed: BTreeMap<ArtifactId, u64> = store.list().unwrap().into_iter().map(|a| (a.id, a.len)).collect();
    assert_eq!(listed, e.live, "live artifacts differ");
    for (id, len) in &e.live {
        let bytes = store.get(id).unwrap();
        assert_eq!(ArtifactId::of(&bytes), *id);
        assert_eq!(bytes.len() as u64, *len);
    }
    assert!(
        e.live.values().any(|l| *l > store.small_threshold() as u64),
        "no large artifact"
    );
    for id in &e.removed {
        assert!(!store.contains(id).unwrap(), "{id} removed but live");
    }
    assert_eq!(store.maintenance().stat().unwrap().current_id, e.current);
    let snaps: BTreeMap<String, String> = store
        .snapshots()
        .list()
        .into_iter()
        .map(|m| (m.name, m.identity.to_string()))
        .collect();
    assert_eq!(snaps, e.snapshots);
    let mut held_removed = 0;
    for name in e.snapshots.keys() {
        let view = store.at(name).unwrap();
        for a in view.list().unwrap() {
            let bytes = view.get(&a.id).unwrap();
            assert_eq!(ArtifactId::of(&bytes), a.id);
            held_removed += e.removed.contains(&a.id) as usize;
        }
    }
    if !e.snapshots.is_empty() {
        assert!(held_removed > 0, "no snapshot holds a removed artifact");
    }
    let pins: BTreeMap<String, ArtifactId> = store.pins().list().into_iter().collect();
    assert_eq!(pins, e.pins);
    let v = store.maintenance().verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
}

fn open_fixture(name: &str) {
    let e = expected(name);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    common::copy_dir(&Path::new("tests/fixtures").join(name), &path);
    check(&Store::open_read_only(&path).unwrap(), &e);
    let s = StoreOptions::new().open(&path).unwrap();
    check(&s, &e);
    // Removed artifacts nothing holds are garbage (for store-v1 this needs
    // usage counters recomputed from the segments), and GC reclaims them.
    assert!(s.maintenance().stat().unwrap().garbage_bytes > 0);
    // The store stays writable: a new artifact, a removal, GC, a reopen.
    let id = s.put(b"written by the current version").unwrap();
    let gone = *e.live.keys().next().unwrap();
    assert!(s.remove(&gone).unwrap());
    s.commit().unwrap();
    s.maintenance()
        .gc(&asl::GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert_eq!(s.maintenance().stat().unwrap().garbage_bytes, 0);
    s.close().unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.get(&id).unwrap(), b"written by the current version");
    assert!(!s.contains(&gone).unwrap());
    for other in e.live.keys().filter(|k| **k != gone) {
        assert_eq!(ArtifactId::of(&s.get(other).unwrap()), *other);
    }
    for name in e.snapshots.keys() {
        for a in s.at(name).unwrap().list().unwrap() {
            assert_eq!(ArtifactId::of(&s.at(name).unwrap().get(&a.id).unwrap()), a.id);
        }
    }
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn store_v4_with_framed_blocks_opens() {
    let seg = std::fs::read("tests/fixtures/store-v4/segments/00000001.seg").unwrap();
    let kinds = block_kinds(&seg);
    assert!(
        kinds.contains(&6) && kinds.contains(&7),
        "no dictionary or framed block: {kinds:?}"
    );
    open_fixture("store-v4");
}

#[test]
fn store_v5_with_content_defined_chunks_opens() {
    let seg = std::fs::read("tests/fixtures/store-v5/segments/00000001.seg").unwrap();
    let kinds = block_kinds(&seg);
    assert!(
        kinds.contains(&8) && kinds.contains(&9),
        "no chunk or manifest block: {kinds:?}"
    );
    open_fixture("store-v5");
}

#[test]
fn store_v6_with_manifest_parts_opens() {
    let seg = std::fs::read("tests/fixtures/store-v6/segments/00000001.seg").unwrap();
    assert_eq!(seg[8], 5, "segment format 5");
    let parted = manifests(&seg);
    assert!(
        parted.iter().filter(|m| !m.parts.is_empty()).count() == 3,
        "three manifests in parts: {:?}",
        parted.iter().map(|m| m.parts.len()).collect::<Vec<_>>()
    );
    open_fixture("store-v6");
}

/// Every manifest (block kind 9, stored raw) in a segment file.
fn manifests(seg: &[u8]) -> Vec<asl::codec::Manifest> {
    let mut out = Vec::new();
    let mut off = 32;
    while let Ok(h) = asl::codec::BlockHeader::decode(&seg[off.min(seg.len())..]) {
        if h.kind == asl::codec::BlockKind::Manifest {
            let body = &seg[off + asl::codec::BLOCK_HEADER_LEN..][..h.stored_len as usize];
            out.push(asl::codec::Manifest::decode(body).unwrap());
        }
        off += h.total_len() as usize;
    }
    out
}

/// The kind byte of every block in a segment file, walked by its headers.
fn block_kinds(seg: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut off = 32;
    while let Ok(h) = asl::codec::BlockHeader::decode(&seg[off.min(seg.len())..]) {
        kinds.push(h.kind as u8);
        off += h.total_len() as usize;
    }
    kinds
}

#[test]
fn store_v3_with_tree_trailers_opens() {
    open_fixture("store-v3");
}

#[test]
fn store_v2_written_before_the_seams_issue_opens() {
    open_fixture("store-v2");
}

#[test]
fn store_v1_with_a_version_1_checkpoint_opens() {
    open_fixture("store-v1");
}
