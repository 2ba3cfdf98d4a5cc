//! The append-only log of state changes.
//!
//! A log file is a 32-byte header and then records:
//! `len u32 | crc32c u32 | seq u64 | kind u8 | payload[len]`, with the CRC over
//! `seq..payload`. Writers append a whole batch ending in a `Commit` record with
//! one `write` and one `fdatasync`. Readers stop at the first record that is
//! short, fails its CRC or breaks the sequence. When no well-formed `Commit`
//! follows that record it is the torn tail of a batch that was never
//! acknowledged, and only records up to the last `Commit` before it count. When
//! one does, an acknowledged batch was damaged at rest: that is corruption
//! ([`LogDamage`]), which a writer must not cut away.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::{DecodeError, IoContext};
use crate::fsutil::{le_u32, le_u64, sync_dir};
use crate::id::ArtifactId;
use crate::index::entry::{Entry, ENTRY_LEN};
use crate::io::{Backend, OpenMode, StoreFile};
use crate::snapshot::error::{Result, SnapshotError as Error};
use crate::version::{FormatVersion, LogVersion};

use super::catalog::{decode_pin, encode_pin, get_name, put_name, SnapshotMeta};

/// Magic at the start of a log file.
pub const LOG_MAGIC: [u8; 8] = *b"ASLLOG\0\0";
/// Log file header size.
pub const LOG_HEADER_LEN: u64 = 32;
/// Bytes before a record's payload.
pub const RECORD_HEADER_LEN: usize = 17;
const MAX_PAYLOAD: u32 = 1 << 20;

/// File name of log file `n`.
pub fn log_file_name(n: u64) -> String {
    format!("{n:012}.log")
}

/// One state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An index record (a put, or a tombstone when flagged so).
    Entry(Entry),
    /// A new open segment.
    SegmentCreated {
        /// Its id.
        id: u32,
    },
    /// A segment was sealed at this length (footer included).
    SegmentSealed {
        /// Its id.
        id: u32,
        /// File length after sealing.
        len: u64,
    },
    /// The end of an atomic batch: the open segment's durable length.
    Commit {
        /// Open segment (0 when none).
        segment: u32,
        /// Its committed length.
        len: u64,
    },
    /// A named snapshot was taken; its index file was durable before this record.
    SnapshotCreated(SnapshotMeta),
    /// A named snapshot was deleted.
    SnapshotDeleted {
        /// Its name.
        name: String,
    },
    /// An artifact was pinned under a name (replacing any pin of that name).
    Pinned {
        /// Pin name.
        name: String,
        /// The pinned artifact.
        id: ArtifactId,
    },
    /// A pin was removed.
    Unpinned {
        /// Pin name.
        name: String,
    },
    /// A segment's usage counters after this batch (absolute values, so replay
    /// only keeps the last one).
    SegmentUsage {
        /// Segment id.
        id: u32,
        /// Logical bytes of reachable artifacts whose newest record points into it.
        live: u64,
        /// Logical bytes of every artifact ever written into it.
        total: u64,
    },
    /// GC deleted a segment: nothing reachable points into it any more.
    SegmentDropped {
        /// Segment id.
        id: u32,
    },
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Entry(_) => 1,
            Record::SegmentCreated { .. } => 2,
            Record::SegmentSealed { .. } => 3,
            Record::Commit { .. } => 4,
            Record::SnapshotCreated(_) => 5,
            Record::SnapshotDeleted { .. } => 6,
            Record::Pinned { .. } => 7,
            Record::Unpinned { .. } => 8,
            Record::SegmentUsage { .. } => 9,
            Record::SegmentDropped { .. } => 10,
        }
    }

    fn payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry(e) => {
                let at = out.len();
                out.resize(at + ENTRY_LEN, 0);
                e.encode(&mut out[at..]);
            }
            Record::SegmentCreated { id } | Record::SegmentDropped { id } => out.extend_from_slice(&id.to_le_bytes()),
            Record::SegmentSealed { id, len } | Record::Commit { segment: id, len } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
            Record::SnapshotCreated(m) => m.encode(out),
            Record::SnapshotDeleted { name } | Record::Unpinned { name } => put_name(out, name),
            Record::Pinned { name, id } => encode_pin(out, name, id),
            Record::SegmentUsage { id, live, total } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&live.to_le_bytes());
                out.extend_from_slice(&total.to_le_bytes());
            }
        }
    }

    /// Appends the framed record with sequence number `seq` to `out`.
    pub fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.push(self.kind());
        self.payload(out);
        let len = (out.len() - start - RECORD_HEADER_LEN) as u32;
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode_payload(kind: u8, p: &[u8]) -> Result<Self, DecodeError> {
        let want = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(DecodeError::Invalid(format!(
                    "log record kind {kind} with {} payload bytes",
                    p.len()
                )))
            }
        };
        Ok(match kind {
            1 => {
                want(ENTRY_LEN)?;
                Record::Entry(Entry::decode(p)?)
            }
            2 => {
                want(4)?;
                Record::SegmentCreated { id: le_u32(p, 0) }
            }
            3 => {
                want(12)?;
                Record::SegmentSealed {
                    id: le_u32(p, 0),
                    len: le_u64(p, 4),
                }
            }
            4 => {
                want(12)?;
                Record::Commit {
                    segment: le_u32(p, 0),
                    len: le_u64(p, 4),
                }
            }
            5..=8 => {
                let mut at = 0;
                let r = match kind {
                    5 => Record::SnapshotCreated(SnapshotMeta::decode(p, &mut at)?),
                    6 => Record::SnapshotDeleted {
                        name: get_name(p, &mut at)?,
                    },
                    7 => {
                        let (name, id) = decode_pin(p, &mut at)?;
                        Record::Pinned { name, id }
                    }
                    _ => Record::Unpinned {
                        name: get_name(p, &mut at)?,
                    },
                };
                want(at)?;
                r
            }
            9 => {
                want(20)?;
                Record::SegmentUsage {
                    id: le_u32(p, 0),
                    live: le_u64(p, 4),
                    total: le_u64(p, 12),
                }
            }
            10 => {
                want(4)?;
                Record::SegmentDropped { id: le_u32(p, 0) }
            }
            k => return Err(DecodeError::Invalid(format!("log record kind {k}"))),
        })
    }
}

