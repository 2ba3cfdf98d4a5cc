//! The one block writer: turns what the store wants written (a packed body,
//! removals, a run of large-artifact chunks, a trailer) into block images,
//! appends them to the open segment and says where they landed. The store
//! only decides *what* to write and records the locations it gets back.
//!
//! Building an image (compressing, checksumming) needs no lock, so callers can
//! prepare blocks outside the writer's critical section and only append under
//! it.

use std::borrow::Cow;

use crate::block::error::Result;
use crate::block::format::{
    encode_tombstones, header_for, maybe_compress, BlockHeader, BlockKind, ChunkRef, Compression, LargeTrailer,
    PackedEntry,
};
use crate::block::frames::{self, Dictionary, FramedEntry};
use crate::block::segment::ActiveSegment;
use crate::block::tree;
use crate::id::ArtifactId;

/// A block ready to append: its header and stored body.
pub(crate) struct BlockImage<'a> {
    header: BlockHeader,
    body: Cow<'a, [u8]>,
    /// A chunk's BLAKE3 chaining value (for the trailer's chunk tree).
    cv: [u8; 32],
    /// For chunk 0: the root hash of its bytes, which is the artifact's id
    /// should it have no other chunk.
    root: Option<[u8; 32]>,
    /// Bytes that go before `body` in the stored body (a raw chunk block's
    /// key): written by a positioned write of their own, so that the
    /// chunk's bytes are not copied into a buffer first.
    prefix: Option<[u8; 32]>,
}

