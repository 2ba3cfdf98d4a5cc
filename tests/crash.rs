//! Crash test with a real process: the test binary re-runs itself as a child
//! that ingests in a loop and prints each id only after `commit` returned. The
//! parent SIGKILLs it at a random moment, reopens the store and checks that
//! every acknowledged artifact reads back byte-identical and `verify` is clean.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use asl::{ArtifactId, Store};
use common::{check_acked, crash_child_loop, next_seed_after, run_and_kill, Rng};

const CHILD_ENV: &str = "ASL_CRASH_CHILD_DIR";

fn rounds() -> u32 {
    std::env::var("ASL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// The child: runs only when re-spawned by the parent test.
#[test]
fn crash_child() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child_loop(&dir, std::env::var("ASL_CRASH_SEED").unwrap().parse().unwrap());
    }
}

#[test]
fn kill_during_ingest_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(std::process::id() as u64 * 7919 + 1);
    let mut acked: Vec<(u64, ArtifactId)> = Vec::new();
    let mut removed = HashSet::new();
    let mut next_seed = 1u64;
    let start = Instant::now();
    for round in 0..rounds() {
        let envs = [
            (CHILD_ENV, dir.path().display().to_string()),
            ("ASL_CRASH_SEED", next_seed.to_string()),
        ];
        let got = run_and_kill("crash_child", &envs, 20 + rng.next() % 180);
        next_seed = next_seed_after(&got, next_seed);
        acked.extend(got);

        let s = match Store::open(dir.path()) {
            Ok(s) => s,
            // Killed before its first commit returned, the child may not have
            // finished creating the store: nothing was acknowledged, and a
            // half-made store is refused until a creating open finishes it.
            Err(asl::Error::NotAStore { .. }) if acked.is_empty() => continue,
            Err(e) => panic!("round {round}: store does not open: {e}"),
        };
        check_acked(&s, &acked, &removed, round);
        if round % 10 == 9 {
            let rep = s.maintenance().verify().unwrap();
            assert!(rep.is_clean(), "round {round}: {:?}", rep.problems);
        }
        // Removals must be durable too: remove one acknowledged id per round.
        if let Some((_, id)) = acked.get((rng.next() as usize) % acked.len().max(1)) {
            if !removed.contains(id) && s.remove(id).unwrap() {
                s.commit().unwrap();
                removed.insert(*id);
            }
        }
        drop(s);
    }
    assert!(
        acked.len() > 100,
        "children acknowledged too little to mean anything: {}",
        acked.len()
    );
    let s = Store::open(dir.path()).unwrap();
    assert!(s.maintenance().verify().unwrap().is_clean());
    eprintln!(
        "{} rounds, {} acknowledged artifacts, {:?}",
        rounds(),
        acked.len(),
        start.elapsed()
    );
}
