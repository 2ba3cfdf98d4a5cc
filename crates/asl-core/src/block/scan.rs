//! The one block scanner: every pass that walks a segment block by block (GC
//! listing a victim's artifacts, verify, repair, reopening the open segment,
//! recounting usage of an old store) goes through [`Blocks`], and every
//! decision on what a block holds goes through [`Contents`].
//!
//! The scanner reads through a [`BlockSource`], so the same walk runs over a
//! mapped sealed segment, the open segment read with `pread`, or bytes in
//! memory (a fuzz input, a file read whole by repair).

use std::borrow::Cow;

use crate::block::cdc::decode_chunk;
use crate::block::format::{
    decode_packed_table, decode_tombstones, BlockHeader, BlockKind, LargeTrailer, PackedEntry, BLOCK_HEADER_LEN,
};
use crate::block::frames::{decode_framed_table, decoder, decompress, FramedEntry};
use crate::block::manifest::Manifest;
use crate::error::DecodeError;
use crate::id::ArtifactId;
use zstd::zstd_safe::DDict;

/// Positioned reads of a segment's bytes. `None` means the range is not there
/// (past the end); I/O errors are reported by the source itself.
pub(crate) trait BlockSource {
    /// `len` bytes at `offset`, or `None` when they are not all there.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Option<Cow<'_, [u8]>>>;
}

impl BlockSource for [u8] {
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Option<Cow<'_, [u8]>>> {
        let end = offset.checked_add(len as u64);
        Ok(match end {
            Some(end) if end <= self.len() as u64 => Some(Cow::Borrowed(&self[offset as usize..end as usize])),
            _ => None,
        })
    }
}

/// Where a block is and what its header says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    /// Offset of the block header in the segment.
    pub(crate) offset: u64,
    /// The decoded, checked header.
    pub(crate) header: BlockHeader,
}

impl Located {
    /// Offset just past the block.
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.header.total_len()
    }
}

/// Why a scan stopped before the end of the block area.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The header at `offset` is unreadable or runs past the end.
    Damaged {
        /// Where it stopped.
        offset: u64,
        /// What was wrong.
        reason: DecodeError,
    },
    /// The source failed to read.
    Io(std::io::Error),
}

/// Iterates over the blocks between `start` and `end`, checking each header;
/// ends at `end` or at the first header that fails (yielding [`Stop`] once).
pub(crate) struct Blocks<'a, S: BlockSource + ?Sized> {
    src: &'a S,
    off: u64,
    end: u64,
    done: bool,
}

impl<'a, S: BlockSource + ?Sized> Blocks<'a, S> {
    pub(crate) fn new(src: &'a S, start: u64, end: u64) -> Self {
        Self {
            src,
            off: start,
            end,
            done: false,
        }
    }

    /// Where the next block would start (after a stop: where the damage is).
    pub(crate) fn position(&self) -> u64 {
        self.off
    }
}

impl<S: BlockSource + ?Sized> Iterator for Blocks<'_, S> {
    type Item = Result<Located, Stop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= self.end {
            return None;
        }
        let damaged = |offset, reason| Some(Err(Stop::Damaged { offset, reason }));
        let off = self.off;
        self.done = true;
        if off + BLOCK_HEADER_LEN as u64 > self.end {
            return damaged(
                off,
                DecodeError::Truncated {
                    what: "block header",
                    need: BLOCK_HEADER_LEN as u64,
                    have: self.end - off,
                },
            );
        }
        let hb = match self.src.read_at(off, BLOCK_HEADER_LEN) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return damaged(
                    off,
                    DecodeError::Invalid("block header past the end of the file".into()),
                )
            }
            Err(e) => return Some(Err(Stop::Io(e))),
        };
        let header = match BlockHeader::decode(&hb) {
            Ok(h) => h,
            Err(e) => return damaged(off, e),
        };
        let b = Located { offset: off, header };
        if b.end() > self.end {
            return damaged(
                off,
                DecodeError::Truncated {
                    what: "block body",
                    need: header.stored_len as u64,
                    have: self.end - off - BLOCK_HEADER_LEN as u64,
                },
            );
        }
        self.off = b.end();
        self.done = false;
        Some(Ok(b))
    }
}

