//! HDF5 artifacts (feature `hdf5`, over the HDF5 C library through
//! `hdf5-metno`): an `.h5` file is stored as an artifact like any other, and
//! an `asl/hdf5-index` record beside it says what it holds — every group,
//! every dataset's type, shape, layout, chunk shape, filters and
//! attributes, and where its bytes lie: for a contiguous dataset one byte
//! range, for a chunked one every stored chunk's grid offset and byte
//! range. Each range carries the BLAKE3 of its bytes as read back from the
//! stored artifact (verified like every read), so a chunk can later be
//! fetched by range and checked on its own, kerchunk-style.
//!
//! Byte ids cannot tell whether two HDF5 files hold the same data: the
//! same arrays written twice differ in timestamps, layout, chunking and
//! compression. So the index also carries a **logical digest** per
//! dataset — a hash over its canonical type, shape and attributes and its
//! decoded elements in C order, little-endian — and one per file over its
//! groups and its datasets' digests: equal for two files that hold the
//! same data however it was laid out.
//!
//! The structure is read from the file on disk by the HDF5 library; the
//! ranges are hashed in one sequential read of the file that also hashes
//! all of it, and count only if that hash is the stored artifact's id, so
//! a file that changed after it was stored is caught, not indexed.

use std::path::Path;

use hdf5::dataset::Layout;
use hdf5::{Dataset, Group, LocationType};

use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, RecordError};

/// The record type of HDF5 indexes.
pub use super::h5read::INDEX_TYPE;

/// What [`ingest`] stored.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// The file, as an artifact.
    pub file: ArtifactId,
    /// Its `asl/hdf5-index` record.
    pub index: ArtifactId,
    /// The file's logical digest (equal for files holding the same data).
    pub digest: ArtifactId,
    /// Datasets found.
    pub datasets: usize,
    /// Chunks indexed, over all datasets.
    pub chunks: usize,
}

fn h5err(path: &Path, e: hdf5::Error) -> RecordError {
    RecordError::Input(format!("{}: {e}", path.display()))
}

/// Stores the HDF5 file at `path` and its index record (uncommitted, like
/// any put). A file the HDF5 library cannot open is refused before
/// anything is written.
pub fn ingest(store: &Store, path: &Path) -> Result<Ingested, RecordError> {
    let file = hdf5::File::open(path).map_err(|e| h5err(path, e))?;
    let put = store.put_file_with(path, &asl_core::PutOptions::default(), &mut |_| {})?;
    let mut w = Walk {
        ranges: Vec::new(),
        len: put.len,
        path,
        groups: Vec::new(),
        datasets: Vec::new(),
        digests: Vec::new(),
        undigested: Vec::new(),
        group_attributes: Vec::new(),
        chunks: 0,
    };
    w.group(&file, "")?;
    let hashes = hash_ranges(path, &put.id, put.len, &w.ranges)?;
    let mut next = hashes.into_iter();
    let mut fill = |m: &mut Value| {
        if let Value::Map(entries) = m {
            for (k, v) in entries.iter_mut() {
                if k == &Value::text("blake3") {
                    *v = id_value(&next.next().expect("one hash per range"));
                }
            }
        }
    };
    // Ranges were noted in this order: each dataset's storage or chunks.
    for d in &mut w.datasets {
        let Value::Map(entries) = d else { continue };
        for (k, v) in entries.iter_mut() {
            match (k, v) {
                (Value::Text(k), v) if k == "storage" => fill(v),
                (Value::Text(k), Value::Array(chunks)) if k == "chunks" => chunks.iter_mut().for_each(&mut fill),
                _ => {}
            }
        }
    }
    let datasets = w.datasets.len();
    let stand_ins: Vec<(String, ArtifactId)> = w
        .datasets
        .iter()
        .filter_map(|d| match d.get("path") {
            Some(Value::Text(p)) if w.undigested.contains(p) => Some((p.clone(), stored_stand_in(d, &put.id))),
            _ => None,
        })
        .collect();
    let digest = file_digest(&w.groups, &w.digests, &stand_ins);
    let body = Value::Map(vec![
        (Value::text("subject"), id_value(&put.id)),
        (Value::text("size"), Value::Unsigned(put.len)),
        (Value::text("digest"), id_value(&digest)),
        (
            Value::text("undigested"),
            Value::Array(w.undigested.iter().map(Value::text).collect()),
        ),
        (
            Value::text("groups"),
            Value::Array(w.groups.iter().map(Value::text).collect()),
        ),
        (Value::text("datasets"), Value::Array(w.datasets)),
        (Value::text("group_attributes"), Value::Map(w.group_attributes)),
    ]);
    let index = records::put(store, &Record::new(INDEX_TYPE, 1, body))?.id;
    Ok(Ingested {
        file: put.id,
        index,
        digest,
        datasets,
        chunks: w.chunks,
    })
}

