//! Streaming reads of one artifact: [`ArtifactReader`] hands out only bytes
//! proven against the artifact's id, a large artifact chunk by chunk (each
//! checked against its chaining value, the next few read and verified ahead on
//! all cores), a small one from bytes verified when it was looked up. A
//! large artifact's chunks read a second time are kept, proven, in the
//! store's block cache, and served from there without hashing again;
//! [`ArtifactReader::next_piece`] hands a chunk's buffer itself to a
//! caller that sends it on (a server's response), with no copy.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use rayon::prelude::*;

use parking_lot::Mutex;

use crate::block::format::LargeTrailer;
use crate::block::reader::{self, Fault};
use crate::block::segment::Segment;
use crate::block::tree;
use crate::error::{Error, Result};
use crate::id::ArtifactId;

use super::artifact_error;
use super::block_cache::{BlockCache, Key};
use super::cdc_plan::CdcPlan;

pub(super) enum Body {
    /// Bytes already verified against the id (or not yet written: pending).
    Small(Vec<u8>),
    Large {
        seg: Arc<Segment>,
        trailer: LargeTrailer,
        /// What each chunk is checked against (proven by the id at open).
        check: ChunkCheck,
        /// For an artifact stored in content-defined chunks: where they are
        /// (each grid piece is assembled from them).
        cdc: Option<Arc<CdcPlan>>,
        /// The store's block cache, where verified pieces read again are
        /// kept and found; `None` for a reader that must read the disk
        /// (`verify`).
        cache: Option<Arc<Mutex<BlockCache>>>,
        /// Chunks read ahead, in order from the one being read: each already
        /// verified (in its buffer), or the error reaching it gives.
        ahead: VecDeque<(usize, Held, Result<()>)>,
        /// Buffers of chunks already read out, for the next ones.
        spare: Vec<Vec<u8>>,
    },
}

/// A chunk's verified bytes: in a buffer of the reader's own, or shared
/// with the block cache.
pub(super) enum Held {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Own(b) => b,
            Held::Shared(b) => b,
        }
    }

    /// The buffer, for reuse, when it is the reader's own.
    fn into_buffer(self) -> Option<Vec<u8>> {
        match self {
            Held::Own(b) => Some(b),
            Held::Shared(_) => None,
        }
    }
}

/// Verified bytes of an artifact handed over whole, without a copy
/// ([`ArtifactReader::next_piece`]): a range of a chunk's buffer, which
/// goes back to the readers' pool (or stays in the block cache) when the
/// piece is dropped.
pub struct Piece {
    held: Option<Held>,
    start: usize,
    end: usize,
}

impl Piece {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.held {
            Some(h) => &h.bytes()[self.start..self.end],
            None => &[],
        }
    }
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Piece({} bytes)", self.end - self.start)
    }
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::Deref for Piece {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if let Some(b) = self.held.take().and_then(Held::into_buffer) {
            pool_buffers(std::iter::once(b));
        }
    }
}

/// Reads chunk `idx` of a large artifact (its block CRC checked, its number
/// and length matched against the trailer), not yet verified against the tree.
fn load_chunk(seg: &Segment, t: &LargeTrailer, idx: usize) -> Result<Vec<u8>> {
    let c = t.chunks[idx];
    reader::large_chunk(seg, c.offset, idx as u32, c.raw_len)
        .map(|b| b.into_owned())
        .map_err(|f| chunk_fault(f, seg, t.id, idx, c.offset))
}

/// The error for chunk `idx` at `offset` of artifact `id` that `f` stopped.
fn chunk_fault(f: Fault, seg: &Segment, id: ArtifactId, idx: usize, offset: u64) -> Error {
    let detail = match f {
        Fault::Read(e) => return artifact_error(e, id),
        Fault::Unexpected => format!("chunk {idx} at {offset} does not match its trailer"),
        Fault::Body(e) => format!("chunk {idx} at {offset}: {e}"),
    };
    Error::CorruptArtifact {
        id,
        file: seg.path.clone(),
        detail,
    }
}

/// Chunks a streaming reader reads and verifies at once, on all cores.
const READ_AHEAD: usize = 8;

/// Chunk buffers of readers that are done, for the next readers: a server
/// answering GETs of large artifacts otherwise mapped, faulted in, zeroed
/// and unmapped a fresh buffer for every chunk of every request (1 MiB is
/// past what the allocator keeps), 15 % of a 4 MiB GET's time. Kept: at
/// most [`POOLED_CHUNKS`] buffers of at most [`POOLED_CAPACITY`] bytes.
static SPARE_CHUNKS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
const POOLED_CHUNKS: usize = 16;
const POOLED_CAPACITY: usize = 4 << 20;