impl<'a> BlockImage<'a> {
    /// A packed block over the raw body `raw` (entry table first), compressed
    /// with `level` when that pays.
    pub(crate) fn packed(raw: &'a [u8], count: u32, level: Option<i32>) -> Self {
        let (body, comp) = maybe_compress(raw, level);
        let header = header_for(BlockKind::Packed, comp, &body, raw.len(), count);
        Self {
            header,
            body,
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }

    /// Chunk `index` (of `chunk_size` bytes each) of a large artifact, with its
    /// chaining value; `try_compress` is the squeeze's verdict.
    fn chunk(piece: &'a [u8], index: u32, chunk_size: usize, try_compress: bool, level: Option<i32>) -> Self {
        let (cv, root) = if index == 0 {
            let (cv, root) = tree::first_chunk(piece);
            (cv, Some(*root.as_bytes()))
        } else {
            (tree::chunk_cv(piece, index as u64, chunk_size), None)
        };
        let (body, comp) = if try_compress {
            maybe_compress(piece, level)
        } else {
            (Cow::Borrowed(piece), Compression::None)
        };
        let header = header_for(BlockKind::LargeChunk, comp, &body, piece.len(), index);
        Self {
            header,
            body,
            cv,
            root,
            prefix: None,
        }
    }

    /// Bytes of the stored body.
    pub(crate) fn stored_len(&self) -> usize {
        self.body.len()
    }

    /// Whether the stored body is compressed.
    pub(crate) fn is_compressed(&self) -> bool {
        self.header.compression == Compression::Zstd
    }
}

impl BlockImage<'static> {
    /// A block of removals (id and domain of each).
    pub(crate) fn tombstones(items: &[(ArtifactId, u16)]) -> Self {
        let body = encode_tombstones(items);
        let header = header_for(
            BlockKind::Tombstones,
            Compression::None,
            &body,
            body.len(),
            items.len() as u32,
        );
        Self {
            header,
            body: Cow::Owned(body),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }

    /// A large artifact's trailer block.
    pub(crate) fn trailer(t: &LargeTrailer) -> Self {
        let body = t.encode();
        let header = header_for(t.kind(), Compression::None, &body, body.len(), 0);
        Self {
            header,
            body: Cow::Owned(body),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }
}

impl<'a> BlockImage<'a> {
    /// A content-defined chunk's block: its key and bytes, compressed when
    /// asked and when that pays. Stored raw, the bytes are borrowed and
    /// written after the key as they are.
    pub(crate) fn cdc_chunk(key: &ArtifactId, bytes: &'a [u8], try_compress: bool, level: Option<i32>) -> Self {
        if try_compress {
            let raw = crate::block::cdc::encode_chunk(key, bytes);
            if let (Cow::Owned(c), Compression::Zstd) = maybe_compress(&raw, level) {
                let header = header_for(BlockKind::CdcChunk, Compression::Zstd, &c, raw.len(), 0);
                return Self {
                    header,
                    body: Cow::Owned(c),
                    cv: [0; 32],
                    root: None,
                    prefix: None,
                };
            }
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(key.as_bytes()), bytes);
        let len = (32 + bytes.len()) as u32;
        Self {
            header: BlockHeader {
                kind: BlockKind::CdcChunk,
                compression: Compression::None,
                stored_len: len,
                raw_len: len,
                count: 0,
                body_crc: crc,
            },
            body: Cow::Borrowed(bytes),
            cv: [0; 32],
            root: None,
            prefix: Some(*key.as_bytes()),
        }
    }
}

impl BlockImage<'static> {
    /// A manifest block (stored raw: chunk keys and CVs do not compress).
    pub(crate) fn manifest(m: &crate::block::manifest::Manifest) -> Self {
        let body = m.encode();
        let header = header_for(BlockKind::Manifest, Compression::None, &body, body.len(), 0);
        Self {
            header,
            body: Cow::Owned(body),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }

    /// A block copied as it was stored (its body already checked).
    pub(crate) fn verbatim(header: BlockHeader, stored: Vec<u8>) -> Self {
        Self {
            header,
            body: Cow::Owned(stored),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }
}

impl ActiveSegment {
    /// Appends a block image; returns its offset. Not durable until `sync`.
    pub(crate) fn write(&mut self, img: &BlockImage<'_>) -> Result<u64> {
        match &img.prefix {
            Some(p) => self.append_parts(&img.header, p, &img.body),
            None => self.append(&img.header, &img.body),
        }
    }
}

impl BlockImage<'static> {
    /// A framed block over a body from [`frames::encode_framed`].
    fn framed(body: Vec<u8>, count: u32) -> Self {
        let header = header_for(BlockKind::Framed, Compression::None, &body, body.len(), count);
        Self {
            header,
            body: Cow::Owned(body),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }

    /// A dictionary block.
    pub(crate) fn dictionary(bytes: &[u8]) -> Self {
        let header = header_for(BlockKind::Dictionary, Compression::None, bytes, bytes.len(), 0);
        Self {
            header,
            body: Cow::Owned(bytes.to_vec()),
            cv: [0; 32],
            root: None,
            prefix: None,
        }
    }
}

/// A segment's dictionary as framed blocks use it.
#[derive(Clone)]
pub(crate) struct SegmentDictionary {
    /// The segment it was written to.
    pub(crate) seg: u32,
    /// Its block's offset there.
    pub(crate) offset: u64,
    /// Prepared for compression.
    pub(crate) dict: std::sync::Arc<Dictionary>,
    /// Stored / raw bytes of the block it was trained on, framed with it;
    /// NaN until known (a dictionary resumed by a new writer): every block
    /// is then also judged against whole-block compression.
    pub(crate) ratio: f64,
}

/// A packed block ready to append, framed or whole.
pub(crate) struct Packing<'a> {
    pub(crate) img: BlockImage<'a>,
    /// For a framed block: each artifact's frame, in entry order.
    pub(crate) frames: Option<Vec<FramedEntry>>,
    /// The segment whose dictionary framed it: the block may go nowhere else.
    pub(crate) dict_seg: Option<u32>,
    /// The frames came out much larger than the block compressed whole: the
    /// dictionary no longer suits the data (the writer may train another).
    pub(crate) drifted: bool,
}

/// A framed body counts as drifted past this multiple of its dictionary's
/// training ratio, and is refused past this multiple of the whole-block size.
const DRIFT: f64 = 1.25;

/// Builds a packed block over `raw` (entry table first, as [`PackedEntry`]s
/// say): framed against `dict` when one is given and framing pays, else
/// compressed whole when that pays (at `level`), else raw.
///
/// A framed body within [`DRIFT`] of the dictionary's own ratio is taken
/// without a second look; past it, the block is also compressed whole and
/// the frames are kept only if they are within [`DRIFT`] of that, or cost
/// less than 1/32 of the raw bytes more.
pub(crate) fn pack<'a>(
    raw: &'a [u8],
    entries: &[PackedEntry],
    level: Option<i32>,
    dict: Option<&SegmentDictionary>,
) -> Packing<'a> {
    let count = entries.len() as u32;
    let whole = |drifted| Packing {
        img: BlockImage::packed(raw, count, level),
        frames: None,
        dict_seg: None,
        drifted,
    };
    let (Some(_), Some(d)) = (level, dict) else {
        return whole(false);
    };
    let items: Vec<(ArtifactId, &[u8])> = entries
        .iter()
        .map(|e| (e.id, &raw[e.offset as usize..(e.offset + e.len) as usize]))
        .collect();
    let (body, frames) = frames::encode_framed(d.offset, &items, &d.dict);
    let framed = |body: Vec<u8>, frames| Packing {
        img: BlockImage::framed(body, count),
        frames: Some(frames),
        dict_seg: Some(d.seg),
        drifted: false,
    };
    let pays = body.len() < raw.len() - raw.len() / 32;
    if pays && (body.len() as f64) <= d.ratio * DRIFT * raw.len() as f64 {
        return framed(body, frames);
    }
    let w = whole(true);
    let stored = w.img.body.len();
    if pays && ((body.len() as f64) <= DRIFT * stored as f64 || body.len() <= stored + raw.len() / 32) {
        return framed(body, frames);
    }
    w
}

/// Where a packed block put its artifacts.
pub(crate) struct PackedLocation {
    /// Offset of the block in its segment.
    pub(crate) offset: u64,
    /// Whether its body is compressed whole (readers then decode the whole
    /// block; a framed block's frames say each for itself).
    pub(crate) compressed: bool,
    /// For a framed block: each artifact's frame, in entry order.
    pub(crate) frames: Option<Vec<FramedEntry>>,
}

