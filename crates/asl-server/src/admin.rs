//! Upkeep of a served store, for admin tokens: removal, GC, verify, seal,
//! figures, pins and snapshot deletion — everything `aslctl` does to a
//! store, while the server holds its writer lock. Each call runs the same
//! library function the CLI runs in-process, on a blocking thread, and
//! answers with the same JSON report, so `aslctl --server` prints what it
//! would have printed itself.
//!
//! Removal goes through the caller's view: what the caller cannot see, it
//! cannot remove (it is answered as absent).

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State as S};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Json;
use serde_json::json;

use super::http::{blocking, error, json_body, parse_id, with_view, Access, JsonBody, Refused, Route};
use super::State;
use asl_core::{ArtifactId, GcOptions};
use asl_federation::removal::{remove, Removal};
use asl_federation::FederationError;

pub(super) fn routes() -> Vec<Route> {
    let r = |path, methods, handlers| Route {
        path,
        methods,
        handlers,
    };
    vec![
        r("/v1/artifacts:remove", &["POST"], post(remove_many)),
        r("/v1/artifacts/{id}/expiry", &["POST"], post(expiry)),
        r("/v1/gc", &["POST"], post(gc)),
        r("/v1/verify", &["POST"], post(verify)),
        r("/v1/seal", &["POST"], post(seal)),
        r("/v1/stat", &["GET", "HEAD"], get(stat)),
        r("/v1/pins", &["GET", "HEAD"], get(pins)),
        r("/v1/pins/{name}", &["PUT", "DELETE"], put(pin).delete(unpin)),
        r("/v1/snapshots/{name}", &["DELETE"], delete(delete_snapshot)),
    ]
}

/// A snapshot made or deleted, for the admin who did it.
pub(super) fn snapshot_json(m: &asl_core::SnapshotMeta) -> serde_json::Value {
    json!({
        "name": m.name,
        "identity": m.identity.to_string(),
        "created": m.created,
        "artifacts": m.artifacts,
        "bytes": m.bytes,
    })
}

