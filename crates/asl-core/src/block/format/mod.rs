//! Byte layouts of blocks and their bodies (see `spec/format.md`).
//!
//! Everything here is a pure function over byte slices so that each parser can
//! be fuzzed on its own.

use crate::error::DecodeError;
use crate::fsutil::{check_framed, le_u16, le_u32, le_u64, Framing};
use crate::id::ArtifactId;

/// Magic at the start of every block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"ASLB";
/// Size of a block header in bytes.
pub const BLOCK_HEADER_LEN: usize = 32;
/// Size of one entry in a packed block's table: id, offset, length.
pub const PACKED_ENTRY_LEN: usize = 40;
/// Size of one tombstone in a tombstone block: id, domain.
pub const TOMBSTONE_LEN: usize = 34;
/// Upper bound on a block body, to reject absurd lengths before allocating.
pub const MAX_BODY_LEN: u32 = 1 << 30;

/// What a block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    /// Many small artifacts: an entry table, then their bytes.
    Packed = 1,
    /// One chunk of a large artifact's bytes.
    LargeChunk = 2,
    /// The closing block of a large artifact: its id, length and chunk table.
    LargeTrailer = 3,
    /// Ids removed from CURRENT, so repair can replay removals.
    Tombstones = 4,
    /// The closing block of a large artifact with its verified chunk tree: a
    /// trailer that also keeps each chunk's BLAKE3 chaining value (segment
    /// version 2).
    TreeTrailer = 5,
    /// A zstd dictionary trained for the framed blocks after it in its
    /// segment (segment version 3).
    Dictionary = 6,
    /// Small artifacts compressed one by one against a dictionary block: an
    /// entry table, then one frame per artifact (segment version 3; see
    /// `block::frames`).
    Framed = 7,
    /// One content-defined chunk, shared by every large artifact whose
    /// manifest names it: its key, then its bytes (segment version 4; see
    /// `block::cdc`).
    CdcChunk = 8,
    /// The closing block of a large artifact stored in content-defined
    /// chunks: its id, length, chunk tree and chunk list (segment version 4;
    /// see `block::manifest`).
    Manifest = 9,
}

impl BlockKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Packed,
            2 => Self::LargeChunk,
            3 => Self::LargeTrailer,
            4 => Self::Tombstones,
            5 => Self::TreeTrailer,
            6 => Self::Dictionary,
            7 => Self::Framed,
            8 => Self::CdcChunk,
            9 => Self::Manifest,
            _ => return None,
        })
    }

    /// Whether blocks of this kind close a large artifact.
    pub fn is_trailer(self) -> bool {
        matches!(self, Self::LargeTrailer | Self::TreeTrailer | Self::Manifest)
    }

    /// Whether blocks of this kind hold small artifacts.
    pub fn is_packed(self) -> bool {
        matches!(self, Self::Packed | Self::Framed)
    }
}

/// How a block body is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Raw bytes.
    None = 0,
    /// One zstd frame.
    Zstd = 1,
}

/// The fixed 32-byte header in front of every block body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// What the body holds.
    pub kind: BlockKind,
    /// How the body is stored.
    pub compression: Compression,
    /// Bytes of body on disk.
    pub stored_len: u32,
    /// Bytes of body after decompression.
    pub raw_len: u32,
    /// Entries in a packed or tombstone block; the chunk number of a large chunk.
    pub count: u32,
    /// CRC-32C of the stored body.
    pub body_crc: u32,
}

