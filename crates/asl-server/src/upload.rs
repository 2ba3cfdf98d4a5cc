//! Uploads: a request body streamed into the store under the server's
//! limits on size, time and concurrent uploads, and the answer to an
//! acknowledged put.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde_json::json;

use super::http::{error, store_error};
use super::State;
use asl_core::PutOptions;

/// An upload's bytes, handed from the async side to the blocking put.
pub(crate) struct Incoming {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
}

impl Incoming {
    /// A reader of what the channel brings, in order; it ends when the
    /// channel closes.
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Incoming {
        Incoming { rx, buf: Bytes::new() }
    }
}

impl Read for Incoming {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = self.buf.len().min(out.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// The answer to an acknowledged put: 201 when new (to the caller, see
/// [`Access::shown_new`](super::http::Access::shown_new)), 200 when it was there.
pub(super) fn stored(put: &asl_core::Put, new: bool) -> Response {
    let code = if new { StatusCode::CREATED } else { StatusCode::OK };
    let mut r = (code, Json(json!({"id": put.id.to_hex(), "len": put.len, "new": new}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/artifacts/{}", put.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Streams `body` into the store with `opts` (not yet committed). Too
/// large, too slow or cut off: the put sees a read error and leaves
/// nothing, and the answer is the error response.
pub(super) async fn receive(
    st: &Arc<State>,
    opts: PutOptions,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<asl_core::Put, Response> {
    let max = st.cfg.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {max}-byte limit"),
        ));
    }
    // At most `max_uploads` puts hold their windows at once; the others
    // wait here with their bodies unread (the client's sends block), then
    // give up with 503 rather than grow the server without bound.
    let permit = match tokio::time::timeout(st.cfg.timeout, st.uploads.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} uploads are being stored and this one waited {} s; try again",
                    st.cfg.max_uploads,
                    st.cfg.timeout.as_secs()
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(r);
        }
    };
    let opts = opts.size_hint(declared);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let store = st.store.clone();
    let (uploads, total) = (st.uploads.clone(), st.cfg.max_uploads.max(1));
    let release = st.cfg.allocator.release;
    let task = tokio::task::spawn_blocking(move || {
        let put = store.put_reader_with(Incoming::new(rx), &opts);
        // Memory follows the uploads in flight: this thread's windows go
        // now, and when the last upload ends the allocator gives back what
        // its arenas hold.
        asl_core::release_thread_buffers();
        drop(permit);
        if uploads.available_permits() == total {
            release();
        }
        put
    });
    // An idle limit, not a total one: a large upload over a slow link is
    // fine as long as bytes keep coming.
    let idle = st.cfg.timeout;
    let mut total = 0u64;
    let failed = loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                break Some((
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no bytes of the upload arrived for {} s", idle.as_secs()),
                ))
            }
            Ok(None) => break None,
            Ok(Some(Err(e))) => break Some((StatusCode::BAD_REQUEST, format!("the body was cut off: {e}"))),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                total += data.len() as u64;
                if total > max {
                    break Some((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is over the {max}-byte limit"),
                    ));
                }
                if tx.send(Ok(data)).await.is_err() {
                    // The put stopped early; its own error says why.
                    break None;
                }
            }
        }
    };
    if let Some((code, msg)) = failed {
        let _ = tx.send(Err(std::io::Error::other(msg.clone()))).await;
        drop(tx);
        let _ = task.await;
        return Err(error(code, msg));
    }
    drop(tx);
    match task.await {
        Ok(Ok(put)) => Ok(put),
        Ok(Err(e)) => Err(store_error(e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store task failed: {e}"),
        )),
    }
}
