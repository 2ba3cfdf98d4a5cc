//! Large artifacts: streamed into chunk blocks of their own, hashed while they
//! are written (or hashed first when the caller has the bytes in memory or the
//! input is a file), then named by a trailer block.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::block::format::{header_for, maybe_compress, BlockKind, ChunkRef, Compression, LargeTrailer};
use crate::block::segment::ActiveSegment;
use crate::error::{Error, IoContext, Result};
use crate::id::ArtifactId;
use crate::index::entry::{DomainId, Entry, Visibility, FLAG_LARGE, MAX_U40, NO_SOURCE};
use crate::snapshot::log::Record;

use super::write::Put;
use super::{Store, Writer};

impl Store {
    /// Stores everything `reader` yields, streaming: memory stays bounded by a
    /// few chunks whatever the size. Large inputs are written as they are hashed;
    /// if they turn out to be stored already, the written chunks are cut off again.
    pub fn put_reader(&self, mut reader: impl Read) -> Result<ArtifactId> {
        let mut head = Vec::new();
        (&mut reader)
            .take(self.opts.small_threshold as u64 + 1)
            .read_to_end(&mut head)
            .ctx(|| "read input".to_string())?;
        if head.len() <= self.opts.small_threshold {
            return self.put(&head);
        }
        let src = Source::Reader {
            reader: &mut reader,
            head,
            len_hint: None,
        };
        self.put_large(src, None, "input").map(|p| p.id)
    }

    /// Stores the file at `path`. Large files are hashed first (on all cores), so
    /// a file already stored costs one read and no writes; a new file is then
    /// written in a second pass, re-hashed on the side to catch a file that
    /// changed in between ([`Error::InputChanged`]).
    pub fn put_file(&self, path: &Path) -> Result<Put> {
        self.put_file_with_progress(path, &mut |_| {})
    }

    /// [`Store::put_file`], calling `progress(done)` as it goes, with `done`
    /// rising to the file's length: hashing counts for the first half of a new
    /// file and writing for the second; a file already stored jumps to its
    /// length once hashed.
    pub fn put_file_with_progress(&self, path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Put> {
        let label = path.display().to_string();
        let mut f = File::open(path).ctx(|| format!("open {label}"))?;
        let len = f.metadata().ctx(|| format!("stat {label}"))?.len();
        if len <= self.opts.small_threshold as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).ctx(|| format!("read {label}"))?;
            let put = self.put_status(&buf)?;
            progress(len);
            return Ok(put);
        }
        let mut hasher = blake3::Hasher::new();
        let mut hashed = 0u64;
        HASH_BUF.with_borrow_mut(|buf| -> Result<()> {
            // Reused across files: a fresh 8 MiB buffer per file costs more in
            // page faults than hashing a small file does.
            buf.resize((len as usize).min(8 << 20), 0);
            loop {
                let n = read_full(&mut f, buf).ctx(|| format!("read {label}"))?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update_rayon(&buf[..n]);
                hashed += n as u64;
                progress(hashed.min(len) / 2);
            }
        })?;
        let id = ArtifactId::from_bytes(*hasher.finalize().as_bytes());
        if self.contains(&id)? {
            progress(len);
            return Ok(Put {
                id,
                len: hashed,
                new: false,
            });
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
        let put = self.put_large(src, Some(id), &label)?;
        progress(len);
        Ok(put)
    }

