//! The read path: lookups, verified reads, streaming readers, prefix resolution
//! and iteration over CURRENT.

use std::io::Read;
use std::sync::Arc;

use crate::block::format::LargeTrailer;
use crate::block::reader::{self, Fault, FramedHead, Layout};
use crate::block::scan::ContentsError;
use crate::block::segment::Segment;
use crate::error::{Error, Result};
use crate::id::ArtifactId;
use crate::index::entry::{DomainId, Entry, Visibility, FLAG_COMPRESSED};
use std::collections::VecDeque;
use zstd::zstd_safe::DDict;

use super::block_cache::Key;
use super::cdc_plan::CdcPlan;
pub(crate) use super::reader::unwrap_io;
use super::reader::{legacy_digests, Body, ChunkCheck};
pub use super::reader::{ArtifactReader, Piece};
use super::{artifact_error, Store};

/// How often a read looks up an artifact again after GC moved it away from
/// under the first lookup (each retry means another whole GC pass moved it).
const MOVED_RETRIES: usize = 3;

/// Prepared dictionaries kept per store handle before the set starts over.
const MAX_DICTS: usize = 256;
/// Framed block heads kept before the set starts over (a few MB of memory;
/// a 64 GiB store of 256 KiB blocks has this many).
const MAX_HEADS: usize = 1 << 18;

/// What reading single frames needs again and again: prepared dictionaries
/// and each framed block's (dictionary offset, stored length), by segment
/// and offset. Sets start over when full: segments in use change slowly, and
/// an entry costs one small read to get back. Entries never go stale: block
/// offsets are not reused within a segment once a framed block is written
/// there, and segment ids are never reused.
#[derive(Default)]
pub(crate) struct FrameCache {
    dicts: std::collections::HashMap<(u32, u64), Arc<DDict<'static>>>,
    heads: std::collections::HashMap<(u32, u64), FramedHead>,
}

impl FrameCache {
    fn note_dict(&mut self, key: (u32, u64), d: Arc<DDict<'static>>) {
        if self.dicts.len() >= MAX_DICTS {
            self.dicts.clear();
        }
        self.dicts.insert(key, d);
    }

    fn note_head(&mut self, key: (u32, u64), head: FramedHead) {
        if self.heads.len() >= MAX_HEADS {
            self.heads.clear();
        }
        self.heads.insert(key, head);
    }
}

/// A live artifact as listed by [`Store::iter`](crate::Store::iter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// Its id.
    pub id: ArtifactId,
    /// Its length in bytes.
    pub len: u64,
    /// Owning domain.
    pub domain: DomainId,
    /// Visibility.
    pub visibility: Visibility,
}

impl From<&Entry> for ArtifactInfo {
    fn from(e: &Entry) -> Self {
        Self {
            id: e.id,
            len: e.len,
            domain: e.domain,
            visibility: e.visibility,
        }
    }
}

enum Found {
    Entry(Entry),
    Pending(Vec<u8>),
}

impl Store {
    /// The newest record for artifact `id` in memory or index files
    /// (tombstones included). Chunk records are not artifacts: a chunk's key
    /// given as an id finds nothing.
    pub(crate) fn lookup(&self, id: &ArtifactId) -> Result<Option<Entry>> {
        Ok(self.state.read().newest(id)?.filter(|e| !e.is_chunk()))
    }

    /// The newest record for `key`, chunk records included.
    pub(crate) fn lookup_any(&self, key: &ArtifactId) -> Result<Option<Entry>> {
        self.state.read().newest(key)
    }

