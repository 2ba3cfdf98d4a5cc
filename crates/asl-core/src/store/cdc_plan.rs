//! Where the content-defined chunks of an artifact stored under a manifest
//! are, for a reader assembling grid pieces from them. A manifest that keeps
//! its chunk list itself is resolved through the index when the reader
//! opens; one whose list is in parts is resolved a part at a time as reads
//! reach it, a few parts kept, so that a reader of any size holds a bounded
//! list and its first byte costs one part's lookups, not the whole artifact's.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::manifest::{Manifest, ManifestChunk, ManifestPart};
use crate::block::reader::{self, Fault};
use crate::block::segment::Segment;
use crate::error::{Error, Result};
use crate::id::ArtifactId;

use super::{artifact_error, State, Store};

/// Resolved parts a plan keeps: the part being read, the next one reached
/// by pieces read ahead, and slack for pieces on other threads.
const PARTS_KEPT: usize = 4;

/// The store's index as readers of chunks need it: a handle that outlives
/// any borrow of the [`Store`], since a reader does.
#[derive(Clone)]
pub(crate) struct ChunkIndex {
    state: Arc<RwLock<State>>,
    /// For errors that name no segment.
    root: PathBuf,
}

impl ChunkIndex {
    /// The segment and block offset of chunk `key` of artifact `id`. A
    /// chunk a sweep has dropped still has its location in the tombstone:
    /// if its bytes are there, they prove themselves. The record and the
    /// segment handle come from one hold of the state lock, and GC indexes
    /// a copy before it drops the segment, so a record never points at a
    /// segment GC has already let go of while its chunk is still retained.
    pub(crate) fn locate(&self, id: &ArtifactId, key: &ArtifactId) -> Result<(Arc<Segment>, u64)> {
        let st = self.state.read();
        if let Some(e) = st.newest(key)?.filter(|e| e.is_chunk() && e.segment != 0) {
            if let Some(seg) = st.segments.get(&e.segment) {
                return Ok((seg.clone(), e.block_offset));
            }
        }
        // A reader resolves parts as it goes: its artifact may have been
        // removed and collected since it opened. That is not damage.
        let gone = match st.newest(id)? {
            None => true,
            Some(rec) => !st.retains(&rec)?,
        };
        if gone {
            return Err(Error::NotFound(*id));
        }
        Err(Error::CorruptArtifact {
            id: *id,
            file: self.root.clone(),
            detail: format!("chunk {key} is not in the index"),
        })
    }

    /// The chunk list part `p` of artifact `id`'s manifest holds, its bytes
    /// proven against its key and its list against what the manifest says.
    pub(crate) fn read_part(&self, id: &ArtifactId, p: &ManifestPart) -> Result<Vec<ManifestChunk>> {
        let (seg, offset) = self.locate(id, &p.key)?;
        let bad = |detail: String| Error::CorruptArtifact {
            id: *id,
            file: seg.path.clone(),
            detail: format!("manifest part {} at {offset}: {detail}", p.key),
        };
        let raw = reader::cdc_chunk_block(&seg, offset).map_err(|f| match f {
            Fault::Read(e) => match artifact_error(e, *id) {
                Error::CorruptArtifact { detail, .. } => bad(detail),
                other => other,
            },
            Fault::Unexpected => bad("not a chunk block".into()),
            Fault::Body(e) => bad(e.to_string()),
        })?;
        let (key, bytes) = crate::block::cdc::decode_chunk(&raw).map_err(|e| bad(e.to_string()))?;
        if key != p.key {
            return Err(bad("holds another chunk".into()));
        }
        crate::block::manifest::decode_part(bytes, p).map_err(|e| bad(e.to_string()))
    }

