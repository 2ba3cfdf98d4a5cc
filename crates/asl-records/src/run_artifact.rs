//! The run artifact as seed 003's service writes it: `asl/run-artifact`
//! holds the service's JSON field for field (`run_id`, `created_at_utc`,
//! `mode`, `tool_id`, `status`, `request_summary`, `feasibility`,
//! `decision`, `hashes`, `outputs`, `meta`), and what the artifact claims
//! is checked before it is stored: each declared hash is recomputed the
//! seed's way from the parts the artifact holds.
//!
//! The seed hashes JSON with Python's `json.dumps(obj, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)` and SHA-256 over its UTF-8
//! bytes; [`sha256_json`] writes the same text from a record's values
//! (keys in code-point order, Python's shortest float form, its string
//! escapes), so a hash the service computed matches the one computed here
//! from what was stored.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use asl_core::{ArtifactId, Store};

use crate::cbor::Value;
use crate::{digests, Record, RecordError};

/// The record type: the seed's run artifact as written.
pub const TYPE: &str = "asl/run-artifact";
/// Its version.
pub const VERSION: u64 = 1;

/// Python's `json.dumps` text of `v` in the seed's stable form. Fails on a
/// value JSON has no form for (bytes, a non-text key).
pub fn python_json(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_json(v, &mut out)?;
    Ok(out)
}

/// The seed's `sha256_json`: SHA-256 (hex) of [`python_json`]'s text.
pub fn sha256_json(v: &Value) -> Result<String, String> {
    Ok(sha256_text(&python_json(v)?))
}

/// The seed's `sha256_text`: SHA-256 (hex) of the text's UTF-8 bytes.
pub fn sha256_text(s: &str) -> String {
    digests::hex(&Sha256::digest(s.as_bytes()).into())
}

fn write_json(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Unsigned(n) => write!(out, "{n}").unwrap_or(()),
        Value::Negative(n) => write!(out, "-{}", u128::from(*n) + 1).unwrap_or(()),
        Value::Float(f) => out.push_str(&python_float(*f)),
        Value::Text(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, x) in entries {
                match k {
                    Value::Text(k) => keyed.push((k.as_str(), x)),
                    other => return Err(format!("key {other} is not text")),
                }
            }
            // Rust orders strings by their UTF-8 bytes, which is the
            // code-point order Python's sort_keys uses.
            keyed.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, x)) in keyed.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_json(x, out)?;
            }
            out.push('}');
        }
        other => return Err(format!("{other} has no JSON form")),
    }
    Ok(())
}

