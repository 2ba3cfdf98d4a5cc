//! Large artifacts in content-defined chunks: one pass over the input that
//! hashes it for its id (the grid of chaining values), cuts it with FastCDC,
//! and writes only the chunks the store does not hold yet; a manifest block
//! closes the artifact (see `docs/chunking.md` and `block::manifest`).
//!
//! The input is read, hashed, cut and compressed outside the writer lock;
//! the lock is taken once per window, to decide chunk by chunk whether the
//! chunk is live already (then it is referenced and registered as a root for
//! the chunk sweep) or must be written. New chunks get their index records
//! with the manifest, in one batch, so an abandoned put leaves no record
//! pointing at bytes a rollback cuts off. Memory: two windows of input (8 MiB
//! each, one cut while the other is stored), one chunk carried across windows
//! (at most 256 KiB), the compressed new chunks of one window, and for every
//! chunk so far its manifest entry, the record of a chunk written and its key
//! in the set seen (about 8 MiB per GiB of artifact, measured).

use std::collections::HashSet;
use std::io::Read;

use crate::block::cdc::{chunk_key, cuts, MAX_CHUNK};
use crate::block::manifest::{Manifest, ManifestChunk};
use crate::block::tree;
use crate::block::writer::{BlockImage, Squeeze};
use crate::error::{Error, IoContext, Result};
use crate::id::ArtifactId;
use crate::index::entry::{Entry, Placement, MAX_U40};

use super::large::{read_full, with_buf, Buf, Mark};
use super::write::Put;
use super::{Store, Writer};

/// The grid of a chunked put: the chaining values its id comes from.
struct Grid {
    size: usize,
    cvs: Vec<[u8; 32]>,
    first_root: Option<[u8; 32]>,
}

/// What one chunked put has stored so far.
struct Run {
    level: Option<i32>,
    squeeze: Squeeze,
    chunks: Vec<ManifestChunk>,
    /// Keys this put wrote or referenced (each registered once).
    seen: HashSet<ArtifactId>,
    /// Keys of existing chunks registered in the writer's roots.
    referenced: Vec<ArtifactId>,
    /// Records of the chunks this put wrote, indexed with the manifest.
    written: Vec<Entry>,
    blocks: u64,
    written_bytes: u64,
}

/// A window as `fill` left it: its cuts, whether the input ended there, and
/// how many bytes of the buffer it fills.
struct Filled {
    pieces: Vec<(usize, usize)>,
    eof: bool,
    len: usize,
}

/// One cut chunk of a window, prepared outside the lock.
struct Prepared<'a> {
    key: ArtifactId,
    bytes: &'a [u8],
    /// The block, when the chunk looked new.
    image: Option<BlockImage<'a>>,
}

impl Grid {
    fn id(&self) -> Option<ArtifactId> {
        match tree::root(&self.cvs) {
            Some(r) => Some(ArtifactId::from_bytes(*r.as_bytes())),
            None => self.first_root.map(ArtifactId::from_bytes),
        }
    }

    /// Hashes the grid pieces of `window` (which starts on a piece boundary).
    fn hash_grid(&mut self, window: &[u8]) {
        let first = self.cvs.len() as u64;
        let pieces: Vec<&[u8]> = window.chunks(self.size).collect();
        let grid = self.size;
        let out: Vec<([u8; 32], Option<[u8; 32]>)> = crate::par::map(&pieces, 1, |i, p| {
            let idx = first + i as u64;
            if idx == 0 {
                let (cv, root) = tree::first_chunk(p);
                (cv, Some(*root.as_bytes()))
            } else {
                (tree::chunk_cv(p, idx, grid), None)
            }
        });
        for (cv, root) in out {
            self.cvs.push(cv);
            if root.is_some() {
                self.first_root = root;
            }
        }
    }
}

