//! The logical digest of an HDF5 file: each dataset hashed over its type,
//! shape, attributes and decoded elements (read in slabs), so two files
//! holding the same data in other layouts or compressions digest alike.

use super::*;

/// The file's logical digest: its groups and its datasets' logical digests,
/// and, only when some dataset's type has none (listed in the index as
/// `undigested`), each such dataset's [`stored_stand_in`].
pub(super) fn file_digest(
    groups: &[String],
    digests: &[(String, ArtifactId)],
    undigested: &[(String, ArtifactId)],
) -> ArtifactId {
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
pub(super) struct Decoded {
    /// The canonical type: `<i4`, `<f8`, `|u1`, `|b1`...
    pub(super) dtype: &'static str,
    /// The fill value (what unwritten elements read as), little-endian.
    pub(super) fill: Option<Vec<u8>>,
    /// The elements in C order, little-endian, when asked for (compact
    /// datasets, at most 64 KiB).
    pub(super) bytes: Option<Vec<u8>>,
    /// The logical digest.
    pub(super) digest: Option<ArtifactId>,
}

/// Elements read per slab along the first dimension while digesting, so a
/// dataset of any size is digested in bounded memory.
pub(super) const SLAB_BYTES: usize = 64 << 20;

/// Feeds `v` to `h` as little-endian bytes, through `buf` (and keeps them
/// in `keep` when asked).
pub(super) fn feed<T: Copy, const N: usize>(
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
pub(super) fn slabs<T: hdf5::H5Type>(ds: &Dataset, mut each: impl FnMut(&[T])) -> Option<()> {
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
pub(super) fn decoded(ds: &Dataset, attributes: &Value, keep: bool) -> Option<Decoded> {
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
pub(super) fn strings<T: hdf5::H5Type>(
    ds: &Dataset,
    mut h: blake3::Hasher,
    text: impl Fn(T) -> Vec<u8>,
) -> Option<Decoded> {
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
pub(super) fn stored_element(ds: &Dataset, canonical: &str) -> Option<String> {
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
