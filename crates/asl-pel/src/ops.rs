//! The operations a node can apply: deterministic builtins implemented
//! here, and `exec` (a command in a sandbox, `pel::exec`).
//!
//! A builtin reads its inputs through the store (verified) and writes its
//! outputs as artifacts; it reads no clock, no environment and no file
//! outside the store, so its outputs are a function of its inputs and
//! parameters alone, which is what makes its action key a safe cache key.
//! Parameters are checked when the program is read ([`check`]), so a typo
//! is an error before anything runs.

pub use crate::failure::OpError;
use std::io::Read;

use super::node::Node;
pub use super::node::{default_output, names, outputs, InputValue, Op, Outputs};
use asl_core::{ArtifactId, PutOptions, Store};
use asl_records::cbor::Value;
use asl_records::tree::{self, TreeFile};
use asl_records::{self as records, Record};

fn allowed(op: Op) -> &'static [&'static str] {
    match op {
        Op::Concat | Op::ZstdDecompress | Op::CborToJson | Op::TreeBuild => &[],
        Op::Hdf5Template | Op::CborToYaml | Op::YamlToCbor => &[],
        Op::Hdf5Values => &["path", "format", "limit"],
        Op::Slice => &["offset", "length"],
        Op::ZstdCompress => &["level"],
        Op::Hash => &["format", "name"],
        Op::JsonToCbor => &["type", "version"],
        Op::TreeExtract => &["path"],
        Op::Label => &["labels", "media_type"],
        Op::Record => &["type", "version", "body"],
        Op::Exec => &["cmd", "argv", "env", "outputs", "timeout", "stdin"],
    }
}

fn uint(params: &Value, k: &str) -> Result<Option<u64>, String> {
    match params.get(k) {
        None => Ok(None),
        Some(Value::Unsigned(n)) => Ok(Some(*n)),
        Some(other) => Err(format!("{k}: {other} is not a non-negative integer")),
    }
}

fn text<'a>(params: &'a Value, k: &str) -> Result<Option<&'a str>, String> {
    match params.get(k) {
        None => Ok(None),
        Some(Value::Text(t)) => Ok(Some(t)),
        Some(other) => Err(format!("{k}: {other} is not text")),
    }
}

/// Checks a node's inputs and parameters against its operation.
pub fn check(n: &Node) -> Result<(), String> {
    let Value::Map(entries) = &n.params else {
        return Err("params is not a map".into());
    };
    for (k, _) in entries {
        match k {
            Value::Text(t) if allowed(n.op).contains(&t.as_str()) => {}
            other => {
                let ok = allowed(n.op);
                return Err(format!(
                    "{} takes no parameter {other}{}",
                    n.op.name(),
                    if ok.is_empty() {
                        String::new()
                    } else {
                        format!(" (it takes {})", ok.join(", "))
                    }
                ));
            }
        }
    }
    let count = n.inputs.len();
    let one = || {
        if count == 1 {
            Ok(())
        } else {
            Err(format!("{} takes one input, not {count}", n.op.name()))
        }
    };
    let p = &n.params;
    match n.op {
        Op::Concat | Op::TreeBuild => {
            if count == 0 {
                return Err(format!("{} needs at least one input", n.op.name()));
            }
            if n.op == Op::TreeBuild {
                for i in &n.inputs {
                    split_path(&i.name).map_err(|e| format!("input {:?}: {e}", i.name))?;
                }
            }
        }
        Op::Slice => {
            one()?;
            if uint(p, "offset")?.is_none() {
                return Err("slice needs `offset`".into());
            }
            uint(p, "length")?;
        }
        Op::ZstdCompress => {
            one()?;
            let level = match p.get("level") {
                None => 3,
                Some(Value::Unsigned(n)) => *n as i64,
                Some(Value::Negative(n)) => -1 - *n as i64,
                Some(other) => return Err(format!("level: {other} is not an integer")),
            };
            if !(-7..=22).contains(&level) || level == 0 {
                return Err(format!("level {level} is not a zstd level (-7 to 22, not 0)"));
            }
        }
        Op::ZstdDecompress | Op::CborToJson => one()?,
        Op::Hdf5Template | Op::CborToYaml | Op::YamlToCbor => one()?,
        Op::Hdf5Values => {
            one()?;
            if text(p, "path")?.is_none() {
                return Err("hdf5.values needs `path`".into());
            }
            if !matches!(text(p, "format")?, None | Some("json" | "yaml")) {
                return Err("format: json or yaml".into());
            }
            uint(p, "limit")?;
        }
        Op::JsonToCbor => {
            one()?;
            text(p, "type")?;
            uint(p, "version")?;
        }
        Op::Hash => {
            one()?;
            match text(p, "format")? {
                None | Some("record" | "sha256sum" | "b3sum") => {}
                Some(f) => return Err(format!("format {f:?} is not record, sha256sum or b3sum")),
            }
            if let Some(name) = text(p, "name")? {
                if name.contains('\n') {
                    return Err("name holds a newline".into());
                }
            }
        }
        Op::TreeExtract => {
            one()?;
            match text(p, "path")? {
                Some(path) => {
                    split_path(path)?;
                }
                None => return Err("tree.extract needs `path`".into()),
            }
        }
        Op::Label => {
            one()?;
            if !matches!(p.get("labels"), None | Some(Value::Map(_))) {
                return Err("labels is not a map".into());
            }
            text(p, "media_type")?;
            let probe = label_record(&ArtifactId::from_bytes([0; 32]), p);
            records::schema::check(&probe).map_err(|e| e.to_string())?;
        }
        Op::Record => {
            let Some(t) = text(p, "type")? else {
                return Err("record needs `type`".into());
            };
            uint(p, "version")?;
            if !matches!(p.get("body"), None | Some(Value::Map(_))) {
                return Err("body is not a map".into());
            }
            if t.is_empty() {
                return Err("type is empty".into());
            }
        }
        Op::Exec => super::exec::check_params(n)?,
    }
    Ok(())
}

