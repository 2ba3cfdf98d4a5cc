//! YAML overlays (feature `yaml`): a record shown as YAML for people to
//! read, comment and edit, and turned back into canonical CBOR.
//!
//! [`render`] writes a record's JSON form as block YAML with ASL's own
//! notes as `##` comments: a first line naming the object it mirrors, the
//! type's description, and for a template what each field is and that
//! every dataset stays in HDF5. [`apply`] reads an overlay back: the YAML
//! is parsed (serde_yaml_ng, YAML 1.2), checked against the record schema
//! (and, for a template, its references checked against the store), and
//! stored as canonical CBOR with every comment stripped. The comments
//! people wrote (`#`, not `##`) are not lost: they go, with their line and
//! the field they sit on, into an `asl/overlay` record beside the fields
//! that changed from the mirrored object, so the audit trail keeps what the
//! CBOR leaves out.
//!
//! No maintained YAML crate hands comments to a program (serde_yaml_ng and
//! saphyr drop them in the scanner), so comments are found here, by a
//! line scanner that knows YAML's quoting; the data itself is parsed by
//! the crate.

use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, json, Record, RecordError, Source};
use serde_json::Value as J;

use super::template::{self, TEMPLATE_TYPE};

/// The record type that logs an overlay's comments and changes.
pub const OVERLAY_TYPE: &str = "asl/overlay";

/// The first line of a rendered overlay: names the object it mirrors.
const HEADER: &str = "## asl overlay of ";

/// A comment found in an overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// Its line, from 1.
    pub line: u64,
    /// The field it belongs to (`body.parameters.alpha`); a comment on a
    /// line of its own belongs to the next field.
    pub at: String,
    /// Its text, without the `#`.
    pub text: String,
}

/// An overlay, read.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The record it says, checked against its schema.
    pub record: Record,
    /// The object it was rendered from, when its first line names one.
    pub base: Option<ArtifactId>,
    /// The comments people wrote.
    pub annotations: Vec<Annotation>,
}

/// What [`apply`] stored.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The canonical CBOR record.
    pub result: ArtifactId,
    /// The `asl/overlay` record logging comments and changes.
    pub log: ArtifactId,
    /// Fields that differ from the mirrored object.
    pub changed: Vec<String>,
    /// Comments logged.
    pub annotations: usize,
}

fn template_note(path: &str) -> Option<&'static str> {
    Some(match path {
        "body.name" => "the template's name (root attribute template_id, else the file's name)",
        "body.kind" => "what it is for (root attribute template_type)",
        "body.source" => "the HDF5 file: its elements stay there, referenced, never copied here",
        "body.index" => "the file's asl/hdf5-index record",
        "body.digest" => "the file's logical digest: equal for files that hold the same data",
        "body.parameters" => "execution parameters (the root group's attributes): edit these",
        "body.groups" => "other groups' attributes, by path",
        "body.datasets" => "deep data by reference (artifact, path); these must keep matching the file",
        "body.metadata" => "free-form run metadata added in an overlay",
        _ => return None,
    })
}

/// The YAML overlay of record `r` (whose id is `id`).
pub fn render(r: &Record, id: &ArtifactId) -> String {
    let mut out = format!("{HEADER}{id}\n");
    if let Some(t) = records::schema::lookup(&r.type_name, r.version) {
        out.push_str(&format!("## {}: {}\n", t.name, t.doc));
    }
    out.push_str(
        "## Edit values and add comments (#). Converting to CBOR checks this against the schema,\n\
         ## strips every comment and logs yours, with the fields you changed, in an asl/overlay record.\n",
    );
    let j = json::record_to_json(r);
    out.push_str(&format!("type: {}\n", J::String(r.type_name.clone())));
    out.push_str(&format!("version: {}\n", r.version));
    out.push_str("body:");
    let template = r.type_name == TEMPLATE_TYPE;
    let note = |path: &str, v: &J| -> Option<String> {
        if !template {
            return None;
        }
        if let Some(n) = template_note(path) {
            return Some(n.to_string());
        }
        // A dataset item: say what it is and where its elements are.
        if path.starts_with("body.datasets[") && !path.contains("].") {
            let shape = v.get("shape").map(|s| s.to_string()).unwrap_or_default();
            let dtype = v.get("dtype").and_then(J::as_str).unwrap_or("?");
            let p = v.get("path").and_then(J::as_str).unwrap_or("?");
            return Some(format!("{p}: {dtype} {shape}, stays in HDF5"));
        }
        None
    };
    emit(&mut out, &j["body"], 2, "body", &note);
    out
}

fn key_text(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !matches!(k, "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n");
    if plain {
        k.to_string()
    } else {
        J::String(k.to_string()).to_string()
    }
}

/// Written inline (JSON flow, which is YAML): scalars, empty containers,
/// and short lists of scalars.
fn inline(v: &J) -> bool {
    match v {
        J::Array(a) => a.is_empty() || (a.len() <= 16 && a.iter().all(|x| !x.is_array() && !x.is_object())),
        J::Object(m) => m.is_empty(),
        _ => true,
    }
}

