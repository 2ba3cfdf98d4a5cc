//! `aslctl ingest`: argument handling and printing over [`asl::Store::ingest_plan`]
//! (which walks, stores in windows and commits); lines are printed b3sum-style
//! after the commit that makes them durable.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::CliError;
use asl::records::digests;
use asl::records::ingest::IngestOutcome;
use asl::{ArtifactId, Error, FilesCacheMode, IngestEvent, IngestOptions, IngestPlan, IngestReport, Ingested};
use serde_json::json;

use super::{human, Cli};

/// Formats a path the way b3sum does: names holding a backslash or newline are
/// escaped and the line is marked with a leading backslash.
fn b3sum_line(id: &ArtifactId, p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.contains(['\\', '\n']) {
        let escaped = s.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{id}  {escaped}")
    } else {
        format!("{id}  {s}")
    }
}

/// Writes [`b3sum_line`] and a newline; a plain UTF-8 path without
/// anything to escape (nearly every one) goes out without a `String` made
/// for it: an unchanged tree of 56 000 files prints in a few milliseconds.
fn write_b3sum_line(out: &mut impl Write, id: &ArtifactId, p: &Path) -> io::Result<()> {
    match p.to_str() {
        // Bytes, not chars: the two are ASCII, and a search by `char`
        // decoded every path of an unchanged re-ingest.
        Some(s) if !s.bytes().any(|b| b == b'\\' || b == b'\n') => {
            out.write_all(&id.hex_bytes())?;
            out.write_all(b"  ")?;
            out.write_all(s.as_bytes())?;
            out.write_all(b"\n")
        }
        _ => writeln!(out, "{}", b3sum_line(id, p)),
    }
}

/// What `aslctl ingest` was asked for, beyond its paths.
pub struct Flags {
    /// `--zstd`.
    pub zstd: Option<String>,
    /// Use the files cache (not `--no-cache`).
    pub cache: bool,
    /// Content-defined chunks (not `--fixed-chunks`).
    pub cdc: bool,
    /// `--tree`.
    pub print_trees: bool,
    /// `--sha256`.
    pub sha256: bool,
}

pub fn ingest(cli: &Cli, dir: &Path, paths: &[PathBuf], flags: &Flags) -> Result<ExitCode, CliError> {
    let Flags {
        cache,
        cdc,
        print_trees,
        sha256,
        ..
    } = *flags;
    let compression = flags.zstd.as_deref().map(crate::args::parse_compression).transpose()?;
    if paths.iter().any(|p| p.as_os_str() == "-") {
        if paths.len() > 1 {
            return Err(Error::InvalidArgument("'-' (standard input) must be the only input of ingest".into()).into());
        }
        return ingest_stdin(cli, dir, compression, cdc, sha256);
    }
    // Every input is checked before the store is even opened; the store's
    // own directory is never an input (`ingest .` beside the default store).
    let plan = IngestPlan::walk_excluding(paths, Some(dir))?;
    for p in &plan.excluded {
        say!("skipped {} (the store itself)", p.display());
    }
    let mut opts = crate::opts().chunk_dedup(cdc);
    if let Some(c) = compression {
        opts = opts.compression(c);
    }
    let store = crate::global::open_creating(opts, dir)?;
    let total = plan.bytes();
    let bar = (io::stderr().is_terminal() && crate::global::chatty() && !cli.json && total > (64 << 20)).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    // Block-buffered: the lines of a commit go out in a few writes, not one
    // system call each (flushed after every commit).
    let mut stdout = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    // The first failure to print: the ids of committed files must not be
    // lost silently (reported after the ingest, which has committed them).
    let mut out_err: Option<io::Error> = None;
    // Without the cache the files are all read, but what they hold is still
    // recorded, so the next ingest can skip them.
    let ingest_opts = IngestOptions {
        files_cache: if cache {
            FilesCacheMode::Use
        } else {
            FilesCacheMode::Refresh
        },
        put: asl::PutOptions::new().sha256(sha256),
        ..IngestOptions::default()
    };
    let result = asl::records::ingest::ingest(&store, paths, &plan, &ingest_opts, &mut |ev| match ev {
        IngestEvent::Progress { done, .. } => {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        }
        IngestEvent::Committed(done) if !cli.json && out_err.is_none() => {
            let r = done
                .iter()
                .try_for_each(|f| write_b3sum_line(&mut stdout, &f.put.id, &f.path))
                .and_then(|_| stdout.flush());
            out_err = r.err();
        }
        _ => {}
    });
    let IngestOutcome {
        report: rep,
        trees,
        sha256: digests,
        read_back,
        index_refresh,
    } = match result {
        Ok(o) => o,
        Err(e) => {
            // Nothing after the last commit was printed; drop it rather than
            // let close() commit half of the command.
            store.abandon();
            return Err(e.into());
        }
    };
    if let Some(r) = &index_refresh {
        crate::query::report_rebuild(r);
    }
    if read_back > 0 {
        say!("{read_back} unchanged files had no SHA-256 recorded: read back from the store for it");
    }
    crate::close_committed(store);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if print_trees && !cli.json && out_err.is_none() {
        // Last, after the b3sum lines: `<tree id>  DIR/`.
        let r = trees
            .iter()
            .try_for_each(|(dir, id)| {
                let shown = dir.to_string_lossy();
                let sep = if shown.ends_with('/') { "" } else { "/" };
                writeln!(stdout, "{}{sep}", b3sum_line(id, dir))
            })
            .and_then(|_| stdout.flush());
        out_err = r.err();
    }
    let summary = Summary {
        rep: &rep,
        trees: &trees,
        digests: &digests,
    };
    if let Err(e) = print_summary(cli.json, &mut stdout, &summary) {
        out_err.get_or_insert(e);
    }
    if let Some(e) = out_err {
        // The files are stored and committed; only their lines were lost.
        crate::output_failed(&e);
    }
    // The process ends here: its memory goes back whole, where freeing the
    // two path lists one path at a time took a twentieth of an unchanged
    // re-ingest of 56 000 files.
    std::mem::forget(rep);
    std::mem::forget(plan);
    Ok(ExitCode::SUCCESS)
}