/// What one block holds, decoded (the single place block kinds are told apart).
#[derive(Debug)]
pub(crate) enum Contents {
    /// Small artifacts and the raw body they sit in.
    Packed {
        /// The entry table.
        entries: Vec<PackedEntry>,
        /// The decompressed body (table included); for a framed block, the
        /// artifacts' bytes one after another, where `entries` point.
        raw: Vec<u8>,
        /// For a framed block, where each artifact's frame sits in the block
        /// body (an index record points at the frame, not into `raw`).
        frames: Option<Vec<FramedEntry>>,
    },
    /// A dictionary for the framed blocks after it.
    Dictionary,
    /// A chunk of a large artifact (body not decoded unless asked).
    Chunk,
    /// A large artifact's trailer.
    Trailer(LargeTrailer),
    /// A content-defined chunk: its key and length (its bytes checked
    /// against the key only when chunks are checked).
    CdcChunk { key: ArtifactId, len: u32 },
    /// A large artifact's manifest.
    Manifest(Manifest),
    /// Removals.
    Tombstones(Vec<(ArtifactId, u16)>),
}

impl Contents {
    /// Reads, checks and decodes the body of `b`. Chunk bodies are checked
    /// against their CRC only when `check_chunks` is set.
    pub(crate) fn read<S: BlockSource + ?Sized>(
        src: &S,
        b: &Located,
        check_chunks: bool,
    ) -> Result<Self, ContentsError> {
        let h = &b.header;
        if h.kind == BlockKind::LargeChunk && !check_chunks {
            return Ok(Contents::Chunk);
        }
        let stored = src
            .read_at(b.offset + BLOCK_HEADER_LEN as u64, h.stored_len as usize)
            .map_err(ContentsError::Io)?
            .ok_or_else(|| ContentsError::Decode(DecodeError::Invalid("block body past the end of the file".into())))?;
        if h.kind == BlockKind::LargeChunk {
            h.check_body(&stored).map_err(ContentsError::Decode)?;
            return Ok(Contents::Chunk);
        }
        let raw = h.decode_body(&stored).map_err(ContentsError::Decode)?;
        Ok(match h.kind {
            BlockKind::Packed => Contents::Packed {
                entries: decode_packed_table(&raw, h.count).map_err(ContentsError::Decode)?,
                raw,
                frames: None,
            },
            BlockKind::Framed => unframe(src, &raw, h.count)?,
            BlockKind::Dictionary => Contents::Dictionary,
            k @ (BlockKind::LargeTrailer | BlockKind::TreeTrailer) => {
                Contents::Trailer(LargeTrailer::decode_kind(k, &raw).map_err(ContentsError::Decode)?)
            }
            BlockKind::Tombstones => {
                Contents::Tombstones(decode_tombstones(&raw, h.count).map_err(ContentsError::Decode)?)
            }
            BlockKind::LargeChunk => Contents::Chunk,
            BlockKind::CdcChunk => {
                let (key, len) = if check_chunks {
                    let (key, bytes) = decode_chunk(&raw).map_err(ContentsError::Decode)?;
                    (key, bytes.len())
                } else if raw.len() > 32 {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(&raw[..32]);
                    (ArtifactId::from_bytes(key), raw.len() - 32)
                } else {
                    return Err(ContentsError::Decode(DecodeError::Invalid(
                        "chunk block too short".into(),
                    )));
                };
                Contents::CdcChunk { key, len: len as u32 }
            }
            BlockKind::Manifest => Contents::Manifest(Manifest::decode(&raw).map_err(ContentsError::Decode)?),
        })
    }

    /// The artifacts this block names, with their logical lengths and inner
    /// offsets as index records hold them: into the raw body of a packed
    /// block, at the frame of a framed one, 0 for a large artifact's trailer.
    pub(crate) fn artifacts(&self) -> Vec<(ArtifactId, u32, u64)> {
        match self {
            Contents::Packed {
                frames: Some(frames), ..
            } => frames.iter().map(|f| (f.id, f.offset, f.raw_len as u64)).collect(),
            Contents::Packed { entries, .. } => entries.iter().map(|e| (e.id, e.offset, e.len as u64)).collect(),
            Contents::Trailer(t) => vec![(t.id, 0, t.len)],
            Contents::Manifest(m) => vec![(m.id, 0, m.len)],
            Contents::Chunk | Contents::CdcChunk { .. } | Contents::Tombstones(_) | Contents::Dictionary => Vec::new(),
        }
    }
}

/// Decodes every frame of a framed block body against the dictionary block
/// it names in the same source.
fn unframe<S: BlockSource + ?Sized>(src: &S, body: &[u8], count: u32) -> Result<Contents, ContentsError> {
    let (dict_at, frames) = decode_framed_table(body, count).map_err(ContentsError::Decode)?;
    let dict = read_dictionary(src, dict_at)?;
    let mut raw = Vec::with_capacity(frames.iter().map(|f| f.raw_len as usize).sum());
    let mut entries = Vec::with_capacity(frames.len());
    for f in &frames {
        let stored = &body[f.offset as usize..(f.offset + f.stored_len) as usize];
        let offset = raw.len() as u32;
        if f.compressed {
            raw.extend_from_slice(&decompress(stored, f.raw_len as usize, &dict).map_err(ContentsError::Decode)?);
        } else {
            raw.extend_from_slice(stored);
        }
        entries.push(PackedEntry {
            id: f.id,
            offset,
            len: f.raw_len,
        });
    }
    Ok(Contents::Packed {
        entries,
        raw,
        frames: Some(frames),
    })
}

