//! Large artifacts in content-defined chunks: one pass over the input that
//! hashes it for its id (the grid of chaining values), cuts it with FastCDC,
//! and writes only the chunks the store does not hold yet; a manifest block
//! closes the artifact (see `docs/chunking.md` and `block::manifest`).
//!
//! The input is read, hashed, cut and compressed outside the writer lock;
//! the lock is taken once per window, to decide chunk by chunk whether the
//! chunk is live already (then it is referenced and registered as a root for
//! the chunk sweep) or must be written.
//!
//! Memory does not grow with the artifact past its grid (32 bytes per MiB).
//! Every [`crate::block::manifest::PART_CHUNKS`] chunks the put hands its list over as a manifest
//! part (a chunk of its own), indexes the chunks written so far with it,
//! commits (outside atomic sections), and from then on holds only the part's
//! key, registered as a root whose chunks the sweep keeps. So a put holds two
//! windows of input (8 MiB each, one cut while the other is stored), one chunk
//! carried across windows (at most 256 KiB), the compressed new chunks of one
//! window, one part of the list (at most 4096 chunks, with their keys seen and
//! the records of those written) and the parts' keys. A put abandoned after it
//! handed over a part leaves indexed chunks no manifest names: the next sweep
//! drops them.

use std::collections::HashSet;
use std::io::Read;

use std::collections::HashMap;

use crate::block::cdc::{chunk_key, cuts, MAX_CHUNK};
use crate::block::manifest::{encode_part, Manifest, ManifestChunk, ManifestPart};
use crate::block::tree;
use crate::block::writer::{BlockImage, Squeeze};
use crate::error::{Error, IoContext, Result};
use crate::id::ArtifactId;
use crate::index::entry::{Entry, Placement, MAX_U40};

use super::large::Mark;
use super::put::Put;
use super::put::{with_buf, Buf};
use super::{Store, Writer};
use crate::io::read_full;

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
    /// The part of the chunk list not handed over yet (all of it while it
    /// fits in one part).
    chunks: Vec<ManifestChunk>,
    /// Keys in `chunks` (each written or referenced once).
    seen: HashSet<ArtifactId>,
    /// Keys in `chunks` that were live already, registered in the writer's
    /// roots until the part that lists them is.
    referenced: Vec<ArtifactId>,
    /// The parts handed over, each registered in the writer's part roots.
    parts: Vec<ManifestPart>,
    /// Records of the chunks written since the last part, indexed with the
    /// next part or the manifest.
    written: Vec<Entry>,
    /// Blocks and bytes written since the last part: what a rollback cuts.
    blocks: u64,
    written_bytes: u64,
    /// Whether chunks of this put are indexed already: if it is abandoned,
    /// the sweep has chunks to drop.
    indexed: bool,
}