    fn find(&self, id: &ArtifactId) -> Result<Option<Found>> {
        if let Some(e) = self.lookup(id)? {
            if !e.is_tombstone() {
                return Ok(Some(Found::Entry(e)));
            }
        }
        if self.writer.is_none() {
            return Ok(None);
        }
        // Absent or removed: it may have been put (again) and still sit in the
        // pending buffer. The writer keeps an artifact there until its record
        // is in the memtable, so while we hold the buffer's read lock a miss
        // there is settled by looking at the index once more. The writer lock
        // is not taken: a lookup never waits for a put.
        let pending = self.pending.read();
        if let Some(b) = pending.get(id) {
            return Ok(Some(Found::Pending(b.to_vec())));
        }
        if let Some(e) = self.lookup(id)? {
            return Ok((!e.is_tombstone()).then_some(Found::Entry(e)));
        }
        Ok(None)
    }

    /// Whether `id` is live in CURRENT.
    pub fn contains(&self, id: &ArtifactId) -> Result<bool> {
        Ok(self.find(id)?.is_some())
    }

    /// The domain a live artifact belongs to (the store's own, 0, for one
    /// still in the write buffer).
    pub fn domain_of(&self, id: &ArtifactId) -> Result<DomainId> {
        match self.find(id)? {
            Some(Found::Entry(e)) => Ok(e.domain),
            Some(Found::Pending(_)) => Ok(DomainId(0)),
            None => Err(Error::NotFound(*id)),
        }
    }

    /// What the index says of a live artifact (length, domain, visibility);
    /// `None` when it is not live. One still in the write buffer shows as
    /// the store's own and internal until it is written out.
    pub fn info(&self, id: &ArtifactId) -> Result<Option<ArtifactInfo>> {
        Ok(match self.find(id)? {
            Some(Found::Entry(e)) => Some(ArtifactInfo::from(&e)),
            Some(Found::Pending(b)) => Some(ArtifactInfo {
                id: *id,
                len: b.len() as u64,
                domain: DomainId(0),
                visibility: crate::index::Visibility::Internal,
            }),
            None => None,
        })
    }

    /// Size of a live artifact.
    pub fn len_of(&self, id: &ArtifactId) -> Result<u64> {
        match self.find(id)? {
            Some(Found::Entry(e)) => Ok(e.len),
            Some(Found::Pending(b)) => Ok(b.len() as u64),
            None => Err(Error::NotFound(*id)),
        }
    }

    /// Reads a whole artifact, verified against its id.
    pub fn get(&self, id: &ArtifactId) -> Result<Vec<u8>> {
        let mut pending = None;
        let r = self.read_moving(
            || match self.find(id)? {
                None => Err(Error::NotFound(*id)),
                Some(Found::Pending(b)) => {
                    pending = Some(b);
                    Ok(None)
                }
                Some(Found::Entry(e)) => Ok(Some(e)),
            },
            |e, seg| self.read_entry(e, seg),
        )?;
        Ok(pending.or(r).unwrap_or_default())
    }

    /// Opens a streaming reader (`Read + Seek`) over a live artifact. Every
    /// byte it returns is proven against the id first: a small artifact whole
    /// before the reader is returned, a large one chunk by chunk (each chunk
    /// against its chaining value in the trailer's chunk tree) as it is
    /// reached, so a damaged chunk is an error before any of it is read out.
    /// Only the chunks a read touches are read.
    pub fn open_reader(&self, id: &ArtifactId) -> Result<ArtifactReader> {
        let mut pending = None;
        let r = self.read_moving(
            || match self.find(id)? {
                None => Err(Error::NotFound(*id)),
                Some(Found::Pending(b)) => {
                    pending = Some(ArtifactReader::small(*id, b));
                    Ok(None)
                }
                Some(Found::Entry(e)) => Ok(Some(e)),
            },
            |e, seg| self.reader_entry(e, seg),
        )?;
        pending.or(r).ok_or(Error::NotFound(*id))
    }

    /// Reads `len` bytes of `id` from `offset` (fewer when the artifact ends
    /// first), every one proven against the id, reading only the chunks the
    /// range covers (see [`ArtifactReader::into_range`]).
    pub fn read_range(&self, id: &ArtifactId, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.open_reader(id)?.into_range(offset, len)?.read_all()
    }

