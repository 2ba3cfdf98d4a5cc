//! Merged, shadowing iteration over the in-memory table and the index files.
//!
//! Sources are ranked newest first; for an id present in several sources the
//! newest record wins and the others are skipped. With at most a handful of
//! sources a linear pick of the minimum beats a heap.

use std::sync::Arc;

use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::error::Result;
use crate::index::file::IndexFile;

enum Source {
    Mem(std::vec::IntoIter<Entry>),
    File {
        file: Arc<IndexFile>,
        next: u64,
        /// The first entry whose page this pass has not given back yet.
        kept: u64,
    },
}

/// Entries read from a file between two releases of what is behind them:
/// a pass over a whole index (a listing, `stat`, a checkpoint's merge) then
/// keeps a few MiB of it resident, not the whole file.
const RELEASE_EVERY: u64 = 1 << 16;

impl Source {
    fn next(&mut self) -> Option<Result<Entry>> {
        match self {
            Source::Mem(it) => it.next().map(Ok),
            Source::File { file, next, kept } => {
                if *next >= file.len() {
                    file.release_entries(*kept, *next);
                    *kept = *next;
                    return None;
                }
                if *next >= *kept + RELEASE_EVERY {
                    file.release_entries(*kept, *next);
                    *kept = *next;
                }
                let e = file.entry(*next);
                *next += 1;
                Some(e)
            }
        }
    }
}

/// Iterator over the newest record of every id, in id order (tombstones included).
pub(crate) struct Merged {
    sources: Vec<Source>,
    heads: Vec<Option<Entry>>,
    failed: bool,
}

impl Merged {
    /// `mem` (sorted by id) is the newest source; `files` are ordered newest first.
    pub(crate) fn new(mut mem: Vec<Entry>, files: &[Arc<IndexFile>], from: Option<ArtifactId>) -> Result<Self> {
        debug_assert!(mem.windows(2).all(|w| w[0].id < w[1].id));
        if let Some(f) = from {
            mem.retain(|e| e.id >= f);
        }
        let mem_entries = mem;
        let mut sources = vec![Source::Mem(mem_entries.into_iter())];
        for f in files {
            let next = match from {
                Some(id) => f.lower_bound(&id)?,
                None => 0,
            };
            sources.push(Source::File {
                file: f.clone(),
                next,
                kept: next,
            });
        }
        let mut m = Self {
            heads: Vec::with_capacity(sources.len()),
            sources,
            failed: false,
        };
        for i in 0..m.sources.len() {
            let h = m.sources[i].next().transpose()?;
            m.heads.push(h);
        }
        Ok(m)
    }
}

impl Iterator for Merged {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        let mut best: Option<(usize, ArtifactId)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some(e) = h {
                if best.is_none_or(|(_, id)| e.id < id) {
                    best = Some((i, e.id));
                }
            }
        }
        let (winner, id) = best?;
        let out = self.heads[winner];
        for i in 0..self.heads.len() {
            if self.heads[i].is_some_and(|e| e.id == id) {
                match self.sources[i].next().transpose() {
                    Ok(h) => self.heads[i] = h,
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
        out.map(Ok)
    }
}
