//! `aslctl ingest`: walk the inputs first (nothing is written if one is bad),
//! then store them in windows, printing b3sum-style lines after each commit.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use asl::{ArtifactId, Error, StoreOptions};
use serde_json::json;

use super::{human, Cli};

struct Input {
    path: PathBuf,
    size: u64,
}

/// Walks the arguments before anything is written, so a missing path, a socket
/// or an unreadable file stops the command with the store untouched.
fn collect_inputs(paths: &[PathBuf]) -> Result<(Vec<Input>, u64), Error> {
    let mut out = Vec::new();
    let mut skipped = 0u64;
    let bad = |p: &Path, why: String| Error::Io {
        context: format!("cannot ingest {}", p.display()),
        source: io::Error::new(io::ErrorKind::InvalidInput, why),
    };
    for p in paths {
        let md = fs::metadata(p).map_err(|e| Error::Io {
            context: format!("cannot ingest {}", p.display()),
            source: e,
        })?;
        if md.is_dir() {
            walk(p, &mut out, &mut skipped)?;
        } else if md.is_file() {
            File::open(p).map_err(|e| Error::Io {
                context: format!("cannot ingest {}", p.display()),
                source: e,
            })?;
            out.push(Input {
                path: p.clone(),
                size: md.len(),
            });
        } else {
            return Err(bad(p, "not a regular file or directory".into()));
        }
    }
    Ok((out, skipped))
}

