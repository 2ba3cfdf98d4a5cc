//! Reading datasets back out of a stored HDF5 file through its
//! `asl/hdf5-index` record (feature `h5read`, pure Rust: no HDF5 library).
//! A selection touches only the chunks it needs: each is fetched with a
//! verified range read of the file artifact (every byte proven against the
//! file's id) and decoded (deflate, shuffle, fletcher32) here. The index's
//! per-chunk BLAKE3 is for readers that fetch ranges from elsewhere.
//! The elements come out in C order, little-endian, whatever order the file
//! stores them in, so the bytes equal the logical digest's.
//!
//! A selection is numpy's basic slicing, one part per dimension separated
//! by commas: `i` (one index, the dimension is dropped), `a:b`, `a:b:s`,
//! `:`; negative indices count from the end; missing trailing parts mean
//! the whole dimension. Negative steps are refused.

use std::collections::BTreeMap;

use asl_core::{ArtifactId, ArtifactReader, Store};
use asl_records::cbor::Value;
use asl_records::query::QueryIndex;
use asl_records::{self as records, Record, RecordError, Source};

mod filters;
mod select;

use filters::unfilter;
use select::{copy_runs, odometer, resolve, split, Pick, Run};
pub use select::{parse_selection, Dim};

/// The record type of HDF5 indexes (the same as `formats::hdf5::INDEX_TYPE`).
pub const INDEX_TYPE: &str = "asl/hdf5-index";

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

/// A stored byte range and the filters skipped for it.
struct Stored {
    addr: u64,
    size: u64,
    filter_mask: u64,
}

impl Stored {
    fn from(v: &Value) -> Option<Stored> {
        Some(Stored {
            addr: uint(v.get("addr"))?,
            size: uint(v.get("size"))?,
            filter_mask: uint(v.get("filter_mask")).unwrap_or(0),
        })
    }
}

/// What a read fetched, for the caller's statistics.
#[derive(Default)]
struct Fetched {
    count: usize,
    bytes: u64,
}

/// Reads `size` bytes at `addr` of the file through `bytes`: every byte
/// proven against the file's id by the store (so the index's BLAKE3 of the
/// range, taken from these same stored bytes at ingest, needs no second
/// hashing here; it is there for readers that fetch ranges elsewhere).
fn fetch(bytes: &mut ArtifactReader, addr: u64, size: u64, what: &str) -> Result<Vec<u8>, RecordError> {
    use std::io::Read;
    bytes.read_range_at(addr, size)?;
    let mut b = vec![0u8; size as usize];
    match bytes.read_exact(&mut b) {
        Ok(()) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(RecordError::Input(format!(
            "{what}: {size} bytes at {addr} run past the end of the file ({} bytes)",
            bytes.len()
        ))),
        Err(e) => Err(asl_core::Error::from_reader_io(e).into()),
    }
}

/// Reads the selection `sel` of dataset `path` from the file an index
/// record describes (one read: see [`Reader`] for many).
pub fn read(store: &Store, index: &Record, path: &str, sel: &[Dim]) -> Result<Array, RecordError> {
    Reader::open(store, index)?.read(path, sel)
}

/// A stored HDF5 file opened for reading through its index: the file
/// artifact is opened once (for a large one, its chunk tree read and its
/// chunks located), so each later read costs only the chunks it touches.
pub struct Reader<'a> {
    index: &'a Record,
    file: ArtifactId,
    bytes: ArtifactReader,
}

