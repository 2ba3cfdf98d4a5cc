//! The query index: labels, media types, record types and times of the
//! store's records, kept in a fjall keyspace beside the store
//! (`derived/query/`) so that "which artifacts have tool=mill and
//! status=BLOCKED since Monday" is a few key ranges instead of a scan of
//! every record.
//!
//! It is derived data. Every fact in it comes from a record in the store,
//! it is rebuilt from the records alone ([`QueryIndex::rebuild`]), and it
//! follows the store through the store's change feed
//! ([`asl_core::Maintenance::changes_since`]): opening it catches up with every
//! commit since it was last opened, whoever made them, and rescans only when
//! the feed no longer reaches back that far. Deleting it loses nothing.
//!
//! The engine was chosen by measurement, on this machine, in two rounds.
//! With 1 M artifacts of three labels each, a two-label query over ten days
//! (3,334 hits) took redb 9–11 ms, fjall 20–29 ms and SQLite (rusqlite, WAL,
//! `INTERSECT`) 39–56 ms; building took fjall 8.5 s, redb 20.6 s, SQLite
//! 25.2 s, and the files were 62 MB, 628 MB and 170 MB. Built on redb first,
//! the real index of 1 M annotated artifacts (six keys each) took 53 s to
//! build and 4.3 GB of disk (a B-tree of uncompressed keys, copied on
//! write), against a 0.4 GB store: too much for derived data. On fjall (an
//! LSM tree with compressed blocks) it takes 0.62 GB, builds in 15 s (bulk
//! loaded, below), catches up with 1 000 new annotations in 17 ms against
//! redb's 454 ms, and answers the two-label query in 13 ms, so the index is
//! on fjall (see README, Benchmarks, for the numbers). fjall
//! runs flush and compaction threads inside the program while a keyspace
//! is open, and has no lock of its own against a second process: the index
//! takes an exclusive lock on `derived/query.lock` while it is open, and a
//! second process waits for it (up to [`OPEN_WAIT`]). Dropping a
//! [`QueryIndex`] stops fjall's threads and then seals the index as they
//! left it: a program closes it when done (the seal an open checks is that
//! one; one taken after a write, while the threads may still retire files,
//! only guards against a crash).
//!
//! A rebuild does not go through fjall's write path: rows are sorted in
//! runs (spilled to scratch files beyond 64 MiB) and merged into empty
//! partitions, which fjall writes straight into sorted segments.

mod build;
mod find;
mod memory;
mod rows;
mod seal;

pub use find::{Query, Subjects};
pub use memory::IndexMemory;
pub use rows::{OVERLAY_BASE, OVERLAY_OF, RECEIPT_BATCH, RECEIPT_IN, RECEIPT_KEY, RECEIPT_OUT};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Record, RecordError, MAGIC};
use asl_core::{ArtifactId, LogCursor, Store};

/// The index layout; another value means rebuild (3: overlay logs are
/// found by their overlay and base; 4: cache entries by their key).
const LAYOUT: u64 = 4;

/// How long opening waits for another process holding the index.
pub const OPEN_WAIT: Duration = Duration::from_secs(10);

/// Where the index lives inside a store directory.
pub const INDEX_DIR: &str = "derived/query";

/// fjall's block cache.
const CACHE_BYTES: u64 = 32 << 20;
/// Each keyspace's memtable, flushed to a table file when it is full.
/// fjall's default (64 MiB) let a long-running server's four keyspaces
/// hold up to 256 MiB of index rows in memory, growing for hours under a
/// steady load; the rows are small and written in small batches, so
/// smaller memtables cost only more (smaller) flushes.
const MEMTABLE_BYTES: u64 = 4 << 20;
/// Journal files fjall keeps before it flushes the keyspaces that hold
/// the oldest one back. Its default (512 MiB) let a server's index reach
/// half a GiB of journal for a few MiB of rows: the `meta` keyspace takes
/// one small write per refresh, never fills its memtable, and so kept
/// every journal since its last flush. 64 MiB is fjall's least; a journal
/// is rotated at 64 MB, so the index keeps one to two of them.
const JOURNAL_BYTES: u64 = 64 << 20;
/// The partitions [`Parts`] opens.
const KEYSPACES: u64 = 4;

