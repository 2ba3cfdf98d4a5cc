//! The packing benchmark harness behind `aslctl bench`: stores generated
//! workloads (or a real directory) under a grid of packing options and
//! measures ingest, space, reads, open and GC, next to the machine's own
//! limits measured in the same run. The CLI only parses and prints.

mod limits;
mod measure;
mod report;
mod workload;

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

pub use limits::{Limits, Machine};
pub use measure::{Packing, ReadPlan, ReadStats, RunResult};
pub use report::{csv, plot_svg, table};
pub use workload::Workload;

/// A sweep: every workload × every combination of the packing axes.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// Workloads to run.
    pub workloads: Vec<Workload>,
    /// Bytes per generated workload (and the cap for a corpus).
    pub size: u64,
    /// Seed for generated workloads and sampling.
    pub seed: u64,
    /// Packed block targets.
    pub block_targets: Vec<usize>,
    /// Small/large thresholds.
    pub small_thresholds: Vec<usize>,
    /// Compression settings (None = off).
    pub compressions: Vec<Option<i32>>,
    /// Segment sizes.
    pub segment_targets: Vec<u64>,
    /// Warm reads per kind and run.
    pub reads: usize,
    /// Cold reads per kind and run.
    pub cold_reads: usize,
    /// Share of artifacts removed before GC.
    pub remove_share: f64,
    /// GC threshold for that run (1.0 reclaims every byte of garbage).
    pub gc_threshold: f64,
    /// Bytes used to measure the machine's limits.
    pub limit_bytes: usize,
    /// Where stores are built (each run removes its own).
    pub work_dir: PathBuf,
}

impl Sweep {
    /// The packings of the grid, in a stable order.
    pub fn packings(&self) -> Vec<Packing> {
        let mut out = Vec::new();
        for &segment_target in &self.segment_targets {
            for &small_threshold in &self.small_thresholds {
                for &compression in &self.compressions {
                    for &block_target in &self.block_targets {
                        out.push(Packing {
                            block_target,
                            small_threshold,
                            compression,
                            segment_target,
                        });
                    }
                }
            }
        }
        out
    }

    /// Number of runs the sweep will make.
    pub fn runs(&self) -> usize {
        self.workloads.len() * self.packings().len()
    }
}

/// A whole sweep's results, with what they were measured on.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The machine.
    pub machine: Machine,
    /// Its limits, measured at the start of the run.
    pub limits: Limits,
    /// The sweep that was run.
    pub sweep: Sweep,
    /// One result per workload and packing.
    pub results: Vec<RunResult>,
}

/// Runs a sweep. `progress(done, total, label)` is called before each run.
pub fn run_sweep(sweep: &Sweep, progress: &mut dyn FnMut(usize, usize, &str)) -> Result<BenchReport> {
    if sweep.runs() == 0 {
        return Err(Error::InvalidArgument(
            "the sweep has no run: every axis needs a value".into(),
        ));
    }
    if !(0.0..1.0).contains(&sweep.remove_share) {
        return Err(Error::InvalidArgument("remove share must be in [0, 1)".into()));
    }
    std::fs::create_dir_all(&sweep.work_dir)
        .map_err(|e| Error::io(format!("create {}", sweep.work_dir.display()), e))?;
    progress(0, sweep.runs(), "machine limits");
    let limits = Limits::measure(&sweep.work_dir, sweep.limit_bytes)?;
    let mut results = Vec::new();
    let total = sweep.runs();
    for w in &sweep.workloads {
        let items = w.artifacts(sweep.size, sweep.seed)?;
        for p in sweep.packings() {
            let label = format!(
                "{} block {} small {} zstd {} segment {}",
                w.name(),
                p.block_target,
                p.small_threshold,
                p.compression.map(|l| l.to_string()).unwrap_or_else(|| "off".into()),
                p.segment_target
            );
            progress(results.len(), total, &label);
            let plan = ReadPlan {
                reads: sweep.reads,
                cold_reads: sweep.cold_reads,
                remove_share: sweep.remove_share,
                gc_threshold: sweep.gc_threshold,
                seed: sweep.seed,
            };
            let dir = sweep.work_dir.join("run");
            results.push(measure::run(
                &w.name(),
                &items,
                &p,
                &plan,
                &dir,
                limits.write_fdatasync,
            )?);
        }
    }
    progress(total, total, "done");
    Ok(BenchReport {
        machine: Machine::probe(),
        limits,
        sweep: sweep.clone(),
        results,
    })
}
