//! The batch document (what `aslctl batch FILE` reads, as JSON or as YAML
//! turned into JSON): a list of operations, or `{"ops": [...], "lineage":
//! {...}}`. Its schema lives here, so every program that takes such a
//! document refuses the same ones with the same words: the whole document
//! is checked before anything is written, then applied as one [`Batch`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use super::batch::{Applied, Batch, Input, PutHandle, Target};
use super::lineage::{self, Lineage};
use super::{json as rjson, time, RecordError};
use asl_core::Store;

/// One operation of a document, checked.
enum Op {
    /// `shown`: how a person knows the put (its `as` name, its file as
    /// written, `(text)` or `(hex)`).
    Put {
        input: Input,
        name: Option<String>,
        shown: String,
    },
    Remove {
        id: String,
    },
    Label {
        target: String,
        labels: Vec<(String, String)>,
        media_type: Option<String>,
    },
}

/// A batch document, checked against the schema.
pub struct Document {
    ops: Vec<Op>,
    lineage: Option<J>,
}

/// What [`Document::apply`] did, and how to name each put for a person:
/// its `as` name, its file, or `(text)` / `(hex)`.
pub struct Done {
    pub applied: Applied,
    pub put_names: Vec<String>,
}

fn bad(msg: String) -> RecordError {
    RecordError::Input(msg)
}

impl Document {
    /// Checks `doc`; a relative `file` of a put is taken from `base` (the
    /// document's directory).
    pub fn parse(doc: &J, base: &Path) -> Result<Document, RecordError> {
        let (ops, lineage) = match doc {
            J::Array(ops) => (ops.as_slice(), None),
            J::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "ops" && *k != "lineage") {
                    return Err(bad(format!("unknown key {k:?} (want \"ops\" and \"lineage\")")));
                }
                let ops = match o.get("ops") {
                    Some(J::Array(a)) => a.as_slice(),
                    Some(_) => return Err(bad("\"ops\" must be a list".into())),
                    None => &[],
                };
                (ops, o.get("lineage").cloned())
            }
            _ => {
                return Err(bad(
                    "want a list of operations or {\"ops\": [...], \"lineage\": {...}}".into()
                ))
            }
        };
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let op = parse_op(op, base).map_err(|m| bad(format!("operation {}: {m}", i + 1)))?;
            if let Op::Put { name: Some(n), .. } = &op {
                if !names.insert(n.clone()) {
                    return Err(bad(format!("operation {}: the name {n:?} is used twice", i + 1)));
                }
            }
            out.push(op);
        }
        Ok(Document { ops: out, lineage })
    }

    /// Applies the document to `store` as one batch: every id resolved
    /// (prefixes too) and the lineage step checked before the first write,
    /// then all of it committed together.
    pub fn apply(&self, store: &Store) -> Result<Done, RecordError> {
        let mut b = Batch::new(store);
        let mut handles: HashMap<&str, PutHandle> = HashMap::new();
        let mut put_names = Vec::new();
        for op in &self.ops {
            match op {
                Op::Put { input, name, shown } => {
                    let h = b.put_input(input.clone());
                    if let Some(n) = name {
                        handles.insert(n, h);
                    }
                    put_names.push(shown.clone());
                }
                Op::Remove { id } => b.remove(store.resolve(id)?),
                Op::Label {
                    target,
                    labels,
                    media_type,
                } => {
                    let target = match handles.get(target.as_str()) {
                        Some(h) => Target::Put(*h),
                        None => Target::Id(store.resolve(target)?),
                    };
                    b.label(target, labels.clone(), media_type.as_deref());
                }
            }
        }
        if let Some(l) = &self.lineage {
            b.lineage(lineage_from_json(store, l)?);
        }
        Ok(Done {
            applied: b.commit()?,
            put_names,
        })
    }
}

