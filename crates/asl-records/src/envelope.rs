//! The envelope every record shares: a magic, a type name, a schema version
//! and the body, as one canonical CBOR item.
//!
//! `55799(["asl", TYPE, VERSION, BODY])`: tag 55799 is CBOR's own
//! "self-described CBOR" marker (RFC 8949 §3.4.6), so a record's bytes start
//! with `d9 d9 f7 84 63 61 73 6c` whatever its type, which is what
//! [`looks_like_record`] checks. The record's id is the BLAKE3 of these
//! bytes, like any artifact's; the envelope adds no checksum of its own.

use super::cbor::{self, Value};
use super::RecordError;

/// The tag that opens every record (self-described CBOR).
pub const SELF_DESCRIBED: u64 = 55799;

/// The first bytes of every record: the tag, a four-item array, "asl".
pub const MAGIC: [u8; 8] = [0xd9, 0xd9, 0xf7, 0x84, 0x63, b'a', b's', b'l'];

/// Longest type name.
pub const MAX_TYPE_LEN: usize = 64;

/// A typed record: what its bytes say, decoded.
///
/// ```
/// use asl_records::{cbor::Value, Record};
///
/// let r = Record::new("example/note", 1, Value::Map(vec![(Value::text("text"), Value::text("hi"))]));
/// let bytes = r.encode().unwrap();             // canonical CBOR: one encoding per value
/// assert_eq!(Record::decode(&bytes).unwrap(), r);
/// assert!(asl_records::looks_like_record(&bytes));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The record type, e.g. `asl/run`: lower-case ASCII letters, digits and
    /// `/ . _ -`, starting with a letter.
    pub type_name: String,
    /// The version of the type's schema the body follows (1 or more).
    pub version: u64,
    /// The body, a map for every registered type.
    pub body: Value,
}

impl Record {
    /// A record of type `type_name`, schema `version`.
    pub fn new(type_name: impl Into<String>, version: u64, body: Value) -> Record {
        Record {
            type_name: type_name.into(),
            version,
            body,
        }
    }

    /// The record's canonical bytes (its id is their BLAKE3).
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        check_header(&self.type_name, self.version)?;
        // Written piece by piece rather than as one Value, so the body is
        // not copied: a tree of thousands of entries is encoded as it is.
        let mut out = Vec::with_capacity(64);
        cbor::head(6, SELF_DESCRIBED, &mut out);
        cbor::head(4, 4, &mut out);
        cbor::encode_to(&Value::text("asl"), &mut out)?;
        cbor::encode_to(&Value::text(self.type_name.as_str()), &mut out)?;
        cbor::head(0, self.version, &mut out);
        cbor::encode_to(&self.body, &mut out)?;
        Ok(out)
    }

    /// Decodes a record, checking the CBOR is canonical and the envelope
    /// well formed (not the body's schema: see `schema::check`).
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if !looks_like_record(bytes) {
            return Err(RecordError::NotARecord(
                "it does not start with the record magic".into(),
            ));
        }
        let Value::Tag(SELF_DESCRIBED, inner) = cbor::decode(bytes)? else {
            return Err(RecordError::NotARecord("no self-described CBOR tag".into()));
        };
        let Value::Array(mut items) = *inner else {
            return Err(RecordError::NotARecord("the envelope is not an array".into()));
        };
        let body = items
            .pop()
            .ok_or_else(|| RecordError::NotARecord("empty envelope".into()))?;
        match items.as_slice() {
            [Value::Text(magic), Value::Text(t), Value::Unsigned(v)] if magic == "asl" => {
                check_header(t, *v)?;
                Ok(Record::new(t.clone(), *v, body))
            }
            _ => Err(RecordError::NotARecord(
                "the envelope is not [\"asl\", type, version, body]".into(),
            )),
        }
    }
}

impl Record {
    /// The record as a state file beside a store or a working copy: its
    /// bytes and their BLAKE3, so that a torn or damaged file is told from
    /// a record (the envelope has no checksum of its own; in the store the
    /// id is the checksum).
    pub fn to_sealed_file(&self) -> Result<Vec<u8>, RecordError> {
        let mut bytes = self.encode()?;
        let sum = *blake3::hash(&bytes).as_bytes();
        bytes.extend_from_slice(&sum);
        Ok(bytes)
    }

    /// Reads what [`Record::to_sealed_file`] wrote, which must be a
    /// `type_name` record at `version`; the error says what is wrong.
    pub fn from_sealed_file(bytes: &[u8], type_name: &str, version: u64) -> Result<Record, String> {
        if bytes.len() < 32 {
            return Err("too short".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("checksum mismatch".into());
        }
        let r = Record::decode(body).map_err(|e| e.to_string())?;
        if r.type_name != type_name || r.version != version {
            return Err(format!(
                "a {} v{} record, not {type_name} v{version}",
                r.type_name, r.version
            ));
        }
        Ok(r)
    }
}

/// Whether `bytes` start like a record (a cheap test; [`Record::decode`]
/// is the real one).
pub fn looks_like_record(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

fn check_header(t: &str, version: u64) -> Result<(), RecordError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "/._-".contains(c);
    if t.is_empty()
        || t.len() > MAX_TYPE_LEN
        || !t.starts_with(|c: char| c.is_ascii_lowercase())
        || !t.chars().all(ok_char)
    {
        return Err(RecordError::BadType(format!(
            "record type {t:?}: 1 to {MAX_TYPE_LEN} characters of a-z 0-9 / . _ -, starting with a letter"
        )));
    }
    if version == 0 {
        return Err(RecordError::BadType(format!("record type {t}: versions start at 1")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_golden_prefix() {
        let r = Record::new("asl/test", 1, Value::Map(vec![(Value::text("k"), Value::Unsigned(1))]));
        let b = r.encode().unwrap();
        assert_eq!(
            b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
            // tag 55799, array(4), "asl", "asl/test", 1, {"k": 1}
            "d9d9f7".to_owned() + "84" + "63" + "61736c" + "68" + "61736c2f74657374" + "01" + "a1616b01"
        );
        assert!(looks_like_record(&b));
        assert_eq!(Record::decode(&b).unwrap(), r);
    }

    #[test]
    fn bad_envelopes_are_refused() {
        let enc = |v: Value| cbor::encode(&v).unwrap();
        let arr = |items: Vec<Value>| Value::Tag(SELF_DESCRIBED, Box::new(Value::Array(items)));
        let cases = [
            enc(Value::text("plain")),
            enc(arr(vec![
                Value::text("asl"),
                Value::text("t"),
                Value::Unsigned(0),
                Value::Null,
            ])),
            enc(arr(vec![
                Value::text("asl"),
                Value::text("Bad Type"),
                Value::Unsigned(1),
                Value::Null,
            ])),
            enc(arr(vec![Value::text("asl"), Value::text("t"), Value::Null])),
            enc(arr(vec![
                Value::text("asl"),
                Value::Unsigned(1),
                Value::Unsigned(1),
                Value::Null,
            ])),
        ];
        for c in cases {
            assert!(Record::decode(&c).is_err(), "{c:02x?}");
        }
        // Canonical CBOR is required inside a record too: 1 in two bytes.
        let mut b = Record::new("t", 1, Value::Null).encode().unwrap();
        let at = b.len() - 2;
        assert_eq!(&b[at..], &[0x01, 0xf6]);
        b.splice(at..at + 1, [0x18, 0x01]);
        assert!(matches!(Record::decode(&b), Err(RecordError::Cbor(_))));
    }
}