/// Encodes a log file header.
pub fn encode_header(start_seq: u64, store_id: u64) -> [u8; LOG_HEADER_LEN as usize] {
    let mut b = [0u8; LOG_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&LOG_MAGIC);
    b[8..12].copy_from_slice(&LogVersion::CURRENT.number().to_le_bytes());
    b[16..24].copy_from_slice(&start_seq.to_le_bytes());
    b[24..32].copy_from_slice(&store_id.to_le_bytes());
    let crc = crc32c::crc32c(&b[16..32]) ^ crc32c::crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a log file header into `(start_seq, store_id)`.
pub fn decode_header(b: &[u8]) -> Result<(u64, u64), DecodeError> {
    if b.len() < LOG_HEADER_LEN as usize {
        return Err(DecodeError::Truncated {
            what: "log header",
            need: LOG_HEADER_LEN,
            have: b.len() as u64,
        });
    }
    if b[0..8] != LOG_MAGIC {
        return Err(DecodeError::BadMagic { expected: "ASLLOG" });
    }
    let stored = le_u32(b, 12);
    let computed = crc32c::crc32c(&b[16..32]) ^ crc32c::crc32c(&b[..12]);
    if stored != computed {
        return Err(DecodeError::Checksum {
            what: "log header",
            stored,
            computed,
        });
    }
    LogVersion::from_number(le_u32(b, 8))?;
    Ok((le_u64(b, 16), le_u64(b, 24)))
}

/// What a log file holds, up to its last commit.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Sequence number of the first record.
    pub start_seq: u64,
    /// The store it belongs to.
    pub store_id: u64,
    /// Committed records with their sequence numbers.
    pub records: Vec<(u64, Record)>,
    /// Byte length up to the end of the last `Commit` (where a writer resumes).
    pub committed_len: u64,
    /// Bytes after that: a torn or unfinished batch (or, with `damage`, the
    /// damaged record and everything after it).
    pub tail_len: u64,
    /// Set when the record that ends the readable log is followed by a
    /// well-formed `Commit`: a batch that was acknowledged is damaged.
    pub damage: Option<LogDamage>,
}

/// A record that fails its check although a later `Commit` proves its batch
/// was written whole: bit rot or a misdirected write, not a torn append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDamage {
    /// Byte offset of the damaged record.
    pub offset: u64,
    /// Its expected sequence number.
    pub seq: u64,
    /// Offset of the well-formed `Commit` found after it.
    pub commit_at: u64,
}

impl std::fmt::Display for LogDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log record {} at offset {} is damaged, but a well-formed commit follows at offset {}: \
             acknowledged records are unreadable (run `aslctl repair`)",
            self.seq, self.offset, self.commit_at
        )
    }
}

/// The record framed at `off`, when it is whole, passes its CRC, has sequence
/// number `seq` and decodes.
fn record_at(b: &[u8], off: usize, seq: u64) -> Option<(usize, Record)> {
    if off + RECORD_HEADER_LEN > b.len() {
        return None;
    }
    let len = le_u32(b, off);
    if len > MAX_PAYLOAD || off + RECORD_HEADER_LEN + len as usize > b.len() || le_u64(b, off + 8) != seq {
        return None;
    }
    let end = off + RECORD_HEADER_LEN + len as usize;
    if crc32c::crc32c(&b[off + 8..end]) != le_u32(b, off + 4) {
        return None;
    }
    let rec = Record::decode_payload(b[off + 16], &b[off + RECORD_HEADER_LEN..end]).ok()?;
    Some((end, rec))
}

