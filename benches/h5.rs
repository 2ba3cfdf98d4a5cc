//! HDF5 costs, printed as a table, against the machine's peers in the same
//! run:
//!
//! 1. ingest + index of a chunked HDF5 file (1 GiB by default: float64,
//!    1 MiB chunks, written by h5py) — the file stored as an artifact, the
//!    index record with every chunk's range and BLAKE3, and the logical
//!    digests, committed — against copying the file with `cp` (and with
//!    `cp` then `sync`, since ASL's commit makes its bytes durable);
//! 2. reading one chunk back as elements, `h5read::read` through the index
//!    (a verified range read of the file artifact, then decoding) with the
//!    file opened once (`h5read::Reader`) and opened for each read, against
//!    h5py reading the same chunk from the file, in its own process, timed
//!    inside Python so interpreter start-up is not counted. Both read warm
//!    (the page cache holds the file); the mean over many chunks.
//!
//! `cargo bench --features hdf5 --bench h5` (ASL_H5_MIB sets the file size,
//! ASL_H5_DIR where it is written, ASL_H5_READS how many chunks are read). The machine is shared and noisy:
//! compare the ratios within one run.

use std::process::Command;
use std::time::Instant;

use asl::formats::{h5read, hdf5};
use asl::records::{self, Source};
use asl::StoreOptions;

const CHUNK_ELEMS: u64 = 131_072; // 1 MiB of float64

fn python(script: &str, args: &[&str]) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 with h5py");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn main() {
    let mib: u64 = std::env::var("ASL_H5_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let base = std::env::var("ASL_H5_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).unwrap();
    let file = dir.path().join("big.h5");
    let n = mib * 1024 * 1024 / 8;
    let t = Instant::now();
    python(
        "import sys, h5py, numpy as np
n = int(sys.argv[2]); c = int(sys.argv[3])
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1], 'w') as f:
    d = f.create_dataset('data', shape=(n,), dtype='<f8', chunks=(c,))
    for i in range(0, n, 16 * c):
        m = min(16 * c, n - i)
        d[i:i + m] = rng.random(m)",
        &[file.to_str().unwrap(), &n.to_string(), &CHUNK_ELEMS.to_string()],
    );
    let len = std::fs::metadata(&file).unwrap().len();
    eprintln!(
        "wrote {} MiB with h5py in {:.1} s",
        len >> 20,
        t.elapsed().as_secs_f64()
    );
    let gb = len as f64 / 1e9;

    // Warm the page cache for everyone alike.
    let _ = std::fs::read(&file);
    let copy = dir.path().join("copy.h5");
    let t = Instant::now();
    let st = Command::new("cp").arg(&file).arg(&copy).status().unwrap();
    assert!(st.success());
    let cp = t.elapsed().as_secs_f64();
    let st = Command::new("sync").arg("-f").arg(&copy).status().unwrap();
    assert!(st.success());
    let cp_sync = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy).unwrap();

    // The store's own put of the same file, for what the index adds.
    let plain_dir = dir.path().join("plain");
    let t = Instant::now();
    let plain = StoreOptions::new().create(true).open(&plain_dir).unwrap();
    plain.put_file(&file).unwrap();
    plain.commit().unwrap();
    let put_only = t.elapsed().as_secs_f64();
    drop(plain);
    std::fs::remove_dir_all(&plain_dir).unwrap();

    let store_dir = dir.path().join("store");
    let t = Instant::now();
    let store = StoreOptions::new().create(true).open(&store_dir).unwrap();
    let got = hdf5::ingest(&store, &file).unwrap();
    store.commit().unwrap();
    let ingest = t.elapsed().as_secs_f64();

    // One chunk back, through the index and through h5py, the same chunks.
    let index = records::get(&store as &dyn Source, &got.index).unwrap();
    let chunks = (n / CHUNK_ELEMS).max(1);
    let reads: u64 = std::env::var("ASL_H5_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let picks: Vec<u64> = (0..reads).map(|i| (i * 7919) % chunks).collect();
    let sel = |c: u64| h5read::parse_selection(&format!("{}:{}", c * CHUNK_ELEMS, (c + 1) * CHUNK_ELEMS)).unwrap();
    let t = Instant::now();
    let mut reader = h5read::Reader::open(&store, &index).unwrap();
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for &c in &picks {
        let a = reader.read("/data", &sel(c)).unwrap();
        assert_eq!(a.chunks_read, 1);
    }
    let ours = t.elapsed().as_secs_f64() / picks.len() as f64;
    drop(reader);
    let t = Instant::now();
    for &c in &picks[..8] {
        h5read::read(&store, &index, "/data", &sel(c)).unwrap();
    }
    let one_shot = t.elapsed().as_secs_f64() / 8.0;
    let list: Vec<String> = picks.iter().map(u64::to_string).collect();
    let theirs: f64 = python(
        "import sys, time, h5py
c = int(sys.argv[2]); picks = [int(x) for x in sys.argv[3].split(',')]
with h5py.File(sys.argv[1], 'r') as f:
    d = f['data']
    d[0:c]
    t = time.perf_counter()
    for p in picks:
        d[p * c:(p + 1) * c]
    print((time.perf_counter() - t) / len(picks))",
        &[file.to_str().unwrap(), &CHUNK_ELEMS.to_string(), &list.join(",")],
    )
    .parse()
    .unwrap();
    drop(store);

    println!(
        "HDF5: {} MiB chunked file ({} chunks of 1 MiB), {} datasets",
        len >> 20,
        got.chunks,
        got.datasets
    );
    println!("{:<44} {:>9} {:>10} {:>8}", "", "seconds", "GB/s", "ratio");
    println!("{:<44} {:>9.2} {:>10.2} {:>8}", "cp", cp, gb / cp, "1.00");
    println!(
        "{:<44} {:>9.2} {:>10.2} {:>8.2}",
        "cp, then sync -f",
        cp_sync,
        gb / cp_sync,
        cp_sync / cp
    );
    println!(
        "{:<44} {:>9.2} {:>10.2} {:>8.2}",
        "asl put of the file alone, committed",
        put_only,
        gb / put_only,
        put_only / cp
    );
    println!(
        "{:<44} {:>9.2} {:>10.2} {:>8.2}",
        "asl h5 ingest + index + digests, committed",
        ingest,
        gb / ingest,
        ingest / cp
    );
    println!();
    println!(
        "{:<44} {:>9} {:>8}",
        "one 1 MiB chunk as elements (mean)", "ms", "ratio"
    );
    println!("{:<44} {:>9.3} {:>8}", "h5py, in-process", theirs * 1e3, "1.00");
    println!(
        "{:<44} {:>9.3} {:>8.2}",
        "asl Reader::read (file opened once)",
        ours * 1e3,
        ours / theirs
    );
    println!(
        "{:<44} {:>9.3} {:>8.2}",
        "asl h5read::read (opens the file each time)",
        one_shot * 1e3,
        one_shot / theirs
    );
    println!("{:<44} {:>9.3}", "  of which Reader::open, once", open * 1e3);
}
