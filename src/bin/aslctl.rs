//! `aslctl`: the command-line shell over the `asl` library.
//!
//! Data goes to stdout, progress and summaries to stderr. Exit codes: 0 ok,
//! 1 a failed check (corruption found, an id not in the store), 2 bad usage or
//! input (and environment failures such as a locked store or a full disk).

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use asl::{ArtifactId, ArtifactReader, Error, Store, StoreOptions};
use clap::{Parser, Subcommand};
use serde_json::json;

#[path = "aslctl/bench.rs"]
mod bench;
#[path = "aslctl/snap.rs"]
mod snap;

#[derive(Parser)]
#[command(name = "aslctl", version, about = "Content-addressed artifact store")]
struct Cli {
    /// Store directory [default: $ASL_STORE, else ./.asl]
    #[arg(long, global = true, env = "ASL_STORE")]
    store: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Store files (directories recursively); prints `<id>  <path>` like b3sum.
    Ingest {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Block compression for what this command writes: off, or a zstd
        /// level 1-22 [default: 3]
        #[arg(long, value_name = "LEVEL")]
        zstd: Option<String>,
    },
    /// Write an artifact to a file (or stdout).
    Get {
        /// Id or unique id prefix.
        id: String,
        /// Output file.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Read from this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
    },
    /// Write an artifact to stdout.
    Cat {
        /// Id or unique id prefix.
        id: String,
        /// Read from this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
    },
    /// List live artifacts: `<id> <size>`.
    Ls {
        /// List this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
    },
    /// Named snapshots: create, list, show, diff, delete, prune.
    #[command(subcommand)]
    Snapshot(snap::SnapCmd),
    /// Pin an artifact under a name, as a GC root.
    Pin {
        /// Pin name.
        name: String,
        /// Id or unique id prefix.
        id: String,
    },
    /// Remove a pin.
    Unpin {
        /// Pin name.
        name: String,
    },
    /// List pins: `<id> <name>`.
    Pins,
    /// Reclaim space: delete dead segments, repack mostly-dead ones.
    Gc {
        /// Report what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack segments whose live fraction is below this (0 to 1).
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
    },
    /// Show counts, sizes and CURRENT's identity.
    Stat,
    /// Remove artifacts from CURRENT.
    Rm {
        /// Ids or unique id prefixes.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Seal the open segment.
    Seal,
    /// Check every block and every artifact; exit 1 when anything is corrupt.
    Verify,
    /// Rebuild the index and log from the segment files.
    Repair,
    /// Measure packing options on generated workloads or a real directory,
    /// next to the machine's own limits (no store needed).
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let store = cli.store.clone().unwrap_or_else(|| PathBuf::from(".asl"));
    match run(&cli, &store) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aslctl: error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotFound(_)
        | Error::PrefixNotFound(_)
        | Error::SnapshotNotFound(_)
        | Error::PinNotFound(_)
        | Error::NotRetained(_)
        | Error::Corrupt { .. }
        | Error::CorruptArtifact { .. } => 1,
        _ => 2,
    }
}

