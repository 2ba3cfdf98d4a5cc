//! Segment files: a header, blocks appended one after another, and on sealing a
//! footer. The open segment is written with positioned writes (its writer is
//! `block::active`) and read through a map of what its writer has published
//! in the writer's own process, with `pread` elsewhere; a sealed segment is
//! immutable and read through a memory map.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::error::{BlockError as Error, Result};
use crate::block::format::{BlockHeader, BLOCK_HEADER_LEN, BLOCK_MAGIC};
use crate::block::scan::{BlockSource, Blocks, Contents, ContentsError, Located, Stop};
use crate::error::{DecodeError, IoContext};
use crate::fsutil::{check_framed, le_u32, le_u64, Framing};
use crate::io::{Backend, GrowingMap, Mapped, OpenMode, StoreFile};
use crate::version::{FormatVersion, SegmentVersion};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ASLSEG\0\0";
/// Magic at the start of a sealed segment's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"ASLSEND\0";
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Size of the sealed-segment footer.
pub const FOOTER_LEN: u64 = 48;

/// The segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version of the segment.
    pub version: SegmentVersion,
    /// Segment number, also its file name.
    pub id: u32,
    /// The store the segment belongs to.
    pub store_id: u64,
}

impl SegmentHeader {
    /// Encodes the header with its CRC.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.number().to_le_bytes());
        b[12..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.store_id.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        check_framed(
            b,
            &Framing {
                what: "segment header",
                magic: &SEGMENT_MAGIC,
                magic_name: "ASLSEG",
                crc_at: 28,
                version: Some(|n| SegmentVersion::from_number(n).map(drop)),
            },
        )?;
        Ok(Self {
            version: SegmentVersion::from_number(le_u32(b, 8))?,
            id: le_u32(b, 12),
            store_id: le_u64(b, 16),
        })
    }
}

/// The footer that closes a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFooter {
    /// Format version (the segment header's).
    pub version: SegmentVersion,
    /// Blocks in the segment.
    pub block_count: u64,
    /// Offset of the footer: header plus all blocks.
    pub data_len: u64,
    /// Sum of the raw (decompressed) body lengths.
    pub raw_total: u64,
    /// CRC-32C of every byte before the footer.
    pub data_crc: u32,
}

impl SegmentFooter {
    /// Encodes the footer with its CRC.
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..12].copy_from_slice(&self.version.number().to_le_bytes());
        b[16..24].copy_from_slice(&self.block_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.data_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.raw_total.to_le_bytes());
        b[40..44].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a footer.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        check_framed(
            b,
            &Framing {
                what: "segment footer",
                magic: &FOOTER_MAGIC,
                magic_name: "ASLSEND",
                crc_at: 44,
                version: Some(|n| SegmentVersion::from_number(n).map(drop)),
            },
        )?;
        Ok(Self {
            version: SegmentVersion::from_number(le_u32(b, 8))?,
            block_count: le_u64(b, 16),
            data_len: le_u64(b, 24),
            raw_total: le_u64(b, 32),
            data_crc: le_u32(b, 40),
        })
    }
}

/// File name of segment `id` inside the segments directory.
pub fn segment_file_name(id: u32) -> String {
    format!("{id:08}.seg")
}

/// Parses a segment file name back into its id.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 8 || !stem.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Read access to one segment, sealed (mapped) or open (read through the file).
pub(crate) struct Segment {
    pub(crate) id: u32,
    pub(crate) path: PathBuf,
    data: SegmentData,
}

enum SegmentData {
    Mapped(Mapped),
    /// Read with `pread`; for a sealed segment, the end of its block area.
    File(Box<dyn StoreFile>, Option<u64>),
    /// The open segment in its writer's process: what the writer published
    /// through the map, the rest with `pread`.
    Growing(Box<dyn StoreFile>, Arc<GrowingMap>),
}

