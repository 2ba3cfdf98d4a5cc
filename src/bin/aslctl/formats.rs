//! `aslctl import ...`: printing over `asl::formats`.

use std::path::Path;
use std::process::ExitCode;

use asl::formats::rvls;
use asl::records::labels::parse_label;
use asl::{Error, StoreOptions};
use clap::Subcommand;
use serde_json::json;

use crate::close_committed;
use crate::record::lift;

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

pub(crate) fn import(json_out: bool, dir: &Path, cmd: &ImportCmd) -> Result<ExitCode, Error> {
    match cmd {
        ImportCmd::Rvls { file, labels } => {
            let labels = labels
                .iter()
                .map(|l| parse_label(l).map_err(lift))
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
            let r = rvls::import(&s, &bytes, &name, &labels).map_err(lift)?;
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

#[cfg(feature = "hdf5")]
#[derive(Subcommand)]
pub(crate) enum H5Cmd {
    /// Store HDF5 files, each with an index record of its groups, datasets
    /// and chunk byte ranges (with their BLAKE3); prints
    /// `<file-id>  <index-id>  FILE`.
    Ingest {
        /// The .h5 files.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// An HDF5 artifact's datasets: `path  dtype  shape  layout  chunks  filters`.
    Ls {
        /// The file's id (or its index record's), or a unique prefix.
        id: String,
    },
    /// Logical digests: the file's first (`<digest>  /`), then each
    /// dataset's; equal for files holding the same data in other layouts.
    Digest {
        /// The file's id (or its index record's), or a unique prefix.
        id: String,
    },
}

#[cfg(feature = "hdf5")]
pub(crate) fn h5(json_out: bool, dir: &Path, cmd: &H5Cmd) -> Result<ExitCode, Error> {
    use asl::formats::hdf5;
    use asl::records::cbor::Value;
    use asl::records::{self, Source};
    match cmd {
        H5Cmd::Ingest { files } => {
            for f in files {
                if !Path::new(f).is_file() {
                    return Err(Error::InvalidArgument(format!("{f}: no such file")));
                }
            }
            let s = StoreOptions::new().create(true).open(dir)?;
            let mut done = Vec::new();
            for f in files {
                done.push((f, hdf5::ingest(&s, Path::new(f)).map_err(lift)?));
            }
            s.commit()?;
            close_committed(s);
            for (f, r) in done {
                if json_out {
                    out!(
                        "{}",
                        json!({"file": r.file.to_hex(), "index": r.index.to_hex(), "path": f,
                               "digest": r.digest.to_hex(), "datasets": r.datasets, "chunks": r.chunks})
                    );
                } else {
                    out!("{}  {}  {f}", r.file, r.index);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        H5Cmd::Ls { id } | H5Cmd::Digest { id } => {
            let s = asl::Store::open(dir)?;
            let id = s.resolve(id)?;
            let rec = match records::get(&s as &dyn Source, &id) {
                Ok(r) if r.type_name == hdf5::INDEX_TYPE => r,
                _ => {
                    let index = crate::query::open_index(&s)?;
                    let mut found = None;
                    for r in index.annotations_of(&id).map_err(lift)? {
                        if let Ok(rec) = records::get(&s as &dyn Source, &r) {
                            if rec.type_name == hdf5::INDEX_TYPE {
                                found = Some(rec);
                            }
                        }
                    }
                    found.ok_or_else(|| {
                        Error::InvalidArgument(format!("{id} has no HDF5 index (store it with `aslctl h5 ingest`)"))
                    })?
                }
            };
            if json_out {
                out!("{}", records::json::record_to_json(&rec)["body"]);
                return Ok(ExitCode::SUCCESS);
            }
            let hex = |v: Option<&Value>| match v {
                Some(Value::Bytes(b)) => b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                _ => "-".into(),
            };
            if matches!(cmd, H5Cmd::Digest { .. }) {
                out!("{}  /", hex(rec.body.get("digest")));
                if let Some(Value::Array(ds)) = rec.body.get("datasets") {
                    for d in ds {
                        if let Some(Value::Text(p)) = d.get("path") {
                            out!("{}  {p}", hex(d.get("digest")));
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let list = |v: Option<&Value>| match v {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| match x {
                        Value::Unsigned(n) => n.to_string(),
                        Value::Text(t) => t.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            if let Some(Value::Array(ds)) = rec.body.get("datasets") {
                for d in ds {
                    let text = |k: &str| match d.get(k) {
                        Some(Value::Text(t)) => t.clone(),
                        _ => "-".into(),
                    };
                    let chunks = match d.get("chunks") {
                        Some(Value::Array(c)) => {
                            format!("{} chunks of {}", c.len(), list(d.get("chunk_shape")).join("x"))
                        }
                        _ => "-".into(),
                    };
                    out!(
                        "{}  {}  [{}]  {}  {}  {}",
                        text("path"),
                        text("dtype"),
                        list(d.get("shape")).join(", "),
                        text("layout"),
                        chunks,
                        list(d.get("filters")).join(",")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
