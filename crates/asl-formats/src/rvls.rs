//! RVLS import and export: the learning-store format of the seeds (`RVLS\n`,
//! then one JSON object per line — `{"type": "pattern" | "trajectory" |
//! "ewc", "data": {...}}` — then `REND`), turned into typed records with
//! labels, and those records written back as a file that imports to them.
//!
//! The seed's own loader skips lines it cannot parse. Here nothing is
//! skipped: a wrong or missing magic, a missing end marker, a line that is
//! not JSON, an unknown type, a missing, mistyped or unknown field — every
//! problem is reported with its line number, and then nothing is stored.
//! A file that passes is stored in one atomic section: its bytes, one
//! record per line, an annotation dating each EWC state, and an
//! `rvls/import` record listing the line records, all in one commit or
//! (after a crash) none.

use serde_json::{Map, Value as J};

use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, RecordError};

/// The first bytes of an RVLS file.
pub const MAGIC_START: &[u8] = b"RVLS\n";
/// The last bytes of an RVLS file.
pub const MAGIC_END: &[u8] = b"REND";

/// At most this many problems are listed; the count says how many more.
const MAX_PROBLEMS: usize = 20;

/// One parsed line: its number, the record type and the record.
struct Line {
    kind: &'static str,
    record: Record,
}

/// What an import stored.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The file's bytes, as an artifact.
    pub source: ArtifactId,
    /// The `rvls/import` record.
    pub import: ArtifactId,
    /// Records by kind: patterns, trajectories, EWC states.
    pub patterns: usize,
    /// See `patterns`.
    pub trajectories: usize,
    /// See `patterns`.
    pub ewc: usize,
    /// Every record stored, in file order.
    pub records: Vec<ArtifactId>,
}

/// Checks `bytes` as an RVLS file; on success, the records it holds (with
/// `labels` added to each), else every problem found, each naming its line.
pub fn parse(bytes: &[u8], labels: &[(String, String)]) -> Result<Vec<Record>, RecordError> {
    Ok(parse_lines(bytes, labels)?.into_iter().map(|l| l.record).collect())
}

fn parse_lines(bytes: &[u8], labels: &[(String, String)]) -> Result<Vec<Line>, RecordError> {
    let bad = |m: String| RecordError::Input(m);
    if !bytes.starts_with(MAGIC_START) {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(8)]).into_owned();
        return Err(bad(format!(
            "line 1: not an RVLS file (it starts {head:?}, not \"RVLS\\n\")"
        )));
    }
    // The seed writes `REND` right after the last record's newline; one
    // newline after it (an editor's) is tolerated.
    let body_end = if bytes.ends_with(b"\nREND") {
        bytes.len() - MAGIC_END.len()
    } else if bytes.ends_with(b"\nREND\n") {
        bytes.len() - MAGIC_END.len() - 1
    } else if bytes == b"RVLS\nREND" {
        MAGIC_START.len()
    } else {
        let lines = bytes.split(|b| *b == b'\n').count();
        return Err(bad(format!(
            "line {lines}: no REND end marker after the last record (the file was cut short, or is not RVLS)"
        )));
    };
    let body = &bytes[MAGIC_START.len()..body_end.max(MAGIC_START.len())];
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut ewc_line = None;
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let n = i + 2; // line 1 is the magic
        let Ok(text) = std::str::from_utf8(raw) else {
            problems.push(format!("line {n}: not UTF-8"));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text, labels) {
            Ok(l) => {
                if l.kind == "ewc" {
                    if let Some(first) = ewc_line.replace(n) {
                        problems.push(format!("line {n}: a second ewc state (the first is on line {first})"));
                        continue;
                    }
                }
                out.push(l);
            }
            Err(e) => problems.push(format!("line {n}: {e}")),
        }
    }
    if problems.is_empty() {
        return Ok(out);
    }
    let more = problems.len().saturating_sub(MAX_PROBLEMS);
    problems.truncate(MAX_PROBLEMS);
    let mut msg = problems.join("; ");
    if more > 0 {
        msg.push_str(&format!("; and {more} more"));
    }
    Err(bad(format!("nothing imported: {msg}")))
}

