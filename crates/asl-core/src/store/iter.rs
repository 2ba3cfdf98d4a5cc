//! Listing and resolving: iteration over CURRENT's live artifacts in id
//! order or in storage order, and resolving a hex prefix to an id.

use crate::error::{Error, Result};
use crate::id::{ArtifactId, IdPrefix};
use crate::index::entry::{DomainId, Entry, Visibility};
use crate::index::merge::Merged;

use super::read::ArtifactInfo;
use super::Store;

impl Store {
    /// Resolves a full id or a unique hex prefix of a live artifact's id.
    pub fn resolve(&self, text: &str) -> Result<ArtifactId> {
        let prefix = IdPrefix::parse(text)?;
        if let Some(id) = prefix.full() {
            return Ok(id);
        }
        const CAP: usize = 64;
        let mut candidates: std::collections::BTreeMap<ArtifactId, bool> = Default::default();
        {
            let st = self.state.read();
            let files = st.indexes.clone();
            let mut sources: Vec<Vec<Entry>> = vec![st
                .memtable
                .values()
                .filter(|e| prefix.matches(&e.id))
                .take(CAP)
                .copied()
                .collect()];
            drop(st);
            for f in &files {
                sources.push(f.prefix_matches(&prefix, CAP)?);
            }
            // Newest source first: the first record seen for an id decides.
            for src in sources {
                for e in src {
                    candidates.entry(e.id).or_insert(!e.is_tombstone() && !e.is_chunk());
                }
            }
        }
        for id in self.pending.read().ids() {
            if prefix.matches(id) {
                candidates.insert(*id, true);
            }
        }
        let live: Vec<ArtifactId> = candidates.into_iter().filter(|(_, l)| *l).map(|(k, _)| k).collect();
        match live.len() {
            0 => Err(Error::PrefixNotFound(prefix.as_str().to_string())),
            1 => Ok(live[0]),
            n => Err(Error::AmbiguousPrefix {
                prefix: prefix.as_str().to_string(),
                count: n,
                candidates: live.into_iter().take(crate::error::AMBIGUOUS_SHOWN).collect(),
            }),
        }
    }

    /// Iterates over the live artifacts of CURRENT in id order, those still
    /// buffered for a block included. Reading never writes: the buffer is
    /// merged into the listing, not flushed to make it appear.
    pub fn iter(&self) -> Result<Iter> {
        self.iter_over(None)
    }

    /// [`Store::iter`](crate::Store::iter) from the first live artifact whose id is at least
    /// `from`: a page of a listing starts where the last one ended without
    /// walking what came before.
    pub fn iter_from(&self, from: &ArtifactId) -> Result<Iter> {
        self.iter_over(Some(from))
    }

    fn iter_over(&self, from: Option<&ArtifactId>) -> Result<Iter> {
        // The buffer first: an artifact leaves it only once its record is in
        // the memtable, so one that moves between the two reads is seen in
        // the second.
        let pending = self.pending.read().listing(from);
        let st = self.state.read();
        let inner = Merged::new(super::sorted(&st.memtable), &st.indexes, from.copied())?;
        Ok(Iter {
            inner,
            pending: pending.into_iter().peekable(),
            head: None,
        })
    }

    /// The ids of CURRENT's live artifacts ordered by where their bytes lie
    /// (segment, then block), for a caller about to read every one of them:
    /// consecutive reads then share blocks, each block is decoded once and
    /// served from the block cache after, where id order would decode a
    /// block per artifact. Those still buffered come last (they are read
    /// from memory). Holds all the ids in memory (32 bytes each).
    pub fn ids_in_storage_order(&self) -> Result<Vec<ArtifactId>> {
        // The buffer is small: those of its ids also met on disk are
        // dropped from it as the index is walked, the rest go last.
        let mut buffered: std::collections::HashSet<ArtifactId> =
            self.pending.read().listing(None).into_iter().map(|p| p.id).collect();
        let mut v: Vec<(u32, u64, u32, ArtifactId)> = Vec::new();
        for e in self.live_entries()? {
            let e = e?;
            buffered.remove(&e.id);
            v.push((e.segment, e.block_offset, e.inner, e.id));
        }
        v.sort_unstable();
        let mut ids: Vec<ArtifactId> = v.into_iter().map(|(_, _, _, id)| id).collect();
        ids.extend(buffered);
        Ok(ids)
    }

    /// All live artifacts, collected. Prefer [`Store::iter`](crate::Store::iter) for large stores.
    pub fn list(&self) -> Result<Vec<ArtifactInfo>> {
        self.iter()?.collect()
    }
}

/// Iterator over the live artifacts of CURRENT (see [`Store::iter`](crate::Store::iter)) or of a
/// snapshot.
pub struct Iter {
    inner: Merged,
    /// Artifacts still buffered for a block when the iteration began, in id
    /// order: newer than any record on disk for the same id.
    pending: std::iter::Peekable<std::vec::IntoIter<ArtifactInfo>>,
    /// The next record of `inner`, looked at but not yet handed out.
    head: Option<Entry>,
}

impl Iter {
    pub(crate) fn over(inner: Merged) -> Self {
        Self {
            inner,
            pending: Vec::new().into_iter().peekable(),
            head: None,
        }
    }
}

impl Iterator for Iter {
    type Item = Result<ArtifactInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.head.is_none() {
                self.head = match self.inner.next() {
                    Some(Ok(e)) => Some(e),
                    Some(Err(e)) => return Some(Err(e.into())),
                    None => None,
                };
            }
            let buffered_first = match (&self.head, self.pending.peek()) {
                (None, None) => return None,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(e), Some(p)) => p.id <= e.id,
            };
            if buffered_first {
                let p = self.pending.next()?;
                if self.head.as_ref().is_some_and(|e| e.id == p.id) {
                    self.head = None;
                }
                return Some(Ok(p));
            }
            let e = self.head.take()?;
            if !(e.is_tombstone() || e.is_chunk()) {
                return Some(Ok(ArtifactInfo::from(&e)));
            }
        }
    }
}

impl Store {
    pub(crate) fn live_entries(&self) -> Result<impl Iterator<Item = Result<Entry>>> {
        let st = self.state.read();
        Ok(Merged::new(super::sorted(&st.memtable), &st.indexes, None)?
            .filter(|e| !matches!(e, Ok(e) if e.is_tombstone() || e.is_chunk()))
            .map(|e| e.map_err(Error::from)))
    }
}

/// Which artifacts of a listing to keep: a view of CURRENT (or of a
/// snapshot) per domain and visibility, as the index records them. The
/// default keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only artifacts owned by this domain: the store's own
    /// ([`DomainId::LOCAL`]) or one it imported from (the local number the
    /// domain table gave it).
    pub domain: Option<DomainId>,
    /// Only artifacts with this visibility.
    pub visibility: Option<Visibility>,
}

impl ListFilter {
    /// Whether the filter keeps `a`.
    pub fn keeps(&self, a: &ArtifactInfo) -> bool {
        self.domain.is_none_or(|d| a.domain == d) && self.visibility.is_none_or(|v| a.visibility == v)
    }

    /// Whether it keeps everything.
    pub fn is_empty(&self) -> bool {
        self.domain.is_none() && self.visibility.is_none()
    }

    /// `listing` with only what the filter keeps; errors pass through.
    pub fn apply<I>(self, listing: I) -> impl Iterator<Item = Result<ArtifactInfo>>
    where
        I: Iterator<Item = Result<ArtifactInfo>>,
    {
        listing.filter(move |a| a.as_ref().map_or(true, |a| self.keeps(a)))
    }
}
