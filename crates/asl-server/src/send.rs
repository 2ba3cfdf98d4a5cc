//! Sending an artifact over HTTP: whole, one byte range, or headers only,
//! with its id as a strong ETag (`If-None-Match` answered with 304). Small
//! artifacts are read and verified whole before the response starts; large
//! ones stream piece by piece from a blocking thread, so a damaged chunk
//! ends the body short instead of sending a wrong byte.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::http::{blocking, error, with_view, Access};
use super::State;
use asl_core::{ArtifactId, ArtifactReader};

/// Bytes sent in one piece of a streamed download.
const PIECE: usize = 256 << 10;
/// Artifacts up to this size are read whole before the response starts.
const WHOLE: u64 = 1 << 20;

/// What a `Range` header asks of an artifact of `len` bytes: `None` for the
/// whole (no header, another unit, or several ranges, which HTTP lets a
/// server answer whole), `Some(Err)` when it is malformed or unsatisfiable
/// (HTTP lets a server refuse an invalid one: 416).
fn range(headers: &HeaderMap, len: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    if !v.starts_with("bytes=") {
        return None;
    }
    match http_range_header::parse_range_header(v).and_then(|r| r.validate(len)) {
        Ok(r) => match r.as_slice() {
            [one] => Some(Ok((*one.start(), *one.end()))),
            _ => None,
        },
        Err(_) => Some(Err(())),
    }
}

fn etag(id: &ArtifactId) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{id}\"")).expect("hex is a valid header")
}

/// The response carrying artifact `id` (whole, one range, or headers only),
/// or 404 when it is absent or not visible to the caller.
pub(super) async fn send(
    st: &Arc<State>,
    access: Access,
    id: ArtifactId,
    headers: &HeaderMap,
    with_body: bool,
) -> Response {
    let reader = match with_view(&st.store, access, move |view| view.open_reader(&id)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    send_reader(id, reader, headers, with_body, st.cfg.timeout).await
}

/// [`send`] with the media type the artifact's annotations give it as its
/// `Content-Type` (`application/octet-stream` when none does, or when the
/// query index is not open).
pub(super) async fn send_typed(
    st: &Arc<State>,
    access: Access,
    id: ArtifactId,
    headers: &HeaderMap,
    with_body: bool,
) -> Response {
    let s2 = st.clone();
    let opened = with_view(&st.store, access, move |view| {
        let reader = view.open_reader(&id)?;
        let media = s2
            .index
            .read_if_open(|i| asl_records::labels::media_type_of(view, i, &id))
            .transpose()?
            .flatten();
        Ok::<_, asl_records::RecordError>((reader, media))
    })
    .await;
    let (reader, media) = match opened {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut r = send_reader(id, reader, headers, with_body, st.cfg.timeout).await;
    if let Some(v) = media.and_then(|m| HeaderValue::from_str(&m).ok()) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The response carrying what `reader` reads (artifact `id`): whole, one
/// range, or headers only.
pub(super) async fn send_reader(
    id: ArtifactId,
    reader: ArtifactReader,
    headers: &HeaderMap,
    with_body: bool,
    idle: std::time::Duration,
) -> Response {
    let len = reader.len();
    let tag = etag(&id);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes() || v.as_bytes() == b"*")
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, tag);
        return r;
    }
    let (status, start, count) = match range(headers, len) {
        None => (StatusCode::OK, 0, len),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Some(Err(())) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the artifact has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if !with_body {
        Body::empty()
    } else if count <= WHOLE {
        match blocking(move || read_whole(reader, start, count)).await {
            Ok(b) => Body::from(b),
            Err(r) => return r,
        }
    } else {
        stream(reader, start, count, idle)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::ETAG, tag);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

fn read_whole(mut reader: ArtifactReader, start: u64, count: u64) -> asl_core::Result<Vec<u8>> {
    reader.read_range_at(start, count)?;
    let mut b = vec![0u8; count as usize];
    reader.read_exact(&mut b).map_err(asl_core::Error::from_reader_io)?;
    Ok(b)
}

/// A large artifact's bytes as they are read and verified, piece by piece,
/// on a blocking thread; a damaged chunk ends the body with an error (the
/// client sees a short response, not wrong bytes). A client that takes no
/// bytes for `idle` is cut off, so a stalled reader does not hold a thread.
fn stream(mut reader: ArtifactReader, start: u64, count: u64, idle: std::time::Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // Hands one piece over; false when the client is gone or stalled.
        let give =
            |item: std::io::Result<Bytes>| matches!(rt.block_on(tokio::time::timeout(idle, tx.send(item))), Ok(Ok(())));
        if let Err(e) = reader.read_range_at(start, count) {
            give(Err(std::io::Error::other(e.to_string())));
            return;
        }
        loop {
            let mut buf = vec![0u8; PIECE];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if !give(Ok(Bytes::from(buf))) {
                        return;
                    }
                }
                Err(e) => {
                    give(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