/// The most the pool holds.
pub(crate) const SPARE_BOUND: u64 = (POOLED_CHUNKS * POOLED_CAPACITY) as u64;

/// Bytes the pool holds now (by capacity).
pub(crate) fn spare_buffer_bytes() -> u64 {
    SPARE_CHUNKS.lock().iter().map(|b| b.capacity() as u64).sum()
}

fn chunk_buffer(spare: &mut Vec<Vec<u8>>) -> Vec<u8> {
    spare.pop().or_else(|| SPARE_CHUNKS.lock().pop()).unwrap_or_default()
}

/// Gives buffers done with back to the pool, as many as it takes.
fn pool_buffers(done: impl Iterator<Item = Vec<u8>>) {
    let mut pool = SPARE_CHUNKS.lock();
    for b in done.filter(|b| b.capacity() > 0 && b.capacity() <= POOLED_CAPACITY) {
        if pool.len() >= POOLED_CHUNKS {
            break;
        }
        pool.push(b);
    }
}

/// Chunk `idx` read into `buf` (reused, so that reading ahead on several
/// threads does not map and unmap fresh memory for every chunk) and proven
/// against the artifact's tree (or digests) there: the bytes the reader
/// hands out are the very bytes checked.
fn verified_chunk(
    seg: &Segment,
    t: &LargeTrailer,
    check: &ChunkCheck,
    cdc: Option<&CdcPlan>,
    idx: usize,
    id: &ArtifactId,
    mut buf: Vec<u8>,
) -> (Vec<u8>, Result<()>) {
    if let Some(plan) = cdc {
        let (grid, size) = (t.chunk_size as u64, t.chunk_size as usize);
        let r = plan.assemble(idx, grid, t.len, false, &mut buf).and_then(|()| {
            if check.matches(&buf, idx, size, id) {
                return Ok(());
            }
            // Which chunk is at fault: hash each against its key. If all
            // prove themselves, the manifest's list is what is wrong.
            plan.assemble(idx, grid, t.len, true, &mut buf)?;
            Err(Error::CorruptArtifact {
                id: *id,
                file: seg.path.clone(),
                detail: format!(
                    "bytes {}.. assembled from chunks do not match the artifact's chunk tree",
                    idx as u64 * grid
                ),
            })
        });
        return (buf, r);
    }
    let c = t.chunks[idx];
    let r = (|| {
        reader::large_chunk_into(seg, c.offset, (idx as u32, c.raw_len), &mut buf, 0)
            .map_err(|f| chunk_fault(f, seg, *id, idx, c.offset))?;
        buf.truncate(c.raw_len as usize);
        if buf.len() != c.raw_len as usize || !check.matches(&buf, idx, t.chunk_size as usize, id) {
            // The block's CRC, skipped above, says whether the block itself
            // is damaged.
            if let Err(f) = reader::large_chunk(seg, c.offset, idx as u32, c.raw_len) {
                return Err(chunk_fault(f, seg, *id, idx, c.offset));
            }
            return Err(Error::CorruptArtifact {
                id: *id,
                file: seg.path.clone(),
                detail: format!("chunk {idx} at {} does not match the artifact's chunk tree", c.offset),
            });
        }
        Ok(())
    })();
    (buf, r)
}

/// Per-chunk digests of an artifact whose trailer predates chunk trees (block
/// kind 3): every chunk is read once, the whole checked against the id, and
/// each chunk's own BLAKE3 kept, so that later reads of a chunk are checked
/// against a digest the id has proven, before the reader hands out any byte.
pub(super) fn legacy_digests(seg: &Segment, t: &LargeTrailer) -> Result<Vec<[u8; 32]>> {
    let mut whole = blake3::Hasher::new();
    let mut digests = Vec::with_capacity(t.chunks.len());
    for i in 0..t.chunks.len() {
        let raw = load_chunk(seg, t, i)?;
        whole.update(&raw);
        digests.push(*blake3::hash(&raw).as_bytes());
    }
    if whole.finalize().as_bytes() != t.id.as_bytes() {
        return Err(Error::CorruptArtifact {
            id: t.id,
            file: seg.path.clone(),
            detail: "BLAKE3 of the whole artifact does not match its id".into(),
        });
    }
    Ok(digests)
}

/// How each chunk of a large artifact is checked before any of it is returned.
pub(super) enum ChunkCheck {
    /// Against its chaining value in the trailer's chunk tree.
    Tree(Vec<[u8; 32]>),
    /// Against its own BLAKE3, taken when the whole was verified at open.
    Digests(Vec<[u8; 32]>),
}

