//! The schema registry: which record types the store knows, and the check
//! a record's body must pass to be stored under a known type.
//!
//! Schemas are Rust data checked by Rust code rather than CDDL run through
//! the `cddl` crate: the checks records need beyond shapes (hex digests of
//! the right length, RFC 3339 UTC times, label size limits) are a line each
//! here and would be custom controls there, and a crate that validates
//! through another CBOR library's value type would decode our bytes a second
//! way. `spec/records.md` gives each schema in CDDL for readers, and a test
//! keeps that text in step with the table below.
//!
//! A record of a type the registry lacks is stored all the same and
//! reported as unknown; a record of a registered type at a version the
//! registry lacks, or of a known type and version that breaks its schema,
//! is refused.

use super::cbor::Value;
use super::envelope::Record;
use super::RecordError;

/// The type of one field's value.
#[derive(Debug)]
pub enum Kind {
    /// UTF-8 text, at most 4096 bytes.
    Text,
    /// Text that is not empty, at most 256 bytes, no control characters.
    Name,
    /// UTF-8 text of any length (imported data that is not ours to cut).
    LongText,
    /// A non-negative integer.
    Uint,
    /// An integer of either sign.
    Int,
    /// A byte string of exactly this length.
    Bytes(usize),
    /// A byte string of any length.
    Blob,
    /// A float (integers are accepted too).
    Number,
    /// `true` or `false`.
    Bool,
    /// An artifact id: a byte string of 32.
    Id,
    /// A SHA-256 digest as 64 lower-case hex characters.
    Sha256,
    /// A time, RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, optional fraction.
    Time,
    /// One of the given texts.
    OneOf(&'static [&'static str]),
    /// An array of the given kind.
    List(&'static Kind),
    /// Labels: a map of [`Kind::Name`] keys to text of 1 to 4096 bytes.
    Labels,
    /// A map with the given fields.
    Struct(&'static [Field]),
    /// The entries of a tree (see `records::tree`): `[name, kind, size,
    /// id]` each, names valid and in strictly increasing byte order.
    TreeEntries,
    /// Tree entries that may also be symbolic links (`asl/tree` version 2).
    TreeEntriesWithLinks,
    /// Any CBOR value.
    Any,
    /// The given kind, or `null` (a field other programs write as null
    /// when unset, as Python's pydantic does).
    OrNull(&'static Kind),
}

/// One field of a map.
#[derive(Debug)]
pub struct Field {
    /// Its key.
    pub name: &'static str,
    /// Its value's kind.
    pub kind: Kind,
    /// Whether it must be present.
    pub required: bool,
}

/// A registered record type at one schema version.
#[derive(Debug)]
pub struct RecordType {
    /// The type name.
    pub name: &'static str,
    /// The schema version.
    pub version: u64,
    /// What a record of this type states.
    pub doc: &'static str,
    /// The body's fields; no others are allowed.
    pub fields: &'static [Field],
}

mod registry;
pub mod user;

pub use registry::{REGISTRY, RUN_STATUS};

/// The registered schema of `name` at `version`.
pub fn lookup(name: &str, version: u64) -> Option<&'static RecordType> {
    REGISTRY.iter().find(|t| t.name == name && t.version == version)
}

/// The newest registered version of `name`.
pub fn newest(name: &str) -> Option<&'static RecordType> {
    REGISTRY.iter().filter(|t| t.name == name).max_by_key(|t| t.version)
}

/// What the registry says of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Its type and version are registered and the body passes.
    Valid,
    /// Its type (or this version of it) is not registered: not checked.
    Unknown,
}

/// Checks `r` against its schema, if the registry has one.
pub fn check(r: &Record) -> Result<Checked, RecordError> {
    let Some(t) = lookup(&r.type_name, r.version) else {
        // A registered type at a version this build lacks cannot be checked
        // and is not what a writer of that type meant: refused. A type the
        // registry lacks altogether is someone else's, stored unchecked.
        let known: Vec<String> = REGISTRY
            .iter()
            .filter(|t| t.name == r.type_name)
            .map(|t| t.version.to_string())
            .collect();
        if !known.is_empty() {
            return Err(RecordError::BadType(format!(
                "type {} has no version {} in this build (registered: {})",
                r.type_name,
                r.version,
                known.join(", ")
            )));
        }
        return Ok(Checked::Unknown);
    };
    check_body(t, &r.body)
}

