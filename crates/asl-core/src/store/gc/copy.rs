//! GC's copies: packing the small artifacts a batch keeps into new blocks,
//! streaming a large one chunk by chunk, and the record each copy leaves.

use std::sync::Arc;

use crate::block::format::PackedBuilder;
use crate::block::segment::Segment;
use crate::block::writer::{pack as pack_image, BlockImage, ChunkRun, Packing};
use crate::error::{Error, Result};
use crate::index::entry::{Entry, FLAG_COMPRESSED};

use super::super::put::{with_buf, Buf};
use super::super::{Store, Writer};
use crate::io::read_full;

impl Store {}

impl Writer {
    pub(super) fn flush_copies(&mut self, s: &Store, pack: &mut PackedBuilder, recs: &mut Vec<Entry>) -> Result<()> {
        if pack.is_empty() {
            return Ok(());
        }
        let (raw, entries) = pack.finish();
        // Bytes that all came from raw blocks did not compress when they were
        // written: trying again would cost a zstd pass over every block.
        let compress = recs.iter().any(|r| r.flags & FLAG_COMPRESSED != 0);
        let (seg, loc) = if compress {
            self.write_packed_block(s, &raw, &entries, None)?
        } else {
            self.write_packed_block(s, &raw, &entries, Some(pack_raw(&raw, &entries)))?
        };
        for (i, (pe, rec)) in entries.iter().zip(recs.drain(..)).enumerate() {
            let to = super::super::packing::packed_entry(&loc, seg, i, pe);
            self.moved(s, &rec, rec.relocated(to));
        }
        self.flush_tombstones(s)
    }

    /// Copies a large artifact under the writer lock (the source is the store
    /// itself, so no window waits on a slow reader).
    pub(super) fn copy_large(&mut self, s: &Store, rec: &Entry, victim: &Arc<Segment>) -> Result<()> {
        self.ensure_active(s)?;
        let mut reader = s.reader_for(rec, victim.clone())?;
        let mut run = ChunkRun::new(s.opts.chunk_size, s.opts.compression);
        let window = s.opts.chunk_size * 8;
        let mut len = 0u64;
        with_buf(Buf::Stream, |buf| -> Result<()> {
            buf.resize(window, 0);
            loop {
                let n = read_full(&mut reader, buf).map_err(super::super::read::unwrap_io)?;
                if n == 0 {
                    return Ok(());
                }
                let data = &buf[..n];
                len += n as u64;
                let images = run.prepare(data);
                let a = self.active.as_mut().ok_or(Error::Poisoned)?;
                run.write(a, &images)?;
                if n < window {
                    return Ok(());
                }
            }
        })?;
        // The copy's own chunk tree gives its id (no second hash of the bytes).
        let id = rec.id;
        if len != rec.len || run.id() != Some(id) {
            return Err(Error::CorruptArtifact {
                id: rec.id,
                file: s.layout.segment(rec.segment),
                detail: "copy during GC does not match the artifact's id".into(),
            });
        }
        let img = BlockImage::trailer(&run.trailer(id, len));
        let a = self.active.as_mut().ok_or(Error::Poisoned)?;
        let at = a.write(&img)?;
        let to = Entry::large(id, a.id, at, len);
        self.moved(s, rec, rec.relocated(to));
        self.flush_tombstones(s)
    }

    /// Records a copy: the new record shadows the old, usage moves with it, and
    /// a retained-but-removed artifact gets a tombstone block after its copy so
    /// that `repair` replays it as removed.
    pub(in crate::store) fn moved(&mut self, s: &Store, old: &Entry, new: Entry) {
        self.record_unwatched(s, &[new]);
        self.add_usage(old.segment, -(old.usage() as i64), 0);
        if new.is_tombstone() {
            self.tombstones.push((new.id, new.domain.0));
        }
    }
}

/// A raw packed block: GC's copy of bytes that did not compress before.
fn pack_raw<'a>(raw: &'a [u8], entries: &[crate::block::format::PackedEntry]) -> Packing<'a> {
    pack_image(raw, entries, None, None)
}