/// A fjall failure: an I/O error stays one (a full disk says so, with
/// the index's path), anything else is the index's own failure.
fn db_err(e: fjall::Error) -> RecordError {
    db_err_at(Path::new(INDEX_DIR), e)
}

/// [`db_err`] naming the index's directory.
fn db_err_at(path: &Path, e: fjall::Error) -> RecordError {
    let io = match e {
        fjall::Error::Io(io) => io,
        fjall::Error::Storage(fjall::LsmError::Io(io)) => io,
        other => return RecordError::Index(other.to_string()),
    };
    io_err(format!("query index {}", path.display()), io)
}

/// An I/O failure on the index's files, as the store's I/O error.
fn io_err(what: String, e: std::io::Error) -> RecordError {
    RecordError::Store(asl_core::Error::io(what, e))
}

/// One artifact a query found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The artifact: an annotation's subject, or the record itself.
    pub subject: ArtifactId,
    /// The newest time among the matching records.
    pub time: u64,
    /// The records that matched, in id order.
    pub records: Vec<ArtifactId>,
}

/// What bringing the index up to date did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Why the index file was thrown away, when it did not open.
    pub damaged: Option<String>,
    /// Whether it rescanned the whole store.
    pub rebuilt: bool,
    /// Artifacts looked at.
    pub examined: usize,
    /// Records indexed.
    pub indexed: usize,
    /// Records whose rows were dropped (removed from the store).
    pub dropped: usize,
}

/// The query index of one store.
pub struct QueryIndex {
    /// `None` only while a rebuild has closed the keyspace to replace it.
    parts: Option<Parts>,
    /// The keyspace was created by this handle and nothing written yet.
    fresh: bool,
    path: PathBuf,
    /// What the files were when last sealed or checked (see [`seal`]).
    seal: seal::Seal,
    /// Whether the seal on disk describes the files as they are.
    sealed: bool,
    /// Seal after each write (the default), or only when dropped.
    seal_each_write: bool,
    _lock: File,
}

/// An open keyspace and its partitions (the handles dropped before the
/// keyspace, whose drop waits for its background threads to stop).
struct Parts {
    keys: Keyspace,
    by_record: Keyspace,
    subjects: Keyspace,
    meta: Keyspace,
    ks: Database,
}

impl Parts {
    fn open(path: &Path) -> fjall::Result<Parts> {
        let ks = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .open()?;
        let part = |n: &str| ks.keyspace(n, || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES));
        Ok(Parts {
            keys: part("keys")?,
            by_record: part("by_record")?,
            subjects: part("subjects")?,
            meta: part("meta")?,
            ks,
        })
    }
}

impl QueryIndex {
    /// Opens (or creates) the store's query index and brings it up to date
    /// with the store's committed state.
    pub fn open(store: &Store) -> Result<(Self, Refresh), RecordError> {
        Self::open_with(store, false)
    }

    /// Deletes the store's query index without opening it (whatever state
    /// it is in) and builds it again from the records: what `aslctl
    /// reindex` runs.
    pub fn recreate(store: &Store) -> Result<(Self, Refresh), RecordError> {
        Self::open_with(store, true)
    }

