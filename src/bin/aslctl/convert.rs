//! `aslctl convert`: the typed-format conversion graph over
//! `asl::pel::convert` (each conversion a PEL run with receipts).

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::pel::convert::{self, Kind, Request, Verdict};
use asl::pel::{Outcome, PelError, RunOptions};
use asl::{ArtifactId, Error, Store};
use serde_json::json;

use crate::pel::Keys;
use crate::query::open_index;

#[derive(clap::Args)]
pub(crate) struct ConvertArgs {
    /// Print the graph: each allowed edge with the PEL operations it runs,
    /// each forbidden one with the rule that forbids it.
    #[arg(long, conflicts_with_all = ["dot", "from", "to", "id"])]
    list: bool,
    /// Print the graph in Graphviz's language (`| dot -Tsvg`).
    #[arg(long, conflicts_with_all = ["from", "to", "id"])]
    dot: bool,
    /// The source kind: hdf5, dataset, cbor, yaml, json.
    #[arg(long, requires_all = ["to", "id"])]
    from: Option<String>,
    /// The target kind.
    #[arg(long, requires_all = ["from", "id"])]
    to: Option<String>,
    /// What to convert: an id or unique prefix (an HDF5 file or its index
    /// record; a record; a YAML overlay), `file:PATH` to store a file
    /// first (an HDF5 file is ingested with its index, with feature
    /// `hdf5`), and for `--from dataset` `ID:/path/of/dataset`.
    id: Option<String>,
    /// Also write the result's bytes to this file (an overlay to edit).
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Convert again even when a receipt already answers.
    #[arg(long)]
    no_cache: bool,
}

pub(crate) fn convert(json_out: bool, dir: &Path, a: &ConvertArgs) -> Result<ExitCode, CliError> {
    if a.list || a.dot {
        return Ok(list(json_out, a.dot));
    }
    let (Some(from), Some(to), Some(id)) = (&a.from, &a.to, &a.id) else {
        return Err(Error::InvalidArgument("give --list, --dot, or --from KIND --to KIND ID".into()).into());
    };
    let from = Kind::parse(from)?;
    let to = Kind::parse(to)?;
    // The graph is checked before the input is even looked at.
    match convert::verdict(from, to) {
        None => return Err(Error::InvalidArgument(format!("{from} -> {to} is not a conversion")).into()),
        Some(Verdict::Forbidden { rule, why }) => {
            return Err(PelError::Forbidden(format!("{from} -> {to} is forbidden by rule {rule}: {why}")).into())
        }
        Some(Verdict::Allowed { .. }) => {}
    }
    let (obj, dataset) = match from {
        Kind::Dataset => match id.split_once(":/") {
            Some((o, p)) if !o.starts_with("file") => (o.to_string(), Some(format!("/{p}"))),
            _ => {
                return Err(Error::InvalidArgument(format!("{id:?}: a dataset is written ID:/path/of/dataset")).into())
            }
        },
        _ => (id.clone(), None),
    };
    let h5_kind = matches!(from, Kind::Hdf5 | Kind::Dataset);
    let h5_file = obj.strip_prefix("file:").filter(|_| h5_kind).map(Path::new);
    if let Some(p) = h5_file {
        if !cfg!(feature = "hdf5") {
            return Err(Error::InvalidArgument(format!(
                "{}: this aslctl was built without feature `hdf5`: store it with an aslctl that has it (`h5 ingest`), then convert it by id",
                p.display()
            )).into());
        }
        if !p.is_file() {
            return Err(Error::InvalidArgument(format!("{}: no such file", p.display())).into());
        }
    }
    let file_bytes = match obj.strip_prefix("file:").filter(|_| !h5_kind) {
        Some(p) => Some(std::fs::read(p).map_err(|e| Error::Io {
            context: format!("read {p}"),
            source: e,
        })?),
        None => None,
    };
    if from == Kind::Yaml {
        if let Some(b) = &file_bytes {
            // Malformed overlays are refused before the store is opened.
            asl::formats::overlay::parse(b).map_err(|e| Error::InvalidArgument(format!("{}: {e}", &obj[5..])))?;
        }
    }
    // A file to store makes the store when there is none, as `ingest` does.
    let s = crate::opts().create(obj.starts_with("file:")).open(dir)?;
    let index = open_index(&s)?;
    if from == Kind::Yaml {
        // An overlay must hold before anything is stored: its schema, and a
        // template's references into the store.
        let named = match &file_bytes {
            Some(_) => None,
            None => Some(s.resolve(&obj)?),
        };
        let b = match (&file_bytes, named) {
            (Some(b), _) => b.clone(),
            (None, Some(id)) => s.get(&id)?,
            (None, None) => unreachable!("one of the two"),
        };
        let p = asl::formats::overlay::parse(&b).map_err(|e| Error::InvalidArgument(format!("{obj}: {e}")))?;
        if p.record.type_name == asl::formats::template::TEMPLATE_TYPE {
            asl::formats::template::check_references(&s, &p.record)?;
        }
    }
    let input = match (&file_bytes, h5_file) {
        (Some(b), _) => s.put(b)?,
        (None, Some(p)) => ingest(&s, p)?,
        (None, None) => s.resolve(&obj)?,
    };
    let input = match from {
        Kind::Hdf5 | Kind::Dataset if h5_file.is_none() => {
            asl::formats::h5read::index_of(&s, &index, &input).map(|(id, _)| id)?
        }
        _ => input,
    };
    let keys = Keys::of(&s)?;
    let pel = keys.pel(&s, &index);
    let req = Request {
        from,
        to,
        input,
        dataset,
    };
    let opts = RunOptions {
        use_cache: !a.no_cache,
        ..RunOptions::default()
    };
    let (out, rep) = convert::convert(&pel, &req, &opts)?;
    s.commit()?;
    let failed = rep.nodes.iter().find(|n| n.outcome != Outcome::Ok);
    if let Some(n) = failed {
        let why = n.error.clone().unwrap_or_else(|| "blocked".into());
        crate::close_committed(s);
        eprintln!("aslctl: convert {from} -> {to}: {}: {why} (run {})", n.node, rep.run);
        return Ok(ExitCode::from(1));
    }
    let out = out.ok_or_else(|| Error::InvalidArgument("the conversion produced nothing".into()))?;
    if let Some(path) = &a.output {
        write_output(&s, &out, path)?;
    }
    let log = rep
        .nodes
        .last()
        .and_then(|n| n.outputs.iter().find(|(k, _)| k == "log").map(|(_, v)| *v));
    if json_out {
        out!(
            "{}",
            json!({
                "output": out.to_hex(), "run": rep.run.to_hex(), "from": from.name(), "to": to.name(),
                "input": input.to_hex(), "log": log.map(|l| l.to_hex()),
                "receipts": rep.nodes.iter().filter_map(|n| n.receipt.map(|r| r.to_hex())).collect::<Vec<_>>(),
                "cached": rep.nodes.iter().all(|n| n.cached),
            })
        );
    } else {
        out!("{out}");
        say!(
            "converted {from} -> {to}: run {}{}{}",
            rep.run,
            if rep.nodes.iter().all(|n| n.cached) {
                " (cached)"
            } else {
                ""
            },
            log.map_or(String::new(), |l| format!(", comments and changes logged in {l}"))
        );
    }
    crate::close_committed(s);
    Ok(ExitCode::SUCCESS)
}

