//! Reading one block for the store above: an entry of a packed block, a
//! frame of a framed one, a chunk's body, a large artifact's layout (trailer
//! or manifest), and what a sealed segment stores. Every decision on what a
//! block's bytes mean is made here, so `store/` keeps only its caches and the
//! BLAKE3 proof of the bytes it hands out.

use std::borrow::Cow;

use zstd::zstd_safe::DDict;

use super::error::{BlockError as Error, Result};
use super::format::{BlockHeader, BlockKind, Compression, LargeTrailer, BLOCK_HEADER_LEN};
use super::frames::decode_framed_table;
use super::manifest::Manifest;
use super::scan::Contents;
use super::segment::Segment;
use crate::error::DecodeError;
use crate::id::ArtifactId;

/// Why a block could not be read as the caller expected. The caller words
/// the error: it knows which artifact and which chunk it was after.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The segment could not be read there, or no block header decodes there.
    Read(Error),
    /// A well-formed block, but not the kind (or number, or length) expected.
    Unexpected,
    /// The body fails its checksum or does not decode.
    Body(DecodeError),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Read(e)
    }
}

/// Where the body of the block at `offset` starts.
fn body_at(offset: u64) -> u64 {
    offset + BLOCK_HEADER_LEN as u64
}

/// The bytes of an entry stored raw (in a raw packed block, or a raw frame
/// of a framed block), `inner` bytes into the body of the block at `block`.
/// Reading it needs no header: the id proves the bytes.
pub(crate) fn raw_entry(seg: &Segment, block: u64, inner: u32, len: u64) -> Result<Cow<'_, [u8]>> {
    seg.read(body_at(block) + inner as u64, len as usize)
}

/// Bytes a read of one frame costs at most: the block's header and head,
/// then no more than the artifact's length.
#[cfg(feature = "bench")]
pub(crate) fn frame_read_cost(len: u64) -> u64 {
    BLOCK_HEADER_LEN as u64 + 8 + len
}

/// What a reader of single frames needs to know of their framed block, read
/// once per block: where its dictionary is and how long its body is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FramedHead {
    pub dict_at: u64,
    pub stored_len: u32,
}

/// The head of the framed block at `offset`.
pub(crate) fn framed_head(seg: &Segment, offset: u64) -> Result<FramedHead> {
    let head = seg.read(offset, BLOCK_HEADER_LEN + 8)?;
    let h = BlockHeader::decode(&head[..BLOCK_HEADER_LEN])
        .map_err(|x| Error::corrupt(&seg.path, format!("block at {offset}: {x}")))?;
    if h.kind != BlockKind::Framed {
        return Err(Error::corrupt(
            &seg.path,
            format!("block at {offset} is not a framed block"),
        ));
    }
    let dict_at = u64::from_le_bytes(head[BLOCK_HEADER_LEN..].try_into().expect("8 bytes"));
    Ok(FramedHead {
        dict_at,
        stored_len: h.stored_len,
    })
}

/// Where the frame `inner` bytes into the framed block at `block` starts in
/// its segment (a key no block starts at, so caches may share it).
pub(crate) fn frame_start(block: u64, inner: u32) -> u64 {
    body_at(block) + inner as u64
}

/// Decompresses the frame `inner` bytes into the framed block at `block`
/// (whose head is `head`) into its `len` bytes, reading no more than `len`.
pub(crate) fn read_frame(
    seg: &Segment,
    block: u64,
    head: FramedHead,
    inner: u32,
    len: u64,
    dict: &DDict<'_>,
) -> Result<Vec<u8>> {
    if inner >= head.stored_len {
        return Err(Error::corrupt(
            &seg.path,
            format!("frame offset {inner} is past block {block}"),
        ));
    }
    let n = (len as usize).min((head.stored_len - inner) as usize);
    let frame = seg.read(frame_start(block, inner), n)?;
    super::frames::decompress(&frame, len as usize, dict)
        .map_err(|x| Error::corrupt(&seg.path, format!("frame in block at {block}: {x}")))
}

/// The decompressed body of the packed block at `offset`.
pub(crate) fn packed_block(seg: &Segment, offset: u64) -> Result<Vec<u8>> {
    let (h, raw) = seg.read_block(offset)?;
    if h.kind != BlockKind::Packed {
        return Err(Error::corrupt(
            &seg.path,
            format!("block at {offset} is not a packed block"),
        ));
    }
    Ok(raw)
}

/// How a large artifact's bytes are laid out: in chunks of its own named by
/// a trailer, or in shared content-defined chunks named by a manifest.
pub(crate) enum Layout {
    Trailer(LargeTrailer),
    Manifest(Manifest),
}

