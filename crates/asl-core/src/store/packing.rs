//! Packed blocks on their way to the open segment: which dictionary frames
//! them, when a segment trains one, and the index records they produce.
//!
//! Each segment trains its own dictionary from its first compressible packed
//! block, so a segment file is readable on its own (repair, copies, GC of one
//! segment never need another file). A block whose frames come out well
//! behind whole-block compression trains a replacement; a block that trains
//! nothing useful makes the writer wait `BACKOFF` blocks before trying again,
//! so incompressible or tiny data never pays for training on every block.

use std::sync::Arc;

use crate::block::format::PackedEntry;
use crate::block::frames::{self, Dictionary};
use crate::block::writer::{pack, write_packing, BlockImage, PackedLocation, Packing, SegmentDictionary};
use crate::error::{Error, Result};
use crate::index::entry::Entry;

use super::{Store, Writer};

/// Packed blocks written without trying to train after a failed training.
const BACKOFF: u32 = 64;

/// A new dictionary is kept when its frames are within this multiple of the
/// block compressed whole, or cost less than 1/32 of the raw bytes more
/// (very compressible data: a few bytes of frame header per artifact are a
/// large multiple of almost nothing).
const ACCEPT: f64 = 1.1;

impl Store {
    /// A writer reopening a segment that has a dictionary frames against it
    /// again instead of training another (each `aslctl ingest` is a new
    /// writer: without this, every run added a dictionary to the segment).
    /// Its ratio is learnt from the first block it frames. A dictionary that
    /// does not read is left alone: the next compressible block trains one.
    pub(crate) fn resume_dictionary(&self) {
        let (Some(writer), Some(level)) = (&self.writer, self.opts.compression) else {
            return;
        };
        let mut w = writer.lock();
        let Some((seg, offset)) = w.active.as_ref().and_then(|a| Some((a.id, a.last_dictionary?))) else {
            return;
        };
        let Some(segment) = self.state.read().segments.get(&seg).cloned() else {
            return;
        };
        if let Ok(bytes) = crate::block::scan::dictionary_bytes(&*segment, offset) {
            w.dict = Some(SegmentDictionary {
                seg,
                offset,
                dict: Arc::new(Dictionary::new(bytes, level)),
                ratio: f64::NAN,
            });
        }
    }
}

impl Writer {
    /// The dictionary framed blocks of the active segment use now.
    pub(crate) fn active_dictionary(&self) -> Option<SegmentDictionary> {
        let seg = self.active.as_ref()?.id;
        self.dict.clone().filter(|d| d.seg == seg)
    }

    /// Writes a packed block over `raw` to the open segment (started if need
    /// be) and returns the segment and where the block went. `prepared` is an
    /// image built earlier (on other cores); it is used when it was built
    /// against the dictionary still in force, else the block is packed again.
    pub(crate) fn write_packed_block(
        &mut self,
        s: &Store,
        raw: &[u8],
        entries: &[PackedEntry],
        prepared: Option<Packing<'_>>,
    ) -> Result<(u32, PackedLocation)> {
        self.ensure_active(s)?;
        let current = self.active_dictionary().map(|d| d.seg);
        let p = match prepared {
            // Raw by choice (compression off, or bytes known not to compress):
            // no dictionary has a say.
            Some(p) if p.frames.is_none() && !p.img.is_compressed() => p,
            Some(p) if p.dict_seg == current && !self.wants_dictionary(s, &p) => p,
            _ => self.pack_for_active(s, raw, entries)?,
        };
        // A resumed dictionary learns its ratio from the first block it frames.
        let ratio = p
            .frames
            .as_ref()
            .map(|_| p.img.stored_len() as f64 / raw.len().max(1) as f64);
        if let (Some(d), Some(r)) = (self.dict.as_mut(), ratio) {
            if d.ratio.is_nan() && p.dict_seg == Some(d.seg) {
                d.ratio = r;
            }
        }
        let a = self.active.as_mut().ok_or(Error::Poisoned)?;
        let seg = a.id;
        Ok((seg, write_packing(a, p)?))
    }

    /// Whether `p` asks for a (new) dictionary and the writer may train now.
    fn wants_dictionary(&self, s: &Store, p: &Packing<'_>) -> bool {
        if s.opts.compression.is_none() || self.dict_backoff > 0 {
            return false;
        }
        match self.active_dictionary() {
            None => p.img.is_compressed(),
            Some(_) => p.drifted,
        }
    }

    /// Packs a block for the open segment, training the segment a dictionary
    /// from the block's own artifacts when it has none that suits them. A
    /// dictionary kept is written ahead of the block that uses it.
    fn pack_for_active<'a>(&mut self, s: &Store, raw: &'a [u8], entries: &[PackedEntry]) -> Result<Packing<'a>> {
        let level = s.opts.compression;
        let p = pack(raw, entries, level, self.active_dictionary().as_ref());
        let (Some(level), true) = (level, self.wants_dictionary(s, &p)) else {
            self.dict_backoff = self.dict_backoff.saturating_sub(1);
            return Ok(p);
        };
        let samples: Vec<&[u8]> = entries
            .iter()
            .map(|e| &raw[e.offset as usize..(e.offset + e.len) as usize])
            .collect();
        let Some(bytes) = frames::train(&samples) else {
            self.dict_backoff = BACKOFF;
            return Ok(p);
        };
        let a = self.active.as_ref().ok_or(Error::Poisoned)?;
        let mut d = SegmentDictionary {
            seg: a.id,
            offset: a.len,
            dict: Arc::new(Dictionary::new(bytes, level)),
            // Judged against the whole block below, not a ratio of its own.
            ratio: f64::INFINITY,
        };
        let trial = pack(raw, entries, Some(level), Some(&d));
        let whole = if p.img.is_compressed() {
            p.img.stored_len()
        } else {
            raw.len()
        };
        let framed = trial.img.stored_len();
        let close = framed as f64 <= ACCEPT * whole as f64 || framed <= whole + raw.len() / 32;
        if trial.frames.is_none() || !close {
            self.dict_backoff = BACKOFF;
            return Ok(p);
        }
        let a = self.active.as_mut().ok_or(Error::Poisoned)?;
        let at = a.write(&BlockImage::dictionary(&d.dict.bytes))?;
        debug_assert_eq!(at, d.offset);
        d.ratio = trial.img.stored_len() as f64 / raw.len() as f64;
        self.dict = Some(d);
        Ok(trial)
    }
}

/// The index record of entry `i` (`pe`) of a packed block written to `seg`.
pub(crate) fn packed_entry(loc: &PackedLocation, seg: u32, i: usize, pe: &PackedEntry) -> Entry {
    match &loc.frames {
        Some(f) => Entry::framed(pe.id, seg, loc.offset, f[i].offset, pe.len as u64, f[i].compressed),
        None => Entry::packed(pe.id, seg, loc.offset, pe.offset, pe.len as u64, loc.compressed),
    }
}