/// Stores an HDF5 file with its index (as `h5 ingest` does); the index's id.
#[cfg(feature = "hdf5")]
fn ingest(s: &Store, p: &Path) -> Result<ArtifactId, CliError> {
    Ok(asl::formats::hdf5::ingest(s, p)?.index)
}

#[cfg(not(feature = "hdf5"))]
fn ingest(_: &Store, p: &Path) -> Result<ArtifactId, CliError> {
    Err(Error::InvalidArgument(format!("{}: needs feature `hdf5`", p.display())).into())
}

fn write_output(s: &Store, id: &ArtifactId, path: &str) -> Result<(), CliError> {
    let b = s.get(id)?;
    Ok(std::fs::write(path, b).map_err(|e| Error::Io {
        context: format!("write {path}"),
        source: e,
    })?)
}

fn list(json_out: bool, dot: bool) -> ExitCode {
    if dot {
        out!("{}", convert::dot().trim_end());
        return ExitCode::SUCCESS;
    }
    for (a, b, v) in convert::edges() {
        match v {
            Verdict::Allowed { ops, what } => {
                if json_out {
                    out!(
                        "{}",
                        json!({"from": a.name(), "to": b.name(), "allowed": true, "ops": ops, "what": what})
                    );
                } else {
                    out!(
                        "{:<8} -> {:<8} allowed    {}: {what}",
                        a.name(),
                        b.name(),
                        ops.join(" + ")
                    );
                }
            }
            Verdict::Forbidden { rule, why } => {
                if json_out {
                    out!(
                        "{}",
                        json!({"from": a.name(), "to": b.name(), "allowed": false, "rule": rule, "why": why})
                    );
                } else {
                    out!("{:<8} -> {:<8} FORBIDDEN  {rule}: {why}", a.name(), b.name());
                }
            }
        }
    }
    ExitCode::SUCCESS
}