impl Segment {
    /// Opens a sealed segment: maps it and checks header and footer.
    /// A backend that keeps sealed segments off local disk gives a file
    /// to read through instead of a map.
    pub(crate) fn open_sealed(io: &dyn Backend, path: &Path, id: u32, store_id: u64) -> Result<Self> {
        if let Some(file) = io
            .open_sealed(path)
            .ctx(|| format!("open segment {}", path.display()))?
        {
            return Self::sealed_from_file(file, path, id, store_id);
        }
        let map = io.map(path).ctx(|| format!("map segment {}", path.display()))?;
        let b = map.bytes();
        check_sealed(b, path, id, store_id, b.len() as u64)?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            data: SegmentData::Mapped(map),
        })
    }

    /// Gives the pages of a mapped segment back to the OS (see
    /// [`Mapped::release_pages`]); a no-op for one read through its file.
    pub(crate) fn release_pages(&self) {
        if let SegmentData::Mapped(m) = &self.data {
            m.release_pages();
        }
    }

    /// Read access to the open segment: through `view` where there is one
    /// (its writer's process, see `ActiveSegment::reader`), else through its
    /// file.
    pub(crate) fn open_active(io: &dyn Backend, path: &Path, id: u32, view: Option<Arc<GrowingMap>>) -> Result<Self> {
        let file = io
            .open(path, OpenMode::Read)
            .ctx(|| format!("open segment {}", path.display()))?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            data: match view {
                Some(v) => SegmentData::Growing(file, v),
                None => SegmentData::File(file, None),
            },
        })
    }

    /// Opens a sealed segment for reading with `pread` instead of a map, with
    /// the same checks of header and footer: a pass over a whole segment
    /// (GC's copy of a victim) then leaves its pages in the page cache
    /// instead of in the process's resident memory.
    pub(crate) fn open_sealed_unmapped(io: &dyn Backend, path: &Path, id: u32, store_id: u64) -> Result<Self> {
        let file = io
            .open(path, OpenMode::Read)
            .ctx(|| format!("open segment {}", path.display()))?;
        Self::sealed_from_file(file, path, id, store_id)
    }

    fn sealed_from_file(file: Box<dyn StoreFile>, path: &Path, id: u32, store_id: u64) -> Result<Self> {
        let len = file.len().ctx(|| format!("stat {}", path.display()))?;
        let mut ends = [0u8; (SEGMENT_HEADER_LEN + FOOTER_LEN) as usize];
        if len >= ends.len() as u64 {
            let (head, foot) = ends.split_at_mut(SEGMENT_HEADER_LEN as usize);
            file.read_exact_at(head, 0)
                .and_then(|_| file.read_exact_at(foot, len - FOOTER_LEN))
                .ctx(|| format!("read {}", path.display()))?;
        }
        let f = check_sealed(&ends, path, id, store_id, len)?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            data: SegmentData::File(file, Some(f.data_len)),
        })
    }

    /// End of the block area of a sealed segment (where its footer starts).
    pub(crate) fn sealed_data_len(&self) -> Option<u64> {
        match &self.data {
            SegmentData::Mapped(m) => Some(m.bytes().len() as u64 - FOOTER_LEN),
            SegmentData::File(_, end) => *end,
            SegmentData::Growing(..) => None,
        }
    }

    /// The segment's bytes through the handle it was opened with (so a file
    /// unlinked since, by GC in another process, still reads): a sealed
    /// segment's whole map, or the open segment's first `limit` bytes (at
    /// most its current length).
    pub(crate) fn image(&self, limit: u64) -> Result<Cow<'_, [u8]>> {
        match &self.data {
            SegmentData::Mapped(m) => Ok(Cow::Borrowed(m.bytes())),
            SegmentData::File(f, _) | SegmentData::Growing(f, _) => {
                let len = f.len().ctx(|| format!("stat {}", self.path.display()))?.min(limit);
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, 0)
                    .ctx(|| format!("read {}", self.path.display()))?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Whether the segment is sealed (mapped, or read through a file whose
    /// footer was checked at open).
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed_data_len().is_some()
    }

    /// Reads `len` bytes at `offset`; a short read is reported as corruption,
    /// since the index only points at bytes that were made durable.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        match &self.data {
            SegmentData::Mapped(m) => {
                let b = m.bytes();
                let end = offset.checked_add(len as u64).filter(|e| *e <= b.len() as u64);
                match end {
                    Some(end) => Ok(Cow::Borrowed(&b[offset as usize..end as usize])),
                    None => Err(Error::corrupt(
                        &self.path,
                        format!("read of {len} bytes at {offset} is past the end ({})", b.len()),
                    )),
                }
            }
            SegmentData::File(f, _) | SegmentData::Growing(f, _) => {
                if let Some(b) = self.published(offset, len) {
                    return Ok(Cow::Borrowed(b));
                }
                let mut buf = vec![0u8; len];
                self.pread(&**f, offset, &mut buf)?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Reads `out.len()` bytes at `offset` into `out`: from the map, or
    /// straight from the file with no buffer in between (a large read's
    /// bytes are then copied once, by the kernel). Errors as [`read`](Self::read).
    pub(crate) fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        match &self.data {
            SegmentData::File(f, _) | SegmentData::Growing(f, _) if self.published(offset, out.len()).is_none() => {
                self.pread(&**f, offset, out)
            }
            _ => {
                out.copy_from_slice(&self.read(offset, out.len())?);
                Ok(())
            }
        }
    }

    fn pread(&self, f: &dyn StoreFile, offset: u64, out: &mut [u8]) -> Result<()> {
        match f.read_exact_at(out, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::corrupt(
                &self.path,
                format!("read of {} bytes at {offset} is past the end", out.len()),
            )),
            Err(e) => Err(Error::io(format!("read {}", self.path.display()), e)),
        }
    }

    /// The open segment's bytes at `offset` when its writer has published
    /// them through a map in this process.
    fn published(&self, offset: u64, len: usize) -> Option<&[u8]> {
        match &self.data {
            SegmentData::Growing(_, v) => v.get(offset, len),
            _ => None,
        }
    }

    /// Reads and checks the block header at `offset`.
    pub(crate) fn block_header(&self, offset: u64) -> Result<BlockHeader> {
        let b = self.read(offset, BLOCK_HEADER_LEN)?;
        BlockHeader::decode(&b).map_err(|e| Error::corrupt(&self.path, format!("block at {offset}: {e}")))
    }

    /// Reads, checks and decompresses the block at `offset`.
    pub(crate) fn read_block(&self, offset: u64) -> Result<(BlockHeader, Vec<u8>)> {
        let h = self.block_header(offset)?;
        let stored = self.read(offset + BLOCK_HEADER_LEN as u64, h.stored_len as usize)?;
        let raw = h
            .decode_body(&stored)
            .map_err(|e| Error::corrupt(&self.path, format!("block at {offset}: {e}")))?;
        Ok((h, raw))
    }
}

