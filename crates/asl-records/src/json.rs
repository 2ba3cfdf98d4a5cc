//! JSON in and out of records (feature `json`), for `aslctl record` and
//! scripts: a record body written as JSON becomes canonical CBOR, and a
//! stored record is shown as JSON.
//!
//! JSON has no byte strings, so a registered type's schema says where one
//! goes: an artifact id is written as its 64-character hex and stored as 32
//! bytes. Elsewhere JSON maps onto CBOR directly: integers to integers,
//! other numbers to floats, objects to maps with text keys. Going out,
//! byte strings show as hex, tags as `{"$tag": N, "value": ...}`, and
//! non-finite floats as the strings "NaN", "Infinity", "-Infinity": the
//! JSON view is for reading, the CBOR bytes are the record.

use serde_json::{json, Map, Number};

use super::cbor::Value;
use super::schema::{self, Kind};
use super::{Record, RecordError};

/// A record of `type_name` at `version` (the newest registered version
/// when `None`, else 1) whose body is `body`.
pub fn record_from_json(
    type_name: &str,
    version: Option<u64>,
    body: &serde_json::Value,
) -> Result<Record, RecordError> {
    let version = version
        .or_else(|| schema::newest(type_name).map(|t| t.version))
        .unwrap_or(1);
    let fields = schema::lookup(type_name, version).map(|t| Kind::Struct(t.fields));
    let v = to_cbor(body, fields.as_ref()).map_err(|e| RecordError::Input(format!("{type_name} body: {e}")))?;
    Ok(Record::new(type_name, version, v))
}

/// A record of `t`'s type and version whose body is `body`, JSON turned
/// into CBOR where `t`'s fields say (ids and byte strings from hex).
pub fn record_from_json_as(t: &schema::RecordType, body: &serde_json::Value) -> Result<Record, RecordError> {
    let v = to_cbor(body, Some(&Kind::Struct(t.fields)))
        .map_err(|e| RecordError::Input(format!("{} body: {e}", t.name)))?;
    Ok(Record::new(t.name, t.version, v))
}

/// A JSON value as CBOR, with no schema to say where byte strings go:
/// integers to integers, other numbers to floats, objects to maps.
pub fn from_json(j: &serde_json::Value) -> Result<Value, RecordError> {
    to_cbor(j, None).map_err(RecordError::Input)
}

fn to_cbor(j: &serde_json::Value, kind: Option<&Kind>) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match (j, kind) {
        (J::String(s), Some(Kind::Id)) => {
            Value::Bytes(hex_id(s).ok_or_else(|| format!("{s:?} is not an artifact id"))?)
        }
        (J::String(s), Some(Kind::Bytes(n))) => Value::Bytes(
            hex_bytes(s)
                .filter(|b| b.len() == *n)
                .ok_or_else(|| format!("{s:?} is not {n} bytes in hex"))?,
        ),
        (J::String(s), Some(Kind::Blob)) => {
            Value::Bytes(hex_bytes(s).ok_or_else(|| format!("{s:?} is not bytes in hex"))?)
        }
        (J::Null, Some(Kind::OrNull(_))) => Value::Null,
        (_, Some(Kind::OrNull(inner))) => return to_cbor(j, Some(inner)),
        (J::Array(items), Some(Kind::List(inner))) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| to_cbor(x, Some(inner)).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        (J::Object(m), Some(Kind::Struct(fields))) => Value::Map(
            m.iter()
                .map(|(k, x)| {
                    let kind = fields.iter().find(|f| f.name == k).map(|f| &f.kind);
                    Ok((
                        Value::text(k.clone()),
                        to_cbor(x, kind).map_err(|e| format!("{k}: {e}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        (J::Null, _) => Value::Null,
        (J::Bool(b), _) => Value::Bool(*b),
        (J::Number(n), _) => number(n),
        (J::String(s), _) => Value::Text(s.clone()),
        (J::Array(items), _) => Value::Array(items.iter().map(|x| to_cbor(x, None)).collect::<Result<_, _>>()?),
        (J::Object(m), _) => Value::Map(
            m.iter()
                .map(|(k, x)| Ok((Value::text(k.clone()), to_cbor(x, None)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn number(n: &Number) -> Value {
    if let Some(u) = n.as_u64() {
        Value::Unsigned(u)
    } else if let Some(i) = n.as_i64() {
        Value::int(i)
    } else {
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| s.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn hex_id(s: &str) -> Option<Vec<u8>> {
    s.parse::<asl_core::ArtifactId>().ok().map(|id| id.as_bytes().to_vec())
}

/// The JSON view of a record: `{"type", "version", "known", "body"}`.
pub fn record_to_json(r: &Record) -> serde_json::Value {
    json!({
        "type": r.type_name,
        "version": r.version,
        "known": schema::lookup(&r.type_name, r.version).is_some(),
        "body": to_json(&r.body),
    })
}

/// The JSON view of a CBOR value (see the module docs for what has no
/// JSON form of its own).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Unsigned(n) => J::Number((*n).into()),
        Value::Negative(n) => match i64::try_from(*n) {
            Ok(i) => J::Number((-1 - i).into()),
            Err(_) => J::String(format!("-{}", *n as u128 + 1)),
        },
        Value::Bytes(b) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::Text(t) => J::String(t.clone()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut m = Map::new();
            for (k, x) in entries {
                let key = match k {
                    Value::Text(t) => t.clone(),
                    other => other.to_string(),
                };
                m.insert(key, to_json(x));
            }
            J::Object(m)
        }
        Value::Tag(t, x) => json!({"$tag": t, "value": to_json(x)}),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Float(x) => Number::from_f64(*x)
            .map(J::Number)
            .unwrap_or_else(|| J::String(v.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_in_as_bytes_and_come_out_as_hex() {
        let id = asl_core::ArtifactId::from_bytes([0xab; 32]).to_hex();
        let body = json!({"run_id": "r1", "created_at": "2026-11-30T10:00:00Z", "mode": "m", "tool": "t",
                          "status": "OK", "outputs": [id], "decision": {"score": 3}, "meta": {"n": -5, "f": 1.5}});
        let r = record_from_json("asl/run", None, &body).unwrap();
        assert_eq!(r.version, 1);
        let Some(Value::Array(outs)) = r.body.get("outputs") else {
            panic!()
        };
        assert_eq!(outs[0], Value::Bytes(vec![0xab; 32]));
        assert_eq!(schema::check(&r).unwrap(), schema::Checked::Valid);
        let back = record_to_json(&Record::decode(&r.encode().unwrap()).unwrap());
        assert_eq!(back["body"], body);
        assert_eq!(back["known"], true);
    }

    #[test]
    fn a_bad_id_names_its_field() {
        let body = json!({"subject": "not-hex"});
        let e = record_from_json("asl/annotation", None, &body).unwrap_err().to_string();
        assert!(e.contains("subject") && e.contains("not an artifact id"), "{e}");
    }

    #[test]
    fn unknown_types_map_json_directly() {
        let body = json!({"b": [1, -2, 0.25, null, true], "a": "x"});
        let r = record_from_json("x/free", Some(3), &body).unwrap();
        assert_eq!(r.version, 3);
        assert_eq!(record_to_json(&r)["body"], body);
        assert_eq!(record_to_json(&r)["known"], false);
    }
}
