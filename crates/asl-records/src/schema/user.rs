//! Schemas users register (seed 001's registry that users extend): an
//! `asl/schema` record defines a record type at a version, its fields
//! given as the built-in types' are, optionally extending another
//! registered type (whose fields it inherits). The built-in types are
//! written in the same form ([`describe`]), so `aslctl schema show` shows
//! either alike and a user type may extend a built-in one.
//!
//! A schema document (the record's body, and the YAML or JSON file a user
//! writes):
//!
//! ```yaml
//! name: oasm/provenance_log   # the record type it defines
//! version: 1
//! extends: oasm/logging_base@1
//! doc: what a record of this type states
//! fields:
//!   outcome: {kind: {enum: [Success, Failed]}, required: true}
//!   impact: {kind: {fields: {files_changed: {kind: uint, required: true}}}}
//! ```
//!
//! A kind is one of `text`, `name`, `long_text`, `uint`, `int`, `number`,
//! `bool`, `id`, `sha256`, `time`, `blob`, `labels`, `any`, or a map:
//! `{enum: [TEXT...]}`, `{list: KIND}`, `{fields: {NAME: FIELD...}}` (a map
//! with those fields and no others), `{nullable: KIND}`, `{bytes: N}`.
//!
//! Checking a record reuses the built-in checker: a registered schema is
//! turned into the checker's static tables once per schema record and
//! kept for the life of the process (a few hundred bytes per schema).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use asl_core::ArtifactId;

use super::{lookup, Checked, Field, Kind, RecordType, REGISTRY};
use crate::cbor::Value;
use crate::query::{Query, QueryIndex};
use crate::{Record, RecordError, Source};

/// The record type of a schema.
pub const SCHEMA_TYPE: &str = "asl/schema";

fn bad(m: impl Into<String>) -> RecordError {
    RecordError::Input(m.into())
}

const SIMPLE: &[(&str, Kind)] = &[
    ("text", Kind::Text),
    ("name", Kind::Name),
    ("long_text", Kind::LongText),
    ("uint", Kind::Uint),
    ("int", Kind::Int),
    ("number", Kind::Number),
    ("bool", Kind::Bool),
    ("id", Kind::Id),
    ("sha256", Kind::Sha256),
    ("time", Kind::Time),
    ("blob", Kind::Blob),
    ("labels", Kind::Labels),
    ("any", Kind::Any),
    ("tree_entries", Kind::TreeEntries),
    ("tree_entries_with_links", Kind::TreeEntriesWithLinks),
];

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// A kind as a schema document writes it.
fn kind_doc(k: &Kind) -> Value {
    if let Some((n, _)) = SIMPLE
        .iter()
        .find(|(_, s)| std::mem::discriminant(s) == std::mem::discriminant(k))
    {
        return Value::text(*n);
    }
    let one = |key: &str, v: Value| Value::Map(vec![(Value::text(key), v)]);
    match k {
        Kind::OneOf(values) => one("enum", Value::Array(values.iter().map(|v| Value::text(*v)).collect())),
        Kind::List(inner) => one("list", kind_doc(inner)),
        Kind::Struct(fields) => one("fields", fields_doc(fields)),
        Kind::OrNull(inner) => one("nullable", kind_doc(inner)),
        Kind::Bytes(n) => one("bytes", Value::Unsigned(*n as u64)),
        _ => Value::text("any"),
    }
}

fn fields_doc(fields: &[Field]) -> Value {
    Value::Map(
        fields
            .iter()
            .map(|f| {
                let mut m = vec![(Value::text("kind"), kind_doc(&f.kind))];
                if f.required {
                    m.push((Value::text("required"), Value::Bool(true)));
                }
                (Value::text(f.name), Value::Map(m))
            })
            .collect(),
    )
}

