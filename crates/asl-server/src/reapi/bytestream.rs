//! ByteStream: blobs of any size read and written as streams of chunks.
//!
//! A read (`{instance}/blobs/{hash}/{size}`, or `compressed-blobs/zstd/...`
//! for a zstd stream) starts at any offset and is verified chunk by chunk
//! like every read. A write (`{instance}/uploads/{uuid}/blobs/{hash}/
//! {size}`) streams into the store as it arrives and is checked against its
//! digest at the end. A write cut off before `finish_write` keeps what
//! arrived: it is stored as it stands, and the client's next write of the
//! same resource resumes at the offset `QueryWriteStatus` reports, the new
//! bytes read after the kept ones in one pass. What was kept waits an hour
//! for its resume, in this process: after a restart the upload starts over.

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use asl_core::{ArtifactId, PutOptions};
use axum::body::Bytes;
use futures_util::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::bytestream::{
    byte_stream_server, QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use super::{access, blocking, status, visible_blob, EMPTY_SHA256};
use crate::upload::Incoming;
use crate::State;

/// How a resource's bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Identity,
    Zstd,
}

/// A blob resource: its digest and coding, and for a write the upload it
/// belongs to.
#[derive(Debug)]
struct Resource {
    upload: Option<String>,
    sha: [u8; 32],
    size: u64,
    coding: Coding,
}

impl Resource {
    /// `[instance/]blobs/HASH/SIZE` (reads), `[instance/]uploads/UUID/
    /// blobs/HASH/SIZE[/metadata]` (writes), `compressed-blobs/zstd/` for
    /// `blobs/` in either.
    fn parse(name: &str, write: bool) -> Result<Resource, Status> {
        let bad = || {
            Status::invalid_argument(format!(
                "{name:?} is not a {} resource name",
                if write {
                    "[instance/]uploads/UUID/blobs/HASH/SIZE"
                } else {
                    "[instance/]blobs/HASH/SIZE"
                }
            ))
        };
        let parts: Vec<&str> = name.split('/').collect();
        let at = parts
            .iter()
            .position(|p| *p == "blobs" || *p == "compressed-blobs")
            .ok_or_else(bad)?;
        let (coding, hash_at) = if parts[at] == "blobs" {
            (Coding::Identity, at + 1)
        } else {
            match parts.get(at + 1) {
                Some(&"zstd") => (Coding::Zstd, at + 2),
                _ => return Err(Status::invalid_argument("compressed blobs: zstd only")),
            }
        };
        let (Some(hash), Some(size)) = (parts.get(hash_at), parts.get(hash_at + 1)) else {
            return Err(bad());
        };
        if !write && parts.len() != hash_at + 2 {
            return Err(bad());
        }
        let upload = if write {
            if at < 2 || parts[at - 2] != "uploads" || parts[at - 1].is_empty() {
                return Err(bad());
            }
            Some(parts[..hash_at + 2].join("/"))
        } else {
            None
        };
        let digest = super::proto::reapi::Digest {
            hash: hash.to_string(),
            size_bytes: size.parse().map_err(|_| bad())?,
        };
        let (sha, size) = super::sha_of(Some(&digest), 0)?;
        Ok(Resource {
            upload,
            sha,
            size,
            coding,
        })
    }
}

/// What arrived of an upload that was cut off.
#[derive(Clone, Copy, Debug)]
struct Kept {
    id: ArtifactId,
    len: u64,
    new: bool,
    at: std::time::Instant,
}

/// How long what arrived of a cut-off upload waits for its resume.
const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

type KeptUploads = Arc<parking_lot::Mutex<HashMap<String, Kept>>>;

/// Lets go of cut-off uploads nobody resumed within [`KEEP_FOR`].
async fn sweep(st: &Arc<State>, kept: &KeptUploads) -> Result<(), Status> {
    let stale: Vec<Kept> = {
        let mut g = kept.lock();
        let old: Vec<String> = g
            .iter()
            .filter(|(_, k)| k.at.elapsed() > KEEP_FOR)
            .map(|(n, _)| n.clone())
            .collect();
        old.iter().filter_map(|n| g.remove(n)).collect()
    };
    if stale.is_empty() {
        return Ok(());
    }
    let st = st.clone();
    blocking(move || {
        for k in stale {
            drop_new(&st, &k.id, k.new);
        }
        Ok(())
    })
    .await
}

