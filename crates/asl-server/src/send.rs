//! Sending an artifact over HTTP: whole, one byte range, or headers only,
//! with its id as a strong ETag (`If-None-Match` answered with 304). Small
//! artifacts are read and verified whole before the response starts; large
//! ones stream piece by piece from a blocking thread, so a damaged chunk
//! ends the body short instead of sending a wrong byte.
//!
//! A store on local disk answers reads of up to [`INLINE`] bytes on the
//! runtime's own thread: the read is a lookup and a copy out of mapped
//! files, shorter than the hop to a blocking thread (which cost a third of
//! a 4 KiB GET). Like nginx without thread pools, a read of pages not in
//! memory then waits for the disk there. A store living in a bucket, a
//! larger artifact go to a blocking thread as before. The media type is
//! looked up beside the query index's writer, so a GET never waits for a
//! cache put or an eviction.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::http::{blocking, error, failure, with_view, Access};
use super::State;
use asl_core::{ArtifactId, ArtifactReader};

/// Artifacts up to this size are read whole before the response starts.
const WHOLE: u64 = 1 << 20;
/// Bodies up to this size are read on the runtime's thread (see the
/// module docs).
const INLINE: u64 = 64 << 10;

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

/// What a request asks of an artifact, taken from its headers so that the
/// blocking thread that opens the artifact can decide the answer.
struct Asked {
    if_none_match: Option<HeaderValue>,
    range: HeaderMap,
    with_body: bool,
}

impl Asked {
    fn of(headers: &HeaderMap, with_body: bool) -> Asked {
        let mut range = HeaderMap::new();
        if let Some(v) = headers.get(header::RANGE) {
            range.insert(header::RANGE, v.clone());
        }
        Asked {
            if_none_match: headers.get(header::IF_NONE_MATCH).cloned(),
            range,
            with_body,
        }
    }
}

/// How a GET or HEAD is answered, with what it sends.
enum Ready {
    NotModified,
    /// 416: the artifact's length.
    Unsatisfiable(u64),
    Send {
        status: StatusCode,
        start: u64,
        count: u64,
        len: u64,
        body: Content,
    },
}

enum Content {
    Empty,
    /// Read and verified already (a small artifact or range).
    Whole(Vec<u8>),
    /// To be read whole on a blocking thread before the response starts.
    Later(Box<ArtifactReader>),
    /// Streamed as it is read.
    Stream(Box<ArtifactReader>),
}

