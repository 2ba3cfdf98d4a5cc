//! Crash test with a real process: the test binary re-runs itself as a child
//! that ingests in a loop and prints each id only after `commit` returned. The
//! parent SIGKILLs it at a random moment, reopens the store and checks that
//! every acknowledged artifact reads back byte-identical and `verify` is clean.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asl::{ArtifactId, Store, StoreOptions};

const CHILD_ENV: &str = "ASL_CRASH_CHILD_DIR";

fn rounds() -> u32 {
    std::env::var("ASL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn data(seed: u64) -> Vec<u8> {
    // Sizes span packed artifacts and multi-chunk large ones.
    let len = match seed % 10 {
        0 => 70_000 + (seed % 7) as usize * 10_000,
        1..=3 => (seed % 4000) as usize,
        _ => 200 + (seed % 1500) as usize,
    };
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // The seed leads, so no two seeds share bytes (and so never an id).
    let mut v = seed.to_le_bytes().to_vec();
    for i in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half compressible, half not, so both block encodings are exercised.
        v.push(if seed.is_multiple_of(2) {
            (x >> 24) as u8
        } else {
            (i % 13) as u8
        });
    }
    v
}

fn opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .block_target(16 << 10)
        .small_threshold(8 << 10)
        .chunk_size(16 << 10)
        .segment_target(256 << 10)
        .memtable_limit(300)
        .max_index_files(3)
}

/// The child: runs only when re-spawned by the parent test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: u64 = std::env::var("ASL_CRASH_SEED").unwrap().parse().unwrap();
    let s = opts().open(&dir).unwrap();
    let mut seed = base;
    loop {
        let batch = 1 + seed % 8;
        let mut put = Vec::new();
        for _ in 0..batch {
            let id = s.put(&data(seed)).unwrap();
            put.push((seed, id));
            seed += 1;
        }
        if seed.is_multiple_of(5) {
            s.remove(&put[0].1).unwrap();
            put.remove(0);
        }
        s.commit().unwrap();
        for (sd, id) in put {
            println!("{sd} {id}");
        }
        if seed.is_multiple_of(37) {
            s.seal().unwrap();
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_during_ingest_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(std::process::id() as u64 * 7919 + 1);
    let mut acked: Vec<(u64, ArtifactId)> = Vec::new();
    let mut removed = std::collections::HashSet::new();
    let mut next_seed = 1u64;
    let start = Instant::now();
    for round in 0..rounds() {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("ASL_CRASH_SEED", next_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                let mut it = l.split(' ');
                if let (Some(a), Some(b)) = (it.next(), it.next()) {
                    if let (Ok(sd), Ok(id)) = (a.parse::<u64>(), b.parse::<ArtifactId>()) {
                        lines.push((sd, id));
                    }
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 180));
        // SIGKILL: no destructor, no flush.
        unsafe_kill(child.id());
        let _ = child.wait();
        let got = reader.join().unwrap();
        next_seed = got
            .iter()
            .map(|(s, _)| *s + 100)
            .max()
            .unwrap_or(next_seed + 100)
            .max(next_seed + 100);
        acked.extend(got);

        let s = Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        for (sd, id) in &acked {
            if removed.contains(id) {
                continue;
            }
            let bytes = s
                .get(id)
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {id} (seed {sd}) lost: {e}"));
            assert_eq!(bytes, data(*sd), "round {round}: {id} differs");
        }
        if round % 10 == 9 {
            let rep = s.verify().unwrap();
            assert!(rep.is_clean(), "round {round}: {:?}", rep.problems);
        }
        // Exercise removal durability too: remove one acknowledged id per round.
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
    assert!(s.verify().unwrap().is_clean());
    eprintln!(
        "{} rounds, {} acknowledged artifacts, {:?}",
        rounds(),
        acked.len(),
        start.elapsed()
    );
}

fn unsafe_kill(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}
