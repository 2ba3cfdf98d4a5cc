//! GC on a large store with a share of its artifacts removed, while a reader
//! and a writer keep working in the same process.
//!
//! `cargo bench --bench gc` builds a store of `ASL_GC_N` artifacts (default
//! 1 000 000, 256 B to 1.75 KiB, incompressible), removes every tenth, reopens
//! it, and then runs `gc` twice: at the default threshold (0.95) and at 1.0
//! (every segment holding garbage is repacked). During each run one thread
//! reads random live artifacts and one puts new ones, committing every 100;
//! their operation counts and worst latencies show the store stays readable
//! and writable. `ASL_GC_CORPUS=DIR` also writes the same artifacts as files
//! (`DIR/NNN/NNNNNNN`) for the peer comparison in `benches/gc_vs_restic.sh`,
//! which removes the same tenth. `ASL_GC_BUILD_ONLY=1` stops after the
//! removals, leaving the store in `ASL_GC_DIR/store` for `aslctl gc`. Results go to stdout as one JSON object; the
//! process's anonymous memory (heap, not mapped segment pages) is sampled
//! every 5 ms during each GC run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asl::{ArtifactId, GcOptions, Store};

fn artifact(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 256 + (next() % 1536) as usize;
    let mut v = i.to_le_bytes().to_vec();
    while v.len() < len {
        v.extend_from_slice(&next().to_le_bytes());
    }
    v.truncate(len);
    v
}

fn removed(i: u64) -> bool {
    i % 10 == 3
}

fn corpus_path(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("{:03}", i / 10_000)).join(format!("{i:07}"))
}

/// A field of /proc/self/status in KiB (VmHWM: peak RSS, which counts mapped
/// segment pages; RssAnon: heap and stacks only).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Load {
    anon_before_kib: u64,
    anon_peak_kib: u64,
    reads: u64,
    worst_read: Duration,
    puts: u64,
    worst_commit: Duration,
}

/// Runs `gc` while a reader and a writer work; returns the report and their figures.
fn gc_under_load(s: &Arc<Store>, n: u64, threshold: f64, put_base: u64) -> (asl::GcReport, Load) {
    let stop = Arc::new(AtomicBool::new(false));
    let anon_before_kib = status_kib("RssAnon:");
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(status_kib("RssAnon:"));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut reads, mut worst, mut x) = (0u64, Duration::ZERO, 0x1234_5678u64);
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = x % n;
                if removed(i) {
                    continue;
                }
                let want = artifact(i);
                let t = Instant::now();
                let got = s.get(&ArtifactId::of(&want)).expect("live artifact readable during GC");
                worst = worst.max(t.elapsed());
                assert_eq!(got, want);
                reads += 1;
            }
            (reads, worst)
        })
    };
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut puts, mut worst, mut i) = (0u64, Duration::ZERO, put_base);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                for _ in 0..100 {
                    s.put(&artifact(i)).unwrap();
                    i += 1;
                }
                s.commit().unwrap();
                worst = worst.max(t.elapsed());
                puts += 100;
            }
            (puts, worst)
        })
    };
    let r = s.maintenance().gc(&GcOptions {
        threshold,
        dry_run: false,
    });
    stop.store(true, Ordering::Relaxed);
    let (reads, worst_read) = reader.join().unwrap();
    let (puts, worst_commit) = writer.join().unwrap();
    let anon_peak_kib = sampler.join().unwrap();
    (
        r.unwrap(),
        Load {
            anon_before_kib,
            anon_peak_kib,
            reads,
            worst_read,
            puts,
            worst_commit,
        },
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too, so do
    // nothing unless asked to.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("ASL_GC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let work = std::env::var("ASL_GC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("asl-gc-bench"));
    let _ = std::fs::remove_dir_all(&work);
    let store_dir = work.join("store");
    if let Ok(corpus) = std::env::var("ASL_GC_CORPUS") {
        let corpus = PathBuf::from(corpus);
        let _ = std::fs::remove_dir_all(&corpus);
        for i in 0..n {
            let p = corpus_path(&corpus, i);
            if i % 10_000 == 0 {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            }
            std::fs::write(&p, artifact(i)).unwrap();
        }
        eprintln!("wrote corpus of {n} files to {}", corpus.display());
    }

    let t = Instant::now();
    let s = Store::create(&store_dir).unwrap();
    let mut i = 0;
    while i < n {
        let batch: Vec<Vec<u8>> = (i..(i + 10_000).min(n)).map(artifact).collect();
        s.put_batch(&batch).unwrap();
        s.commit().unwrap();
        i += 10_000;
    }
    s.close().unwrap();
    let build = t.elapsed();
    let s = Store::open(&store_dir).unwrap();
    let t = Instant::now();
    for i in (0..n).filter(|i| removed(*i)) {
        s.remove(&ArtifactId::of(&artifact(i))).unwrap();
    }
    s.commit().unwrap();
    let remove = t.elapsed();
    s.close().unwrap();
    if std::env::var_os("ASL_GC_BUILD_ONLY").is_some() {
        // For timing `aslctl gc` on copies of the same store from outside.
        eprintln!("built {} in {build:?}, removals {remove:?}", store_dir.display());
        return;
    }
    let s = Arc::new(Store::open(&store_dir).unwrap());
    let before = s.maintenance().stat().unwrap();
    let (default_run, default_load) = gc_under_load(&s, n, GcOptions::default().threshold, 10 * n);
    let (full_run, full_load) = gc_under_load(&s, n, 1.0, 20 * n);
    let after = s.maintenance().stat().unwrap();
    // Spot check: a sample of survivors reads back, the removed are gone.
    for i in (0..n).step_by((n / 10_000).max(1) as usize) {
        let id = ArtifactId::of(&artifact(i));
        assert_eq!(s.contains(&id).unwrap(), !removed(i), "artifact {i}");
    }
    let load = |l: &Load| {
        serde_json::json!({
            "anon_rss_before_kib": l.anon_before_kib,
            "anon_rss_peak_kib": l.anon_peak_kib,
            "reads": l.reads,
            "worst_read_ms": l.worst_read.as_secs_f64() * 1e3,
            "puts": l.puts,
            "worst_put100_commit_ms": l.worst_commit.as_secs_f64() * 1e3,
        })
    };
    let run = |r: &asl::GcReport| {
        serde_json::json!({
            "seconds": r.elapsed.as_secs_f64(),
            "segments_deleted": r.segments_deleted,
            "segments_repacked": r.segments_repacked,
            "reclaimed_bytes": r.reclaimed_bytes,
            "repacked_bytes": r.repacked_bytes,
            "artifacts_copied": r.artifacts_copied,
            "garbage_before": r.garbage_before,
            "garbage_after": r.garbage_after,
            "peak_memory_bytes": r.peak_memory_bytes,
        })
    };
    let out = serde_json::json!({
        "artifacts": n,
        "removed": n / 10,
        "build_seconds": build.as_secs_f64(),
        "remove_seconds": remove.as_secs_f64(),
        "physical_before": before.physical_bytes,
        "physical_after": after.physical_bytes,
        "gc_default": run(&default_run),
        "gc_default_load": load(&default_load),
        "gc_full": run(&full_run),
        "gc_full_load": load(&full_load),
        "peak_rss_kib": status_kib("VmHWM:"),
    });
    let mut o = std::io::stdout().lock();
    writeln!(o, "{out}").unwrap();
}
