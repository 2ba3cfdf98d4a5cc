//! The Remote Execution API v2 cache over gRPC (Bazel's `--remote_cache=
//! grpc://`, Buck2, Pants, BuildBuddy and NativeLink clients): capabilities,
//! the content-addressed store, the action cache and ByteStream, on the
//! same port and behind the same tokens as the HTTP API (tonic's router
//! mounted in the axum app; plain-text HTTP/2 or TLS with ALPN `h2`).
//!
//! It is another door onto the build caches' entries: a blob is a `cas/`
//! entry found by its SHA-256 (taken in the same pass that stores it, never
//! by a second read), an action result an `ac/` entry, so what Bazel stored
//! over HTTP is found over gRPC and the other way round, and `--max-size`
//! evicts both alike. SHA-256 is the one digest function; instance names
//! are accepted and do not separate entries (an action's digest already
//! names everything it depends on).

mod bytestream;
mod cas;
pub mod raw;

use std::sync::Arc;

use asl_core::{ArtifactId, Audience};
use asl_records::cache::Condition;
use asl_records::digests;
use asl_records::RecordError;
use tonic::{Request, Response, Status};

use super::http::Access;
use super::{Scope, State};

/// The generated messages and services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// `build.bazel.remote.execution.v2`: the part a cache serves.
    pub mod reapi {
        tonic::include_proto!("build.bazel.remote.execution.v2");
    }
    /// `google.bytestream`.
    pub mod bytestream {
        tonic::include_proto!("google.bytestream");
    }
}

use proto::reapi::{
    action_cache_server::{ActionCache, ActionCacheServer},
    capabilities_server::{Capabilities, CapabilitiesServer},
    digest_function, Digest, GetActionResultRequest, GetCapabilitiesRequest, ServerCapabilities,
    UpdateActionResultRequest,
};
use raw::RawMessage;

/// The most a batch call may carry (requests and responses alike); larger
/// blobs go through ByteStream, which streams.
pub(crate) const MAX_BATCH: usize = 4 << 20;

