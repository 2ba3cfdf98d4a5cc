//! Scrubs in budget: which segments a partial `verify` reads, and the
//! `SCRUB` file that remembers when each segment was last verified, so
//! that repeated budgeted runs cover the whole store in rotation (ZFS's
//! scrub reads everything at once; restic's `check --read-data-subset`
//! reads a slice chosen per run but remembers nothing between runs).
//!
//! The file is bookkeeping, never a source of truth: lost or damaged, it
//! only makes the next runs start the rotation again. It is the one file
//! a read-only handle writes, so that `aslctl verify` keeps its rotation
//! without taking the store's lock; failing to write it is reported beside
//! the findings and never fails the scrub.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::fsutil::{read, write_atomic};
use crate::textfile;

use super::snapshots::now_secs;
use super::Store;

/// The file's name in the store directory.
pub(crate) const SCRUB_FILE: &str = "SCRUB";
const MAGIC: &str = "ASLSCRUB";

/// What a scrub reads: everything (the default), or a budget's worth of
/// segments, least recently verified first.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScrubOptions {
    /// How much segment data to read; `None` reads it all.
    pub budget: Option<ScrubBudget>,
    /// Only segments holding bytes no scrub has read: new segments, and
    /// the open segment when it grew since.
    pub since_last: bool,
}

/// How much of the store's segment data one scrub reads. A run always
/// reads at least one segment, so that rotation advances whatever the
/// budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScrubBudget {
    /// At most this many bytes of segment files.
    Bytes(u64),
    /// At most this fraction (0 to 1) of all segment bytes.
    Fraction(f64),
}

/// Where the rotation stands: how long ago the least recently verified
/// data was verified, and how much was never verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStatus {
    /// Segment files in the store.
    pub segments: u64,
    /// Their bytes (the open segment's up to its last commit).
    pub segment_bytes: u64,
    /// Segments no scrub has read.
    pub never_verified_segments: u64,
    /// Bytes no scrub has read: those segments, and what the open segment
    /// gained since it was last read.
    pub unverified_bytes: u64,
    /// The least recent verification among the segments that had one
    /// (seconds since 1970).
    pub oldest_verified_at: Option<u64>,
}

/// One segment's last verification: when, and how many of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    at: u64,
    len: u64,
}

/// The segments a scrub reads (`None`: all) and the bytes of each segment.
pub(crate) struct Plan {
    pub(crate) only: Option<BTreeSet<u32>>,
    /// Each segment's length as the plan found it.
    pub(crate) lens: BTreeMap<u32, u64>,
}

impl Plan {
    pub(crate) fn includes(&self, seg: u32) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(&seg))
    }
}

fn encode(seen: &BTreeMap<u32, Verified>) -> Vec<u8> {
    let lines: Vec<String> = seen
        .iter()
        .map(|(seg, v)| format!("segment={seg} verified_at={} len={}", v.at, v.len))
        .collect();
    textfile::frame(MAGIC, &lines)
}

fn decode(b: &[u8]) -> Result<BTreeMap<u32, Verified>, String> {
    let mut seen = BTreeMap::new();
    for line in textfile::unframe(b, MAGIC)? {
        let mut f = [None; 3];
        for (slot, key) in f.iter_mut().zip(["segment=", "verified_at=", "len="]) {
            *slot = line
                .split(' ')
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok());
        }
        match f {
            [Some(seg), Some(at), Some(len)] if seg <= u64::from(u32::MAX) => {
                seen.insert(seg as u32, Verified { at, len });
            }
            _ => return Err(format!("unreadable line {line:?}")),
        }
    }
    Ok(seen)
}

impl Store {
    /// The `SCRUB` file's record; empty (with the reason) when it is
    /// missing or damaged.
    fn scrub_record(&self) -> (BTreeMap<u32, Verified>, Option<String>) {
        let path = self.layout.root.join(SCRUB_FILE);
        let io = &*self.layout.io;
        if !io.is_file(&path) {
            return (BTreeMap::new(), None);
        }
        match read(io, &path)
            .map_err(|e| crate::Error::from(e).to_string())
            .and_then(|b| decode(&b))
        {
            Ok(seen) => (seen, None),
            Err(e) => (
                BTreeMap::new(),
                Some(format!(
                    "{} unreadable ({e}): the rotation starts again",
                    path.display()
                )),
            ),
        }
    }

