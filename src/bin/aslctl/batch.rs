//! `aslctl batch FILE` and `aslctl lineage`: command blocks applied
//! atomically, the lineage chains they leave (`show`, `revert`), and an
//! artifact's lineage through PEL receipts (`lineage ID`).

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::pel::provenance::{self, Direction};
use asl::records::batch_document::{Document, Done};
use asl::records::lineage::{self, Lineage};
use asl::records::{json as rjson, RecordError};
use asl::{ArtifactId, Error};
use clap::Subcommand;

use crate::close_committed;
use crate::query::open_index;
use serde_json::{json, Value as J};

#[derive(Subcommand)]
pub(crate) enum LineageCmd {
    /// Walk a chain from a step back to its first: one line per step, or
    /// with --json one JSON object per line (keys sorted: diff-friendly).
    Show {
        /// Lineage step id or unique prefix.
        id: String,
    },
    /// Undo a step: a new tree without its changes, and a new step that
    /// points back to it. Prints `<step-id>  <tree-id>`.
    Revert {
        /// The step to undo.
        id: String,
        /// Apply the undo on top of this later step (default: the step itself).
        #[arg(long)]
        onto: Option<String>,
        /// Who reverts.
        #[arg(long)]
        actor: Option<String>,
    },
}

/// Reads a JSON (or YAML) document.
pub(crate) fn read_document(file: &str) -> Result<J, CliError> {
    let text = crate::record::read_input(file)?;
    crate::record::parse_document(file, &text)
}

/// `aslctl batch FILE`.
pub(crate) fn batch(json_out: bool, dir: &Path, file: &str) -> Result<ExitCode, CliError> {
    let in_file = |e: RecordError| match e {
        RecordError::Input(m) => RecordError::Input(format!("{file}: {m}")),
        e => e,
    };
    let base = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
    // Checked whole before the store is opened: a refused document writes
    // nothing, not even a new store.
    let doc = Document::parse(&read_document(file)?, &base).map_err(in_file)?;
    let s = crate::global::open_creating(crate::opts(), dir)?;
    let Done {
        applied: done,
        put_names: shown,
    } = doc.apply(&s).map_err(in_file)?;
    if json_out {
        out!(
            "{}",
            json!({
                "puts": done.puts.iter().zip(&shown).map(|(p, n)| json!({"id": p.id.to_hex(), "name": n, "len": p.len, "new": p.new})).collect::<Vec<_>>(),
                "removed": done.removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                "annotations": done.annotations.iter().map(|(a, s)| json!({"id": a.to_hex(), "subject": s.to_hex()})).collect::<Vec<_>>(),
                "lineage": done.lineage.map(|l| l.to_hex()),
            })
        );
    } else {
        for (p, n) in done.puts.iter().zip(&shown) {
            out!("put {}  {n}", p.id);
        }
        for id in &done.removed {
            out!("removed {id}");
        }
        for (a, subject) in &done.annotations {
            out!("label {a}  {subject}");
        }
        if let Some(l) = done.lineage {
            out!("lineage {l}");
        }
    }
    crate::close_committed(s);
    Ok(ExitCode::SUCCESS)
}

fn step_json(id: &asl::ArtifactId, l: &Lineage) -> J {
    let mut v = rjson::record_to_json(&l.to_record())["body"].clone();
    v["id"] = json!(id.to_hex());
    v
}

pub(crate) fn lineage_cmd(json_out: bool, dir: &Path, cmd: &LineageCmd) -> Result<ExitCode, CliError> {
    match cmd {
        LineageCmd::Show { id } => {
            let s = crate::opts().read_only(true).open(dir)?;
            let id = s.resolve(id)?;
            for (id, l) in lineage::chain(&s, &id)? {
                if json_out {
                    // serde_json's maps are sorted: one stable line per step.
                    out!("{}", step_json(&id, &l));
                } else {
                    out!(
                        "{id}  {}  seq {}  {}  {}{}",
                        l.created_at.as_deref().unwrap_or("-"),
                        l.seq.map_or("-".into(), |n| n.to_string()),
                        l.actor.as_deref().unwrap_or("-"),
                        l.summary.as_deref().unwrap_or(""),
                        l.tree.map_or(String::new(), |t| format!("  tree {t}"))
                    );
                }
            }
        }
        LineageCmd::Revert { id, onto, actor } => {
            let s = crate::opts().open(dir)?;
            let id = s.resolve(id)?;
            let onto = onto.as_deref().map(|o| s.resolve(o)).transpose()?;
            let (step, tree) = lineage::revert(&s, &id, onto.as_ref(), actor.clone())?;
            s.commit()?;
            if json_out {
                out!("{}", json!({"lineage": step.id.to_hex(), "tree": tree.to_hex()}));
            } else {
                out!("{}  {tree}", step.id);
            }
            crate::close_committed(s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl lineage ID`: where an artifact came from, or what was made from it.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct LineageArgs {
    #[command(subcommand)]
    cmd: Option<crate::batch::LineageCmd>,
    /// The artifact (id or unique prefix).
    id: Option<String>,
    /// What was made from it instead of what it was made from.
    #[arg(long)]
    descendants: bool,
    /// A Graphviz picture instead of text.
    #[arg(long)]
    dot: bool,
}

/// `aslctl lineage`: an artifact's lineage through receipts, or lineage
/// chains (`show`, `revert`).
pub(crate) fn lineage_args(json_out: bool, dir: &Path, a: &LineageArgs) -> Result<ExitCode, CliError> {
    match (&a.cmd, &a.id) {
        (Some(cmd), _) => lineage_cmd(json_out, dir, cmd),
        (None, Some(id)) => lineage(json_out, dir, id, a.descendants, a.dot),
        (None, None) => Err(Error::InvalidArgument("lineage needs an artifact id, or `show` / `revert`".into()).into()),
    }
}

pub(crate) fn lineage(
    json_out: bool,
    dir: &Path,
    id: &str,
    descendants: bool,
    dot: bool,
) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let index = open_index(&s)?;
    // The artifact's bytes may be gone: a full id is taken as it is.
    let id = match id.parse::<ArtifactId>() {
        Ok(id) => id,
        Err(_) => s.resolve(id)?,
    };
    let direction = if descendants {
        Direction::Descendants
    } else {
        Direction::Ancestors
    };
    let g = provenance::lineage(&s, &index, &id, direction, 100_000)?;
    if dot {
        print!("{}", g.to_dot());
    } else if json_out {
        out!("{}", g.to_json());
    } else {
        print!("{}", g.to_text());
        if g.steps.is_empty() && g.edits.is_empty() {
            out!("(no receipt {} it)", if descendants { "reads" } else { "produced" });
        }
    }
    close_committed(s);
    Ok(ExitCode::SUCCESS)
}