/// Takes one reference to `key` away from one of the writer's root maps
/// (`count` finds the reference count in an entry).
fn unref<V>(map: &mut HashMap<ArtifactId, V>, key: &ArtifactId, count: impl Fn(&mut V) -> &mut u32) {
    if let Some(v) = map.get_mut(key) {
        let n = count(v);
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
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
            parts: Vec::new(),
            written: Vec::new(),
            blocks: 0,
            written_bytes: 0,
            indexed: false,
        };
        let mut mark = self.begin_stream()?;
        let body = self.stream_chunks(&mut mark, &mut grid, &mut run, reader, head, len_hint, label);
        let mut w = self.end_stream()?;
        let r = w.finish_chunked(self, &mut mark, &mut grid, &mut run, body, expect, label, placement);
        // The manifest (if any) is indexed now and holds its chunks itself.
        for k in &run.referenced {
            unref(&mut w.chunk_refs, k, |n| n);
        }
        for p in &run.parts {
            unref(&mut w.part_refs, &p.key, |(_, n)| n);
        }
        r
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

    /// Under the writer lock, in order: a chunk this part of the list has
    /// already is named again; a live chunk is referenced (and held as a
    /// sweep root until its part or the manifest is); anything else is
    /// written, from the prepared block or, when the chunk was live a moment
    /// ago and a sweep has since dropped it, from the bytes still in hand.
    /// A full part is handed over before the next chunk is listed.
    fn store_chunks(&self, mark: &mut Mark, run: &mut Run, prepared: Vec<Prepared<'_>>) -> Result<()> {
        if prepared.is_empty() {
            return Ok(());
        }
        let mut w = self.writer_state()?;
        for p in prepared {
            if run.chunks.len() == self.opts.part_chunks {
                w.cut_part(self, mark, run, true)?;
            }
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

impl Writer {
    /// Gives up a put: cuts off what it wrote since its last part (or counts
    /// it as garbage) and, if it had indexed chunks, leaves them to the sweep.
    fn abandon_chunked(&mut self, mark: &Mark, run: &Run) -> Result<()> {
        if run.indexed {
            self.sweep_due = true;
        }
        self.drop_written(mark, run.blocks, run.written_bytes)
    }

    /// Indexes the records of the chunks written since the last part, but
    /// not a chunk another put indexed meanwhile (that record stays; this
    /// copy is garbage).
    fn index_written(&mut self, s: &Store, run: &mut Run) -> Result<()> {
        let mut records = Vec::with_capacity(run.written.len());
        for e in run.written.drain(..) {
            if s.live_chunk(&e.id)?.is_some() {
                self.add_usage(e.segment, 0, e.len);
            } else {
                records.push(e);
            }
        }
        self.record_new(s, &records);
        Ok(())
    }

    /// Hands the list held so far over as a part: writes it as a chunk
    /// (unless the store has it), indexes it with the chunks written since the
    /// last part, registers it as a root in place of the keys it lists, and
    /// with `commit` (and no atomic section open) commits, so that the log
    /// and the index take the records out of memory. The rollback point moves
    /// past everything indexed.
    fn cut_part(&mut self, s: &Store, mark: &mut Mark, run: &mut Run, commit: bool) -> Result<()> {
        let list = std::mem::take(&mut run.chunks);
        let body = encode_part(&list);
        let key = chunk_key(&body);
        let part = ManifestPart {
            key,
            span: list.iter().map(|c| c.len as u64).sum(),
            count: list.len() as u32,
        };
        if !run.seen.contains(&key) && s.live_chunk(&key)?.is_none() {
            let img = BlockImage::cdc_chunk(&key, &body, false, run.level);
            let a = self
                .active
                .as_mut()
                .filter(|a| a.id == mark.seg)
                .ok_or(Error::Poisoned)?;
            let at = a.write(&img);
            mark.end = a.len;
            let at = at?;
            run.written
                .push(Entry::chunk(key, mark.seg, at, body.len() as u64, false));
            run.blocks += 1;
            run.written_bytes += body.len() as u64;
        }
        self.index_written(s, run)?;
        self.part_refs.entry(key).or_insert((part, 0)).1 += 1;
        run.parts.push(part);
        for k in run.referenced.drain(..) {
            unref(&mut self.chunk_refs, &k, |n| n);
        }
        run.seen.clear();
        run.indexed = true;
        if commit && self.atomic_owner.is_none() {
            self.commit(s)?;
        }
        let a = self
            .active
            .as_ref()
            .filter(|a| a.id == mark.seg)
            .ok_or(Error::Poisoned)?;
        mark.advance(a);
        run.blocks = 0;
        run.written_bytes = 0;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_chunked(
        &mut self,
        s: &Store,
        mark: &mut Mark,
        grid: &mut Grid,
        run: &mut Run,
        body: Result<u64>,
        expect: Option<ArtifactId>,
        label: &str,
        placement: Placement,
    ) -> Result<Put> {
        if self.poisoned {
            return Err(body.err().unwrap_or(Error::Poisoned));
        }
        let len = match body {
            Ok(v) => v,
            Err(e) => {
                self.abandon_chunked(mark, run)?;
                return Err(e);
            }
        };
        let Some(id) = grid.id() else {
            self.abandon_chunked(mark, run)?;
            return Err(Error::InvalidArgument(format!(
                "{label}: empty input is not a large artifact"
            )));
        };
        if expect.is_some_and(|x| x != id) {
            self.abandon_chunked(mark, run)?;
            return Err(Error::InputChanged(label.to_string()));
        }
        if let Some(put) = s.existing(&id)? {
            self.abandon_chunked(mark, run)?;
            return Ok(put);
        }
        if len > MAX_U40 {
            self.abandon_chunked(mark, run)?;
            return Err(Error::io(
                format!("store {label}"),
                std::io::Error::other("artifact larger than 1 TiB"),
            ));
        }
        self.guard(|w| {
            if !run.parts.is_empty() && !run.chunks.is_empty() {
                // The last part; the manifest's commit is the caller's.
                w.cut_part(s, mark, run, false)?;
            }
            let manifest = Manifest {
                id,
                len,
                grid: grid.size as u32,
                // Moved, not copied: for a 1 TiB artifact the grid is 32 MiB.
                cvs: std::mem::take(&mut grid.cvs),
                chunks: std::mem::take(&mut run.chunks),
                parts: run.parts.clone(),
            };
            let prev = s.state.read().newest(&id)?;
            w.release_revived(s, prev)?;
            w.index_written(s, run)?;
            let img = BlockImage::manifest(&manifest);
            let a = w.active.as_mut().filter(|a| a.id == mark.seg).ok_or(Error::Poisoned)?;
            let at = a.write(&img)?;
            w.record_new(s, &[Entry::manifest(id, mark.seg, at, len).placed(&placement)]);
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
}