    /// Each segment's bytes as a scrub reads them.
    fn segment_lens(&self) -> BTreeMap<u32, u64> {
        let segments = self.state.read().segments.clone();
        let io = &*self.layout.io;
        segments
            .iter()
            .map(|(id, seg)| {
                let file = io.file_len(&seg.path).unwrap_or(0);
                let len = match seg.is_sealed() {
                    true => file,
                    false => self.committed_len(*id).map_or(file, |c| c.min(file)),
                };
                (*id, len)
            })
            .collect()
    }

    /// Chooses the segments a scrub with `opts` reads; the notes say what
    /// went wrong with the `SCRUB` file.
    pub(crate) fn scrub_plan(&self, opts: &ScrubOptions, notes: &mut Vec<String>) -> Plan {
        let lens = self.segment_lens();
        if opts.budget.is_none() && !opts.since_last {
            return Plan { only: None, lens };
        }
        let (seen, damaged) = self.scrub_record();
        notes.extend(damaged);
        let mut order: Vec<(u64, u32, u64)> = lens
            .iter()
            .filter(|(id, len)| !opts.since_last || seen.get(id).is_none_or(|v| v.len < **len))
            .map(|(id, len)| (seen.get(id).map_or(0, |v| v.at), *id, *len))
            .collect();
        order.sort_unstable();
        let total: u64 = lens.values().sum();
        let budget = match opts.budget {
            None => u64::MAX,
            Some(ScrubBudget::Bytes(b)) => b,
            Some(ScrubBudget::Fraction(f)) => (total as f64 * f.clamp(0.0, 1.0)).ceil() as u64,
        };
        let mut only = BTreeSet::new();
        let mut spent = 0u64;
        for (_, id, len) in order {
            // Strictly in order, so the least recently verified are never
            // passed over for smaller ones behind them.
            if !only.is_empty() && spent.saturating_add(len) > budget {
                break;
            }
            spent += len;
            only.insert(id);
        }
        Plan { only: Some(only), lens }
    }

    /// Records that the plan's segments were read now, and returns where
    /// the rotation stands. Merges with the file as it is now, so that two
    /// scrubs at once lose at most each other's record, never the file.
    pub(crate) fn scrub_done(&self, plan: &Plan, notes: &mut Vec<String>) -> ScrubStatus {
        let (mut seen, _) = self.scrub_record();
        let now = now_secs();
        seen.retain(|id, _| plan.lens.contains_key(id));
        for (id, len) in &plan.lens {
            if plan.includes(*id) {
                seen.insert(*id, Verified { at: now, len: *len });
            }
        }
        let path = self.layout.root.join(SCRUB_FILE);
        if let Err(e) = write_atomic(&*self.layout.io, &path, &encode(&seen)).map_err(crate::Error::from) {
            notes.push(format!(
                "could not record this scrub in {} ({e}): the next budgeted one reads the same segments",
                path.display()
            ));
        }
        status(&plan.lens, &seen)
    }

    /// [`Maintenance::scrub_status`](crate::Maintenance::scrub_status)'s body.
    pub(crate) fn scrub_status(&self) -> ScrubStatus {
        status(&self.segment_lens(), &self.scrub_record().0)
    }
}

fn status(lens: &BTreeMap<u32, u64>, seen: &BTreeMap<u32, Verified>) -> ScrubStatus {
    let mut s = ScrubStatus {
        segments: lens.len() as u64,
        segment_bytes: lens.values().sum(),
        ..ScrubStatus::default()
    };
    for (id, len) in lens {
        match seen.get(id) {
            None => {
                s.never_verified_segments += 1;
                s.unverified_bytes += len;
            }
            Some(v) => {
                s.unverified_bytes += len.saturating_sub(v.len);
                s.oldest_verified_at = Some(s.oldest_verified_at.map_or(v.at, |o| o.min(v.at)));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_a_damaged_one_is_refused() {
        let mut seen = BTreeMap::new();
        seen.insert(
            3,
            Verified {
                at: 1_700_000_000,
                len: 4096,
            },
        );
        seen.insert(7, Verified { at: 5, len: 0 });
        let b = encode(&seen);
        assert_eq!(decode(&b).unwrap(), seen);
        let mut bad = b.clone();
        bad[12] ^= 1;
        assert!(decode(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn status_counts_what_no_scrub_read() {
        let lens = BTreeMap::from([(1, 100), (2, 50), (3, 10)]);
        let seen = BTreeMap::from([(1, Verified { at: 20, len: 100 }), (2, Verified { at: 10, len: 40 })]);
        let s = status(&lens, &seen);
        assert_eq!(
            (s.never_verified_segments, s.unverified_bytes, s.oldest_verified_at),
            (1, 20, Some(10))
        );
    }
}