    /// Bytes a `get` of `id` reads from segment files (headers included), for
    /// the benchmark's read amplification: just the artifact when its packed
    /// block is stored raw, the whole block when it is compressed, every chunk
    /// block plus the trailer for a large artifact.
    #[cfg(feature = "bench")]
    pub(crate) fn read_cost(&self, id: &ArtifactId) -> Result<u64> {
        let e = self
            .lookup(id)?
            .filter(|e| !e.is_tombstone())
            .ok_or(Error::NotFound(*id))?;
        let seg = self.segment(&e)?;
        if !e.is_large() {
            if e.flags & FLAG_COMPRESSED == 0 {
                return Ok(e.len);
            }
            if e.is_framed() {
                return Ok(reader::frame_read_cost(e.len));
            }
            return Ok(seg.block_header(e.block_offset)?.total_len());
        }
        let (h, layout) = reader::layout(&seg, e.block_offset).map_err(|x| match x {
            Fault::Read(e) => e.into(),
            Fault::Unexpected => Error::corrupt(&seg.path, "not a large artifact's layout"),
            Fault::Body(d) => Error::corrupt(&seg.path, d),
        })?;
        let t = match layout {
            Layout::Trailer(t) => t,
            Layout::Manifest(m) => {
                let index = self.chunk_index();
                let mut total = h.total_len();
                for p in &m.parts {
                    let (pseg, at) = index.locate(&m.id, &p.key)?;
                    total += pseg.block_header(at)?.total_len();
                }
                let mut seen = std::collections::HashSet::new();
                CdcPlan::open(index, &m)?.for_each_chunk(|c| {
                    if seen.insert(c.key) {
                        total += c.seg.block_header(c.offset)?.total_len();
                    }
                    Ok(())
                })?;
                return Ok(total);
            }
        };
        let mut total = h.total_len();
        for c in &t.chunks {
            total += seg.block_header(c.offset)?.total_len();
        }
        Ok(total)
    }

    /// Drops the decompressed-block cache (for cold-read measurements).
    #[cfg(feature = "bench")]
    pub(crate) fn drop_block_cache(&self) {
        self.block_cache.lock().clear();
    }

    /// Reads the artifact `e` points at (small or large), verified.
    pub(crate) fn read_entry(&self, e: &Entry, seg: Arc<Segment>) -> Result<Vec<u8>> {
        if e.is_large() {
            let mut r = self.reader_for(e, seg)?;
            let mut out = Vec::with_capacity(e.len as usize);
            r.read_to_end(&mut out).map_err(unwrap_io)?;
            Ok(out)
        } else {
            self.read_small(e, &seg)
        }
    }

    /// A streaming reader over the artifact `e` points at.
    pub(crate) fn reader_entry(&self, e: &Entry, seg: Arc<Segment>) -> Result<ArtifactReader> {
        if e.is_large() {
            self.reader_for(e, seg)
        } else {
            Ok(ArtifactReader::small(e.id, self.read_small(e, &seg)?))
        }
    }

    /// Runs `read` on the record `locate` finds (`None`: nothing to read from
    /// a segment) and the segment it points into. When GC dropped that segment
    /// between the lookup and the read, the record pointing at the copy is in
    /// the index by then, so it looks again. The segment handle, once held,
    /// stays readable even if GC unlinks its file.
    pub(crate) fn read_moving<T>(
        &self,
        mut locate: impl FnMut() -> Result<Option<Entry>>,
        read: impl Fn(&Entry, Arc<Segment>) -> Result<T>,
    ) -> Result<Option<T>> {
        for _ in 0..MOVED_RETRIES {
            let Some(e) = locate()? else { return Ok(None) };
            if let Some(seg) = self.try_segment(&e) {
                return read(&e, seg).map(Some);
            }
        }
        let Some(e) = locate()? else { return Ok(None) };
        read(&e, self.segment(&e)?).map(Some)
    }

