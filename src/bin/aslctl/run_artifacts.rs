//! `aslctl runs put|check`: seed 003's run artifacts stored as written,
//! their declared hashes checked (`asl::records::run_artifact`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use asl::records::run_artifact::{self, checks_json, HashState};
use asl::records::{self, query::Query};
use asl::Error;
use serde_json::json;

use crate::error::CliError;

/// The JSON files under `paths` (a directory searched to any depth for
/// `*.json`), in path order.
fn json_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        for e in rd {
            let p = e.map_err(|e| Error::io(format!("read {}", dir.display()), e))?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument("no *.json files under the paths given".into()).into());
    }
    Ok(out)
}

/// `aslctl runs put PATH...`: every file parsed and checked first, then all
/// stored in one commit, or none.
pub(crate) fn put(
    json_out: bool,
    dir: &Path,
    paths: &[PathBuf],
    summarize: bool,
    accept_mismatch: bool,
) -> Result<ExitCode, CliError> {
    let files = json_files(paths)?;
    let mut runs = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for f in &files {
        let parsed = crate::record::read_input(&f.to_string_lossy())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| Error::InvalidArgument(format!("not JSON: {e}")).into()))
            .and_then(|j| run_artifact::record(&j, summarize).map_err(CliError::from));
        match parsed {
            Ok(r) => runs.push(r),
            Err(e) => problems.push(format!("{}: {e}", f.display())),
        }
    }
    if !problems.is_empty() {
        return Err(Error::InvalidArgument(format!("{}; nothing stored", problems.join("; "))).into());
    }
    let s = crate::global::open_creating(crate::opts(), dir)?;
    let stored = run_artifact::put_all(&s, &runs, accept_mismatch)?;
    crate::close_committed(s);
    for r in &stored {
        let verdict = run_artifact::verdict(&r.hashes);
        if json_out {
            out!(
                "{}",
                json!({"id": r.id.to_hex(), "run_id": r.run_id, "verdict": verdict, "hashes": checks_json(&r.hashes)})
            );
        } else {
            out!("{}  {}  {verdict}", r.id, r.run_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl runs check [ID...]`: the declared hashes of stored run
/// artifacts, recomputed; exit 1 when one does not match.
pub(crate) fn check(json_out: bool, dir: &Path, ids: &[String]) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let targets = if ids.is_empty() {
        let index = crate::query::open_index(&s)?;
        let q = Query {
            type_name: Some(run_artifact::TYPE.into()),
            ..Query::default()
        };
        index.find_live(&s, &q)?.into_iter().map(|h| h.subject).collect()
    } else {
        ids.iter().map(|t| s.resolve(t)).collect::<Result<Vec<_>, _>>()?
    };
    let mut bad = 0;
    for id in targets {
        let r = records::get(&s, &id)?;
        if r.type_name != run_artifact::TYPE {
            return Err(Error::InvalidArgument(format!("{id} is a {} record, not a run artifact", r.type_name)).into());
        }
        let checks = run_artifact::check_hashes(&r.body)?;
        let verdict = run_artifact::verdict(&checks);
        bad += usize::from(verdict == "mismatch");
        if json_out {
            out!(
                "{}",
                json!({"id": id.to_hex(), "verdict": verdict, "hashes": checks_json(&checks)})
            );
        } else {
            out!("{id}  {verdict}");
            for c in &checks {
                if let HashState::Mismatch { computed } = &c.state {
                    out!(
                        "  {} declares {} but its part hashes to {computed}",
                        c.field,
                        c.declared
                    );
                }
            }
        }
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