    fn open_with(store: &Store, discard: bool) -> Result<(Self, Refresh), RecordError> {
        let path = store.path().join(INDEX_DIR);
        let derived = path.parent().expect("INDEX_DIR has a parent");
        std::fs::create_dir_all(derived).map_err(|e| io_err(format!("create {}", derived.display()), e))?;
        let lock = lock(&derived.join("query.lock"))?;
        let mut damaged = None;
        let mut sealed = false;
        let mut checked = seal::Seal::default();
        // Only an index whose every byte is as sealed reaches fjall (see
        // `seal`); anything else is deleted unopened and rebuilt from the
        // records: derived data is never worth an error.
        if discard {
            seal::Seal::break_seal(&path).map_err(|e| io_err(format!("unseal {}", path.display()), e))?;
            remove_index(&path)?;
        } else if path.exists() {
            match seal::Seal::check(&path) {
                Ok(s) => {
                    checked = s;
                    sealed = true;
                }
                Err(why) => {
                    damaged = Some(why);
                    remove_index(&path)?;
                }
            }
        }
        let fresh = !path.exists();
        // fjall's open may write (its journal's recovery), so the seal goes
        // before it and is renewed after; a process that dies in between
        // leaves the index to be rebuilt.
        if sealed {
            seal::Seal::break_seal(&path).map_err(|e| io_err(format!("unseal {}", path.display()), e))?;
            sealed = false;
        }
        let parts = match Parts::open(&path) {
            Ok(p) => p,
            // Sealed yet refused by fjall (a seal written over files
            // fjall cannot read): the same remedy.
            // An I/O failure (a full disk) is not damage: said as it is,
            // and the index is left alone.
            Err(e @ (fjall::Error::Io(_) | fjall::Error::Storage(fjall::LsmError::Io(_)))) => {
                return Err(db_err_at(&path, e))
            }
            Err(e) => {
                damaged = Some(e.to_string());
                remove_index(&path)?;
                Parts::open(&path).map_err(|e| db_err_at(&path, e))?
            }
        };
        let mut index = QueryIndex {
            parts: Some(parts),
            fresh,
            path,
            seal: checked,
            sealed,
            seal_each_write: true,
            _lock: lock,
        };
        let mut refresh = index.refresh(store)?;
        index.seal_if_due()?;
        refresh.damaged = damaged;
        Ok((index, refresh))
    }

    fn p(&self) -> &Parts {
        self.parts.as_ref().expect("the keyspace is open outside a rebuild")
    }

    /// The index's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the index takes on disk.
    pub fn disk_space(&self) -> Result<u64, RecordError> {
        self.p().ks.disk_space().map_err(db_err)
    }

    /// Brings the index up to date with the store's committed state: the
    /// changes since it was last brought up to date, or a rescan when the
    /// store's history no longer reaches back that far (or the index belongs
    /// to another store or layout).
    pub fn refresh(&mut self, store: &Store) -> Result<Refresh, RecordError> {
        let Meta {
            layout,
            store_id,
            cursor,
        } = self.meta()?;
        if layout != Some(LAYOUT) || store_id != Some(store.store_id()) {
            return self.rebuild(store);
        }
        let Some(cursor) = cursor else {
            return self.rebuild(store);
        };
        let Some(changes) = store.maintenance().changes_since(cursor)? else {
            return self.rebuild(store);
        };
        if changes.ids.is_empty() && changes.next == cursor {
            note_place(store, cursor);
            return Ok(Refresh::default());
        }
        self.fresh = false;
        self.unseal()?;
        let mut r = Refresh::default();
        let p = self.p();
        // One batch, cursor included: after a crash the index is as it was
        // before or as it is after, and the next refresh redoes the rest.
        let mut batch = p.ks.batch();
        for id in &changes.ids {
            r.examined += 1;
            let had = self.drop_record(&mut batch, id)?;
            match read_record(store, id)? {
                Some(rec) => {
                    self.add_record(&mut batch, id, &rows::rows(id, &rec));
                    r.indexed += 1;
                }
                None if had => r.dropped += 1,
                None => {}
            }
        }
        batch.insert(&p.meta, "cursor", cursor_bytes(changes.next).to_vec());
        batch.commit().map_err(db_err)?;
        p.ks.persist(PersistMode::SyncData).map_err(db_err)?;
        note_place(store, changes.next);
        self.seal_if_due()?;
        Ok(r)
    }

    /// Seals the index only when it is dropped rather than after each
    /// write: for a long-lived holder that writes often (a server), whose
    /// writes would otherwise each hash the journal again. One that ends
    /// without dropping it (a crash) leaves it unsealed, to be rebuilt on
    /// next open.
    pub fn seal_on_drop_only(&mut self) {
        self.seal_each_write = false;
    }

    /// Writes the seal now, if the files changed since it was last written.
    pub fn seal(&mut self) -> Result<(), RecordError> {
        if !self.sealed {
            self.seal
                .renew(&self.path)
                .map_err(|e| io_err(format!("seal {}", self.path.display()), e))?;
            self.sealed = true;
        }
        Ok(())
    }

    fn seal_if_due(&mut self) -> Result<(), RecordError> {
        if self.seal_each_write {
            self.seal()?;
        }
        Ok(())
    }