/// A record type's schema as a document (the form users write), the
/// built-in ones included.
pub fn describe(t: &RecordType) -> Value {
    Value::Map(vec![
        (Value::text("name"), Value::text(t.name)),
        (Value::text("version"), Value::Unsigned(t.version)),
        (Value::text("doc"), Value::text(t.doc)),
        (Value::text("fields"), fields_doc(t.fields)),
    ])
}

/// Reads a kind from a document.
fn kind_of(v: &Value, at: &str) -> Result<Kind, RecordError> {
    if let Value::Text(t) = v {
        return SIMPLE
            .iter()
            .find(|(n, _)| n == t)
            .map(|(_, k)| clone_kind(k))
            .ok_or_else(|| {
                let known: Vec<&str> = SIMPLE.iter().map(|(n, _)| *n).collect();
                bad(format!(
                    "{at}: unknown kind {t:?} (one of {}, or enum, list, fields, nullable, bytes)",
                    known.join(", ")
                ))
            });
    }
    let Value::Map(m) = v else {
        return Err(bad(format!("{at}: {v} is not a kind")));
    };
    let [(Value::Text(key), inner)] = m.as_slice() else {
        return Err(bad(format!(
            "{at}: a kind map has one key (enum, list, fields, nullable or bytes)"
        )));
    };
    Ok(match key.as_str() {
        "enum" => {
            let Value::Array(items) = inner else {
                return Err(bad(format!("{at}: enum is not a list")));
            };
            let mut values = Vec::new();
            for x in items {
                match x {
                    Value::Text(t) if !t.is_empty() => values.push(&*Box::leak(t.clone().into_boxed_str())),
                    other => return Err(bad(format!("{at}: enum value {other} is not text"))),
                }
            }
            if values.is_empty() {
                return Err(bad(format!("{at}: enum lists no value")));
            }
            Kind::OneOf(Box::leak(values.into_boxed_slice()))
        }
        "list" => Kind::List(leak(kind_of(inner, &format!("{at}[]"))?)),
        "nullable" => Kind::OrNull(leak(kind_of(inner, at)?)),
        "fields" => Kind::Struct(Box::leak(fields_of(inner, at)?.into_boxed_slice())),
        "bytes" => match inner {
            Value::Unsigned(n) => Kind::Bytes(*n as usize),
            other => return Err(bad(format!("{at}: bytes {other} is not a length"))),
        },
        other => return Err(bad(format!("{at}: unknown kind {other:?}"))),
    })
}

fn clone_kind(k: &Kind) -> Kind {
    match k {
        Kind::Text => Kind::Text,
        Kind::Name => Kind::Name,
        Kind::LongText => Kind::LongText,
        Kind::Uint => Kind::Uint,
        Kind::Int => Kind::Int,
        Kind::Number => Kind::Number,
        Kind::Bool => Kind::Bool,
        Kind::Id => Kind::Id,
        Kind::Sha256 => Kind::Sha256,
        Kind::Time => Kind::Time,
        Kind::Blob => Kind::Blob,
        Kind::Labels => Kind::Labels,
        Kind::TreeEntries => Kind::TreeEntries,
        Kind::TreeEntriesWithLinks => Kind::TreeEntriesWithLinks,
        Kind::Bytes(n) => Kind::Bytes(*n),
        Kind::OneOf(v) => Kind::OneOf(v),
        Kind::List(i) => Kind::List(i),
        Kind::Struct(f) => Kind::Struct(f),
        Kind::OrNull(i) => Kind::OrNull(i),
        Kind::Any => Kind::Any,
    }
}

