//! What the query index holds for one record: the keys it contributes.
//!
//! Every key is `tag | fields | time | subject | record`, fields each a
//! big-endian u16 length and bytes, time big-endian seconds since 1970, so
//! that all keys for one field value lie together in time order and a time
//! range is one key range. The subject is the artifact a record speaks about
//! (an annotation's `subject`), or the record itself.

use crate::cbor::Value;
use crate::{time, Record};
use asl_core::ArtifactId;

/// Key tags.
pub(super) const LABEL: u8 = b'L';
pub(super) const MEDIA: u8 = b'M';
pub(super) const TYPE: u8 = b'T';
pub(super) const ALL: u8 = b'A';

/// Bytes after the fields: time, subject and record.
pub(super) const TAIL: usize = 8 + 32 + 32;

/// Fields of registered types that are queried like labels.
const LABEL_FIELDS: &[(&str, &[&str])] = &[
    ("asl/run", &["tool", "mode", "status", "run_id"]),
    ("asl/run-artifact", &["mode", "status", "run_id"]),
    ("asl/digest", &["sha256"]),
    ("asl/pel-receipt", &["run_id", "node", "outcome"]),
    ("asl/pel-run", &["run_id", "outcome"]),
    ("asl/cache-entry", &["cache_key"]),
    ("asl/schema", &["name"]),
];

/// Fields a PEL receipt is found by, each an id: its action key (the
/// action cache), every input and every output (lineage both ways).
pub const RECEIPT_KEY: &str = "pel.key";
/// See [`RECEIPT_KEY`].
pub const RECEIPT_IN: &str = "pel.in";
/// See [`RECEIPT_KEY`].
pub const RECEIPT_OUT: &str = "pel.out";
/// A signed batch (`asl/pel-batch`) is found by each receipt it lists.
pub const RECEIPT_BATCH: &str = "pel.batch";
/// An `asl/overlay` log is found by the overlay it read (lineage back to
/// the object the overlay was rendered from) and by that object (forward).
pub const OVERLAY_OF: &str = "overlay.of";
/// See [`OVERLAY_OF`].
pub const OVERLAY_BASE: &str = "overlay.base";

/// What one record puts in the index: its keys are `prefix ‖ t ‖ subject ‖
/// record` for each prefix.
pub(super) struct Rows {
    pub subject: ArtifactId,
    /// Set when the record speaks about another artifact.
    pub annotates: bool,
    pub t: u64,
    pub prefixes: Vec<Vec<u8>>,
}

impl Rows {
    /// The full keys, for record `record`.
    pub fn keys(&self, record: &ArtifactId) -> Vec<Vec<u8>> {
        self.prefixes
            .iter()
            .map(|p| {
                let mut k = Vec::with_capacity(p.len() + TAIL);
                k.extend_from_slice(p);
                k.extend_from_slice(&self.t.to_be_bytes());
                k.extend_from_slice(self.subject.as_bytes());
                k.extend_from_slice(record.as_bytes());
                k
            })
            .collect()
    }

