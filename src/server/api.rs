//! The `/v1` routes: artifacts in and out, listings, the missing check.
//! Each handler turns the request into store calls on a blocking thread
//! and the store's answer into a status, headers and a JSON or byte body.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State as S};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::json;

use super::auth::Scope;
use super::send::send;
use super::State;
use crate::{ArtifactId, Error, PutOptions};

pub(super) fn routes(st: Arc<State>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/artifacts", put(put_new).get(list))
        .route("/v1/artifacts:missing", post(missing))
        .route("/v1/artifacts/{id}", put(put_named).get(get_one).head(head_one))
        .merge(super::cache::routes())
        .merge(super::views::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(st.clone(), authorize))
        .layer(middleware::from_fn_with_state(st.clone(), access_log))
        .with_state(st)
}

/// One line per request on stderr when the config asks for it (answers to
/// refused tokens included: it runs outside `authorize`).
async fn access_log(S(st): S<Arc<State>>, req: Request, next: Next) -> Response {
    if !st.cfg.access_log {
        return next.run(req).await;
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = std::time::Instant::now();
    let r = next.run(req).await;
    eprintln!(
        "{} {method} {path} {} {:.1}ms",
        crate::records::time::now_millis(),
        r.status().as_u16(),
        t.elapsed().as_secs_f64() * 1e3
    );
    r
}

pub(super) fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

/// A store error as a response: what the client did wrong is 4xx, damage
/// and failures are 5xx; messages are the store's one line.
fn store_error(e: Error) -> Response {
    let code = match &e {
        Error::NotFound(_) | Error::SnapshotNotFound(_) => StatusCode::NOT_FOUND,
        // The snapshot held it, but its bytes have since been collected.
        Error::NotRetained(_) => StatusCode::GONE,
        Error::SnapshotExists(_) => StatusCode::CONFLICT,
        Error::IdMismatch(_) | Error::InvalidArgument(_) | Error::InvalidId { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

/// Runs store work on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_error(e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store task failed: {e}"),
        )),
    }
}

/// What the caller may see, set on every request by [`authorize`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Access {
    /// Only published artifacts exist for this caller.
    pub(super) published_only: bool,
}

impl Access {
    /// Whether `id` is live and visible to this caller. An internal artifact
    /// is, to a published-only caller, exactly as absent as a missing one.
    pub(super) fn sees(&self, store: &crate::Store, id: &ArtifactId) -> crate::Result<bool> {
        Ok(match store.info(id)? {
            None => false,
            Some(i) => !self.published_only || i.visibility == crate::Visibility::Published,
        })
    }

    /// Whether a put is answered as new: for a published-only caller,
    /// whether the artifact was absent *to it*. Bytes it sends that the
    /// store holds as internal are answered as new, exactly as bytes the
    /// store lacked (which it now holds as internal too), so a put never
    /// tells such a caller what internal content exists.
    pub(super) fn shown_new(&self, store: &crate::Store, id: &ArtifactId, new: bool) -> crate::Result<bool> {
        if new || !self.published_only {
            return Ok(new);
        }
        Ok(!self.sees(store, id)?)
    }
}

/// Checks the bearer token against what the call needs: reads need `read`,
/// puts `write`. No tokens configured: everyone may (loopback only).
async fn authorize(S(st): S<Arc<State>>, mut req: Request, next: Next) -> Response {
    let Some(tokens) = &st.cfg.tokens else {
        req.extensions_mut().insert(Access { published_only: false });
        return next.run(req).await;
    };
    let path = req.uri().path();
    let writes = req.method() == Method::POST && (path == "/v1/records" || path.ends_with("/labels"));
    let need = if req.method() == Method::PUT || writes {
        Scope::Write
    } else if req.method() == Method::POST && req.uri().path().starts_with("/v1/snapshots") {
        Scope::Admin
    } else {
        Scope::Read
    };
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match presented.and_then(|h| tokens.check(h)) {
        None => {
            let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        Some(t) if t.scope < need => error(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} may not {}",
                t.name,
                match need {
                    Scope::Read => "read",
                    Scope::Write => "write",
                    Scope::Admin => "administer",
                }
            ),
        ),
        Some(t) => {
            req.extensions_mut().insert(Access {
                published_only: t.published_only,
            });
            next.run(req).await
        }
    }
}

async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// A JSON request body, or why it is not one. The body is read as JSON
/// whatever its `Content-Type` says: `curl -d '{...}'` sends a form type,
/// and most JSON APIs take it as JSON all the same.
pub(super) struct JsonBody<T>(Result<T, String>);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> axum::extract::FromRequest<St> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Response> {
        let bytes = <Bytes as axum::extract::FromRequest<St>>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(JsonBody(serde_json::from_slice(&bytes).map_err(|e| e.to_string())))
    }
}

/// The body, or 400 saying what shape was expected.
pub(super) fn json_body<T>(b: JsonBody<T>, shape: &str) -> Result<T, Refused> {
    b.0.map_err(|e| Refused(StatusCode::BAD_REQUEST, format!("expected {shape}: {e}")))
}

