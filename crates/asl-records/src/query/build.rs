//! A rebuild of the query index: every live artifact read (in the order
//! its bytes lie, on all cores), the rows of the records among them sorted
//! in runs that spill to scratch files, and the runs merged into each empty
//! partition as one sorted stream (fjall writes that straight into sorted
//! segments, with no memtable or journal in between). Memory stays that of
//! one run whatever the store's size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fjall::Keyspace;
use rayon::prelude::*;

use super::{read_record, rows, subject_key, Refresh};
use crate::RecordError;
use asl_core::{ArtifactId, Store};

/// Artifacts read at a time (on all cores).
const READ_BATCH: usize = 4096;

/// Bytes of rows held before they are sorted and spilled as a run.
pub const RUN_BYTES: usize = 64 << 20;

fn io_err(what: &str, p: &Path, e: std::io::Error) -> RecordError {
    RecordError::Store(asl_core::Error::io(format!("{what} {}", p.display()), e))
}

/// A key and its value.
type Kv = (Vec<u8>, Vec<u8>);

/// One partition's rows: held, then spilled to sorted runs.
struct Sink {
    rows: Vec<Kv>,
    bytes: usize,
    runs: Vec<PathBuf>,
}

impl Sink {
    fn new() -> Self {
        Sink {
            rows: Vec::new(),
            bytes: 0,
            runs: Vec::new(),
        }
    }

    fn push(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.bytes += k.len() + v.len() + 48;
        self.rows.push((k, v));
    }

    fn spill(&mut self, dir: &Path, name: &str) -> Result<(), RecordError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let p = dir.join(format!("{name}-{}", self.runs.len()));
        let f = File::create(&p).map_err(|e| io_err("create", &p, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        for (k, v) in self.rows.drain(..) {
            let r = w
                .write_all(&(k.len() as u32).to_le_bytes())
                .and_then(|_| w.write_all(&k))
                .and_then(|_| w.write_all(&(v.len() as u32).to_le_bytes()))
                .and_then(|_| w.write_all(&v));
            r.map_err(|e| io_err("write", &p, e))?;
        }
        w.flush().map_err(|e| io_err("write", &p, e))?;
        self.bytes = 0;
        self.runs.push(p);
        Ok(())
    }

    /// Merges the runs (and what is still held) into `part`, empty.
    fn ingest(mut self, dir: &Path, name: &str, part: &Keyspace) -> Result<(), RecordError> {
        if self.runs.is_empty() {
            // Everything fits in memory: no scratch file at all.
            self.rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if !self.rows.is_empty() {
                ingest(part, self.rows.into_iter())?;
            }
            return Ok(());
        }
        self.spill(dir, name)?;
        let mut readers = Vec::new();
        for p in &self.runs {
            let f = File::open(p).map_err(|e| io_err("open", p, e))?;
            readers.push((BufReader::with_capacity(1 << 20, f), p.clone()));
        }
        let mut failed: Option<RecordError> = None;
        let mut heap = BinaryHeap::new();
        for (i, (r, p)) in readers.iter_mut().enumerate() {
            match next_row(r, p) {
                Ok(Some((k, v))) => heap.push(Reverse((k, i, v))),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        let merged = std::iter::from_fn(|| {
            let Reverse((k, i, v)) = heap.pop()?;
            let (r, p) = &mut readers[i];
            match next_row(r, p) {
                Ok(Some((nk, nv))) => heap.push(Reverse((nk, i, nv))),
                Ok(None) => {}
                Err(e) => {
                    // Stops the stream; the error is reported after.
                    failed = Some(e);
                    heap.clear();
                }
            }
            Some((k, v))
        });
        ingest(part, merged)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Writes `rows`, in key order, into the empty keyspace `part` as sorted
/// segments (fjall's bulk load: no journal, no memtable).
fn ingest(part: &Keyspace, rows: impl Iterator<Item = Kv>) -> Result<(), RecordError> {
    let mut ing = part.start_ingestion().map_err(super::db_err)?;
    for (k, v) in rows {
        ing.write(k, v).map_err(super::db_err)?;
    }
    ing.finish().map_err(super::db_err)
}

fn next_row(r: &mut impl Read, p: &Path) -> Result<Option<Kv>, RecordError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_err("read", p, e)),
    }
    let mut k = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut k).map_err(|e| io_err("read", p, e))?;
    r.read_exact(&mut len).map_err(|e| io_err("read", p, e))?;
    let mut v = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut v).map_err(|e| io_err("read", p, e))?;
    Ok(Some((k, v)))
}

/// Fills the empty `keys`, `by_record` and `subjects` partitions from the
/// records in `store`, using `scratch` (made and removed here) for runs.
pub(super) fn rebuild(
    store: &Store,
    scratch: &Path,
    parts: [&Keyspace; 3],
    run_bytes: usize,
) -> Result<Refresh, RecordError> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| io_err("create", scratch, e))?;
    let r = fill(store, scratch, parts, run_bytes);
    let _ = std::fs::remove_dir_all(scratch);
    r
}

fn fill(store: &Store, scratch: &Path, parts: [&Keyspace; 3], run_bytes: usize) -> Result<Refresh, RecordError> {
    let mut r = Refresh {
        rebuilt: true,
        ..Refresh::default()
    };
    let names = ["keys", "by_record", "subjects"];
    let mut sinks = [Sink::new(), Sink::new(), Sink::new()];
    // Read in the order the bytes lie: a block is decoded once for all the
    // artifacts in it.
    let all = store.ids_in_storage_order()?;
    for ids in all.chunks(READ_BATCH) {
        r.examined += ids.len();
        let got: Vec<Option<(ArtifactId, rows::Rows)>> = ids
            .par_iter()
            .map(|id| Ok(read_record(store, id)?.map(|rec| (*id, rows::rows(id, &rec)))))
            .collect::<Result<_, RecordError>>()?;
        for (id, rows) in got.into_iter().flatten() {
            r.indexed += 1;
            for k in rows.keys(&id) {
                sinks[0].push(k, Vec::new());
            }
            if rows.annotates {
                sinks[2].push(subject_key(&rows.subject, &id).to_vec(), Vec::new());
            }
            sinks[1].push(id.as_bytes().to_vec(), rows.pack());
        }
        if sinks.iter().map(|s| s.bytes).sum::<usize>() >= run_bytes {
            for (s, name) in sinks.iter_mut().zip(names) {
                s.spill(scratch, name)?;
            }
        }
    }
    for ((s, name), part) in sinks.into_iter().zip(names).zip(parts) {
        s.ingest(scratch, name, part)?;
    }
    Ok(r)
}