/// Writes `v` after a key (the cursor is just after its `:`).
fn emit(out: &mut String, v: &J, indent: usize, path: &str, note: &dyn Fn(&str, &J) -> Option<String>) {
    let pad = " ".repeat(indent);
    if inline(v) {
        out.push_str(&format!(" {v}\n"));
        return;
    }
    out.push('\n');
    match v {
        J::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if let Some(n) = note(&p, x) {
                    out.push_str(&format!("{pad}## {n}\n"));
                }
                out.push_str(&format!("{pad}{}:", key_text(k)));
                emit(out, x, indent + 2, &p, note);
            }
        }
        J::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if let Some(n) = note(&p, x) {
                    out.push_str(&format!("{pad}## {n}\n"));
                }
                match x {
                    J::Object(m) if !m.is_empty() => {
                        // The item's first key on the dash's line, the rest under it.
                        for (j, (k, y)) in m.iter().enumerate() {
                            let lead = if j == 0 { format!("{pad}- ") } else { format!("{pad}  ") };
                            out.push_str(&format!("{lead}{}:", key_text(k)));
                            emit(out, y, indent + 4, &format!("{p}.{k}"), note);
                        }
                    }
                    _ if inline(x) => out.push_str(&format!("{pad}- {x}\n")),
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        emit(out, x, indent + 2, &p, note);
                    }
                }
            }
        }
        _ => unreachable!("scalars are inline"),
    }
}

/// Where the comment on a line starts, if it has one: a `#` outside quotes
/// at the line's start or after a space.
fn comment_at(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let (mut dq, mut sq) = (false, false);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if dq => i += 1,
            b'"' if !sq => dq = !dq,
            b'\'' if !dq => sq = !sq,
            b'#' if !dq && !sq && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The key a line of block YAML starts with (`name:` or `"na me":`).
fn line_key(s: &str) -> Option<String> {
    if let Some(rest) = s.strip_prefix('"') {
        let end = rest.find('"')?;
        return rest[end + 1..].starts_with(':').then(|| rest[..end].to_string());
    }
    let at = s.find(':')?;
    let after = &s[at + 1..];
    (after.is_empty() || after.starts_with(' ')).then(|| s[..at].trim().to_string())
}

/// Every comment people wrote in `text` (not ASL's `##` notes), with the
/// field each belongs to.
pub fn annotations(text: &str) -> Vec<Annotation> {
    // Open block frames: (indent, segment); list items are "[n]".
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Vec<(u64, String)> = Vec::new();
    let mut out = Vec::new();
    let path_of = |stack: &[(usize, String)]| {
        let mut p = String::new();
        for (_, s) in stack {
            if !s.starts_with('[') && !p.is_empty() {
                p.push('.');
            }
            p.push_str(s);
        }
        p
    };
    for (n, line) in text.lines().enumerate() {
        let n = n as u64 + 1;
        let cut = comment_at(line);
        let content = &line[..cut.unwrap_or(line.len())];
        let comment = cut.map(|c| &line[c..]).filter(|c| !c.starts_with("##"));
        if content.trim().is_empty() {
            if let Some(c) = comment {
                pending.push((n, c[1..].trim().to_string()));
            }
            continue;
        }
        let mut indent = content.len() - content.trim_start().len();
        let mut rest = content.trim_start();
        while let Some(r) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            while stack
                .last()
                .is_some_and(|(i, s)| *i > indent || (*i == indent && !s.starts_with('[')))
            {
                stack.pop();
            }
            let next = match stack.last() {
                Some((i, s)) if *i == indent && s.starts_with('[') => {
                    let k: usize = s[1..s.len() - 1].parse().unwrap_or(0) + 1;
                    stack.pop();
                    k
                }
                _ => 0,
            };
            stack.push((indent, format!("[{next}]")));
            indent += 2;
            rest = r;
        }
        if let Some(k) = line_key(rest) {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, k));
        }
        let at = path_of(&stack);
        for (l, t) in pending.drain(..) {
            out.push(Annotation {
                line: l,
                at: at.clone(),
                text: t,
            });
        }
        if let Some(c) = comment {
            out.push(Annotation {
                line: n,
                at,
                text: c[1..].trim().to_string(),
            });
        }
    }
    for (l, t) in pending {
        out.push(Annotation {
            line: l,
            at: String::new(),
            text: t,
        });
    }
    out
}

/// YAML text as a JSON value. Through serde_yaml_ng's own value first: it
/// refuses a key given twice in one map (read straight into JSON, the last
/// one would silently win).
pub fn yaml_to_json(text: &str) -> Result<J, RecordError> {
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| RecordError::Input(format!("not YAML: {e}")))?;
    serde_json::to_value(&v).map_err(|e| RecordError::Input(format!("not JSON-shaped YAML: {e}")))
}