/// The BLAKE3 of each range (`addr`, `len`) of the file at `path`, in one
/// sequential read that also hashes the whole file: the ranges' hashes
/// count only if that equals `id`, the stored artifact's, which proves they
/// were taken from the stored bytes without reading them back out of the
/// store (a second, slower pass).
fn hash_ranges(path: &Path, id: &ArtifactId, len: u64, ranges: &[(u64, u64)]) -> Result<Vec<ArtifactId>, RecordError> {
    use rayon::prelude::*;
    use std::io::Read;
    let io = |e: std::io::Error| RecordError::Input(format!("{}: {e}", path.display()));
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].0);
    let mut hashers: Vec<Option<blake3::Hasher>> = vec![None; ranges.len()];
    let mut done: Vec<Option<ArtifactId>> = vec![None; ranges.len()];
    let mut whole = blake3::Hasher::new();
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 8 << 20];
    let (mut pos, mut next, mut open) = (0u64, 0usize, Vec::<usize>::new());
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let b = &buf[..n];
        let end = pos + n as u64;
        while next < order.len() && ranges[order[next]].0 < end {
            hashers[order[next]] = Some(blake3::Hasher::new());
            open.push(order[next]);
            next += 1;
        }
        // The ranges open in this buffer, each fed its part, on all cores
        // (beside the whole file's hash).
        let mut work: Vec<(usize, blake3::Hasher)> =
            open.iter().map(|&i| (i, hashers[i].take().expect("open"))).collect();
        rayon::join(
            || whole.update_rayon(b),
            || {
                work.par_iter_mut().for_each(|(i, h)| {
                    let (a, l) = ranges[*i];
                    let lo = a.max(pos);
                    let hi = (a + l).min(end);
                    if hi > lo {
                        h.update(&b[(lo - pos) as usize..(hi - pos) as usize]);
                    }
                })
            },
        );
        for (i, h) in work {
            if ranges[i].0 + ranges[i].1 <= end {
                done[i] = Some(ArtifactId::from_bytes(*h.finalize().as_bytes()));
            } else {
                hashers[i] = Some(h);
            }
        }
        open.retain(|&i| done[i].is_none());
        pos = end;
    }
    if pos != len || ArtifactId::from_bytes(*whole.finalize().as_bytes()) != *id {
        return Err(RecordError::Input(format!(
            "{}: changed while being ingested (it no longer hashes to {id})",
            path.display()
        )));
    }
    done.into_iter()
        .enumerate()
        .map(|(i, h)| {
            h.ok_or_else(|| {
                RecordError::Input(format!(
                    "{}: a range at {}+{} lies past the file's end",
                    path.display(),
                    ranges[i].0,
                    ranges[i].1
                ))
            })
        })
        .collect()
}

/// What stands in a file's digest for a dataset whose type has no logical
/// digest: the BLAKE3 of its stored bytes (its contiguous range, or its
/// chunks' offsets and hashes), or for compact storage the file's own id.
/// Layout-dependent, so two files that hold such a dataset compare equal
/// only when it is stored alike: the digest never claims an equality it
/// cannot see.
fn stored_stand_in(d: &Value, file: &ArtifactId) -> ArtifactId {
    if let Some(Value::Bytes(b)) = d.get("storage").and_then(|s| s.get("blake3")) {
        if let Ok(b) = <[u8; 32]>::try_from(b.as_slice()) {
            return ArtifactId::from_bytes(b);
        }
    }
    if let Some(c @ Value::Array(_)) = d.get("chunks") {
        let mut h = blake3::Hasher::new_derive_key("asl hdf5 stored chunks v1");
        h.update(&asl_records::cbor::encode(c).expect("no duplicate keys"));
        return ArtifactId::from_bytes(*h.finalize().as_bytes());
    }
    *file
}