impl BlockHeader {
    /// Encodes the header, sealing it with its own CRC.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(&BLOCK_MAGIC);
        b[4] = self.kind as u8;
        b[5] = self.compression as u8;
        b[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.count.to_le_bytes());
        b[20..24].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        check_framed(
            b,
            &Framing {
                what: "block header",
                magic: &BLOCK_MAGIC,
                magic_name: "ASLB",
                crc_at: 28,
                version: None,
            },
        )?;
        let kind = BlockKind::from_u8(b[4]).ok_or_else(|| DecodeError::Invalid(format!("block kind {}", b[4])))?;
        let compression = match b[5] {
            0 => Compression::None,
            1 => Compression::Zstd,
            c => return Err(DecodeError::Invalid(format!("compression {c}"))),
        };
        if b[6] != 0 || b[7] != 0 || le_u32(b, 24) != 0 {
            return Err(DecodeError::Invalid("reserved header bytes are not zero".into()));
        }
        let h = Self {
            kind,
            compression,
            stored_len: le_u32(b, 8),
            raw_len: le_u32(b, 12),
            count: le_u32(b, 16),
            body_crc: le_u32(b, 20),
        };
        if h.stored_len > MAX_BODY_LEN || h.raw_len > MAX_BODY_LEN {
            return Err(DecodeError::Invalid("block body length over 1 GiB".into()));
        }
        if h.compression == Compression::None && h.stored_len != h.raw_len {
            return Err(DecodeError::Invalid(
                "uncompressed block with raw != stored length".into(),
            ));
        }
        Ok(h)
    }

    /// Bytes the whole block occupies in its segment.
    pub fn total_len(&self) -> u64 {
        BLOCK_HEADER_LEN as u64 + self.stored_len as u64
    }

    /// Checks the stored body against the header CRC.
    pub fn check_body(&self, stored: &[u8]) -> Result<(), DecodeError> {
        if stored.len() as u64 != self.stored_len as u64 {
            return Err(DecodeError::Truncated {
                what: "block body",
                need: self.stored_len as u64,
                have: stored.len() as u64,
            });
        }
        let computed = crc32c::crc32c(stored);
        if computed != self.body_crc {
            return Err(DecodeError::Checksum {
                what: "block body",
                stored: self.body_crc,
                computed,
            });
        }
        Ok(())
    }

    /// Checks and decompresses a stored body into its raw bytes.
    pub fn decode_body(&self, stored: &[u8]) -> Result<Vec<u8>, DecodeError> {
        self.check_body(stored)?;
        match self.compression {
            Compression::None => Ok(stored.to_vec()),
            Compression::Zstd => {
                let raw = zstd_decompress(stored, self.raw_len as usize)
                    .map_err(|e| DecodeError::Invalid(format!("zstd body: {e}")))?;
                if raw.len() != self.raw_len as usize {
                    return Err(DecodeError::Invalid("decompressed length differs from header".into()));
                }
                Ok(raw)
            }
        }
    }
}

static DECOMPRESSORS: crate::block::kept::Kept<zstd::bulk::Decompressor<'static>> = crate::block::kept::Kept::new();
static COMPRESSORS: crate::block::kept::Kept<(i32, zstd::bulk::Compressor<'static>)> = crate::block::kept::Kept::new();

/// `zstd::bulk::decompress` through a kept context.
fn zstd_decompress(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSORS.with(zstd::bulk::Decompressor::new, |d| d.decompress(stored, capacity))?
}

/// `zstd::bulk::compress` through a kept context.
fn zstd_compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let make = || Ok((level, zstd::bulk::Compressor::new(level)?));
    COMPRESSORS.with(make, |(l, c)| {
        if *l != level {
            c.set_compression_level(level)?;
            *l = level;
        }
        c.compress(raw)
    })?
}

/// Compresses `raw` when that saves at least 1/32 of it; returns the stored
/// bytes (borrowed when left raw) and the compression used.
///
/// Bodies over 256 KiB are first judged on a 64 KiB sample (16 KiB slices
/// centred at 1/8, 3/8, 5/8 and 7/8 of the body, which keeps a packed block's
/// entry table at the front out of the sample): incompressible data (media, archives, encrypted
/// bytes) then costs one small zstd call instead of a full one, which on this
/// project's reference machine is ~3 ms per MiB wasted.
pub fn maybe_compress(raw: &[u8], level: Option<i32>) -> (std::borrow::Cow<'_, [u8]>, Compression) {
    let Some(level) = level else {
        return (raw.into(), Compression::None);
    };
    if raw.len() < 64 {
        return (raw.into(), Compression::None);
    }
    const SLICE: usize = 16 << 10;
    if raw.len() > 16 * SLICE {
        let mut sample = Vec::with_capacity(4 * SLICE);
        for k in [1, 3, 5, 7] {
            let at = raw.len() * k / 8 - SLICE / 2;
            sample.extend_from_slice(&raw[at..at + SLICE]);
        }
        match zstd_compress(&sample, level) {
            Ok(c) if c.len() < sample.len() - sample.len() / 32 => {}
            _ => return (raw.into(), Compression::None),
        }
    }
    if let Ok(c) = zstd_compress(raw, level) {
        if c.len() < raw.len() - raw.len() / 32 {
            return (c.into(), Compression::Zstd);
        }
    }
    (raw.into(), Compression::None)
}

/// Builds the header for a body stored as `stored`.
pub fn header_for(kind: BlockKind, compression: Compression, stored: &[u8], raw_len: usize, count: u32) -> BlockHeader {
    BlockHeader {
        kind,
        compression,
        stored_len: stored.len() as u32,
        raw_len: raw_len as u32,
        count,
        body_crc: crc32c::crc32c(stored),
    }
}