impl<'a> Reader<'a> {
    /// Opens the file the index record `index` describes.
    pub fn open(store: &Store, index: &'a Record) -> Result<Reader<'a>, RecordError> {
        if index.type_name != INDEX_TYPE {
            return Err(RecordError::Input(format!(
                "a {} record is not an {INDEX_TYPE}",
                index.type_name
            )));
        }
        let file = bytes(index.body.get("subject"))
            .and_then(|b| b.try_into().ok())
            .map(ArtifactId::from_bytes)
            .ok_or_else(|| RecordError::Input("the index has no subject".into()))?;
        Ok(Reader {
            index,
            file,
            bytes: store.open_reader(&file)?,
        })
    }

    /// Reads the selection `sel` of dataset `path`.
    pub fn read(&mut self, path: &str, sel: &[Dim]) -> Result<Array, RecordError> {
        read_with(self, path, sel)
    }
}

fn read_with(r: &mut Reader<'_>, path: &str, sel: &[Dim]) -> Result<Array, RecordError> {
    let input = |why: String| RecordError::Input(format!("{path}: {why}"));
    let (index, file) = (r.index, r.file);
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
    let sel = Selection::of(ds, element, &want, sel, &input)?;
    let fill = match bytes(ds.get("fill")) {
        Some(f) if f.len() == sel.es => f.to_vec(),
        _ => vec![0u8; sel.es],
    };
    let mut data = if fill.iter().all(|b| *b == 0) {
        vec![0u8; sel.count]
    } else {
        fill.repeat(sel.count / sel.es)
    };
    let mut fetched = Fetched::default();
    match text(ds.get("layout")).unwrap_or("") {
        layout @ ("contiguous" | "compact") => {
            read_contiguous(r, ds, layout == "compact", &sel, &mut data, &mut fetched, &input)?
        }
        "chunked" => read_chunked(r, ds, &sel, &mut data, &mut fetched, &input)?,
        other => return Err(input(format!("layout {other} cannot be read here"))),
    }
    let dtype = if element.starts_with('|') {
        element.to_string()
    } else {
        format!("<{}", &element[1..])
    };
    let shape = sel.out_shape;
    Ok(Array {
        path: want,
        dtype,
        shape,
        data,
        chunks_read: fetched.count,
        bytes_read: fetched.bytes,
    })
}

/// A read's selection resolved against its dataset.
struct Selection<'a> {
    /// The dataset's path, for messages.
    want: &'a str,
    /// Bytes per element.
    es: usize,
    big_endian: bool,
    /// The dataset's shape.
    shape: Vec<u64>,
    /// What is picked along each dimension.
    picks: Vec<Pick>,
    /// The result's shape (dimensions picked by a single index dropped).
    out_shape: Vec<u64>,
    /// Bytes selected.
    count: usize,
    /// Output strides, over every dimension (dropped ones have length 1).
    ostride: Vec<usize>,
}

impl<'a> Selection<'a> {
    fn of(
        ds: &Value,
        element: &str,
        want: &'a str,
        sel: &[Dim],
        input: &dyn Fn(String) -> RecordError,
    ) -> Result<Selection<'a>, RecordError> {
        let es = uint(ds.get("element_size")).unwrap_or(0) as usize;
        if !(1..=8).contains(&es) {
            return Err(input(format!("element size {es} is not 1 to 8")));
        }
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
            let p = resolve(&d, n, axis)?;
            if p.keep {
                out_shape.push(p.count);
            }
            picks.push(p);
        }
        let count = picks
            .iter()
            .try_fold(1usize, |a, p| a.checked_mul(usize::try_from(p.count).ok()?))
            .and_then(|n| n.checked_mul(es))
            .ok_or_else(|| input("the selection is too large".into()))?;
        let mut ostride = vec![0usize; picks.len()];
        let mut acc = 1usize;
        for d in (0..picks.len()).rev() {
            ostride[d] = acc;
            acc *= picks[d].count as usize;
        }
        Ok(Selection {
            want,
            es,
            big_endian: element.starts_with('>'),
            shape,
            picks,
            out_shape,
            count,
            ostride,
        })
    }
}