/// The file's logical digest: its groups and its datasets' logical digests,
/// and, only when some dataset's type has none (listed in the index as
/// `undigested`), each such dataset's [`stored_stand_in`].
fn file_digest(groups: &[String], digests: &[(String, ArtifactId)], undigested: &[(String, ArtifactId)]) -> ArtifactId {
    let pairs = |v: &[(String, ArtifactId)]| {
        Value::Array(
            v.iter()
                .map(|(p, d)| Value::Array(vec![Value::text(p), id_value(d)]))
                .collect(),
        )
    };
    let mut v = vec![
        (
            Value::text("groups"),
            Value::Array(groups.iter().map(Value::text).collect()),
        ),
        (Value::text("datasets"), pairs(digests)),
    ];
    if !undigested.is_empty() {
        v.push((Value::text("undigested"), pairs(undigested)));
    }
    let v = Value::Map(v);
    let mut h = blake3::Hasher::new_derive_key("asl hdf5 file digest v1");
    h.update(&asl_records::cbor::encode(&v).expect("no duplicate keys"));
    ArtifactId::from_bytes(*h.finalize().as_bytes())
}

/// What digesting a dataset's elements found besides the digest.
struct Decoded {
    /// The canonical type: `<i4`, `<f8`, `|u1`, `|b1`...
    dtype: &'static str,
    /// The fill value (what unwritten elements read as), little-endian.
    fill: Option<Vec<u8>>,
    /// The elements in C order, little-endian, when asked for (compact
    /// datasets, at most 64 KiB).
    bytes: Option<Vec<u8>>,
    /// The logical digest.
    digest: Option<ArtifactId>,
}

/// Elements read per slab along the first dimension while digesting, so a
/// dataset of any size is digested in bounded memory.
const SLAB_BYTES: usize = 64 << 20;

/// Feeds `v` to `h` as little-endian bytes, through `buf` (and keeps them
/// in `keep` when asked).
fn feed<T: Copy, const N: usize>(
    v: &[T],
    le: impl Fn(T) -> [u8; N],
    h: &mut blake3::Hasher,
    buf: &mut Vec<u8>,
    keep: &mut Option<Vec<u8>>,
) {
    buf.clear();
    for x in v {
        buf.extend_from_slice(&le(*x));
    }
    if buf.len() > 1 << 20 {
        h.update_rayon(buf);
    } else {
        h.update(buf);
    }
    if let Some(k) = keep {
        k.extend_from_slice(buf);
    }
}

/// Reads `ds` slab by slab along its first dimension (whole when small or
/// scalar), handing each slab's elements, in C order, to `each`.
fn slabs<T: hdf5::H5Type>(ds: &Dataset, mut each: impl FnMut(&[T])) -> Option<()> {
    use hdf5::{Hyperslab, Selection, SliceOrIndex};
    let shape = ds.shape();
    let row: usize = shape.iter().skip(1).product::<usize>().max(1) * std::mem::size_of::<T>();
    if shape.is_empty() || shape[0] * row <= SLAB_BYTES {
        each(&ds.read_raw::<T>().ok()?);
        return Some(());
    }
    let rows = (SLAB_BYTES / row).max(1);
    let mut r0 = 0;
    while r0 < shape[0] {
        let n = rows.min(shape[0] - r0);
        let mut dims = vec![SliceOrIndex::SliceCount {
            start: r0,
            step: 1,
            count: n,
            block: 1,
        }];
        for &d in &shape[1..] {
            dims.push(SliceOrIndex::SliceCount {
                start: 0,
                step: 1,
                count: d,
                block: 1,
            });
        }
        let sel = Selection::from(Hyperslab::from(dims));
        let a = ds.read_slice::<T, _, ndarray::IxDyn>(sel).ok()?;
        each(a.as_slice()?);
        r0 += n;
    }
    Some(())
}

