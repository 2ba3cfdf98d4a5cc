//! Model test for retention: random sequences of put / remove / snapshot /
//! delete-snapshot / pin / unpin / gc / reopen, and of ephemeral artifacts
//! (an expiry time, the clock moving, the expiry sweep) against an
//! in-memory model of what must stay readable, where. After a final full GC nothing unretained may
//! be left: the usage counters must add up exactly. Some artifacts are
//! versions of one base, stored in content-defined chunks they share.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use asl::federation::removal;
use asl::records::query::QueryIndex;
use asl::records::{expiry, RecordError};
use asl::{ArtifactId, Error, GcOptions, Store, StoreOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Remove(usize),
    Snapshot(usize),
    DeleteSnapshot(usize),
    Pin(usize, usize),
    Unpin(usize),
    Gc(u8),
    Commit,
    Reopen,
    /// Give artifact `.0` an expiry `.1` ticks from now.
    Ephemeral(usize, u64),
    Tick,
    Expire,
}

fn content(i: usize) -> Vec<u8> {
    let len = match i % 8 {
        0 | 4 => 10 + i,
        1 | 5 => 1200 + i * 37,
        2 | 6 => 3000 + i,
        3 => 9000 + i * 500, // large: a chunk or two of its own
        _ => return version(i),
    };
    let mut v = (i as u64).to_le_bytes().to_vec();
    v.extend(common::noise(i as u64 + 1, len));
    v
}

/// A version of one shared base with its own insertion: its content-defined
/// chunks are mostly those of the other versions, so removing one version
/// frees only its own chunks and GC must keep the shared ones.
fn version(i: usize) -> Vec<u8> {
    let base = common::noise(777, 400_000);
    let cut = (i * 79_199) % base.len();
    let mut v = (i as u64).to_le_bytes().to_vec();
    v.extend_from_slice(&base[..cut]);
    v.extend(common::noise(i as u64 + 1, 3000));
    v.extend_from_slice(&base[cut..]);
    v
}

const POOL: usize = 20;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..POOL).prop_map(Op::Put),
        4 => (0..POOL).prop_map(Op::Remove),
        2 => (0..3usize).prop_map(Op::Snapshot),
        2 => (0..3usize).prop_map(Op::DeleteSnapshot),
        2 => (0..2usize, 0..POOL).prop_map(|(k, i)| Op::Pin(k, i)),
        1 => (0..2usize).prop_map(Op::Unpin),
        3 => (0..3u8).prop_map(Op::Gc),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        2 => (0..POOL, 0..3u64).prop_map(|(i, t)| Op::Ephemeral(i, t)),
        2 => Just(Op::Tick),
        2 => Just(Op::Expire),
    ]
}

fn opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .block_target(6 << 10)
        .small_threshold(4 << 10)
        .chunk_size(4096)
        .segment_target(24 << 10)
        .memtable_limit(9)
        .max_index_files(2)
        // Versions' chunk lists in parts of two: parts are swept, copied
        // and read back like the chunks they list.
        .part_chunks(2)
}

#[derive(Default, Clone)]
struct Model {
    current: BTreeSet<usize>,
    snaps: BTreeMap<String, BTreeSet<usize>>,
    pins: BTreeMap<String, usize>,
    clock: u64,
    /// Each artifact's latest expiry time; its records stay (and apply to
    /// it if it is stored again) until a sweep after that time.
    expiry: BTreeMap<usize, u64>,
}

impl Model {
    fn retained(&self, i: usize) -> bool {
        self.current.contains(&i) || self.held(i)
    }

    /// Held apart from CURRENT: what keeps an expired artifact in it.
    fn held(&self, i: usize) -> bool {
        self.snaps.values().any(|s| s.contains(&i)) || self.pins.values().any(|p| *p == i)
    }
}

fn id(i: usize) -> ArtifactId {
    ArtifactId::of(&content(i))
}

