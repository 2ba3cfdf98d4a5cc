//! `aslctl record put|show` and `aslctl types`: records in and out as JSON.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use asl::records::{self, json, schema, tree, RecordError};
use asl::Error;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum RecordCmd {
    /// Store a record whose body is the JSON object in FILE (YAML for
    /// `.yaml`/`.yml`; `-`: stdin); prints its id. A registered type is
    /// checked against its schema.
    Put {
        /// Record type, e.g. asl/run (`aslctl types` lists the registered ones).
        #[arg(long = "type")]
        type_name: String,
        /// Schema version [default: the newest registered, else 1].
        #[arg(long)]
        version: Option<u64>,
        /// JSON or YAML file holding the body, or `-` for stdin.
        file: String,
    },
    /// Print a record as JSON: type, version, whether its type is known, body.
    Show {
        /// Id or unique id prefix.
        id: String,
    },
}

/// The text of FILE, or of stdin for `-`.
pub(crate) fn read_input(file: &str) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Error::Io {
        context: format!("read {file}"),
        source: e,
    })?;
    Ok(text)
}

/// A JSON document, or YAML for a `.yaml`/`.yml` file (its comments
/// dropped; what it says is turned into the same values JSON would give).
/// Standard input is JSON, or YAML when it does not parse as JSON.
pub(crate) fn parse_document(file: &str, text: &str) -> Result<serde_json::Value, CliError> {
    let yaml_name = file.ends_with(".yaml") || file.ends_with(".yml");
    let from_yaml = |text: &str| {
        asl::formats::overlay::yaml_to_json(text).map_err(|e| Error::InvalidArgument(format!("{file}: {e}")))
    };
    if yaml_name {
        return Ok(from_yaml(text)?);
    }
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(_) if file == "-" => Ok(from_yaml(text)?),
        Err(e) => Err(Error::InvalidArgument(format!("{file}: not JSON: {e}")).into()),
    }
}

