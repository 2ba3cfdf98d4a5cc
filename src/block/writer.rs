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
        Self { header, body, cv, root }
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
        }
    }
}

impl ActiveSegment {
    /// Appends a block image; returns its offset. Not durable until `sync`.
    pub(crate) fn write(&mut self, img: &BlockImage<'_>) -> Result<u64> {
        self.append(&img.header, &img.body)
    }
}

/// Where a packed block put its artifacts.
pub(crate) struct PackedLocation {
    /// Offset of the block in its segment.
    pub(crate) offset: u64,
    /// Whether its body is compressed (readers then decode the whole block).
    pub(crate) compressed: bool,
}

/// Appends a packed block built from `raw` and returns where it went.
pub(crate) fn write_packed(
    seg: &mut ActiveSegment,
    raw: &[u8],
    entries: &[PackedEntry],
    level: Option<i32>,
) -> Result<PackedLocation> {
    let img = BlockImage::packed(raw, entries.len() as u32, level);
    write_image(seg, &img)
}

/// Appends a prepared packed block image and returns where it went.
pub(crate) fn write_image(seg: &mut ActiveSegment, img: &BlockImage<'_>) -> Result<PackedLocation> {
    let offset = seg.write(img)?;
    Ok(PackedLocation {
        offset,
        compressed: img.is_compressed(),
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
        use rayon::prelude::*;
        // Prepared runs are written before the next is prepared, so the
        // chunks written so far give the next chunk's number.
        let first = self.chunks.len() as u32;
        let pieces: Vec<&[u8]> = data.chunks(self.chunk_size).collect();
        let tries: Vec<bool> = pieces.iter().map(|_| self.squeeze.should_try()).collect();
        let (level, size) = (self.level, self.chunk_size);
        let images: Vec<BlockImage<'d>> = pieces
            .par_iter()
            .zip(tries.par_iter())
            .enumerate()
            .map(|(i, (p, t))| BlockImage::chunk(p, first + i as u32, size, *t, level))
            .collect();
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
#[derive(Default)]
struct Squeeze {
    misses: u32,
    skipped: u32,
}

impl Squeeze {
    fn should_try(&mut self) -> bool {
        if self.misses < 2 {
            return true;
        }
        self.skipped += 1;
        self.skipped.is_multiple_of(16)
    }

    fn record(&mut self, compressed: bool) {
        if compressed {
            self.misses = 0;
            self.skipped = 0;
        } else {
            self.misses += 1;
        }
    }
}