/// One operation, or what is wrong with it.
fn parse_op(op: &J, base: &Path) -> Result<Op, String> {
    let o = op.as_object().ok_or("not an object")?;
    let kind = o
        .get("op")
        .and_then(J::as_str)
        .ok_or("no \"op\" (put, remove or label)")?;
    let allowed: &[&str] = match kind {
        "put" => &["op", "file", "text", "hex", "as"],
        "remove" => &["op", "id"],
        "label" => &["op", "target", "labels", "media_type"],
        other => return Err(format!("unknown op {other:?} (put, remove or label)")),
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown key {k:?} for {kind}"));
    }
    let text = |k: &str, why: &str| o.get(k).and_then(J::as_str).map(str::to_string).ok_or(why.to_string());
    match kind {
        "put" => {
            let (input, written) = match (o.get("file"), o.get("text"), o.get("hex")) {
                (Some(J::String(f)), None, None) => {
                    let p = PathBuf::from(f);
                    (Input::File(if p.is_absolute() { p } else { base.join(p) }), f.clone())
                }
                (None, Some(J::String(t)), None) => (Input::Bytes(t.as_bytes().to_vec()), "(text)".into()),
                (None, None, Some(J::String(h))) => {
                    (Input::Bytes(unhex(h).ok_or("\"hex\" is not hex")?), "(hex)".into())
                }
                _ => return Err("a put takes exactly one of \"file\", \"text\" or \"hex\", as a string".into()),
            };
            let name = match o.get("as") {
                Some(n) => Some(n.as_str().ok_or("\"as\" must be a string")?.to_string()),
                None => None,
            };
            let shown = name.clone().unwrap_or(written);
            Ok(Op::Put { input, name, shown })
        }
        "remove" => Ok(Op::Remove {
            id: text("id", "a remove needs \"id\"")?,
        }),
        _ => {
            let target = text("target", "a label needs \"target\"")?;
            let mut labels = Vec::new();
            match o.get("labels") {
                Some(J::Object(m)) => {
                    for (k, v) in m {
                        let v = v.as_str().ok_or(format!("label {k:?} is not a string"))?;
                        labels.push((k.clone(), v.to_string()));
                    }
                }
                None => {}
                Some(_) => return Err("\"labels\" must be an object of strings".into()),
            }
            let media_type = match o.get("media_type") {
                Some(J::String(m)) => Some(m.clone()),
                None => None,
                Some(_) => return Err("\"media_type\" must be a string".into()),
            };
            Ok(Op::Label {
                target,
                labels,
                media_type,
            })
        }
    }
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok()))
        .collect()
}

/// The lineage step described by JSON object `v`: ids may be unique
/// prefixes (resolved in `store`), and `created_at` is now when missing.
pub fn lineage_from_json(store: &Store, v: &J) -> Result<Lineage, RecordError> {
    let mut body = v.clone();
    let obj = body
        .as_object_mut()
        .ok_or_else(|| bad("\"lineage\" must be an object".into()))?;
    for k in ["parent", "diff", "tree", "reverts"] {
        if let Some(J::String(p)) = obj.get(k) {
            let id = store.resolve(p)?;
            obj.insert(k.into(), J::String(id.to_hex()));
        }
    }
    obj.entry("created_at").or_insert_with(|| J::String(time::now()));
    let rec = rjson::record_from_json(lineage::LINEAGE, Some(1), &body)?;
    Lineage::from_record(&rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_is_checked_whole_then_applied_as_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
        // The second operation is wrong: nothing of the first is written.
        let bad = json!([{"op": "put", "text": "a"}, {"op": "put", "text": "b", "hex": "00"}]);
        let e = Document::parse(&bad, Path::new(".")).err().expect("refused");
        assert!(
            e.to_string().starts_with("operation 2: a put takes exactly one of"),
            "{e}"
        );
        let twice = json!([{"op": "put", "text": "a", "as": "x"}, {"op": "put", "hex": "00", "as": "x"}]);
        let e = Document::parse(&twice, Path::new(".")).err().expect("refused");
        assert!(e.to_string().contains("the name \"x\" is used twice"), "{e}");
        assert_eq!(store.iter().unwrap().count(), 0);

        let doc = json!({"ops": [
            {"op": "put", "text": "hello", "as": "greeting"},
            {"op": "put", "hex": "00ff"},
            {"op": "label", "target": "greeting", "labels": {"lang": "en"}},
        ]});
        let done = Document::parse(&doc, Path::new(".")).unwrap().apply(&store).unwrap();
        assert_eq!(done.put_names, ["greeting", "(hex)"]);
        assert_eq!(done.applied.puts.len(), 2);
        assert_eq!(done.applied.annotations.len(), 1);
        assert_eq!(store.get(&done.applied.puts[1].id).unwrap(), [0x00, 0xff]);
    }
}