/// A path inside a tree, split into names (each checked).
fn split_path(path: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        tree::check_name(part.as_bytes()).map_err(|e| format!("path {path:?}: {e}"))?;
    }
    Ok(parts)
}

/// Runs builtin `n` on `inputs`; an [`OpError::Node`] is the node's failure
/// (it becomes an ERROR receipt), an [`OpError::Environment`] the run's.
pub fn run_builtin(store: &Store, n: &Node, inputs: &[InputValue<'_>]) -> Result<Outputs, OpError> {
    let p = &n.params;
    // These read their inputs' bytes and nothing else: they read them at
    // the input's snapshot. The others name their inputs in what they make
    // (a tree, a label, a record) or read them as records through CURRENT:
    // an input read at a snapshot must then still be in CURRENT.
    let streams = matches!(
        n.op,
        Op::Concat | Op::Slice | Op::ZstdCompress | Op::ZstdDecompress | Op::Hash
    );
    if !streams {
        for i in inputs {
            if let Some(s) = i.snapshot {
                if !store.contains(&i.id)? {
                    return Err(OpError::Node(format!(
                        "input {:?}: {} is only in snapshot {s:?}, and {} reads its inputs from CURRENT",
                        i.name,
                        i.id,
                        n.op.name()
                    )));
                }
            }
        }
    }
    let out = match n.op {
        Op::Hdf5Template | Op::Hdf5Values | Op::CborToYaml | Op::YamlToCbor => {
            return super::convert::builtin::run_op(store, n, inputs);
        }
        Op::Concat => {
            let readers = inputs
                .iter()
                .map(|i| i.reader(store))
                .collect::<asl_core::Result<Vec<_>>>()?;
            let chained = readers
                .into_iter()
                .fold(Box::new(std::io::empty()) as Box<dyn Read>, |acc, r| {
                    Box::new(acc.chain(r))
                });
            put_stream(store, chained)?
        }
        Op::Slice => {
            let reader = inputs[0].reader(store)?;
            let len = reader.len();
            let off = uint(p, "offset")?.unwrap_or(0).min(len);
            let take = uint(p, "length")?.unwrap_or(u64::MAX).min(len - off);
            let reader = reader.into_range(off, take)?;
            put_stream(store, reader)?
        }
        Op::ZstdCompress => {
            let level = match p.get("level") {
                Some(Value::Unsigned(n)) => *n as i32,
                Some(Value::Negative(n)) => -1 - *n as i32,
                _ => 3,
            };
            let reader = inputs[0].reader(store)?;
            let mut enc = zstd::stream::read::Encoder::new(reader, level).map_err(|e| e.to_string())?;
            // One thread and no dictionary or long mode: the frame is a
            // function of the bytes and the level for a given zstd version,
            // which is part of the executor's identity.
            enc.include_checksum(true).map_err(|e| e.to_string())?;
            enc.include_contentsize(false).map_err(|e| e.to_string())?;
            put_stream(store, enc)?
        }
        Op::ZstdDecompress => {
            let reader = inputs[0].reader(store)?;
            let dec = zstd::stream::read::Decoder::new(reader).map_err(|e| format!("not zstd: {e}"))?;
            // The store sees a failing decoder as a failing input read: the
            // bytes are not zstd, which is the node's failure, not the run's.
            put_stream(store, dec).map_err(|e| OpError::Node(format!("decompress: {e}")))?
        }
        Op::Hash => {
            let id = inputs[0].id;
            let size = inputs[0].reader(store)?.len();
            let from = super::node::InputSource::of(store, inputs[0].snapshot)?;
            let sha = records::digests::sha256_of_stored(from.source(), &id)?;
            let name = text(p, "name")?.unwrap_or(inputs[0].name);
            match text(p, "format")? {
                Some("sha256sum") => put_bytes(store, format!("{}  {name}\n", records::digests::hex(&sha)).as_bytes())?,
                Some("b3sum") => put_bytes(store, format!("{id}  {name}\n").as_bytes())?,
                _ => records::put(store, &records::digests::digest_record(&id, &sha, size))?.id,
            }
        }
        Op::CborToJson => json_out(store, &inputs[0].id)?,
        Op::JsonToCbor => json_in(store, &inputs[0].id, p)?,
        Op::TreeBuild => {
            let mut files = Vec::new();
            let mut extras = tree::TreeExtras::default();
            for i in inputs {
                let is_tree = tree::is_tree(store, &i.id)?;
                if is_tree {
                    // A tree input is grafted: its files, links and empty
                    // directories go under its name.
                    let mut below = Vec::new();
                    for (path, e) in tree::walk(store, &i.id)? {
                        if !tree::is_leaf(&e) {
                            continue;
                        }
                        let mut p = i.name.as_bytes().to_vec();
                        p.push(b'/');
                        p.extend_from_slice(&path);
                        below.push((p, e));
                    }
                    let (f, x) = tree::parts_of(store, below)?;
                    files.extend(f);
                    extras.links.extend(x.links);
                    extras.empty_dirs.extend(x.empty_dirs);
                } else {
                    files.push(TreeFile {
                        path: i.name.into(),
                        size: store.len_of(&i.id)?,
                        exec: false,
                        id: i.id,
                    });
                }
            }
            tree::store_tree_with(store, &files, &extras)?
        }
        Op::TreeExtract => {
            let path = text(p, "path")?.unwrap_or_default();
            let mut at = inputs[0].id;
            for name in split_path(path)? {
                let entries = tree::read_tree(store, &at)?;
                let e = entries
                    .iter()
                    .find(|e| e.name == name.as_bytes())
                    .ok_or_else(|| format!("the tree has no {path:?}"))?;
                at = e.id;
            }
            at
        }
        Op::Label => records::put(store, &label_record(&inputs[0].id, p))?.id,
        Op::Record => {
            let t = text(p, "type")?.unwrap_or_default();
            let version = uint(p, "version")?
                .or_else(|| records::schema::newest(t).map(|x| x.version))
                .unwrap_or(1);
            let mut body = match p.get("body") {
                Some(Value::Map(m)) => m.clone(),
                _ => Vec::new(),
            };
            for i in inputs {
                body.retain(|(k, _)| k != &Value::text(i.name));
                body.push((Value::text(i.name), Value::Bytes(i.id.as_bytes().to_vec())));
            }
            records::put(store, &Record::new(t, version, Value::Map(body)))?.id
        }
        Op::Exec => unreachable!("exec is not a builtin"),
    };
    Ok(vec![("out".to_string(), out)])
}

fn label_record(subject: &ArtifactId, p: &Value) -> Record {
    // No `created_at`: a builtin reads no clock.
    let mut body = vec![(Value::text("subject"), Value::Bytes(subject.as_bytes().to_vec()))];
    if let Some(l) = p.get("labels") {
        body.push((Value::text("labels"), l.clone()));
    }
    if let Some(m) = p.get("media_type") {
        body.push((Value::text("media_type"), m.clone()));
    }
    Record::new("asl/annotation", 1, Value::Map(body))
}

fn put_stream(store: &Store, r: impl Read) -> Result<ArtifactId, OpError> {
    Ok(store.put_reader_with(r, &PutOptions::default())?.id)
}

fn put_bytes(store: &Store, b: &[u8]) -> Result<ArtifactId, OpError> {
    Ok(store.put(b)?)
}

#[cfg(feature = "json")]
fn json_out(store: &Store, id: &ArtifactId) -> Result<ArtifactId, OpError> {
    let bytes = store.get(id)?;
    let j = if records::looks_like_record(&bytes) {
        records::json::record_to_json(&Record::decode(&bytes)?)
    } else {
        records::json::to_json(&records::cbor::decode(&bytes).map_err(|e| format!("not canonical CBOR: {e}"))?)
    };
    // serde_json's map keeps keys sorted: the text is a function of the value.
    let mut text = serde_json::to_vec_pretty(&j).map_err(|e| e.to_string())?;
    text.push(b'\n');
    put_bytes(store, &text)
}

#[cfg(feature = "json")]
fn json_in(store: &Store, id: &ArtifactId, p: &Value) -> Result<ArtifactId, OpError> {
    let bytes = store.get(id)?;
    let j: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    match text(p, "type")? {
        Some(t) => {
            let rec = records::json::record_from_json(t, uint(p, "version")?, &j)?;
            Ok(records::put(store, &rec)?.id)
        }
        None => {
            let v = records::json::from_json(&j)?;
            put_bytes(store, &records::cbor::encode(&v).map_err(|e| e.to_string())?)
        }
    }
}

#[cfg(not(feature = "json"))]
fn json_out(_: &Store, _: &ArtifactId) -> Result<ArtifactId, OpError> {
    Err(OpError::Node(
        "cbor.to_json needs the library built with feature `json`".into(),
    ))
}

#[cfg(not(feature = "json"))]
fn json_in(_: &Store, _: &ArtifactId, _: &Value) -> Result<ArtifactId, OpError> {
    Err(OpError::Node(
        "json.to_cbor needs the library built with feature `json`".into(),
    ))
}
