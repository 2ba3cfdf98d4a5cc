//! Canonical CBOR: the one encoding records are stored in, so that the same
//! record always has the same bytes and therefore the same id.
//!
//! The rules are RFC 8949 §4.2.1, "core deterministic encoding": every
//! length and number in its shortest form, definite lengths only, map keys
//! in the bytewise order of their encodings (which also forbids duplicates),
//! and floats in the shortest of half, single and double precision that
//! keeps the value exactly, every NaN written as `f9 7e00`. The decoder
//! checks each rule while it parses and rejects input that breaks one,
//! saying which: bytes that decode are bytes the encoder would have written.
//!
//! The data model is CBOR's, less what records never need: simple values
//! other than `false`, `true` and `null` (`undefined` among them) are
//! rejected. Nesting is limited to [`MAX_DEPTH`] levels, so a hostile input
//! cannot exhaust the stack. `spec/records.md` has the rules with examples.

use std::fmt;

/// Deepest nesting of arrays, maps and tags the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// A CBOR data item.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer 0 ..= 2^64 - 1 (major type 0).
    Unsigned(u64),
    /// The integer -1 - n (major type 1), down to -2^64.
    Negative(u64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A UTF-8 text string.
    Text(String),
    /// An array.
    Array(Vec<Value>),
    /// A map, as (key, value) pairs. Any order is accepted by the encoder,
    /// which sorts them; the decoder returns them in canonical order.
    Map(Vec<(Value, Value)>),
    /// A tagged item.
    Tag(u64, Box<Value>),
    /// `false` or `true`.
    Bool(bool),
    /// `null`.
    Null,
    /// A floating-point number.
    Float(f64),
}

/// Why bytes are not canonical CBOR (or not CBOR at all).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ends inside an item.
    #[error("CBOR ends early at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Well-formed CBOR that breaks a rule of the canonical encoding.
    #[error("CBOR at byte {at} is not canonical: {what}")]
    NotCanonical {
        /// Offset of the item.
        at: usize,
        /// The rule broken.
        what: String,
    },
    /// Bytes that are not CBOR, or CBOR outside the data model records use.
    #[error("CBOR at byte {at} is invalid: {what}")]
    Invalid {
        /// Offset of the item.
        at: usize,
        /// What is wrong.
        what: String,
    },
    /// Bytes follow the one top-level item.
    #[error("{extra} bytes follow the CBOR item")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A map given to the encoder names one key twice.
    #[error("a map holds the key {key} twice")]
    DuplicateKey {
        /// The key, in CBOR diagnostic-like form.
        key: String,
    },
}

impl Value {
    /// A text value.
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    /// An integer value of either sign.
    pub fn int(n: i64) -> Value {
        if n >= 0 {
            Value::Unsigned(n as u64)
        } else {
            Value::Negative(!(n as u64))
        }
    }

