//! `aslctl bench`: parses the sweep, shows progress, prints the report. The
//! measuring is `asl::bench`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::{parse_compression, parse_size};
use crate::error::CliError;
use asl::bench::{self, Sweep, Workload};
use asl::Error;
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Generated workloads, comma-separated: tiny, source, huge, text, random,
    /// versioned [default: all of them, unless --corpus is given]
    #[arg(long, value_delimiter = ',')]
    workload: Option<Vec<String>>,
    /// A real directory to store (repeatable); its files, up to --size bytes.
    #[arg(long)]
    corpus: Vec<PathBuf>,
    /// Bytes per workload (K, M, G suffixes).
    #[arg(long, default_value = "64M")]
    size: String,
    /// Packed block targets to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256K")]
    block: Vec<String>,
    /// Small/large thresholds to sweep.
    #[arg(long, value_delimiter = ',', default_value = "128K")]
    small: Vec<String>,
    /// Compression settings to sweep: off or zstd levels.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    zstd: Vec<String>,
    /// Segment sizes to sweep.
    #[arg(long, value_delimiter = ',', default_value = "256M")]
    segment: Vec<String>,
    /// Warm random reads per kind (small, large) and run.
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    /// Cold reads per kind and run (each drops the caches first).
    #[arg(long, default_value_t = 100)]
    cold_reads: usize,
    /// Share of artifacts removed before measuring GC.
    #[arg(long, default_value_t = 0.3)]
    remove_share: f64,
    /// GC threshold for the GC measurement (1 reclaims all garbage).
    #[arg(long, default_value_t = 1.0)]
    gc_threshold: f64,
    /// Seed for generated workloads and sampling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for the stores it builds (removed after each run).
    #[arg(long, default_value = ".asl-bench")]
    work: PathBuf,
    /// Also write CSV to this file (- for stdout instead of the table).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also write an SVG plot of read latency against space amplification.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A sweep that finishes in seconds (tiny sizes; for CI).
    #[arg(long)]
    smoke: bool,
}

fn list<T, E: Into<CliError>>(v: &[String], f: impl Fn(&str) -> Result<T, E>) -> Result<Vec<T>, CliError> {
    v.iter().map(|s| f(s).map_err(Into::into)).collect()
}

pub fn bench(json_out: bool, a: &BenchArgs) -> Result<ExitCode, CliError> {
    let mut workloads: Vec<Workload> = match &a.workload {
        Some(names) => list(names, Workload::parse)?,
        None if a.corpus.is_empty() => list(
            &Workload::GENERATED.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            Workload::parse,
        )?,
        None => Vec::new(),
    };
    for c in &a.corpus {
        if !c.is_dir() {
            return Err(Error::InvalidArgument(format!("corpus {} is not a directory", c.display())).into());
        }
        workloads.push(Workload::Corpus(c.display().to_string()));
    }
    let mut sweep = Sweep {
        workloads,
        size: parse_size(&a.size)?,
        seed: a.seed,
        block_targets: list(&a.block, |s| parse_size(s).map(|n| n as usize))?,
        small_thresholds: list(&a.small, |s| parse_size(s).map(|n| n as usize))?,
        compressions: list(&a.zstd, parse_compression)?,
        segment_targets: list(&a.segment, parse_size)?,
        reads: a.reads,
        cold_reads: a.cold_reads,
        remove_share: a.remove_share,
        gc_threshold: a.gc_threshold,
        limit_bytes: 256 << 20,
        work_dir: a.work.clone(),
    };
    if a.smoke {
        sweep.size = sweep.size.min(2 << 20);
        sweep.reads = sweep.reads.min(50);
        sweep.cold_reads = sweep.cold_reads.min(5);
        sweep.limit_bytes = 8 << 20;
    }
    let tty = std::io::stderr().is_terminal() && crate::global::chatty();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(sweep.runs() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut progress = |done: usize, total: usize, label: &str| match &bar {
        Some(b) => {
            b.set_position(done as u64);
            b.set_message(label.to_string());
        }
        None => say!("[{done}/{total}] {label}"),
    };
    let result = bench::run_sweep(&sweep, &mut progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let _ = std::fs::remove_dir(&sweep.work_dir);
    let rep = result?;
    let write = |p: &PathBuf, text: &str| {
        std::fs::write(p, text).map_err(|e| Error::Io {
            context: format!("write {}", p.display()),
            source: e,
        })
    };
    if let Some(p) = &a.plot {
        write(p, &bench::plot_svg(&rep)?)?;
        say!("plot written to {}", p.display());
    }
    let mut out = std::io::stdout().lock();
    let printed = match &a.csv {
        Some(p) if p.as_os_str() == "-" => write!(out, "{}", bench::csv(&rep)),
        Some(p) => {
            write(p, &bench::csv(&rep))?;
            Ok(())
        }
        None => Ok(()),
    };
    let printed = printed.and_then(|_| {
        if json_out {
            writeln!(out, "{}", serde_json::to_string(&rep).unwrap_or_default())
        } else if a.csv.as_ref().is_none_or(|p| p.as_os_str() != "-") {
            write!(out, "{}", bench::table(&rep))
        } else {
            Ok(())
        }
    });
    printed.map_err(|e| Error::Io {
        context: "write stdout".into(),
        source: e,
    })?;
    Ok(ExitCode::SUCCESS)
}
