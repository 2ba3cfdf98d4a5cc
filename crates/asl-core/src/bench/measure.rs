//! One measured run: a workload stored with one packing, then read back warm
//! and cold, reopened, and collected after removing a share of it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::id::ArtifactId;
use crate::store::{GcOptions, Store, StoreOptions};

/// The packing options a run uses (the sweep's axes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Packing {
    /// Target raw size of a packed block.
    pub block_target: usize,
    /// Largest artifact that is packed; larger ones get blocks of their own.
    pub small_threshold: usize,
    /// zstd level, or none.
    pub compression: Option<i32>,
    /// Size at which a segment is sealed.
    pub segment_target: u64,
}

impl Packing {
    fn options(&self) -> StoreOptions {
        StoreOptions::new()
            .create(true)
            .block_target(self.block_target)
            .small_threshold(self.small_threshold)
            .compression(self.compression)
            .segment_target(self.segment_target)
    }
}

/// Latencies of one kind of read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadStats {
    /// Reads timed.
    pub samples: usize,
    /// Median latency, page cache and block cache warm, in µs.
    pub warm_p50_us: f64,
    /// 99th percentile, warm, in µs.
    pub warm_p99_us: f64,
    /// Bytes returned per second over the warm reads.
    pub warm_mb_s: f64,
    /// Reads timed cold.
    pub cold_samples: usize,
    /// Median latency after dropping the store's caches and the files' pages, in µs.
    pub cold_p50_us: f64,
    /// 99th percentile, cold, in µs.
    pub cold_p99_us: f64,
    /// Bytes read from segment files per byte returned.
    pub read_amplification: f64,
}

/// Everything measured for one workload and one packing.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Workload name.
    pub workload: String,
    /// Packing used.
    pub packing: Packing,
    /// Artifacts stored (with repeats).
    pub artifacts: u64,
    /// Bytes stored (with repeats).
    pub logical_bytes: u64,
    /// Bytes of distinct artifacts.
    pub unique_bytes: u64,
    /// Wall time of the ingest, up to the commit that made it durable.
    pub ingest_seconds: f64,
    /// Logical MB/s (10^6 bytes).
    pub ingest_mb_s: f64,
    /// Artifacts per second.
    pub ingest_artifacts_s: f64,
    /// Ingest MB/s as a fraction of the measured write limit.
    pub ingest_vs_disk: f64,
    /// Bytes of segment files after a clean close.
    pub physical_bytes: u64,
    /// Bytes of index, log and checkpoint files.
    pub index_bytes: u64,
    /// physical_bytes / unique_bytes.
    pub space_amplification: f64,
    /// logical_bytes / unique_bytes.
    pub dedup_ratio: f64,
    /// Reads of artifacts up to the small threshold.
    pub small_reads: Option<ReadStats>,
    /// Reads of larger artifacts.
    pub large_reads: Option<ReadStats>,
    /// Median time to open the store read-only, in ms.
    pub open_ms: f64,
    /// Share of distinct artifacts removed before GC.
    pub removed_share: f64,
    /// GC wall time (at the sweep's GC threshold).
    pub gc_seconds: f64,
    /// Segment bytes GC deleted.
    pub gc_reclaimed_bytes: u64,
    /// Segment bytes after GC.
    pub physical_after_gc: u64,
}