    /// The segment `e` points into, if it still exists.
    pub(crate) fn try_segment(&self, e: &Entry) -> Option<Arc<Segment>> {
        self.state.read().segments.get(&e.segment).cloned()
    }

    /// The segment `e` points into; its absence is damage.
    pub(crate) fn segment(&self, e: &Entry) -> Result<Arc<Segment>> {
        self.try_segment(e).ok_or_else(|| Error::CorruptArtifact {
            id: e.id,
            file: self.layout.segment(e.segment),
            detail: "the index points at a segment that does not exist".into(),
        })
    }

    pub(crate) fn read_small(&self, e: &Entry, seg: &Segment) -> Result<Vec<u8>> {
        self.read_small_with(e, seg, true)
    }

    /// [`Store::read_small`](crate::Store::read_small); `cache` false leaves the block cache as it is
    /// (GC reads every artifact of a victim once: keeping them would only
    /// push out what readers use).
    pub(crate) fn read_small_with(&self, e: &Entry, seg: &Segment, cache: bool) -> Result<Vec<u8>> {
        let bytes = if e.flags & FLAG_COMPRESSED == 0 {
            // Uncompressed: read just the artifact; its BLAKE3 proves the bytes
            // without touching the rest of the block.
            reader::raw_entry(seg, e.block_offset, e.inner, e.len)
                .map_err(|x| artifact_error(x, e.id))?
                .into_owned()
        } else if e.is_framed() {
            let (at, bytes) = self.read_frame(e, seg).map_err(|x| artifact_error(x, e.id))?;
            let proven = ArtifactId::of(&bytes) == e.id;
            if let (true, true, Some(at)) = (cache, proven, at) {
                // Only proven bytes are kept: a damaged frame is decoded (and
                // reported) afresh by every read.
                if self.block_cache.lock().admit(&Key::Block(seg.id, at)) {
                    let kept = Arc::new(bytes.clone());
                    self.block_cache.lock().insert(Key::Block(seg.id, at), kept);
                }
            }
            return match proven {
                true => Ok(bytes),
                false => Err(self.mismatch(e, seg)),
            };
        } else {
            let raw = self
                .decoded_block(seg, e.block_offset, cache)
                .map_err(|x| artifact_error(x, e.id))?;
            let (s, n) = (e.inner as usize, e.len as usize);
            raw.get(s..s + n)
                .ok_or_else(|| Error::CorruptArtifact {
                    id: e.id,
                    file: seg.path.clone(),
                    detail: "artifact lies outside its block".into(),
                })?
                .to_vec()
        };
        if ArtifactId::of(&bytes) != e.id {
            return Err(self.mismatch(e, seg));
        }
        Ok(bytes)
    }

    fn mismatch(&self, e: &Entry, seg: &Segment) -> Error {
        Error::CorruptArtifact {
            id: e.id,
            file: seg.path.clone(),
            detail: format!("BLAKE3 mismatch in block at offset {}", e.block_offset),
        }
    }

    /// Decompresses an artifact's own zstd frame. The block's header and
    /// head (its length and its dictionary's offset) are read once per block
    /// and kept; then one read of the frame, which is never longer than the
    /// artifact. The caller checks the bytes' BLAKE3 and may keep them in
    /// the block cache under the returned key: decompressed frames share it,
    /// keyed by where the frame starts in the segment (inside a block body,
    /// so never a block's key). `None`: the bytes came from the cache.
    fn read_frame(&self, e: &Entry, seg: &Segment) -> Result<(Option<u64>, Vec<u8>)> {
        let at = reader::frame_start(e.block_offset, e.inner);
        if let Some(b) = self.block_cache.lock().get(&Key::Block(seg.id, at)) {
            return Ok((None, b.to_vec()));
        }
        let key = (seg.id, e.block_offset);
        let known = self.frames.lock().heads.get(&key).copied();
        let head = match known {
            Some(h) => h,
            None => {
                let h = reader::framed_head(seg, e.block_offset)?;
                self.frames.lock().note_head(key, h);
                h
            }
        };
        let dict = self.dictionary(seg, head.dict_at)?;
        let bytes = reader::read_frame(seg, e.block_offset, head, e.inner, e.len, &dict)?;
        Ok((Some(at), bytes))
    }

