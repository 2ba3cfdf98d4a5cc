//! `aslctl h5 ...`: printing over `asl::formats::hdf5` (ingest, which needs
//! the HDF5 C library) and `asl::formats::h5read` (everything else).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::formats::h5read;
use asl::records::cbor::Value;
use asl::Error;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum H5Cmd {
    /// Store HDF5 files, each with an index record of its groups, datasets
    /// and chunk byte ranges (with their BLAKE3); prints
    /// `<file-id>  <index-id>  FILE`. Needs a build with feature `hdf5`.
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
    /// A dataset's elements, reading only the chunks the selection needs
    /// (verified range reads, then deflate/shuffle decoded). Text: one line
    /// per row of the last dimension; `--raw`: the elements little-endian in
    /// C order; `--json`: dtype, shape, data and how much was read.
    Cat {
        /// The file's id (or its index record's), or a unique prefix.
        id: String,
        /// The dataset's path, e.g. `/group/ds`.
        dataset: String,
        /// numpy-style selection, one part per dimension: `0:10,5,::2`.
        #[arg(long, allow_hyphen_values = true, default_value = "")]
        slice: String,
        /// Write the elements as raw little-endian bytes.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
}

pub(crate) fn h5(json_out: bool, dir: &Path, cmd: &H5Cmd) -> Result<ExitCode, CliError> {
    match cmd {
        H5Cmd::Ingest { files } => ingest(json_out, dir, files),
        H5Cmd::Ls { id } | H5Cmd::Digest { id } => {
            let s = crate::opts().open(dir)?;
            let id = s.resolve(id)?;
            let (_, rec) = h5read::index_of(&s, &crate::query::open_index(&s)?, &id)?;
            if json_out {
                out!("{}", asl::records::json::record_to_json(&rec)["body"]);
                return Ok(ExitCode::SUCCESS);
            }
            if matches!(cmd, H5Cmd::Digest { .. }) {
                digests(&rec.body);
            } else {
                list(&rec.body);
            }
            Ok(ExitCode::SUCCESS)
        }
        H5Cmd::Cat {
            id,
            dataset,
            slice,
            raw,
        } => {
            let sel = h5read::parse_selection(slice)?;
            let s = crate::opts().open(dir)?;
            let id = s.resolve(id)?;
            let (_, rec) = h5read::index_of(&s, &crate::query::open_index(&s)?, &id)?;
            let a = h5read::read(&s, &rec, dataset, &sel)?;
            if *raw {
                let mut o = std::io::stdout().lock();
                o.write_all(&a.data).and_then(|_| o.flush()).map_err(|e| Error::Io {
                    context: "write to stdout".into(),
                    source: e,
                })?;
            } else if json_out {
                let data: Vec<serde_json::Value> = (0..a.len())
                    .map(|i| match a.element(i) {
                        h5read::Element::Int(v) => json!(v),
                        h5read::Element::Uint(v) => json!(v),
                        h5read::Element::Float(v) => json!(v),
                        h5read::Element::Bool(v) => json!(v),
                    })
                    .collect();
                out!(
                    "{}",
                    json!({"path": a.path, "dtype": a.dtype, "shape": a.shape, "data": data,
                           "chunks_read": a.chunks_read, "bytes_read": a.bytes_read})
                );
            } else {
                let row = a.shape.last().map_or(1, |n| *n as usize).max(1);
                let mut line = String::new();
                for i in 0..a.len() {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(&a.element(i).to_string());
                    if (i + 1) % row == 0 {
                        out!("{line}");
                        line.clear();
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "hdf5")]
fn ingest(json_out: bool, dir: &Path, files: &[String]) -> Result<ExitCode, CliError> {
    use asl::formats::hdf5;
    for f in files {
        if !Path::new(f).is_file() {
            return Err(Error::InvalidArgument(format!("{f}: no such file")).into());
        }
    }
    let s = crate::global::open_creating(crate::opts(), dir)?;
    let mut done = Vec::new();
    for f in files {
        done.push((f, hdf5::ingest(&s, Path::new(f))?));
    }
    s.commit()?;
    crate::close_committed(s);
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

#[cfg(not(feature = "hdf5"))]
fn ingest(_: bool, _: &Path, _: &[String]) -> Result<ExitCode, CliError> {
    Err(Error::InvalidArgument(
        "this aslctl was built without feature `hdf5` (the HDF5 C library): rebuild with `--features hdf5` to ingest .h5 files".into(),
    )
    .into())
}

fn hex(v: Option<&Value>) -> String {
    match v {
        Some(Value::Bytes(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        _ => "-".into(),
    }
}

fn digests(body: &Value) {
    out!("{}  /", hex(body.get("digest")));
    if let Some(Value::Array(ds)) = body.get("datasets") {
        for d in ds {
            if let Some(Value::Text(p)) = d.get("path") {
                out!("{}  {p}", hex(d.get("digest")));
            }
        }
    }
}

fn list(body: &Value) {
    let items = |v: Option<&Value>| match v {
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
    let Some(Value::Array(ds)) = body.get("datasets") else {
        return;
    };
    for d in ds {
        let text = |k: &str| match d.get(k) {
            Some(Value::Text(t)) => t.clone(),
            _ => "-".into(),
        };
        let chunks = match d.get("chunks") {
            Some(Value::Array(c)) => {
                format!("{} chunks of {}", c.len(), items(d.get("chunk_shape")).join("x"))
            }
            _ => "-".into(),
        };
        out!(
            "{}  {}  [{}]  {}  {}  {}",
            text("path"),
            text("dtype"),
            items(d.get("shape")).join(", "),
            text("layout"),
            chunks,
            items(d.get("filters")).join(",")
        );
    }
}