impl ChunkCheck {
    fn matches(&self, raw: &[u8], idx: usize, chunk_size: usize, id: &ArtifactId) -> bool {
        match self {
            Self::Tree(cvs) => tree::chunk_matches(raw, idx as u64, chunk_size, cvs, id.as_bytes()),
            Self::Digests(d) => d.get(idx) == Some(blake3::hash(raw).as_bytes()),
        }
    }
}

/// A verified streaming reader over one artifact (see
/// [`Store::open_reader`](crate::Store::open_reader)).
/// Every byte it returns has been proven against the id: small artifacts
/// whole, large ones chunk by chunk through their chunk tree.
pub struct ArtifactReader {
    pub(super) id: ArtifactId,
    pub(super) len: u64,
    pub(super) pos: u64,
    /// Reads stop here: the artifact's end, or a range's.
    pub(super) end: u64,
    pub(super) body: Body,
}

impl ArtifactReader {
    pub(super) fn small(id: ArtifactId, b: Vec<u8>) -> Self {
        Self {
            id,
            len: b.len() as u64,
            pos: 0,
            end: b.len() as u64,
            body: Body::Small(b),
        }
    }

    /// Restricts the reader to bytes `offset..offset + len` (cut at the
    /// artifact's end) and positions it at `offset`: reads then return that
    /// range and nothing after it, proven like every read. An offset past the
    /// end is refused.
    pub fn into_range(mut self, offset: u64, len: u64) -> Result<Self> {
        self.read_range_at(offset, len)?;
        Ok(self)
    }

    /// [`into_range`](Self::into_range) in place: for many ranges of one
    /// artifact through one reader, which opens the artifact (its trailer
    /// or manifest, its chunks located) once. Chunks already read and
    /// verified are kept when the next range starts in them.
    pub fn read_range_at(&mut self, offset: u64, len: u64) -> Result<()> {
        if offset > self.len {
            return Err(Error::InvalidArgument(format!(
                "range starts at {offset}, past the end of the {}-byte artifact {}",
                self.len, self.id
            )));
        }
        self.pos = offset;
        self.end = offset.saturating_add(len).min(self.len);
        Ok(())
    }

    /// Reads everything from the position to the end (of the range).
    pub fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.end.saturating_sub(self.pos) as usize];
        self.read_exact(&mut out).map_err(unwrap_io)?;
        Ok(out)
    }

    /// The artifact's id.
    pub fn id(&self) -> ArtifactId {
        self.id
    }

    /// The chaining values of the artifact's `chunk_size`-byte chunks when
    /// its stored chunk tree has that chunk size (proven against the id
    /// when the reader was opened); `None` otherwise (a small artifact, one
    /// stored before chunk trees, or another chunk size).
    pub fn chunk_tree(&self, chunk_size: usize) -> Option<Vec<[u8; 32]>> {
        match &self.body {
            Body::Large {
                trailer,
                check: ChunkCheck::Tree(cvs),
                ..
            } if trailer.chunk_size as usize == chunk_size && cvs.len() >= 2 => Some(cvs.clone()),
            _ => None,
        }
    }

    /// The artifact's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the artifact is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn to_io(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Error {
    /// The store error an I/O error from an [`ArtifactReader`] carries
    /// (corruption, a missing block, ...), or an I/O error when it carries none.
    pub fn from_reader_io(e: io::Error) -> Error {
        unwrap_io(e)
    }
}

/// Turns an I/O error from an [`ArtifactReader`] back into the store error it carries.
pub(crate) fn unwrap_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|x| x.is::<Error>()) {
        if let Ok(inner) = e.into_inner().expect("checked above").downcast::<Error>() {
            return *inner;
        }
        unreachable!("downcast checked above");
    }
    Error::io("read artifact", e)
}