    /// The dictionary in the block at `offset` of `seg`, prepared once per
    /// store handle and kept.
    fn dictionary(&self, seg: &Segment, offset: u64) -> Result<Arc<DDict<'static>>> {
        let key = (seg.id, offset);
        if let Some(d) = self.frames.lock().dicts.get(&key) {
            return Ok(d.clone());
        }
        let d = crate::block::scan::read_dictionary(seg, offset).map_err(|x| match x {
            ContentsError::Decode(d) => Error::corrupt(&seg.path, format!("dictionary at {offset}: {d}")),
            ContentsError::Io(io) => Error::io(format!("read {}", seg.path.display()), io),
        })?;
        let d = Arc::new(d);
        self.frames.lock().note_dict(key, d.clone());
        Ok(d)
    }

    /// A decompressed packed block, through the byte-budgeted block cache
    /// (`StoreOptions::block_cache`).
    fn decoded_block(&self, seg: &Segment, offset: u64, cache: bool) -> Result<Arc<Vec<u8>>> {
        let key = Key::Block(seg.id, offset);
        if let Some(b) = self.block_cache.lock().get(&key) {
            return Ok(b);
        }
        let raw = Arc::new(reader::packed_block(seg, offset)?);
        if cache {
            self.block_cache.lock().insert(key, raw.clone());
        }
        Ok(raw)
    }

    pub(crate) fn reader_for(&self, e: &Entry, seg: Arc<Segment>) -> Result<ArtifactReader> {
        let bad = |detail: String| Error::CorruptArtifact {
            id: e.id,
            file: seg.path.clone(),
            detail,
        };
        let layout = match reader::layout(&seg, e.block_offset) {
            Ok((_, layout)) => layout,
            Err(Fault::Read(x)) => return Err(artifact_error(x, e.id)),
            Err(Fault::Unexpected) => {
                return Err(bad(format!(
                    "block at {} is not a large-artifact trailer",
                    e.block_offset
                )))
            }
            Err(Fault::Body(d)) => return Err(bad(d.to_string())),
        };
        let (t, check, cdc) = match layout {
            Layout::Manifest(m) => {
                // Stored in shared chunks: the grid is read like a tree
                // trailer's chunks, each piece assembled from the chunks.
                if m.id != e.id || m.len != e.len {
                    return Err(bad("manifest names another artifact".into()));
                }
                let plan = CdcPlan::open(self.chunk_index(), &m)?;
                let t = LargeTrailer {
                    id: m.id,
                    len: m.len,
                    chunk_size: m.grid,
                    chunks: Vec::new(),
                    cvs: None,
                };
                (t, ChunkCheck::Tree(m.cvs), Some(Arc::new(plan)))
            }
            Layout::Trailer(mut t) => {
                if t.id != e.id || t.len != e.len {
                    return Err(bad("trailer names another artifact".into()));
                }
                let check = match t.cvs.take() {
                    Some(cvs) => ChunkCheck::Tree(cvs),
                    None => ChunkCheck::Digests(legacy_digests(&seg, &t)?),
                };
                (t, check, None)
            }
        };
        Ok(ArtifactReader {
            id: e.id,
            len: e.len,
            pos: 0,
            end: e.len,
            body: Body::Large {
                seg,
                trailer: t,
                check,
                cdc,
                ahead: VecDeque::new(),
                cache: Some(self.block_cache.clone()),
                spare: Vec::new(),
            },
        })
    }
}
