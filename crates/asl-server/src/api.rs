//! The `/v1` routes: artifacts in and out, listings, the missing check.
//! Each handler turns the request into store calls on a blocking thread
//! and the store's answer into a status, headers and a JSON or byte body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State as S};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use super::auth::Scope;
use super::http::{blocking, error, json_body, parse_id, with_view, Access, JsonBody, Route};
use super::metrics::{Counted, Memory};
use super::send::send_typed;
use super::upload::{receive, stored};
use super::{LogFormat, State};
use asl_core::{ArtifactId, Audience, PutOptions};
use asl_records::RecordError;

/// Every route the server answers: `/v1`, the build caches' and the views'.
pub(super) fn table() -> Vec<Route> {
    let r = |path, methods, handlers| Route {
        path,
        methods,
        handlers,
    };
    let mut t = vec![
        r("/v1/health", &["GET", "HEAD"], get(health)),
        r("/metrics", &["GET", "HEAD"], get(metrics)),
        r("/v1/artifacts", &["GET", "HEAD", "PUT"], put(put_new).get(list)),
        r("/v1/artifacts:missing", &["POST"], post(missing)),
        r(
            "/v1/artifacts/{id}",
            &["GET", "HEAD", "PUT", "DELETE"],
            put(put_named)
                .get(get_one)
                .head(head_one)
                .delete(super::admin::remove_one),
        ),
    ];
    t.extend(super::admin::routes());
    t.extend(super::cache::routes());
    t.extend(super::views::routes());
    t
}

pub(super) fn routes(st: Arc<State>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handlers))
        .with_state(st.clone())
        .merge(crate::reapi::router(st.clone()))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(
            st.clone(),
            crate::replica::redirect_writes,
        ))
        .layer(middleware::from_fn_with_state(st.clone(), authorize))
        .layer(middleware::from_fn_with_state(st, observe))
}

/// Counts every request for `/metrics` and writes its access log line when
/// the config asks for one (answers to refused tokens included: it runs
/// outside `authorize`). Bodies are counted as they pass.
async fn observe(S(st): S<Arc<State>>, req: Request, next: Next) -> Response {
    let t = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The route's template, never the path: labels must not name artifacts.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let (received, sent) = (st.metrics.received(), st.metrics.sent());
    let req = req.map(|b| Counted::wrap(b, received));
    let r = next.run(req).await;
    let took = t.elapsed();
    let status = r.status().as_u16();
    st.metrics.request(&route, method.as_str(), status, took);
    if st.cfg.access_log {
        let ms = took.as_secs_f64() * 1e3;
        let time = asl_records::time::now_millis();
        // A gRPC call that failed at once says so in its headers (HTTP 200
        // all the same); one that fails later, in trailers this log does
        // not see.
        let grpc = r
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok());
        match st.cfg.log_format {
            LogFormat::Text => {
                let grpc = grpc.map(|g| format!(" grpc-status={g}")).unwrap_or_default();
                eprintln!("{time} {method} {path} {status}{grpc} {ms:.1}ms")
            }
            LogFormat::Json => eprintln!(
                "{}",
                json!({"time": time, "method": method.as_str(), "path": path, "route": route, "status": status, "grpc_status": grpc, "ms": (ms * 10.0).round() / 10.0})
            ),
        }
    }
    r.map(|b| Counted::wrap(b, sent))
}

/// `/metrics`: OpenMetrics text for Prometheus (read scope). The store's
/// figures are taken again when a minute has passed since the last time.
/// They count internal artifacts too, so a token that sees published ones
/// only may not read them.
async fn metrics(S(st): S<Arc<State>>, Extension(access): Extension<Access>) -> Response {
    if access.audience == Audience::Published {
        return error(
            StatusCode::FORBIDDEN,
            "this token sees published artifacts only; the metrics count all of them",
        );
    }
    if st.metrics.stat_due() {
        let store = st.store.clone();
        if let Ok(s) = blocking(move || store.maintenance().stat()).await {
            st.metrics.store_figures(&s);
        }
    }
    let in_flight = st.cfg.max_uploads.max(1) - st.uploads.available_permits();
    let memory = memory_parts(&st);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(
            in_flight,
            st.index.entries.space().usage(),
            st.cfg.cache_max_size,
            &memory,
        ),
    )
        .into_response()
}

