//! Checkpoints: the in-memory records are written to an index file (merged with
//! the others when there are too many), a new log file is started and
//! CHECKPOINT is replaced, in that order, so a crash at any step leaves the
//! previous checkpoint valid (spec/format.md, "Write order").

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::index::file::{write_index, IndexFile};
use crate::index::merge::Merged;
use crate::snapshot::checkpoint::Checkpoint;
use crate::snapshot::log::LogWriter;

use super::{held_by, Store, Writer};

impl Store {
    /// Checks index files whole (CRC, order, fanout) before an operation that
    /// acts on every record in them; damage stops it before it writes.
    pub(crate) fn check_indexes(&self, files: &[Arc<IndexFile>]) -> Result<()> {
        for f in files {
            f.validate().map_err(|e| match Error::from(e) {
                Error::Corrupt { file, detail } => Error::Corrupt {
                    file,
                    detail: format!("{detail} (run `aslctl repair` to rebuild the index from the segments)"),
                },
                other => other,
            })?;
            // Checked whole once: its pages need not stay this process's.
            f.release_pages();
        }
        Ok(())
    }

    /// Writes the in-memory records to an index file (merging index files when
    /// there are too many), starts a new log file and replaces CHECKPOINT.
    /// Called at a commit point, with nothing buffered.
    pub(crate) fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        self.guard(w, |s, w| {
            let (mem, files, pins, snaps) = {
                let st = s.state.read();
                (
                    super::sorted(&st.memtable),
                    st.indexes.clone(),
                    st.pins.clone(),
                    st.snapshots.clone(),
                )
            };
            let io = &*s.layout.io;
            let index_dir = s.layout.index_dir();
            let mut new_files = files.clone();
            if !mem.is_empty() {
                let file_id = w.next_index;
                w.next_index += 1;
                let path = if files.len() + 1 > s.opts.max_index_files {
                    // The merged file replaces its inputs: a damaged input
                    // would be carried into it and the original deleted, so
                    // every input is checked whole first.
                    s.check_indexes(&files)?;
                    let upper = mem.len() as u64 + files.iter().map(|f| f.len()).sum::<u64>();
                    // Merging every file means no older record is left for a
                    // tombstone to shadow, so a tombstone is dropped here unless
                    // a snapshot or pin still reads the bytes through it.
                    let mut read = 0u64;
                    let merged = Merged::new(mem.clone(), &files, None)?
                        .filter(|e| match e {
                            Ok(e) if e.is_tombstone() => held_by(&pins, &snaps, e, None).unwrap_or(true),
                            _ => true,
                        })
                        .inspect(|_| {
                            // The inputs are read front to back once: what
                            // is behind need not stay resident.
                            read += 1;
                            if read.is_multiple_of(1 << 16) {
                                files.iter().for_each(|f| f.release_pages());
                            }
                        });
                    new_files.clear();
                    write_index(io, &index_dir, file_id, upper, merged)?
                } else {
                    write_index(io, &index_dir, file_id, mem.len() as u64, mem.iter().copied().map(Ok))?
                };
                new_files.insert(0, Arc::new(IndexFile::open(io, &path)?));
            }
            let log_file = w.log_file + 1;
            let log = LogWriter::create(io, &s.layout.log(log_file), w.log.next_seq, s.store_id)?;
            let ckpt = Checkpoint {
                version: crate::version::FormatVersion::CURRENT,
                store_id: s.store_id,
                next_seq: log.next_seq,
                log_file,
                next_segment: w.next_segment,
                next_index: w.next_index,
                index_files: new_files.iter().map(|f| f.file_id).collect(),
                segments: w.seg_states.values().copied().collect(),
                snapshots: snaps.values().map(|h| h.meta.clone()).collect(),
                pins: pins.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            };
            write_atomic(io, &s.layout.checkpoint(), &ckpt.encode())?;
            w.catalog_dirty = false;
            let old_log = std::mem::replace(&mut w.log, log);
            w.log_file = log_file;
            {
                let mut st = s.state.write();
                st.indexes = new_files.clone();
                st.memtable.clear();
            }
            // The retired log stays as history for `changes_since`, as
            // long as the history budget allows.
            drop(old_log);
            let _ = super::changes::prune_log_history(&s.layout, log_file, s.opts.log_history);
            for f in files {
                // A merge read every input whole; readers fault in what
                // they use again.
                f.release_pages();
                if !new_files.iter().any(|n| n.file_id == f.file_id) {
                    let _ = io.remove(&f.path);
                }
            }
            Ok(())
        })
    }

    /// Writes the in-memory index to an index file and starts a fresh log, so
    /// the next open has nothing to replay.
    pub fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer_to_commit()?;
        self.commit_locked(&mut w)?;
        self.checkpoint_locked(&mut w)
    }
}
