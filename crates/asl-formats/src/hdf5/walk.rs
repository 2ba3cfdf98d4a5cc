//! Walking an HDF5 file with the C library: each group, attribute and
//! dataset (type, shape, layout, filters, byte ranges, chunk index) as the
//! values of its `asl/hdf5-index` record.

use super::digest::{decoded, stored_element};
use super::*;

pub(super) struct Walk<'a> {
    pub(super) ranges: Vec<(u64, u64)>,
    pub(super) len: u64,
    pub(super) path: &'a Path,
    pub(super) groups: Vec<String>,
    pub(super) datasets: Vec<Value>,
    pub(super) digests: Vec<(String, ArtifactId)>,
    pub(super) undigested: Vec<String>,
    pub(super) group_attributes: Vec<(Value, Value)>,
    pub(super) chunks: usize,
}

impl Walk<'_> {
    pub(super) fn group(&mut self, g: &Group, prefix: &str) -> Result<(), RecordError> {
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
pub(super) fn attr_value(a: &hdf5::Attribute) -> Value {
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