fn check(s: &Store, m: &Model) -> Result<(), TestCaseError> {
    // The pool's artifacts; expiry records are artifacts too.
    let pool: BTreeSet<ArtifactId> = (0..POOL).map(id).collect();
    let of_pool = |l: Vec<asl::ArtifactInfo>| l.into_iter().map(|a| a.id).filter(|a| pool.contains(a));
    let listed: Vec<ArtifactId> = of_pool(s.list().unwrap()).collect();
    let want: BTreeSet<ArtifactId> = m.current.iter().map(|i| id(*i)).collect();
    prop_assert_eq!(listed, want.into_iter().collect::<Vec<_>>());
    for i in 0..POOL {
        match s.get(&id(i)) {
            Ok(b) => prop_assert!(m.current.contains(&i) && b == content(i), "get {}", i),
            Err(Error::NotFound(_)) => prop_assert!(!m.current.contains(&i), "lost {}", i),
            Err(e) => prop_assert!(false, "get {}: {}", i, e),
        }
    }
    let names: Vec<String> = s.snapshots().list().into_iter().map(|x| x.name).collect();
    prop_assert_eq!(names, m.snaps.keys().cloned().collect::<Vec<_>>());
    for (name, set) in &m.snaps {
        let v = s.at(name).unwrap();
        let listed: BTreeSet<ArtifactId> = of_pool(v.list().unwrap()).collect();
        prop_assert_eq!(&listed, &set.iter().map(|i| id(*i)).collect::<BTreeSet<_>>());
        for i in set {
            prop_assert_eq!(v.get(&id(*i)).unwrap(), content(*i), "snapshot {} item {}", name, i);
        }
    }
    prop_assert_eq!(s.pins().list().len(), m.pins.len());
    for (name, i) in &m.pins {
        let mut b = Vec::new();
        s.pins().open(name).unwrap().read_to_end(&mut b).unwrap();
        prop_assert_eq!(b, content(*i), "pin {}", name);
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = opts().open(dir.path()).unwrap();
    let mut index = QueryIndex::open(&s).unwrap().0;
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Put(i) => {
                s.put(&content(i)).unwrap();
                m.current.insert(i);
            }
            Op::Remove(i) => {
                prop_assert_eq!(s.remove(&id(i)).unwrap(), m.current.remove(&i));
            }
            Op::Snapshot(k) => {
                let name = format!("snap{k}");
                match s.snapshots().create(&name) {
                    Ok(_) => {
                        prop_assert!(!m.snaps.contains_key(&name));
                        m.snaps.insert(name, m.current.clone());
                    }
                    Err(Error::SnapshotExists(_)) => prop_assert!(m.snaps.contains_key(&name)),
                    Err(e) => prop_assert!(false, "snapshot: {}", e),
                }
            }
            Op::DeleteSnapshot(k) => {
                let name = format!("snap{k}");
                match s.snapshots().delete(&name) {
                    Ok(_) => prop_assert!(m.snaps.remove(&name).is_some()),
                    Err(Error::SnapshotNotFound(_)) => prop_assert!(!m.snaps.contains_key(&name)),
                    Err(e) => prop_assert!(false, "delete: {}", e),
                }
            }
            Op::Pin(k, i) => {
                let name = format!("pin{k}");
                match s.pins().set(&name, &id(i)) {
                    Ok(()) => {
                        prop_assert!(m.retained(i), "pinned an unretained artifact");
                        m.pins.insert(name, i);
                    }
                    Err(Error::NotFound(_)) => prop_assert!(!m.retained(i)),
                    Err(e) => prop_assert!(false, "pin: {}", e),
                }
            }
            Op::Unpin(k) => {
                let name = format!("pin{k}");
                match s.pins().remove(&name) {
                    Ok(got) => prop_assert_eq!(Some(got), m.pins.remove(&name).map(id)),
                    Err(Error::PinNotFound(_)) => prop_assert!(!m.pins.contains_key(&name)),
                    Err(e) => prop_assert!(false, "unpin: {}", e),
                }
            }
            Op::Gc(t) => {
                s.maintenance()
                    .gc(&GcOptions {
                        threshold: t as f64 / 2.0,
                        dry_run: false,
                    })
                    .unwrap();
                check(&s, &m)?;
            }
            Op::Commit => s.commit().unwrap(),
            Op::Reopen => {
                drop(index);
                s.close().unwrap();
                s = opts().open(dir.path()).unwrap();
                index = QueryIndex::open(&s).unwrap().0;
            }
            Op::Ephemeral(i, ticks) => match expiry::set(&s, &id(i), m.clock + ticks) {
                Ok(_) => {
                    prop_assert!(m.current.contains(&i));
                    let at = m.expiry.entry(i).or_default();
                    *at = (*at).max(m.clock + ticks);
                    s.commit().unwrap();
                }
                Err(RecordError::Store(Error::NotFound(_))) => prop_assert!(!m.current.contains(&i)),
                Err(e) => prop_assert!(false, "ephemeral {}: {}", i, e),
            },
            Op::Tick => m.clock += 1,
            Op::Expire => {
                let x = removal::expire(&s, &mut index, m.clock, false).unwrap();
                let due: Vec<usize> = m
                    .expiry
                    .iter()
                    .filter(|(_, at)| **at <= m.clock)
                    .map(|(i, _)| *i)
                    .collect();
                let (mut gone, mut held) = (BTreeSet::new(), BTreeSet::new());
                for i in due {
                    if !m.current.contains(&i) {
                        m.expiry.remove(&i);
                    } else if m.held(i) {
                        held.insert(id(i));
                    } else {
                        m.current.remove(&i);
                        m.expiry.remove(&i);
                        gone.insert(id(i));
                    }
                }
                prop_assert_eq!(x.removed.into_iter().collect::<BTreeSet<_>>(), gone);
                prop_assert_eq!(x.held.into_iter().collect::<BTreeSet<_>>(), held);
                check(&s, &m)?;
            }
        }
    }
    check(&s, &m)?;
    let r = s
        .maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    prop_assert_eq!(r.garbage_after, 0, "{:?}", r);
    check(&s, &m)?;
    let rep = s.maintenance().verify().unwrap();
    prop_assert!(rep.is_clean(), "{:?}", rep.problems);
    // Nothing retained at all: every byte must go.
    for name in m.snaps.keys() {
        s.snapshots().delete(name).unwrap();
    }
    for name in m.pins.keys() {
        s.pins().remove(name).unwrap();
    }
    for a in s.list().unwrap() {
        s.remove(&a.id).unwrap();
    }
    s.maintenance().gc(&GcOptions::default()).unwrap();
    let left: u64 = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    prop_assert_eq!(left, 0, "garbage left behind");
    s.close().unwrap();
    let s = Store::open(dir.path()).unwrap();
    prop_assert_eq!(s.maintenance().stat().unwrap().artifacts, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn retention_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
