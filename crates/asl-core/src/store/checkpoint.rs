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

    /// [`Maintenance::checkpoint`](crate::Maintenance::checkpoint)'s body.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer_to_commit()?;
        w.commit(self)?;
        w.checkpoint(self)
    }
}

impl Writer {
    /// Writes the in-memory records to an index file (merging index files when
    /// there are too many), starts a new log file and replaces CHECKPOINT.
    /// Called at a commit point, with nothing buffered.
    pub(crate) fn checkpoint(&mut self, s: &Store) -> Result<()> {
        self.guard(|w| {
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
                    let (inputs, older) = files.split_at(merge_width(mem.len() as u64, &files, s.opts.max_index_files));
                    // The merged file replaces its inputs: a damaged input
                    // would be carried into it and the original deleted, so
                    // every input is checked whole first.
                    s.check_indexes(inputs)?;
                    let upper = mem.len() as u64 + inputs.iter().map(|f| f.len()).sum::<u64>();
                    // Merging every file means no older record is left for a
                    // tombstone to shadow, so a tombstone is dropped then unless
                    // a snapshot or pin still reads the bytes through it.
                    // (Merged gives back the inputs' pages behind it as it reads.)
                    let all = older.is_empty();
                    let merged = Merged::new(mem.clone(), inputs, None)?.filter(|e| match e {
                        Ok(e) if all && e.is_tombstone() => held_by(&pins, &snaps, e, None).unwrap_or(true),
                        _ => true,
                    });
                    new_files = older.to_vec();
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
            let seg_bytes = w.seg_states.values().map(|g| g.len).sum();
            let _ = super::followers::prune_log_history(&s.layout, log_file, s.opts.log_history, seg_bytes);
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
}

/// How many of the newest index files (`files`, newest first) a checkpoint
/// merges with its `mem` records when keeping them all would pass `max`
/// files: enough to stay within `max`, and then each next older file as long
/// as what is merged so far holds at least as many records as it does.
/// Files so grow from newest to oldest, and the oldest, largest one is
/// rewritten only once the newer ones together outweigh it: a long run of
/// writes (GC's copies of a million artifacts, say) rewrites each record a
/// logarithmic number of times, not at every merge.
fn merge_width(mem: u64, files: &[Arc<IndexFile>], max: usize) -> usize {
    let mut k = (files.len() + 1).saturating_sub(max).min(files.len());
    let mut merged = mem + files[..k].iter().map(|f| f.len()).sum::<u64>();
    while k < files.len() && merged >= files[k].len() {
        merged += files[k].len();
        k += 1;
    }
    k
}
