//! A push-style put: a [`PutWriter`] is an [`io::Write`] whose bytes become
//! one artifact when it is committed, for data that arrives in pieces the
//! caller pushes (a decoder's output, a network callback) rather than a
//! reader the store could pull from.
//!
//! The store's large put pulls from a reader and hashes, chunks and writes
//! as it goes. The writer feeds it from another thread through a bounded
//! channel, so the bytes are read once, memory stays bounded (the pieces in
//! flight and the put's own windows) and a slow producer holds no lock.
//! Dropping a writer without committing abandons the put: the reader ends
//! in an error, never at a short end of file, so nothing partial is stored.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Put, PutOptions, Store};
use crate::error::{Error, Result};

/// Bytes gathered before they are handed to the storing thread.
const PIECE: usize = 256 << 10;
/// Pieces in flight between the writer and the storing thread.
const IN_FLIGHT: usize = 4;

/// What the writer sends: bytes, or the end (absent when it was dropped).
enum Msg {
    Bytes(Vec<u8>),
    End,
}

/// A sink whose bytes are stored as one artifact: write to it, then
/// [`PutWriter::commit`]. Memory held: up to 1.25 MiB of pieces in flight,
/// and what a put holds anyway.
///
/// ```
/// use std::io::Write;
/// use std::sync::Arc;
///
/// let dir = tempfile::tempdir()?;
/// let store = Arc::new(asl_core::Store::create(dir.path())?);
/// let mut w = store.writer(asl_core::PutOptions::new());
/// for line in ["one\n", "two\n", "three\n"] {
///     w.write_all(line.as_bytes())?;
/// }
/// let put = w.commit()?;
/// store.commit()?; // durable from here
/// assert_eq!(store.get(&put.id)?, b"one\ntwo\nthree\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PutWriter {
    piece: Vec<u8>,
    tx: Option<SyncSender<Msg>>,
    task: Option<JoinHandle<Result<Put>>>,
}

impl Store {
    /// A [`PutWriter`] into this store: write to it, then commit it. The
    /// store is shared with the thread that stores the bytes, hence the
    /// `Arc`.
    pub fn writer(self: &Arc<Self>, opts: PutOptions) -> PutWriter {
        PutWriter::new(self.clone(), opts)
    }
}

impl PutWriter {
    /// Starts a put into `store` with `opts`; nothing is stored until
    /// [`PutWriter::commit`], and a writer dropped before that stores
    /// nothing.
    pub fn new(store: Arc<Store>, opts: PutOptions) -> PutWriter {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let task = std::thread::spawn(move || {
            store.put_reader_with(
                Incoming {
                    rx,
                    cur: Vec::new(),
                    at: 0,
                },
                &opts,
            )
        });
        PutWriter {
            piece: Vec::with_capacity(PIECE),
            tx: Some(tx),
            task: Some(task),
        }
    }

    /// Stores what was written and returns what the put did. Durable after
    /// the store's next [`Store::commit`]. Fails as the put failed (an
    /// error writing, an id that did not match [`PutOptions::expect`]).
    pub fn commit(mut self) -> Result<Put> {
        let sent = self.send_piece().and_then(|_| self.send(Msg::End));
        self.tx = None;
        let put = self.join();
        // The put's own error says more than the closed channel it caused.
        match (put, sent) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(Error::io("hand bytes to the put", e)),
            (Ok(p), Ok(())) => Ok(p),
        }
    }

    fn join(&mut self) -> Result<Put> {
        match self.task.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(Error::Poisoned),
        }
    }

    fn send(&self, m: Msg) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::other("the put has ended"))?;
        tx.send(m)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the put ended early (commit says why)"))
    }

    fn send_piece(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        self.send(Msg::Bytes(piece))
    }
}

impl Write for PutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == PIECE {
            self.send_piece()?;
        }
        Ok(n)
    }

    /// Hands what is gathered to the storing thread (it is stored only on
    /// commit).
    fn flush(&mut self) -> io::Result<()> {
        self.send_piece()
    }
}

impl Drop for PutWriter {
    fn drop(&mut self) {
        // No End: the reader fails, and the put stores nothing.
        self.tx = None;
        if self.task.is_some() {
            let _ = self.join();
        }
    }
}

/// The storing thread's reader over the writer's pieces.
struct Incoming {
    rx: Receiver<Msg>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for Incoming {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(Msg::Bytes(b)) => (self.cur, self.at) = (b, 0),
                Ok(Msg::End) => return Ok(0),
                Err(_) => return Err(io::Error::other("the writer was dropped without commit")),
            }
        }
        let n = out.len().min(self.cur.len() - self.at);
        out[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
