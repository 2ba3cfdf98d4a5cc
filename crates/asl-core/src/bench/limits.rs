//! The machine a run happened on, and its limits measured in the same run:
//! BLAKE3 on one thread and on all, and sequential writes with fdatasync.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{IoContext, Result};

/// What the run was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// MemAvailable from /proc/meminfo, in bytes.
    pub free_memory: u64,
    /// The ASL commit the binary was built from.
    pub commit: String,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads it off this machine.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let free_memory = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        Self {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu,
            free_memory,
            commit: option_env!("ASL_GIT_COMMIT").unwrap_or("unknown").to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// Limits in bytes per second.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// BLAKE3 on one thread.
    pub blake3_one_thread: f64,
    /// BLAKE3 on all threads (rayon).
    pub blake3_all_threads: f64,
    /// Sequential 1 MiB writes followed by one fdatasync, to a file in the work
    /// directory.
    pub write_fdatasync: f64,
}

impl Limits {
    /// Measures with `size` bytes (best of three for hashing).
    pub fn measure(dir: &Path, size: usize) -> Result<Self> {
        let buf: Vec<u8> = (0..size as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
            .collect();
        let best = |f: &dyn Fn()| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let one = best(&|| {
            std::hint::black_box(blake3::hash(&buf));
        });
        let all = best(&|| {
            let mut h = blake3::Hasher::new();
            h.update_rayon(&buf);
            std::hint::black_box(h.finalize());
        });
        let path = dir.join("limits-write.tmp");
        let t = Instant::now();
        {
            let mut f = std::fs::File::create(&path).ctx(|| format!("create {}", path.display()))?;
            for c in buf.chunks(1 << 20) {
                f.write_all(c).ctx(|| format!("write {}", path.display()))?;
            }
            f.sync_data().ctx(|| format!("fdatasync {}", path.display()))?;
        }
        let write = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&path);
        Ok(Self {
            blake3_one_thread: size as f64 / one,
            blake3_all_threads: size as f64 / all,
            write_fdatasync: size as f64 / write,
        })
    }
}
