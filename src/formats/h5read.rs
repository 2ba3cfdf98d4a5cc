//! Reading datasets back out of a stored HDF5 file through its
//! `asl/hdf5-index` record (feature `h5read`, pure Rust: no HDF5 library).
//! A selection touches only the chunks it needs: each is fetched with a
//! verified range read of the file artifact, checked against the BLAKE3 the
//! index recorded for it, and decoded (deflate, shuffle, fletcher32) here.
//! The elements come out in C order, little-endian, whatever order the file
//! stores them in, so the bytes equal the logical digest's.
//!
//! A selection is numpy's basic slicing, one part per dimension separated
//! by commas: `i` (one index, the dimension is dropped), `a:b`, `a:b:s`,
//! `:`; negative indices count from the end; missing trailing parts mean
//! the whole dimension. Negative steps are refused.

use std::collections::BTreeMap;

use crate::records::cbor::Value;
use crate::records::query::QueryIndex;
use crate::records::{self, Record, RecordError, Source};
use crate::{ArtifactId, Store};

/// The record type of HDF5 indexes (the same as `formats::hdf5::INDEX_TYPE`).
pub const INDEX_TYPE: &str = "asl/hdf5-index";

/// One dimension of a selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// One index: the dimension is dropped from the result.
    Index(i64),
    /// `start:stop:step`; a missing bound means the dimension's end.
    Range {
        /// First index (default 0).
        start: Option<i64>,
        /// One past the last (default the length).
        stop: Option<i64>,
        /// Step (default 1, never below 1).
        step: u64,
    },
}

/// Parses a selection such as `0:10,5,::2` (empty: everything).
pub fn parse_selection(s: &str) -> Result<Vec<Dim>, RecordError> {
    let bad = |why: String| RecordError::Input(format!("slice {s:?}: {why}"));
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let part = part.trim();
            let num = |t: &str| -> Result<Option<i64>, RecordError> {
                let t = t.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                t.parse().map(Some).map_err(|_| bad(format!("{t:?} is not an integer")))
            };
            let bits: Vec<&str> = part.split(':').collect();
            match bits.as_slice() {
                [i] => num(i)?
                    .map(Dim::Index)
                    .ok_or_else(|| bad("an empty part (write `:` for a whole dimension)".into())),
                [a, b] => Ok(Dim::Range {
                    start: num(a)?,
                    stop: num(b)?,
                    step: 1,
                }),
                [a, b, c] => {
                    let step = num(c)?.unwrap_or(1);
                    if step < 1 {
                        return Err(bad(format!("step {step}: only positive steps are supported")));
                    }
                    Ok(Dim::Range {
                        start: num(a)?,
                        stop: num(b)?,
                        step: step as u64,
                    })
                }
                _ => Err(bad(format!("{part:?} has more than two colons"))),
            }
        })
        .collect()
}

/// The indices `d` selects from a dimension of `n`, and whether it stays a
/// dimension of the result.
fn resolve(d: &Dim, n: u64, axis: usize) -> Result<(Vec<u64>, bool), RecordError> {
    let n_i = n as i64;
    let wrap = |i: i64| if i < 0 { i + n_i } else { i };
    match d {
        Dim::Index(i) => {
            let j = wrap(*i);
            if j < 0 || j >= n_i {
                return Err(RecordError::Input(format!(
                    "index {i} is out of bounds for axis {axis} of length {n}"
                )));
            }
            Ok((vec![j as u64], false))
        }
        Dim::Range { start, stop, step } => {
            let a = start.map_or(0, |s| wrap(s).clamp(0, n_i));
            let b = stop.map_or(n_i, |s| wrap(s).clamp(0, n_i));
            Ok(((a..b.max(a)).step_by(*step as usize).map(|i| i as u64).collect(), true))
        }
    }
}

/// A selection read out of a dataset.
#[derive(Clone, Debug)]
pub struct Array {
    /// The dataset's path.
    pub path: String,
    /// The element type, little-endian, numpy-style: `<i4`, `<f8`, `|u1`, `|b1`.
    pub dtype: String,
    /// The result's shape (dimensions selected by one index are dropped).
    pub shape: Vec<u64>,
    /// The elements in C order, little-endian.
    pub data: Vec<u8>,
    /// Stored chunks (or contiguous ranges) read from the store.
    pub chunks_read: usize,
    /// Bytes read from the store for them (before decoding).
    pub bytes_read: u64,
}