fn walk(dir: &Path, out: &mut Vec<Input>, skipped: &mut u64) -> Result<(), Error> {
    let io_err = |p: &Path, e| Error::Io {
        context: format!("cannot ingest {}", p.display()),
        source: e,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_err(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ft = e.file_type().map_err(|x| io_err(&p, x))?;
        if ft.is_dir() {
            walk(&p, out, skipped)?;
        } else if ft.is_file() {
            let md = e.metadata().map_err(|x| io_err(&p, x))?;
            File::open(&p).map_err(|x| io_err(&p, x))?;
            out.push(Input {
                path: p,
                size: md.len(),
            });
        } else {
            // Symlinks and special files inside a directory are not artifacts.
            *skipped += 1;
        }
    }
    Ok(())
}

/// Formats a path the way b3sum does: names holding a backslash or newline are
/// escaped and the line is marked with a leading backslash.
fn b3sum_line(id: &ArtifactId, p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.contains('\\') || s.contains('\n') {
        format!("\\{id}  {}", s.replace('\\', "\\\\").replace('\n', "\\n"))
    } else {
        format!("{id}  {s}")
    }
}

const COMMIT_BYTES: u64 = 1 << 30;
const BATCH_BYTES: u64 = 64 << 20;
const BATCH_FILES: usize = 4096;

fn read_all(inputs: &[&Input]) -> Result<Vec<Vec<u8>>, Error> {
    use rayon::prelude::*;
    // Reading thousands of small files is mostly system-call time: spread it.
    inputs
        .par_iter()
        .with_min_len(16)
        .map(|i| {
            fs::read(&i.path).map_err(|e| Error::Io {
                context: format!("read {}", i.path.display()),
                source: e,
            })
        })
        .collect()
}
const COMMIT_FILES: usize = 20_000;

pub fn ingest(cli: &Cli, dir: &Path, paths: &[PathBuf], zstd: Option<&str>) -> Result<ExitCode, Error> {
    let compression = zstd.map(crate::args::parse_compression).transpose()?;
    let (inputs, skipped) = collect_inputs(paths)?;
    let mut opts = StoreOptions::new().create(true);
    if let Some(c) = compression {
        opts = opts.compression(c);
    }
    let store = opts.open(dir)?;
    let total: u64 = inputs.iter().map(|i| i.size).sum();
    let bar = (io::stderr().is_terminal() && !cli.json && total > (64 << 20)).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let start = Instant::now();
    let mut results: Vec<(asl::Put, &Path)> = Vec::new();
    let mut acked = 0usize;
    let mut since_commit = 0u64;
    let mut stdout = io::stdout().lock();
    let flush_acked = |results: &[(asl::Put, &Path)], from: usize, out: &mut io::StdoutLock| {
        if !cli.json {
            for (p, path) in &results[from..] {
                let _ = writeln!(out, "{}", b3sum_line(&p.id, path));
            }
            let _ = out.flush();
        }
    };
    let small = store.small_threshold() as u64;
    let mut done_bytes = 0u64;
    let mut next = 0;
    while next < inputs.len() {
        // A window of inputs: its small files are read together and stored with
        // one put_batch (hashed and compressed on all cores), then its large
        // files stream one at a time; results keep the input order.
        let mut small_bytes = 0u64;
        let end = (next..inputs.len())
            .take_while(|&i| {
                if inputs[i].size <= small {
                    small_bytes += inputs[i].size;
                }
                small_bytes <= BATCH_BYTES && i - next < BATCH_FILES
            })
            .last()
            .map(|i| i + 1)
            .unwrap_or(next + 1);
        let window = &inputs[next..end];
        let step = (|| -> Result<Vec<asl::Put>, Error> {
            let (small_idx, large_idx): (Vec<usize>, Vec<usize>) =
                (0..window.len()).partition(|&i| window[i].size <= small);
            let mut puts: Vec<Option<asl::Put>> = vec![None; window.len()];
            if !small_idx.is_empty() {
                let picked: Vec<&Input> = small_idx.iter().map(|&i| &window[i]).collect();
                let bufs = read_all(&picked)?;
                for (i, p) in small_idx.iter().zip(store.put_batch(&bufs)?) {
                    puts[*i] = Some(p);
                }
            }
            for i in large_idx {
                let input = &window[i];
                let p = store.put_file_with_progress(&input.path, &mut |d| {
                    if let Some(b) = &bar {
                        b.set_position(done_bytes + d);
                    }
                })?;
                done_bytes += input.size;
                puts[i] = Some(p);
            }
            Ok(puts.into_iter().flatten().collect())
        })();
        let puts = match step {
            Ok(p) => p,
            Err(e) => {
                // Nothing after the last commit is acknowledged; drop it rather
                // than let close() commit half of the command.
                store.abandon();
                return Err(e);
            }
        };
        let stop = next + puts.len();
        for (put, input) in puts.into_iter().zip(&inputs[next..stop]) {
            if put.new {
                since_commit += put.len;
            }
            if input.size <= small {
                done_bytes += input.size;
            }
            results.push((put, &input.path));
        }
        next = stop;
        if let Some(b) = &bar {
            b.set_position(done_bytes);
        }
        if since_commit >= COMMIT_BYTES || results.len() - acked >= COMMIT_FILES {
            if let Err(e) = store.commit() {
                store.abandon();
                return Err(e);
            }
            flush_acked(&results, acked, &mut stdout);
            acked = results.len();
            since_commit = 0;
        }
    }
    store.commit()?;
    flush_acked(&results, acked, &mut stdout);
    store.close()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = results.iter().map(|(p, _)| p.len).sum();
    let new: Vec<_> = results.iter().filter(|(p, _)| p.new).collect();
    let new_bytes: u64 = new.iter().map(|(p, _)| p.len).sum();
    let mbps = bytes as f64 / secs.max(1e-9) / 1e6;
    if cli.json {
        let files: Vec<_> = results
            .iter()
            .map(|(p, path)| json!({"id": p.id.to_hex(), "path": path.to_string_lossy(), "size": p.len, "new": p.new}))
            .collect();
        let v = json!({
            "files": files,
            "summary": {"files": results.len(), "bytes": bytes, "new_files": new.len(), "new_bytes": new_bytes,
                        "deduplicated_files": results.len() - new.len(), "skipped": skipped, "seconds": secs, "mb_per_s": mbps}
        });
        let _ = writeln!(stdout, "{v}");
    }
    eprintln!(
        "ingested {} files, {} ({} new files, {} new; {} deduplicated) in {:.2}s, {:.1} MB/s{}",
        results.len(),
        human(bytes),
        new.len(),
        human(new_bytes),
        results.len() - new.len(),
        secs,
        mbps,
        if skipped > 0 {
            format!("; skipped {skipped} symlinks or special files")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