#[derive(serde::Deserialize)]
pub(super) struct Force {
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/artifacts/{id}`: removes one artifact (`?force=true` as
/// `aslctl rm --force`); 404 when it is not live.
pub(super) async fn remove_one(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(id): Path<String>,
    Query(f): Query<Force>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match removal(st, a, vec![id], f.force).await {
        Ok(r) if r.removed.is_empty() => error(StatusCode::NOT_FOUND, format!("artifact {id} not found")),
        Ok(r) => Json(removal_json(&r)).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct RemoveMany {
    ids: Vec<String>,
    #[serde(default)]
    force: bool,
}

/// `POST /v1/artifacts:remove`: removes many at once, all or none refused.
async fn remove_many(S(st): S<Arc<State>>, Extension(a): Extension<Access>, body: JsonBody<RemoveMany>) -> Response {
    let body = match json_body(body, "{\"ids\": [...], \"force\": false}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.ids.len() > st.cfg.max_batch {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} ids; at most {} at once", body.ids.len(), st.cfg.max_batch),
        );
    }
    let ids: Result<Vec<ArtifactId>, Refused> = body.ids.iter().map(|i| parse_id(i)).collect();
    match ids {
        Ok(ids) => match removal(st, a, ids, body.force).await {
            Ok(r) => Json(removal_json(&r)).into_response(),
            Err(r) => r,
        },
        Err(r) => r.into_response(),
    }
}

/// Removes `ids` as the library's removal does, after the caller's view
/// has sorted out those it cannot see (reported as not found, untouched).
async fn removal(st: Arc<State>, a: Access, ids: Vec<ArtifactId>, force: bool) -> Result<Removal, Response> {
    let store = st.store.clone();
    with_view(&store, a, move |view| {
        let mut seen = Vec::new();
        let mut hidden = Vec::new();
        for id in ids {
            if view.contains(&id)? {
                seen.push(id);
            } else {
                hidden.push(id);
            }
        }
        let mut r = st
            .index
            .with(|index| Ok::<_, asl_records::RecordError>(remove(view.store(), index, &seen, force)))
            .map_err(FederationError::from)??;
        r.not_found.extend(hidden);
        Ok::<_, FederationError>(r)
    })
    .await
}

fn removal_json(r: &Removal) -> serde_json::Value {
    let hex = |ids: &[ArtifactId]| ids.iter().map(|i| i.to_hex()).collect::<Vec<_>>();
    let mut v = json!({"removed": hex(&r.removed), "not_found": hex(&r.not_found)});
    if let Some(p) = &r.withdrawn {
        v["unpublished"] = json!({"artifacts": p.changed.len(), "manifest_seq": p.seq});
    }
    v
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiryBody {
    ttl: Option<u64>,
    until: Option<String>,
}

/// `POST /v1/artifacts/{id}/expiry`: makes an artifact ephemeral (an
/// `asl/expiry` record), `{"ttl": SECONDS}` from now or `{"until": TIME}`;
/// the sweep before each GC removes it once that time has passed. Admin
/// scope: it schedules a removal.
async fn expiry(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(id): Path<String>,
    body: JsonBody<ExpiryBody>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let b = match json_body(body, "{\"ttl\": 3600} or {\"until\": \"2026-12-31T00:00:00Z\"}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let now = asl_records::time::now_ns().max(0) as u64 / 1_000_000_000;
    let at = match (b.ttl, b.until.as_deref()) {
        (Some(t), None) => now.saturating_add(t),
        (None, Some(u)) => match asl_records::time::parse(u) {
            Some(at) => at,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("until {u:?} is not a date or an RFC 3339 UTC time"),
                )
            }
        },
        _ => return error(StatusCode::BAD_REQUEST, "give ttl or until, one of them"),
    };
    let set = with_view(&st.store.clone(), a, move |view| {
        if !view.contains(&id)? {
            return Err(asl_records::RecordError::Store(asl_core::Error::NotFound(id)));
        }
        let r = asl_records::expiry::set(view.store(), &id, at)?;
        view.store().commit()?;
        Ok(r)
    })
    .await;
    match set {
        Ok(r) => (
            StatusCode::CREATED,
            Json(json!({"record": r.to_hex(), "expires_at": asl_records::time::format(at)})),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct GcBody {
    threshold: Option<f64>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/gc`: a GC run while the server goes on serving (puts wait only
/// while a batch of copies is written); the report of `aslctl gc --json`.
async fn gc(S(st): S<Arc<State>>, body: JsonBody<GcBody>) -> Response {
    let body = match json_body(body, "{\"threshold\": 0.95, \"dry_run\": false}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let opts = GcOptions {
        threshold: body.threshold.unwrap_or(asl_core::DEFAULT_GC_THRESHOLD),
        dry_run: body.dry_run,
    };
    if !(0.0..=1.0).contains(&opts.threshold) {
        return error(StatusCode::BAD_REQUEST, "threshold must be between 0 and 1");
    }
    let st2 = st.clone();
    let got = blocking(move || {
        let x = crate::upkeep::expire(&st2, opts.dry_run)?;
        let r = st2.store.maintenance().gc(&opts)?;
        let after = st2.store.maintenance().stat()?;
        Ok::<_, FederationError>((x, r, after.physical_bytes))
    })
    .await;
    match got {
        Ok((x, r, physical_after)) => {
            st.metrics.gc_done(r.reclaimed_bytes);
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["physical_after"] = json!(physical_after);
            v["expired"] = json!(x.removed.len());
            v["expired_held"] = json!(x.held.len());
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    budget: Option<u64>,
    sample: Option<f64>,
    #[serde(default)]
    since_last: bool,
}

/// `POST /v1/verify`: a scrub, whole or (`budget=BYTES` or `sample=FRACTION`,
/// `since_last=true`) in budget; the report of `aslctl verify --json` (200
/// whether or not it found problems: the report says).
async fn verify(
    S(st): S<Arc<State>>,
    q: Result<axum::extract::Query<VerifyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let budget = match (q.budget, q.sample) {
        (Some(_), Some(_)) => return error(StatusCode::BAD_REQUEST, "give budget or sample, not both"),
        (Some(b), None) => Some(asl_core::ScrubBudget::Bytes(b)),
        (None, Some(f)) if (0.0..=1.0).contains(&f) => Some(asl_core::ScrubBudget::Fraction(f)),
        (None, Some(_)) => return error(StatusCode::BAD_REQUEST, "sample must be between 0 and 1"),
        (None, None) => None,
    };
    let opts = asl_core::ScrubOptions {
        budget,
        since_last: q.since_last,
    };
    let store = st.store.clone();
    match blocking(move || store.maintenance().scrub(&opts)).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}

/// `POST /v1/seal`: seals the open segment; says which (`null` when none
/// was open), as `aslctl seal --json` does.
async fn seal(S(st): S<Arc<State>>) -> Response {
    let store = st.store.clone();
    match blocking(move || store.maintenance().seal()).await {
        Ok(sealed) => Json(json!({ "sealed": sealed })).into_response(),
        Err(r) => r,
    }
}

/// `GET /v1/stat`: the figures of `aslctl stat --json`.
async fn stat(S(st): S<Arc<State>>) -> Response {
    let store = st.store.clone();
    match blocking(move || store.maintenance().stat()).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn pins(S(st): S<Arc<State>>) -> Response {
    let list: Vec<serde_json::Value> = st
        .store
        .pins()
        .list()
        .iter()
        .map(|(n, id)| json!({"name": n, "id": id.to_hex()}))
        .collect();
    Json(json!({"pins": list})).into_response()
}

#[derive(serde::Deserialize)]
struct PinBody {
    id: String,
    /// Move the pin when it exists (`aslctl pin --force`).
    #[serde(default)]
    force: bool,
}

/// `PUT /v1/pins/{name}`: pins an artifact (live, or held by a snapshot).
async fn pin(S(st): S<Arc<State>>, Path(name): Path<String>, body: JsonBody<PinBody>) -> Response {
    let body = match json_body(body, "{\"id\": \"<64 hex digits>\"}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let id = match parse_id(&body.id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    let name2 = name.clone();
    let done = blocking(move || {
        if body.force {
            store.pins().set(&name2, &id)
        } else {
            store.pins().add(&name2, &id)
        }
    })
    .await;
    match done {
        Ok(()) => (StatusCode::CREATED, Json(json!({"pinned": name, "id": id.to_hex()}))).into_response(),
        Err(r) => r,
    }
}

async fn unpin(S(st): S<Arc<State>>, Path(name): Path<String>) -> Response {
    let store = st.store.clone();
    let name2 = name.clone();
    match blocking(move || store.pins().remove(&name2)).await {
        Ok(id) => Json(json!({"unpinned": name, "id": id.to_hex()})).into_response(),
        Err(r) => r,
    }
}

async fn delete_snapshot(S(st): S<Arc<State>>, Path(name): Path<String>) -> Response {
    let store = st.store.clone();
    match blocking(move || store.snapshots().delete(&name)).await {
        Ok(m) => Json(snapshot_json(&m)).into_response(),
        Err(r) => r,
    }
}