/// The dictionary in the block at `offset`, checked and prepared.
pub(crate) fn read_dictionary<S: BlockSource + ?Sized>(src: &S, offset: u64) -> Result<DDict<'static>, ContentsError> {
    Ok(decoder(&dictionary_bytes(src, offset)?))
}

/// The bytes of the dictionary in the block at `offset`, checked.
pub(crate) fn dictionary_bytes<S: BlockSource + ?Sized>(src: &S, offset: u64) -> Result<Vec<u8>, ContentsError> {
    let missing = || ContentsError::Decode(DecodeError::Invalid(format!("no dictionary block at {offset}")));
    let hb = src
        .read_at(offset, BLOCK_HEADER_LEN)
        .map_err(ContentsError::Io)?
        .ok_or_else(missing)?;
    let h = BlockHeader::decode(&hb).map_err(ContentsError::Decode)?;
    if h.kind != BlockKind::Dictionary {
        return Err(missing());
    }
    let body = src
        .read_at(offset + BLOCK_HEADER_LEN as u64, h.stored_len as usize)
        .map_err(ContentsError::Io)?
        .ok_or_else(missing)?;
    h.decode_body(&body).map_err(ContentsError::Decode)
}

/// Why a block's contents could not be read.
#[derive(Debug)]
pub(crate) enum ContentsError {
    /// The bytes are damaged.
    Decode(DecodeError),
    /// The source failed to read.
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::format::{encode_tombstones, header_for, Compression, PackedBuilder};

    fn block(kind: BlockKind, body: &[u8], count: u32, out: &mut Vec<u8>) -> u64 {
        let at = out.len() as u64;
        out.extend_from_slice(&header_for(kind, Compression::None, body, body.len(), count).encode());
        out.extend_from_slice(body);
        at
    }

    #[test]
    fn walks_every_kind_and_stops_at_damage() {
        let mut seg = vec![0u8; 32];
        let mut p = PackedBuilder::default();
        p.push(ArtifactId::of(b"a"), b"a");
        p.push(ArtifactId::of(b"bb"), b"bb");
        let (raw, _) = p.finish();
        block(BlockKind::Packed, &raw, 2, &mut seg);
        block(BlockKind::LargeChunk, b"chunk", 0, &mut seg);
        let ts = encode_tombstones(&[(ArtifactId::of(b"a"), 0)]);
        block(BlockKind::Tombstones, &ts, 1, &mut seg);
        let key = crate::block::cdc::chunk_key(b"cdc");
        block(
            BlockKind::CdcChunk,
            &crate::block::cdc::encode_chunk(&key, b"cdc"),
            0,
            &mut seg,
        );
        let good_end = seg.len() as u64;
        let blocks: Vec<Located> = Blocks::new(&seg[..], 32, good_end).map(|b| b.unwrap()).collect();
        assert_eq!(blocks.len(), 4);
        let kinds: Vec<usize> = blocks
            .iter()
            .map(|b| match Contents::read(&seg[..], b, true).unwrap() {
                Contents::Packed { entries, .. } => entries.len(),
                Contents::Chunk => 100,
                Contents::Tombstones(t) => 200 + t.len(),
                Contents::Trailer(_) => 300,
                Contents::Dictionary => 400,
                Contents::CdcChunk { key: k, len } => {
                    assert_eq!(k, key);
                    500 + len as usize
                }
                Contents::Manifest(_) => 600,
            })
            .collect();
        assert_eq!(kinds, vec![2, 100, 201, 503]);
        // A flipped header byte stops the walk there, once.
        let mut bad = seg.clone();
        bad[blocks[1].offset as usize + 9] ^= 1;
        let mut it = Blocks::new(&bad[..], 32, good_end);
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(it.next(), Some(Err(Stop::Damaged { offset, .. })) if offset == blocks[1].offset));
        assert!(it.next().is_none());
        assert_eq!(it.position(), blocks[1].offset);
        // A block running past the end is damage too.
        let mut it = Blocks::new(&seg[..], 32, good_end - 1);
        assert_eq!(it.by_ref().filter(|b| b.is_ok()).count(), 3);
    }
}