/// Checks a body against type `t`'s fields.
fn check_body(t: &RecordType, body: &Value) -> Result<Checked, RecordError> {
    check_fields(t.fields, body).map_err(|detail| RecordError::Schema {
        type_name: t.name.to_string(),
        version: t.version,
        detail,
    })?;
    Ok(Checked::Valid)
}

fn check_fields(fields: &[Field], v: &Value) -> Result<(), String> {
    let Value::Map(entries) = v else {
        return Err("the body is not a map".into());
    };
    for (k, _) in entries {
        let Value::Text(k) = k else {
            return Err(format!("key {k} is not text"));
        };
        if !fields.iter().any(|f| f.name == k) {
            return Err(format!("unknown field {k:?}"));
        }
    }
    for f in fields {
        match v.get(f.name) {
            Some(x) => check_kind(&f.kind, x).map_err(|e| format!("{}: {e}", f.name))?,
            None if f.required => return Err(format!("missing field {:?}", f.name)),
            None => {}
        }
    }
    Ok(())
}

fn check_kind(kind: &Kind, v: &Value) -> Result<(), String> {
    let text = |v: &Value| match v {
        Value::Text(t) => Ok(t.clone()),
        other => Err(format!("{other} is not text")),
    };
    match kind {
        Kind::Text => {
            let t = text(v)?;
            if t.len() > 4096 {
                return Err(format!("text of {} bytes (at most 4096)", t.len()));
            }
        }
        Kind::Name => check_name(&text(v)?)?,
        Kind::LongText => {
            text(v)?;
        }
        Kind::Uint => {
            if !matches!(v, Value::Unsigned(_)) {
                return Err(format!("{v} is not a non-negative integer"));
            }
        }
        Kind::Int => {
            if !matches!(v, Value::Unsigned(_) | Value::Negative(_)) {
                return Err(format!("{v} is not an integer"));
            }
        }
        Kind::Bytes(n) => match v {
            Value::Bytes(b) if b.len() == *n => {}
            other => return Err(format!("{other} is not a byte string of {n}")),
        },
        Kind::Blob => {
            if !matches!(v, Value::Bytes(_)) {
                return Err(format!("{v} is not a byte string"));
            }
        }
        Kind::Number => {
            if !matches!(v, Value::Unsigned(_) | Value::Negative(_) | Value::Float(_)) {
                return Err(format!("{v} is not a number"));
            }
        }
        Kind::Bool => {
            if !matches!(v, Value::Bool(_)) {
                return Err(format!("{v} is not true or false"));
            }
        }
        Kind::Id => match v {
            Value::Bytes(b) if b.len() == 32 => {}
            other => return Err(format!("{other} is not an artifact id (32 bytes)")),
        },
        Kind::Sha256 => {
            let t = text(v)?;
            if t.len() != 64 || !t.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                return Err(format!("{t:?} is not a SHA-256 digest (64 lower-case hex characters)"));
            }
        }
        Kind::Time => check_time(&text(v)?)?,
        Kind::OneOf(allowed) => {
            let t = text(v)?;
            if !allowed.contains(&t.as_str()) {
                return Err(format!("{t:?} is not one of {}", allowed.join(", ")));
            }
        }
        Kind::List(inner) => {
            let Value::Array(items) = v else {
                return Err(format!("{v} is not an array"));
            };
            for (i, x) in items.iter().enumerate() {
                check_kind(inner, x).map_err(|e| format!("[{i}]: {e}"))?;
            }
        }
        Kind::Labels => {
            let Value::Map(entries) = v else {
                return Err(format!("{v} is not a map of labels"));
            };
            for (k, x) in entries {
                let k = text(k)?;
                check_name(&k).map_err(|e| format!("label key: {e}"))?;
                check_kind(&Kind::Text, x).map_err(|e| format!("label {k:?}: {e}"))?;
                if matches!(x, Value::Text(v) if v.is_empty()) {
                    return Err(format!("label {k:?}: empty value"));
                }
            }
        }
        Kind::Struct(fields) => check_fields(fields, v)?,
        Kind::TreeEntries => super::tree::entry::check_entries(v, false)?,
        Kind::TreeEntriesWithLinks => super::tree::entry::check_entries(v, true)?,
        Kind::Any => {}
        Kind::OrNull(k) => {
            if *v != Value::Null {
                check_kind(k, v)?;
            }
        }
    }
    Ok(())
}