/// A request this API refuses: its status and one line.
pub(super) struct Refused(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

pub(super) fn parse_id(text: &str) -> Result<ArtifactId, Refused> {
    // Only a full id: a path parameter is never a prefix, a path or a pattern.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = text.chars().take(80).collect();
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            format!("{shown:?} is not an artifact id (64 hex digits)"),
        ));
    }
    text.to_ascii_lowercase()
        .parse()
        .map_err(|e: Error| Refused(StatusCode::BAD_REQUEST, e.to_string()))
}

/// An upload's bytes, handed from the async side to the blocking put.
struct Incoming {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
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

async fn put_new(S(st): S<Arc<State>>, Extension(a): Extension<Access>, headers: HeaderMap, body: Body) -> Response {
    upload(st, a, None, &headers, body).await
}

async fn put_named(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match parse_id(&id) {
        Ok(id) => upload(st, a, Some(id), &headers, body).await,
        Err(r) => r.into_response(),
    }
}

/// Streams the body into the store and commits; on any failure (too large,
/// too slow, cut off, not the expected id) nothing stays.
async fn upload(
    st: Arc<State>,
    access: Access,
    expect: Option<ArtifactId>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let put = match receive(&st, PutOptions::new().expect(expect), headers, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let store = st.store.clone();
    match blocking(move || {
        store.commit()?;
        access.shown_new(&store, &put.id, put.new)
    })
    .await
    {
        Ok(new) => stored(&put, new),
        Err(r) => r,
    }
}

/// The answer to an acknowledged put: 201 when new (to the caller, see
/// [`Access::shown_new`]), 200 when it was there.
pub(super) fn stored(put: &crate::Put, new: bool) -> Response {
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
) -> Result<crate::Put, Response> {
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
    let task = tokio::task::spawn_blocking(move || {
        let put = store.put_reader_with(Incoming { rx, buf: Bytes::new() }, &opts);
        // Memory follows the uploads in flight: this thread's windows go
        // now, and when the last upload ends the allocator gives back what
        // its arenas hold.
        crate::store::release_thread_buffers();
        drop(permit);
        if uploads.available_permits() == total {
            super::trim();
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

async fn get_one(s: S<Arc<State>>, a: Extension<Access>, id: Path<String>, headers: HeaderMap) -> Response {
    artifact(s, a, id, headers, true).await
}

async fn head_one(s: S<Arc<State>>, a: Extension<Access>, id: Path<String>, headers: HeaderMap) -> Response {
    artifact(s, a, id, headers, false).await
}

/// GET and HEAD of one artifact: whole or one range, verified.
async fn artifact(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    headers: HeaderMap,
    with_body: bool,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    send(&st, access, id, &headers, with_body).await
}

#[derive(serde::Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// A page of the live artifacts in id order: those after `after`, at most
/// `limit` (1000 by default, 10000 at most); `next` is the `after` of the
/// next page, absent on the last.
async fn list(S(st): S<Arc<State>>, Extension(access): Extension<Access>, Query(q): Query<ListQuery>) -> Response {
    let after = match q.after.as_deref().map(parse_id).transpose() {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let store = st.store.clone();
    let page = blocking(move || {
        let iter = match &after {
            Some(a) => store.iter_from(a)?,
            None => store.iter()?,
        };
        let mut out = Vec::new();
        let mut more = false;
        for info in iter {
            let info = info?;
            if Some(info.id) == after || (access.published_only && info.visibility != crate::Visibility::Published) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(info);
        }
        Ok((out, more))
    })
    .await;
    match page {
        Ok((items, more)) => {
            let next = if more {
                items.last().map(|i| i.id.to_hex())
            } else {
                None
            };
            Json(json!({
                "artifacts": items.iter().map(|i| json!({"id": i.id.to_hex(), "len": i.len})).collect::<Vec<_>>(),
                "next": next,
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct MissingBody {
    ids: Vec<String>,
}

/// Which of the given ids the store does not hold (have/want: a client
/// sends only those).
async fn missing(S(st): S<Arc<State>>, Extension(access): Extension<Access>, body: JsonBody<MissingBody>) -> Response {
    let body = match json_body(body, "{\"ids\": [...]}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.ids.len() > st.cfg.max_batch {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} ids, more than the {} a call may ask about",
                body.ids.len(),
                st.cfg.max_batch
            ),
        );
    }
    let ids = match body.ids.iter().map(|i| parse_id(i)).collect::<Result<Vec<_>, _>>() {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    match blocking(move || {
        let mut out = Vec::new();
        for id in ids {
            // What the caller may not see is, to it, missing.
            if !access.sees(&store, &id)? {
                out.push(id.to_hex());
            }
        }
        Ok(out)
    })
    .await
    {
        Ok(m) => Json(json!({"missing": m})).into_response(),
        Err(r) => r,
    }
}
