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
mod digest;
use digest::file_digest;

mod walk;
use walk::Walk;

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
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path().join("store"))?;
/// let path = dir.path().join("run.h5");
/// let file = hdf5::File::create(&path).unwrap();
/// let temps = [11.5f64, 12.0, 12.25, 13.0];
/// file.new_dataset_builder().with_data(&temps).create("temperature").unwrap();
/// drop(file);
///
/// let stored = asl_formats::hdf5::ingest(&store, &path)?;
/// assert_eq!(stored.datasets, 1);
/// // Read back without the C library, each chunk proven against the file's id.
/// let index = asl_records::get(&store, &stored.index)?;
/// let all = asl_formats::h5read::read(&store, &index, "/temperature", &[])?;
/// assert_eq!((all.dtype.as_str(), all.shape.clone()), ("<f8", vec![4]));
/// assert_eq!(&all.data[8..16], &12.0f64.to_le_bytes());
/// # Ok::<(), asl_records::RecordError>(())
/// ```
pub fn ingest(store: &Store, path: &Path) -> Result<Ingested, RecordError> {
    let file = hdf5::File::open(path).map_err(|e| h5err(path, e))?;
    let put = store.put_file_with(path, &asl_core::PutOptions::default())?;
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

fn id_value(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
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
