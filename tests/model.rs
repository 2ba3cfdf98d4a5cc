//! Model test: random operation sequences against a `BTreeMap` model, including
//! clean reopen and a simulated crash (the handle is leaked and the directory is
//! copied as it sits on disk, so only committed state may survive).

mod common;
use common::copy_dir;
use std::collections::BTreeMap;

use asl::{ArtifactId, Error, Store, StoreOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Get(usize),
    Remove(usize),
    Commit,
    Seal,
    Checkpoint,
    Reopen,
    Crash,
}

fn content(i: usize) -> Vec<u8> {
    // A pool of 24 artifacts: empty, tiny, packed-sized, and large multi-chunk.
    let len = match i % 6 {
        0 => i,
        1 => 100 + i,
        2 => 1500 + i * 10,
        3 => 3000 + i,
        4 => 9000 + i * 300,
        _ => 20_000 + i * 1000,
    };
    let mut v = (i as u64).to_le_bytes().to_vec();
    v.extend((0..len).map(|k| {
        if i.is_multiple_of(2) {
            (k * 7 + i) as u8
        } else {
            ((k * k) >> 3) as u8 ^ i as u8
        }
    }));
    v
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..24usize).prop_map(Op::Put),
        4 => (0..24usize).prop_map(Op::Get),
        2 => (0..24usize).prop_map(Op::Remove),
        3 => Just(Op::Commit),
        1 => Just(Op::Seal),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .block_target(8 << 10)
        .small_threshold(4 << 10)
        .chunk_size(4096)
        .segment_target(48 << 10)
        .memtable_limit(7)
        .max_index_files(2)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let mut gen = 0;
    let mut dir = root.path().join(format!("s{gen}"));
    let mut store = Some(opts().open(&dir).unwrap());
    let mut live: BTreeMap<ArtifactId, Vec<u8>> = BTreeMap::new();
    let mut durable = live.clone();
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Put(i) => {
                let c = content(i);
                let id = s.put(&c).unwrap();
                prop_assert_eq!(id, ArtifactId::of(&c));
                live.insert(id, c);
            }
            Op::Get(i) => {
                let id = ArtifactId::of(&content(i));
                match (s.get(&id), live.get(&id)) {
                    (Ok(b), Some(m)) => prop_assert_eq!(&b, m),
                    (Err(Error::NotFound(_)), None) => {}
                    (r, m) => prop_assert!(
                        false,
                        "get {i}: store {:?} model {:?}",
                        r.map(|b| b.len()),
                        m.map(|b| b.len())
                    ),
                }
            }
            Op::Remove(i) => {
                let id = ArtifactId::of(&content(i));
                prop_assert_eq!(s.remove(&id).unwrap(), live.remove(&id).is_some());
            }
            Op::Commit => {
                s.commit().unwrap();
                durable = live.clone();
            }
            Op::Seal => {
                s.maintenance().seal().unwrap();
                durable = live.clone();
            }
            Op::Checkpoint => {
                s.maintenance().checkpoint().unwrap();
                durable = live.clone();
            }
            Op::Reopen => {
                store.take().unwrap().close().unwrap();
                durable = live.clone();
                store = Some(Store::open(&dir).unwrap());
            }
            Op::Crash => {
                std::mem::forget(store.take());
                gen += 1;
                let copy = root.path().join(format!("s{gen}"));
                copy_dir(&dir, &copy);
                dir = copy;
                live = durable.clone();
                store = Some(Store::open(&dir).unwrap());
            }
        }
    }
    let s = store.take().unwrap();
    let listed: Vec<(ArtifactId, u64)> = s.list().unwrap().into_iter().map(|a| (a.id, a.len)).collect();
    let want: Vec<(ArtifactId, u64)> = live.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
    prop_assert_eq!(listed, want);
    for (id, b) in &live {
        prop_assert_eq!(&s.get(id).unwrap(), b);
    }
    let rep = s.maintenance().verify().unwrap();
    prop_assert!(rep.is_clean(), "{:?}", rep.problems);
    s.close().unwrap();
    let s = Store::open(&dir).unwrap();
    prop_assert_eq!(s.maintenance().stat().unwrap().artifacts as usize, live.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