    /// The compact form kept per record, to take its keys out again:
    /// `annotates u8 | t u64 LE | subject | (len u16 LE | prefix)*`.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.annotates)];
        out.extend_from_slice(&self.t.to_le_bytes());
        out.extend_from_slice(self.subject.as_bytes());
        for p in &self.prefixes {
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// The inverse of [`Rows::pack`].
    pub fn unpack(b: &[u8]) -> Option<Rows> {
        let annotates = *b.first()? == 1;
        let t = u64::from_le_bytes(b.get(1..9)?.try_into().ok()?);
        let subject = ArtifactId::from_bytes(b.get(9..41)?.try_into().ok()?);
        let mut rest = &b[41..];
        let mut prefixes = Vec::new();
        while !rest.is_empty() {
            let n = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            prefixes.push(rest.get(2..2 + n)?.to_vec());
            rest = &rest[2 + n..];
        }
        Some(Rows {
            subject,
            annotates,
            t,
            prefixes,
        })
    }
}

/// The prefix of keys with `tag` and `fields`.
pub(super) fn prefix(tag: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![tag];
    for f in fields {
        // Fields are bounded by the schema (labels 4 KiB); longer ones are
        // cut, which only makes a query for them match nothing.
        let f = &f[..f.len().min(u16::MAX as usize)];
        k.extend_from_slice(&(f.len() as u16).to_be_bytes());
        k.extend_from_slice(f);
    }
    k
}

/// Splits a key's tail into (time, subject, record).
pub(super) fn tail(key: &[u8]) -> Option<(u64, ArtifactId, ArtifactId)> {
    let t = key.get(key.len().checked_sub(TAIL)?..)?;
    let time = u64::from_be_bytes(t[..8].try_into().ok()?);
    let subject = ArtifactId::from_bytes(t[8..40].try_into().ok()?);
    let record = ArtifactId::from_bytes(t[40..].try_into().ok()?);
    Some((time, subject, record))
}

/// The rows record `id` contributes.
pub(super) fn rows(id: &ArtifactId, r: &Record) -> Rows {
    let body = &r.body;
    let text = |k: &str| match body.get(k) {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let t = text("created_at")
        .or_else(|| text("started_at"))
        .or_else(|| text("last_used"))
        // An expiry record is dated by when it expires, so that the due
        // ones are one time range.
        .or_else(|| text("expires_at"))
        .and_then(time::parse)
        // Seed 003's run artifact keeps its time as the service wrote it.
        .or_else(|| text("created_at_utc").and_then(time::parse_any))
        .unwrap_or(0);
    let (subject, annotates) = match body.get("subject") {
        Some(Value::Bytes(b)) if b.len() == 32 => (ArtifactId::from_bytes(b.as_slice().try_into().unwrap()), true),
        _ => (*id, false),
    };
    let mut prefixes = vec![prefix(ALL, &[]), prefix(TYPE, &[r.type_name.as_bytes()])];
    if let Some(m) = text("media_type") {
        prefixes.push(prefix(MEDIA, &[m.as_bytes()]));
    }
    if let Some(Value::Map(labels)) = body.get("labels") {
        for (k, v) in labels {
            if let (Value::Text(k), Value::Text(v)) = (k, v) {
                prefixes.push(prefix(LABEL, &[k.as_bytes(), v.as_bytes()]));
            }
        }
    }
    for (_, fields) in LABEL_FIELDS.iter().filter(|(ty, _)| *ty == r.type_name) {
        for f in *fields {
            if let Some(v) = text(f) {
                prefixes.push(prefix(LABEL, &[f.as_bytes(), v.as_bytes()]));
            }
        }
    }
    if r.type_name == "asl/pel-receipt" && r.version == 1 {
        receipt_rows(body, &mut prefixes);
    }
    // Seed 003's run artifact names its tool `tool_id`: found as `tool`,
    // like an `asl/run`'s, so one query finds runs of both types.
    if r.type_name == "asl/run-artifact" && r.version == 1 {
        if let Some(t) = text("tool_id") {
            prefixes.push(prefix(LABEL, &[b"tool", t.as_bytes()]));
        }
    }
    if r.type_name == "asl/overlay" && r.version == 1 {
        for (field, row) in [("overlay", OVERLAY_OF), ("base", OVERLAY_BASE)] {
            if let Some(Value::Bytes(b)) = body.get(field) {
                prefixes.push(prefix(LABEL, &[row.as_bytes(), b]));
            }
        }
    }
    if r.type_name == "asl/pel-batch" && r.version == 1 {
        if let Some(Value::Array(items)) = body.get("receipts") {
            for x in items {
                if let Value::Bytes(b) = x {
                    prefixes.push(prefix(LABEL, &[RECEIPT_BATCH.as_bytes(), b]));
                }
            }
        }
    }
    Rows {
        subject,
        annotates,
        t,
        prefixes,
    }
}

fn receipt_rows(body: &Value, prefixes: &mut Vec<Vec<u8>>) {
    let bytes = |v: Option<&Value>| match v {
        Some(Value::Bytes(b)) if b.len() == 32 => Some(b.clone()),
        _ => None,
    };
    let mut add = |field: &str, v: Option<Vec<u8>>| {
        if let Some(v) = v {
            let p = prefix(LABEL, &[field.as_bytes(), &v]);
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    };
    add(RECEIPT_KEY, bytes(body.get("action_key")));
    for (list, field) in [("inputs", RECEIPT_IN), ("outputs", RECEIPT_OUT)] {
        if let Some(Value::Array(items)) = body.get(list) {
            for x in items {
                add(field, bytes(x.get("id")));
            }
        }
    }
    add(RECEIPT_OUT, bytes(body.get("stdout")));
    add(RECEIPT_OUT, bytes(body.get("stderr")));
}
