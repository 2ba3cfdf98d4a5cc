//! Replay: a checkpoint plus the committed log records after it give CURRENT.
//!
//! This is a pure function of its two inputs (no file is touched), so opening
//! a store and repairing one share it, and invariant 4 — the same checkpoint and
//! log always give the same CURRENT and the same identity — is unit-tested here
//! rather than argued.

use std::collections::BTreeMap;

use crate::id::{ArtifactId, IdBuildHasher};
use crate::index::entry::Entry;

use super::catalog::SnapshotMeta;
use super::checkpoint::{Checkpoint, SegmentState};
use super::log::{LogContents, Record};

/// Records newer than the last index file, by id (the newest record wins).
pub type Memtable = std::collections::HashMap<ArtifactId, Entry, IdBuildHasher>;

/// The state a checkpoint and its log tail describe.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replayed {
    /// Index records written after the checkpoint.
    pub memtable: Memtable,
    /// Every segment that exists, with its committed length and usage.
    pub segments: BTreeMap<u32, SegmentState>,
    /// The next segment number to allocate.
    pub next_segment: u32,
    /// Named snapshots.
    pub snapshots: BTreeMap<String, SnapshotMeta>,
    /// Pins by name.
    pub pins: BTreeMap<String, ArtifactId>,
    /// The sequence number the next log record gets.
    pub next_seq: u64,
}

/// Why a log cannot be replayed on top of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log was written by another store.
    #[error("log belongs to store {log:016x}, the checkpoint to {checkpoint:016x}")]
    ForeignLog {
        /// Store id in the log header.
        log: u64,
        /// Store id in the checkpoint.
        checkpoint: u64,
    },
    /// The log does not start where the checkpoint ends.
    #[error("log starts at record {log} but the checkpoint ends before record {checkpoint}")]
    Gap {
        /// First sequence number in the log.
        log: u64,
        /// The checkpoint's `next_seq`.
        checkpoint: u64,
    },
}

/// Applies the committed records of `log` to `ckpt`.
pub fn replay(ckpt: &Checkpoint, log: &LogContents) -> Result<Replayed, ReplayError> {
    if log.store_id != ckpt.store_id {
        return Err(ReplayError::ForeignLog {
            log: log.store_id,
            checkpoint: ckpt.store_id,
        });
    }
    if log.start_seq != ckpt.next_seq {
        return Err(ReplayError::Gap {
            log: log.start_seq,
            checkpoint: ckpt.next_seq,
        });
    }
    let mut out = Replayed {
        memtable: Memtable::default(),
        segments: ckpt.segments.iter().map(|s| (s.id, *s)).collect(),
        next_segment: ckpt.next_segment,
        snapshots: ckpt.snapshots.iter().map(|m| (m.name.clone(), m.clone())).collect(),
        pins: ckpt.pins.iter().cloned().collect(),
        next_seq: log.start_seq + log.records.len() as u64,
    };
    for (_, r) in &log.records {
        out.apply(r);
    }
    Ok(out)
}