    /// Locates every chunk of `list`, which starts `at` bytes into artifact
    /// `id` (a key listed twice is looked up once).
    fn resolve(&self, id: &ArtifactId, list: &[ManifestChunk], at: u64) -> Result<Resolved> {
        let mut found: HashMap<ArtifactId, (Arc<Segment>, u64)> = HashMap::new();
        let mut starts = Vec::with_capacity(list.len() + 1);
        let mut chunks = Vec::with_capacity(list.len());
        starts.push(at);
        for c in list {
            let (seg, offset) = match found.get(&c.key) {
                Some(l) => l.clone(),
                None => {
                    let l = self.locate(id, &c.key)?;
                    found.insert(c.key, l.clone());
                    l
                }
            };
            starts.push(starts.last().copied().unwrap_or(at) + c.len as u64);
            chunks.push(CdcLoc {
                key: c.key,
                seg,
                offset,
                len: c.len,
            });
        }
        Ok(Resolved { starts, chunks })
    }
}

/// One content-defined chunk's key and block.
pub(crate) struct CdcLoc {
    pub(crate) key: ArtifactId,
    pub(crate) seg: Arc<Segment>,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A stretch of the chunk list, located: each chunk's offset in the
/// artifact (then the stretch's end) and its block.
pub(crate) struct Resolved {
    starts: Vec<u64>,
    chunks: Vec<CdcLoc>,
}

enum Lists {
    /// The manifest's own list, resolved at open.
    Whole(Arc<Resolved>),
    /// The manifest's parts, each resolved when a read first needs it.
    Parts {
        parts: Vec<ManifestPart>,
        /// Each part's offset in the artifact, then the length.
        starts: Vec<u64>,
        /// Parts resolved lately, most recent last.
        kept: Mutex<VecDeque<(usize, Arc<Resolved>)>>,
    },
}

/// Where an artifact's content-defined chunks are (see the module doc).
pub(crate) struct CdcPlan {
    id: ArtifactId,
    index: ChunkIndex,
    lists: Lists,
}

impl CdcPlan {
    /// The plan for manifest `m`: its own list located now, its parts only
    /// as reads reach them.
    pub(crate) fn open(index: ChunkIndex, m: &Manifest) -> Result<Self> {
        let lists = if m.parts.is_empty() {
            Lists::Whole(Arc::new(index.resolve(&m.id, &m.chunks, 0)?))
        } else {
            let mut starts = Vec::with_capacity(m.parts.len() + 1);
            starts.push(0u64);
            for p in &m.parts {
                starts.push(starts.last().copied().unwrap_or(0) + p.span);
            }
            Lists::Parts {
                parts: m.parts.clone(),
                starts,
                kept: Mutex::new(VecDeque::new()),
            }
        };
        Ok(Self { id: m.id, index, lists })
    }

    /// The stretches of the list overlapping bytes `lo..hi`, in order.
    fn stretches(&self, lo: u64, hi: u64) -> impl Iterator<Item = Result<Arc<Resolved>>> + '_ {
        let range = match &self.lists {
            Lists::Whole(_) => 0..1,
            Lists::Parts { starts, .. } => {
                let first = starts.partition_point(|s| *s <= lo).saturating_sub(1);
                let end = starts.partition_point(|s| *s < hi).min(starts.len() - 1);
                first..end.max(first + 1)
            }
        };
        range.map(move |j| self.stretch(j))
    }

    /// Stretch `j`: the whole list, or part `j` (resolved unless kept).
    fn stretch(&self, j: usize) -> Result<Arc<Resolved>> {
        let (parts, starts, kept) = match &self.lists {
            Lists::Whole(r) => return Ok(r.clone()),
            Lists::Parts { parts, starts, kept } => (parts, starts, kept),
        };
        // Resolved under the lock: pieces read ahead on other threads that
        // reach the same part wait for it rather than look it all up again.
        let mut kept = kept.lock();
        if let Some((_, r)) = kept.iter().find(|(k, _)| *k == j) {
            return Ok(r.clone());
        }
        let list = self.index.read_part(&self.id, &parts[j])?;
        let r = Arc::new(self.index.resolve(&self.id, &list, starts[j])?);
        if kept.len() == PARTS_KEPT {
            kept.pop_front();
        }
        kept.push_back((j, r.clone()));
        Ok(r)
    }

