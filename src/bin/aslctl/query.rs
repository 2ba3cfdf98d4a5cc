//! `aslctl label|labels|find|reindex|runs`: labels on artifacts and queries
//! over the records, through the store's derived query index.

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::records::query::{Hit, Query, QueryIndex, Refresh};
use asl::records::{self, labels, runs, time};
use asl::{Error, Store};
use clap::{Args, Subcommand};
use serde_json::json;

/// What narrows a query; shared by `find` and `runs ls`.
#[derive(Args)]
pub(crate) struct Filter {
    /// Only artifacts with this label (`key=value`); repeat for all of several.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Only artifacts annotated with this media type.
    #[arg(long)]
    media_type: Option<String>,
    /// Only records of this type (`asl/run`, `asl/annotation`, ...).
    #[arg(long = "type", value_name = "TYPE")]
    type_name: Option<String>,
    /// Only records made at or after this time (`YYYY-MM-DD` or RFC 3339 UTC).
    #[arg(long)]
    since: Option<String>,
    /// Only records made before this time (`YYYY-MM-DD` or RFC 3339 UTC).
    #[arg(long)]
    until: Option<String>,
    /// Print at most this many (the newest).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the newest first.
    #[arg(long)]
    newest_first: bool,
    #[command(flatten)]
    only: crate::args::Only,
}

impl Filter {
    fn query(&self) -> Result<Query, CliError> {
        let at = |t: &Option<String>| -> Result<Option<u64>, CliError> {
            Ok(t.as_deref()
                .map(|t| {
                    time::parse(t).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{t:?} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
                        ))
                    })
                })
                .transpose()?)
        };
        Ok(Query {
            labels: self
                .labels
                .iter()
                .map(|l| labels::parse_label(l).map_err(CliError::from))
                .collect::<Result<_, _>>()?,
            media_type: self.media_type.clone(),
            type_name: self.type_name.clone(),
            since: at(&self.since)?,
            until: at(&self.until)?,
            limit: self.limit,
            newest_first: self.newest_first,
        })
    }
}

