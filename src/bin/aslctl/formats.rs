//! `aslctl import ...`: printing over `asl::formats`.

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::formats::rvls;
use asl::records::labels::parse_label;
use asl::{Error, StoreOptions};
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
            let s = StoreOptions::new().create(true).open(dir)?;
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
                eprintln!(
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
