//! The placements (owning domain, visibility, cross-domain source) the old
//! index gave each artifact. Segments do not carry them, so without this a
//! repair would file every artifact as this store's own and internal:
//! what was published would silently stop being served, and imports would
//! lose where they came from.

use std::collections::HashMap;

use super::OldState;
use crate::id::ArtifactId;
use crate::index::entry::{Entry, Placement};
use crate::index::file::IndexFile;
use crate::store::layout::Layout;

/// Each artifact's placement by the old index files that check whole
/// (a damaged one is not trusted, and its artifacts keep the default),
/// the log's records after the checkpoint overriding them.
pub(super) fn old_placements(layout: &Layout, old: Option<&OldState>) -> HashMap<ArtifactId, Placement> {
    let mut out = HashMap::new();
    let Some(old) = old else {
        return out;
    };
    let mut keep = |e: Entry| {
        if !e.is_chunk() {
            out.insert(e.id, e.placement());
        }
    };
    // The checkpoint lists the newest file first (lookups stop at the first
    // hit); read oldest first so a newer record replaces an older one.
    for n in old.ckpt.index_files.iter().rev() {
        let Ok(f) = IndexFile::open(&*layout.io, &layout.index(*n)) else {
            continue;
        };
        if f.validate().is_err() {
            continue;
        }
        (0..f.len()).filter_map(|i| f.entry(i).ok()).for_each(&mut keep);
    }
    if let Some(r) = &old.replayed {
        r.memtable.values().copied().for_each(keep);
    }
    out
}