/// The heap's bounded parts, each beside its bound.
fn memory_parts(st: &State) -> Vec<Memory> {
    let store = st.store.maintenance().memory();
    let mut parts = vec![
        Memory {
            part: "block_cache",
            bytes: store.block_cache_bytes,
            bound: store.block_cache_budget,
        },
        Memory {
            part: "index_memtable",
            bytes: store.memtable_bytes,
            bound: store.memtable_bound,
        },
        Memory {
            part: "read_buffers",
            bytes: store.read_buffer_bytes,
            bound: store.read_buffer_bound,
        },
    ];
    if let Some(q) = st.index.memory() {
        parts.push(Memory {
            part: "query_cache",
            bytes: q.cache_bytes,
            bound: q.cache_budget,
        });
        parts.push(Memory {
            part: "query_memtables",
            bytes: q.memtable_bytes,
            bound: q.memtable_budget,
        });
    }
    parts
}

/// Checks the bearer token against what the call needs: reads need `read`,
/// puts `write`. No tokens configured: everyone may (loopback only).
async fn authorize(S(st): S<Arc<State>>, mut req: Request, next: Next) -> Response {
    let Some(tokens) = &st.cfg.tokens else {
        req.extensions_mut().insert(Access {
            audience: Audience::Owner,
            scope: Scope::Admin,
        });
        return next.run(req).await;
    };
    let need = scope_of(req.method(), req.uri().path());
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let grpc = crate::reapi::is_grpc(&req);
    match presented.and_then(|h| tokens.check(h)) {
        None if grpc => tonic::Status::unauthenticated("a valid bearer token is needed").into_http(),
        Some(t) if grpc && t.scope < need => {
            tonic::Status::permission_denied(format!("token {:?} may not write", t.name)).into_http()
        }
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
                audience: if t.published_only {
                    Audience::Published
                } else {
                    Audience::Owner
                },
                scope: t.scope,
            });
            next.run(req).await
        }
    }
}

/// The scope a call needs: upkeep (removal and expiry, GC, verify, seal,
/// figures, pins, snapshots made or deleted) is for admins, puts, records and
/// labels for writers, every other read for readers.
fn scope_of(method: &Method, path: &str) -> Scope {
    let upkeep = ["/v1/gc", "/v1/verify", "/v1/seal", "/v1/stat", "/v1/artifacts:remove"];
    if method == Method::DELETE
        || upkeep.contains(&path)
        || path == "/v1/pins"
        || path.starts_with("/v1/pins/")
        || (method == Method::POST && path.starts_with("/v1/snapshots"))
        || (method == Method::POST && path.ends_with("/expiry"))
    {
        Scope::Admin
    } else if method == Method::PUT
        || (method == Method::POST && (path == "/v1/records" || path == "/v1/runs" || path.ends_with("/labels")))
        || crate::reapi::writes(path)
    {
        Scope::Write
    } else {
        Scope::Read
    }
}

async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
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
    let s2 = st.clone();
    match with_view(&st.store, access, move |view| {
        view.store().commit()?;
        if !put.new {
            // The same bytes may be a cache entry's: they are the
            // uploader's now too, and eviction must leave them. (With the
            // index not open, no cache entry was written yet.)
            s2.index.if_open(|i| s2.index.entries.claim(view.store(), i, &put.id))?;
        }
        Ok::<_, RecordError>(view.shown_new(&put.id, put.new)?)
    })
    .await
    {
        Ok(new) => stored(&put, new),
        Err(r) => r,
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
    send_typed(&st, access, id, &headers, with_body).await
}

#[derive(serde::Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    domain: Option<String>,
    visibility: Option<String>,
}

/// A page of the live artifacts in id order: those after `after`, at most
/// `limit` (1000 by default, 10000 at most), of one domain and visibility
/// when `domain` and `visibility` say; `next` is the `after` of the next
/// page, absent on the last.
async fn list(S(st): S<Arc<State>>, Extension(access): Extension<Access>, Query(q): Query<ListQuery>) -> Response {
    let after = match q.after.as_deref().map(parse_id).transpose() {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let only = match super::http::list_filter(&st, &q.domain, &q.visibility) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let page = with_view(&st.store, access, move |view| {
        let iter: Box<dyn Iterator<Item = asl_core::Result<asl_core::ArtifactInfo>>> = match &after {
            Some(a) => Box::new(only.apply(view.iter_from(a)?)),
            None => Box::new(only.apply(view.iter()?)),
        };
        let mut out = Vec::new();
        let mut more = false;
        for info in iter {
            let info = info?;
            if Some(info.id) == after {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(info);
        }
        Ok::<_, asl_core::Error>((out, more))
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
    match with_view(&st.store, access, move |view| {
        let mut out = Vec::new();
        for id in ids {
            // What the caller may not see is, to it, missing.
            if !view.contains(&id)? {
                out.push(id.to_hex());
            }
        }
        Ok::<_, asl_core::Error>(out)
    })
    .await
    {
        Ok(m) => Json(json!({"missing": m})).into_response(),
        Err(r) => r,
    }
}