    /// Calls `f` on every chunk of the artifact in order, a stretch at a
    /// time (parts are not kept).
    #[cfg(feature = "bench")]
    pub(crate) fn for_each_chunk(&self, mut f: impl FnMut(&CdcLoc) -> Result<()>) -> Result<()> {
        let list = |r: &Resolved, f: &mut dyn FnMut(&CdcLoc) -> Result<()>| r.chunks.iter().try_for_each(f);
        match &self.lists {
            Lists::Whole(r) => list(r, &mut f),
            Lists::Parts { parts, starts, .. } => {
                for (j, p) in parts.iter().enumerate() {
                    let chunks = self.index.read_part(&self.id, p)?;
                    list(&self.index.resolve(&self.id, &chunks, starts[j])?, &mut f)?;
                }
                Ok(())
            }
        }
    }

    /// Grid piece `idx` (`grid` bytes from `idx * grid`, cut at `len`),
    /// assembled into `buf` from the chunks overlapping it: each block's
    /// kind, stored key and length checked, and with `hash_keys` each
    /// block's CRC and each chunk's bytes hashed against its key too. Not
    /// yet checked against the artifact's tree: the caller does that, which
    /// proves every byte; the keys are hashed only to name the chunk at
    /// fault when that check fails.
    pub(crate) fn assemble(&self, idx: usize, grid: u64, len: u64, hash_keys: bool, buf: &mut Vec<u8>) -> Result<()> {
        let id = self.id;
        let lo = idx as u64 * grid;
        let hi = (lo + grid).min(len);
        // Written over the buffer's old bytes (see `reader::cdc_range_into`),
        // then cut to what this piece holds.
        let mut w = 0;
        for r in self.stretches(lo, hi) {
            let r = r?;
            let mut j = r.starts.partition_point(|s| *s <= lo).saturating_sub(1);
            while j < r.chunks.len() && r.starts[j] < hi {
                let c = &r.chunks[j];
                let bad = |detail: String| Error::CorruptArtifact {
                    id,
                    file: c.seg.path.clone(),
                    detail: format!("chunk {} at {}: {detail}", c.key, c.offset),
                };
                let named = |e: Error| match artifact_error(e, id) {
                    Error::CorruptArtifact { detail, .. } => bad(detail),
                    other => other,
                };
                let fault = |f| match f {
                    Fault::Read(e) => named(e.into()),
                    Fault::Unexpected => bad("not this chunk's block, or holds another chunk".into()),
                    Fault::Body(e) => bad(e.to_string()),
                };
                let (s, e) = (r.starts[j], r.starts[j + 1]);
                let (from, to) = ((lo.max(s) - s) as usize, (hi.min(e) - s) as usize);
                if hash_keys {
                    let raw = reader::cdc_chunk(&c.seg, c.offset, c.len).map_err(fault)?;
                    let (key, bytes) = crate::block::cdc::decode_chunk(&raw).map_err(|e| bad(e.to_string()))?;
                    if key != c.key {
                        return Err(bad("holds another chunk".into()));
                    }
                    buf.truncate(w);
                    buf.extend_from_slice(&bytes[from..to]);
                } else {
                    // The caller proves the piece against the chunk tree; the
                    // CRCs are checked on the pass that hashes the keys, which
                    // says which chunk is at fault.
                    let chunk = (c.offset, c.len, &c.key);
                    reader::cdc_range_into(&c.seg, chunk, (from, to - from), buf, w).map_err(fault)?;
                }
                w += to - from;
                j += 1;
            }
        }
        buf.truncate(w);
        Ok(())
    }
}

impl Store {
    /// The index as a reader that outlives this borrow needs it.
    pub(crate) fn chunk_index(&self) -> ChunkIndex {
        ChunkIndex {
            state: self.state.clone(),
            root: self.layout.root.clone(),
        }
    }

    /// [`ChunkIndex::read_part`] on this store.
    pub(crate) fn read_part(&self, id: &ArtifactId, p: &ManifestPart) -> Result<Vec<ManifestChunk>> {
        self.chunk_index().read_part(id, p)
    }
}
