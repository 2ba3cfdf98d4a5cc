//! GC killed with SIGKILL at random points. The child ingests and runs GC in a
//! loop (printing ids only after their commit); between rounds the parent
//! removes artifacts and rotates snapshots, so every round has garbage to
//! collect and retained-but-removed artifacts to move. After each kill the
//! store must open, every acknowledged live artifact and every snapshot's
//! artifacts must read back byte-identical, `verify` must be clean; at the end
//! one more GC must leave no garbage at all.

mod common;

use std::collections::{BTreeMap, HashSet};

use asl::{ArtifactId, GcOptions};
use common::{check_acked, crash_data, crash_opts, next_seed_after, run_and_kill, Rng};

const CHILD_ENV: &str = "ASL_GC_CRASH_CHILD_DIR";

fn rounds() -> u32 {
    std::env::var("ASL_GC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// The child: runs only when re-spawned by the parent test.
#[test]
fn gc_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut seed: u64 = std::env::var("ASL_CRASH_SEED").unwrap().parse().unwrap();
    let s = crash_opts().open(&dir).unwrap();
    let mut n = 0u64;
    loop {
        let mut put = Vec::new();
        for _ in 0..3 {
            put.push((seed, s.put(&crash_data(seed)).unwrap()));
            seed += 1;
        }
        s.commit().unwrap();
        for (sd, id) in put {
            println!("{sd} {id}");
        }
        let threshold = [1.0, 0.5, 0.9][(n % 3) as usize];
        s.maintenance()
            .gc(&GcOptions {
                threshold,
                dry_run: false,
            })
            .unwrap();
        n += 1;
    }
}

#[test]
fn kill_during_gc_loses_nothing_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(std::process::id() as u64 * 104_729 + 3);
    let mut acked: Vec<(u64, ArtifactId)> = Vec::new();
    let mut removed: HashSet<ArtifactId> = HashSet::new();
    let mut snaps: BTreeMap<String, Vec<(u64, ArtifactId)>> = BTreeMap::new();
    // A starting store with enough in it that GC has segments to move.
    {
        let s = crash_opts().open(dir.path()).unwrap();
        for seed in 1..400u64 {
            acked.push((seed, s.put(&crash_data(seed)).unwrap()));
        }
        s.close().unwrap();
    }
    let mut next_seed = 1000u64;
    let mut gc_seen = 0u64;
    for round in 0..rounds() {
        let envs = [
            (CHILD_ENV, dir.path().display().to_string()),
            ("ASL_CRASH_SEED", next_seed.to_string()),
        ];
        let got = run_and_kill("gc_crash_child", &envs, 30 + rng.next() % 250);
        next_seed = next_seed_after(&got, next_seed);
        acked.extend(got);

        let s = crash_opts()
            .open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        check_acked(&s, &acked, &removed, round);
        for (name, items) in &snaps {
            let v = s
                .at(name)
                .unwrap_or_else(|e| panic!("round {round}: snapshot {name}: {e}"));
            for (sd, id) in items {
                let b = v
                    .get(id)
                    .unwrap_or_else(|e| panic!("round {round}: {id} (seed {sd}) lost from snapshot {name}: {e}"));
                assert_eq!(b, crash_data(*sd), "round {round}: snapshot {name} item differs");
            }
        }
        let rep = s.maintenance().verify().unwrap();
        assert!(rep.is_clean(), "round {round}: {:?}", rep.problems);
        gc_seen += s.maintenance().stat().unwrap().segments;

        // New garbage for the next round: rotate snapshots (keep two), then
        // remove about a sixth of what is live, some of it snapshotted.
        let name = format!("r{round}");
        s.snapshots().create(&name).unwrap();
        let live: Vec<(u64, ArtifactId)> = acked.iter().filter(|(_, id)| !removed.contains(id)).copied().collect();
        snaps.insert(name, live.clone());
        while snaps.len() > 2 {
            let oldest = snaps.keys().next().unwrap().clone();
            s.snapshots().delete(&oldest).unwrap();
            snaps.remove(&oldest);
        }
        for (_, id) in &live {
            if rng.next().is_multiple_of(6) && s.remove(id).unwrap() {
                removed.insert(*id);
            }
        }
        s.close().unwrap();
    }
    assert!(gc_seen > 0);
    // The next GC finishes whatever a killed one left: no garbage remains.
    let s = crash_opts().open(dir.path()).unwrap();
    let r = s
        .maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert_eq!(r.garbage_after, 0, "{r:?}");
    check_acked(&s, &acked, &removed, u32::MAX);
    assert!(s.maintenance().verify().unwrap().is_clean());
    // And the counters were right: with every root gone, every byte goes.
    for m in s.snapshots().list() {
        s.snapshots().delete(&m.name).unwrap();
    }
    // (The child may have committed a few puts it was killed before printing.)
    for a in s.list().unwrap() {
        s.remove(&a.id).unwrap();
    }
    s.maintenance().gc(&GcOptions::default()).unwrap();
    let st = s.maintenance().stat().unwrap();
    assert_eq!(st.physical_bytes, 0, "garbage left forever: {st:?}");
    eprintln!("{} rounds, {} acknowledged artifacts", rounds(), acked.len());
}
