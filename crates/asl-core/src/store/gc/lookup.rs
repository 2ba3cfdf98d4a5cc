//! GC's lookups: the newest record of every artifact of a victim, found in
//! one ordered pass over the index before the victim's batches start, and
//! kept valid while writers run by watching what they change.
//!
//! Looking each artifact up under the writer lock, batch by batch, cost a
//! binary search at a random place of every index file per artifact: about
//! 30 % of a collection of spread garbage, much of it page faults, since a
//! GC that must stay within its memory gives the index pages it touched back
//! and then faults them in again. Looked up in id order, the same searches
//! walk each index file once from front to back.
//!
//! The pass runs without the writer lock, so writers may change records
//! after it. While a GC runs, the writer notes every id whose record it
//! changes other than by GC's own copies (puts, removals, visibility,
//! the chunk sweep) in its watch set; a batch looks those ids up again under
//! the lock, and takes the pass's answer for the others. GC's copies are not
//! noted: each moves a record of the victim being collected, and a record
//! found elsewhere never points into a sealed segment again.

use std::collections::HashSet;

use crate::error::Result;
use crate::id::ArtifactId;
use crate::index::entry::{DomainId, Entry, Visibility};

use super::super::{Store, Writer};
use super::Item;

/// What the pass found for one item, in 16 bytes (a whole record is 72 and
/// a victim holds a quarter of a million small artifacts): whether its id's
/// newest record points at the item itself, and if so the fields of that
/// record the item does not already give.
#[derive(Clone, Copy, Default)]
pub(super) struct Seen {
    len: u64,
    domain: DomainId,
    source: u16,
    visibility: Visibility,
    flags: u8,
    here: bool,
}

impl Seen {
    fn of(it: &Item, seg: u32, rec: Option<Entry>) -> Self {
        match rec {
            Some(e) if e.segment == seg && e.block_offset == it.block_offset && e.inner == it.inner => Self {
                len: e.len,
                domain: e.domain,
                source: e.source,
                visibility: e.visibility,
                flags: e.flags,
                here: true,
            },
            _ => Self::default(),
        }
    }

    /// The newest record if it points at `it` in segment `seg`; `None` when
    /// it points elsewhere or there is none (GC treats both alike).
    pub(super) fn record(&self, it: &Item, seg: u32) -> Option<Entry> {
        self.here.then_some(Entry {
            id: it.id,
            segment: seg,
            block_offset: it.block_offset,
            inner: it.inner,
            len: self.len,
            domain: self.domain,
            source: self.source,
            visibility: self.visibility,
            flags: self.flags,
        })
    }
}

impl Writer {
    /// Starts noting changed ids for a GC (see the module docs).
    pub(in crate::store) fn watch_start(&mut self) {
        self.watch = Some(HashSet::new());
    }

    /// Stops noting changed ids and forgets them.
    pub(in crate::store) fn watch_stop(&mut self) {
        self.watch = None;
    }

    /// Notes that `id`'s newest record changed (a no-op unless GC runs).
    pub(in crate::store) fn watched(&mut self, id: ArtifactId) {
        if let Some(w) = &mut self.watch {
            w.insert(id);
        }
    }

    /// Whether `id`'s record changed since the watch started.
    pub(in crate::store) fn changed(&self, id: &ArtifactId) -> bool {
        self.watch.as_ref().is_some_and(|w| w.contains(id))
    }

    /// How many ids the watch holds (for GC's memory account).
    pub(in crate::store) fn watch_len(&self) -> usize {
        self.watch.as_ref().map_or(0, HashSet::len)
    }
}

impl Store {
    /// What the newest record of each item's id is, as of one moment of the
    /// index (items of segment `seg`): the memtable is read and the index
    /// files are taken under one hold of the state lock, then searched in id
    /// order on all cores.
    pub(super) fn newest_in_order(&self, items: &[Item], seg: u32) -> Result<Vec<Seen>> {
        let mut out: Vec<Seen> = vec![Seen::default(); items.len()];
        let mut known = vec![false; items.len()];
        let files = {
            let st = self.state.read();
            for ((slot, known), it) in out.iter_mut().zip(&mut known).zip(items) {
                if let Some(e) = st.memtable.get(&it.id) {
                    (*slot, *known) = (Seen::of(it, seg, Some(*e)), true);
                }
            }
            st.indexes.clone()
        };
        // Ordered by the ids' first 8 bytes: enough for the walk to go front
        // to back (equal prefixes are as good as never seen, and any order
        // finds the same records), and no 32-byte comparisons in the sort.
        let mut keyed: Vec<(u64, u32)> = (0..items.len() as u32)
            .filter(|&i| !known[i as usize])
            .map(|i| (items[i as usize].id.order_key(), i))
            .collect();
        keyed.sort_unstable();
        let mut todo: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for f in &files {
            if todo.is_empty() {
                break;
            }
            // Each core walks its own stretch of the file.
            let parts: Vec<&[u32]> = todo.chunks(todo.len().div_ceil(cores).max(1)).collect();
            let found = crate::par::map(&parts, 1, |_, part| -> Result<Vec<(u32, Seen)>> {
                let mut hits = Vec::new();
                f.get_ascending(part.iter().map(|&i| (i, &items[i as usize].id)), |i, e| {
                    hits.push((i, Seen::of(&items[i as usize], seg, Some(e))))
                })?;
                Ok(hits)
            });
            for part in found {
                for (i, s) in part? {
                    (out[i as usize], known[i as usize]) = (s, true);
                }
            }
            todo.retain(|&i| !known[i as usize]);
        }
        Ok(out)
    }
}

#[cfg(test)]
thread_local! {
    /// Run by a GC on this thread between a victim's pass and its first
    /// batch, with the ids stored in the victim: tests make other writes
    /// land exactly there.
    #[allow(clippy::type_complexity)]
    pub(crate) static AFTER_PASS: std::cell::RefCell<Option<Box<dyn FnMut(&Store, &[ArtifactId])>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
pub(super) fn after_pass(store: &Store, items: &[Item]) {
    let hook = AFTER_PASS.with(|h| h.borrow_mut().take());
    if let Some(mut f) = hook {
        f(store, &items.iter().map(|it| it.id).collect::<Vec<_>>());
        AFTER_PASS.with(|h| *h.borrow_mut() = Some(f));
    }
}