/// Reads an overlay: parses it, checks it against its record schema and
/// finds its comments. Nothing is stored.
pub fn parse(text: &[u8]) -> Result<Parsed, RecordError> {
    let text = std::str::from_utf8(text).map_err(|e| RecordError::Input(format!("not UTF-8: {e}")))?;
    let doc = yaml_to_json(text)?;
    let J::Object(top) = &doc else {
        return Err(RecordError::Input(
            "an overlay is a map of type, version and body".into(),
        ));
    };
    for k in top.keys() {
        if !matches!(k.as_str(), "type" | "version" | "body") {
            return Err(RecordError::Input(format!(
                "unknown top-level key {k:?} (an overlay has type, version, body)"
            )));
        }
    }
    let ty = top
        .get("type")
        .and_then(J::as_str)
        .ok_or_else(|| RecordError::Input("no `type:` (text)".into()))?;
    let version = top
        .get("version")
        .and_then(J::as_u64)
        .ok_or_else(|| RecordError::Input("no `version:` (a non-negative integer)".into()))?;
    let body = top.get("body").ok_or_else(|| RecordError::Input("no `body:`".into()))?;
    let record = json::record_from_json(ty, Some(version), body)?;
    if records::schema::check(&record)? == records::schema::Checked::Unknown {
        return Err(RecordError::Input(format!(
            "type {ty} version {version} is not registered: an overlay must have a schema to be checked against"
        )));
    }
    let base = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(HEADER))
        .and_then(|h| h.trim().parse::<ArtifactId>().ok());
    Ok(Parsed {
        record,
        base,
        annotations: annotations(text),
    })
}

/// The paths at which `a` and `b` differ (maps key by key, lists item by
/// item).
fn differences(a: &J, b: &J, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => differences(p, q, &format!("{path}.{k}"), out),
                    _ => out.push(format!("{path}.{k}")),
                }
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(path.to_string()),
    }
}

/// Turns the overlay stored as `overlay` into its canonical CBOR record
/// and logs it: stores the record and an `asl/overlay` record naming the
/// overlay, the result, the mirrored object (when the overlay names one
/// that is in the store), the fields changed from it and every comment.
/// A template's references must still hold ([`template::check_references`]).
pub fn apply(store: &Store, overlay: &ArtifactId) -> Result<Applied, RecordError> {
    let text = store.get(overlay)?;
    let p = parse(&text)?;
    if p.record.type_name == TEMPLATE_TYPE {
        template::check_references(store, &p.record)?;
    }
    let result = records::put(store, &p.record)?.id;
    let mut changed = Vec::new();
    let base = p
        .base
        .and_then(|b| records::get(store as &dyn Source, &b).ok().map(|r| (b, r)));
    if let Some((_, r)) = &base {
        if r.type_name != p.record.type_name || r.version != p.record.version {
            changed.push("type".to_string());
        }
        differences(
            &json::to_json(&r.body),
            &json::to_json(&p.record.body),
            "body",
            &mut changed,
        );
    }
    let mut body = vec![
        (Value::text("overlay"), Value::Bytes(overlay.as_bytes().to_vec())),
        (Value::text("result"), Value::Bytes(result.as_bytes().to_vec())),
        (Value::text("type"), Value::text(&p.record.type_name)),
        (
            Value::text("changed"),
            Value::Array(changed.iter().map(Value::text).collect()),
        ),
        (
            Value::text("annotations"),
            Value::Array(
                p.annotations
                    .iter()
                    .map(|a| {
                        Value::Map(vec![
                            (Value::text("line"), Value::Unsigned(a.line)),
                            (Value::text("at"), Value::text(&a.at)),
                            (Value::text("text"), Value::text(&a.text)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ];
    if let Some((b, _)) = &base {
        body.push((Value::text("base"), Value::Bytes(b.as_bytes().to_vec())));
    }
    let log = records::put(store, &Record::new(OVERLAY_TYPE, 1, Value::Map(body)))?.id;
    Ok(Applied {
        result,
        log,
        annotations: p.annotations.len(),
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_found_outside_quotes_with_their_field() {
        let y = "## asl overlay of x\n\
                 type: asl/annotation # the type\n\
                 body:\n\
                 \x20 # about the subject\n\
                 \x20 subject: \"a # not a comment\"\n\
                 \x20 labels:\n\
                 \x20   k: 'it''s # still text' # but this is\n\
                 \x20 list:\n\
                 \x20   - a: 1 # first\n\
                 \x20     b: 2\n\
                 \x20   - a: 3 # second\n\
                 # trailing\n";
        let got: Vec<(u64, String, String)> = annotations(y).into_iter().map(|a| (a.line, a.at, a.text)).collect();
        assert_eq!(
            got,
            vec![
                (2, "type".into(), "the type".into()),
                (4, "body.subject".into(), "about the subject".into()),
                (7, "body.labels.k".into(), "but this is".into()),
                (9, "body.list[0].a".into(), "first".into()),
                (11, "body.list[1].a".into(), "second".into()),
                (12, "".into(), "trailing".into()),
            ]
        );
    }

    #[test]
    fn differences_name_each_changed_field() {
        let a: J = serde_json::json!({"p": {"x": 1, "y": [1, 2]}, "q": "s"});
        let b: J = serde_json::json!({"p": {"x": 2, "y": [1, 3], "z": 0}, "q": "s"});
        let mut d = Vec::new();
        differences(&a, &b, "body", &mut d);
        assert_eq!(d, ["body.p.x", "body.p.y[1]", "body.p.z"]);
    }
}
