//! Small artifacts accepted by a put but not yet in a block on disk.
//!
//! They live here, behind a lock of their own, rather than inside the writer:
//! a reader that misses the index looks here without waiting for the writer,
//! which may be busy with a whole `put_batch` or a large artifact. Only the
//! writer (holding the writer mutex) changes the buffer, and it keeps an
//! artifact visible here until its index record is in the memtable, so a
//! reader that misses both and then re-checks the index cannot miss it.

use std::collections::HashMap;

use crate::block::format::{PackedBuilder, PackedEntry};
use crate::id::{ArtifactId, IdBuildHasher};
use crate::index::entry::Placement;

use super::read::ArtifactInfo;

/// Where a pending artifact sits.
#[derive(Clone, Copy)]
enum Slot {
    /// In the block being filled, at this index.
    Open(usize),
    /// In full block `block` awaiting compression, entry `entry`.
    Ready { block: usize, entry: usize },
}

/// A full block set aside by `put_batch` to be compressed with others in parallel.
pub(crate) struct ReadyBlock {
    pub(crate) raw: Vec<u8>,
    pub(crate) entries: Vec<PackedEntry>,
    pub(crate) placements: Vec<Placement>,
}

/// The buffer of small artifacts not yet written.
#[derive(Default)]
pub(crate) struct Pending {
    open: PackedBuilder,
    open_placements: Vec<Placement>,
    ready: Vec<ReadyBlock>,
    ids: HashMap<ArtifactId, Slot, IdBuildHasher>,
}

impl Pending {
    /// Whether nothing is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is buffered.
    pub(crate) fn contains(&self, id: &ArtifactId) -> bool {
        self.ids.contains_key(id)
    }

    /// The bytes of a buffered artifact.
    pub(crate) fn get(&self, id: &ArtifactId) -> Option<&[u8]> {
        match *self.ids.get(id)? {
            Slot::Open(i) => self.open.get(i),
            Slot::Ready { block, entry } => {
                let b = self.ready.get(block)?;
                let e = b.entries.get(entry)?;
                b.raw.get(e.offset as usize..(e.offset + e.len) as usize)
            }
        }
    }

    /// The placement a buffered artifact will be written with.
    pub(crate) fn placement(&self, id: &ArtifactId) -> Option<Placement> {
        match *self.ids.get(id)? {
            Slot::Open(i) => self.open_placements.get(i).copied(),
            Slot::Ready { block, entry } => self.ready.get(block)?.placements.get(entry).copied(),
        }
    }

    /// Every buffered id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &ArtifactId> {
        self.ids.keys()
    }

    /// Every buffered artifact as a listing shows it, in id order (the
    /// snapshot iteration merges with what is on disk).
    pub(crate) fn listing(&self, from: Option<&ArtifactId>) -> Vec<ArtifactInfo> {
        let mut v: Vec<ArtifactInfo> = self
            .ids
            .keys()
            .filter(|id| from.is_none_or(|f| *id >= f))
            .filter_map(|id| {
                let p = self.placement(id)?;
                Some(ArtifactInfo {
                    id: *id,
                    len: self.get(id)?.len() as u64,
                    domain: p.domain,
                    visibility: p.visibility,
                })
            })
            .collect();
        v.sort_unstable_by_key(|i| i.id);
        v
    }

    /// Adds an artifact to the block being filled.
    pub(crate) fn push(&mut self, id: ArtifactId, bytes: &[u8], placement: Placement) {
        let i = self.open.push(id, bytes);
        self.open_placements.push(placement);
        self.ids.insert(id, Slot::Open(i));
    }

    /// Raw size of the block being filled.
    pub(crate) fn open_len(&self) -> usize {
        self.open.raw_len()
    }

    /// Whether the block being filled is empty.
    pub(crate) fn open_is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The block being filled, built (the buffer keeps it until `clear_open`).
    pub(crate) fn build_open(&self) -> (Vec<u8>, Vec<PackedEntry>, Vec<Placement>) {
        let (raw, entries) = self.open.build();
        (raw, entries, self.open_placements.clone())
    }

    /// Forgets the block being filled, once its records are in the memtable.
    pub(crate) fn clear_open(&mut self) {
        let ids = &mut self.ids;
        ids.retain(|_, s| !matches!(s, Slot::Open(_)));
        self.open.clear();
        self.open_placements.clear();
    }

    /// Moves the block being filled to the ready list (its artifacts stay
    /// readable here).
    pub(crate) fn set_open_aside(&mut self) {
        let (raw, entries) = self.open.finish();
        let block = self.ready.len();
        for (entry, e) in entries.iter().enumerate() {
            self.ids.insert(e.id, Slot::Ready { block, entry });
        }
        let placements = std::mem::take(&mut self.open_placements);
        self.ready.push(ReadyBlock {
            raw,
            entries,
            placements,
        });
    }

    /// Full blocks waiting to be compressed and written.
    pub(crate) fn ready(&self) -> &[ReadyBlock] {
        &self.ready
    }

    /// Forgets the ready blocks, once their records are in the memtable.
    pub(crate) fn clear_ready(&mut self) {
        self.ids.retain(|_, s| !matches!(s, Slot::Ready { .. }));
        self.ready.clear();
    }
}
