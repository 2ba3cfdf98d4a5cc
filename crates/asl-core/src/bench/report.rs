//! Printing a sweep: an aligned table for people, CSV for spreadsheets, and an
//! SVG of the trade-off between read latency and space per block size.

use std::fmt::Write;

use plotters::prelude::*;

use super::measure::{Packing, ReadStats, RunResult};
use super::BenchReport;
use crate::error::{Error, Result};

fn size(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{}G", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

fn zstd(p: &Packing) -> String {
    p.compression.map(|l| l.to_string()).unwrap_or_else(|| "off".into())
}

fn lat(r: &Option<ReadStats>, f: fn(&ReadStats) -> f64) -> String {
    r.as_ref().map(|r| format!("{:.1}", f(r))).unwrap_or_else(|| "-".into())
}

/// The report as an aligned text table, with the machine and its limits on top.
pub fn table(rep: &BenchReport) -> String {
    let m = &rep.machine;
    let l = &rep.limits;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {} cores, {}, {:.1} GiB free, kernel {}, asl {}",
        m.cores,
        m.cpu,
        m.free_memory as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.commit
    );
    let _ = writeln!(
        out,
        "limits:  BLAKE3 {:.0} MB/s (1 thread), {:.0} MB/s (all); write+fdatasync {:.0} MB/s",
        l.blake3_one_thread / 1e6,
        l.blake3_all_threads / 1e6,
        l.write_fdatasync / 1e6
    );
    let head = [
        "workload",
        "block",
        "small",
        "zstd",
        "segment",
        "MB/s",
        "x disk",
        "art/s",
        "space",
        "dedup",
        "sm p50",
        "sm p99",
        "sm cold p99",
        "sm ramp",
        "lg p50",
        "lg p99",
        "lg cold p99",
        "open ms",
        "gc s",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in &rep.results {
        let p = &r.packing;
        rows.push(vec![
            r.workload.clone(),
            size(p.block_target as u64),
            size(p.small_threshold as u64),
            zstd(p),
            size(p.segment_target),
            format!("{:.0}", r.ingest_mb_s),
            format!("{:.2}", r.ingest_vs_disk),
            format!("{:.0}", r.ingest_artifacts_s),
            format!("{:.3}", r.space_amplification),
            format!("{:.2}", r.dedup_ratio),
            lat(&r.small_reads, |s| s.warm_p50_us),
            lat(&r.small_reads, |s| s.warm_p99_us),
            lat(&r.small_reads, |s| s.cold_p99_us),
            r.small_reads
                .as_ref()
                .map(|s| format!("{:.1}", s.read_amplification))
                .unwrap_or_else(|| "-".into()),
            lat(&r.large_reads, |s| s.warm_p50_us),
            lat(&r.large_reads, |s| s.warm_p99_us),
            lat(&r.large_reads, |s| s.cold_p99_us),
            format!("{:.2}", r.open_ms),
            format!("{:.3}", r.gc_seconds),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  "));
    }
    let _ = writeln!(
        out,
        "latencies in µs (sm: artifacts up to the small threshold, lg: larger; cold: caches and file pages dropped); \
         space = segment bytes / unique bytes; ramp = bytes read per byte returned"
    );
    out
}

/// One CSV line per run, with a header.
pub fn csv(rep: &BenchReport) -> String {
    let mut out = String::from(
        "workload,block_target,small_threshold,compression,segment_target,artifacts,logical_bytes,unique_bytes,\
         ingest_seconds,ingest_mb_s,ingest_artifacts_s,ingest_vs_disk,physical_bytes,index_bytes,\
         space_amplification,dedup_ratio,small_warm_p50_us,small_warm_p99_us,small_cold_p50_us,small_cold_p99_us,\
         small_read_amplification,large_warm_p50_us,large_warm_p99_us,large_cold_p50_us,large_cold_p99_us,\
         large_read_amplification,open_ms,gc_seconds,gc_reclaimed_bytes,commit\n",
    );
    let f = |r: &Option<ReadStats>, g: fn(&ReadStats) -> f64| {
        r.as_ref().map(|s| format!("{:.3}", g(s))).unwrap_or_default()
    };
    for r in &rep.results {
        let p = &r.packing;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.4},{:.2},{:.1},{:.3},{},{},{:.4},{:.3},{},{},{},{},{},{},{},{},{},{},{:.3},{:.4},{},{}",
            r.workload.replace(',', "_"),
            p.block_target,
            p.small_threshold,
            zstd(p),
            p.segment_target,
            r.artifacts,
            r.logical_bytes,
            r.unique_bytes,
            r.ingest_seconds,
            r.ingest_mb_s,
            r.ingest_artifacts_s,
            r.ingest_vs_disk,
            r.physical_bytes,
            r.index_bytes,
            r.space_amplification,
            r.dedup_ratio,
            f(&r.small_reads, |s| s.warm_p50_us),
            f(&r.small_reads, |s| s.warm_p99_us),
            f(&r.small_reads, |s| s.cold_p50_us),
            f(&r.small_reads, |s| s.cold_p99_us),
            f(&r.small_reads, |s| s.read_amplification),
            f(&r.large_reads, |s| s.warm_p50_us),
            f(&r.large_reads, |s| s.warm_p99_us),
            f(&r.large_reads, |s| s.cold_p50_us),
            f(&r.large_reads, |s| s.cold_p99_us),
            f(&r.large_reads, |s| s.read_amplification),
            r.open_ms,
            r.gc_seconds,
            r.gc_reclaimed_bytes,
            rep.machine.commit,
        );
    }
    out
}

/// An SVG of warm p99 small-read latency against space amplification: one
/// line per workload and compression setting, one point per block size
/// (labelled). The lower left corner is best.
pub fn plot_svg(rep: &BenchReport) -> Result<String> {
    let pts: Vec<(&RunResult, f64)> = rep
        .results
        .iter()
        .filter_map(|r| r.small_reads.as_ref().map(|s| (r, s.warm_p99_us)))
        .collect();
    if pts.is_empty() {
        return Err(Error::InvalidArgument(
            "no run read small artifacts: nothing to plot".into(),
        ));
    }
    let xmax = pts.iter().map(|(r, _)| r.space_amplification).fold(0.0, f64::max) * 1.08;
    let xmin = pts.iter().map(|(r, _)| r.space_amplification).fold(f64::MAX, f64::min) * 0.92;
    let ymax = pts.iter().map(|(_, y)| *y).fold(0.0, f64::max) * 1.5;
    let ymin = pts.iter().map(|(_, y)| *y).fold(f64::MAX, f64::min).max(0.1) / 1.5;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 640)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| Error::InvalidArgument(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "small-artifact read p99 (warm) vs space amplification — asl {}",
                    rep.machine.commit
                ),
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(xmin..xmax, (ymin..ymax).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("segment bytes / unique bytes")
            .y_desc("p99 µs (log scale)")
            .draw()
            .map_err(|e| err(&e))?;
        let mut keys: Vec<(String, String)> = pts
            .iter()
            .map(|(r, _)| (r.workload.clone(), zstd(&r.packing)))
            .collect();
        keys.sort();
        keys.dedup();
        for (i, (w, z)) in keys.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut line: Vec<(&RunResult, f64)> = pts
                .iter()
                .filter(|(r, _)| &r.workload == w && &zstd(&r.packing) == z)
                .copied()
                .collect();
            line.sort_by_key(|(r, _)| r.packing.block_target);
            let xy: Vec<(f64, f64)> = line.iter().map(|(r, y)| (r.space_amplification, *y)).collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(format!("{w}, zstd {z}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart
                .draw_series(line.iter().map(|(r, y)| {
                    EmptyElement::at((r.space_amplification, *y))
                        + Circle::new((0, 0), 4, color.filled())
                        + Text::new(size(r.packing.block_target as u64), (6, -14), ("sans-serif", 12))
                }))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