/// A dataset's logical digest: BLAKE3-derive-key over its canonical type,
/// shape and attributes (`head`), then its elements decoded, in C order,
/// little-endian, read slab by slab; with its fill value, and its elements
/// when `keep` (compact data). `None` for types without a canonical form
/// yet (strings, compounds, enums, arrays, references).
fn decoded(ds: &Dataset, attributes: &Value, keep: bool) -> Option<Decoded> {
    use hdf5::types::{FloatSize as F, IntSize as I, TypeDescriptor as T};
    let dcpl = ds.dcpl().ok();
    let start = |dtype: &str| -> Option<blake3::Hasher> {
        // The v1 digest named one-byte types `<i1`, `<u1` and booleans
        // `bool`: kept, so digests stay what they were.
        let named = match dtype {
            "|i1" => "<i1",
            "|u1" => "<u1",
            "|b1" => "bool",
            other => other,
        };
        let head = Value::Map(vec![
            (Value::text("dtype"), Value::text(named)),
            (
                Value::text("shape"),
                Value::Array(ds.shape().iter().map(|n| Value::Unsigned(*n as u64)).collect()),
            ),
            (Value::text("attributes"), attributes.clone()),
        ]);
        let head = asl_records::cbor::encode(&head).ok()?;
        let mut h = blake3::Hasher::new_derive_key("asl hdf5 dataset digest v1");
        h.update(&(head.len() as u64).to_le_bytes());
        h.update(&head);
        Some(h)
    };
    macro_rules! le {
        ($t:ty, $name:expr, $conv:expr) => {{
            let mut h = start($name)?;
            let mut buf = Vec::new();
            let mut kept = keep.then(Vec::new);
            slabs::<$t>(ds, |v| feed(v, $conv, &mut h, &mut buf, &mut kept))?;
            let fill = dcpl
                .as_ref()
                .and_then(|p| p.fill_value_as::<$t>())
                .map(|f| $conv(f).to_vec());
            Some(Decoded {
                dtype: $name,
                fill,
                bytes: kept,
                digest: Some(ArtifactId::from_bytes(*h.finalize().as_bytes())),
            })
        }};
        ($t:ty, $name:expr) => {
            le!($t, $name, <$t>::to_le_bytes)
        };
    }
    match ds.dtype().ok()?.to_descriptor().ok()? {
        T::Integer(I::U1) => le!(i8, "|i1"),
        T::Integer(I::U2) => le!(i16, "<i2"),
        T::Integer(I::U4) => le!(i32, "<i4"),
        T::Integer(I::U8) => le!(i64, "<i8"),
        T::Unsigned(I::U1) => le!(u8, "|u1"),
        T::Unsigned(I::U2) => le!(u16, "<u2"),
        T::Unsigned(I::U4) => le!(u32, "<u4"),
        T::Unsigned(I::U8) => le!(u64, "<u8"),
        T::Float(F::U4) => le!(f32, "<f4"),
        T::Float(F::U8) => le!(f64, "<f8"),
        T::Boolean => le!(bool, "|b1", |b: bool| [u8::from(b)]),
        // Variable-length text: each element its UTF-8 length (u64 LE) and
        // bytes, whichever character set the file declares.
        T::VarLenUnicode => strings(ds, start("str")?, |v: hdf5::types::VarLenUnicode| {
            v.as_str().as_bytes().to_vec()
        }),
        T::VarLenAscii => strings(ds, start("str")?, |v: hdf5::types::VarLenAscii| {
            v.as_str().as_bytes().to_vec()
        }),
        _ => None,
    }
}