fn parse_line(text: &str, labels: &[(String, String)]) -> Result<Line, String> {
    let j: J = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let J::Object(top) = j else {
        return Err("not a JSON object".into());
    };
    for k in top.keys() {
        if k != "type" && k != "data" {
            return Err(format!("unknown key {k:?} (a line is {{\"type\", \"data\"}})"));
        }
    }
    let kind = match top.get("type") {
        Some(J::String(t)) if t == "pattern" => "pattern",
        Some(J::String(t)) if t == "trajectory" => "trajectory",
        Some(J::String(t)) if t == "ewc" => "ewc",
        Some(other) => return Err(format!("type {other} is not pattern, trajectory or ewc")),
        None => return Err("no \"type\"".into()),
    };
    let Some(J::Object(data)) = top.get("data") else {
        return Err(format!("{kind}: no \"data\" object"));
    };
    let fields: &[(&str, Field)] = match kind {
        "pattern" => &[
            ("id", Field::Str),
            ("strategy", Field::Str),
            ("embedding_weights", Field::NumberMap),
            ("success_rate", Field::Num),
            ("use_count", Field::Uint),
            ("domain", Field::Str),
            ("quality", Field::Num),
            ("is_long_term", Field::Bool),
            ("last_used", Field::Time),
        ],
        "trajectory" => &[
            ("id", Field::Str),
            ("steps", Field::Steps),
            ("outcome", Field::Str),
            ("duration_ms", Field::Uint),
            ("domain", Field::Str),
            ("created_at", Field::Time),
        ],
        _ => &[
            ("tasks_learned", Field::Uint),
            ("protection_strength", Field::Num),
            ("task_weights", Field::VectorMap),
        ],
    };
    let mut body = Vec::new();
    for (name, f) in fields {
        let v = data
            .get(*name)
            .ok_or_else(|| format!("{kind}: missing field {name:?}"))?;
        body.push((
            Value::text(*name),
            f.convert(v).map_err(|e| format!("{kind}.{name}: {e}"))?,
        ));
    }
    for k in data.keys() {
        if !fields.iter().any(|(n, _)| n == k) {
            return Err(format!("{kind}: unknown field {k:?}"));
        }
    }
    let mut l = vec![(Value::text("rvls.kind"), Value::text(kind))];
    for key in ["domain", "id", "outcome"] {
        if let Some(J::String(s)) = data.get(key) {
            if !s.is_empty() && s.len() <= 4096 {
                l.push((Value::text(format!("rvls.{key}")), Value::text(s)));
            }
        }
    }
    for (k, v) in labels {
        l.retain(|(x, _)| x != &Value::text(k));
        l.push((Value::text(k), Value::text(v)));
    }
    body.push((Value::text("labels"), Value::Map(l)));
    let record = Record::new(format!("rvls/{kind}"), 1, Value::Map(body));
    records::schema::check(&record).map_err(|e| e.to_string())?;
    Ok(Line { kind, record })
}

enum Field {
    Str,
    Num,
    Uint,
    Bool,
    Time,
    NumberMap,
    VectorMap,
    Steps,
}

fn num(v: &J) -> Result<Value, String> {
    match v.as_f64() {
        Some(f) if v.is_number() => Ok(Value::Float(f)),
        _ => Err(format!("{v} is not a number")),
    }
}