    pub(super) fn put_large(&self, src: Source<'_>, expect: Option<ArtifactId>, label: &str) -> Result<Put> {
        let mut w = self.writer()?;
        if let Some(id) = expect {
            if self.is_live_locked(&w, &id)? {
                let len = self.lookup(&id)?.map(|e| e.len).unwrap_or(0);
                return Ok(Put { id, len, new: false });
            }
        }
        // Buffered removals must reach the segment before this artifact's
        // blocks (repair replays blocks in order, and this may be a re-put of a
        // removed id); the packed buffer need not, so it keeps filling.
        self.guard(&mut w, |s, w| {
            s.flush_tombstones(w)?;
            s.ensure_active(w)
        })?;
        let Some(a) = w.active.as_ref() else {
            return Err(Error::Poisoned);
        };
        let mark = (a.len, a.blocks, a.raw_total);
        let outcome = match src {
            Source::Reader { reader, head, len_hint } => self.stream_chunks(&mut w, reader, head, len_hint, label),
            Source::Slice { bytes, id } => self.slice_chunks(&mut w, bytes).map(|c| (id, bytes.len() as u64, c)),
        };
        let rollback = |w: &mut Writer| -> Result<()> {
            let r = match w.active.as_mut() {
                Some(a) => a.rollback(mark.0, mark.1, mark.2),
                None => Ok(()),
            };
            if r.is_err() {
                w.poisoned = true;
            }
            r
        };
        let (id, len, chunks) = match outcome {
            Ok(v) => v,
            Err(e) => {
                rollback(&mut w)?;
                return Err(e);
            }
        };
        if expect.is_some_and(|x| x != id) {
            rollback(&mut w)?;
            return Err(Error::InputChanged(label.to_string()));
        }
        if self.is_live_locked(&w, &id)? {
            rollback(&mut w)?;
            return Ok(Put { id, len, new: false });
        }
        let prev = self.state.read().newest(&id)?;
        self.release_revived(&mut w, prev)?;
        if len > MAX_U40 {
            rollback(&mut w)?;
            return Err(Error::io(
                format!("store {label}"),
                std::io::Error::other("artifact larger than 1 TiB"),
            ));
        }
        let trailer = LargeTrailer {
            id,
            len,
            chunk_size: self.opts.chunk_size as u32,
            chunks,
        }
        .encode();
        let h = header_for(BlockKind::LargeTrailer, Compression::None, &trailer, trailer.len(), 0);
        let at = match w.active.as_mut().map(|a| (a.id, a.append(&h, &trailer))) {
            Some((seg, Ok(at))) => (seg, at),
            Some((_, Err(e))) => {
                rollback(&mut w)?;
                return Err(e);
            }
            None => return Err(Error::Poisoned),
        };
        let e = Entry {
            id,
            segment: at.0,
            block_offset: at.1,
            inner: 0,
            len,
            domain: DomainId::LOCAL,
            source: NO_SOURCE,
            visibility: Visibility::Internal,
            flags: FLAG_LARGE,
        };
        self.state.write().memtable.insert(id, e);
        w.batch.push(Record::Entry(e));
        w.add_usage(at.0, len as i64, len);
        Ok(Put { id, len, new: true })
    }

    /// Writes the input as chunk blocks while hashing it on the other core.
    pub(crate) fn stream_chunks(
        &self,
        w: &mut Writer,
        reader: &mut dyn Read,
        head: Vec<u8>,
        len_hint: Option<u64>,
        label: &str,
    ) -> Result<(ArtifactId, u64, Vec<ChunkRef>)> {
        let chunk = self.opts.chunk_size;
        let mut cap = (chunk * 8).max(8 << 20) / chunk * chunk;
        if let Some(h) = len_hint {
            // Room for the whole input plus one byte (so a short read ends the
            // loop), in whole chunks: no zeroing of 8 MiB for a 200 KiB file.
            cap = cap.min((h as usize + 1).div_ceil(chunk) * chunk);
        }
        // The writer keeps its stream buffer between artifacts: allocating (and
        // faulting in) 8 MiB per large artifact dominated ingest of trees with
        // many files just over the small threshold.
        let mut buf = std::mem::take(&mut w.stream_buf);
        buf.clear();
        buf.extend_from_slice(&head);
        buf.reserve(cap.saturating_sub(buf.len()));
        let mut hasher = blake3::Hasher::new();
        let mut chunks: Vec<ChunkRef> = Vec::new();
        let mut total = 0u64;
        let mut squeeze = Squeeze::default();
        let level = self.opts.compression;
        let Some(active) = w.active.as_mut() else {
            return Err(Error::Poisoned);
        };
        loop {
            let filled = buf.len();
            buf.resize(cap, 0);
            let n = read_full(reader, &mut buf[filled..]).ctx(|| format!("read {label}"))?;
            buf.truncate(filled + n);
            if buf.is_empty() {
                break;
            }
            let data = &buf[..];
            let (_, written) = rayon::join(
                || hasher.update(data),
                || append_chunk_blocks(active, &mut squeeze, level, chunk, data, &mut chunks),
            );
            written?;
            total += buf.len() as u64;
            if buf.len() < cap {
                break;
            }
            buf.clear();
        }
        w.stream_buf = buf;
        Ok((ArtifactId::from_bytes(*hasher.finalize().as_bytes()), total, chunks))
    }

