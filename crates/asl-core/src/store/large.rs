//! Large artifacts: chunk blocks of their own, then a trailer block naming
//! them.
//!
//! The input is read and hashed outside the writer lock; the lock is taken per
//! window of eight chunks, only to append them. A slow source (a network
//! stream, a pipe) therefore never holds up small puts and lookups for longer
//! than one window takes to write, and several large puts can stream at once.
//! While any stream is in flight the open segment is not rotated or sealed:
//! a trailer's chunk references point into its own segment.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::block::writer::{BlockImage, ChunkRun};
use crate::error::{Error, IoContext, Result};
use crate::id::ArtifactId;
use crate::index::entry::{Entry, Placement, MAX_U40};
use crate::io::read_full;

use super::options::PutOptions;
use super::put::{with_buf, Buf, Put, Sha256Tee, Source};
use super::{Store, Writer};

/// Where a stream started in the open segment, and where its last chunk ended.
pub(super) struct Mark {
    pub(super) seg: u32,
    len: u64,
    blocks: u64,
    raw_total: u64,
    pub(super) end: u64,
}

impl Mark {
    /// Moves the point a rollback returns to up to the open segment's end:
    /// what lies before it is indexed (or committed) and must stay.
    pub(super) fn advance(&mut self, a: &crate::block::active::ActiveSegment) {
        self.len = a.len;
        self.blocks = a.blocks;
        self.raw_total = a.raw_total;
        self.end = a.len;
    }
}

impl Store {
    /// Stores everything `reader` yields, streaming: memory stays bounded by a
    /// few chunks whatever the size. Large inputs are written as they are hashed;
    /// if they turn out to be stored already, the written chunks are cut off again.
    pub fn put_reader(&self, reader: impl Read) -> Result<ArtifactId> {
        self.put_reader_with(reader, &PutOptions::default()).map(|p| p.id)
    }

    /// [`Store::put_reader`](crate::Store::put_reader) with options; says whether anything was written.
    pub fn put_reader_with(&self, mut reader: impl Read, opts: &PutOptions) -> Result<Put> {
        let mut head = Vec::new();
        (&mut reader)
            .take(self.opts.small_threshold as u64 + 1)
            .read_to_end(&mut head)
            .ctx(|| "read input".to_string())?;
        if head.len() <= self.opts.small_threshold {
            if let Some(e) = opts.expect.filter(|e| *e != ArtifactId::of(&head)) {
                return Err(Error::IdMismatch(e));
            }
            return self.put_with(&head, opts);
        }
        // A large put checks the id its chunks give at the end and cuts off
        // what it wrote when it is not the one expected.
        let mismatch = |e: Error| match (e, opts.expect) {
            (Error::InputChanged(_), Some(x)) => Error::IdMismatch(x),
            (e, _) => e,
        };
        if opts.sha256 {
            use sha2::Digest;
            let mut sha = sha2::Sha256::new();
            sha.update(&head);
            let mut tee = Sha256Tee { inner: reader, sha };
            let src = Source::Reader {
                reader: &mut tee,
                head,
                len_hint: opts.size_hint,
            };
            let mut put = self
                .put_large(src, opts.expect, "input", opts.placement)
                .map_err(mismatch)?;
            put.sha256 = Some(tee.sha.finalize().into());
            return Ok(put);
        }
        let src = Source::Reader {
            reader: &mut reader,
            head,
            len_hint: opts.size_hint,
        };
        self.put_large(src, opts.expect, "input", opts.placement)
            .map_err(mismatch)
    }

    /// Stores the file at `path`. A file of 16 chunks or more (16 MiB by
    /// default) whose length no stored large artifact has is new for certain (barring a concurrent put of the same
    /// bytes), so it is read, hashed and written in one pass. When some stored
    /// artifact has its length, the file is hashed first (on all cores), so a
    /// duplicate costs one read and no writes; a new one is then written in a
    /// second pass, its chunk tree checked against the first pass's id to
    /// catch a file that changed in between ([`Error::InputChanged`]).
    pub fn put_file(&self, path: impl AsRef<Path>) -> Result<ArtifactId> {
        self.put_file_with(path, &PutOptions::default()).map(|p| p.id)
    }

    /// [`Store::put_file`](crate::Store::put_file) with options; a [`Put`]
    /// says what was written.
    pub fn put_file_with(&self, path: impl AsRef<Path>, opts: &PutOptions) -> Result<Put> {
        self.put_file_with_progress(path, opts, &mut |_| {})
    }

