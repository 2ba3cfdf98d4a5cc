//! Power-cut test (needs `--features failpoints`). Like the crash test, a child
//! ingests and prints ids after each commit and is SIGKILLed; then, to model a
//! power loss rather than a process kill, every segment and log file is cut
//! back to the length it had at its last fsync (reported by the `failpoints`
//! hook) and a torn, random tail is appended where the unsynced bytes were.
//! Every acknowledged artifact must survive and the store must verify clean.

mod common;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;

use asl::{ArtifactId, Store};
use common::{check_acked, crash_child_loop, next_seed_after, noise, run_and_kill, Rng};

const CHILD_ENV: &str = "ASL_POWERCUT_CHILD_DIR";

#[test]
fn powercut_child() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child_loop(&dir, std::env::var("ASL_CRASH_SEED").unwrap().parse().unwrap());
    }
}

/// Last synced length of each file, from the hook's log.
fn synced_lengths(log: &std::path::Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for line in fs::read_to_string(log).unwrap_or_default().lines() {
        if let Some((path, len)) = line.rsplit_once(' ') {
            if let Ok(len) = len.parse() {
                out.insert(path.to_string(), len);
            }
        }
    }
    out
}

#[test]
fn power_cut_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let sync_log = dir.path().join("synced.txt");
    let mut rng = Rng(std::process::id() as u64 * 104_729 + 3);
    let mut acked: Vec<(u64, ArtifactId)> = Vec::new();
    let mut next_seed = 1u64;
    let mut cut_bytes = 0u64;
    let rounds: u32 = std::env::var("ASL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for round in 0..rounds {
        let _ = fs::remove_file(&sync_log);
        let envs = [
            (CHILD_ENV, store.display().to_string()),
            ("ASL_CRASH_SEED", next_seed.to_string()),
            ("ASL_FAILPOINT_SYNC_LOG", sync_log.display().to_string()),
        ];
        let got = run_and_kill("powercut_child", &envs, 20 + rng.next() % 180);
        next_seed = next_seed_after(&got, next_seed);
        acked.extend(got);

        // The power cut: whatever was written after a file's last fsync is gone,
        // and the device may have left a torn block of garbage in its place.
        for (path, len) in synced_lengths(&sync_log) {
            let Ok(meta) = fs::metadata(&path) else { continue };
            if meta.len() > len {
                cut_bytes += meta.len() - len;
                let f = OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(len).unwrap();
                if rng.next().is_multiple_of(2) {
                    let mut g = OpenOptions::new().append(true).open(&path).unwrap();
                    g.write_all(&noise(rng.next(), (rng.next() % 3000) as usize)).unwrap();
                }
                drop(f);
            }
        }

        let s = Store::open(&store).unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        check_acked(&s, &acked, &Default::default(), round);
        if round % 10 == 9 {
            let rep = s.verify().unwrap();
            assert!(rep.is_clean(), "round {round}: {:?}", rep.problems);
        }
    }
    assert!(
        acked.len() > 100,
        "too little acknowledged to mean anything: {}",
        acked.len()
    );
    assert!(
        cut_bytes > 0,
        "no round left an unsynced tail to cut; the test proved nothing"
    );
    let s = Store::open(&store).unwrap();
    assert!(s.verify().unwrap().is_clean());
    eprintln!(
        "{rounds} rounds, {} acknowledged, {cut_bytes} unsynced bytes cut",
        acked.len()
    );
}