/// The SHA-256 of nothing: REAPI's empty blob, which every server has.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The gRPC services as axum routes, at most `grpc_calls` answered at once.
pub(crate) fn router(st: Arc<State>) -> axum::Router {
    // A batch's messages are bounded; ByteStream's chunks are smaller.
    let max = MAX_BATCH + (64 << 10);
    let limit = axum::middleware::from_fn_with_state(st.clone(), one_at_a_slot);
    tonic::service::Routes::default()
        .add_service(CapabilitiesServer::new(Service(st.clone())))
        .add_service(ActionCacheServer::new(Service(st.clone())).max_decoding_message_size(max))
        .add_service(
            proto::reapi::content_addressable_storage_server::ContentAddressableStorageServer::new(Service(st.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::bytestream::byte_stream_server::ByteStreamServer::new(bytestream::ByteStream::new(st))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .into_axum_router()
        .layer(limit)
}

/// Holds a gRPC call slot while the call is answered (its messages are in
/// memory then); waits up to the idle timeout for one.
async fn one_at_a_slot(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(st.cfg.timeout, st.grpc_calls.clone().acquire_owned()).await {
        Ok(Ok(_slot)) => next.run(req).await,
        _ => Status::resource_exhausted(format!(
            "{} gRPC calls are being answered and this one waited {} s; try again",
            2 * st.cfg.max_uploads.max(1),
            st.cfg.timeout.as_secs()
        ))
        .into_http(),
    }
}

/// Whether a request is a gRPC call (its refusals must be gRPC statuses).
pub(crate) fn is_grpc<B>(req: &axum::http::Request<B>) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Whether the gRPC method at `path` writes (else it reads).
pub(crate) fn writes(path: &str) -> bool {
    const WRITES: [&str; 4] = [
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
        "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult",
        "/google.bytestream.ByteStream/Write",
        "/google.bytestream.ByteStream/QueryWriteStatus",
    ];
    WRITES.contains(&path)
}

/// One service over the server's state (each gRPC service is a type).
#[derive(Clone)]
pub(crate) struct Service(pub(crate) Arc<State>);

/// The caller, as `authorize` found it.
fn access<T>(req: &Request<T>) -> Access {
    req.extensions().get::<Access>().copied().unwrap_or(Access {
        audience: Audience::Published,
        scope: Scope::Read,
    })
}

/// A digest's SHA-256, or why it is not one this server takes.
fn sha_of(d: Option<&Digest>, function: i32) -> Result<([u8; 32], u64), Status> {
    if function != digest_function::Value::Unknown as i32 && function != digest_function::Value::Sha256 as i32 {
        return Err(Status::invalid_argument(
            "this server takes SHA-256 digests only (digest_function SHA256)",
        ));
    }
    let d = d.ok_or_else(|| Status::invalid_argument("a digest is missing"))?;
    let sha = (d.hash.len() == 64 && d.hash.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        .then(|| digests::parse_sha256(&d.hash))
        .flatten()
        .ok_or_else(|| Status::invalid_argument(format!("{:?} is not a SHA-256 in lower-case hex", d.hash)))?;
    let size = u64::try_from(d.size_bytes).map_err(|_| Status::invalid_argument("a digest's size is negative"))?;
    Ok((sha, size))
}

/// The store's failure as a gRPC status, by its kind.
fn status(e: RecordError) -> Status {
    use asl_core::ErrorKind;
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => Status::not_found(msg),
        ErrorKind::Invalid => Status::invalid_argument(msg),
        ErrorKind::Unavailable => Status::unavailable(msg),
        ErrorKind::Conflict => Status::aborted(msg),
        ErrorKind::Refused => Status::permission_denied(msg),
        ErrorKind::Corrupt => Status::data_loss(msg),
        _ => Status::internal(msg),
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
}

/// The blob `sha` of `size` bytes, if the caller may see it.
fn visible_blob(st: &State, access: Access, sha: &[u8; 32], size: u64) -> Result<Option<ArtifactId>, RecordError> {
    let Some(id) = crate::cache::find_blob(st, sha)? else {
        return Ok(None);
    };
    let view = st.store.view(access.audience);
    Ok((view.contains(&id)? && st.store.len_of(&id)? == size).then_some(id))
}

#[tonic::async_trait]
impl Capabilities for Service {
    async fn get_capabilities(
        &self,
        req: Request<GetCapabilitiesRequest>,
    ) -> Result<Response<ServerCapabilities>, Status> {
        use proto::reapi::{
            compressor, symlink_absolute_path_strategy, ActionCacheUpdateCapabilities, CacheCapabilities, SemVer,
        };
        let version = |minor| SemVer {
            major: 2,
            minor,
            patch: 0,
            prerelease: String::new(),
        };
        Ok(Response::new(ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities {
                digest_functions: vec![digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities {
                    // A replica takes no writes: they go to its writer.
                    update_enabled: access(&req).scope >= Scope::Write && self.0.cfg.replica.is_none(),
                }),
                cache_priority_capabilities: None,
                max_batch_total_size_bytes: MAX_BATCH as i64,
                symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Allowed as i32,
                supported_compressors: vec![compressor::Value::Zstd as i32],
                supported_batch_update_compressors: vec![compressor::Value::Zstd as i32],
            }),
            low_api_version: Some(version(0)),
            high_api_version: Some(version(3)),
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Service {
    async fn get_action_result(&self, req: Request<GetActionResultRequest>) -> Result<Response<RawMessage>, Status> {
        let access = access(&req);
        let r = req.into_inner();
        let (sha, _) = sha_of(r.action_digest.as_ref(), r.digest_function)?;
        let st = self.0.clone();
        blocking(move || {
            let name = format!("ac/{}", digests::hex(&sha));
            let found = crate::cache::ac_lookup(&st, &name).map_err(status)?;
            let view = st.store.view(access.audience);
            match found {
                Some(id) if view.contains(&id).map_err(|e| status(e.into()))? => {
                    let bytes = st.store.get(&id).map_err(|e| status(e.into()))?;
                    Ok(Response::new(RawMessage(bytes)))
                }
                _ => Err(Status::not_found("no action result for this digest")),
            }
        })
        .await
    }

    async fn update_action_result(
        &self,
        req: Request<UpdateActionResultRequest>,
    ) -> Result<Response<RawMessage>, Status> {
        let r = req.into_inner();
        let (sha, _) = sha_of(r.action_digest.as_ref(), r.digest_function)?;
        let result = r.action_result.unwrap_or_default();
        let st = self.0.clone();
        blocking(move || {
            let put = st
                .store
                .put_with(&result.0, &asl_core::PutOptions::new())
                .map_err(|e| status(e.into()))?;
            let name = format!("ac/{}", digests::hex(&sha));
            crate::cache::put_entry(&st, &name, &put, &Condition::Always).map_err(status)?;
            Ok(Response::new(result))
        })
        .await
    }
}
