//! `aslctl schema add|show|list`: the store's schema registry
//! (`asl::records::schema::user`), beside the built-in types.

use std::path::Path;
use std::process::ExitCode;

use asl::records::schema::user;
use asl::records::{self, json};
use asl::Error;
use clap::Subcommand;

use crate::error::CliError;

#[derive(Subcommand)]
pub(crate) enum SchemaCmd {
    /// Register the record type a schema file defines (YAML or JSON: name,
    /// version, extends TYPE@VERSION, doc, fields); prints its record's id.
    /// A version once registered keeps its definition.
    Add {
        /// The schema file, or `-` for stdin.
        file: String,
    },
    /// A type's schema with every field it inherits, as JSON: a built-in
    /// type or a registered one (`NAME` for its newest version, or
    /// `NAME@VERSION`).
    Show {
        /// The type, `NAME` or `NAME@VERSION`.
        name: String,
    },
    /// Every type: the built-in ones, then those registered in the store.
    List,
}

pub(crate) fn schema(json_out: bool, dir: &Path, cmd: &SchemaCmd) -> Result<ExitCode, CliError> {
    match cmd {
        SchemaCmd::Add { file } => {
            let doc = crate::record::parse_document(file, &crate::record::read_input(file)?)?;
            let doc = json::from_json(&doc)?;
            let s = crate::global::open_creating(crate::opts(), dir)?;
            let index = crate::query::open_index(&s)?;
            let rec = user::register(&index, &s, &doc)?;
            let stored = records::put(&s, &rec)?;
            drop(index);
            crate::close_committed(s);
            let d = user::parse(&doc)?;
            if json_out {
                out!(
                    "{}",
                    serde_json::json!({"id": stored.id.to_hex(), "name": d.name, "version": d.version, "new": stored.new})
                );
            } else {
                out!("{}  {}@{}", stored.id, d.name, d.version);
            }
        }
        SchemaCmd::Show { name } => {
            let s = crate::opts().read_only(true).open(dir)?;
            let index = crate::query::open_index(&s)?;
            let (n, v) = match name.rsplit_once('@') {
                Some((n, v)) => (
                    n,
                    Some(
                        v.parse::<u64>()
                            .map_err(|_| Error::InvalidArgument(format!("{name:?}: {v:?} is not a version")))?,
                    ),
                ),
                None => (name.as_str(), None),
            };
            let v = match v {
                Some(v) => v,
                None => user::newest(&index, &s, n)?
                    .ok_or_else(|| Error::InvalidArgument(format!("no type {n:?} is built in or registered")))?,
            };
            let t = user::resolve(&index, &s, n, v)?
                .ok_or_else(|| Error::InvalidArgument(format!("{n} has no version {v} built in or registered")))?;
            let mut doc = json::to_json(&user::describe(t));
            if let Some((id, d)) = user::definition(&index, &s, n, v)? {
                doc["record"] = id.to_hex().into();
                if let Some((pn, pv)) = d.extends {
                    doc["extends"] = format!("{pn}@{pv}").into();
                }
            }
            out!(
                "{}",
                if json_out {
                    doc.to_string()
                } else {
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                }
            );
        }
        SchemaCmd::List => {
            let s = crate::opts().read_only(true).open(dir)?;
            let index = crate::query::open_index(&s)?;
            let all = user::list(&index, &s)?;
            if json_out {
                crate::global::json_lines(
                    all.iter().map(
                        |(n, v, id)| serde_json::json!({"name": n, "version": v, "record": id.map(|i| i.to_hex())}),
                    ),
                );
            } else {
                for (n, v, id) in &all {
                    out!("{n}@{v}  {}", id.map_or("built-in".to_string(), |i| i.to_string()));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