/// Checks a sealed segment of `len` bytes by its two ends: `b` begins with its
/// header and ends with its footer (the whole file, or the two back to back).
fn check_sealed(b: &[u8], path: &Path, id: u32, store_id: u64, len: u64) -> Result<SegmentFooter> {
    check_header(&b[..b.len().min(SEGMENT_HEADER_LEN as usize)], path, id, store_id)?;
    if len < SEGMENT_HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupt(path, "sealed segment shorter than header + footer"));
    }
    let f = SegmentFooter::decode(&b[b.len() - FOOTER_LEN as usize..]).map_err(|e| Error::corrupt(path, e))?;
    if f.data_len != len - FOOTER_LEN {
        return Err(Error::corrupt(path, "footer data length does not match file size"));
    }
    Ok(f)
}

pub(crate) fn check_header(b: &[u8], path: &Path, id: u32, store_id: u64) -> Result<SegmentVersion> {
    let h = SegmentHeader::decode(b).map_err(|e| Error::corrupt(path, e))?;
    if h.id != id {
        return Err(Error::corrupt(
            path,
            format!("header names segment {} instead of {id}", h.id),
        ));
    }
    if h.store_id != store_id {
        return Err(Error::corrupt(path, "segment belongs to another store"));
    }
    Ok(h.version)
}

pub(crate) use super::active::ActiveSegment;

/// One block found while scanning a segment.
pub(crate) struct ScannedBlock {
    pub(crate) offset: u64,
    pub(crate) header: BlockHeader,
    /// What the block holds (chunk bodies checked too), or why it could not
    /// be decoded.
    pub(crate) contents: Result<Contents, DecodeError>,
}

/// The outcome of reading a segment file block by block.
pub(crate) struct Scan {
    pub(crate) header: Result<SegmentHeader, DecodeError>,
    pub(crate) blocks: Vec<ScannedBlock>,
    /// End of the last readable block (the segment header's end when none).
    pub(crate) end: u64,
    /// Byte ranges no block header could be read in, in file order; the scan
    /// resumed at the next offset holding a valid header. A range reaching the
    /// end of the block area is a torn tail or damage there.
    pub(crate) damaged: Vec<(u64, u64)>,
    pub(crate) footer: Option<SegmentFooter>,
    /// Set when the footer's CRC over the data does not match.
    pub(crate) data_crc_mismatch: bool,
    pub(crate) file_len: u64,
}

