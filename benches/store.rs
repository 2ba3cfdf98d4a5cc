//! Criterion benches for the core store, each next to a baseline measured in the
//! same process (single-thread BLAKE3, a plain write + fdatasync), so figures can
//! be read as ratios on a noisy shared machine.
//!
//! Run: `cargo bench --bench store` (set `ASL_BENCH_DIR` to bench on another disk).

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use asl::{ArtifactId, Store, StoreOptions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ASL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir_in(".").unwrap(),
    }
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

const GIB: usize = 1 << 30;

/// A fresh store in its own directory (setup of batched benches, untimed).
fn fresh(compression: Option<i32>) -> (tempfile::TempDir, Store) {
    let d = bench_dir();
    let s = StoreOptions::new()
        .create(true)
        .compression(compression)
        .open(d.path())
        .unwrap();
    (d, s)
}

fn baselines(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let buf = noise(1, GIB);
    g.throughput(Throughput::Bytes(GIB as u64));
    g.bench_function("blake3_1thread_1GiB", |b| b.iter(|| blake3::hash(&buf)));
    let dir = bench_dir();
    g.bench_function("write_fdatasync_1GiB", |b| {
        b.iter(|| {
            let p = dir.path().join("dd");
            let mut f = File::create(&p).unwrap();
            for c in buf.chunks(1 << 20) {
                f.write_all(c).unwrap();
            }
            f.sync_data().unwrap();
            drop(f);
            fs::remove_file(&p).unwrap();
        })
    });
    g.finish();
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.sample_size(10);
    let small: Vec<Vec<u8>> = (0..10_000).map(|i| noise(i as u64 + 7, 1024)).collect();
    g.throughput(Throughput::Elements(small.len() as u64));
    for comp in [Some(3), None] {
        let name = if comp.is_some() { "zstd3" } else { "raw" };
        g.bench_function(format!("1KiB_x10000_put_batch_one_commit_{name}"), |b| {
            b.iter_batched(
                || {
                    let d = bench_dir();
                    let s = StoreOptions::new()
                        .create(true)
                        .compression(comp)
                        .open(d.path())
                        .unwrap();
                    (d, s)
                },
                |(d, s)| {
                    s.put_batch(&small).unwrap();
                    s.commit().unwrap();
                    (d, s)
                },
                BatchSize::PerIteration,
            )
        });
    }
    for (size, count) in [(1024usize, 10_000usize), (64 << 10, 1_000)] {
        let items: Vec<Vec<u8>> = (0..count).map(|i| noise(i as u64 + 7, size)).collect();
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(format!("{}KiB_x{count}_one_commit", size >> 10), |b| {
            b.iter_batched(
                || fresh(Some(3)),
                |(d, s)| {
                    for it in &items {
                        s.put(it).unwrap();
                    }
                    s.commit().unwrap();
                    (d, s)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Bytes(GIB as u64));
    let src_dir = bench_dir();
    let src = src_dir.path().join("input.bin");
    fs::write(&src, noise(42, GIB)).unwrap();
    g.bench_function("new_1GiB_file", |b| {
        b.iter_batched(
            || fresh(Some(3)),
            |(d, s)| {
                s.put_file(&src).unwrap();
                s.commit().unwrap();
                (d, s)
            },
            BatchSize::PerIteration,
        )
    });
    let d = bench_dir();
    let s = StoreOptions::new().create(true).open(d.path()).unwrap();
    s.put_file(&src).unwrap();
    s.commit().unwrap();
    g.bench_function("dedup_1GiB_file", |b| {
        b.iter(|| assert!(!s.put_file_with(&src, &asl::PutOptions::new()).unwrap().new));
    });
    g.finish();
}

fn build_store(dir: &std::path::Path, n: usize, compression: Option<i32>) -> Vec<ArtifactId> {
    let s = StoreOptions::new()
        .create(true)
        .compression(compression)
        .open(dir)
        .unwrap();
    let mut ids = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1024];
    for i in 0..n {
        buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
        buf[8..16].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        ids.push(s.put(&buf).unwrap());
        if i % 10_000 == 9_999 {
            s.commit().unwrap();
        }
    }
    s.maintenance().seal().unwrap();
    s.close().unwrap();
    ids
}

fn gets(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    let d = bench_dir();
    let ids = build_store(d.path(), 200_000, None);
    let s = Store::open(d.path()).unwrap();
    let mut x = 12345u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_1KiB_sealed_uncompressed", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.get(&ids[(x % ids.len() as u64) as usize]).unwrap()
        })
    });
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.sample_size(20);
    let d = bench_dir();
    let t = Instant::now();
    build_store(d.path(), 1_000_000, None);
    eprintln!("built a 1M-artifact store in {:?}", t.elapsed());
    g.bench_function("store_1M_artifacts", |b| b.iter(|| Store::open(d.path()).unwrap()));
    let path: PathBuf = d.path().to_path_buf();
    g.bench_function("store_1M_artifacts_read_only", |b| {
        b.iter(|| Store::open_read_only(&path).unwrap())
    });
    g.finish();
}

criterion_group!(benches, baselines, puts, ingest, gets, open);
criterion_main!(benches);