impl Replayed {
    /// Applies one record.
    fn apply(&mut self, r: &Record) {
        match r {
            Record::Entry(e) => {
                self.memtable.insert(e.id, *e);
            }
            Record::SegmentCreated { id } => {
                let st = SegmentState::new(*id, crate::block::segment::SEGMENT_HEADER_LEN, false);
                self.segments.insert(*id, st);
                self.next_segment = self.next_segment.max(id + 1);
            }
            Record::SegmentSealed { id, len } => {
                let st = self.segments.entry(*id).or_insert(SegmentState::new(*id, *len, true));
                st.len = *len;
                st.sealed = true;
            }
            Record::Commit { segment, len } => {
                if let Some(s) = self.segments.get_mut(segment) {
                    if !s.sealed {
                        s.len = *len;
                    }
                }
            }
            Record::SegmentUsage { id, live, total } => {
                if let Some(s) = self.segments.get_mut(id) {
                    s.live = *live;
                    s.total = *total;
                }
            }
            Record::SegmentDropped { id } => {
                self.segments.remove(id);
            }
            Record::SnapshotCreated(m) => {
                self.snapshots.insert(m.name.clone(), m.clone());
            }
            Record::SnapshotDeleted { name } => {
                self.snapshots.remove(name);
            }
            Record::Pinned { name, id } => {
                self.pins.insert(name.clone(), *id);
            }
            Record::Unpinned { name } => {
                self.pins.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::{DomainId, Visibility};
    use crate::snapshot::current::{CurrentHasher, CurrentId};
    use crate::snapshot::log::{encode_header, parse};

    fn entry(n: u8, seg: u32) -> Entry {
        Entry::packed(ArtifactId::of(&[n]), seg, 32, 40, 1, false)
    }

    fn log_of(start: u64, store: u64, recs: &[Record]) -> LogContents {
        let mut b = encode_header(start, store).to_vec();
        for (i, r) in recs.iter().enumerate() {
            r.encode(start + i as u64, &mut b);
        }
        parse(&b).unwrap()
    }

    impl Replayed {
        fn sorted_memtable(&self) -> Vec<Entry> {
            let mut v: Vec<Entry> = self.memtable.values().copied().collect();
            v.sort_unstable_by_key(|e| e.id);
            v
        }
    }

    fn identity(r: &Replayed) -> CurrentId {
        let mut h = CurrentHasher::default();
        for e in r.sorted_memtable().iter().filter(|e| !e.is_tombstone()) {
            h.add(e);
        }
        h.finish()
    }

    fn ckpt() -> Checkpoint {
        Checkpoint {
            store_id: 7,
            next_seq: 5,
            log_file: 2,
            next_segment: 2,
            next_index: 1,
            segments: vec![SegmentState::new(1, 4096, true)],
            ..Default::default()
        }
    }

    fn records() -> Vec<Record> {
        let meta = SnapshotMeta {
            name: "s".into(),
            identity: CurrentId([1; 32]),
            created: 3,
            artifacts: 1,
            bytes: 1,
        };
        vec![
            Record::SegmentCreated { id: 2 },
            Record::Entry(entry(1, 2)),
            Record::Entry(entry(2, 2)),
            Record::Entry(entry(3, 1).with_visibility(Visibility::Published)),
            Record::SegmentUsage {
                id: 2,
                live: 2,
                total: 2,
            },
            Record::Commit { segment: 2, len: 200 },
            Record::Entry(entry(2, 2).removed()),
            Record::SnapshotCreated(meta),
            Record::Pinned {
                name: "p".into(),
                id: ArtifactId::of(&[1]),
            },
            Record::SegmentSealed { id: 2, len: 300 },
            Record::SegmentDropped { id: 1 },
            Record::Commit { segment: 0, len: 0 },
            // Not committed: a torn batch is not replayed.
            Record::Entry(entry(9, 3)),
        ]
    }

    #[test]
    fn replay_applies_committed_records() {
        let r = replay(&ckpt(), &log_of(5, 7, &records())).unwrap();
        assert_eq!(r.next_seq, 5 + 12);
        assert_eq!(r.next_segment, 3);
        assert_eq!(r.segments.keys().copied().collect::<Vec<_>>(), vec![2]);
        let s2 = r.segments[&2];
        assert!(s2.sealed);
        assert_eq!((s2.len, s2.live, s2.total), (300, 2, 2));
        assert!(r.memtable[&ArtifactId::of(&[2])].is_tombstone());
        assert!(!r.memtable.contains_key(&ArtifactId::of(&[9])));
        assert_eq!(r.memtable[&ArtifactId::of(&[3])].visibility, Visibility::Published);
        assert_eq!(r.snapshots.len(), 1);
        assert_eq!(r.pins["p"], ArtifactId::of(&[1]));
        assert_eq!(r.memtable[&ArtifactId::of(&[1])].domain, DomainId::LOCAL);
    }

    #[test]
    fn replay_is_deterministic() {
        let a = replay(&ckpt(), &log_of(5, 7, &records())).unwrap();
        let b = replay(&ckpt(), &log_of(5, 7, &records())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sorted_memtable(), b.sorted_memtable());
        assert_eq!(identity(&a), identity(&b));
        // A different history gives a different CURRENT.
        let mut other = records();
        other.remove(6);
        let c = replay(&ckpt(), &log_of(5, 7, &other)).unwrap();
        assert_ne!(identity(&a), identity(&c));
    }

    #[test]
    fn replay_refuses_a_log_that_does_not_continue_the_checkpoint() {
        assert!(matches!(
            replay(&ckpt(), &log_of(5, 8, &records())),
            Err(ReplayError::ForeignLog { .. })
        ));
        assert!(matches!(
            replay(&ckpt(), &log_of(6, 7, &records())),
            Err(ReplayError::Gap { .. })
        ));
    }
}