/// Reads a whole segment image block by block (through the one scanner),
/// checking every checksum. Where a block header cannot be decoded, the scan
/// records the damaged range and resynchronises at the next offset that holds
/// a valid block header, so one bad block does not hide the rest.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let header = SegmentHeader::decode(bytes);
    let file_len = bytes.len() as u64;
    let mut footer = None;
    let mut data_len = file_len;
    if file_len >= SEGMENT_HEADER_LEN + FOOTER_LEN {
        if let Ok(f) = SegmentFooter::decode(&bytes[(file_len - FOOTER_LEN) as usize..]) {
            if f.data_len == file_len - FOOTER_LEN {
                footer = Some(f);
                data_len = f.data_len;
            }
        }
    }
    let (blocks, damaged, end) = if header.is_ok() {
        scan_blocks(bytes, SEGMENT_HEADER_LEN, data_len)
    } else {
        (Vec::new(), Vec::new(), SEGMENT_HEADER_LEN)
    };
    let data_crc_mismatch = footer.is_some_and(|f| crc32c::crc32c(&bytes[..f.data_len as usize]) != f.data_crc);
    Scan {
        header,
        blocks,
        end: end.min(file_len),
        damaged,
        footer,
        data_crc_mismatch,
        file_len,
    }
}

/// The blocks between `start` and `end` of a segment image, resynchronising
/// after damage; returns them, the damaged ranges and the end of the last
/// readable block.
pub(crate) fn scan_blocks(bytes: &[u8], start: u64, end: u64) -> (Vec<ScannedBlock>, Vec<(u64, u64)>, u64) {
    let mut blocks = Vec::new();
    let mut damaged = Vec::new();
    let mut last_end = start;
    let mut at = start;
    while at < end {
        let mut it = Blocks::new(bytes, at, end);
        for b in it.by_ref() {
            let Ok(b) = b else { break };
            let contents = Contents::read(bytes, &b, true).map_err(|e| match e {
                ContentsError::Decode(d) => d,
                ContentsError::Io(io) => DecodeError::Invalid(io.to_string()),
            });
            last_end = b.end();
            blocks.push(ScannedBlock {
                offset: b.offset,
                header: b.header,
                contents,
            });
        }
        let stop = it.position();
        if stop >= end {
            break;
        }
        let next = resync(bytes, stop + 1, end).unwrap_or(end);
        damaged.push((stop, next));
        at = next;
    }
    (blocks, damaged, last_end)
}

/// The first offset at or after `from` holding a block header that decodes
/// and whose block fits before `end`.
fn resync(bytes: &[u8], from: u64, end: u64) -> Option<u64> {
    let area = &bytes[..end as usize];
    let mut at = from as usize;
    while at + BLOCK_HEADER_LEN <= area.len() {
        let next = area[at..].windows(4).position(|w| w == BLOCK_MAGIC)? + at;
        if next + BLOCK_HEADER_LEN > area.len() {
            return None;
        }
        if let Ok(h) = BlockHeader::decode(&area[next..]) {
            if next as u64 + h.total_len() <= end {
                return Some(next as u64);
            }
        }
        at = next + 1;
    }
    None
}

/// A scan that stopped early, as a store error naming the segment file.
pub(crate) fn stop_error(path: &Path, stop: Stop) -> Error {
    match stop {
        Stop::Damaged { offset, reason } => Error::corrupt(path, format!("block at {offset}: {reason}")),
        Stop::Io(e) => Error::io(format!("read {}", path.display()), e),
    }
}

impl BlockSource for Segment {
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Option<Cow<'_, [u8]>>> {
        match &self.data {
            SegmentData::Mapped(m) => m.bytes().read_at(offset, len),
            SegmentData::File(f, _) | SegmentData::Growing(f, _) => match self.published(offset, len) {
                Some(b) => Ok(Some(Cow::Borrowed(b))),
                None => BlockSource::read_at(&**f, offset, len),
            },
        }
    }
}

impl BlockSource for dyn StoreFile {
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Option<Cow<'_, [u8]>>> {
        let mut buf = vec![0u8; len];
        match self.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(Some(Cow::Owned(buf))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Segment {
    /// The blocks of a sealed segment, through the scanner, as store errors.
    pub(crate) fn blocks(&self) -> Result<Vec<Located>> {
        let end = self
            .sealed_data_len()
            .ok_or_else(|| Error::corrupt(&self.path, "only a sealed segment can be walked whole"))?;
        let mut out = Vec::new();
        for b in Blocks::new(self, SEGMENT_HEADER_LEN, end) {
            match b {
                Ok(b) => out.push(b),
                Err(stop) => return Err(stop_error(&self.path, stop)),
            }
        }
        Ok(out)
    }

    /// What the block `b` of this segment holds, as a store error.
    pub(crate) fn contents(&self, b: &Located) -> Result<Contents> {
        Contents::read(self, b, false).map_err(|e| match e {
            ContentsError::Decode(d) => Error::corrupt(&self.path, format!("block at {}: {d}", b.offset)),
            ContentsError::Io(io) => Error::io(format!("read {}", self.path.display()), io),
        })
    }
}

#[cfg(test)]
mod tests;