fn fields_of(v: &Value, at: &str) -> Result<Vec<Field>, RecordError> {
    let Value::Map(m) = v else {
        return Err(bad(format!("{at}: fields is not a map of NAME: FIELD")));
    };
    let mut out = Vec::new();
    for (k, f) in m {
        let Value::Text(name) = k else {
            return Err(bad(format!("{at}: field name {k} is not text")));
        };
        let here = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        super::check_name(name).map_err(|e| bad(format!("{here}: field name {e}")))?;
        let Value::Map(spec) = f else {
            return Err(bad(format!("{here}: {f} is not {{kind, required?, doc?}}")));
        };
        let mut kind = None;
        let mut required = false;
        for (sk, sv) in spec {
            match (sk, sv) {
                (Value::Text(t), x) if t == "kind" => kind = Some(kind_of(x, &here)?),
                (Value::Text(t), Value::Bool(b)) if t == "required" => required = *b,
                (Value::Text(t), Value::Text(_)) if t == "doc" => {}
                (other, _) => return Err(bad(format!("{here}: unknown or mistyped key {other}"))),
            }
        }
        out.push(Field {
            name: Box::leak(name.clone().into_boxed_str()),
            kind: kind.ok_or_else(|| bad(format!("{here}: no kind")))?,
            required,
        });
    }
    Ok(out)
}

/// A schema document as it is registered: its type, version, parent and
/// own fields (the record's body is the document itself).
#[derive(Debug)]
pub struct Definition {
    /// The record type it defines.
    pub name: String,
    /// Its version.
    pub version: u64,
    /// The type and version it extends.
    pub extends: Option<(String, u64)>,
    /// Its own fields (not the inherited ones).
    pub fields: Vec<Field>,
}

/// Reads a schema document (checking it, and nothing about other schemas).
pub fn parse(doc: &Value) -> Result<Definition, RecordError> {
    let Value::Map(m) = doc else {
        return Err(bad("a schema is a map: name, version, extends?, doc?, fields"));
    };
    for (k, _) in m {
        if !matches!(k, Value::Text(t) if ["name", "version", "extends", "doc", "fields"].contains(&t.as_str())) {
            return Err(bad(format!(
                "unknown key {k} in a schema (name, version, extends, doc, fields)"
            )));
        }
    }
    let name = match doc.get("name") {
        Some(Value::Text(t)) => t.clone(),
        _ => return Err(bad("a schema needs a text `name`: the record type it defines")),
    };
    super::check_name(&name).map_err(|e| bad(format!("name: {e}")))?;
    if name.starts_with("asl/") || REGISTRY.iter().any(|t| t.name == name) {
        return Err(bad(format!(
            "{name}: the asl/ types are built in; name yours under your own prefix"
        )));
    }
    let version = match doc.get("version") {
        Some(Value::Unsigned(v)) if *v >= 1 => *v,
        _ => return Err(bad(format!("{name}: `version` must be an integer from 1"))),
    };
    let extends = match doc.get("extends") {
        None | Some(Value::Null) => None,
        Some(Value::Text(t)) => Some(parse_ref(t)?),
        Some(other) => return Err(bad(format!("{name}: extends {other} is not TYPE@VERSION"))),
    };
    let fields = fields_of(doc.get("fields").unwrap_or(&Value::Map(vec![])), "")?;
    Ok(Definition {
        name,
        version,
        extends,
        fields,
    })
}

/// `TYPE@VERSION`, or `TYPE` for its newest version (`None`).
fn parse_ref(t: &str) -> Result<(String, u64), RecordError> {
    match t.rsplit_once('@') {
        Some((n, v)) => Ok((
            n.to_string(),
            v.parse()
                .map_err(|_| bad(format!("extends {t:?}: {v:?} is not a version")))?,
        )),
        None => Err(bad(format!("extends {t:?}: say which version, TYPE@VERSION"))),
    }
}

/// The registered schemas' records of type `name`, by version.
fn records_of(
    index: &QueryIndex,
    from: &dyn Source,
    name: &str,
) -> Result<BTreeMap<u64, (ArtifactId, Value)>, RecordError> {
    let q = Query {
        type_name: Some(SCHEMA_TYPE.into()),
        labels: vec![("name".into(), name.into())],
        ..Query::default()
    };
    let mut out = BTreeMap::new();
    for h in index.find(&q)? {
        let Ok(r) = crate::get(from, &h.subject) else {
            continue;
        };
        if let Some(Value::Unsigned(v)) = r.body.get("version") {
            out.insert(*v, (h.subject, r.body));
        }
    }
    Ok(out)
}