    /// The value of a map entry whose key is the text `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// The canonical encoding of `v`. Fails only on a map with a key twice.
///
/// ```
/// use asl_records::cbor::{decode, encode, Value};
///
/// let v = Value::Map(vec![
///     (Value::text("tool"), Value::text("mill")),
///     (Value::text("exit"), Value::int(0)),
/// ]);
/// let bytes = encode(&v).unwrap();
/// // Keys in bytewise order of their encodings: "exit" before "tool".
/// assert_eq!(&bytes[..6], &[0xa2, 0x64, b'e', b'x', b'i', b't']);
/// assert_eq!(decode(&bytes).unwrap().get("tool"), Some(&Value::text("mill")));
/// // 23 written in two bytes is CBOR, but not canonical.
/// assert!(decode(&[0x18, 0x17]).is_err());
/// ```
pub fn encode(v: &Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::new();
    encode_into(v, &mut out)?;
    Ok(out)
}

/// Appends the canonical encoding of `v` to `out` (for a caller that
/// writes an enclosing item's head itself).
pub fn encode_to(v: &Value, out: &mut Vec<u8>) -> Result<(), CborError> {
    encode_into(v, out)
}

/// Appends the head of an item of major type `major` (0-7) with argument
/// `arg`, in its shortest form.
pub fn head(major: u8, arg: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn encode_into(v: &Value, out: &mut Vec<u8>) -> Result<(), CborError> {
    match v {
        Value::Unsigned(n) => head(0, *n, out),
        Value::Negative(n) => head(1, *n, out),
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(3, t.len() as u64, out);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(4, items.len() as u64, out);
            for i in items {
                encode_into(i, out)?;
            }
        }
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                keyed.push((encode(k)?, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey {
                    key: diagnostic_key(&w[0].0),
                });
            }
            head(5, keyed.len() as u64, out);
            for (k, v) in keyed {
                out.extend_from_slice(&k);
                encode_into(v, out)?;
            }
        }
        Value::Tag(t, inner) => {
            head(6, *t, out);
            encode_into(inner, out)?;
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(x) => float(*x, out),
    }
    Ok(())
}

fn diagnostic_key(encoded: &[u8]) -> String {
    match decode(encoded) {
        Ok(Value::Text(t)) => format!("{t:?}"),
        Ok(Value::Unsigned(n)) => n.to_string(),
        Ok(Value::Negative(n)) => format!("-{}", n as u128 + 1),
        _ => format!("h'{}'", encoded.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// The shortest of half, single and double precision that holds `x`
/// exactly; NaN always as the half-precision quiet NaN.
fn float(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
    } else if let Some(h) = f16_exact(x) {
        out.push(0xf9);
        out.extend_from_slice(&h.to_be_bytes());
    } else if (x as f32) as f64 == x {
        out.push(0xfa);
        out.extend_from_slice(&(x as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&x.to_bits().to_be_bytes());
    }
}

/// The half-precision bits of `x` when it has them exactly (not NaN).
fn f16_exact(x: f64) -> Option<u16> {
    let f = x as f32;
    if f as f64 != x {
        return None;
    }
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if f.is_infinite() {
        return Some(sign | 0x7c00);
    }
    if f == 0.0 {
        return Some(sign);
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mant = bits & 0x7f_ffff;
    if exp > 15 || (bits >> 23) & 0xff == 0 {
        return None;
    }
    if exp >= -14 {
        // Normal: the mantissa must fit in 10 bits.
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((exp + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    // Subnormal half: value = k * 2^-24 with k < 1024.
    let full = mant | 0x80_0000;
    let shift = (-(exp + 1)) as u32;
    if shift >= 24 || full & ((1 << shift) - 1) != 0 {
        return None;
    }
    Some(sign | (full >> shift) as u16)
}

fn f16_value(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as f64;
    sign * match e {
        0 => m * 2f64.powi(-24),
        31 if m == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1024.0 + m) * 2f64.powi(e - 25),
    }
}

/// Decodes one canonical CBOR item that fills `bytes` exactly, rejecting
/// anything the encoder would not have written.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder { b: bytes, at: 0 };
    let v = d.item(0)?;
    if d.at != bytes.len() {
        return Err(CborError::TrailingBytes {
            extra: bytes.len() - d.at,
        });
    }
    Ok(v)
}

struct Decoder<'a> {
    b: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        if self.b.len() - self.at < n {
            return Err(CborError::Truncated { at: self.b.len() });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn not_canonical<T>(at: usize, what: impl Into<String>) -> Result<T, CborError> {
        Err(CborError::NotCanonical { at, what: what.into() })
    }

    fn invalid<T>(at: usize, what: impl Into<String>) -> Result<T, CborError> {
        Err(CborError::Invalid { at, what: what.into() })
    }

    /// The argument of a head with additional information `ai`, checked
    /// to be in its shortest form.
    fn argument(&mut self, start: usize, ai: u8) -> Result<u64, CborError> {
        let (n, min) = match ai {
            0..=23 => return Ok(ai as u64),
            24 => (1, 24u64),
            25 => (2, 1 << 8),
            26 => (4, 1 << 16),
            27 => (8, 1 << 32),
            31 => return Self::not_canonical(start, "indefinite length"),
            _ => return Self::invalid(start, format!("reserved additional information {ai}")),
        };
        let v = self.take(n)?.iter().fold(0u64, |a, b| (a << 8) | *b as u64);
        if v < min {
            return Self::not_canonical(start, format!("{v} not in its shortest form ({} bytes)", n + 1));
        }
        Ok(v)
    }

    fn length(&mut self, start: usize, ai: u8, each: usize) -> Result<usize, CborError> {
        let n = self.argument(start, ai)?;
        // Every element takes at least `each` bytes: a length the rest of
        // the input cannot hold is rejected before anything is allocated.
        let left = (self.b.len() - self.at) as u64;
        if n > left / each as u64 {
            return Err(CborError::Truncated { at: self.b.len() });
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let start = self.at;
        let ib = self.take(1)?[0];
        let (major, ai) = (ib >> 5, ib & 0x1f);
        if depth > MAX_DEPTH && matches!(major, 4..=6) {
            return Self::invalid(start, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(match major {
            0 => Value::Unsigned(self.argument(start, ai)?),
            1 => Value::Negative(self.argument(start, ai)?),
            2 => {
                let n = self.length(start, ai, 1)?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.length(start, ai, 1)?;
                let s = self.take(n)?;
                match std::str::from_utf8(s) {
                    Ok(t) => Value::Text(t.to_string()),
                    Err(e) => return Self::invalid(start, format!("text is not UTF-8 ({e})")),
                }
            }
            4 => {
                let n = self.length(start, ai, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.length(start, ai, 2)?;
                let mut entries = Vec::with_capacity(n);
                let mut prev: Option<(usize, usize)> = None;
                for _ in 0..n {
                    let k0 = self.at;
                    let k = self.item(depth + 1)?;
                    let key = (k0, self.at);
                    if let Some((p0, p1)) = prev {
                        match self.b[p0..p1].cmp(&self.b[key.0..key.1]) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Self::invalid(
                                    k0,
                                    format!("map key {} twice", diagnostic_key(&self.b[k0..key.1])),
                                )
                            }
                            std::cmp::Ordering::Greater => {
                                return Self::not_canonical(k0, "map keys out of bytewise order")
                            }
                        }
                    }
                    prev = Some(key);
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            6 => {
                let t = self.argument(start, ai)?;
                Value::Tag(t, Box::new(self.item(depth + 1)?))
            }
            _ => match ai {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25..=27 => {
                    let n = 1 << (ai - 24);
                    let raw = self.take(n)?;
                    let x = match n {
                        2 => f16_value(u16::from_be_bytes([raw[0], raw[1]])),
                        4 => f32::from_bits(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])) as f64,
                        _ => f64::from_bits(u64::from_be_bytes(raw.try_into().expect("8 bytes"))),
                    };
                    let mut canon = Vec::with_capacity(9);
                    float(x, &mut canon);
                    if canon != self.b[start..self.at] {
                        return Self::not_canonical(
                            start,
                            if x.is_nan() {
                                "NaN not written as f9 7e00".to_string()
                            } else {
                                format!("float {x} not in its shortest exact form")
                            },
                        );
                    }
                    Value::Float(x)
                }
                31 => return Self::invalid(start, "break outside an indefinite-length item"),
                24 => {
                    let s = self.take(1)?[0];
                    return Self::invalid(start, format!("simple value {s} is not used in records"));
                }
                28..=30 => return Self::invalid(start, format!("reserved additional information {ai}")),
                _ => return Self::invalid(start, format!("simple value {ai} is not used in records")),
            },
        })
    }
}

impl fmt::Display for Value {
    /// CBOR diagnostic notation (RFC 8949 §8), for errors and `aslctl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unsigned(n) => write!(f, "{n}"),
            Value::Negative(n) => write!(f, "-{}", *n as u128 + 1),
            Value::Bytes(b) => {
                write!(f, "h'")?;
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                write!(f, "'")
            }
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    write!(f, "{}{v}", if i > 0 { ", " } else { "" })?;
                }
                write!(f, "]")
            }
            Value::Map(entries) => {
                write!(f, "{{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    write!(f, "{}{k}: {v}", if i > 0 { ", " } else { "" })?;
                }
                write!(f, "}}")
            }
            Value::Tag(t, v) => write!(f, "{t}({v})"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => write!(f, "null"),
            Value::Float(x) if x.is_nan() => write!(f, "NaN"),
            Value::Float(x) if x.is_infinite() => write!(f, "{}Infinity", if *x < 0.0 { "-" } else { "" }),
            Value::Float(x) => write!(f, "{x:?}"),
        }
    }
}

#[cfg(test)]
mod tests;