#[derive(Subcommand)]
pub(crate) enum RunsCmd {
    /// Store run artifacts as seed 003's service writes them (JSON files,
    /// or directories of them, as its `<day>/<run_id>.json` tree): every
    /// declared hash is recomputed from the parts the artifact holds, and
    /// a mismatch refuses them all, nothing stored. Prints
    /// `<id>  <run_id>  <verdict>` each (verdict ok, partial or mismatch).
    Put {
        /// JSON files, or directories searched for `*.json`.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Apply the seed's request summary rule to `request_summary`
        /// first (client feasibility dropped, lists and maps over 200
        /// entries summarised, at most 80 keys).
        #[arg(long)]
        summarize_request: bool,
        /// Store artifacts whose hashes do not match, labelled
        /// `run.hashes=mismatch`, rather than refuse them.
        #[arg(long)]
        accept_mismatch: bool,
    },
    /// Check stored run artifacts' declared hashes again (all of them
    /// when no id is given); exit 1 when one does not match.
    Check {
        /// Ids or unique id prefixes.
        ids: Vec<String>,
    },
    /// List run records: `<id>  <created_at>  <status>  <tool>  <mode>  <run_id>`.
    Ls {
        #[command(flatten)]
        filter: Filter,
    },
    /// Remove run records older than an age; what only they held becomes
    /// garbage for `aslctl gc`.
    Prune {
        /// Age, e.g. `90d`, `12h`, `2w`.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Only runs with this status (OK, BLOCKED, ERROR).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only runs in this mode.
        #[arg(long)]
        mode: Option<String>,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Opens the query index, saying on stderr when it had to rescan.
/// It is closed when the command ends (fjall 3 closes at once), so the seal
/// written then holds the files as fjall left them.
pub(crate) fn open_index(s: &Store) -> Result<QueryIndex, CliError> {
    let (index, r) = QueryIndex::open(s)?;
    report_rebuild(&r);
    Ok(index)
}

pub(crate) fn report_rebuild(r: &Refresh) {
    if let Some(why) = &r.damaged {
        eprintln!("aslctl: query index did not open ({why}): replaced");
    }
    if r.rebuilt {
        say!(
            "aslctl: query index rebuilt: {} records in {} artifacts",
            r.indexed,
            r.examined
        );
    }
}

/// The artifact a `sha256:HEX` reference names, through the digest records.
pub(crate) fn resolve_sha256(s: &Store, text: &str) -> Result<asl::ArtifactId, CliError> {
    let sha = records::digests::parse_sha256(text)
        .ok_or_else(|| Error::InvalidArgument(format!("{text:?} is not sha256: and 64 hex characters")))?;
    let index = open_index(s)?;
    Ok(records::digests::resolve(s, &index, &sha)?.ok_or_else(|| {
        Error::PrefixNotFound(format!(
            "{text} (no artifact with that SHA-256 is recorded; ingest --sha256 records it)"
        ))
    })?)
}

/// `aslctl label ID KEY=VALUE... [--media-type M]`: prints the annotation's id.
pub(crate) fn label(
    json_out: bool,
    dir: &Path,
    id: &str,
    pairs: &[String],
    media_type: Option<&str>,
) -> Result<ExitCode, CliError> {
    if pairs.is_empty() && media_type.is_none() {
        return Err(Error::InvalidArgument("give at least one KEY=VALUE or --media-type".into()).into());
    }
    let s = crate::opts().open(dir)?;
    let subject = s.resolve(id)?;
    let mut a = labels::Annotation::new(subject);
    for p in pairs {
        let (k, v) = labels::parse_label(p)?;
        a = a.label(k, v);
    }
    if let Some(m) = media_type {
        a = a.media_type(m);
    }
    // annotate checks the record whole before it writes anything.
    let stored = labels::annotate(&s, &a)?;
    s.commit()?;
    if json_out {
        out!(
            "{}",
            json!({"id": stored.id.to_hex(), "subject": subject.to_hex(), "new": stored.new})
        );
    } else {
        out!("{}", stored.id);
    }
    crate::close_committed(s);
    Ok(ExitCode::SUCCESS)
}

/// `aslctl labels ID`: the artifact's annotations, oldest first.
pub(crate) fn show_labels(json_out: bool, dir: &Path, id: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let subject = s.resolve(id)?;
    let index = open_index(&s)?;
    let mut anns = Vec::new();
    for rid in index.annotations_of(&subject)? {
        let r = records::get(&s, &rid)?;
        // Other records name a subject too (its SHA-256, its expiry).
        if r.type_name == labels::ANNOTATION {
            anns.push((rid, labels::Annotation::from_record(&r)?));
        }
    }
    anns.sort_by(|a, b| (&a.1.created_at, a.0).cmp(&(&b.1.created_at, b.0)));
    if json_out {
        let mut merged = serde_json::Map::new();
        let mut media = None;
        for (_, a) in &anns {
            for (k, v) in &a.labels {
                merged.insert(k.clone(), json!(v));
            }
            media = a.media_type.clone().or(media);
        }
        let list: Vec<_> = anns
            .iter()
            .map(|(rid, a)| {
                json!({"id": rid.to_hex(), "created_at": a.created_at, "labels": a.labels, "media_type": a.media_type})
            })
            .collect();
        out!(
            "{}",
            json!({"subject": subject.to_hex(), "labels": merged, "media_type": media, "annotations": list})
        );
    } else {
        for (rid, a) in &anns {
            let mut parts: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if let Some(m) = &a.media_type {
                parts.push(format!("media_type={m}"));
            }
            out!("{rid}  {}  {}", a.created_at.as_deref().unwrap_or("-"), parts.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl find [filters]`: `<id>  <time>` per artifact, oldest first
/// unless `--newest-first`.
pub(crate) fn find(json_out: bool, dir: &Path, f: &Filter) -> Result<ExitCode, CliError> {
    let q = f.query()?;
    let s = crate::opts().read_only(true).open(dir)?;
    let index = open_index(&s)?;
    let only = f.only.filter(&s)?;
    let hits = index.find_only(&s.view(asl::Audience::Owner), &q, &only)?;
    if json_out {
        crate::global::json_lines(hits.iter().map(|h| {
            json!({"id": h.subject.to_hex(), "time": time::format(h.time),
                   "records": h.records.iter().map(|r| r.to_hex()).collect::<Vec<_>>()})
        }));
    } else {
        for h in &hits {
            out!("{}  {}", h.subject, time::format(h.time));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl reindex`: rebuilds the query index from the records.
pub(crate) fn reindex(json_out: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let started = std::time::Instant::now();
    // Whatever state the old index is in, it is not opened.
    let (index, r) = QueryIndex::recreate(&s)?;
    if json_out {
        out!("{}", json!({"records": r.indexed, "artifacts": r.examined}));
    }
    say!(
        "reindexed {} records among {} artifacts in {:.2} s ({})",
        r.indexed,
        r.examined,
        started.elapsed().as_secs_f64(),
        index.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_line(s: &Store, h: &Hit) -> Result<(String, serde_json::Value), CliError> {
    let r = records::get(s, &h.subject)?;
    // Seed 003's artifact (as written) names two fields its way.
    let text = |k: &str, v2: &str| match r.body.get(k).or_else(|| r.body.get(v2)) {
        Some(records::cbor::Value::Text(t)) => t.clone(),
        _ => "-".into(),
    };
    let (created, tool) = (text("created_at", "created_at_utc"), text("tool", "tool_id"));
    let (status, mode, run_id) = (text("status", ""), text("mode", ""), text("run_id", ""));
    let line = format!("{}  {created}  {status}  {tool}  {mode}  {run_id}", h.subject);
    let v = json!({"id": h.subject.to_hex(), "created_at": created, "status": status,
                   "tool": tool, "mode": mode, "run_id": run_id, "type": r.type_name});
    Ok((line, v))
}

pub(crate) fn runs(json_out: bool, dir: &Path, cmd: &RunsCmd) -> Result<ExitCode, CliError> {
    match cmd {
        RunsCmd::Put {
            paths,
            summarize_request,
            accept_mismatch,
        } => return crate::run_artifacts::put(json_out, dir, paths, *summarize_request, *accept_mismatch),
        RunsCmd::Check { ids } => return crate::run_artifacts::check(json_out, dir, ids),
        RunsCmd::Ls { filter } => {
            let q = filter.query()?;
            let s = crate::opts().read_only(true).open(dir)?;
            let index = open_index(&s)?;
            let only = filter.only.filter(&s)?;
            let hits = runs::find_only(&index, &s.view(asl::Audience::Owner), &q, &only)?;
            for h in &hits {
                let (line, v) = run_line(&s, h)?;
                if json_out {
                    crate::global::json_line(&v);
                } else {
                    out!("{line}");
                }
            }
        }
        RunsCmd::Prune {
            older_than,
            status,
            tool,
            mode,
            dry_run,
        } => {
            let age = time::parse_duration(older_than)
                .map_err(|e| Error::InvalidArgument(format!("--older-than: {e}; want a number and a unit (90d)")))?
                .as_secs();
            if let Some(st) = status {
                if !records::schema::RUN_STATUS.contains(&st.as_str()) {
                    return Err(Error::InvalidArgument(format!("--status {st:?}: want OK, BLOCKED or ERROR")).into());
                }
            }
            let s = if *dry_run {
                crate::opts().read_only(true).open(dir)?
            } else {
                crate::opts().open(dir)?
            };
            let mut index = open_index(&s)?;
            let p = runs::Prune {
                older_than: age,
                status: status.clone(),
                tool: tool.clone(),
                mode: mode.clone(),
                dry_run: *dry_run,
            };
            let gone = runs::prune(&s, &mut index, &p)?;
            if json_out {
                out!(
                    "{}",
                    json!({"removed": gone.iter().map(|i| i.to_hex()).collect::<Vec<_>>(), "dry_run": dry_run})
                );
            } else {
                for id in &gone {
                    out!("{id}");
                }
            }
            say!(
                "{} {} run records",
                if *dry_run { "would remove" } else { "removed" },
                gone.len()
            );
            crate::close_committed(s);
        }
    }
    Ok(ExitCode::SUCCESS)
}