/// The layout in the block at `offset`, and that block's header.
pub(crate) fn layout(seg: &Segment, offset: u64) -> Result<(BlockHeader, Layout), Fault> {
    let (h, raw) = seg.read_block(offset)?;
    let layout = match h.kind {
        BlockKind::Manifest => Layout::Manifest(Manifest::decode(&raw).map_err(Fault::Body)?),
        k if k.is_trailer() => Layout::Trailer(LargeTrailer::decode_kind(k, &raw).map_err(Fault::Body)?),
        _ => return Err(Fault::Unexpected),
    };
    Ok((h, layout))
}

/// The body of chunk number `index` of a large artifact, at `offset`: its
/// block must say it is that chunk, of `raw_len` bytes. Checked by its CRC,
/// not yet against the artifact; borrowed from the segment's map when the
/// chunk is stored raw. (A reader that proves the bytes right after reads
/// with [`large_chunk_into`], and here only to say what is damaged.)
pub(crate) fn large_chunk(seg: &Segment, offset: u64, index: u32, raw_len: u32) -> Result<Cow<'_, [u8]>, Fault> {
    chunk_body(seg, offset, |h| {
        h.kind == BlockKind::LargeChunk && h.count == index && h.raw_len == raw_len
    })
}

/// The body of the content-defined chunk block at `offset` holding `len`
/// bytes (its key, then the bytes), checked by its CRC (see
/// [`large_chunk`] and [`cdc_range_into`]).
pub(crate) fn cdc_chunk(seg: &Segment, offset: u64, len: u32) -> Result<Cow<'_, [u8]>, Fault> {
    chunk_body(seg, offset, |h| h.kind == BlockKind::CdcChunk && h.raw_len == 32 + len)
}

/// A chunk block's body, checked by its CRC, and decoded when compressed.
fn chunk_body(seg: &Segment, offset: u64, expected: impl Fn(&BlockHeader) -> bool) -> Result<Cow<'_, [u8]>, Fault> {
    let h = seg.block_header(offset)?;
    if !expected(&h) {
        return Err(Fault::Unexpected);
    }
    let stored = seg.read(body_at(offset), h.stored_len as usize)?;
    match h.compression {
        Compression::None => {
            h.check_body(&stored).map_err(Fault::Body)?;
            Ok(stored)
        }
        _ => h.decode_body(&stored).map(Cow::Owned).map_err(Fault::Body),
    }
}

/// Chunk number `index` of a large artifact, at `offset`, into
/// `out[at..]`, for a reader that proves the bytes against the artifact's
/// chunk tree right after: a raw body is read straight into `out` (see
/// [`room`]), with no buffer between the file and the bytes proven, and its
/// CRC is not checked (that was 6 % of a large GET); the reader asks
/// [`large_chunk`] for the diagnosis when its proof fails. A compressed
/// body is checked by its CRC before it is decoded.
pub(crate) fn large_chunk_into(
    seg: &Segment,
    offset: u64,
    (index, raw_len): (u32, u32),
    out: &mut Vec<u8>,
    at: usize,
) -> Result<(), Fault> {
    let (h, _) = head_and_key(seg, offset, false)?;
    if h.kind != BlockKind::LargeChunk || h.count != index || h.raw_len != raw_len {
        return Err(Fault::Unexpected);
    }
    if h.compression != Compression::None {
        let raw = h
            .decode_body(&seg.read(body_at(offset), h.stored_len as usize)?)
            .map_err(Fault::Body)?;
        room(out, at, raw.len()).copy_from_slice(&raw);
        return Ok(());
    }
    raw_body_into(seg, offset, &h, 0, room(out, at, raw_len as usize))
}

/// Bytes `skip..skip + n` of the content-defined chunk at `offset` (holding
/// `len` bytes under `key`) into `out[at..]`, as [`large_chunk_into`]: the
/// block's key is matched, its CRC left to the diagnosis after the caller's
/// proof fails ([`cdc_chunk`]).
pub(crate) fn cdc_range_into(
    seg: &Segment,
    (offset, len, key): (u64, u32, &ArtifactId),
    (skip, n): (usize, usize),
    out: &mut Vec<u8>,
    at: usize,
) -> Result<(), Fault> {
    let (h, stored_key) = head_and_key(seg, offset, true)?;
    if h.kind != BlockKind::CdcChunk || h.raw_len != 32 + len || skip + n > len as usize {
        return Err(Fault::Unexpected);
    }
    if h.compression != Compression::None {
        let raw = h
            .decode_body(&seg.read(body_at(offset), h.stored_len as usize)?)
            .map_err(Fault::Body)?;
        if raw[..32] != key.as_bytes()[..] {
            return Err(Fault::Unexpected);
        }
        room(out, at, n).copy_from_slice(&raw[32 + skip..32 + skip + n]);
        return Ok(());
    }
    if stored_key.as_ref() != Some(key.as_bytes()) {
        return Err(Fault::Unexpected);
    }
    raw_body_into(seg, offset, &h, 32 + skip, room(out, at, n))
}

