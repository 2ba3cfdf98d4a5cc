//! The store's recent history as a feed: which artifacts changed between two
//! points of the commit log, for indexes kept outside the store (the records
//! layer's query index) that follow it without rescanning everything.
//!
//! The log numbers every record it ever holds (sequence numbers carry over
//! from one log file to the next), and a checkpoint does not delete the log
//! files it retires at once: the newest of them are kept as history for the
//! followers that still need them (see [`super::followers`], which prunes it), up to
//! [`LOG_HISTORY_BYTES`] in all by default (every command-line write checkpoints when it
//! closes the store, so a history of one file would reach back one command).
//! Further back, or across a repair (which starts a fresh numbering), the
//! history is gone and the feed says so: the follower must rescan.

use crate::error::Result;
use crate::id::ArtifactId;
use crate::snapshot::log::{self, Record};

use super::Store;

/// How many bytes of retired log files are kept as history: about 700,000
/// stored artifacts' worth.
pub const LOG_HISTORY_BYTES: u64 = 64 << 20;

/// A point in the store's commit history: the log file and the sequence
/// number of the next record after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogCursor {
    /// The log file's number.
    pub log_file: u64,
    /// The next record's sequence number.
    pub seq: u64,
}

/// What changed between two cursors.
#[derive(Clone, Debug)]
pub struct Changes {
    /// Every artifact with a record in the committed history in between
    /// (stored, removed or moved by GC), first appearance first, each once.
    /// Chunks of large artifacts are not artifacts and are left out.
    pub ids: Vec<ArtifactId>,
    /// Where the history read ends: pass it to the next call.
    pub next: LogCursor,
}

impl Store {
    /// [`Maintenance::log_cursor`](crate::Maintenance::log_cursor)'s body.
    pub(crate) fn log_cursor(&self) -> LogCursor {
        match &self.writer {
            Some(w) => {
                let w = w.lock();
                LogCursor {
                    log_file: w.log_file,
                    seq: w.log.next_seq,
                }
            }
            None => self.seen.read().at,
        }
    }

    /// [`Maintenance::changes_since`](crate::Maintenance::changes_since)'s body.
    pub(crate) fn changes_since(&self, from: LogCursor) -> Result<Option<Changes>> {
        let now = self.log_cursor();
        if from == now {
            return Ok(Some(Changes {
                ids: Vec::new(),
                next: now,
            }));
        }
        if from.log_file > now.log_file || from.seq > now.seq {
            return Ok(None);
        }
        if let Some((recent, now)) = self.recent_changes(from) {
            return Ok(Some(Changes {
                ids: artifact_ids(recent.iter(), from, now),
                next: now,
            }));
        }
        let io = &*self.layout.io;
        let mut files = Vec::new();
        for n in from.log_file..=now.log_file {
            let path = self.layout.log(n);
            if !io.is_file(&path) {
                return Ok(None);
            }
            files.push(log::read(io, &path)?);
        }
        // The files must continue one another, and the oldest must reach
        // back to `from`; otherwise this is not the history `from` was in.
        if files[0].start_seq > from.seq {
            return Ok(None);
        }
        for pair in files.windows(2) {
            if pair[0].start_seq + pair[0].records.len() as u64 != pair[1].start_seq {
                return Ok(None);
            }
        }
        Ok(Some(Changes {
            ids: artifact_ids(files.iter().flat_map(|f| &f.records), from, now),
            next: now,
        }))
    }

    /// The records after `from` and the cursor they reach, read from the
    /// current log's tail alone when `from` is in the writer's current log
    /// and recent: a server's query index follows the log after every
    /// write, and reading the whole file each time cost time and memory in
    /// proportion to all the writes since the last checkpoint.
    fn recent_changes(&self, from: LogCursor) -> Option<(Vec<(u64, Record)>, LogCursor)> {
        let w = self.writer.as_ref()?.lock();
        if from.log_file != w.log_file {
            return None;
        }
        let now = LogCursor {
            log_file: w.log_file,
            seq: w.log.next_seq,
        };
        Some((w.log.records_since(from.seq)?, now))
    }
}