/// One artifact inside a packed block: where its bytes sit in the raw body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedEntry {
    /// The artifact.
    pub id: ArtifactId,
    /// Offset of its bytes from the start of the raw body.
    pub offset: u32,
    /// Its length.
    pub len: u32,
}

/// Accumulates small artifacts into a packed block body.
#[derive(Default)]
pub struct PackedBuilder {
    items: Vec<(ArtifactId, u32, u32)>,
    data: Vec<u8>,
}

impl PackedBuilder {
    /// Adds an artifact; returns its index in the builder.
    pub fn push(&mut self, id: ArtifactId, bytes: &[u8]) -> usize {
        self.items.push((id, self.data.len() as u32, bytes.len() as u32));
        self.data.extend_from_slice(bytes);
        self.items.len() - 1
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Size the raw body would have now.
    pub fn raw_len(&self) -> usize {
        self.items.len() * PACKED_ENTRY_LEN + self.data.len()
    }

    /// The bytes of the artifact at `index` (as returned by `push`).
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let (_, off, len) = *self.items.get(index)?;
        self.data.get(off as usize..off as usize + len as usize)
    }

    /// Produces the raw body and the entries with their final offsets, and empties the builder.
    pub fn finish(&mut self) -> (Vec<u8>, Vec<PackedEntry>) {
        let out = self.build();
        self.clear();
        out
    }

    /// Empties the builder.
    pub fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
    }

    /// Produces the raw body and the entries with their final offsets; the
    /// builder keeps its contents (readers may still be served from it).
    pub fn build(&self) -> (Vec<u8>, Vec<PackedEntry>) {
        let table = self.items.len() * PACKED_ENTRY_LEN;
        let mut raw = Vec::with_capacity(table + self.data.len());
        let mut entries = Vec::with_capacity(self.items.len());
        for (id, off, len) in &self.items {
            let offset = table as u32 + off;
            raw.extend_from_slice(id.as_bytes());
            raw.extend_from_slice(&offset.to_le_bytes());
            raw.extend_from_slice(&len.to_le_bytes());
            entries.push(PackedEntry {
                id: *id,
                offset,
                len: *len,
            });
        }
        raw.extend_from_slice(&self.data);
        (raw, entries)
    }
}

/// Decodes and bounds-checks the entry table at the front of a packed raw body.
pub fn decode_packed_table(raw: &[u8], count: u32) -> Result<Vec<PackedEntry>, DecodeError> {
    let table = (count as u64) * PACKED_ENTRY_LEN as u64;
    if table > raw.len() as u64 {
        return Err(DecodeError::Truncated {
            what: "packed entry table",
            need: table,
            have: raw.len() as u64,
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let e = &raw[i * PACKED_ENTRY_LEN..(i + 1) * PACKED_ENTRY_LEN];
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[..32]);
        let offset = le_u32(e, 32);
        let len = le_u32(e, 36);
        let end = offset as u64 + len as u64;
        if (offset as u64) < table || end > raw.len() as u64 {
            return Err(DecodeError::Invalid(format!("packed entry {i} out of bounds")));
        }
        out.push(PackedEntry {
            id: ArtifactId::from_bytes(id),
            offset,
            len,
        });
    }
    Ok(out)
}

/// Where one chunk of a large artifact sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Offset of the chunk block (its header) in the segment.
    pub offset: u64,
    /// Raw bytes of artifact data in the chunk.
    pub raw_len: u32,
}

/// The body of a large artifact's trailer block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LargeTrailer {
    /// The artifact.
    pub id: ArtifactId,
    /// Its total length.
    pub len: u64,
    /// Raw length of every chunk but the last.
    pub chunk_size: u32,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
    /// Each chunk's BLAKE3 chaining value (the verified chunk tree); `None`
    /// for a trailer written before the tree existed (block kind 3).
    pub cvs: Option<Vec<[u8; 32]>>,
}

/// Bytes per chunk record: offset and raw length, then the CV in a tree trailer.
const CHUNK_REF_LEN: usize = 12;
const TREE_REF_LEN: usize = CHUNK_REF_LEN + 32;

impl LargeTrailer {
    /// The block kind this trailer is written as.
    pub fn kind(&self) -> BlockKind {
        if self.cvs.is_some() {
            BlockKind::TreeTrailer
        } else {
            BlockKind::LargeTrailer
        }
    }