/// Reads a selection of a contiguous or compact dataset into `data`.
fn read_contiguous(
    r: &mut Reader<'_>,
    ds: &Value,
    compact: bool,
    sel: &Selection<'_>,
    data: &mut [u8],
    fetched: &mut Fetched,
    input: &dyn Fn(String) -> RecordError,
) -> Result<(), RecordError> {
    let mut stride = vec![1u64; sel.shape.len()];
    for d in (0..sel.shape.len().saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * sel.shape[d + 1];
    }
    // The linear index of the first and of the last element selected.
    let first: u64 = sel.picks.iter().zip(&stride).map(|(p, s)| p.start * s).sum();
    let last: u64 = sel
        .picks
        .iter()
        .zip(&stride)
        .map(|(p, s)| (p.start + p.count.saturating_sub(1) * p.step) * s)
        .sum();
    let sstride: Vec<usize> = stride.iter().map(|&x| x as usize).collect();
    if sel.count == 0 {
        // Nothing selected.
    } else if compact {
        let src = bytes(ds.get("data")).ok_or_else(|| input("the index holds no compact data".into()))?;
        // Compact data is recorded decoded, little-endian.
        let need = (last as usize + 1) * sel.es;
        if src.len() < need {
            return Err(input(format!(
                "the index's compact data is {} bytes, short of {need}",
                src.len()
            )));
        }
        let runs: Vec<Run> = sel
            .picks
            .iter()
            .map(|p| Run {
                out: 0,
                at: p.start as usize,
                n: p.count as usize,
                step: p.step as usize,
            })
            .collect();
        copy_runs(&runs, &sel.ostride, &sstride, sel.es, false, src, data);
    } else if let Some(s) = ds.get("storage").and_then(Stored::from) {
        // Only the span from the first selected element to the last.
        let span = Stored {
            addr: s.addr + first * sel.es as u64,
            size: (last - first + 1) * sel.es as u64,
            filter_mask: 0,
        };
        if span.addr + span.size > s.addr + s.size {
            return Err(input("the selection lies past the dataset's storage".into()));
        }
        let b = fetch(&mut r.bytes, span.addr, span.size, sel.want)?;
        fetched.count += 1;
        fetched.bytes += b.len() as u64;
        // Positions relative to the span's first element.
        let runs: Vec<Run> = sel
            .picks
            .iter()
            .map(|p| Run {
                out: 0,
                at: 0,
                n: p.count as usize,
                step: p.step as usize,
            })
            .collect();
        copy_runs(&runs, &sel.ostride, &sstride, sel.es, sel.big_endian, &b, data);
    }
    // Contiguous storage never allocated: every element is the fill.
    Ok(())
}

/// Reads a selection of a chunked dataset into `data`: only the chunks it
/// touches, each verified, decoded and copied from.
fn read_chunked(
    r: &mut Reader<'_>,
    ds: &Value,
    sel: &Selection<'_>,
    data: &mut [u8],
    fetched: &mut Fetched,
    input: &dyn Fn(String) -> RecordError,
) -> Result<(), RecordError> {
    let filters: Vec<String> = match ds.get("filters") {
        Some(Value::Array(a)) => a.iter().filter_map(|f| text(Some(f)).map(String::from)).collect(),
        _ => Vec::new(),
    };
    let cs = uints(ds.get("chunk_shape"));
    if cs.len() != sel.shape.len() || cs.contains(&0) {
        return Err(input("the index's chunk sel.shape does not fit the dataset".into()));
    }
    let mut chunks: BTreeMap<Vec<u64>, Stored> = BTreeMap::new();
    if let Some(Value::Array(a)) = ds.get("chunks") {
        for c in a {
            let s = Stored::from(c).ok_or_else(|| input("a chunk entry is malformed".into()))?;
            chunks.insert(uints(c.get("offset")), s);
        }
    }
    // Per dimension: each chunk coordinate touched and its run.
    let per_dim: Vec<Vec<(u64, Run)>> = sel.picks.iter().zip(&cs).map(|(p, &c)| split(p, c)).collect();
    let mut cstride = vec![1usize; cs.len()];
    for d in (0..cs.len().saturating_sub(1)).rev() {
        cstride[d] = cstride[d + 1] * cs[d + 1] as usize;
    }
    let chunk_bytes = cs.iter().product::<u64>() as usize * sel.es;
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
        let raw = match fetch(&mut r.bytes, s.addr, s.size, sel.want) {
            Ok(b) => b,
            Err(e) => return failure = Some(e),
        };
        fetched.count += 1;
        fetched.bytes += raw.len() as u64;
        let dec = match unfilter(raw, &filters, s.filter_mask, sel.es, sel.want) {
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
        let runs: Vec<Run> = g.iter().enumerate().map(|(d, &k)| per_dim[d][k].1).collect();
        copy_runs(&runs, &sel.ostride, &cstride, sel.es, sel.big_endian, &dec, data);
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
