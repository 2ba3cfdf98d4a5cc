//! Templates: the runtime object extracted from an HDF5 file (the seeds'
//! HDF5Template → CBORRuntimeObject). HDF5 holds the deep data; the
//! template carries only what a run needs to know — the file's name and
//! kind, its parameters (the root group's attributes), other groups'
//! attributes, and for every dataset its type, shape, attributes and
//! logical digest with a reference `(artifact, path)` to where its
//! elements stay. It never holds a dataset's elements, so a template is a
//! few hundred bytes however large the file.
//!
//! Extraction reads only the file's `asl/hdf5-index` record, so it is a
//! function of that record: it runs as the PEL builtin `hdf5.template` and
//! needs no HDF5 library. [`check_references`] is what a template edited
//! by hand (through a YAML overlay) must pass before it becomes CBOR again:
//! its references still name the same file, index and datasets.

use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, RecordError, Source};

/// The record type of templates.
pub const TEMPLATE_TYPE: &str = "asl/template";

/// The index record type templates are extracted from.
const INDEX_TYPE: &str = "asl/hdf5-index";

/// Root attributes that name the template rather than parameterise it.
const NAME_ATTR: &str = "template_id";
const KIND_ATTR: &str = "template_type";

fn id_of(v: Option<&Value>) -> Option<ArtifactId> {
    match v {
        Some(Value::Bytes(b)) => b.as_slice().try_into().ok().map(ArtifactId::from_bytes),
        _ => None,
    }
}

fn id_value(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

/// The template of the HDF5 file `index` describes (`index_id` is that
/// record's id). `fallback_name` names it when the root group has no
/// `template_id` attribute.
pub fn extract(index: &Record, index_id: &ArtifactId, fallback_name: &str) -> Result<Record, RecordError> {
    if index.type_name != INDEX_TYPE {
        return Err(RecordError::Input(format!(
            "{index_id} is a {} record, not an {INDEX_TYPE}",
            index.type_name
        )));
    }
    let b = &index.body;
    let source = id_of(b.get("subject")).ok_or_else(|| RecordError::Input("the index has no subject".into()))?;
    let mut root = Vec::new();
    let mut groups = Vec::new();
    if let Some(Value::Map(ga)) = b.get("group_attributes") {
        for (k, v) in ga {
            if k == &Value::text("/") {
                if let Value::Map(m) = v {
                    root = m.clone();
                }
            } else {
                groups.push((k.clone(), v.clone()));
            }
        }
    }
    let take = |root: &mut Vec<(Value, Value)>, key: &str| -> Option<String> {
        let at = root.iter().position(|(k, _)| k == &Value::text(key))?;
        match root.remove(at).1 {
            Value::Text(t) => Some(t),
            other => Some(other.to_string()),
        }
    };
    let name = take(&mut root, NAME_ATTR).unwrap_or_else(|| fallback_name.to_string());
    let kind = take(&mut root, KIND_ATTR).unwrap_or_else(|| "hdf5".into());
    let mut datasets = Vec::new();
    if let Some(Value::Array(ds)) = b.get("datasets") {
        for d in ds {
            let mut m = vec![
                (Value::text("path"), d.get("path").cloned().unwrap_or(Value::Null)),
                (Value::text("artifact"), id_value(&source)),
                (
                    Value::text("dtype"),
                    d.get("element")
                        .or_else(|| d.get("dtype"))
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
                (
                    Value::text("shape"),
                    d.get("shape").cloned().unwrap_or(Value::Array(vec![])),
                ),
                (
                    Value::text("attributes"),
                    d.get("attributes").cloned().unwrap_or(Value::Map(vec![])),
                ),
            ];
            if let Some(dg) = d.get("digest") {
                m.push((Value::text("digest"), dg.clone()));
            }
            datasets.push(Value::Map(m));
        }
    }
    let mut body = vec![
        (Value::text("name"), Value::text(name)),
        (Value::text("kind"), Value::text(kind)),
        (Value::text("source"), id_value(&source)),
        (Value::text("index"), id_value(index_id)),
        (Value::text("parameters"), Value::Map(root)),
        (Value::text("groups"), Value::Map(groups)),
        (Value::text("datasets"), Value::Array(datasets)),
    ];
    if let Some(dg) = b.get("digest") {
        body.push((Value::text("digest"), dg.clone()));
    }
    let rec = Record::new(TEMPLATE_TYPE, 1, Value::Map(body));
    records::schema::check(&rec)?;
    Ok(rec)
}

/// Checks that a template's references hold in `store`: its index is the
/// `asl/hdf5-index` of its source, and every dataset it lists is in that
/// index at the same path, with the same artifact, type, shape and digest
/// (a hand edit may change parameters, not what the deep data is).
pub fn check_references(store: &Store, t: &Record) -> Result<(), RecordError> {
    let bad = |why: String| RecordError::Input(format!("template references: {why}"));
    let b = &t.body;
    let source = id_of(b.get("source")).ok_or_else(|| bad("no source".into()))?;
    let index_id = id_of(b.get("index")).ok_or_else(|| bad("no index".into()))?;
    let index = records::get(store as &dyn Source, &index_id)
        .map_err(|e| bad(format!("index {index_id} cannot be read: {e}")))?;
    if index.type_name != INDEX_TYPE || id_of(index.body.get("subject")) != Some(source) {
        return Err(bad(format!("{index_id} is not the HDF5 index of {source}")));
    }
    if !store.contains(&source)? {
        return Err(bad(format!("the source file {source} is not in the store")));
    }
    let fresh = extract(&index, &index_id, "")?;
    let theirs = match fresh.body.get("datasets") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if let Some(Value::Array(ours)) = b.get("datasets") {
        for d in ours {
            let path = match d.get("path") {
                Some(Value::Text(p)) => p.clone(),
                _ => return Err(bad("a dataset without a path".into())),
            };
            let Some(want) = theirs.iter().find(|x| x.get("path") == d.get("path")) else {
                return Err(bad(format!("{path} is not a dataset of {source}")));
            };
            for k in ["artifact", "dtype", "shape", "digest"] {
                if d.get(k) != want.get(k) {
                    return Err(bad(format!(
                        "{path}: {k} differs from the file's ({} here, {} there)",
                        d.get(k).map_or("none".into(), |v| v.to_string()),
                        want.get(k).map_or("none".into(), |v| v.to_string())
                    )));
                }
            }
        }
    }
    Ok(())
}