/// Looks past a bad record at `bad` (expected sequence `seq`) for a
/// well-formed `Commit`. Appends are torn as a prefix (a crash keeps the first
/// bytes of a write), so a torn batch never has its `Commit` on disk after the
/// tear; finding one means the batch was complete and is now damaged.
/// Candidates are framed records whose sequence number fits between `seq` and
/// the most records the remaining bytes could hold, so the scan rarely computes
/// a CRC at a position that is not a record.
fn commit_after(b: &[u8], bad: usize, seq: u64) -> Option<usize> {
    let max_records = (b.len() - bad) / RECORD_HEADER_LEN;
    let mut p = bad + 1;
    while p + RECORD_HEADER_LEN <= b.len() {
        let s = le_u64(b, p + 8);
        if s > seq && s <= seq.saturating_add(max_records as u64) && b[p + 16] == 4 {
            if let Some((_, Record::Commit { .. })) = record_at(b, p, s) {
                return Some(p);
            }
        }
        p += 1;
    }
    None
}

/// Parses a log image; never fails on a bad tail, only on a bad header. A
/// damaged acknowledged batch is reported in `LogContents::damage`, with the
/// records before it.
pub fn parse(b: &[u8]) -> Result<LogContents, DecodeError> {
    let (start_seq, store_id) = decode_header(b)?;
    let mut out = LogContents {
        start_seq,
        store_id,
        committed_len: LOG_HEADER_LEN,
        ..Default::default()
    };
    let mut pending = Vec::new();
    let mut off = LOG_HEADER_LEN as usize;
    let mut seq = start_seq;
    while off < b.len() {
        let Some((end, rec)) = record_at(b, off, seq) else {
            if let Some(commit_at) = commit_after(b, off, seq) {
                out.damage = Some(LogDamage {
                    offset: off as u64,
                    seq,
                    commit_at: commit_at as u64,
                });
            }
            break;
        };
        let commit = matches!(rec, Record::Commit { .. });
        pending.push((seq, rec));
        // A hostile header may start the sequence at the top of its range.
        let Some(next) = seq.checked_add(1) else {
            break;
        };
        seq = next;
        off = end;
        if commit {
            out.records.append(&mut pending);
            out.committed_len = off as u64;
        }
    }
    out.tail_len = b.len() as u64 - out.committed_len;
    Ok(out)
}

/// Reads and parses a log file.
pub(crate) fn read(io: &dyn Backend, path: &Path) -> Result<LogContents> {
    let b = io.read(path).ctx(|| format!("read log {}", path.display()))?;
    parse(&b).map_err(|e| Error::corrupt(path, e))
}

/// How many recent batch ends a [`LogWriter`] remembers the offsets of, so
/// that a follower of the log (the store's `changes_since`) reads only what
/// was appended since its cursor rather than the whole file, which grows
/// with every write until the next checkpoint. 16 bytes each; a few in
/// unit tests, so that they reach past the window.
pub(crate) const RECENT_ENDS: usize = if cfg!(test) { 8 } else { 4096 };

/// Appends batches to the current log file.
pub(crate) struct LogWriter {
    pub(crate) path: PathBuf,
    file: Box<dyn StoreFile>,
    len: u64,
    pub(crate) next_seq: u64,
    /// `(next_seq, len)` after each of the latest batches, oldest first.
    ends: VecDeque<(u64, u64)>,
}

impl LogWriter {
    /// Creates a fresh log file starting at `start_seq`, durably.
    pub(crate) fn create(io: &dyn Backend, path: &Path, start_seq: u64, store_id: u64) -> Result<Self> {
        let file = io
            .open(path, OpenMode::CreateTruncate)
            .ctx(|| format!("create log {}", path.display()))?;
        file.write_all_at(&encode_header(start_seq, store_id), 0)
            .and_then(|_| file.sync_all())
            .ctx(|| format!("write log header {}", path.display()))?;
        sync_dir(io, path.parent().unwrap_or(Path::new(".")))?;
        Ok(Self::new(path, file, LOG_HEADER_LEN, start_seq))
    }