    /// [`Store::put_file_with`](crate::Store::put_file_with), calling
    /// `progress(done)` as it goes, with `done` rising to the file's length.
    /// When the file is hashed before it is written, hashing counts for the
    /// first half and writing for the second; a file already stored jumps to
    /// its length once hashed.
    pub fn put_file_with_progress(
        &self,
        path: impl AsRef<Path>,
        opts: &PutOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Put> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let mut f = File::open(path).ctx(|| format!("open {label}"))?;
        let len = f.metadata().ctx(|| format!("stat {label}"))?.len();
        if len <= self.opts.small_threshold as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).ctx(|| format!("read {label}"))?;
            let put = self.put_with(&buf, opts)?;
            progress(len);
            return Ok(put);
        }
        // The probe's first use scans the index (about 40 ms for a million
        // artifacts); for a file under 16 chunks a second hashing pass costs
        // less than that, so such files stay hash-first.
        if len >= 16 * self.opts.chunk_size as u64 && !self.may_hold_length(len)? {
            let counted = Counted {
                inner: f,
                done: 0,
                report: &mut |n| progress(n.min(len)),
            };
            use sha2::Digest;
            let mut tee = Sha256Tee {
                inner: counted,
                sha: sha2::Sha256::new(),
            };
            let reader: &mut dyn Read = if opts.sha256 { &mut tee } else { &mut tee.inner };
            let src = Source::Reader {
                reader,
                head: Vec::new(),
                len_hint: Some(len),
            };
            let mut put = self.put_large(src, None, &label, opts.placement)?;
            if opts.sha256 {
                put.sha256 = Some(tee.sha.finalize().into());
            }
            progress(len);
            return Ok(put);
        }
        let (id, sha256) = with_buf(Buf::Hash, |buf| {
            let mut half = |n: u64| progress(n.min(len) / 2);
            if opts.sha256 {
                super::filehash::hash_file_sha256(&f, len, &label, buf, &mut half).map(|(id, sha)| (id, Some(sha)))
            } else {
                super::filehash::hash_file(&f, len, self.opts.chunk_size, &label, buf, &mut half).map(|id| (id, None))
            }
        })?;
        if let Some(mut put) = self.existing(&id)? {
            put.sha256 = sha256;
            progress(len);
            return Ok(put);
        }
        let f = File::open(path).ctx(|| format!("open {label}"))?;
        let mut counted = Counted {
            inner: f,
            done: 0,
            report: &mut |n| progress(len / 2 + n.min(len) / 2),
        };
        let src = Source::Reader {
            reader: &mut counted,
            head: Vec::new(),
            len_hint: Some(len),
        };
        let mut put = self.put_large(src, Some(id), &label, opts.placement)?;
        put.sha256 = sha256;
        progress(len);
        Ok(put)
    }

    /// Whether some large artifact stored (or stored once: removals do not
    /// take lengths out) is `len` bytes long. The set is built from the index
    /// on first use and kept up to date by every new record after that; a
    /// length it holds wrongly only costs the caller a hashing pass.
    pub(super) fn may_hold_length(&self, len: u64) -> Result<bool> {
        let mut lengths = self.large_lengths.lock();
        if lengths.is_none() {
            // Taken under the set's lock: a record added meanwhile is either
            // in the memtable this reads or noted after the set is in place.
            let mut set = HashSet::new();
            for e in self.live_entries()? {
                let e = e?;
                if e.is_large() {
                    set.insert(e.len);
                }
            }
            *lengths = Some(set);
        }
        Ok(lengths.as_ref().is_some_and(|s| s.contains(&len)))
    }

    /// Keeps the set of large lengths (once built) up to date.
    pub(super) fn note_lengths(&self, records: &[Entry]) {
        if let Some(set) = self.large_lengths.lock().as_mut() {
            set.extend(records.iter().filter(|e| e.is_large()).map(|e| e.len));
        }
    }

    /// [`Store::existing`](crate::Store::existing) of many ids, each with a tag: sorts them and
    /// calls `found(tag, put)` for each one live or buffered. In id order
    /// the index pages are met front to back, each once, and each search
    /// starts where the one before it ended. (The order is the ids' byte
    /// order; comparing their first 8 bytes as an integer first spares
    /// nearly every comparison its `memcmp`.)
    pub(super) fn existing_sorted(&self, ids: &mut [(ArtifactId, u32)], mut found: impl FnMut(u32, Put)) -> Result<()> {
        ids.sort_unstable_by(|a, b| a.0.order_key().cmp(&b.0.order_key()).then_with(|| a.0.cmp(&b.0)));
        // Each lock taken once for all of them.
        let (pending, st) = (self.pending.read(), self.state.read());
        let mut from = vec![0; st.indexes.len()];
        for (id, tag) in ids.iter() {
            if let Some(put) = existing_in(&pending, &st, id, &mut from)? {
                found(*tag, put);
            }
        }
        Ok(())
    }

    /// The outcome of a put of `id` that is live already (or buffered).
    pub(super) fn existing(&self, id: &ArtifactId) -> Result<Option<Put>> {
        // The buffer before the index, as `find` takes them.
        existing_in(&self.pending.read(), &self.state.read(), id, &mut [])
    }

    pub(super) fn put_large(
        &self,
        src: Source<'_>,
        expect: Option<ArtifactId>,
        label: &str,
        placement: Placement,
    ) -> Result<Put> {
        // Bytes the caller hashed itself skip the write when stored. An
        // expected id that comes with a reader is only a claim, checked at
        // the end: a put never answers for bytes it was not sent (over HTTP
        // that would tell a caller what exists without its bytes).
        if let Source::Slice { id, .. } = &src {
            if let Some(put) = self.existing(id)? {
                return Ok(put);
            }
        }
        if self.opts.cdc {
            return match src {
                Source::Reader { reader, head, len_hint } => {
                    self.put_chunked(reader, head, len_hint, expect, label, placement)
                }
                Source::Slice { mut bytes, id } => {
                    let n = bytes.len() as u64;
                    self.put_chunked(&mut bytes, Vec::new(), Some(n), Some(id), label, placement)
                }
            };
        }
        let mut run = ChunkRun::new(self.opts.chunk_size, self.opts.compression);
        let mut mark = self.begin_stream()?;
        let body = match src {
            Source::Reader { reader, head, len_hint } => {
                self.stream_windows(&mut mark, &mut run, reader, head, len_hint, label)
            }
            Source::Slice { bytes, id } => {
                let mut r = Ok((id, bytes.len() as u64));
                for window in bytes.chunks(self.opts.chunk_size * 8) {
                    let images = run.prepare(window);
                    if let Err(e) = self.append_window(&mut mark, &mut run, &images) {
                        r = Err(e);
                        break;
                    }
                }
                r
            }
        };
        let mut w = self.end_stream()?;
        if w.poisoned {
            return Err(body.err().unwrap_or(Error::Poisoned));
        }
        let (id, len) = match body {
            Ok(v) => v,
            Err(e) => {
                w.drop_chunks(&mark, &run)?;
                return Err(e);
            }
        };
        // The id the chunks' own tree gives must be the id the caller hashed
        // (a changed file, or an in-memory slice hashed before it was written).
        if expect.is_some_and(|x| x != id) || run.id().is_some_and(|r| r != id) {
            w.drop_chunks(&mark, &run)?;
            return Err(Error::InputChanged(label.to_string()));
        }
        if let Some(put) = self.existing(&id)? {
            w.drop_chunks(&mark, &run)?;
            return Ok(put);
        }
        if len > MAX_U40 {
            w.drop_chunks(&mark, &run)?;
            return Err(Error::io(
                format!("store {label}"),
                std::io::Error::other("artifact larger than 1 TiB"),
            ));
        }
        w.guard(|w| {
            let prev = self.state.read().newest(&id)?;
            w.release_revived(self, prev)?;
            let img = BlockImage::trailer(&run.trailer(id, len));
            let a = w.active.as_mut().filter(|a| a.id == mark.seg).ok_or(Error::Poisoned)?;
            let at = a.write(&img)?;
            w.record_new(self, &[Entry::large(id, mark.seg, at, len).placed(&placement)]);
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

    /// Registers a stream: buffered removals go to the segment before its
    /// chunks (repair replays blocks in order, and this may re-put a removed
    /// id); the packed buffer need not, so it keeps filling.
    pub(super) fn begin_stream(&self) -> Result<Mark> {
        let mut w = self.writer_state()?;
        w.guard(|w| {
            w.flush_tombstones(self)?;
            w.ensure_active(self)
        })?;
        let a = w.active.as_ref().ok_or(Error::Poisoned)?;
        let mark = Mark {
            seg: a.id,
            len: a.len,
            blocks: a.blocks,
            raw_total: a.raw_total,
            end: a.len,
        };
        w.streams += 1;
        Ok(mark)
    }

    /// Unregisters a stream (a seal waiting for streams to end may go on);
    /// returns the writer, locked, for the stream's closing work.
    pub(super) fn end_stream(&self) -> Result<parking_lot::MutexGuard<'_, Writer>> {
        let Some(writer) = &self.writer else {
            return Err(Error::ReadOnly);
        };
        let mut w = writer.lock();
        w.streams -= 1;
        if w.streams == 0 {
            self.streams_done.notify_all();
        }
        Ok(w)
    }

    /// Appends one window of prepared chunk blocks under the writer lock. A
    /// failed write does not poison the writer: the segment's length only
    /// moves past blocks written whole, and `drop_chunks` cuts the rest.
    fn append_window(&self, mark: &mut Mark, run: &mut ChunkRun, images: &[BlockImage<'_>]) -> Result<()> {
        let mut w = self.writer_state()?;
        let a = w.active.as_mut().filter(|a| a.id == mark.seg).ok_or(Error::Poisoned)?;
        let r = run.write(a, images);
        mark.end = a.len;
        Ok(r?)
    }

    /// Reads the input window by window, hashing each on one core while its
    /// chunks are compressed and appended on the others.
    fn stream_windows(
        &self,
        mark: &mut Mark,
        run: &mut ChunkRun,
        reader: &mut dyn Read,
        head: Vec<u8>,
        len_hint: Option<u64>,
        label: &str,
    ) -> Result<(ArtifactId, u64)> {
        let chunk = self.opts.chunk_size;
        let mut cap = (chunk * 8).max(8 << 20) / chunk * chunk;
        if let Some(h) = len_hint {
            // Room for the whole input plus one byte (so a short read ends the
            // loop), in whole chunks: no zeroing of 8 MiB for a 200 KiB file.
            cap = cap.min((h as usize + 1).div_ceil(chunk) * chunk);
        }
        with_buf(Buf::Stream, |buf| {
            // Kept between artifacts: allocating (and faulting in) 8 MiB per
            // large artifact dominated ingest of trees with many files just
            // over the small threshold.
            buf.clear();
            buf.extend_from_slice(&head);
            buf.reserve(cap.saturating_sub(buf.len()));
            let mut total = 0u64;
            loop {
                let filled = buf.len();
                buf.resize(cap.max(filled), 0);
                let n = read_full(reader, &mut buf[filled..]).ctx(|| format!("read {label}"))?;
                buf.truncate(filled + n);
                if buf.is_empty() {
                    break;
                }
                // The chunks' chaining values, computed while they are built,
                // give the id too: one pass of hashing over the input.
                let images = run.prepare(&buf[..]);
                self.append_window(mark, run, &images)?;
                total += buf.len() as u64;
                if buf.len() < cap {
                    break;
                }
                buf.clear();
            }
            // An empty input writes no chunk; its id is BLAKE3 of nothing.
            Ok((run.id().unwrap_or_else(|| ArtifactId::of(b"")), total))
        })
    }
}

impl Writer {
    /// Takes back the chunks of a stream that will get no trailer (a
    /// duplicate, a failed read, a changed file). When nothing was appended
    /// after them and no commit covers them, the segment is cut back;
    /// otherwise they stay as garbage, counted so that GC reclaims them.
    fn drop_chunks(&mut self, mark: &Mark, run: &ChunkRun) -> Result<()> {
        self.drop_written(mark, run.blocks, run.written)
    }

    /// `drop_chunks` for a stream that appended `blocks` blocks
    /// holding `written` logical bytes.
    pub(super) fn drop_written(&mut self, mark: &Mark, blocks: u64, written: u64) -> Result<()> {
        if blocks == 0 {
            return Ok(());
        }
        let committed = self.seg_states.get(&mark.seg).map(|st| st.len).unwrap_or(u64::MAX);
        match self.active.as_mut() {
            Some(a)
                if a.id == mark.seg
                    && a.len == mark.end
                    && a.blocks == mark.blocks + blocks
                    && mark.len >= committed =>
            {
                if let Err(e) = a.rollback(mark.len, mark.blocks, mark.raw_total) {
                    self.poisoned = true;
                    return Err(e.into());
                }
            }
            _ => self.add_usage(mark.seg, 0, written),
        }
        Ok(())
    }
}

/// A reader that reports how many bytes have passed through it.
struct Counted<'a, R> {
    inner: R,
    done: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}

/// What a put of `id` would find already stored: in the write buffer, or a
/// live artifact in the index (a chunk's key is not an artifact).
/// `from`: positions for ids asked in ascending order (see
/// [`super::State::newest_from`]), or empty.
fn existing_in(
    pending: &super::pending::Pending,
    st: &super::State,
    id: &ArtifactId,
    from: &mut [u64],
) -> Result<Option<Put>> {
    if let Some(placement) = pending.placement(id) {
        let len = pending.get(id).map(|b| b.len() as u64).unwrap_or(0);
        return Ok(Some(Put {
            id: *id,
            len,
            new: false,
            placement,
            sha256: None,
        }));
    }
    Ok(st
        .newest_from(id, from)?
        .filter(|e| !e.is_chunk() && !e.is_tombstone())
        .map(|e| Put {
            id: *id,
            len: e.len,
            new: false,
            placement: e.placement(),
            sha256: None,
        }))
}