/// `out[at..at + n]`, growing `out` only when it is shorter: a reader's
/// buffers keep their length from one chunk to the next, so the bytes are
/// read over the last chunk's instead of into freshly zeroed memory (a
/// tenth of a large read's time went to zeroing). The caller truncates
/// `out` to what it wrote.
fn room(out: &mut Vec<u8>, at: usize, n: usize) -> &mut [u8] {
    if out.len() < at + n {
        out.resize(at + n, 0);
    }
    &mut out[at..at + n]
}

/// The block header at `offset` and, when `key` and the segment holds them,
/// the 32 body bytes after it (a raw chunk's key), in one read.
fn head_and_key(seg: &Segment, offset: u64, key: bool) -> Result<(BlockHeader, Option<[u8; 32]>), Fault> {
    // A small compressed chunk that ends the open segment may leave fewer
    // than 32 bytes after its header: then the header alone.
    let both = key.then(|| seg.read(offset, BLOCK_HEADER_LEN + 32).ok()).flatten();
    let Some(b) = both else {
        return Ok((seg.block_header(offset)?, None));
    };
    let h = BlockHeader::decode(&b[..BLOCK_HEADER_LEN])
        .map_err(|e| Fault::Read(Error::corrupt(&seg.path, format!("block at {offset}: {e}"))))?;
    Ok((h, b[BLOCK_HEADER_LEN..].try_into().ok()))
}

/// Fills `out` from the raw body of block `h` at `offset`, from `skip` bytes in.
fn raw_body_into(seg: &Segment, offset: u64, h: &BlockHeader, skip: usize, out: &mut [u8]) -> Result<(), Fault> {
    if skip + out.len() > h.stored_len as usize {
        return Err(Fault::Unexpected);
    }
    Ok(seg.read_into(body_at(offset) + skip as u64, out)?)
}

/// The whole decoded content-defined chunk block at `offset`, whatever its
/// length (for [`super::cdc::decode_chunk`]).
pub(crate) fn cdc_chunk_block(seg: &Segment, offset: u64) -> Result<Vec<u8>, Fault> {
    let (h, raw) = seg.read_block(offset)?;
    if h.kind != BlockKind::CdcChunk {
        return Err(Fault::Unexpected);
    }
    Ok(raw)
}

/// The block at `offset` as it is stored (header, and body checked by its
/// CRC but not decompressed), for copying it verbatim.
pub(crate) fn stored_block(seg: &Segment, offset: u64) -> Result<(BlockHeader, Vec<u8>)> {
    let h = seg.block_header(offset)?;
    let stored = seg.read(body_at(offset), h.stored_len as usize)?.into_owned();
    h.check_body(&stored)
        .map_err(|e| Error::corrupt(&seg.path, format!("block at {offset}: {e}")))?;
    Ok((h, stored))
}

/// An artifact a sealed segment stores, as an index record finds it: the
/// block it is in and where in that block.
#[derive(Clone, Copy)]
pub(crate) struct Stored {
    pub id: ArtifactId,
    pub block_offset: u64,
    pub inner: u32,
}

/// Every artifact (and content-defined chunk) a segment stores: packed and
/// framed block tables, trailers and manifests, chunk keys. Chunk bodies and
/// frames are not read: tables say where each one is.
pub(crate) fn stored(seg: &Segment) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    for b in seg.blocks()? {
        let listed: Vec<(ArtifactId, u32)> = match b.header.kind {
            BlockKind::LargeChunk | BlockKind::Tombstones | BlockKind::Dictionary => continue,
            BlockKind::CdcChunk => match seg.contents(&b)? {
                Contents::CdcChunk { key, .. } => vec![(key, 0)],
                _ => continue,
            },
            BlockKind::Framed => {
                let body = seg.read(body_at(b.offset), b.header.stored_len as usize)?;
                b.header
                    .check_body(&body)
                    .and_then(|_| decode_framed_table(&body, b.header.count))
                    .map_err(|e| Error::corrupt(&seg.path, format!("block at {}: {e}", b.offset)))?
                    .1
                    .iter()
                    .map(|f| (f.id, f.offset))
                    .collect()
            }
            _ => seg.contents(&b)?.artifacts().iter().map(|a| (a.0, a.1)).collect(),
        };
        out.extend(listed.into_iter().map(|(id, inner)| Stored {
            id,
            block_offset: b.offset,
            inner,
        }));
    }
    Ok(out)
}