    fn new(path: &Path, file: Box<dyn StoreFile>, len: u64, next_seq: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            file,
            len,
            next_seq,
            ends: VecDeque::from([(next_seq, len)]),
        }
    }

    /// Reopens an existing log after recovery, cutting off its uncommitted tail.
    pub(crate) fn reopen(io: &dyn Backend, path: &Path, contents: &LogContents) -> Result<Self> {
        if let Some(d) = &contents.damage {
            return Err(Error::corrupt(path, d));
        }
        let file = io
            .open(path, OpenMode::ReadWrite)
            .ctx(|| format!("open log {}", path.display()))?;
        if contents.tail_len > 0 {
            file.set_len(contents.committed_len)
                .and_then(|_| file.sync_all())
                .ctx(|| format!("truncate torn tail of {}", path.display()))?;
        }
        let next_seq = contents.start_seq + contents.records.len() as u64;
        Ok(Self::new(path, file, contents.committed_len, next_seq))
    }

    /// Appends a batch (which must end in a `Commit`) with one write and one fdatasync.
    pub(crate) fn append(&mut self, batch: &[Record]) -> Result<u64> {
        debug_assert!(matches!(batch.last(), Some(Record::Commit { .. })));
        let mut buf = Vec::with_capacity(batch.len() * (RECORD_HEADER_LEN + ENTRY_LEN));
        for (i, r) in batch.iter().enumerate() {
            r.encode(self.next_seq + i as u64, &mut buf);
        }
        let written = self
            .file
            .write_all_at(&buf, self.len)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // A batch whose write or fdatasync failed is not committed, and must
            // never become so: after a failed fdatasync Linux may drop the dirty
            // pages or mark them clean, so what the file shows now says nothing
            // about the disk. Cut the batch off (the caller poisons the writer);
            // a reopen then never replays it.
            let _ = self.file.set_len(self.len).and_then(|_| self.file.sync_data());
            return Err(e).ctx(|| format!("append to log {}", self.path.display()))?;
        }
        self.len += buf.len() as u64;
        self.next_seq += batch.len() as u64;
        if self.ends.len() == RECENT_ENDS {
            self.ends.pop_front();
        }
        self.ends.push_back((self.next_seq, self.len));
        Ok(self.next_seq - 1)
    }

    /// The committed records from sequence number `from` on, read from the
    /// file's tail alone; `None` when `from` is not the end of one of the
    /// latest batches (older, or not a batch boundary) or the tail does not
    /// read back whole, so the caller reads the whole file instead and
    /// reports what it finds there.
    pub(crate) fn records_since(&self, from: u64) -> Option<Vec<(u64, Record)>> {
        let i = self.ends.binary_search_by_key(&from, |&(seq, _)| seq).ok()?;
        let start = self.ends[i].1;
        let mut b = vec![0u8; usize::try_from(self.len - start).ok()?];
        self.file.read_exact_at(&mut b, start).ok()?;
        let (mut off, mut seq, mut out) = (0, from, Vec::new());
        while off < b.len() {
            let (end, rec) = record_at(&b, off, seq)?;
            out.push((seq, rec));
            (off, seq) = (end, seq + 1);
        }
        (seq == self.next_seq).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ArtifactId;
    use crate::index::entry::DomainId;

    fn batch() -> Vec<Record> {
        vec![
            Record::SegmentCreated { id: 1 },
            Record::Entry(Entry::tombstone(ArtifactId::of(b"x"), DomainId::LOCAL)),
            Record::Commit { segment: 1, len: 100 },
        ]
    }

    #[test]
    fn torn_tail_is_cut_to_last_commit() {
        let mut b = encode_header(10, 7).to_vec();
        for (i, r) in batch().iter().enumerate() {
            r.encode(10 + i as u64, &mut b);
        }
        let full = b.len();
        Record::Entry(Entry::tombstone(ArtifactId::of(b"y"), DomainId::LOCAL)).encode(13, &mut b);
        let c = parse(&b).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.committed_len as usize, full);
        assert_eq!(c.tail_len as usize, b.len() - full);
        for cut in LOG_HEADER_LEN as usize..full {
            let c = parse(&b[..cut]).unwrap();
            assert!(c.records.is_empty(), "partial batch at {cut} accepted");
            assert_eq!(c.damage, None, "a torn append at {cut} taken for damage");
        }
        // Torn appends of a second batch after a committed one: never damage.
        let mut two = b[..full].to_vec();
        for (i, r) in batch().iter().enumerate() {
            r.encode(13 + i as u64, &mut two);
        }
        for cut in full..two.len() {
            let c = parse(&two[..cut]).unwrap();
            assert_eq!((c.records.len(), c.damage), (3, None), "cut at {cut}");
        }
        let mut g = b.clone();
        g[LOG_HEADER_LEN as usize + 20] ^= 1;
        let c = parse(&g).unwrap();
        assert!(c.records.is_empty());
        // The first record is damaged but its batch's Commit is on disk.
        assert_eq!(c.damage.map(|d| (d.offset, d.seq)), Some((LOG_HEADER_LEN, 10)));
        let ids: Vec<ArtifactId> = parse(&b)
            .unwrap()
            .records
            .iter()
            .filter_map(|(_, r)| match r {
                Record::Entry(e) => Some(e.id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec![ArtifactId::of(b"x")]);
    }
}
