//! ContentAddressableStorage: which blobs are missing, small blobs stored
//! and read in batches, and a directory tree walked from its root.

use std::collections::VecDeque;
use std::pin::Pin;

use asl_core::PutOptions;
use futures_util::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use super::proto::reapi::{
    batch_read_blobs_response, batch_update_blobs_response, compressor,
    content_addressable_storage_server::ContentAddressableStorage, BatchReadBlobsRequest, BatchReadBlobsResponse,
    BatchUpdateBlobsRequest, BatchUpdateBlobsResponse, DirectoryChildren, FindMissingBlobsRequest,
    FindMissingBlobsResponse, GetTreeRequest, GetTreeResponse,
};
use super::{access, blocking, sha_of, status, visible_blob, Service, EMPTY_SHA256, MAX_BATCH};

/// A status for one blob of a batch.
fn rpc_status(s: &Status) -> super::proto::reapi::Status {
    super::proto::reapi::Status {
        code: s.code() as i32,
        message: s.message().to_string(),
        details: Vec::new(),
    }
}

fn ok() -> Option<super::proto::reapi::Status> {
    Some(super::proto::reapi::Status::default())
}

/// A zstd frame's content, refused when it is not `size` bytes.
fn unzstd(data: &[u8], size: u64) -> Result<Vec<u8>, Status> {
    let mut out = Vec::with_capacity(size.min(MAX_BATCH as u64) as usize);
    let dec = zstd::stream::read::Decoder::new(data).map_err(|e| Status::invalid_argument(e.to_string()))?;
    // One byte past the size shows a frame that is too long.
    std::io::Read::read_to_end(&mut std::io::Read::take(dec, size + 1), &mut out)
        .map_err(|e| Status::invalid_argument(format!("not a zstd frame: {e}")))?;
    if out.len() as u64 != size {
        return Err(Status::invalid_argument(format!(
            "the frame holds {} bytes, the digest says {size}",
            out.len()
        )));
    }
    Ok(out)
}

type TreeStream = Pin<Box<dyn Stream<Item = Result<GetTreeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for Service {
    async fn find_missing_blobs(
        &self,
        req: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let access = access(&req);
        let r = req.into_inner();
        if r.blob_digests.len() > self.0.cfg.max_batch {
            return Err(Status::invalid_argument(format!(
                "at most {} digests a call",
                self.0.cfg.max_batch
            )));
        }
        let st = self.0.clone();
        blocking(move || {
            let mut missing = Vec::new();
            for d in r.blob_digests {
                let (sha, size) = sha_of(Some(&d), r.digest_function)?;
                if sha == EMPTY_SHA256 && size == 0 {
                    continue;
                }
                if visible_blob(&st, access, &sha, size).map_err(status)?.is_none() {
                    missing.push(d);
                }
            }
            Ok(Response::new(FindMissingBlobsResponse {
                missing_blob_digests: missing,
            }))
        })
        .await
    }

    async fn batch_update_blobs(
        &self,
        req: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        let r = req.into_inner();
        let st = self.0.clone();
        blocking(move || {
            let mut responses = Vec::new();
            for one in r.requests {
                let answer = |s: Option<super::proto::reapi::Status>| batch_update_blobs_response::Response {
                    digest: one.digest.clone(),
                    status: s,
                };
                let stored = (|| {
                    let (sha, size) = sha_of(one.digest.as_ref(), r.digest_function)?;
                    let data = match one.compressor {
                        c if c == compressor::Value::Identity as i32 => one.data.clone(),
                        c if c == compressor::Value::Zstd as i32 => unzstd(&one.data, size)?,
                        _ => return Err(Status::invalid_argument("compressors: identity and zstd")),
                    };
                    if data.len() as u64 != size {
                        return Err(Status::invalid_argument(format!(
                            "{} bytes sent, the digest says {size}",
                            data.len()
                        )));
                    }
                    let put = st
                        .store
                        .put_with(&data, &PutOptions::new().sha256(true))
                        .map_err(|e| status(e.into()))?;
                    match crate::cache::put_blob(&st, &put, &sha).map_err(status)? {
                        Ok(()) => Ok(()),
                        Err(_) => Err(Status::invalid_argument("the bytes' SHA-256 is not the digest's")),
                    }
                })();
                responses.push(answer(match stored {
                    Ok(()) => ok(),
                    Err(s) => Some(rpc_status(&s)),
                }));
            }
            Ok(Response::new(BatchUpdateBlobsResponse { responses }))
        })
        .await
    }

    async fn batch_read_blobs(
        &self,
        req: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let access = access(&req);
        let r = req.into_inner();
        let total: i64 = r.digests.iter().map(|d| d.size_bytes.max(0)).sum();
        if total as usize > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "a batch reads at most {MAX_BATCH} bytes; read larger blobs through ByteStream"
            )));
        }
        let st = self.0.clone();
        blocking(move || {
            let mut responses = Vec::new();
            for d in r.digests {
                let read = (|| {
                    let (sha, size) = sha_of(Some(&d), r.digest_function)?;
                    if sha == EMPTY_SHA256 && size == 0 {
                        return Ok(Vec::new());
                    }
                    match visible_blob(&st, access, &sha, size).map_err(status)? {
                        Some(id) => st.store.get(&id).map_err(|e| status(e.into())),
                        None => Err(Status::not_found("no such blob")),
                    }
                })();
                let (data, s) = match read {
                    Ok(b) => (b, ok()),
                    Err(s) => (Vec::new(), Some(rpc_status(&s))),
                };
                responses.push(batch_read_blobs_response::Response {
                    digest: Some(d),
                    data,
                    compressor: compressor::Value::Identity as i32,
                    status: s,
                });
            }
            Ok(Response::new(BatchReadBlobsResponse { responses }))
        })
        .await
    }

    type GetTreeStream = TreeStream;

    /// Every Directory under the root, breadth first, each as stored; a
    /// page holds up to `page_size` directories (1,000 when unset) and
    /// about `MAX_BATCH` bytes.
    async fn get_tree(&self, req: Request<GetTreeRequest>) -> Result<Response<TreeStream>, Status> {
        let access = access(&req);
        let r = req.into_inner();
        let (root, size) = sha_of(r.root_digest.as_ref(), r.digest_function)?;
        let page = if r.page_size > 0 { r.page_size as usize } else { 1000 };
        let st = self.0.clone();
        let pages = blocking(move || {
            let mut pages = Vec::new();
            let mut current = GetTreeResponse::default();
            let mut bytes = 0;
            let mut queue = VecDeque::from([(root, size)]);
            let mut seen = std::collections::HashSet::new();
            while let Some((sha, size)) = queue.pop_front() {
                if !seen.insert(sha) {
                    continue;
                }
                let Some(id) = visible_blob(&st, access, &sha, size).map_err(status)? else {
                    return Err(Status::not_found(format!(
                        "directory {} is not in the cache",
                        asl_records::digests::hex(&sha)
                    )));
                };
                let dir = st.store.get(&id).map_err(|e| status(e.into()))?;
                let children = DirectoryChildren::decode(dir.as_slice())
                    .map_err(|e| Status::failed_precondition(format!("not a Directory message: {e}")))?;
                for c in children.directories {
                    queue.push_back(sha_of(c.digest.as_ref(), 0)?);
                }
                if current.directories.len() == page || bytes + dir.len() > MAX_BATCH {
                    pages.push(std::mem::take(&mut current));
                    bytes = 0;
                }
                bytes += dir.len();
                current.directories.push(dir);
            }
            pages.push(current);
            Ok(pages)
        })
        .await?;
        let stream = futures_util::stream::iter(pages.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}