/// The digest of a dataset of variable-length strings read as `T`.
fn strings<T: hdf5::H5Type>(ds: &Dataset, mut h: blake3::Hasher, text: impl Fn(T) -> Vec<u8>) -> Option<Decoded> {
    for v in ds.read_raw::<T>().ok()? {
        let b = text(v);
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    Some(Decoded {
        dtype: "str",
        fill: None,
        bytes: None,
        digest: Some(ArtifactId::from_bytes(*h.finalize().as_bytes())),
    })
}

/// The element type as stored in the file, numpy-style (`<i4`, `>f8`,
/// `|u1`): what a chunk's decoded bytes are. `None` for the types
/// [`decoded`] has no canonical form for.
fn stored_element(ds: &Dataset, canonical: &str) -> Option<String> {
    use hdf5::datatype::ByteOrder;
    if canonical.starts_with('|') {
        // One byte: no order. HDF5 stores booleans as a one-byte enum.
        return Some(canonical.to_string());
    }
    let order = match ds.dtype().ok()?.byte_order() {
        ByteOrder::LittleEndian => '<',
        ByteOrder::BigEndian => '>',
        _ => return None,
    };
    Some(format!("{order}{}", &canonical[1..]))
}

fn id_value(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

struct Walk<'a> {
    ranges: Vec<(u64, u64)>,
    len: u64,
    path: &'a Path,
    groups: Vec<String>,
    datasets: Vec<Value>,
    digests: Vec<(String, ArtifactId)>,
    undigested: Vec<String>,
    group_attributes: Vec<(Value, Value)>,
    chunks: usize,
}

impl Walk<'_> {
    fn group(&mut self, g: &Group, prefix: &str) -> Result<(), RecordError> {
        let here = if prefix.is_empty() {
            "/".to_string()
        } else {
            prefix.to_string()
        };
        let mut names = g.attr_names().map_err(|e| h5err(self.path, e))?;
        if !names.is_empty() {
            names.sort();
            let mut attrs = Vec::new();
            for a in names {
                let attr = g.attr(&a).map_err(|e| h5err(self.path, e))?;
                attrs.push((Value::text(&a), attr_value(&attr)));
            }
            self.group_attributes.push((Value::text(&here), Value::Map(attrs)));
        }
        self.groups.push(here);
        let mut names = g.member_names().map_err(|e| h5err(self.path, e))?;
        names.sort();
        for name in names {
            let full = format!("{prefix}/{name}");
            match g.loc_type_by_name(&name).map_err(|e| h5err(self.path, e))? {
                LocationType::Group => {
                    let sub = g.group(&name).map_err(|e| h5err(self.path, e))?;
                    self.group(&sub, &full)?;
                }
                LocationType::Dataset => {
                    let ds = g.dataset(&name).map_err(|e| h5err(self.path, e))?;
                    let v = self.dataset(&ds, &full)?;
                    self.datasets.push(v);
                }
                // Named datatypes hold no data.
                _ => {}
            }
        }
        Ok(())
    }

    /// Notes `len` bytes at `addr` of the file as a range to hash.
    fn range(&mut self, addr: u64, len: u64, what: &str) -> Result<Value, RecordError> {
        if addr.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(RecordError::Input(format!(
                "{}: {what} lies at {addr}+{len}, past the file's {} bytes (did it change while being read?)",
                self.path.display(),
                self.len
            )));
        }
        self.ranges.push((addr, len));
        Ok(Value::Map(vec![
            (Value::text("addr"), Value::Unsigned(addr)),
            (Value::text("size"), Value::Unsigned(len)),
            // Filled in by `hash_ranges` once the walk is done.
            (Value::text("blake3"), Value::Null),
        ]))
    }

    fn dataset(&mut self, ds: &Dataset, path: &str) -> Result<Value, RecordError> {
        let err = |e: hdf5::Error| h5err(self.path, e);
        let dtype = ds.dtype().map_err(err)?;
        let desc = dtype
            .to_descriptor()
            .map(|d| format!("{d:?}"))
            .unwrap_or_else(|_| "unsupported".into());
        let uints = |v: &[usize]| Value::Array(v.iter().map(|n| Value::Unsigned(*n as u64)).collect());
        let layout = ds.layout();
        let mut m = vec![
            (Value::text("path"), Value::text(path)),
            (Value::text("dtype"), Value::text(desc)),
            (Value::text("element_size"), Value::Unsigned(dtype.size() as u64)),
            (Value::text("shape"), uints(&ds.shape())),
            (
                Value::text("layout"),
                Value::text(match layout {
                    Layout::Compact => "compact",
                    Layout::Contiguous => "contiguous",
                    Layout::Chunked => "chunked",
                    _ => "virtual",
                }),
            ),
            (
                Value::text("filters"),
                Value::Array(ds.filters().iter().map(|f| Value::text(format!("{f:?}"))).collect()),
            ),
        ];
        if let Some(c) = ds.chunk() {
            m.push((Value::text("chunk_shape"), uints(&c)));
        }
        let mut attrs = Vec::new();
        let mut names = ds.attr_names().map_err(err)?;
        names.sort();
        for a in names {
            let attr = ds.attr(&a).map_err(err)?;
            attrs.push((Value::text(&a), attr_value(&attr)));
        }
        let attrs = Value::Map(attrs);
        let dec = decoded(ds, &attrs, layout == Layout::Compact);
        match dec.as_ref().and_then(|d| d.digest) {
            Some(d) => {
                m.push((Value::text("digest"), id_value(&d)));
                self.digests.push((path.to_string(), d));
            }
            None => self.undigested.push(path.to_string()),
        }
        m.push((Value::text("attributes"), attrs));
        if let Some(dec) = &dec {
            if let Some(e) = stored_element(ds, dec.dtype).filter(|_| dec.dtype != "str") {
                m.push((Value::text("element"), Value::text(e)));
            }
            if let Some(f) = &dec.fill {
                m.push((Value::text("fill"), Value::Bytes(f.clone())));
            }
            if let Some(b) = &dec.bytes {
                // Compact data lives in the object header, which has no
                // range of its own to point at; it is at most 64 KiB.
                m.push((Value::text("data"), Value::Bytes(b.clone())));
            }
        }
        match layout {
            Layout::Contiguous => {
                // Not allocated yet (never written): no range.
                if let Some(addr) = ds.offset() {
                    m.push((Value::text("storage"), self.range(addr, ds.storage_size(), path)?));
                }
            }
            Layout::Chunked => {
                let n = ds.num_chunks().unwrap_or(0);
                let mut chunks = Vec::with_capacity(n);
                for i in 0..n {
                    let Some(info) = ds.chunk_info(i) else {
                        return Err(RecordError::Input(format!(
                            "{}: {path}: chunk {i} of {n} has no info",
                            self.path.display()
                        )));
                    };
                    let Value::Map(mut c) = self.range(info.addr, info.size, &format!("{path} chunk {i}"))? else {
                        unreachable!("range returns a map")
                    };
                    c.insert(
                        0,
                        (
                            Value::text("offset"),
                            Value::Array(info.offset.iter().map(|o| Value::Unsigned(*o)).collect()),
                        ),
                    );
                    c.push((Value::text("filter_mask"), Value::Unsigned(u64::from(info.filter_mask))));
                    chunks.push(Value::Map(c));
                }
                self.chunks += chunks.len();
                m.push((Value::text("chunks"), Value::Array(chunks)));
            }
            // Compact data lives in the object header: no range of its own.
            _ => {}
        }
        Ok(Value::Map(m))
    }
}