/// Appends a raw packed block built from `raw` and returns where it went
/// (repair: salvaged bytes are written back as they were found).
pub(crate) fn write_packed_raw(seg: &mut ActiveSegment, raw: &[u8], entries: &[PackedEntry]) -> Result<PackedLocation> {
    let p = pack(raw, entries, None, None);
    write_packing(seg, p)
}

/// Appends a prepared packed block and returns where it went.
pub(crate) fn write_packing(seg: &mut ActiveSegment, p: Packing<'_>) -> Result<PackedLocation> {
    let offset = seg.write(&p.img)?;
    Ok(PackedLocation {
        offset,
        compressed: p.img.is_compressed(),
        frames: p.frames,
    })
}

/// The chunks of one large artifact as they are written: which to try to
/// compress, where each went, how many bytes so far.
pub(crate) struct ChunkRun {
    chunk_size: usize,
    level: Option<i32>,
    squeeze: Squeeze,
    chunks: Vec<ChunkRef>,
    cvs: Vec<[u8; 32]>,
    /// Chunk 0's bytes hashed as a whole artifact.
    first_root: Option<[u8; 32]>,
    /// Raw bytes written so far.
    pub(crate) written: u64,
    /// Blocks written so far.
    pub(crate) blocks: u64,
}

impl ChunkRun {
    pub(crate) fn new(chunk_size: usize, level: Option<i32>) -> Self {
        Self {
            chunk_size,
            level,
            squeeze: Squeeze::default(),
            chunks: Vec::new(),
            cvs: Vec::new(),
            first_root: None,
            written: 0,
            blocks: 0,
        }
    }

    /// Builds the chunk blocks of `data` (compressed on all cores where the
    /// squeeze says it is worth trying). No lock is needed for this part.
    pub(crate) fn prepare<'d>(&mut self, data: &'d [u8]) -> Vec<BlockImage<'d>> {
        // Prepared runs are written before the next is prepared, so the
        // chunks written so far give the next chunk's number.
        let first = self.chunks.len() as u32;
        let pieces: Vec<&[u8]> = data.chunks(self.chunk_size).collect();
        let tries: Vec<bool> = pieces.iter().map(|_| self.squeeze.should_try()).collect();
        let (level, size) = (self.level, self.chunk_size);
        let images: Vec<BlockImage<'d>> = crate::par::map(&pieces, 1, |i, p| {
            BlockImage::chunk(p, first + i as u32, size, tries[i], level)
        });
        for (img, t) in images.iter().zip(&tries) {
            if *t {
                self.squeeze.record(img.is_compressed());
            }
        }
        images
    }

    /// Appends prepared chunk blocks, in order.
    pub(crate) fn write(&mut self, seg: &mut ActiveSegment, images: &[BlockImage<'_>]) -> Result<()> {
        for img in images {
            let offset = seg.write(img)?;
            self.chunks.push(ChunkRef {
                offset,
                raw_len: img.header.raw_len,
            });
            self.cvs.push(img.cv);
            if img.root.is_some() {
                self.first_root = img.root;
            }
            self.written += img.header.raw_len as u64;
            self.blocks += 1;
        }
        Ok(())
    }

    /// The id of the bytes written so far, from the same hashing that built
    /// the chunk tree (one pass over the bytes): the root over the chunks'
    /// chaining values, or chunk 0's own root hash when it is the only one.
    /// `None` before any chunk.
    pub(crate) fn id(&self) -> Option<ArtifactId> {
        match tree::root(&self.cvs) {
            Some(r) => Some(ArtifactId::from_bytes(*r.as_bytes())),
            None => self.first_root.map(ArtifactId::from_bytes),
        }
    }

    /// The trailer naming the artifact these chunks hold, with their chunk tree.
    pub(crate) fn trailer(self, id: ArtifactId, len: u64) -> LargeTrailer {
        LargeTrailer {
            id,
            len,
            chunk_size: self.chunk_size as u32,
            chunks: self.chunks,
            cvs: Some(self.cvs),
        }
    }
}

/// Adaptive compression for chunk streams: after a run of chunks that did not
/// compress, only every 16th chunk is tried, so incompressible data (media,
/// archives) is written at disk speed instead of paying zstd on every chunk.
pub(crate) struct Squeeze {
    misses: u32,
    skipped: u32,
    /// Try one chunk in this many once two in a row did not compress.
    period: u32,
}

impl Default for Squeeze {
    fn default() -> Self {
        Self::every(16)
    }
}

impl Squeeze {
    /// Samples one chunk in `period` after two misses: content-defined
    /// chunks are 1/16 the size of the default fixed chunk, so they sample
    /// one in 256 to try zstd as often per byte.
    pub(crate) fn every(period: u32) -> Self {
        Self {
            misses: 0,
            skipped: 0,
            period: period.max(1),
        }
    }

    pub(crate) fn should_try(&mut self) -> bool {
        if self.misses < 2 {
            return true;
        }
        self.skipped += 1;
        self.skipped.is_multiple_of(self.period)
    }

    pub(crate) fn record(&mut self, compressed: bool) {
        if compressed {
            self.misses = 0;
            self.skipped = 0;
        } else {
            self.misses += 1;
        }
    }
}