impl Field {
    fn convert(&self, v: &J) -> Result<Value, String> {
        Ok(match self {
            Field::Str => Value::text(v.as_str().ok_or_else(|| format!("{v} is not a string"))?),
            Field::Num => num(v)?,
            Field::Uint => Value::Unsigned(v.as_u64().ok_or_else(|| format!("{v} is not a non-negative integer"))?),
            Field::Bool => Value::Bool(v.as_bool().ok_or_else(|| format!("{v} is not true or false"))?),
            Field::Time => {
                let s = v.as_str().ok_or_else(|| format!("{v} is not a time"))?;
                // chrono writes UTC as `Z`; `+00:00` is the same instant.
                let s = match s.strip_suffix("+00:00") {
                    Some(head) => format!("{head}Z"),
                    None => s.to_string(),
                };
                if records::time::parse(&s).is_none() || !s.ends_with('Z') || s.len() < 20 {
                    return Err(format!("{v} is not an RFC 3339 UTC time"));
                }
                Value::text(s)
            }
            Field::NumberMap => Value::Map(
                object(v)?
                    .iter()
                    .map(|(k, x)| Ok((Value::text(k), num(x).map_err(|e| format!("{k:?}: {e}"))?)))
                    .collect::<Result<_, String>>()?,
            ),
            Field::VectorMap => Value::Map(
                object(v)?
                    .iter()
                    .map(|(k, x)| {
                        let items = x.as_array().ok_or_else(|| format!("{k:?}: {x} is not a list"))?;
                        let nums = items
                            .iter()
                            .map(num)
                            .collect::<Result<_, _>>()
                            .map_err(|e| format!("{k:?}: {e}"))?;
                        Ok((Value::text(k), Value::Array(nums)))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Field::Steps => {
                let items = v.as_array().ok_or_else(|| format!("{v} is not a list of steps"))?;
                let mut steps = Vec::with_capacity(items.len());
                for (i, s) in items.iter().enumerate() {
                    let o = object(s).map_err(|e| format!("[{i}]: {e}"))?;
                    let spec = [
                        ("input", Field::Str),
                        ("output", Field::Str),
                        ("duration_ms", Field::Uint),
                        ("confidence", Field::Num),
                    ];
                    let mut m = Vec::new();
                    for (name, f) in &spec {
                        let x = o.get(*name).ok_or_else(|| format!("[{i}]: missing field {name:?}"))?;
                        m.push((
                            Value::text(*name),
                            f.convert(x).map_err(|e| format!("[{i}].{name}: {e}"))?,
                        ));
                    }
                    if let Some(k) = o.keys().find(|k| !spec.iter().any(|(n, _)| n == k)) {
                        return Err(format!("[{i}]: unknown field {k:?}"));
                    }
                    steps.push(Value::Map(m));
                }
                Value::Array(steps)
            }
        })
    }
}

fn object(v: &J) -> Result<&Map<String, J>, String> {
    v.as_object().ok_or_else(|| format!("{v} is not an object"))
}

/// Imports an RVLS file's bytes: checks all of it first (see the module
/// docs), then stores the file, its records and an `rvls/import` record in
/// one atomic section. `name` is what the import record calls the source.
pub fn import(store: &Store, bytes: &[u8], name: &str, labels: &[(String, String)]) -> Result<Imported, RecordError> {
    let lines = parse_lines(bytes, labels)?;
    let prepared = lines
        .iter()
        .map(|l| records::prepare(&l.record))
        .collect::<Result<Vec<_>, _>>()?;
    let count = |k: &str| lines.iter().filter(|l| l.kind == k).count();
    let now = records::time::now();
    let section = store.begin_atomic()?;
    let source = store.put(bytes)?;
    let mut ids = Vec::with_capacity(prepared.len());
    for (p, line) in prepared.iter().zip(&lines) {
        let id = records::put_prepared(store, p)?.id;
        if line.kind == "ewc" {
            date_ewc_state(store, id, &now, labels)?;
        }
        ids.push(id);
    }
    let import = Record::new(
        "rvls/import",
        1,
        Value::Map(vec![
            (Value::text("source"), Value::Bytes(source.as_bytes().to_vec())),
            (Value::text("source_name"), Value::text(name)),
            (Value::text("created_at"), Value::text(&now)),
            (Value::text("patterns"), Value::Unsigned(count("pattern") as u64)),
            (Value::text("trajectories"), Value::Unsigned(count("trajectory") as u64)),
            (Value::text("ewc"), Value::Unsigned(count("ewc") as u64)),
            (
                Value::text("records"),
                Value::Array(ids.iter().map(|i| Value::Bytes(i.as_bytes().to_vec())).collect()),
            ),
        ]),
    );
    let import = records::put(store, &import)?.id;
    section.commit()?;
    Ok(Imported {
        source,
        import,
        patterns: count("pattern"),
        trajectories: count("trajectory"),
        ewc: count("ewc"),
        records: ids,
    })
}

/// Gives an EWC state the time it was imported. The seed's EWC state has
/// no time of its own, and cannot be given one: the record would then
/// differ on each import of the same file. So an annotation dates it,
/// labelled as the state is, and a query for `rvls.kind=ewc` finds each
/// state at the time it was last imported, newest first if asked.
fn date_ewc_state(store: &Store, id: ArtifactId, at: &str, labels: &[(String, String)]) -> Result<(), RecordError> {
    let mut a = records::labels::Annotation::new(id).label("rvls.kind", "ewc");
    for (k, v) in labels {
        a = a.label(k, v);
    }
    a.created_at = Some(at.to_string());
    records::labels::annotate(store, &a)?;
    Ok(())
}

/// The record type of each RVLS kind, in the order an export writes them.
pub const RECORD_TYPES: [&str; 3] = ["rvls/pattern", "rvls/trajectory", "rvls/ewc"];

/// The records an `rvls/import` record lists, in the order of its file.
pub fn import_records(from: &dyn records::Source, import: &ArtifactId) -> Result<Vec<ArtifactId>, RecordError> {
    let r = records::get(from, import)?;
    if r.type_name != "rvls/import" {
        return Err(RecordError::Input(format!(
            "{import} is a {} record, not an rvls/import",
            r.type_name
        )));
    }
    let Some(Value::Array(items)) = r.body.get("records") else {
        return Err(RecordError::Input(format!(
            "the import record {import} lists no records"
        )));
    };
    items
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(ArtifactId::from_bytes)
                .map_err(|_| RecordError::Input(format!("the import record {import} lists a {}-byte id", b.len()))),
            _ => Err(RecordError::Input(format!(
                "the import record {import} lists something not an id"
            ))),
        })
        .collect()
}

/// An RVLS file holding the records `ids` (each an `rvls/pattern`,
/// `rvls/trajectory` or `rvls/ewc`), one line each in that order: the
/// record's fields as the line's `data`, its labels left out. Importing
/// the file with the labels the records were imported with stores the
/// very same records (the same ids). At most one EWC state: the format
/// holds one.
pub fn export(from: &dyn records::Source, ids: &[ArtifactId]) -> Result<Vec<u8>, RecordError> {
    let mut out = MAGIC_START.to_vec();
    let mut ewc: Option<ArtifactId> = None;
    for id in ids {
        let r = records::get(from, id)?;
        let kind = match r.type_name.as_str() {
            "rvls/pattern" => "pattern",
            "rvls/trajectory" => "trajectory",
            "rvls/ewc" => "ewc",
            other => return Err(RecordError::Input(format!("{id} is a {other} record, not an RVLS one"))),
        };
        if kind == "ewc" {
            if let Some(first) = ewc.replace(*id) {
                return Err(RecordError::Input(format!(
                    "two ewc states ({first} and {id}): an RVLS file holds one"
                )));
            }
        }
        let Value::Map(body) = &r.body else {
            return Err(RecordError::Input(format!("{id}: the record's body is not a map")));
        };
        let mut data = Map::new();
        for (k, v) in body {
            let Value::Text(k) = k else {
                return Err(RecordError::Input(format!("{id}: a field name is not text")));
            };
            if k != "labels" {
                data.insert(
                    k.clone(),
                    to_json(v).map_err(|e| RecordError::Input(format!("{id}.{k}: {e}")))?,
                );
            }
        }
        // `type` first, as the seed's writer puts it.
        let line = format!(
            "{{\"type\":\"{kind}\",\"data\":{}}}\n",
            serde_json::to_string(&J::Object(data)).expect("JSON values serialize")
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(MAGIC_END);
    Ok(out)
}

/// A record field back as the JSON the import read it from.
fn to_json(v: &Value) -> Result<J, String> {
    Ok(match v {
        Value::Text(s) => J::String(s.clone()),
        Value::Unsigned(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .ok_or_else(|| format!("{f} has no JSON form"))?,
        Value::Bool(b) => J::Bool(*b),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(pairs) => {
            let mut m = Map::new();
            for (k, x) in pairs {
                let Value::Text(k) = k else {
                    return Err("a map key is not text".into());
                };
                m.insert(k.clone(), to_json(x)?);
            }
            J::Object(m)
        }
        other => return Err(format!("{other:?} is not a value an RVLS line holds")),
    })
}