    /// Encodes the raw trailer body (of the kind [`LargeTrailer::kind`] says).
    pub fn encode(&self) -> Vec<u8> {
        let per = if self.cvs.is_some() {
            TREE_REF_LEN
        } else {
            CHUNK_REF_LEN
        };
        let mut b = Vec::with_capacity(48 + self.chunks.len() * per);
        b.extend_from_slice(self.id.as_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.chunk_size.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (i, c) in self.chunks.iter().enumerate() {
            b.extend_from_slice(&c.offset.to_le_bytes());
            b.extend_from_slice(&c.raw_len.to_le_bytes());
            if let Some(cvs) = &self.cvs {
                b.extend_from_slice(&cvs[i]);
            }
        }
        b
    }

    /// Decodes a kind-3 trailer body (no chunk tree).
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_kind(BlockKind::LargeTrailer, b)
    }

    /// Decodes the raw body of a trailer block of `kind` and checks that the
    /// chunk lengths add up; a tree trailer's chaining values must also merge
    /// to its id (checked here once, so a decoded trailer is self-consistent).
    pub fn decode_kind(kind: BlockKind, b: &[u8]) -> Result<Self, DecodeError> {
        let per = match kind {
            BlockKind::LargeTrailer => CHUNK_REF_LEN,
            BlockKind::TreeTrailer => TREE_REF_LEN,
            other => return Err(DecodeError::Invalid(format!("block kind {other:?} is not a trailer"))),
        };
        if b.len() < 48 {
            return Err(DecodeError::Truncated {
                what: "large trailer",
                need: 48,
                have: b.len() as u64,
            });
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let len = le_u64(b, 32);
        let chunk_size = le_u32(b, 40);
        let n = le_u32(b, 44) as u64;
        if b.len() as u64 != 48 + n * per as u64 {
            return Err(DecodeError::Invalid(
                "large trailer length does not match its chunk count".into(),
            ));
        }
        if chunk_size == 0 {
            return Err(DecodeError::Invalid("large trailer chunk size 0".into()));
        }
        let tree = kind == BlockKind::TreeTrailer;
        if tree && (n == 0 || !super::tree::valid_chunk_size(chunk_size as u64)) {
            return Err(DecodeError::Invalid(format!(
                "tree trailer with {n} chunks of {chunk_size} bytes"
            )));
        }
        let mut chunks = Vec::with_capacity(n as usize);
        let mut cvs = Vec::with_capacity(if tree { n as usize } else { 0 });
        let mut total = 0u64;
        for i in 0..n as usize {
            let at = 48 + i * per;
            let c = ChunkRef {
                offset: le_u64(b, at),
                raw_len: le_u32(b, at + 8),
            };
            let last = i + 1 == n as usize;
            if (!last && c.raw_len != chunk_size) || (last && (c.raw_len == 0 || c.raw_len > chunk_size)) {
                return Err(DecodeError::Invalid(format!(
                    "large trailer chunk {i} has length {}",
                    c.raw_len
                )));
            }
            total += c.raw_len as u64;
            chunks.push(c);
            if tree {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(&b[at + CHUNK_REF_LEN..at + TREE_REF_LEN]);
                cvs.push(cv);
            }
        }
        if total != len {
            return Err(DecodeError::Invalid("large trailer chunk lengths do not add up".into()));
        }
        if tree {
            if let Some(root) = super::tree::root(&cvs) {
                if root.as_bytes() != &id {
                    return Err(DecodeError::Invalid(
                        "large trailer chunk tree does not hash to its id".into(),
                    ));
                }
            }
        }
        Ok(Self {
            id: ArtifactId::from_bytes(id),
            len,
            chunk_size,
            chunks,
            cvs: tree.then_some(cvs),
        })
    }
}

/// Encodes a tombstone block body.
pub fn encode_tombstones(items: &[(ArtifactId, u16)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(items.len() * TOMBSTONE_LEN);
    for (id, domain) in items {
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(&domain.to_le_bytes());
    }
    b
}

/// Decodes a tombstone block body.
pub fn decode_tombstones(raw: &[u8], count: u32) -> Result<Vec<(ArtifactId, u16)>, DecodeError> {
    if raw.len() as u64 != count as u64 * TOMBSTONE_LEN as u64 {
        return Err(DecodeError::Invalid(
            "tombstone block length does not match its count".into(),
        ));
    }
    Ok(raw
        .chunks_exact(TOMBSTONE_LEN)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&c[..32]);
            (ArtifactId::from_bytes(id), le_u16(c, 32))
        })
        .collect())
}

#[cfg(test)]
mod tests;