/// One element, for printing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Element {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Element::Int(v) => write!(f, "{v}"),
            Element::Uint(v) => write!(f, "{v}"),
            Element::Float(v) => write!(f, "{v}"),
            Element::Bool(v) => write!(f, "{v}"),
        }
    }
}

impl Array {
    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        self.dtype[2..].parse().unwrap_or(1)
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.element_size()
    }

    /// Whether the selection is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Element `i` (C order).
    pub fn element(&self, i: usize) -> Element {
        let es = self.element_size();
        let b = &self.data[i * es..(i + 1) * es];
        let mut w = [0u8; 8];
        w[..es].copy_from_slice(b);
        let u = u64::from_le_bytes(w);
        match self.dtype.as_bytes()[1] {
            b'b' => Element::Bool(u != 0),
            b'u' => Element::Uint(u),
            b'i' => {
                let shift = 64 - 8 * es as u32;
                Element::Int(((u << shift) as i64) >> shift)
            }
            _ if es == 4 => Element::Float(f64::from(f32::from_bits(u as u32))),
            _ => Element::Float(f64::from_bits(u)),
        }
    }
}

/// The `asl/hdf5-index` record for `id` and its id: `id` itself when it is
/// one, else the index whose subject is the file `id`.
pub fn index_of(store: &Store, query: &QueryIndex, id: &ArtifactId) -> Result<(ArtifactId, Record), RecordError> {
    if let Ok(r) = records::get(store as &dyn Source, id) {
        if r.type_name == INDEX_TYPE {
            return Ok((*id, r));
        }
    }
    for r in query.annotations_of(id)? {
        if let Ok(rec) = records::get(store as &dyn Source, &r) {
            if rec.type_name == INDEX_TYPE {
                return Ok((r, rec));
            }
        }
    }
    Err(RecordError::Input(format!(
        "{id} has no HDF5 index (store it with `aslctl h5 ingest`)"
    )))
}

fn uint(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Unsigned(n)) => Some(*n),
        _ => None,
    }
}

fn uints(v: Option<&Value>) -> Vec<u64> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| uint(Some(x))).collect(),
        _ => Vec::new(),
    }
}

fn bytes(v: Option<&Value>) -> Option<&[u8]> {
    match v {
        Some(Value::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

/// A stored byte range and the BLAKE3 the index recorded for it.
struct Stored {
    addr: u64,
    size: u64,
    blake3: ArtifactId,
    filter_mask: u64,
}

impl Stored {
    fn from(v: &Value) -> Option<Stored> {
        Some(Stored {
            addr: uint(v.get("addr"))?,
            size: uint(v.get("size"))?,
            blake3: ArtifactId::from_bytes(bytes(v.get("blake3"))?.try_into().ok()?),
            filter_mask: uint(v.get("filter_mask")).unwrap_or(0),
        })
    }
}

/// One chunk coordinate along a dimension, and the (output index, index
/// in the chunk) pairs the selection takes from it.
type ChunkPicks = (u64, Vec<(usize, usize)>);

/// What a read fetched, for the caller's statistics.
#[derive(Default)]
struct Fetched {
    count: usize,
    bytes: u64,
}

impl Fetched {
    /// Reads the chunk `s` from the file artifact, verified against the
    /// file's id by the store and against the BLAKE3 the index recorded.
    fn read(&mut self, store: &Store, file: &ArtifactId, s: &Stored, path: &str) -> Result<Vec<u8>, RecordError> {
        let b = store.read_range(file, s.addr, s.size)?;
        self.count += 1;
        self.bytes += b.len() as u64;
        if b.len() as u64 != s.size || ArtifactId::of(&b) != s.blake3 {
            return Err(RecordError::Input(format!(
                "{path}: the {} bytes at {} of {file} do not match the index's BLAKE3 (index and file disagree)",
                s.size, s.addr
            )));
        }
        Ok(b)
    }
}

/// Undoes the filter pipeline `filters` (in the order they were applied on
/// write) on one chunk; `mask` bit i set means filter i was skipped.
fn unfilter(mut b: Vec<u8>, filters: &[String], mask: u64, es: usize, path: &str) -> Result<Vec<u8>, RecordError> {
    for (i, f) in filters.iter().enumerate().rev() {
        if i < 64 && mask & (1 << i) != 0 {
            continue;
        }
        b = if f == "Shuffle" {
            unshuffle(&b, es)
        } else if f.starts_with("Deflate") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&b[..])
                .read_to_end(&mut out)
                .map_err(|e| RecordError::Input(format!("{path}: a deflate chunk does not decode: {e}")))?;
            out
        } else if f == "Fletcher32" {
            // The checksum trails the data; the bytes were already proven
            // against the BLAKE3 taken when the file was ingested.
            let n = b.len().saturating_sub(4);
            b.truncate(n);
            b
        } else {
            return Err(RecordError::Input(format!(
                "{path}: filter {f} is not supported here (supported: deflate, shuffle, fletcher32)"
            )));
        };
    }
    Ok(b)
}

/// HDF5's shuffle filter stores byte 0 of every element, then byte 1...
fn unshuffle(b: &[u8], es: usize) -> Vec<u8> {
    if es <= 1 {
        return b.to_vec();
    }
    let n = b.len() / es;
    let mut out = vec![0u8; b.len()];
    for k in 0..es {
        for (j, &x) in b[k * n..(k + 1) * n].iter().enumerate() {
            out[j * es + k] = x;
        }
    }
    // Bytes past the last whole element are left as they were.
    out[n * es..].copy_from_slice(&b[n * es..]);
    out
}

/// Calls `f` with every combination of indices into lists of `lens`, the
/// last varying fastest.
fn odometer(lens: &[usize], mut f: impl FnMut(&[usize])) {
    if lens.contains(&0) {
        return;
    }
    let mut at = vec![0usize; lens.len()];
    loop {
        f(&at);
        let mut d = lens.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            at[d] += 1;
            if at[d] < lens[d] {
                break;
            }
            at[d] = 0;
        }
    }
}