/// Decides the answer for `reader` (artifact `id`) and reads the body
/// when it is at most `now` bytes: where the artifact was opened, so a
/// small read costs one hop off the runtime at most, not two.
fn ready(id: &ArtifactId, reader: ArtifactReader, asked: &Asked, now: u64) -> asl_core::Result<Ready> {
    let len = reader.len();
    let tag = etag(id);
    if asked
        .if_none_match
        .as_ref()
        .is_some_and(|v| v.as_bytes() == tag.as_bytes() || v.as_bytes() == b"*")
    {
        return Ok(Ready::NotModified);
    }
    let (status, start, count) = match range(&asked.range, len) {
        None => (StatusCode::OK, 0, len),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Some(Err(())) => return Ok(Ready::Unsatisfiable(len)),
    };
    let body = if !asked.with_body {
        Content::Empty
    } else if count <= now {
        Content::Whole(read_whole(reader, start, count)?)
    } else if count <= WHOLE {
        Content::Later(Box::new(reader))
    } else {
        Content::Stream(Box::new(reader))
    };
    Ok(Ready::Send {
        status,
        start,
        count,
        len,
        body,
    })
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
    let asked = Asked::of(headers, with_body);
    if st.inline_reads {
        let view = st.store.view(access.audience);
        return match view.open_reader(&id).and_then(|r| ready(&id, r, &asked, INLINE)) {
            Ok(r) => respond(&id, r, st.cfg.timeout).await,
            Err(e) => failure(e),
        };
    }
    match with_view(&st.store, access, move |view| {
        ready(&id, view.open_reader(&id)?, &asked, WHOLE)
    })
    .await
    {
        Ok(r) => respond(&id, r, st.cfg.timeout).await,
        Err(r) => r,
    }
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
    let asked = Asked::of(headers, with_body);
    let inline = if st.inline_reads {
        typed(st, &st.store.view(access.audience), &id, &asked, INLINE, true)
    } else {
        None
    };
    let opened = match inline {
        Some(r) => r.map_err(failure),
        None => {
            let s2 = st.clone();
            with_view(&st.store, access, move |view| {
                typed(&s2, view, &id, &asked, WHOLE, false).expect("waits for the index")
            })
            .await
        }
    };
    let (ready, media) = match opened {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut r = respond(&id, ready, st.cfg.timeout).await;
    if let Some(v) = media.and_then(|m| HeaderValue::from_str(&m).ok()) {
        if r.status().is_success() {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
    }
    r
}

/// The answer and the media type for artifact `id`, the body read when it
/// is at most `now` bytes. The media type is looked up beside the query
/// index's writer; `None` when that failed and `no_wait` (the caller asks
/// again from a blocking thread, which waits for the index).
fn typed(
    st: &State,
    view: &asl_core::View<'_>,
    id: &ArtifactId,
    asked: &Asked,
    now: u64,
    no_wait: bool,
) -> Option<Result<(Ready, Option<String>), asl_records::RecordError>> {
    // A lookup that fails beside the writer (the index rebuilt under the
    // handle) is asked again through the index itself, which waits.
    let media = match st
        .index
        .subjects()
        .map(|h| asl_records::labels::media_type_in(view, &h, id))
    {
        Some(Err(_)) if no_wait => return None,
        Some(Err(_)) => st
            .index
            .read_if_open(|i| asl_records::labels::media_type_of(view, i, id)),
        m => m,
    };
    Some((|| {
        let media = media.transpose()?.flatten();
        Ok((ready(id, view.open_reader(id)?, asked, now)?, media))
    })())
}

/// The response carrying what `reader` reads (artifact `id`), opened
/// elsewhere: whole, one range, or headers only.
pub(super) async fn send_reader(
    id: ArtifactId,
    reader: ArtifactReader,
    headers: &HeaderMap,
    with_body: bool,
    idle: std::time::Duration,
) -> Response {
    let asked = Asked::of(headers, with_body);
    match blocking(move || ready(&id, reader, &asked, WHOLE)).await {
        Ok(r) => respond(&id, r, idle).await,
        Err(r) => r,
    }
}

async fn respond(id: &ArtifactId, ready: Ready, idle: std::time::Duration) -> Response {
    let tag = etag(id);
    let (status, start, count, len, body) = match ready {
        Ready::NotModified => {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(header::ETAG, tag);
            return r;
        }
        Ready::Unsatisfiable(len) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the artifact has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Ready::Send {
            status,
            start,
            count,
            len,
            body,
        } => (status, start, count, len, body),
    };
    let body = match body {
        Content::Empty => Body::empty(),
        Content::Whole(b) => Body::from(b),
        Content::Later(reader) => match blocking(move || read_whole(*reader, start, count)).await {
            Ok(b) => Body::from(b),
            Err(r) => return r,
        },
        Content::Stream(reader) => stream(*reader, start, count, idle),
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
/// client sees a short response, not wrong bytes). Each piece is the
/// buffer its chunk was verified in (or the block cache's copy of it),
/// handed to the socket without another copy. A client that takes no
/// bytes for `idle` is cut off, so a stalled reader does not hold a thread.
fn stream(mut reader: ArtifactReader, start: u64, count: u64, idle: std::time::Duration) -> Body {
    // Two pieces (1 MiB each at the default chunk size) wait for the
    // socket while the reader verifies the next ones.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
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
            match reader.next_piece() {
                Ok(None) => return,
                Ok(Some(p)) => {
                    if !give(Ok(Bytes::from_owner(p))) {
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