impl Store {
    /// Stores a large artifact from `reader` in content-defined chunks.
    /// `expect` is the id the caller hashed already (checked at the end).
    pub(super) fn put_chunked(
        &self,
        reader: &mut dyn Read,
        head: Vec<u8>,
        len_hint: Option<u64>,
        expect: Option<ArtifactId>,
        label: &str,
        placement: Placement,
    ) -> Result<Put> {
        if let Some(id) = expect {
            if let Some(put) = self.existing(&id)? {
                return Ok(put);
            }
        }
        let mut grid = Grid {
            size: self.opts.chunk_size,
            cvs: Vec::new(),
            first_root: None,
        };
        let mut run = Run {
            level: self.opts.compression,
            squeeze: Squeeze::every(256),
            chunks: Vec::new(),
            seen: HashSet::new(),
            referenced: Vec::new(),
            written: Vec::new(),
            blocks: 0,
            written_bytes: 0,
        };
        let mut mark = self.begin_stream()?;
        let body = self.stream_chunks(&mut mark, &mut grid, &mut run, reader, head, len_hint, label);
        let mut w = self.end_stream()?;
        let r = self.finish_chunked(&mut w, &mark, &mut grid, &mut run, body, expect, label, placement);
        // The manifest (if any) is indexed now and holds its chunks itself.
        for k in &run.referenced {
            if let Some(n) = w.chunk_refs.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    w.chunk_refs.remove(k);
                }
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_chunked(
        &self,
        w: &mut Writer,
        mark: &Mark,
        grid: &mut Grid,
        run: &mut Run,
        body: Result<u64>,
        expect: Option<ArtifactId>,
        label: &str,
        placement: Placement,
    ) -> Result<Put> {
        if w.poisoned {
            return Err(body.err().unwrap_or(Error::Poisoned));
        }
        let len = match body {
            Ok(v) => v,
            Err(e) => {
                self.drop_written(w, mark, run.blocks, run.written_bytes)?;
                return Err(e);
            }
        };
        let Some(id) = grid.id() else {
            self.drop_written(w, mark, run.blocks, run.written_bytes)?;
            return Err(Error::InvalidArgument(format!(
                "{label}: empty input is not a large artifact"
            )));
        };
        if expect.is_some_and(|x| x != id) {
            self.drop_written(w, mark, run.blocks, run.written_bytes)?;
            return Err(Error::InputChanged(label.to_string()));
        }
        if let Some(put) = self.existing(&id)? {
            self.drop_written(w, mark, run.blocks, run.written_bytes)?;
            return Ok(put);
        }
        if len > MAX_U40 {
            self.drop_written(w, mark, run.blocks, run.written_bytes)?;
            return Err(Error::io(
                format!("store {label}"),
                std::io::Error::other("artifact larger than 1 TiB"),
            ));
        }
        let manifest = Manifest {
            id,
            len,
            grid: grid.size as u32,
            // Moved, not copied: for a 10 GiB artifact these lists are
            // several MiB each.
            cvs: std::mem::take(&mut grid.cvs),
            chunks: std::mem::take(&mut run.chunks),
        };
        self.guard(w, |s, w| {
            let prev = s.state.read().newest(&id)?;
            s.release_revived(w, prev)?;
            let mut records = Vec::with_capacity(run.written.len() + 1);
            for e in &run.written {
                // Another put may have indexed the same chunk meanwhile: its
                // record stays, this copy is garbage.
                if s.live_chunk(&e.id)?.is_some() {
                    w.add_usage(e.segment, 0, e.len);
                } else {
                    records.push(*e);
                }
            }
            let img = BlockImage::manifest(&manifest);
            let a = w.active.as_mut().filter(|a| a.id == mark.seg).ok_or(Error::Poisoned)?;
            let at = a.write(&img)?;
            records.push(Entry::manifest(id, mark.seg, at, len).placed(&placement));
            s.record_new(w, &records);
            Ok(())
        })?;
        Ok(Put {
            id,
            len,
            new: true,
            placement,
            sha256: None,
        })
    }

    /// The live record of chunk `key`, if the store holds it.
    pub(super) fn live_chunk(&self, key: &ArtifactId) -> Result<Option<Entry>> {
        Ok(self.lookup_any(key)?.filter(|e| e.is_chunk() && !e.is_tombstone()))
    }

    /// Reads the input window by window, in a pipeline of two stages: this
    /// thread reads a window, hashes its grid pieces and cuts it (the last,
    /// unfinished chunk carried into the next window), while a helper names,
    /// compresses and stores the chunks of the window before it. The reader
    /// stays on this thread (it need not be `Send`); the cut, which runs on
    /// one core, overlaps the writes.
    #[allow(clippy::too_many_arguments)]
    fn stream_chunks(
        &self,
        mark: &mut Mark,
        grid: &mut Grid,
        run: &mut Run,
        reader: &mut dyn Read,
        head: Vec<u8>,
        len_hint: Option<u64>,
        label: &str,
    ) -> Result<u64> {
        let size = grid.size;
        let mut cap = (8usize << 20).max(size) / size * size;
        if let Some(h) = len_hint {
            cap = cap.min((h as usize + 1).div_ceil(size) * size);
        }
        with_buf(Buf::Stream, |a| {
            with_buf(Buf::Hash, |b| {
                let mut total = 0u64;
                let mut cur = self.fill(a, &[], Some(head), reader, grid, cap, &mut total, label)?;
                loop {
                    let Filled { pieces, eof, len } = cur;
                    let used: usize = pieces.iter().map(|p| p.1).sum();
                    let (stored, next) = std::thread::scope(|sc| {
                        let window = &a[..len];
                        let pieces = &pieces;
                        let (mark, run) = (&mut *mark, &mut *run);
                        let h = sc.spawn(move || {
                            let prepared = self.prepare_chunks(run, window, pieces)?;
                            self.store_chunks(mark, run, prepared)
                        });
                        let next =
                            (!eof).then(|| self.fill(b, &window[used..], None, reader, grid, cap, &mut total, label));
                        (h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), next)
                    });
                    stored?;
                    match next {
                        None => return Ok(total),
                        Some(n) => cur = n?,
                    }
                    std::mem::swap(a, b);
                }
            })
        })
    }

