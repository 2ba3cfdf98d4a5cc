//! `aslctl get`, `cat` and `ls`: finding the artifact (fetching it first
//! when another domain promised it) and streaming it out, to stdout or to a
//! file written beside its name and renamed into place; listing.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::process::ExitCode;

use crate::error::CliError;
use asl::{ArtifactReader, Error, Store};
use serde_json::json;

use crate::output_failed;

pub(crate) fn open_artifact(s: &Store, id: &str, at: Option<&str>) -> Result<ArtifactReader, CliError> {
    if id.starts_with("sha256:") {
        let id = crate::query::resolve_sha256(s, id)?;
        return match at {
            Some(name) => Ok(s.at(name)?.open_reader(&id)?),
            None => Ok(s.open_reader(&id)?),
        };
    }
    match at {
        Some(name) => {
            let v = s.at(name)?;
            let id = v.resolve(id)?;
            Ok(v.open_reader(&id)?)
        }
        None => Ok(s.open_reader(&s.resolve(id)?)?),
    }
}

/// [`open_artifact`], or, when it is not here but promised by another
/// domain, fetched (verified) into the store first and opened there. The
/// store is reopened to write for that, once, and kept in `writer` while
/// the reader lives.
pub(crate) fn open_or_fetch(
    s: &Store,
    writer: &mut Option<Store>,
    dir: &Path,
    id: &str,
    at: Option<&str>,
) -> Result<ArtifactReader, CliError> {
    use asl::federation::promise;
    match open_artifact(s, id, at) {
        Err(e @ CliError::Store(Error::NotFound(_) | Error::PrefixNotFound(_)))
            if at.is_none() && !id.starts_with("sha256:") =>
        {
            let target = match promise::resolve(s, id) {
                Ok(t) if promise::promise_of(s, &t)?.is_some() => t,
                _ => return Err(e),
            };
            let w = match writer {
                Some(w) => w,
                None => writer.insert(crate::opts().open(dir)?),
            };
            Ok(promise::open(w, &target)?)
        }
        r => r,
    }
}

/// The ids a `get` or `cat` names: those given, then with `--stdin` one per
/// line of standard input (blank lines skipped).
pub(crate) fn ids_given(ids: &[String], stdin: bool) -> Result<Vec<String>, CliError> {
    let mut all = ids.to_vec();
    if stdin {
        for line in io::stdin().lines() {
            let line = line.map_err(|e| Error::io("read ids from standard input", e))?;
            let t = line.trim();
            if !t.is_empty() {
                all.push(t.to_string());
            }
        }
    }
    if all.is_empty() {
        return Err(Error::InvalidArgument("no ids given (name them, or pipe them in with --stdin)".into()).into());
    }
    Ok(all)
}