    /// Writes an in-memory artifact (already hashed) as chunk blocks, straight
    /// from the slice: no copy, no second hash.
    fn slice_chunks(&self, w: &mut Writer, bytes: &[u8]) -> Result<Vec<ChunkRef>> {
        let chunk = self.opts.chunk_size;
        let mut chunks = Vec::new();
        let mut squeeze = Squeeze::default();
        let Some(active) = w.active.as_mut() else {
            return Err(Error::Poisoned);
        };
        for window in bytes.chunks(chunk * 8) {
            append_chunk_blocks(active, &mut squeeze, self.opts.compression, chunk, window, &mut chunks)?;
        }
        Ok(chunks)
    }
}

/// Appends `data` as chunk blocks: compressed on all cores (where the
/// squeeze says it is worth trying), appended in order.
fn append_chunk_blocks(
    active: &mut ActiveSegment,
    squeeze: &mut Squeeze,
    level: Option<i32>,
    chunk: usize,
    data: &[u8],
    chunks: &mut Vec<ChunkRef>,
) -> Result<()> {
    use rayon::prelude::*;
    let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    let tries: Vec<bool> = pieces.iter().map(|_| squeeze.should_try()).collect();
    let packed: Vec<(std::borrow::Cow<'_, [u8]>, Compression)> = pieces
        .par_iter()
        .zip(tries.par_iter())
        .map(|(p, t)| {
            if *t {
                maybe_compress(p, level)
            } else {
                ((*p).into(), Compression::None)
            }
        })
        .collect();
    for ((piece, t), (stored, comp)) in pieces.iter().zip(&tries).zip(packed) {
        if *t {
            squeeze.record(comp == Compression::Zstd);
        }
        let h = header_for(BlockKind::LargeChunk, comp, &stored, piece.len(), chunks.len() as u32);
        let at = active.append(&h, &stored)?;
        chunks.push(ChunkRef {
            offset: at,
            raw_len: piece.len() as u32,
        });
    }
    Ok(())
}

/// Where a large artifact's bytes come from.
pub(super) enum Source<'a> {
    /// Read, and hashed while written.
    Reader {
        reader: &'a mut dyn Read,
        head: Vec<u8>,
        len_hint: Option<u64>,
    },
    /// In memory and hashed already.
    Slice { bytes: &'a [u8], id: ArtifactId },
}

/// Adaptive compression for chunk streams: after a run of chunks that did not
/// compress, only every 16th chunk is tried, so incompressible data (media,
/// archives) is written at disk speed instead of paying zstd on every chunk.
#[derive(Default)]
struct Squeeze {
    misses: u32,
    skipped: u32,
}

impl Squeeze {
    fn should_try(&mut self) -> bool {
        if self.misses < 2 {
            return true;
        }
        self.skipped += 1;
        self.skipped.is_multiple_of(16)
    }

    fn record(&mut self, compressed: bool) {
        if compressed {
            self.misses = 0;
            self.skipped = 0;
        } else {
            self.misses += 1;
        }
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

thread_local! {
    static HASH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(super) fn hash_parallel(bytes: &[u8]) -> ArtifactId {
    let mut h = blake3::Hasher::new();
    h.update_rayon(bytes);
    ArtifactId::from_bytes(*h.finalize().as_bytes())
}