/// A string as Python's json module writes it with `ensure_ascii=False`:
/// only `"`, `\` and the control characters are escaped.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap_or(()),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr` of a float: the shortest digits that read back to the
/// same value, positional from 1e-4 up to 1e16, scientific outside that
/// with a signed exponent of at least two digits.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddde±x`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let (int, frac) = if point <= 0 {
            ("0".to_string(), format!("{}{digits}", "0".repeat((-point) as usize)))
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_string(),
                digits[point as usize..].to_string(),
            )
        };
        let frac = if frac.is_empty() { "0".to_string() } else { frac };
        format!("{sign}{int}.{frac}")
    } else {
        let m = if digits.len() == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        format!("{sign}{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// The seed's `summarize_request`: the request without the client's own
/// `feasibility`, a list or map of more than 200 entries replaced by
/// `{"type": "list" | "dict", "len": N}`, at most 80 keys in key order.
pub fn summarize_request(req: &Value) -> Value {
    let Value::Map(entries) = req else {
        return req.clone();
    };
    let mut keyed: Vec<&(Value, Value)> = entries.iter().collect();
    keyed.sort_by(|a, b| match (&a.0, &b.0) {
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    let mut out = Vec::new();
    for (k, v) in keyed {
        if k == &Value::text("feasibility") {
            continue;
        }
        let big = |kind: &str, len: usize| {
            Value::Map(vec![
                (Value::text("type"), Value::text(kind)),
                (Value::text("len"), Value::Unsigned(len as u64)),
            ])
        };
        out.push((
            k.clone(),
            match v {
                Value::Array(a) if a.len() > 200 => big("list", a.len()),
                Value::Map(m) if m.len() > 200 => big("dict", m.len()),
                other => other.clone(),
            },
        ));
        if out.len() >= 80 {
            break;
        }
    }
    Value::Map(out)
}

/// What checking one declared hash found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashState {
    /// Recomputed from the stored part: equal.
    Match,
    /// Recomputed from the stored part: different.
    Mismatch {
        /// The hash computed here.
        computed: String,
    },
    /// Declared, but the part it covers is not in the artifact (the
    /// toolpaths payload; G-code over 200,000 characters is not embedded).
    NotStored,
}

/// One declared hash and what checking it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashCheck {
    /// The field of `hashes`: `feasibility_sha256`, ...
    pub field: &'static str,
    /// What the artifact declares.
    pub declared: String,
    /// What checking found.
    pub state: HashState,
}

/// Recomputes each hash `hashes` declares (a `null` declares none) from
/// the parts of the run artifact `body` that it covers.
pub fn check_hashes(body: &Value) -> Result<Vec<HashCheck>, RecordError> {
    let bad = |m: String| RecordError::Input(m);
    let Some(Value::Map(hashes)) = body.get("hashes") else {
        return Err(bad("hashes: not a map".into()));
    };
    let outputs = body.get("outputs");
    let part = |name: &str| outputs.and_then(|o| o.get(name)).filter(|v| **v != Value::Null);
    let mut out = Vec::new();
    for field in [
        "feasibility_sha256",
        "toolpaths_sha256",
        "gcode_sha256",
        "opplan_sha256",
    ] {
        let declared = match hashes.iter().find(|(k, _)| k == &Value::text(field)) {
            None | Some((_, Value::Null)) => continue,
            Some((_, Value::Text(t))) => t.to_ascii_lowercase(),
            Some((_, other)) => return Err(bad(format!("hashes.{field}: {other} is not text"))),
        };
        let computed = match field {
            "feasibility_sha256" => body.get("feasibility").map(sha256_json).transpose(),
            "gcode_sha256" => Ok(match part("gcode_text") {
                Some(Value::Text(g)) => Some(sha256_text(g)),
                _ => None,
            }),
            "opplan_sha256" => part("opplan_json").map(sha256_json).transpose(),
            _ => Ok(None),
        }
        .map_err(|e| bad(format!("hashes.{field}: the part it covers has no JSON form: {e}")))?;
        let state = match computed {
            None => HashState::NotStored,
            Some(c) if c == declared => HashState::Match,
            Some(c) => HashState::Mismatch { computed: c },
        };
        out.push(HashCheck { field, declared, state });
    }
    Ok(out)
}

/// The label an annotation gives each run artifact stored by [`put_all`]:
/// `ok` (every declared hash recomputed and equal), `partial` (equal where
/// the part is stored), `mismatch` (stored anyway, when asked).
pub const HASHES_LABEL: &str = "run.hashes";

/// What checking a run's declared hashes comes to, as [`HASHES_LABEL`]'s value.
pub fn verdict(checks: &[HashCheck]) -> &'static str {
    if checks.iter().any(|c| matches!(c.state, HashState::Mismatch { .. })) {
        "mismatch"
    } else if checks.iter().any(|c| c.state == HashState::NotStored) {
        "partial"
    } else {
        "ok"
    }
}

/// One run artifact [`put_all`] stored.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The record.
    pub id: ArtifactId,
    /// Its `run_id`.
    pub run_id: String,
    /// Its declared hashes, checked.
    pub hashes: Vec<HashCheck>,
    /// Whether the store did not hold it before.
    pub new: bool,
}