fn cache() -> &'static Mutex<HashMap<ArtifactId, &'static RecordType>> {
    static CACHE: OnceLock<Mutex<HashMap<ArtifactId, &'static RecordType>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The definition registered for `name` at `version`, with its record's
/// id; `None` for a built-in or unknown type.
pub fn definition(
    index: &QueryIndex,
    from: &dyn Source,
    name: &str,
    version: u64,
) -> Result<Option<(ArtifactId, Definition)>, RecordError> {
    match records_of(index, from, name)?.remove(&version) {
        Some((id, body)) => Ok(Some((id, parse(&body)?))),
        None => Ok(None),
    }
}

/// The newest version of `name`: built in, or registered in the store.
pub fn newest(index: &QueryIndex, from: &dyn Source, name: &str) -> Result<Option<u64>, RecordError> {
    if let Some(t) = super::newest(name) {
        return Ok(Some(t.version));
    }
    Ok(records_of(index, from, name)?.keys().next_back().copied())
}

/// The type `name` at `version` with every field it inherits: a built-in
/// one, or one registered in the store; `None` when neither knows it.
pub fn resolve(
    index: &QueryIndex,
    from: &dyn Source,
    name: &str,
    version: u64,
) -> Result<Option<&'static RecordType>, RecordError> {
    resolve_at(index, from, name, version, &mut Vec::new())
}

fn resolve_at(
    index: &QueryIndex,
    from: &dyn Source,
    name: &str,
    version: u64,
    seen: &mut Vec<String>,
) -> Result<Option<&'static RecordType>, RecordError> {
    if let Some(t) = lookup(name, version) {
        return Ok(Some(t));
    }
    let here = format!("{name}@{version}");
    if seen.contains(&here) {
        seen.push(here);
        return Err(bad(format!("schemas extend in a circle: {}", seen.join(" -> "))));
    }
    seen.push(here);
    let Some((id, body)) = records_of(index, from, name)?.remove(&version) else {
        return Ok(None);
    };
    if let Some(t) = cache().lock().map_err(|_| bad("schema cache poisoned"))?.get(&id) {
        return Ok(Some(t));
    }
    let d = parse(&body)?;
    let mut fields = Vec::new();
    if let Some((pn, pv)) = &d.extends {
        let parent = resolve_at(index, from, pn, *pv, seen)?
            .ok_or_else(|| bad(format!("{name}@{version} extends {pn}@{pv}, which is not registered")))?;
        fields.extend(parent.fields.iter().map(|f| Field {
            name: f.name,
            kind: clone_kind(&f.kind),
            required: f.required,
        }));
    }
    for f in d.fields {
        if fields.iter().any(|p: &Field| p.name == f.name) {
            return Err(bad(format!(
                "{name}@{version}: field {:?} is already defined by the type it extends",
                f.name
            )));
        }
        fields.push(f);
    }
    let doc = match body.get("doc") {
        Some(Value::Text(t)) => t.clone(),
        _ => String::new(),
    };
    let t: &'static RecordType = leak(RecordType {
        name: Box::leak(d.name.into_boxed_str()),
        version,
        doc: Box::leak(doc.into_boxed_str()),
        fields: Box::leak(fields.into_boxed_slice()),
    });
    cache().lock().map_err(|_| bad("schema cache poisoned"))?.insert(id, t);
    Ok(Some(t))
}