impl ArtifactReader {
    /// Makes the chunk holding the position the first read ahead, reading
    /// and verifying it and the next few (on all cores) when it is not;
    /// its error when it is damaged. For a large artifact only.
    fn fill(&mut self) -> io::Result<()> {
        let (pos, end, id) = (self.pos, self.end, self.id);
        let Body::Large {
            seg,
            trailer,
            check,
            cdc,
            cache,
            ahead,
            spare,
        } = &mut self.body
        else {
            return Ok(());
        };
        let cs = trailer.chunk_size as u64;
        let idx = (pos / cs) as usize;
        while ahead.front().is_some_and(|(i, _, _)| *i < idx) {
            spare.extend(ahead.pop_front().and_then(|(_, h, _)| h.into_buffer()));
        }
        if ahead.front().is_none_or(|(i, _, _)| *i != idx) {
            spare.extend(ahead.drain(..).filter_map(|(_, h, _)| h.into_buffer()));
            // Never past the end of the range being read.
            let last = ((end - 1) / cs) as usize;
            let upto = (idx + READ_AHEAD).min(last + 1);
            let key = |i: usize| Key::Piece(*id.as_bytes(), trailer.chunk_size, i as u32);
            let found: Vec<Option<Arc<Vec<u8>>>> = match cache {
                Some(c) => {
                    let mut c = c.lock();
                    (idx..upto).map(|i| c.get(&key(i))).collect()
                }
                None => vec![None; upto - idx],
            };
            let jobs: Vec<(usize, Vec<u8>)> = (idx..upto)
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(i, _)| (i, chunk_buffer(spare)))
                .collect();
            let (seg, trailer, check, cdc) = (&**seg, &*trailer, &*check, cdc.as_deref());
            let mut loaded: VecDeque<(usize, Vec<u8>, Result<()>)> = jobs
                .into_par_iter()
                .map(|(i, buf)| {
                    let (buf, r) = verified_chunk(seg, trailer, check, cdc, i, &id, buf);
                    (i, buf, r)
                })
                .collect::<Vec<_>>()
                .into();
            let mut c = cache.as_ref().map(|c| c.lock());
            for (i, f) in (idx..upto).zip(found) {
                let item = match f {
                    Some(b) => (i, Held::Shared(b), Ok(())),
                    None => {
                        let (i, buf, r) = loaded.pop_front().expect("one job per miss");
                        // Only proven bytes are kept, and only those read
                        // twice (a scan keeps nothing).
                        let kept = match c.as_mut() {
                            Some(c) if r.is_ok() => c.admit(&key(i)).then_some(c),
                            _ => None,
                        };
                        if let Some(c) = kept {
                            let b = Arc::new(buf);
                            c.insert(key(i), b.clone());
                            (i, Held::Shared(b), r)
                        } else {
                            (i, Held::Own(buf), r)
                        }
                    }
                };
                ahead.push_back(item);
            }
        }
        match ahead.front() {
            Some((_, _, Err(_))) => {
                // Bytes before a bad chunk were returned; at it, stop.
                let Some((_, _, Err(e))) = ahead.pop_front() else {
                    unreachable!("matched above");
                };
                Err(to_io(e))
            }
            _ => Ok(()),
        }
    }

    /// The reader without the block cache: every chunk is read from the
    /// disk and proven there, as `verify` must.
    pub(crate) fn uncached(mut self) -> Self {
        if let Body::Large { cache, .. } = &mut self.body {
            *cache = None;
        }
        self
    }

    /// The next verified bytes from the position as a [`Piece`] the caller
    /// owns, up to the end of the chunk they are in (or of the range);
    /// `None` at the end. A large artifact's piece is the very buffer its
    /// chunk was verified in, with no copy: what a server hands to a
    /// socket. Errors as [`Read::read`] gives them.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        self.fill()?;
        let room = (self.end - self.pos) as usize;
        let (held, start) = match &mut self.body {
            Body::Small(b) => (Held::Own(b[self.pos as usize..self.end as usize].to_vec()), 0),
            Body::Large { trailer, ahead, .. } => {
                let Some((idx, held, _)) = ahead.pop_front() else {
                    return Ok(None);
                };
                (held, (self.pos - idx as u64 * trailer.chunk_size as u64) as usize)
            }
        };
        let end = start + (held.bytes().len() - start).min(room);
        self.pos += (end - start) as u64;
        Ok(Some(Piece {
            held: Some(held),
            start,
            end,
        }))
    }
}

impl Read for ArtifactReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || out.is_empty() {
            return Ok(0);
        }
        self.fill()?;
        let room = (self.end - self.pos).min(out.len() as u64) as usize;
        let (raw, within): (&[u8], u64) = match &self.body {
            Body::Small(b) => (b, self.pos),
            Body::Large { trailer, ahead, .. } => match ahead.front() {
                Some((idx, held, _)) => (held.bytes(), self.pos - *idx as u64 * trailer.chunk_size as u64),
                None => return Ok(0),
            },
        };
        let s = &raw[within as usize..];
        let n = s.len().min(room);
        out[..n].copy_from_slice(&s[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Drop for ArtifactReader {
    fn drop(&mut self) {
        if let Body::Large { ahead, spare, .. } = &mut self.body {
            pool_buffers(
                spare
                    .drain(..)
                    .chain(ahead.drain(..).filter_map(|(_, h, _)| h.into_buffer())),
            );
        }
    }
}

impl Seek for ArtifactReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let Some(t) = target else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"));
        };
        self.pos = t;
        Ok(t)
    }
}