/// Checks every run artifact in `runs` (`asl/run-artifact` records),
/// then stores them with an annotation each ([`HASHES_LABEL`]) in one
/// atomic section, committed. A declared hash that does not match the part
/// it covers refuses the lot, every mismatch named, nothing stored —
/// unless `accept_mismatch`, which stores them labelled `mismatch`.
pub fn put_all(store: &Store, runs: &[Record], accept_mismatch: bool) -> Result<Vec<Stored>, RecordError> {
    let mut checked = Vec::with_capacity(runs.len());
    let mut wrong = Vec::new();
    for r in runs {
        if r.type_name != TYPE || r.version != VERSION {
            return Err(RecordError::Input(format!(
                "a {} v{} record is not a run artifact ({TYPE} v{VERSION})",
                r.type_name, r.version
            )));
        }
        let run_id = match r.body.get("run_id") {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let hashes = check_hashes(&r.body)?;
        for c in &hashes {
            if let HashState::Mismatch { computed } = &c.state {
                wrong.push(format!(
                    "run {run_id}: hashes.{} declares {} but what it covers hashes to {computed}",
                    c.field, c.declared
                ));
            }
        }
        checked.push((crate::prepare(r)?, run_id, hashes));
    }
    if !wrong.is_empty() && !accept_mismatch {
        return Err(RecordError::Input(format!("{}; nothing stored", wrong.join("; "))));
    }
    let section = store.begin_atomic()?;
    let mut out = Vec::with_capacity(checked.len());
    for (prepared, run_id, hashes) in checked {
        let put = crate::put_prepared(store, &prepared)?;
        let a = crate::labels::Annotation::new(put.id).label(HASHES_LABEL, verdict(&hashes));
        crate::labels::annotate(store, &a)?;
        out.push(Stored {
            id: put.id,
            run_id,
            hashes,
            new: put.new,
        });
    }
    section.commit()?;
    Ok(out)
}

#[cfg(feature = "json")]
/// The checks as JSON: `[{field, declared, state, computed?}]`, state
/// `match`, `mismatch` or `not stored`.
pub fn checks_json(checks: &[HashCheck]) -> serde_json::Value {
    checks
        .iter()
        .map(|c| {
            let mut v = serde_json::json!({"field": c.field, "declared": c.declared});
            v["state"] = match &c.state {
                HashState::Match => "match".into(),
                HashState::NotStored => "not stored".into(),
                HashState::Mismatch { computed } => {
                    v["computed"] = computed.as_str().into();
                    "mismatch".into()
                }
            };
            v
        })
        .collect()
}

#[cfg(feature = "json")]
/// The run artifact `json` (the service's JSON, parsed) as an
/// `asl/run-artifact` record, its request summarised first when `summarize` (for a
/// writer that stored the whole request). Checked against the schema.
pub fn record(json: &serde_json::Value, summarize: bool) -> Result<Record, RecordError> {
    let mut body = crate::json::from_json(json)?;
    if summarize {
        if let Value::Map(m) = &mut body {
            for (k, v) in m.iter_mut() {
                if k == &Value::text("request_summary") {
                    *v = summarize_request(v);
                }
            }
        }
    }
    let r = Record::new(TYPE, VERSION, body);
    crate::schema::check(&r)?;
    let at = match r.body.get("created_at_utc") {
        Some(Value::Text(t)) => t.as_str(),
        _ => "",
    };
    if crate::time::parse_any(at).is_none() {
        return Err(RecordError::Input(format!(
            "created_at_utc {at:?} is not a time (ISO 8601 with an offset, as the service writes it)"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_writes_them() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (100000.0, "100000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1e300, "1e+300"),
            (0.0, "0.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_and_keys_are_written_as_python_writes_them() {
        let v = Value::Map(vec![
            (Value::text("é"), Value::Unsigned(1)),
            (Value::text("b"), Value::text("q\"\\\n\u{1}ü/")),
            (
                Value::text("a"),
                Value::Array(vec![Value::Null, Value::Bool(true), Value::int(-3)]),
            ),
        ]);
        assert_eq!(
            python_json(&v).unwrap(),
            "{\"a\":[null,true,-3],\"b\":\"q\\\"\\\\\\n\\u0001ü/\",\"é\":1}"
        );
    }
}
