//! `aslctl batch FILE` and `aslctl lineage show|revert`: command blocks
//! applied atomically, and the lineage chains they leave.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use asl::records::batch::{Batch, PutHandle, Target};
use asl::records::lineage::{self, Lineage};
use asl::records::{self, json as rjson};
use asl::{Error, Store, StoreOptions};
use clap::Subcommand;
use serde_json::{json, Value as J};

use crate::record::lift;

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

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Reads a JSON (or YAML) document.
pub(crate) fn read_document(file: &str) -> Result<J, Error> {
    let text = crate::record::read_input(file)?;
    crate::record::parse_document(file, &text)
}

/// The lineage step described by JSON object `v` (ids as hex).
fn lineage_from_json(s: &Store, v: &J) -> Result<Lineage, Error> {
    let mut body = v.clone();
    let obj = body
        .as_object_mut()
        .ok_or_else(|| bad("\"lineage\" must be an object"))?;
    // Ids may be given as prefixes; the schema wants them whole.
    for k in ["parent", "diff", "tree", "reverts"] {
        if let Some(J::String(p)) = obj.get(k) {
            let id = s.resolve(p)?;
            obj.insert(k.into(), J::String(id.to_hex()));
        }
    }
    obj.entry("created_at")
        .or_insert_with(|| J::String(records::time::now()));
    let rec = rjson::record_from_json(lineage::LINEAGE, Some(1), &body).map_err(lift)?;
    Lineage::from_record(&rec).map_err(lift)
}

/// `aslctl batch FILE`.
pub(crate) fn batch(json_out: bool, dir: &Path, file: &str) -> Result<ExitCode, Error> {
    let doc = read_document(file)?;
    let (ops, lin) = match &doc {
        J::Array(ops) => (ops.clone(), None),
        J::Object(o) => {
            for k in o.keys() {
                if k != "ops" && k != "lineage" {
                    return Err(bad(format!("{file}: unknown key {k:?} (want \"ops\" and \"lineage\")")));
                }
            }
            let ops = match o.get("ops") {
                Some(J::Array(a)) => a.clone(),
                Some(_) => return Err(bad(format!("{file}: \"ops\" must be a list"))),
                None => Vec::new(),
            };
            (ops, o.get("lineage").cloned())
        }
        _ => {
            return Err(bad(format!(
                "{file}: want a list of operations or {{\"ops\": [...], \"lineage\": {{...}}}}"
            )))
        }
    };
    let s = StoreOptions::new().create(true).open(dir)?;
    let base = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut b = Batch::new(&s);
    let mut names: HashMap<String, PutHandle> = HashMap::new();
    let mut shown: Vec<String> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = |m: &str| bad(format!("{file}: operation {}: {m}", i + 1));
        let o = op.as_object().ok_or_else(|| at("not an object"))?;
        let kind = o
            .get("op")
            .and_then(J::as_str)
            .ok_or_else(|| at("no \"op\" (put, remove or label)"))?;
        let allowed: &[&str] = match kind {
            "put" => &["op", "file", "text", "hex", "as"],
            "remove" => &["op", "id"],
            "label" => &["op", "target", "labels", "media_type"],
            other => return Err(at(&format!("unknown op {other:?} (put, remove or label)"))),
        };
        if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(at(&format!("unknown key {k:?} for {kind}")));
        }
        match kind {
            "put" => {
                let h = match (o.get("file"), o.get("text"), o.get("hex")) {
                    (Some(J::String(f)), None, None) => {
                        let p = PathBuf::from(f);
                        shown.push(f.clone());
                        b.put_file(if p.is_absolute() { p } else { base.join(p) })
                    }
                    (None, Some(J::String(t)), None) => {
                        shown.push("(text)".into());
                        b.put(t.as_bytes().to_vec())
                    }
                    (None, None, Some(J::String(h))) => {
                        let bytes = (0..h.len())
                            .step_by(2)
                            .map(|i| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok()))
                            .collect::<Option<Vec<u8>>>()
                            .filter(|_| h.len() % 2 == 0)
                            .ok_or_else(|| at("\"hex\" is not hex"))?;
                        shown.push("(hex)".into());
                        b.put(bytes)
                    }
                    _ => {
                        return Err(at(
                            "a put takes exactly one of \"file\", \"text\" or \"hex\", as a string",
                        ))
                    }
                };
                if let Some(name) = o.get("as") {
                    let name = name.as_str().ok_or_else(|| at("\"as\" must be a string"))?;
                    if names.insert(name.to_string(), h).is_some() {
                        return Err(at(&format!("the name {name:?} is used twice")));
                    }
                    if let Some(last) = shown.last_mut() {
                        *last = name.to_string();
                    }
                }
            }
            "remove" => {
                let id = o
                    .get("id")
                    .and_then(J::as_str)
                    .ok_or_else(|| at("a remove needs \"id\""))?;
                b.remove(s.resolve(id)?);
            }
            _ => {
                let t = o
                    .get("target")
                    .and_then(J::as_str)
                    .ok_or_else(|| at("a label needs \"target\""))?;
                let target = match names.get(t) {
                    Some(h) => Target::Put(*h),
                    None => Target::Id(s.resolve(t)?),
                };
                let mut labels = Vec::new();
                match o.get("labels") {
                    Some(J::Object(m)) => {
                        for (k, v) in m {
                            let v = v.as_str().ok_or_else(|| at(&format!("label {k:?} is not a string")))?;
                            labels.push((k.clone(), v.to_string()));
                        }
                    }
                    None => {}
                    Some(_) => return Err(at("\"labels\" must be an object of strings")),
                }
                let media = match o.get("media_type") {
                    Some(J::String(m)) => Some(m.as_str()),
                    None => None,
                    Some(_) => return Err(at("\"media_type\" must be a string")),
                };
                b.label(target, labels, media);
            }
        }
    }
    if let Some(l) = &lin {
        b.lineage(lineage_from_json(&s, l)?);
    }
    let done = b.commit().map_err(lift)?;
    if json_out {
        out!(
            "{}",
            json!({
                "puts": done.puts.iter().zip(&shown).map(|(p, n)| json!({"id": p.id.to_hex(), "name": n, "size": p.len, "new": p.new})).collect::<Vec<_>>(),
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

pub(crate) fn lineage_cmd(json_out: bool, dir: &Path, cmd: &LineageCmd) -> Result<ExitCode, Error> {
    match cmd {
        LineageCmd::Show { id } => {
            let s = StoreOptions::new().read_only(true).open(dir)?;
            let id = s.resolve(id)?;
            for (id, l) in lineage::chain(&s, &id).map_err(lift)? {
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
            let s = StoreOptions::new().open(dir)?;
            let id = s.resolve(id)?;
            let onto = onto.as_deref().map(|o| s.resolve(o)).transpose()?;
            let (step, tree) = lineage::revert(&s, &id, onto.as_ref(), actor.clone()).map_err(lift)?;
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