/// `aslctl cat`: the artifacts one after another on stdout, each checked
/// as it streams; a range applies to a single artifact only.
pub(crate) fn cat(dir: &Path, ids: &[String], at: Option<&str>, range: Option<&str>) -> Result<ExitCode, CliError> {
    if range.is_some() && ids.len() > 1 {
        return Err(Error::InvalidArgument("--range reads one artifact; name only one".into()).into());
    }
    let s = crate::opts().read_only(true).open(dir)?;
    let mut writer = None;
    for id in ids {
        let mut r = open_or_fetch(&s, &mut writer, dir, id, at)?;
        if let Some(spec) = range {
            let (offset, len) = crate::args::parse_range(spec, r.len())?;
            r = r.into_range(offset, len)?;
        }
        stream_to_stdout(&mut r)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl get`: one artifact to a file or stdout; several into a
/// directory, each named by its full id (or all to stdout, as `cat`).
pub(crate) fn get(dir: &Path, ids: &[String], output: Option<&Path>, at: Option<&str>) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let mut writer = None;
    let out = output.filter(|p| p.as_os_str() != "-");
    if let (Some(to), true) = (out, ids.len() > 1) {
        if !to.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{}: with several ids --output names a directory, and this is none",
                to.display()
            ))
            .into());
        }
    }
    // A bar only when writing files: stdout may be the terminal itself.
    // (`get` refuses --json.)
    let bar = out.map(|_| crate::global::Bar::new(false));
    let report = |p: asl::Step<'_>| bar.iter().for_each(|b| b.step(p));
    for id in ids {
        let mut r = open_or_fetch(&s, &mut writer, dir, id, at)?;
        let meter = asl::Meter::new(Some(&report), "get", r.len());
        match out {
            Some(to) if ids.len() > 1 => {
                let name = to.join(r.id().to_hex());
                write_to_file(&mut r, &name, dir, &meter)?
            }
            Some(to) => write_to_file(&mut r, to, dir, &meter)?,
            None => stream_to_stdout(&mut r)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn stream_to_stdout(r: &mut ArtifactReader) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let r = copy(r, &mut out, None).and_then(|_| {
        Ok(out.flush().map_err(|e| Error::Io {
            context: "write stdout".into(),
            source: e,
        })?)
    });
    match r {
        // The reader went away (`cat X | head -c 10`): nothing is wrong.
        Err(CliError::Store(Error::Io { source, .. })) if source.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Writes an artifact to `p`, touching only what this command creates: a
/// regular file (or a new name) is written to a temporary file beside it and
/// renamed over it when complete, so a failure leaves the old file as it was
/// and removes only the temporary file; anything else that exists (a device,
/// a pipe) is written in place and never removed. Paths inside the store are
/// refused.
/// `meter` counts the bytes written.
pub(crate) fn write_to_file(
    r: &mut ArtifactReader,
    p: &Path,
    store: &Path,
    meter: &asl::Meter,
) -> Result<(), CliError> {
    let io_err = |what: String| {
        move |e| Error::Io {
            context: what,
            source: e,
        }
    };
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent_abs = fs::canonicalize(&parent).map_err(io_err(format!("resolve {}", parent.display())))?;
    if let Ok(store_abs) = fs::canonicalize(store) {
        if parent_abs.starts_with(&store_abs) {
            return Err(Error::InvalidArgument(format!(
                "{} is inside the store {}; write it elsewhere",
                p.display(),
                store.display()
            ))
            .into());
        }
    }
    let existing = fs::metadata(p).ok();
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(io_err(format!("open {}", p.display())))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        copy(r, &mut w, Some(meter))?;
        return Ok(w.flush().map_err(io_err(format!("write {}", p.display())))?);
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.aslctl-{}", std::process::id()));
    let result = (|| -> Result<(), CliError> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(format!("create {}", tmp.display())))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        copy(r, &mut w, Some(meter))?;
        let f = w
            .into_inner()
            .map_err(|e| io_err(format!("write {}", tmp.display()))(e.into_error()))?;
        if let Some(m) = &existing {
            // Keep the permissions of the file being replaced.
            let _ = f.set_permissions(m.permissions());
        }
        f.sync_all().map_err(io_err(format!("write {}", tmp.display())))?;
        Ok(fs::rename(&tmp, p).map_err(io_err(format!("rename {} to {}", tmp.display(), p.display())))?)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies, keeping store errors (corruption) apart from output errors;
/// `meter` counts what was written.
fn copy(r: &mut asl::ArtifactReader, w: &mut dyn Write, meter: Option<&asl::Meter>) -> Result<(), CliError> {
    // Each verified piece goes out as it is: a large artifact's chunk
    // buffer, with no copy on the way.
    loop {
        let piece = match r.next_piece() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::Store(Error::from_reader_io(e))),
        };
        w.write_all(&piece).map_err(|e| Error::Io {
            context: "write output".into(),
            source: e,
        })?;
        if let Some(m) = meter {
            m.add(piece.len() as u64);
        }
    }
}

/// `aslctl ls`: `<id> <size>` per live artifact (or a snapshot's), then the
/// promised ones (`<id> promised by <remote>`); with `only`, those of one
/// domain or visibility (promised ones are other domains' and not yet
/// here: kept only by a domain filter naming theirs).
pub(crate) fn ls(json_out: bool, s: Store, at: Option<&str>, only: &crate::args::Only) -> Result<ExitCode, CliError> {
    let only = only.filter(&s)?;
    let out = io::stdout().lock();
    let mut out = BufWriter::new(out);
    let w = |r: io::Result<()>| -> Result<(), CliError> {
        if let Err(e) = r {
            output_failed(&e);
        }
        Ok(())
    };
    let iter = only.apply(match at {
        Some(name) => s.at(name)?.iter()?,
        None => s.iter()?,
    });
    for a in iter {
        let a = a?;
        if json_out {
            let v = json!({"id": a.id.to_hex(), "len": a.len, "visibility": a.visibility.as_str()});
            w(writeln!(out, "{v}"))?;
        } else {
            w(writeln!(out, "{} {}", a.id, a.len))?;
        }
    }
    // Other domains' artifacts referred to but not fetched yet.
    if at.is_none() && only.visibility.is_none() {
        for (id, p) in asl::federation::promise::promised(&s)? {
            if only.domain.is_some_and(|d| d != asl::DomainId(p.local)) {
                continue;
            }
            if json_out {
                let v = json!({"id": id.to_hex(), "len": null, "visibility": "promised", "remote": p.remote});
                w(writeln!(out, "{v}"))?;
            } else {
                w(writeln!(out, "{id} promised by {}", p.remote))?;
            }
        }
    }
    w(out.flush())?;
    Ok(ExitCode::SUCCESS)
}
