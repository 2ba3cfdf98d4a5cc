//! The open segment: the one file a writer appends blocks to, until it is
//! sealed with a footer and never written again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::error::{BlockError as Error, Result};
use crate::block::format::{BlockHeader, BlockKind, BLOCK_HEADER_LEN};
use crate::block::scan::Blocks;
use crate::block::segment::{
    check_header, stop_error, Segment, SegmentFooter, SegmentHeader, FOOTER_LEN, SEGMENT_HEADER_LEN,
};
use crate::error::IoContext;
use crate::io::{Backend, GrowingMap, OpenMode, StoreFile};
use crate::version::{FormatVersion, SegmentVersion};

/// The one segment being appended to.
pub(crate) struct ActiveSegment {
    pub(crate) id: u32,
    pub(crate) path: PathBuf,
    file: Box<dyn StoreFile>,
    /// End of the last block written.
    pub(crate) len: u64,
    pub(crate) blocks: u64,
    pub(crate) raw_total: u64,
    /// The header's version; a version-1 segment gets no tree trailers and
    /// is sealed as soon as a writer opens the store.
    pub(crate) version: SegmentVersion,
    /// The offset of the last dictionary block found when the segment was
    /// reopened (a writer keeps framing against it).
    pub(crate) last_dictionary: Option<u64>,
    /// Writeback has been started for everything before this offset.
    written_back: u64,
    /// The map this process's readers read the segment through, which
    /// every append publishes to (see [`ActiveSegment::reader`]).
    view: Option<Arc<GrowingMap>>,
}

/// Bytes appended between two writeback hints: large puts then reach the
/// disk while they stream, and the commit's fsync waits for the last few
/// MiB instead of the whole artifact.
const WRITEBACK_STEP: u64 = 8 << 20;

