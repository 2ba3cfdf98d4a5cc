//! `aslctl import ...`: printing over `asl::formats`.

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::formats::rvls;
use asl::records::labels::parse_label;
use asl::Error;
use clap::Subcommand;
use serde_json::json;

use crate::close_committed;

#[derive(Subcommand)]
pub(crate) enum ImportCmd {
    /// Import an RVLS learning store (`RVLS\n`, JSON lines, `REND`): one
    /// typed record per line (rvls/pattern, rvls/trajectory, rvls/ewc),
    /// labelled rvls.kind, rvls.domain, rvls.id; every malformed line is
    /// reported with its number and then nothing is stored; a good file is
    /// stored in one commit. Prints the import record's id.
    Rvls {
        /// The .rvls file.
        file: String,
        /// Labels added to every record (`KEY=VALUE`).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
}

pub(crate) fn import(json_out: bool, dir: &Path, cmd: &ImportCmd) -> Result<ExitCode, CliError> {
    match cmd {
        ImportCmd::Rvls { file, labels } => {
            let labels = labels
                .iter()
                .map(|l| parse_label(l).map_err(CliError::from))
                .collect::<Result<Vec<_>, _>>()?;
            let bytes = std::fs::read(file).map_err(|e| Error::Io {
                context: format!("read {file}"),
                source: e,
            })?;
            // Checked whole before the store is opened: a bad file leaves
            // no trace, not even a new store directory.
            rvls::parse(&bytes, &labels).map_err(|e| Error::InvalidArgument(format!("{file}: {e}")))?;
            let s = crate::global::open_creating(crate::opts(), dir)?;
            let name = Path::new(file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            let r = rvls::import(&s, &bytes, &name, &labels)?;
            close_committed(s);
            if json_out {
                out!(
                    "{}",
                    json!({
                        "import": r.import.to_hex(), "source": r.source.to_hex(),
                        "patterns": r.patterns, "trajectories": r.trajectories, "ewc": r.ewc,
                        "records": r.records.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    })
                );
            } else {
                out!("{}", r.import);
                say!(
                    "imported {file}: {} patterns, {} trajectories, {} ewc states ({} records; file {})",
                    r.patterns,
                    r.trajectories,
                    r.ewc,
                    r.records.len(),
                    r.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum ExportCmd {
    /// Write the store's RVLS records back as an RVLS file (`RVLS\n`, one
    /// JSON line per record, `REND`) that imports to the same records:
    /// one import's records in its file's order (`--import`), or every
    /// live one with the given labels (patterns, then trajectories, then
    /// the EWC state, each oldest first).
    Rvls {
        /// The records of this `rvls/import` record.
        #[arg(long, value_name = "ID", conflicts_with = "labels")]
        import: Option<String>,
        /// Only records with this label (`KEY=VALUE`); repeat for all of several.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Write the file here instead of to standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
}

pub(crate) fn export(dir: &Path, cmd: &ExportCmd) -> Result<ExitCode, CliError> {
    let ExportCmd::Rvls { import, labels, output } = cmd;
    let s = crate::opts().read_only(true).open(dir)?;
    let ids = match import {
        Some(text) => rvls::import_records(&s, &s.resolve(text)?)?,
        None => {
            let labels = labels
                .iter()
                .map(|l| parse_label(l).map_err(CliError::from))
                .collect::<Result<Vec<_>, _>>()?;
            let index = crate::query::open_index(&s)?;
            let mut ids = Vec::new();
            for t in rvls::RECORD_TYPES {
                let q = asl::records::query::Query {
                    labels: labels.clone(),
                    type_name: Some(t.to_string()),
                    ..Default::default()
                };
                ids.extend(index.find_live(&s, &q)?.into_iter().map(|h| h.subject));
            }
            ids
        }
    };
    let bytes = rvls::export(&s, &ids)?;
    match output {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| Error::Io {
            context: format!("write {}", path.display()),
            source: e,
        })?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                crate::output_failed(&e);
            }
        }
    }
    say!("exported {} RVLS records", ids.len());
    Ok(ExitCode::SUCCESS)
}
