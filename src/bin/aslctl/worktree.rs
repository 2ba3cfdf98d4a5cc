//! `aslctl worktree add|status|commit|discard`: working copies of trees.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::CliError;
use asl::records::worktree::{Status, Worktree};
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum WorktreeCmd {
    /// Check a tree out into DIR (new or empty) as a working copy; prints
    /// `<lineage-step>  <tree>`.
    Add {
        /// Where.
        dir: PathBuf,
        /// Tree id or unique prefix.
        tree: String,
        /// Continue this lineage step (whose tree it is) instead of starting
        /// a new chain.
        #[arg(long)]
        lineage: Option<String>,
    },
    /// Changed, added and removed files against the base tree:
    /// `M|A|D<TAB>path`.
    Status {
        /// The working copy.
        dir: PathBuf,
    },
    /// Store the changes as a new tree with a lineage step whose parent is
    /// the working copy's; prints `<lineage-step>  <tree>`.
    Commit {
        /// The working copy.
        dir: PathBuf,
        /// What the change is.
        #[arg(short, long)]
        message: String,
        /// Who made it.
        #[arg(long)]
        actor: Option<String>,
    },
    /// Put every changed or removed file back and delete added ones.
    Discard {
        /// The working copy.
        dir: PathBuf,
    },
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

pub(crate) fn worktree(json_out: bool, store_dir: &Path, cmd: &WorktreeCmd) -> Result<ExitCode, CliError> {
    match cmd {
        WorktreeCmd::Add { dir, tree, lineage } => {
            let s = crate::opts().open(store_dir)?;
            let tree = s.resolve(tree)?;
            let lineage = lineage.as_deref().map(|l| s.resolve(l)).transpose()?;
            let wt = Worktree::add(&s, dir, &tree, lineage.as_ref())?;
            if json_out {
                out!("{}", json!({"lineage": wt.lineage.to_hex(), "tree": wt.tree.to_hex()}));
            } else {
                out!("{}  {}", wt.lineage, wt.tree);
            }
            crate::close_committed(s);
        }
        WorktreeCmd::Status { dir } => {
            let wt = Worktree::open(dir)?;
            let st = wt.status()?;
            let rows = st.iter().map(|c| match c {
                Status::Modified(p) => ("M", p),
                Status::Added(p) => ("A", p),
                Status::Removed(p) => ("D", p),
            });
            if json_out {
                let v: Vec<_> = rows.map(|(k, p)| json!({"change": k, "path": show(p)})).collect();
                out!(
                    "{}",
                    json!({"tree": wt.tree.to_hex(), "lineage": wt.lineage.to_hex(), "changes": v})
                );
            } else {
                for (k, p) in rows {
                    out!("{k}\t{}", show(p));
                }
            }
        }
        WorktreeCmd::Commit { dir, message, actor } => {
            let mut wt = Worktree::open(dir)?;
            let s = crate::opts().open(store_dir)?;
            match wt.commit(&s, message, actor.as_deref())? {
                Some((step, tree)) => {
                    if json_out {
                        out!("{}", json!({"lineage": step.to_hex(), "tree": tree.to_hex()}));
                    } else {
                        out!("{step}  {tree}");
                    }
                }
                // Nothing new: no step, and the tree it already was.
                None if json_out => out!("{}", json!({"lineage": null, "tree": wt.tree.to_hex()})),
                None => say!("nothing to commit: {} matches its tree", dir.display()),
            }
            crate::close_committed(s);
        }
        WorktreeCmd::Discard { dir } => {
            let mut wt = Worktree::open(dir)?;
            let s = crate::opts().read_only(true).open(store_dir)?;
            let n = wt.discard(&s)?;
            if json_out {
                out!("{}", json!({ "restored": n }));
            } else {
                say!("put back {n} files");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