fn run(cli: &Cli, dir: &Path) -> Result<ExitCode, Error> {
    let read_only = || StoreOptions::new().read_only(true).open(dir);
    match &cli.cmd {
        Cmd::Ingest { paths, zstd } => ingest(cli, dir, paths, zstd.as_deref()),
        Cmd::Get { id, output, at } => {
            let s = read_only()?;
            let mut r = open_artifact(&s, id, at.as_deref())?;
            match output {
                Some(p) => {
                    let res = write_to_file(&mut r, p);
                    if res.is_err() {
                        let _ = fs::remove_file(p);
                    }
                    res?;
                }
                None => stream_to_stdout(&mut r)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cat { id, at } => {
            let s = read_only()?;
            stream_to_stdout(&mut open_artifact(&s, id, at.as_deref())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ls { at } => {
            let s = read_only()?;
            let out = io::stdout().lock();
            let mut out = BufWriter::new(out);
            let w = |r: io::Result<()>| {
                r.map_err(|e| Error::Io {
                    context: "write stdout".into(),
                    source: e,
                })
            };
            if cli.json {
                w(out.write_all(b"["))?;
            }
            let iter = match at {
                Some(name) => s.at(name)?.iter()?,
                None => s.iter()?,
            };
            for (i, a) in iter.enumerate() {
                let a = a?;
                if cli.json {
                    let sep = if i == 0 { "\n" } else { ",\n" };
                    let v = json!({"id": a.id.to_hex(), "size": a.len, "visibility": a.visibility.as_str()});
                    w(write!(out, "{sep}{v}"))?;
                } else {
                    w(writeln!(out, "{} {}", a.id, a.len))?;
                }
            }
            if cli.json {
                w(out.write_all(b"\n]\n"))?;
            }
            w(out.flush())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Snapshot(cmd) => snap::snapshot(cli.json, dir, cmd),
        Cmd::Bench(args) => bench::bench(cli.json, args),
        Cmd::Pin { name, id } => snap::pin(cli.json, dir, name, id),
        Cmd::Unpin { name } => snap::unpin(cli.json, dir, name),
        Cmd::Pins => snap::pins(cli.json, dir),
        Cmd::Gc { dry_run, threshold } => snap::gc(cli.json, dir, *threshold, *dry_run),
        Cmd::Stat => {
            let st = read_only()?.stat()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                println!("artifacts       {}", st.artifacts);
                println!("logical bytes   {} ({})", st.logical_bytes, human(st.logical_bytes));
                println!("physical bytes  {} ({})", st.physical_bytes, human(st.physical_bytes));
                println!("index+log bytes {} ({})", st.index_bytes, human(st.index_bytes));
                println!("segments        {} ({} sealed)", st.segments, st.sealed_segments);
                println!("index files     {}", st.index_files);
                println!("live bytes      {} ({})", st.live_bytes, human(st.live_bytes));
                println!("garbage bytes   {} ({})", st.garbage_bytes, human(st.garbage_bytes));
                println!("snapshots       {}", st.snapshots);
                println!("pins            {}", st.pins);
                println!("current         {}", st.current_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rm { ids } => {
            let s = Store::open(dir)?;
            let mut resolved = Vec::new();
            for t in ids {
                resolved.push(s.resolve(t)?);
            }
            let mut missing = Vec::new();
            let mut removed = Vec::new();
            for id in resolved {
                if s.remove(&id)? {
                    removed.push(id);
                } else {
                    missing.push(id);
                }
            }
            s.commit()?;
            if cli.json {
                let v = json!({
                    "removed": removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    "not_found": missing.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                });
                println!("{v}");
            } else {
                for id in &removed {
                    println!("removed {id}");
                }
            }
            for id in &missing {
                eprintln!("aslctl: error: artifact {id} not found");
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Seal => {
            let s = Store::open(dir)?;
            s.seal()?;
            s.close()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify => {
            let s = read_only()?;
            let r = s.verify()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                for p in &r.problems {
                    match &p.artifact {
                        Some(a) => println!("CORRUPT {a} in {}: {}", p.file.display(), p.detail),
                        None => println!("CORRUPT {}: {}", p.file.display(), p.detail),
                    }
                }
                eprintln!(
                    "verified {} segments, {} blocks, {} artifacts ({}): {}",
                    r.segments,
                    r.blocks,
                    r.artifacts,
                    human(r.bytes),
                    if r.is_clean() {
                        "clean".to_string()
                    } else {
                        format!("{} problems", r.problems.len())
                    }
                );
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Repair => {
            let r = Store::repair(dir)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                for s in &r.skipped {
                    eprintln!("skipped {s}");
                }
                println!(
                    "repaired: {} segments, {} blocks ({} bad), {} artifacts, {} removals replayed, {} torn bytes cut, {} segments sealed",
                    r.segments, r.blocks, r.bad_blocks, r.artifacts, r.tombstones, r.truncated_bytes, r.sealed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A reader over `id` (or a unique prefix) in CURRENT or in snapshot `at`.
fn open_artifact(s: &Store, id: &str, at: Option<&str>) -> Result<ArtifactReader, Error> {
    match at {
        Some(name) => {
            let v = s.at(name)?;
            let id = v.resolve(id)?;
            v.open_reader(&id)
        }
        None => s.open_reader(&s.resolve(id)?),
    }
}

fn stream_to_stdout(r: &mut ArtifactReader) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    copy(r, &mut out)?;
    out.flush().map_err(|e| Error::Io {
        context: "write stdout".into(),
        source: e,
    })
}

fn write_to_file(r: &mut ArtifactReader, p: &Path) -> Result<(), Error> {
    let f = File::create(p).map_err(|e| Error::Io {
        context: format!("create {}", p.display()),
        source: e,
    })?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    copy(r, &mut w)?;
    w.flush().map_err(|e| Error::Io {
        context: format!("write {}", p.display()),
        source: e,
    })
}

/// Copies, keeping store errors (corruption) apart from output errors.
fn copy(r: &mut asl::ArtifactReader, w: &mut dyn Write) -> Result<(), Error> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match io::Read::read(r, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match e.into_inner().map(|x| x.downcast::<Error>()) {
                    Some(Ok(inner)) => *inner,
                    Some(Err(other)) => Error::Io {
                        context: "read artifact".into(),
                        source: io::Error::other(other),
                    },
                    None => Error::Io {
                        context: "read artifact".into(),
                        source: io::Error::other("read failed"),
                    },
                })
            }
        };
        w.write_all(&buf[..n]).map_err(|e| Error::Io {
            context: "write output".into(),
            source: e,
        })?;
    }
}

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

fn ingest(cli: &Cli, dir: &Path, paths: &[PathBuf], zstd: Option<&str>) -> Result<ExitCode, Error> {
    let compression = zstd.map(asl::bench::parse_compression).transpose()?;
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

pub(crate) fn human(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