fn check_name(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty".into());
    }
    if t.len() > 256 {
        return Err(format!("{} bytes long (at most 256)", t.len()));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{t:?} holds a control character"));
    }
    Ok(())
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with the fields in range, so
/// that times compare correctly as text.
fn check_time(t: &str) -> Result<(), String> {
    let bad = || format!("{t:?} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    let b = t.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let s = &t[r];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d == 0 || d > days[mo as usize - 1] || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let frac = &t[19..t.len() - 1];
    if !frac.is_empty() && (!frac.starts_with('.') || frac.len() < 2 || !frac[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(extra: Vec<(&str, Value)>) -> Record {
        let mut m = vec![
            (Value::text("run_id"), Value::text("r-1")),
            (Value::text("created_at"), Value::text("2026-11-30T23:59:60Z")),
            (Value::text("mode"), Value::text("fast")),
            (Value::text("tool"), Value::text("mill")),
            (Value::text("status"), Value::text("BLOCKED")),
        ];
        for (k, v) in extra {
            m.retain(|(x, _)| x != &Value::text(k));
            m.push((Value::text(k), v));
        }
        Record::new("asl/run", 1, Value::Map(m))
    }

    #[test]
    fn a_valid_run_passes_and_each_broken_rule_is_named() {
        assert_eq!(check(&run(vec![])).unwrap(), Checked::Valid);
        let decision = Value::Map(vec![
            (Value::text("score"), Value::Float(0.5)),
            (Value::text("warnings"), Value::Array(vec![Value::text("w")])),
        ]);
        assert_eq!(check(&run(vec![("decision", decision)])).unwrap(), Checked::Valid);
        let cases: Vec<(Record, &str)> = vec![
            (run(vec![("status", Value::text("MAYBE"))]), "status"),
            (
                run(vec![("created_at", Value::text("2026-02-29T00:00:00Z"))]),
                "created_at",
            ),
            (
                run(vec![("created_at", Value::text("2026-11-30 10:00:00"))]),
                "created_at",
            ),
            (run(vec![("tool", Value::text(""))]), "tool: empty"),
            (run(vec![("surprise", Value::Null)]), "unknown field"),
            (
                run(vec![("outputs", Value::Array(vec![Value::Bytes(vec![0; 31])]))]),
                "outputs: [0]",
            ),
            (
                run(vec![("input_sha256", Value::Array(vec![Value::text("AB")]))]),
                "input_sha256",
            ),
            (
                run(vec![(
                    "decision",
                    Value::Map(vec![(Value::text("score"), Value::text("high"))]),
                )]),
                "decision: score",
            ),
            (Record::new("asl/run", 1, Value::Array(vec![])), "not a map"),
        ];
        for (r, want) in cases {
            let e = check(&r).expect_err(want).to_string();
            assert!(e.contains(want), "{e} (expected {want})");
        }
        let mut missing = run(vec![]);
        if let Value::Map(m) = &mut missing.body {
            m.retain(|(k, _)| k != &Value::text("mode"));
        }
        assert!(check(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing field \"mode\""));
    }

    #[test]
    fn labels_have_limits() {
        let ann = |labels: Vec<(Value, Value)>| {
            Record::new(
                "asl/annotation",
                1,
                Value::Map(vec![
                    (Value::text("subject"), Value::Bytes(vec![7; 32])),
                    (Value::text("labels"), Value::Map(labels)),
                ]),
            )
        };
        assert_eq!(
            check(&ann(vec![(Value::text("tool"), Value::text("mill"))])).unwrap(),
            Checked::Valid
        );
        for bad in [
            vec![(Value::text(""), Value::text("x"))],
            vec![(Value::text("k".repeat(257)), Value::text("x"))],
            vec![(Value::text("k"), Value::text("v".repeat(4097)))],
            vec![(Value::text("k"), Value::Unsigned(1))],
            vec![(Value::text("k"), Value::text(""))],
        ] {
            assert!(check(&ann(bad)).is_err());
        }
    }

    #[test]
    fn unknown_types_are_not_checked_and_unknown_versions_refused() {
        assert_eq!(
            check(&Record::new("x/other", 1, Value::Null)).unwrap(),
            Checked::Unknown
        );
        let e = check(&Record::new("asl/run", 2, Value::Null)).unwrap_err().to_string();
        assert!(e.contains("has no version 2") && e.contains("registered: 1"), "{e}");
    }
}