/// The artifacts with a record in `[from, now)`, first appearance first,
/// each once; chunks of large artifacts are not artifacts.
fn artifact_ids<'a>(
    records: impl Iterator<Item = &'a (u64, Record)>,
    from: LogCursor,
    now: LogCursor,
) -> Vec<ArtifactId> {
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for (seq, r) in records {
        if *seq < from.seq || *seq >= now.seq {
            continue;
        }
        if let Record::Entry(e) = r {
            if !e.is_chunk() && seen.insert(e.id) {
                ids.push(e.id);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::LogCursor;
    use crate::snapshot::log::RECENT_ENDS;
    use crate::{Store, StoreOptions};

    #[test]
    fn the_feed_reaches_back_one_checkpoint_and_says_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new()
            .create(true)
            .log_history(200 << 10)
            .open(dir.path())
            .unwrap();
        let a = store.put(b"a").unwrap();
        store.commit().unwrap();
        let c0 = store.log_cursor();
        store.maintenance().note_follower("test", c0).unwrap();
        assert!(store.changes_since(c0).unwrap().unwrap().ids.is_empty());
        let b = store.put(b"b").unwrap();
        store.remove(&a).unwrap();
        store.put(b"b").unwrap();
        store.commit().unwrap();
        let ch = store.changes_since(c0).unwrap().unwrap();
        assert_eq!(ch.ids, vec![b, a]);
        assert_eq!(ch.next, store.log_cursor());
        // Uncommitted writes are not history yet.
        let c = store.put(b"c").unwrap();
        assert_eq!(store.changes_since(c0).unwrap().unwrap().ids, vec![b, a]);
        store.checkpoint().unwrap();
        let d = store.put(b"d").unwrap();
        store.commit().unwrap();
        assert_eq!(store.changes_since(c0).unwrap().unwrap().ids, vec![b, a, c, d]);
        drop(store);
        let store = StoreOptions::new().log_history(200 << 10).open(dir.path()).unwrap();
        assert_eq!(store.changes_since(c0).unwrap().unwrap().ids, vec![b, a, c, d]);
        let ro = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.log_cursor(), store.log_cursor());
        store.checkpoint().unwrap();
        assert_eq!(store.changes_since(c0).unwrap().unwrap().ids, vec![b, a, c, d]);
        let c1 = store.log_cursor();
        assert!(store.changes_since(c1).unwrap().unwrap().ids.is_empty());
        // A cursor from the future or from another numbering is refused.
        let future = LogCursor { seq: c1.seq + 5, ..c1 };
        assert!(store.changes_since(future).unwrap().is_none());
        // History beyond the budget is deleted at the next checkpoint.
        for i in 0..8u32 {
            for j in 0..1000u32 {
                store.put(&(i * 1000 + j).to_le_bytes()).unwrap();
            }
            store.checkpoint().unwrap();
        }
        let logs = std::fs::read_dir(dir.path().join("log")).unwrap().count();
        assert!(logs < 8, "{logs} log files kept");
        assert!(
            store.changes_since(c0).unwrap().is_none(),
            "history of {logs} files reaches too far"
        );
        assert!(store.changes_since(c1).unwrap().is_none());
    }

    #[test]
    fn history_survives_closing_and_repair_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cursor = None;
        let mut want = Vec::new();
        for i in 0..5u32 {
            let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
            let c = *cursor.get_or_insert(store.log_cursor());
            store.maintenance().note_follower("test", c).unwrap();
            want.push(store.put(&i.to_le_bytes()).unwrap());
            store.close().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.changes_since(cursor.unwrap()).unwrap().unwrap().ids, want);
        drop(store);
        Store::repair(dir.path()).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.changes_since(cursor.unwrap()).unwrap().is_none());
    }

    fn log_files(store: &std::path::Path) -> usize {
        std::fs::read_dir(store.join("log")).unwrap().count()
    }

    /// `n` small artifacts, then a checkpoint: one more retired log file.
    fn put_and_checkpoint(store: &Store, n: u32) {
        for i in 0..n {
            store.put(format!("artifact {i} {n}").as_bytes()).unwrap();
        }
        store.checkpoint().unwrap();
    }

    /// History is kept for the followers that need it and for no one else:
    /// what GC frees is not eaten by the log it writes.
    #[test]
    fn history_is_kept_only_while_a_follower_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let logs = || log_files(dir.path());
        let write = |n: u32| put_and_checkpoint(&store, n);
        let c0 = store.log_cursor();
        write(100);
        assert_eq!(logs(), 1, "no follower: no history");
        assert!(store.changes_since(c0).unwrap().is_none());
        let m = store.maintenance();
        let c1 = store.log_cursor();
        m.note_follower("idx", c1).unwrap();
        write(101);
        write(102);
        assert_eq!(logs(), 3, "the follower's file and the one after it are kept");
        assert_eq!(store.changes_since(c1).unwrap().unwrap().ids.len(), 203);
        // A second follower further on does not shorten the first's history.
        let c2 = store.log_cursor();
        m.note_follower("other", c2).unwrap();
        write(103);
        assert_eq!(logs(), 4);
        assert_eq!(
            m.followers().unwrap(),
            vec![("idx".into(), c1.log_file), ("other".into(), c2.log_file)]
        );
        // The first moves on: the files before its new place go.
        m.note_follower("idx", c2).unwrap();
        write(104);
        assert_eq!(logs(), 3);
        assert!(store.changes_since(c1).unwrap().is_none());
        assert_eq!(store.changes_since(c2).unwrap().unwrap().ids.len(), 207);
        // A damaged note keeps what the budget allows; forgetting both drops it all.
        std::fs::write(dir.path().join("followers/idx"), b"garbage").unwrap();
        write(105);
        assert_eq!(logs(), 4);
        m.forget_follower("idx").unwrap();
        m.forget_follower("other").unwrap();
        write(106);
        assert_eq!(logs(), 1);
        assert!(m.note_follower("../up", c2).is_err());
    }

    /// History a follower cannot get whole within the budget is not kept for
    /// it: it would rescan anyway.
    #[test]
    fn a_followers_history_is_kept_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new()
            .create(true)
            .log_history(4 << 10)
            .open(dir.path())
            .unwrap();
        let logs = || log_files(dir.path());
        let write = |n: u32| put_and_checkpoint(&store, n);
        let m = store.maintenance();
        m.note_follower("far", store.log_cursor()).unwrap();
        write(100); // a file larger than the budget
        let near = store.log_cursor();
        m.note_follower("near", near).unwrap();
        write(10);
        assert_eq!(
            logs(),
            2,
            "the near follower's file is kept, the far one's could not be"
        );
        assert_eq!(store.changes_since(near).unwrap().unwrap().ids.len(), 10);
        m.forget_follower("near").unwrap();
        write(1);
        assert_eq!(logs(), 1, "what is left serves no follower whole");
    }

    /// Every cursor the log passed through gives exactly the artifacts
    /// stored after it: the recent ones from the log's tail, the ones
    /// further back than the writer remembers from the whole file.
    #[test]
    fn changes_since_any_cursor_are_the_writes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let mut cursors = vec![s.log_cursor()];
        let mut ids = Vec::new();
        for i in 0..RECENT_ENDS + 4 {
            ids.push(s.put(format!("artifact {i}").as_bytes()).unwrap());
            s.commit().unwrap();
            cursors.push(s.log_cursor());
        }
        for (k, c) in cursors.iter().enumerate() {
            let ch = s.changes_since(*c).unwrap().expect("history reaches back");
            assert_eq!(ch.ids, ids[k..], "from cursor {k}");
            assert_eq!(ch.next, s.log_cursor());
        }
        // A cursor inside a batch is no batch's end: read from the file.
        let mid = LogCursor {
            seq: cursors[2].seq - 1,
            ..cursors[2]
        };
        let ch = s.changes_since(mid).unwrap().unwrap();
        assert_eq!(ch.ids, ids[2..]);
    }
}