/// The ByteStream service.
#[derive(Clone)]
pub(crate) struct ByteStream {
    st: Arc<State>,
    kept: KeptUploads,
}

impl ByteStream {
    pub(crate) fn new(st: Arc<State>) -> ByteStream {
        ByteStream {
            st,
            kept: Arc::default(),
        }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

/// Bytes a read sends in one message.
const CHUNK: usize = 256 << 10;

/// Removes an artifact a put added that nothing uses now.
fn drop_new(st: &State, id: &ArtifactId, new: bool) {
    if new {
        let _ = st.store.remove(id).and_then(|_| st.store.commit());
    }
}

#[tonic::async_trait]
impl byte_stream_server::ByteStream for ByteStream {
    type ReadStream = ReadStream;

    async fn read(&self, req: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let access = access(&req);
        let r = req.into_inner();
        let res = Resource::parse(&r.resource_name, false)?;
        if r.read_offset < 0 || r.read_limit < 0 {
            return Err(Status::out_of_range("read_offset and read_limit are not negative"));
        }
        let (offset, limit) = (r.read_offset as u64, r.read_limit as u64);
        let st = self.st.clone();
        let id = if res.sha == EMPTY_SHA256 && res.size == 0 {
            None
        } else {
            Some(
                blocking(move || visible_blob(&st, access, &res.sha, res.size).map_err(status))
                    .await?
                    .ok_or_else(|| Status::not_found("no such blob"))?,
            )
        };
        if res.coding == Coding::Identity && offset > res.size {
            return Err(Status::out_of_range(format!(
                "read_offset {offset} is past the blob's {} bytes",
                res.size
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ReadResponse, Status>>(4);
        let st = self.st.clone();
        tokio::task::spawn_blocking(move || {
            let source: Box<dyn Read> = match id {
                Some(id) => match st.store.open_reader(&id) {
                    Ok(r) => Box::new(r),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(status(e.into())));
                        return;
                    }
                },
                None => Box::new(std::io::empty()),
            };
            let mut source: Box<dyn Read> = match res.coding {
                Coding::Identity => source,
                Coding::Zstd => match zstd::stream::read::Encoder::new(source, 3) {
                    Ok(e) => Box::new(e),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                },
            };
            // Skipped bytes are still read and verified: an offset never
            // lets a damaged chunk through unseen.
            if let Err(e) = std::io::copy(&mut (&mut source).take(offset), &mut std::io::sink()) {
                let _ = tx.blocking_send(Err(Status::data_loss(e.to_string())));
                return;
            }
            let mut left = if limit == 0 { u64::MAX } else { limit };
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match source.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        left -= n as u64;
                        let msg = ReadResponse {
                            data: buf[..n].to_vec(),
                        };
                        if tx.blocking_send(Ok(msg)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::data_loss(e.to_string())));
                        return;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn write(&self, req: Request<Streaming<WriteRequest>>) -> Result<Response<WriteResponse>, Status> {
        // On a task of its own: a client that resets the call drops this
        // handler, and what arrived must still be kept for the resume.
        let (st, kept) = (self.st.clone(), self.kept.clone());
        let committed = tokio::spawn(write(st, kept, req.into_inner()))
            .await
            .map_err(|e| Status::internal(format!("write task failed: {e}")))??;
        Ok(Response::new(WriteResponse {
            committed_size: committed as i64,
        }))
    }

    async fn query_write_status(
        &self,
        req: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        let access = access(&req);
        let res = Resource::parse(&req.get_ref().resource_name, true)?;
        let upload = res.upload.clone().expect("a write resource names its upload");
        let (sha, size) = (res.sha, res.size);
        let st = self.st.clone();
        let done = blocking(move || visible_blob(&st, access, &sha, size).map_err(status)).await?;
        let (committed, complete) = match (done, self.kept.lock().get(&upload)) {
            (Some(_), _) => (size, true),
            (None, Some(k)) => (k.len, false),
            (None, None) => (0, false),
        };
        Ok(Response::new(QueryWriteStatusResponse {
            committed_size: committed as i64,
            complete,
        }))
    }
}

/// One write call: streams it into the store, keeps what arrived of one
/// cut off, and checks a finished one against its digest. Returns the
/// committed size.
async fn write(
    st: Arc<State>,
    kept_uploads: KeptUploads,
    mut incoming: Streaming<WriteRequest>,
) -> Result<u64, Status> {
    let first = incoming
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("a write with no message"))?;
    let res = Resource::parse(&first.resource_name, true)?;
    let upload = res.upload.clone().expect("a write resource names its upload");
    sweep(&st, &kept_uploads).await?;
    let kept = kept_uploads.lock().remove(&upload);
    let at = kept.map_or(0, |k| k.len);
    if first.write_offset != at as i64 {
        if first.write_offset != 0 {
            if let Some(k) = kept {
                kept_uploads.lock().insert(upload, k);
            }
            return Err(Status::invalid_argument(format!(
                "write_offset {} but {at} bytes of this upload are committed",
                first.write_offset
            )));
        }
        // Started over: what was kept goes.
        if let Some(k) = kept {
            let st = st.clone();
            blocking(move || {
                drop_new(&st, &k.id, k.new);
                Ok(())
            })
            .await?;
        }
    }
    let kept = kept.filter(|_| first.write_offset != 0);
    let permit = tokio::time::timeout(st.cfg.timeout, st.uploads.clone().acquire_owned())
        .await
        .map_err(|_| Status::resource_exhausted("every upload slot stayed busy; try again"))?
        .map_err(|_| Status::unavailable("the server is stopping"))?;
    // The upload's raw bytes (zstd frames stay compressed here) are
    // stored as they come, after any kept ones.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let store = st.store.clone();
    let identity = res.coding == Coding::Identity;
    let task = tokio::task::spawn_blocking(move || {
        let before: Box<dyn Read + Send> = match kept {
            Some(k) => Box::new(store.open_reader(&k.id)?),
            None => Box::new(std::io::empty()),
        };
        let put = store.put_reader_with(before.chain(Incoming::new(rx)), &PutOptions::new().sha256(identity));
        asl_core::release_thread_buffers();
        drop(permit);
        put
    });
    let mut offset = at + first.data.len() as u64;
    let mut finished = first.finish_write;
    let _ = tx.send(Ok(Bytes::from(first.data))).await;
    let mut refused = None;
    while !finished {
        match incoming.message().await {
            Ok(Some(m)) => {
                if m.write_offset != offset as i64 {
                    refused = Some(Status::invalid_argument(format!(
                        "write_offset {} where {offset} was next",
                        m.write_offset
                    )));
                    break;
                }
                offset += m.data.len() as u64;
                finished = m.finish_write;
                if tx.send(Ok(Bytes::from(m.data))).await.is_err() {
                    break;
                }
            }
            // The client went away (or closed without finishing): what
            // arrived is kept for a resumed write.
            Ok(None) | Err(_) => break,
        }
    }
    drop(tx);
    let put = task
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(|e| status(e.into()))?;
    if let Some(k) = kept {
        if k.id != put.id {
            let st = st.clone();
            blocking(move || {
                drop_new(&st, &k.id, k.new);
                Ok(())
            })
            .await?;
        }
    }
    if let Some(s) = refused {
        drop_new(&st, &put.id, put.new);
        return Err(s);
    }
    if !finished {
        kept_uploads.lock().insert(
            upload,
            Kept {
                id: put.id,
                len: put.len,
                new: put.new,
                at: std::time::Instant::now(),
            },
        );
        return Err(Status::aborted(format!(
            "the write ended after {} bytes without finish_write; resume at that offset",
            put.len
        )));
    }
    let size = res.size;
    let committed = put.len;
    blocking(move || {
        let blob = match res.coding {
            Coding::Identity => put,
            Coding::Zstd => {
                let frames = st.store.open_reader(&put.id).map_err(|e| status(e.into()))?;
                let dec =
                    zstd::stream::read::Decoder::new(frames).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let blob = st
                    .store
                    .put_reader_with(dec.take(size + 1), &PutOptions::new().sha256(true))
                    .map_err(|e| Status::invalid_argument(format!("not a zstd stream: {e}")));
                drop_new(&st, &put.id, put.new);
                blob?
            }
        };
        if blob.len != size {
            drop_new(&st, &blob.id, blob.new);
            return Err(Status::invalid_argument(format!(
                "{} bytes written, the digest says {size}",
                blob.len
            )));
        }
        match crate::cache::put_blob(&st, &blob, &res.sha).map_err(status)? {
            Ok(()) => Ok(()),
            Err(_) => Err(Status::invalid_argument("the bytes' SHA-256 is not the digest's")),
        }
    })
    .await?;
    Ok(committed)
}