    /// Removes the seal before a write (durably), so that a write cut
    /// short leaves the index unsealed.
    fn unseal(&mut self) -> Result<(), RecordError> {
        if std::mem::take(&mut self.sealed) {
            seal::Seal::break_seal(&self.path).map_err(|e| io_err(format!("unseal {}", self.path.display()), e))?;
        }
        Ok(())
    }

    /// Throws the index away and builds it again from every record in the
    /// store (what `aslctl reindex` runs).
    pub fn rebuild(&mut self, store: &Store) -> Result<Refresh, RecordError> {
        self.rebuild_with(store, build::RUN_BYTES)
    }

    /// [`QueryIndex::rebuild`] holding at most about `run_bytes` of rows in
    /// memory (64 MiB by default) before it sorts them and spills them to a
    /// scratch file beside the index, to be merged at the end.
    pub fn rebuild_with(&mut self, store: &Store, run_bytes: usize) -> Result<Refresh, RecordError> {
        // The cursor is taken first: whatever is committed while the scan
        // runs is picked up by the next refresh.
        let cursor = store.maintenance().log_cursor();
        self.unseal()?;
        // Closed (its background threads stopped) and deleted whole; the new
        // one is written into empty partitions as sorted segments, and gets
        // its cursor last, so a rebuild cut short is done again on next open.
        // Only a keyspace this handle created and never wrote to is empty
        // as fjall's bulk load needs it (one whose keys were all removed
        // still holds their tombstones).
        if !std::mem::take(&mut self.fresh) {
            self.parts = None;
            remove_index(&self.path)?;
            self.parts = Some(Parts::open(&self.path).map_err(|e| db_err_at(&self.path, e))?);
        }
        let scratch = self.path.with_file_name("query-rebuild");
        let p = self.p();
        let r = build::rebuild(store, &scratch, [&p.keys, &p.by_record, &p.subjects], run_bytes)?;
        let mut batch = p.ks.batch();
        batch.insert(&p.meta, "layout", LAYOUT.to_le_bytes().to_vec());
        batch.insert(&p.meta, "store_id", store.store_id().to_le_bytes().to_vec());
        batch.insert(&p.meta, "cursor", cursor_bytes(cursor).to_vec());
        batch.commit().map_err(db_err)?;
        p.ks.persist(PersistMode::SyncAll).map_err(db_err)?;
        note_place(store, cursor);
        self.seal_if_due()?;
        Ok(r)
    }

    /// How many records the index holds.
    pub fn len(&self) -> Result<u64, RecordError> {
        Ok(self.p().by_record.len().map_err(db_err)? as u64)
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> Result<bool, RecordError> {
        Ok(self.len()? == 0)
    }

    fn meta(&self) -> Result<Meta, RecordError> {
        let get = |k: &str| self.p().meta.get(k).map_err(db_err);
        let u64_of = |k: &str| -> Result<Option<u64>, RecordError> {
            Ok(get(k)?
                .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
                .map(u64::from_le_bytes))
        };
        let cursor = get("cursor")?.and_then(|v| {
            let b: [u8; 16] = v[..].try_into().ok()?;
            Some(LogCursor {
                log_file: u64::from_le_bytes(b[..8].try_into().unwrap()),
                seq: u64::from_le_bytes(b[8..].try_into().unwrap()),
            })
        });
        Ok(Meta {
            layout: u64_of("layout")?,
            store_id: u64_of("store_id")?,
            cursor,
        })
    }

    fn add_record(&self, batch: &mut fjall::OwnedWriteBatch, id: &ArtifactId, rows: &rows::Rows) {
        for k in rows.keys(id) {
            batch.insert(&self.p().keys, k, []);
        }
        batch.insert(&self.p().by_record, id.as_bytes().to_vec(), rows.pack());
        if rows.annotates {
            batch.insert(&self.p().subjects, subject_key(&rows.subject, id).to_vec(), []);
        }
    }

    /// Takes record `id`'s rows out (in `batch`); false when it had none.
    fn drop_record(&self, batch: &mut fjall::OwnedWriteBatch, id: &ArtifactId) -> Result<bool, RecordError> {
        let Some(packed) = self.p().by_record.get(id.as_bytes()).map_err(db_err)? else {
            return Ok(false);
        };
        let Some(rows) = rows::Rows::unpack(&packed) else {
            return Err(RecordError::Index(format!(
                "the entry of record {id} is malformed (run `aslctl reindex`)"
            )));
        };
        for k in rows.keys(id) {
            batch.remove(&self.p().keys, k);
        }
        if rows.annotates {
            batch.remove(&self.p().subjects, subject_key(&rows.subject, id).to_vec());
        }
        batch.remove(&self.p().by_record, id.as_bytes().to_vec());
        Ok(true)
    }
}

/// One key of a condition's range, parsed.
struct Row {
    subject: ArtifactId,
    t: u64,
    record: ArtifactId,
}

/// What `meta` says: the layout, the store and the cursor indexed up to.
struct Meta {
    layout: Option<u64>,
    store_id: Option<u64>,
    cursor: Option<LogCursor>,
}

/// Deletes an index directory without opening it.
fn remove_index(path: &Path) -> Result<(), RecordError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("remove {}", path.display()), e)),
    }
}