/// Bad input and bad records are usage errors (exit 2); the store's own
/// errors keep their codes.
pub(crate) fn record(json_out: bool, dir: &Path, cmd: &RecordCmd) -> Result<ExitCode, CliError> {
    match cmd {
        RecordCmd::Put {
            type_name,
            version,
            file,
        } => {
            let body = parse_document(file, &read_input(file)?)?;
            let builtin = schema::newest(type_name).is_some();
            // Checked as far as it can be before the store is opened (a
            // built-in type wholly, any other's name and encoding): a
            // refused record writes nothing, not even a new store.
            let first = json::record_from_json(type_name, *version, &body)?;
            let prepared = records::prepare(&first)?;
            let (rec, prepared) = match builtin {
                true => (Some(first), Some(prepared)),
                false => (None, None),
            };
            let s = crate::global::open_creating(crate::opts(), dir)?;
            let (rec, prepared, checked) = match (rec, prepared) {
                (Some(r), Some(p)) => {
                    let c = p.checked;
                    (r, p, c)
                }
                _ => {
                    // A type registered in the store: checked against it.
                    let index = crate::query::open_index(&s)?;
                    let (rec, checked) = schema::user::record_from_json(&index, &s, type_name, *version, &body)?;
                    let prepared = records::prepare(&rec)?;
                    (rec, prepared, checked)
                }
            };
            let stored = records::put_prepared(&s, &prepared)?;
            s.commit()?;
            crate::close_committed(s);
            let known = checked == schema::Checked::Valid;
            if json_out {
                out!(
                    "{}",
                    serde_json::json!({"id": stored.id.to_hex(), "type": rec.type_name, "version": rec.version,
                                       "known": known, "new": stored.new})
                );
            } else {
                out!("{}", stored.id);
            }
            if !known {
                say!(
                    "aslctl: note: type {} version {} is not registered: stored without a schema check",
                    rec.type_name,
                    rec.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RecordCmd::Show { id } => {
            let s = crate::opts().read_only(true).open(dir)?;
            let id = s.resolve(id)?;
            let rec = records::get(&s, &id).map_err(|e| match e {
                RecordError::Store(e) => e,
                other => Error::InvalidArgument(format!("artifact {id}: {other}")),
            })?;
            let v = json::record_to_json(&rec);
            out!(
                "{}",
                if json_out {
                    v.to_string()
                } else {
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn types(json_out: bool) -> Result<ExitCode, CliError> {
    if json_out {
        // The shape `schema show` gives one type.
        crate::global::json_lines(
            schema::REGISTRY
                .iter()
                .map(|t| json::to_json(&schema::user::describe(t))),
        );
    } else {
        for t in schema::REGISTRY {
            let fields: Vec<String> = t
                .fields
                .iter()
                .map(|f| format!("{}{}", f.name, if f.required { "" } else { "?" }))
                .collect();
            out!("{} v{}\t{}\t{}", t.name, t.version, t.doc, fields.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn kind_word(k: tree::EntryKind) -> &'static str {
    match k {
        tree::EntryKind::File => "file",
        tree::EntryKind::Exec => "exec",
        tree::EntryKind::Dir => "tree",
        tree::EntryKind::Link => "link",
    }
}

/// Runs `f` over CURRENT, or over snapshot `at`, with `id` resolved there.
/// Runs `f` over the store (or a snapshot of it) read-only. When it misses
/// an artifact promised by another domain, runs it again over the store
/// opened to write, fetching promised artifacts as they are read.
fn with_source<T>(
    dir: &Path,
    at: Option<&str>,
    id: &str,
    f: impl Fn(&dyn records::Source, asl::ArtifactId) -> Result<T, CliError>,
) -> Result<T, CliError> {
    use asl::federation::promise;
    let s = crate::opts().read_only(true).open(dir)?;
    match at {
        Some(name) => {
            let v = s.at(name)?;
            let id = v.resolve(id)?;
            f(&v, id)
        }
        None => {
            let id = promise::resolve(&s, id)?;
            match f(&s, id) {
                Err(e) if e.store().is_some_and(|e| promise::is_promised_miss(&s, e)) => {
                    drop(s);
                    let w = crate::opts().open(dir)?;
                    let r = f(&promise::Promising::new(&w), id);
                    crate::close_committed(w);
                    r
                }
                r => r,
            }
        }
    }
}

/// `aslctl ls-tree ID [-r] [--at SNAP]`: `<kind> <id> <size>\t<name>` per entry.
pub(crate) fn ls_tree(
    json_out: bool,
    dir: &Path,
    id: &str,
    recursive: bool,
    at: Option<&str>,
) -> Result<ExitCode, CliError> {
    let rows: Vec<(Vec<u8>, tree::TreeEntry)> = with_source(dir, at, id, |src, id| {
        if recursive {
            Ok(tree::walk(src, &id)?)
        } else {
            Ok(tree::read_tree(src, &id)?
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect())
        }
    })?;
    if json_out {
        crate::global::json_lines(rows.iter().map(|(p, e)| {
            serde_json::json!({"path": show_path(p), "kind": kind_word(e.kind), "id": e.id.to_hex(), "len": e.size})
        }));
    } else {
        for (p, e) in &rows {
            out!("{} {} {}\t{}", kind_word(e.kind), e.id, e.size, show_path(p));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl checkout TREE DIR [--force] [--at SNAP]`.
pub(crate) fn checkout(
    json_out: bool,
    dir: &Path,
    id: &str,
    to: &Path,
    force: bool,
    at: Option<&str>,
) -> Result<ExitCode, CliError> {
    // Promised artifacts under the tree are fetched before anything is
    // written: a checkout that stopped half-way for one would leave a
    // directory the next attempt refuses.
    if at.is_none() {
        use asl::federation::promise;
        let s = crate::opts().read_only(true).open(dir)?;
        if !promise::promised(&s)?.is_empty() {
            drop(s);
            let w = crate::opts().open(dir)?;
            let tree = promise::resolve(&w, id)?;
            let n = promise::materialize(&w, &tree)?;
            if n > 0 {
                say!("fetched {n} promised artifacts");
            }
            crate::close_committed(w);
        }
    }
    let bar = crate::global::Bar::new(json_out);
    let report = |p: asl::Step<'_>| bar.step(p);
    let (tree, n) = with_source(dir, at, id, |src, id| {
        Ok((id, tree::checkout_with_progress(src, &id, to, force, Some(&report))?))
    })?;
    drop(bar);
    if json_out {
        crate::global::json_line(&serde_json::json!({"tree": tree.to_hex(), "dir": to, "files": n}));
    } else {
        say!("checked out {n} files into {}", to.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl diff-tree A B`: `A path`, `D path`, `M path` per changed file.
pub(crate) fn diff_tree(json_out: bool, dir: &Path, a: &str, b: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let (a, b) = (s.resolve(a)?, s.resolve(b)?);
    let changes = tree::diff(&s, &a, &b)?;
    let rows = changes.iter().map(|c| match c {
        tree::Change::Added(p, e) => ("A", p, None, Some(e)),
        tree::Change::Removed(p, e) => ("D", p, Some(e), None),
        tree::Change::Modified(p, x, y) => ("M", p, Some(x), Some(y)),
    });
    if json_out {
        crate::global::json_lines(rows.map(|(what, p, x, y)| {
            serde_json::json!({"change": what, "path": show_path(p),
                "before": x.map(|e| e.id.to_hex()), "after": y.map(|e| e.id.to_hex())})
        }));
    } else {
        for (what, p, _, _) in rows {
            out!("{what}\t{}", show_path(p));
        }
    }
    Ok(ExitCode::SUCCESS)
}