/// Reads the selection `sel` of dataset `path` from the file an index
/// record describes.
pub fn read(store: &Store, index: &Record, path: &str, sel: &[Dim]) -> Result<Array, RecordError> {
    let input = |why: String| RecordError::Input(format!("{path}: {why}"));
    let file = bytes(index.body.get("subject"))
        .and_then(|b| b.try_into().ok())
        .map(ArtifactId::from_bytes)
        .ok_or_else(|| input("the index has no subject".into()))?;
    let want = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let ds = match index.body.get("datasets") {
        Some(Value::Array(a)) => a.iter().find(|d| text(d.get("path")) == Some(&want)),
        _ => None,
    }
    .ok_or_else(|| input(format!("no such dataset in {file}")))?;
    let element = text(ds.get("element")).ok_or_else(|| {
        input(format!(
            "type {} has no element form here (numeric and boolean datasets can be read; an index written before elements were recorded needs `h5 ingest` again)",
            text(ds.get("dtype")).unwrap_or("?")
        ))
    })?;
    let es = uint(ds.get("element_size")).unwrap_or(0) as usize;
    if !(1..=8).contains(&es) {
        return Err(input(format!("element size {es} is not 1 to 8")));
    }
    let big_endian = element.starts_with('>');
    let shape = uints(ds.get("shape"));
    if sel.len() > shape.len() {
        return Err(input(format!(
            "{} slice parts for {} dimensions",
            sel.len(),
            shape.len()
        )));
    }
    let mut picks = Vec::with_capacity(shape.len());
    let mut out_shape = Vec::new();
    for (axis, &n) in shape.iter().enumerate() {
        let d = sel.get(axis).cloned().unwrap_or(Dim::Range {
            start: None,
            stop: None,
            step: 1,
        });
        let (idx, keep) = resolve(&d, n, axis)?;
        if keep {
            out_shape.push(idx.len() as u64);
        }
        picks.push(idx);
    }
    let count = picks
        .iter()
        .try_fold(1usize, |a, p| a.checked_mul(p.len()))
        .and_then(|n| n.checked_mul(es))
        .ok_or_else(|| input("the selection is too large".into()))?;
    let fill = match bytes(ds.get("fill")) {
        Some(f) if f.len() == es => f.to_vec(),
        _ => vec![0u8; es],
    };
    let mut data = Vec::with_capacity(count);
    for _ in 0..count / es {
        data.extend_from_slice(&fill);
    }
    // Output strides, over every dimension (dropped ones have length 1).
    let mut ostride = vec![0usize; picks.len()];
    let mut acc = 1usize;
    for d in (0..picks.len()).rev() {
        ostride[d] = acc;
        acc *= picks[d].len();
    }
    let put = |data: &mut Vec<u8>, o: usize, src: &[u8], swap: bool| {
        let dst = &mut data[o * es..(o + 1) * es];
        dst.copy_from_slice(src);
        if swap {
            dst.reverse();
        }
    };
    let mut fetched = Fetched::default();
    let filters: Vec<String> = match ds.get("filters") {
        Some(Value::Array(a)) => a.iter().filter_map(|f| text(Some(f)).map(String::from)).collect(),
        _ => Vec::new(),
    };
    let layout = text(ds.get("layout")).unwrap_or("");
    let lens: Vec<usize> = picks.iter().map(Vec::len).collect();
    match layout {
        "contiguous" | "compact" => {
            let mut stride = vec![1u64; shape.len()];
            for d in (0..shape.len().saturating_sub(1)).rev() {
                stride[d] = stride[d + 1] * shape[d + 1];
            }
            let linear = |at: &[usize]| -> u64 { at.iter().enumerate().map(|(d, &i)| picks[d][i] * stride[d]).sum() };
            if count == 0 {
                // Nothing selected.
            } else if layout == "compact" {
                let src = bytes(ds.get("data")).ok_or_else(|| input("the index holds no compact data".into()))?;
                // Compact data is recorded decoded, little-endian.
                odometer(&lens, |at| {
                    let l = linear(at) as usize * es;
                    let o: usize = at.iter().zip(&ostride).map(|(i, s)| i * s).sum();
                    if let Some(b) = src.get(l..l + es) {
                        put(&mut data, o, b, false);
                    }
                });
            } else if let Some(s) = ds.get("storage").and_then(Stored::from) {
                // Only the span from the first selected element to the last.
                let first = linear(&vec![0; lens.len()]);
                let last = linear(&lens.iter().map(|n| n - 1).collect::<Vec<_>>());
                let span = Stored {
                    addr: s.addr + first * es as u64,
                    size: (last - first + 1) * es as u64,
                    blake3: s.blake3,
                    filter_mask: 0,
                };
                if span.addr + span.size > s.addr + s.size {
                    return Err(input("the selection lies past the dataset's storage".into()));
                }
                let b = store.read_range(&file, span.addr, span.size)?;
                fetched.count += 1;
                fetched.bytes += b.len() as u64;
                if (b.len() as u64) < span.size {
                    return Err(input(format!("{file} ends inside the dataset's storage")));
                }
                odometer(&lens, |at| {
                    let l = ((linear(at) - first) as usize) * es;
                    let o: usize = at.iter().zip(&ostride).map(|(i, s)| i * s).sum();
                    put(&mut data, o, &b[l..l + es], big_endian);
                });
            }
            // Contiguous storage never allocated: every element is the fill.
        }
        "chunked" => {
            let cs = uints(ds.get("chunk_shape"));
            if cs.len() != shape.len() || cs.contains(&0) {
                return Err(input("the index's chunk shape does not fit the dataset".into()));
            }
            let mut chunks: BTreeMap<Vec<u64>, Stored> = BTreeMap::new();
            if let Some(Value::Array(a)) = ds.get("chunks") {
                for c in a {
                    let s = Stored::from(c).ok_or_else(|| input("a chunk entry is malformed".into()))?;
                    chunks.insert(uints(c.get("offset")), s);
                }
            }
            // Per dimension: chunk coordinate → [(output index, index in chunk)].
            let per_dim: Vec<Vec<ChunkPicks>> = picks
                .iter()
                .zip(&cs)
                .map(|(idx, &c)| {
                    let mut m: BTreeMap<u64, Vec<(usize, usize)>> = BTreeMap::new();
                    for (o, &i) in idx.iter().enumerate() {
                        m.entry(i / c).or_default().push((o, (i % c) as usize));
                    }
                    m.into_iter().collect()
                })
                .collect();
            let mut cstride = vec![1usize; cs.len()];
            for d in (0..cs.len().saturating_sub(1)).rev() {
                cstride[d] = cstride[d + 1] * cs[d + 1] as usize;
            }
            let chunk_bytes = cs.iter().product::<u64>() as usize * es;
            let grid: Vec<usize> = per_dim.iter().map(Vec::len).collect();
            let mut failure = None;
            odometer(&grid, |g| {
                if failure.is_some() {
                    return;
                }
                let offset: Vec<u64> = g.iter().enumerate().map(|(d, &k)| per_dim[d][k].0 * cs[d]).collect();
                let Some(s) = chunks.get(&offset) else {
                    return; // Never written: the fill value stands.
                };
                let raw = match fetched.read(store, &file, s, &want) {
                    Ok(b) => b,
                    Err(e) => return failure = Some(e),
                };
                let dec = match unfilter(raw, &filters, s.filter_mask, es, &want) {
                    Ok(b) => b,
                    Err(e) => return failure = Some(e),
                };
                if dec.len() < chunk_bytes {
                    failure = Some(input(format!(
                        "chunk {offset:?} decodes to {} bytes, not {chunk_bytes}",
                        dec.len()
                    )));
                    return;
                }
                let lists: Vec<&Vec<(usize, usize)>> = g.iter().enumerate().map(|(d, &k)| &per_dim[d][k].1).collect();
                let inner: Vec<usize> = lists.iter().map(|l| l.len()).collect();
                odometer(&inner, |at| {
                    let mut o = 0;
                    let mut l = 0;
                    for (d, &i) in at.iter().enumerate() {
                        let (oi, ci) = lists[d][i];
                        o += oi * ostride[d];
                        l += ci * cstride[d];
                    }
                    put(&mut data, o, &dec[l * es..(l + 1) * es], big_endian);
                });
            });
            if let Some(e) = failure {
                return Err(e);
            }
        }
        other => return Err(input(format!("layout {other} cannot be read here"))),
    }
    let dtype = if element.starts_with('|') {
        element.to_string()
    } else {
        format!("<{}", &element[1..])
    };
    Ok(Array {
        path: want,
        dtype,
        shape: out_shape,
        data,
        chunks_read: fetched.count,
        bytes_read: fetched.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_like_numpy() {
        let r = |a: Option<i64>, b: Option<i64>, s: u64| Dim::Range {
            start: a,
            stop: b,
            step: s,
        };
        assert_eq!(parse_selection("").unwrap(), vec![]);
        assert_eq!(
            parse_selection("3, 1:4, ::2, -2:").unwrap(),
            vec![
                Dim::Index(3),
                r(Some(1), Some(4), 1),
                r(None, None, 2),
                r(Some(-2), None, 1)
            ]
        );
        for bad in ["1:2:0", "a", "1:2:3:4", "1,,2", "::-1"] {
            assert!(parse_selection(bad).is_err(), "{bad}");
        }
        assert_eq!(resolve(&r(Some(-3), None, 1), 10, 0).unwrap().0, vec![7, 8, 9]);
        assert_eq!(resolve(&r(Some(2), Some(100), 3), 10, 0).unwrap().0, vec![2, 5, 8]);
        assert_eq!(resolve(&r(Some(5), Some(2), 1), 10, 0).unwrap().0, Vec::<u64>::new());
        assert!(resolve(&Dim::Index(10), 10, 0).is_err());
        assert_eq!(resolve(&Dim::Index(-1), 10, 0).unwrap(), (vec![9], false));
    }

    #[test]
    fn unshuffle_inverts_hdf5_shuffle() {
        let plain: Vec<u8> = (0..24).collect();
        let es = 4;
        let n = plain.len() / es;
        let mut shuffled = vec![0; plain.len()];
        for j in 0..n {
            for k in 0..es {
                shuffled[k * n + j] = plain[j * es + k];
            }
        }
        assert_eq!(unshuffle(&shuffled, es), plain);
    }

    #[test]
    fn elements_decode_by_type() {
        let a = |dtype: &str, data: Vec<u8>| Array {
            path: "/x".into(),
            dtype: dtype.into(),
            shape: vec![1],
            data,
            chunks_read: 0,
            bytes_read: 0,
        };
        assert_eq!(a("<i2", (-5i16).to_le_bytes().to_vec()).element(0), Element::Int(-5));
        assert_eq!(a("|u1", vec![200]).element(0), Element::Uint(200));
        assert_eq!(a("<f4", 1.5f32.to_le_bytes().to_vec()).element(0), Element::Float(1.5));
        assert_eq!(a("|b1", vec![1]).element(0), Element::Bool(true));
    }
}