impl Drop for QueryIndex {
    fn drop(&mut self) {
        // fjall's threads stop first, so the seal sees the files as they
        // stay; a seal that cannot be written leaves the index to be
        // rebuilt, which is all a failure here may cost.
        self.parts = None;
        // Renewed even when sealed since the last write: fjall touches its
        // files as it closes (the journal it opened), and the next open
        // checks them as they are now. Unchanged files are not hashed again.
        if self.path.exists() {
            let _ = self.seal.renew(&self.path);
        }
    }
}

/// An exclusive lock on `path`, waited for up to [`OPEN_WAIT`].
fn lock(path: &Path) -> Result<File, RecordError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_err(format!("open {}", path.display()), e))?;
    let start = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < OPEN_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RecordError::Index(format!(
                    "{} is held by another process (waited {} s)",
                    path.display(),
                    OPEN_WAIT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(format!("lock {}", path.display()), e)),
        }
    }
}

/// Tells the store how far the index has read its history (made durable
/// here first), so that checkpoints keep the log files it still needs and
/// no others. Not an error when it cannot: a note lost only costs this
/// index a rescan once the history it needed is gone.
fn note_place(store: &Store, cursor: LogCursor) {
    let _ = store.maintenance().note_follower(FOLLOWER, cursor);
}

/// The name the query index follows the store's history under.
pub const FOLLOWER: &str = "query";

fn cursor_bytes(c: LogCursor) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&c.log_file.to_le_bytes());
    b[8..].copy_from_slice(&c.seq.to_le_bytes());
    b
}

pub(super) fn subject_key(subject: &ArtifactId, record: &ArtifactId) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(subject.as_bytes());
    k[32..].copy_from_slice(record.as_bytes());
    k
}

/// The record `id` holds, when it is live and a well-formed record.
pub(super) fn read_record(store: &Store, id: &ArtifactId) -> Result<Option<Record>, RecordError> {
    let len = match store.len_of(id) {
        Ok(n) => n,
        Err(asl_core::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len < MAGIC.len() as u64 {
        return Ok(None);
    }
    // A small artifact is read whole at once (one block frame either way);
    // of a large one only the head, unless it is a record.
    // A damaged artifact is not indexed, and not an error: the index must
    // open on a store that holds one (`aslctl verify` names it; a PEL run
    // re-executes a damaged output). A damaged record is missed until the
    // index is rebuilt after a repair.
    let readable = |r: asl_core::Result<Vec<u8>>| match r {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_corruption() => Ok(None),
        Err(e) => Err(RecordError::from(e)),
    };
    if len > 64 << 10 {
        match readable(store.read_range(id, 0, MAGIC.len() as u64))? {
            Some(head) if head == MAGIC => {}
            _ => return Ok(None),
        }
    }
    let Some(bytes) = readable(store.get(id))? else {
        return Ok(None);
    };
    if !bytes.starts_with(&MAGIC) {
        return Ok(None);
    }
    // Bytes that open like a record but are not one are data like any
    // other: they are not indexed, and not an error.
    Ok(Record::decode(&bytes).ok())
}