/// Checks `r` against the built-in registry or the store's registered
/// schemas: a registered type at a version neither knows, or a body that
/// breaks its schema, is refused (the error names the field's path).
pub fn check(index: &QueryIndex, from: &dyn Source, r: &Record) -> Result<Checked, RecordError> {
    if REGISTRY.iter().any(|t| t.name == r.type_name) {
        let checked = super::check(r)?;
        if r.type_name == SCHEMA_TYPE {
            parse(&r.body)?;
        }
        return Ok(checked);
    }
    match resolve(index, from, &r.type_name, r.version)? {
        Some(t) => super::check_body(t, &r.body),
        None => {
            let versions: Vec<String> = records_of(index, from, &r.type_name)?
                .keys()
                .map(|v| v.to_string())
                .collect();
            if versions.is_empty() {
                Ok(Checked::Unknown)
            } else {
                Err(RecordError::BadType(format!(
                    "type {} has no version {} registered in this store (registered: {})",
                    r.type_name,
                    r.version,
                    versions.join(", ")
                )))
            }
        }
    }
}

/// A record of `type_name` (at `version`, else its newest built-in or
/// registered version, else 1) whose body is the JSON `body`, converted
/// as its schema says and checked against it ([`check`]).
#[cfg(feature = "json")]
pub fn record_from_json(
    index: &QueryIndex,
    from: &dyn Source,
    type_name: &str,
    version: Option<u64>,
    body: &serde_json::Value,
) -> Result<(Record, Checked), RecordError> {
    let version = match version {
        Some(v) => Some(v),
        None => newest(index, from, type_name)?,
    };
    let rec = match version
        .map(|v| resolve(index, from, type_name, v))
        .transpose()?
        .flatten()
    {
        Some(t) => crate::json::record_from_json_as(t, body)?,
        None => crate::json::record_from_json(type_name, version, body)?,
    };
    let checked = check(index, from, &rec)?;
    Ok((rec, checked))
}

/// The schema record for document `doc`, once it is checked against the
/// store's registry: its parent registered, no circle, no field defined
/// twice, and its type's version not registered already with another
/// definition (versions are immutable: register the next one). Returns
/// the record to store (the same document again is the same record).
pub fn register(index: &QueryIndex, from: &dyn Source, doc: &Value) -> Result<Record, RecordError> {
    let d = parse(doc)?;
    let r = Record::new(SCHEMA_TYPE, 1, doc.clone());
    let id = ArtifactId::of(&crate::prepare(&r)?.bytes);
    if let Some((existing, _)) = records_of(index, from, &d.name)?.get(&d.version) {
        if *existing != id {
            return Err(bad(format!(
                "{}@{} is registered already with another definition ({existing}); register version {}",
                d.name,
                d.version,
                d.version + 1
            )));
        }
    }
    if let Some((pn, pv)) = &d.extends {
        if *pn == d.name && *pv == d.version {
            return Err(bad(format!("{}@{} extends itself", d.name, d.version)));
        }
        let parent = resolve(index, from, pn, *pv)?.ok_or_else(|| {
            bad(format!(
                "{}@{} extends {pn}@{pv}, which is not registered (register it first)",
                d.name, d.version
            ))
        })?;
        for f in &d.fields {
            if parent.fields.iter().any(|p| p.name == f.name) {
                return Err(bad(format!(
                    "{}: field {:?} is already defined by {pn}@{pv}",
                    d.name, f.name
                )));
            }
        }
    }
    Ok(r)
}

/// Every registered type: the built-in ones, then the store's, as
/// (name, version, schema record or none for built-in).
pub fn list(index: &QueryIndex, from: &dyn Source) -> Result<Vec<(String, u64, Option<ArtifactId>)>, RecordError> {
    let mut out: Vec<_> = REGISTRY.iter().map(|t| (t.name.to_string(), t.version, None)).collect();
    let q = Query {
        type_name: Some(SCHEMA_TYPE.into()),
        ..Query::default()
    };
    let mut mine = Vec::new();
    for h in index.find(&q)? {
        let Ok(r) = crate::get(from, &h.subject) else {
            continue;
        };
        if let (Some(Value::Text(n)), Some(Value::Unsigned(v))) = (r.body.get("name"), r.body.get("version")) {
            mine.push((n.clone(), *v, Some(h.subject)));
        }
    }
    mine.sort();
    out.extend(mine);
    Ok(out)
}