/// What the summary of an ingest shows.
struct Summary<'a> {
    rep: &'a IngestReport,
    trees: &'a [(PathBuf, ArtifactId)],
    digests: &'a std::collections::HashMap<ArtifactId, [u8; 32]>,
}

/// The ingest's summary: with `--json` every file and tree on stdout, and
/// always the totals on stderr. Returns a failure to write stdout.
fn print_summary(json_out: bool, stdout: &mut impl Write, s: &Summary<'_>) -> io::Result<()> {
    let (rep, trees, digests) = (s.rep, s.trees, s.digests);
    let mut out_err = None;
    let secs = rep.elapsed.as_secs_f64();
    let mbps = rep.bytes as f64 / secs.max(1e-9) / 1e6;
    let dedup = rep.files.len() as u64 - rep.new_files;
    if json_out {
        let v = summary_json(rep, trees, digests);
        out_err = writeln!(stdout, "{v}").and_then(|_| stdout.flush()).err();
    }
    say!(
        "ingested {} files, {} ({} new files, {} new; {} deduplicated) in {:.2}s, {:.1} MB/s{}",
        rep.files.len(),
        human(rep.bytes),
        rep.new_files,
        human(rep.new_bytes),
        dedup,
        secs,
        mbps,
        if rep.skipped > 0 {
            format!("; skipped {} special files", rep.skipped)
        } else {
            String::new()
        }
    );
    if rep.cached_files > 0 {
        say!(
            "{} unchanged files not read (files cache; --no-cache reads them)",
            rep.cached_files
        );
    }
    if let Some(e) = &rep.files_cache_error {
        eprintln!("aslctl: warning: the files cache was not saved ({e}); the next ingest reads every file");
    }
    out_err.map_or(Ok(()), Err)
}

/// What `--json` prints for an ingest: every file and tree, and the totals.
fn summary_json(
    rep: &IngestReport,
    trees: &[(PathBuf, ArtifactId)],
    digests: &std::collections::HashMap<ArtifactId, [u8; 32]>,
) -> serde_json::Value {
    let secs = rep.elapsed.as_secs_f64();
    let files: Vec<_> = rep
        .files
        .iter()
        .map(|f| {
            let mut v =
                json!({"id": f.put.id.to_hex(), "path": f.path.to_string_lossy(), "len": f.put.len, "new": f.put.new});
            if let Some(sha) = digests.get(&f.put.id) {
                v["sha256"] = json!(digests::hex(sha));
            }
            v
        })
        .collect();
    let trees: Vec<_> = trees
        .iter()
        .map(|(dir, id)| json!({"path": dir.to_string_lossy(), "tree": id.to_hex()}))
        .collect();
    json!({
        "files": files,
        "trees": trees,
        "summary": {"files": rep.files.len(), "bytes": rep.bytes, "new_files": rep.new_files, "new_bytes": rep.new_bytes, "cached_files": rep.cached_files,
                    "deduplicated_files": rep.files.len() as u64 - rep.new_files, "skipped": rep.skipped, "seconds": secs,
                    "mb_per_s": rep.bytes as f64 / secs.max(1e-9) / 1e6}
    })
}

/// `ingest -`: standard input streamed into one artifact (bounded memory,
/// verified like any large put), printed as b3sum prints `b3sum -`.
fn ingest_stdin(
    cli: &Cli,
    dir: &Path,
    compression: Option<Option<i32>>,
    cdc: bool,
    sha256: bool,
) -> Result<ExitCode, CliError> {
    let mut opts = crate::opts().chunk_dedup(cdc);
    if let Some(c) = compression {
        opts = opts.compression(c);
    }
    let store = crate::global::open_creating(opts, dir)?;
    let t0 = std::time::Instant::now();
    let put = store
        .put_reader_with(io::stdin().lock(), &asl::PutOptions::new().sha256(sha256))
        .map_err(CliError::from)
        .and_then(|p| match p.sha256 {
            Some(sha) => Ok(digests::record(&store, &[(p.id, sha, p.len)]).map(|_| p)?),
            None => Ok(p),
        });
    let put = match put {
        Ok(p) => p,
        Err(e) => {
            store.abandon();
            return Err(e);
        }
    };
    store.commit()?;
    crate::close_committed(store);
    if cli.json {
        // The shape of any other ingest: one file, no trees.
        let new = u64::from(put.new);
        let rep = IngestReport {
            files: vec![Ingested {
                path: PathBuf::from("-"),
                put,
            }],
            bytes: put.len,
            new_files: new,
            new_bytes: new * put.len,
            elapsed: t0.elapsed(),
            ..IngestReport::default()
        };
        let digests = put.sha256.map(|sha| (put.id, sha)).into_iter().collect();
        crate::global::json_line(&summary_json(&rep, &[], &digests));
    } else {
        out!("{}  -", put.id);
    }
    say!(
        "ingested standard input, {} ({}) in {:.2}s",
        human(put.len),
        if put.new { "new" } else { "deduplicated" },
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