/// An attribute's value when it is a scalar or short vector of numbers or a
/// string; otherwise its type, as text.
fn attr_value(a: &hdf5::Attribute) -> Value {
    use hdf5::types::{TypeDescriptor as T, VarLenUnicode};
    let Ok(desc) = a.dtype().and_then(|d| d.to_descriptor()) else {
        return Value::text("unsupported type");
    };
    let scalar = a.is_scalar();
    let nums = |v: Vec<f64>| {
        if scalar {
            v.first().map_or(Value::Null, |f| Value::Float(*f))
        } else {
            Value::Array(v.into_iter().map(Value::Float).collect())
        }
    };
    match &desc {
        T::Integer(_) | T::Unsigned(_) | T::Float(_) if a.size() <= 1024 => match a.read_raw::<f64>() {
            Ok(v) => nums(v),
            Err(_) => Value::text(format!("{desc:?}")),
        },
        T::VarLenUnicode if scalar => match a.read_scalar::<VarLenUnicode>() {
            Ok(s) => Value::text(s.as_str()),
            Err(_) => Value::text(format!("{desc:?}")),
        },
        _ => Value::text(format!("{desc:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_hashed_across_buffers_and_only_for_the_stored_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let bytes: Vec<u8> = (0..20u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&p, &bytes).unwrap();
        let id = ArtifactId::of(&bytes);
        // Inside one 8 MiB buffer, across one and two boundaries, empty,
        // the last byte, overlapping another, and given out of order.
        let ranges = [
            (100, 5000),
            ((8 << 20) - 10, 20),
            ((7 << 20) + 3, (10 << 20) + 7),
            (12345, 0),
            ((20 << 20) - 1, 1),
            (4000, 2000),
            (0, 1),
        ];
        let got = hash_ranges(&p, &id, bytes.len() as u64, &ranges).unwrap();
        for ((a, l), h) in ranges.iter().zip(&got) {
            assert_eq!(*h, ArtifactId::of(&bytes[*a as usize..(*a + *l) as usize]), "{a}+{l}");
        }
        // Not the stored bytes (changed since): refused, whatever the ranges.
        let other = ArtifactId::of(b"something else");
        let e = hash_ranges(&p, &other, bytes.len() as u64, &ranges).unwrap_err();
        assert!(e.to_string().contains("changed while being ingested"), "{e}");
        // A range past the end.
        let e = hash_ranges(&p, &id, bytes.len() as u64, &[(20 << 20, 1)]).unwrap_err();
        assert!(e.to_string().contains("past the file's end"), "{e}");
    }
}