    /// Fills `buf` with the carried bytes `carry`, the head (if any) and up
    /// to `cap` bytes of input; hashes the new bytes' grid pieces; returns
    /// the cuts of what was filled, whether the input ended and how many
    /// bytes of `buf` were filled. The buffer keeps its length from window
    /// to window (it is zeroed when it grows, not each time: zeroing 8 MiB
    /// per window cost 5 % of a put's cycles).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        buf: &mut Vec<u8>,
        carry: &[u8],
        head: Option<Vec<u8>>,
        reader: &mut dyn Read,
        grid: &mut Grid,
        cap: usize,
        total: &mut u64,
        label: &str,
    ) -> Result<Filled> {
        let head = head.unwrap_or_default();
        let filled = carry.len() + head.len();
        // The head is shorter than a window, but a caller could hand over
        // more: the buffer then grows to take it whole.
        let need = (carry.len() + cap).max(filled);
        if buf.len() < need {
            // Room for the longest carry too, so the buffer grows once.
            buf.resize(need.max(cap + MAX_CHUNK), 0);
        }
        buf[..carry.len()].copy_from_slice(carry);
        buf[carry.len()..filled].copy_from_slice(&head);
        let n = read_full(reader, &mut buf[filled..need]).ctx(|| format!("read {label}"))?;
        let len = filled + n;
        let window = len - carry.len();
        let eof = window < cap;
        if window > 0 {
            grid.hash_grid(&buf[carry.len()..len]);
            *total += window as u64;
        }
        Ok(Filled {
            pieces: cuts(&buf[..len], eof),
            eof,
            len,
        })
    }

    /// Names every chunk and compresses the ones the store seems not to hold
    /// (on all cores; no lock is held, so rayon would do, but `crate::par`
    /// keeps one way of fanning out).
    fn prepare_chunks<'a>(
        &self,
        run: &mut Run,
        data: &'a [u8],
        pieces: &[(usize, usize)],
    ) -> Result<Vec<Prepared<'a>>> {
        let keys: Vec<ArtifactId> = crate::par::map(pieces, 4, |_, (o, l)| chunk_key(&data[*o..o + l]));
        let mut fresh = Vec::with_capacity(keys.len());
        for k in &keys {
            fresh.push(!run.seen.contains(k) && self.live_chunk(k)?.is_none());
        }
        let tries: Vec<bool> = fresh.iter().map(|f| *f && run.squeeze.should_try()).collect();
        let level = run.level;
        let images: Vec<Option<BlockImage<'a>>> = crate::par::map(pieces, 1, |i, (o, l)| {
            fresh[i].then(|| BlockImage::cdc_chunk(&keys[i], &data[*o..o + l], tries[i], level))
        });
        for (img, t) in images.iter().zip(&tries) {
            if let (Some(img), true) = (img, t) {
                run.squeeze.record(img.is_compressed());
            }
        }
        Ok(pieces
            .iter()
            .zip(keys)
            .zip(images)
            .map(|(((o, l), key), image)| Prepared {
                key,
                bytes: &data[*o..o + l],
                image,
            })
            .collect())
    }

    /// Under the writer lock, in order: a chunk this put has already is
    /// named again; a live chunk is referenced (and held as a sweep root
    /// until the manifest is indexed); anything else is written, from the
    /// prepared block or, when the chunk was live a moment ago and a sweep
    /// has since dropped it, from the bytes still in hand.
    fn store_chunks(&self, mark: &mut Mark, run: &mut Run, prepared: Vec<Prepared<'_>>) -> Result<()> {
        if prepared.is_empty() {
            return Ok(());
        }
        let mut w = self.writer()?;
        for p in prepared {
            run.chunks.push(ManifestChunk {
                key: p.key,
                len: p.bytes.len() as u32,
            });
            if run.seen.contains(&p.key) {
                continue;
            }
            run.seen.insert(p.key);
            if self.live_chunk(&p.key)?.is_some() {
                *w.chunk_refs.entry(p.key).or_default() += 1;
                run.referenced.push(p.key);
                continue;
            }
            let img = match p.image {
                Some(img) => img,
                None => BlockImage::cdc_chunk(&p.key, p.bytes, true, run.level),
            };
            let a = w.active.as_mut().filter(|a| a.id == mark.seg).ok_or(Error::Poisoned)?;
            let at = a.write(&img);
            mark.end = a.len;
            let at = at?;
            run.written.push(Entry::chunk(
                p.key,
                mark.seg,
                at,
                p.bytes.len() as u64,
                img.is_compressed(),
            ));
            run.blocks += 1;
            run.written_bytes += p.bytes.len() as u64;
        }
        Ok(())
    }
}