/// How many reads and what to remove.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    /// Warm reads per kind.
    pub reads: usize,
    /// Cold reads per kind.
    pub cold_reads: usize,
    /// Share of distinct artifacts removed before the GC run.
    pub remove_share: f64,
    /// Threshold of that GC run.
    pub gc_threshold: f64,
    /// Seed for sampling.
    pub seed: u64,
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn drop_file_pages(dir: &Path) {
    for sub in ["segments", "index", "snapshots"] {
        for e in std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
            crate::io::Backend::drop_cache(&crate::io::LocalBackend, &e.path());
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

/// Stores `items` in a new store at `dir` with `packing` and measures it.
/// `write_limit` is the machine's sequential write speed in bytes/s.
pub fn run(
    workload: &str,
    items: &[Vec<u8>],
    packing: &Packing,
    plan: &ReadPlan,
    dir: &Path,
    write_limit: f64,
) -> Result<RunResult> {
    let _ = std::fs::remove_dir_all(dir);
    let store = packing.options().open(dir)?;
    let t = Instant::now();
    // Ids in item order: small items go through put_batch in runs, large ones
    // one by one as they come.
    let mut ids = vec![ArtifactId::from_bytes([0; 32]); items.len()];
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0usize;
    let flush = |run: &mut Vec<usize>, ids: &mut Vec<ArtifactId>| -> Result<()> {
        let batch: Vec<&[u8]> = run.iter().map(|i| items[*i].as_slice()).collect();
        for (i, p) in run.iter().zip(store.put_batch(&batch)?) {
            ids[*i] = p;
        }
        run.clear();
        Ok(())
    };
    for (i, it) in items.iter().enumerate() {
        if it.len() > packing.small_threshold {
            ids[i] = store.put(it)?;
            continue;
        }
        run.push(i);
        run_bytes += it.len();
        if run.len() >= 4096 || run_bytes >= 64 << 20 {
            flush(&mut run, &mut ids)?;
            run_bytes = 0;
        }
    }
    flush(&mut run, &mut ids)?;
    store.commit()?;
    let ingest = t.elapsed().as_secs_f64();
    store.close()?;

    let logical: u64 = items.iter().map(|v| v.len() as u64).sum();
    let mut seen = HashSet::new();
    let mut distinct: Vec<(ArtifactId, usize)> = Vec::new();
    for (id, it) in ids.iter().zip(items) {
        if seen.insert(*id) {
            distinct.push((*id, it.len()));
        }
    }
    let unique: u64 = distinct.iter().map(|(_, n)| *n as u64).sum();
    let physical = dir_bytes(&dir.join("segments"));
    let index_bytes = dir_bytes(&dir.join("index")) + dir_bytes(&dir.join("log")) + dir_bytes(dir);

    let mut opens: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open_read_only(dir);
            let e = t.elapsed().as_secs_f64() * 1e3;
            s.map(|_| e)
        })
        .collect::<Result<_>>()?;

    let mut rng = Rng(plan.seed | 1);
    let mut sample = |small: bool| -> Vec<(ArtifactId, usize)> {
        let pool: Vec<&(ArtifactId, usize)> = distinct
            .iter()
            .filter(|(_, n)| (*n <= packing.small_threshold) == small)
            .collect();
        if pool.is_empty() {
            return Vec::new();
        }
        (0..plan.reads.min(pool.len() * 4))
            .map(|_| *pool[(rng.next() % pool.len() as u64) as usize])
            .collect()
    };
    let small_ids = sample(true);
    let large_ids = sample(false);
    let small_reads = read_stats(dir, &small_ids, plan)?;
    let large_reads = read_stats(dir, &large_ids, plan)?;

    // GC after removing a share of the distinct artifacts.
    let store = packing.options().open(dir)?;
    let mut rng = Rng(plan.seed.wrapping_mul(31) | 1);
    let cut = (plan.remove_share * u64::MAX as f64) as u64;
    for (id, _) in &distinct {
        if rng.next() < cut {
            store.remove(id)?;
        }
    }
    store.commit()?;
    let gc = store.maintenance().gc(&GcOptions {
        threshold: plan.gc_threshold,
        dry_run: false,
    })?;
    store.close()?;
    let physical_after_gc = dir_bytes(&dir.join("segments"));
    std::fs::remove_dir_all(dir).ctx(|| format!("remove {}", dir.display()))?;

    let mb_s = logical as f64 / ingest / 1e6;
    Ok(RunResult {
        workload: workload.to_string(),
        packing: packing.clone(),
        artifacts: items.len() as u64,
        logical_bytes: logical,
        unique_bytes: unique,
        ingest_seconds: ingest,
        ingest_mb_s: mb_s,
        ingest_artifacts_s: items.len() as f64 / ingest,
        ingest_vs_disk: mb_s * 1e6 / write_limit,
        physical_bytes: physical,
        index_bytes,
        space_amplification: physical as f64 / unique.max(1) as f64,
        dedup_ratio: logical as f64 / unique.max(1) as f64,
        small_reads,
        large_reads,
        open_ms: pct(&mut opens, 0.5),
        removed_share: plan.remove_share,
        gc_seconds: gc.elapsed.as_secs_f64(),
        gc_reclaimed_bytes: gc.reclaimed_bytes,
        physical_after_gc,
    })
}

fn read_stats(dir: &Path, ids: &[(ArtifactId, usize)], plan: &ReadPlan) -> Result<Option<ReadStats>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let store = Store::open_read_only(dir)?;
    let (mut cost, mut returned) = (0u64, 0u64);
    for (id, n) in ids {
        cost += store.read_cost(id)?;
        returned += *n as u64;
        std::hint::black_box(store.get(id)?);
    }
    let mut warm = Vec::with_capacity(ids.len());
    let t = Instant::now();
    for (id, _) in ids {
        let s = Instant::now();
        std::hint::black_box(store.get(id)?);
        warm.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let warm_total = t.elapsed().as_secs_f64();
    drop(store);
    let mut cold = Vec::new();
    for (id, _) in ids.iter().take(plan.cold_reads) {
        // Nothing of the store stays mapped or cached between cold reads.
        drop_file_pages(dir);
        let store = Store::open_read_only(dir)?;
        store.drop_block_cache();
        let s = Instant::now();
        std::hint::black_box(store.get(id)?);
        cold.push(s.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Some(ReadStats {
        samples: warm.len(),
        warm_p50_us: pct(&mut warm, 0.5),
        warm_p99_us: pct(&mut warm, 0.99),
        warm_mb_s: returned as f64 / warm_total / 1e6,
        cold_samples: cold.len(),
        cold_p50_us: pct(&mut cold, 0.5),
        cold_p99_us: pct(&mut cold, 0.99),
        read_amplification: cost as f64 / returned.max(1) as f64,
    }))
}