impl ActiveSegment {
    /// Creates a new segment file holding just its header, fsynced.
    pub(crate) fn create(io: &dyn Backend, path: &Path, id: u32, store_id: u64) -> Result<Self> {
        let file = io
            .open(path, OpenMode::CreateNew)
            .ctx(|| format!("create segment {}", path.display()))?;
        let version = SegmentVersion::CURRENT;
        file.write_all_at(&SegmentHeader { version, id, store_id }.encode(), 0)
            .and_then(|_| file.sync_all())
            .ctx(|| format!("write segment header {}", path.display()))?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            file,
            len: SEGMENT_HEADER_LEN,
            blocks: 0,
            raw_total: 0,
            version,
            last_dictionary: None,
            written_back: SEGMENT_HEADER_LEN,
            view: None,
        })
    }

    /// Reopens the open segment after a restart, cutting anything past the last
    /// committed byte (a torn or unacknowledged tail) and recounting its blocks.
    pub(crate) fn reopen(io: &dyn Backend, path: &Path, id: u32, store_id: u64, committed_len: u64) -> Result<Self> {
        let file = io
            .open(path, OpenMode::ReadWrite)
            .ctx(|| format!("open segment {}", path.display()))?;
        let mut hdr = [0u8; 32];
        file.read_exact_at(&mut hdr, 0).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::corrupt(path, "segment shorter than its header"),
            _ => Error::io(format!("read {}", path.display()), e),
        })?;
        let version = check_header(&hdr, path, id, store_id)?;
        let actual = file.len().ctx(|| format!("stat {}", path.display()))?;
        if actual < committed_len {
            return Err(Error::corrupt(
                path,
                format!("segment is {actual} bytes but {committed_len} were committed"),
            ));
        }
        if actual > committed_len {
            file.set_len(committed_len)
                .and_then(|_| file.sync_all())
                .ctx(|| format!("truncate uncommitted tail of {}", path.display()))?;
        }
        let mut seg = Self {
            id,
            path: path.to_path_buf(),
            file,
            len: committed_len,
            blocks: 0,
            raw_total: 0,
            version,
            last_dictionary: None,
            written_back: committed_len,
            view: None,
        };
        for b in Blocks::new(&*seg.file, SEGMENT_HEADER_LEN, committed_len) {
            let b = b.map_err(|stop| stop_error(path, stop))?;
            seg.blocks += 1;
            seg.raw_total += b.header.raw_len as u64;
            if b.header.kind == BlockKind::Dictionary {
                seg.last_dictionary = Some(b.offset);
            }
        }
        Ok(seg)
    }

    /// Takes over a segment that repair is about to seal: cut to `len` (the
    /// caller has kept the bytes past it), with the block count and raw total
    /// its scan found. There is no walk here: the block area may hold damaged
    /// ranges that repair keeps in place rather than cut out.
    pub(crate) fn adopt(
        io: &dyn Backend,
        path: &Path,
        header: &SegmentHeader,
        len: u64,
        blocks: u64,
        raw_total: u64,
    ) -> Result<Self> {
        let file = io
            .open(path, OpenMode::ReadWrite)
            .ctx(|| format!("open segment {}", path.display()))?;
        if file.len().ctx(|| format!("stat {}", path.display()))? != len {
            file.set_len(len)
                .and_then(|_| file.sync_all())
                .ctx(|| format!("cut the torn tail of {}", path.display()))?;
        }
        Ok(Self {
            id: header.id,
            path: path.to_path_buf(),
            file,
            len,
            blocks,
            raw_total,
            version: header.version,
            last_dictionary: None,
            written_back: len,
            view: None,
        })
    }

    /// Read access to this segment for readers in the writer's process:
    /// through a map reserved `reserve` bytes long where the backend can
    /// map, which every append publishes its block to, else with `pread`.
    /// Readers in other processes keep `pread`: only this process knows
    /// which bytes are written and will not be cut off.
    pub(crate) fn reader(&mut self, io: &dyn Backend, reserve: u64) -> Result<Segment> {
        let view = io
            .map_growing(&self.path, reserve, self.len)
            .ctx(|| format!("map segment {}", self.path.display()))?
            .map(Arc::new);
        self.view = view.clone();
        Segment::open_active(io, &self.path, self.id, view)
    }

    /// Publishes what is written to this process's readers.
    fn publish(&self) {
        if let Some(v) = &self.view {
            v.publish(self.len);
        }
    }

    /// Appends one block; returns its offset. Not durable until `sync`.
    pub(crate) fn append(&mut self, header: &BlockHeader, body: &[u8]) -> Result<u64> {
        let at = self.len;
        // Two positioned writes rather than one copy of a body that may be MiBs.
        self.file
            .write_all_at(&header.encode(), at)
            .and_then(|_| self.file.write_all_at(body, at + BLOCK_HEADER_LEN as u64))
            .ctx(|| format!("write block to {}", self.path.display()))?;
        self.len += (BLOCK_HEADER_LEN + body.len()) as u64;
        self.blocks += 1;
        self.raw_total += header.raw_len as u64;
        self.publish();
        self.hint_writeback();
        Ok(at)
    }

    /// Starts writeback of what was appended since the last hint, once that
    /// is [`WRITEBACK_STEP`] or more. Only a hint: its failure is ignored
    /// (the commit's fsync reports any real one).
    fn hint_writeback(&mut self) {
        if self.len >= self.written_back + WRITEBACK_STEP {
            let _ = self
                .file
                .start_writeback(self.written_back, self.len - self.written_back);
            self.written_back = self.len;
        }
    }

    /// [`ActiveSegment::append`] of a body stored as `first` then `rest`.
    pub(crate) fn append_parts(&mut self, header: &BlockHeader, first: &[u8], rest: &[u8]) -> Result<u64> {
        let at = self.len;
        let body_at = at + BLOCK_HEADER_LEN as u64;
        self.file
            .write_all_at(&header.encode(), at)
            .and_then(|_| self.file.write_all_at(first, body_at))
            .and_then(|_| self.file.write_all_at(rest, body_at + first.len() as u64))
            .ctx(|| format!("write block to {}", self.path.display()))?;
        self.len += (BLOCK_HEADER_LEN + first.len() + rest.len()) as u64;
        self.blocks += 1;
        self.raw_total += header.raw_len as u64;
        self.publish();
        self.hint_writeback();
        Ok(at)
    }

    /// Cuts the segment back to `len`, dropping blocks written after it (used when
    /// a streamed artifact turns out to be a duplicate or its write fails).
    pub(crate) fn rollback(&mut self, len: u64, blocks: u64, raw_total: u64) -> Result<()> {
        // Withdrawn before the cut: no reader may be handed a slice of pages
        // that are about to leave the file.
        if let Some(v) = &self.view {
            v.publish(len.min(self.len));
        }
        self.file
            .set_len(len)
            .ctx(|| format!("truncate {}", self.path.display()))?;
        self.len = len;
        self.blocks = blocks;
        self.raw_total = raw_total;
        self.written_back = self.written_back.min(len);
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("fsync segment {}", self.path.display()))?;
        Ok(())
    }

    /// Writes the footer and fsyncs: the segment is never written again.
    pub(crate) fn seal(self) -> Result<(u32, u64)> {
        let mut crc = 0u32;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < self.len {
            let n = ((self.len - off) as usize).min(buf.len());
            self.file
                .read_exact_at(&mut buf[..n], off)
                .ctx(|| format!("read back {}", self.path.display()))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            off += n as u64;
        }
        let footer = SegmentFooter {
            version: self.version,
            block_count: self.blocks,
            data_len: self.len,
            raw_total: self.raw_total,
            data_crc: crc,
        };
        self.file
            .write_all_at(&footer.encode(), self.len)
            .and_then(|_| self.file.sync_all())
            .ctx(|| format!("seal {}", self.path.display()))?;
        Ok((self.id, self.len + FOOTER_LEN))
    }
}
