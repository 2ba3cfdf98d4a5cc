//! What every put path shares: the outcome ([`Put`]), where a large
//! artifact's bytes come from, hashing, and the per-thread buffers puts
//! stream through. Apart from the write and large paths so that neither
//! needs the other.

use std::io::Read;

use crate::id::ArtifactId;
use crate::index::entry::Placement;

/// The outcome of storing one artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Put {
    /// Its id.
    pub id: ArtifactId,
    /// Its length.
    pub len: u64,
    /// False when the bytes were already live (deduplicated, nothing written).
    pub new: bool,
    /// The domain, visibility and source the artifact has now: the put's
    /// options when it was stored, the existing ones when it was live already.
    pub placement: Placement,
    /// The bytes' SHA-256, when [`PutOptions::sha256`](super::PutOptions::sha256) asked for it.
    pub sha256: Option<[u8; 32]>,
}

/// The SHA-256 of `bytes`.
pub(super) fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// A reader that computes the SHA-256 of what passes through it.
pub(super) struct Sha256Tee<R> {
    pub(super) inner: R,
    pub(super) sha: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Sha256Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
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

thread_local! {
    static HASH_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    static STREAM_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Which reusable buffer.
#[derive(Clone, Copy)]
pub(super) enum Buf {
    /// Hashing a file before deciding to store it; also the second window
    /// of a chunked put's pipeline (the two never overlap on one thread).
    Hash,
    /// Streaming chunks into the segment.
    Stream,
}

/// Runs `f` with this thread's reusable buffer of kind `which`. The buffer is
/// taken out for the call, not borrowed: `f` hashes and compresses on rayon,
/// and a thread waiting in rayon may run another put (a caller's own
/// `par_iter` of puts), which then simply gets a fresh buffer.
pub(super) fn with_buf<T>(which: Buf, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let key = match which {
        Buf::Hash => &HASH_BUF,
        Buf::Stream => &STREAM_BUF,
    };
    let mut buf = key.with(|c| c.take());
    let out = f(&mut buf);
    key.with(|c| {
        let other = c.take();
        c.set(if other.capacity() > buf.capacity() { other } else { buf });
    });
    out
}

/// Frees this thread's kept put buffers (up to 2 × 8 MiB). A long-lived
/// process whose puts run on many short-lived or pooled threads (a server's
/// blocking pool) calls it after each put, so memory follows the puts in
/// flight rather than every thread that ever ran one.
pub fn release_thread_buffers() {
    for key in [&HASH_BUF, &STREAM_BUF] {
        drop(key.with(|c| c.take()));
    }
}

pub(super) fn hash_parallel(bytes: &[u8]) -> ArtifactId {
    let mut h = blake3::Hasher::new();
    h.update_rayon(bytes);
    ArtifactId::from_bytes(*h.finalize().as_bytes())
}
