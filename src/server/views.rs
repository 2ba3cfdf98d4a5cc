//! What the store knows beyond bytes, over HTTP: snapshots (list, create,
//! read an artifact as of one), records in (checked against their schema)
//! and out as JSON, labels on artifacts, `find` by labels and type, and
//! lineage through PEL receipts; for federation, the publication and an
//! artifact's chunk tree. Every answer is filtered by what
//! the caller may see: to a published-only token an internal artifact, a
//! record about one, or a step that touched one does not exist.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State as S};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::api::{blocking, error, json_body, parse_id, Access, JsonBody};
use super::send::send_reader;
use super::State;
use crate::pel::provenance::{self, Direction};
use crate::records::query::Query as Find;
use crate::records::{self, Source};
use crate::{ArtifactId, Error, Visibility};

pub(super) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/v1/snapshots", get(list_snapshots).post(create_snapshot))
        .route("/v1/snapshots/{name}/artifacts/{id}", get(snap_get).head(snap_head))
        .route("/v1/records", axum::routing::post(new_record))
        .route("/v1/records/{id}", get(record))
        .route("/v1/artifacts/{id}/labels", axum::routing::post(label))
        .route("/v1/find", get(find))
        .route("/v1/lineage/{id}", get(lineage))
        .route("/v1/publication", get(publication))
        .route("/v1/artifacts/{id}/tree", get(tree))
}

async fn list_snapshots(S(st): S<Arc<State>>, Extension(access): Extension<Access>) -> Response {
    let list: Vec<serde_json::Value> = st
        .store
        .snapshots()
        .iter()
        .map(|m| {
            if access.published_only {
                // Counts would say how much internal data there is.
                json!({"name": m.name, "created": m.created})
            } else {
                json!({"name": m.name, "created": m.created, "artifacts": m.artifacts, "bytes": m.bytes})
            }
        })
        .collect();
    Json(json!({"snapshots": list})).into_response()
}

/// The domain's latest publication manifest and its signature record
/// (both published, so any token may read them; federation fetches start
/// here).
async fn publication(S(st): S<Arc<State>>) -> Response {
    match crate::federation::publish::latest_ids(&st.store) {
        Some((manifest, signature)) => {
            let cosignatures: Vec<String> = crate::federation::cosign::cosignatures(&st.store)
                .iter()
                .map(|c| c.to_hex())
                .collect();
            Json(json!({"manifest": manifest.to_hex(), "signature": signature.to_hex(), "cosignatures": cosignatures}))
                .into_response()
        }
        None => super::api::error(StatusCode::NOT_FOUND, "this domain publishes nothing"),
    }
}

/// An artifact's tree: the chaining values of its 1 MiB chunks, 32 bytes
/// each, concatenated, so a fetching domain can verify each chunk as it
/// arrives and resume from any chunk (`federation::ranged`).
async fn tree(S(st): S<Arc<State>>, Extension(access): Extension<Access>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    let got = blocking(move || {
        if !access.sees(&store, &id)? {
            return Err(Error::NotFound(id));
        }
        crate::federation::ranged::tree_of(&store, &id)
    })
    .await;
    match got {
        Ok(cvs) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            cvs.concat(),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct NewSnapshot {
    name: String,
}

/// Takes a named snapshot of CURRENT (admin scope).
async fn create_snapshot(S(st): S<Arc<State>>, body: JsonBody<NewSnapshot>) -> Response {
    let body = match json_body(body, "{\"name\": ...}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    match blocking(move || store.snapshot(&body.name)).await {
        Ok(m) => (
            StatusCode::CREATED,
            Json(json!({"name": m.name, "created": m.created, "artifacts": m.artifacts, "bytes": m.bytes})),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn snap_get(s: S<Arc<State>>, a: Extension<Access>, p: Path<(String, String)>, headers: HeaderMap) -> Response {
    snap(s, a, p, headers, true).await
}

async fn snap_head(s: S<Arc<State>>, a: Extension<Access>, p: Path<(String, String)>, headers: HeaderMap) -> Response {
    snap(s, a, p, headers, false).await
}

/// An artifact as of a snapshot: verified like every read, 404 when the
/// snapshot lacks it or the caller may not see it.
async fn snap(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    with_body: bool,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    let reader = blocking(move || {
        let view = store.at(&name)?;
        match view.info(&id)? {
            Some(i) if !access.published_only || i.visibility == Visibility::Published => view.open_reader(&id),
            _ => Err(Error::NotFound(id)),
        }
    })
    .await;
    match reader {
        Ok(r) => send_reader(id, r, &headers, with_body, st.cfg.timeout).await,
        Err(r) => r,
    }
}

/// A record as JSON (`records::json`'s view).
async fn record(S(st): S<Arc<State>>, Extension(access): Extension<Access>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    let got = blocking(move || {
        if !access.sees(&store, &id)? {
            return Err(Error::NotFound(id));
        }
        let r = records::get(&*store as &dyn Source, &id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(records::json::record_to_json(&r))
    })
    .await;
    match got {
        Ok(j) => Json(j).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FindQuery {
    /// `key=value`, repeatable as `label=a=1&label=b=2`... one here: axum's
    /// query parser takes the last; several go comma-separated.
    label: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    media_type: Option<String>,
    /// Records made at or after this time, before `until` (`YYYY-MM-DD` or
    /// RFC 3339 UTC), as `aslctl find` takes them.
    since: Option<String>,
    until: Option<String>,
    /// At most this many hits, the newest.
    limit: Option<usize>,
}

/// Artifacts found by labels (`label=k=v,k2=v2`), record type, media type
/// and time, oldest first: each subject with the records that matched. A
/// parameter the endpoint does not take is refused, naming it, rather than
/// answered as if it were not there.
async fn find(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    q: Result<Query<FindQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut labels = Vec::new();
    for part in q.label.iter().flat_map(|l| l.split(',')).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => labels.push((k.to_string(), v.to_string())),
            None => return error(StatusCode::BAD_REQUEST, format!("label {part:?} is not key=value")),
        }
    }
    let mut times = [None, None];
    for (slot, (name, text)) in times.iter_mut().zip([("since", &q.since), ("until", &q.until)]) {
        if let Some(t) = text {
            match records::time::parse(t) {
                Some(v) => *slot = Some(v),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("{name}={t:?} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)"),
                    )
                }
            }
        }
    }
    let query = Find {
        labels,
        media_type: q.media_type,
        type_name: q.type_name,
        since: times[0],
        until: times[1],
    };
    let limit = q.limit;
    let s2 = st.clone();
    let hits = blocking(move || {
        let hits = s2.index.with(|i| {
            i.refresh(&s2.store)?;
            i.find_live(&s2.store, &query)
        })?;
        let mut out = Vec::new();
        for h in hits {
            if !access.sees(&s2.store, &h.subject)? {
                continue;
            }
            let mut recs = Vec::new();
            for r in &h.records {
                if access.sees(&s2.store, r)? {
                    recs.push(r.to_hex());
                }
            }
            out.push(json!({"subject": h.subject.to_hex(), "time": h.time, "records": recs}));
        }
        if let Some(n) = limit {
            out.drain(..out.len().saturating_sub(n));
        }
        Ok(out)
    })
    .await;
    match hits {
        Ok(h) => Json(json!({"hits": h})).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct LineageQuery {
    descendants: Option<bool>,
}

/// Lineage through receipts (and edits by hand), as `aslctl --json
/// lineage` prints it. A published-only caller sees only steps whose
/// receipt and every artifact are visible to it.
async fn lineage(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let dir = if q.descendants.unwrap_or(false) {
        Direction::Descendants
    } else {
        Direction::Ancestors
    };
    let s2 = st.clone();
    let out = blocking(move || {
        let store = &s2.store;
        if !access.sees(store, &id)? {
            return Err(Error::NotFound(id));
        }
        let g = s2.index.with(|i| {
            i.refresh(store)?;
            Ok(provenance::lineage(store, i, &id, dir, 10_000))
        })?;
        let g = g.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let visible = |a: &ArtifactId| -> crate::Result<bool> {
            // A removed artifact is shown as removed to whoever may see
            // the store's internals; a published-only caller sees only
            // what is published now.
            Ok(!access.published_only || access.sees(store, a)?)
        };
        let mut steps = Vec::new();
        for (rid, s) in &g.steps {
            let d = &s.detail;
            let mut all = vec![*rid];
            all.extend(d.inputs.iter().map(|(i, _, _)| i.id));
            all.extend(d.produced().into_iter().map(|(_, o)| o));
            if !all.iter().try_fold(true, |ok, a| Ok::<_, Error>(ok && visible(a)?))? {
                continue;
            }
            steps.push(json!({
                "receipt": rid.to_hex(), "node": d.node, "op": d.op, "program": d.program.to_hex(),
                "run_id": d.run_id, "started_at": d.started_at,
                "inputs": d.inputs.iter().map(|(i, _, _)| json!({"name": i.name, "id": i.id.to_hex()})).collect::<Vec<_>>(),
                "outputs": d.produced().iter().map(|(n, o)| json!({"name": n, "id": o.to_hex()})).collect::<Vec<_>>(),
            }));
        }
        let mut artifacts = serde_json::Map::new();
        for (a, present) in &g.artifacts {
            if visible(a)? {
                artifacts.insert(a.to_hex(), json!(if *present { "present" } else { "content removed" }));
            }
        }
        let mut edits = Vec::new();
        for e in g.edits.values() {
            if visible(&e.log)? && visible(&e.overlay)? && visible(&e.base)? {
                edits.push(json!({"log": e.log.to_hex(), "overlay": e.overlay.to_hex(), "base": e.base.to_hex()}));
            }
        }
        Ok(json!({
            "artifact": id.to_hex(),
            "direction": if dir == Direction::Descendants { "descendants" } else { "ancestors" },
            "steps": steps, "artifacts": artifacts, "edits": edits,
        }))
    })
    .await;
    match out {
        Ok(j) => Json(j).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct NewRecord {
    #[serde(rename = "type")]
    type_name: String,
    version: Option<u64>,
    body: serde_json::Value,
}

/// Stores a record given as JSON (`records::json`'s view): checked against
/// its type's schema (400 with the field at fault), committed.
async fn new_record(S(st): S<Arc<State>>, Extension(access): Extension<Access>, body: JsonBody<NewRecord>) -> Response {
    let r = match json_body(body, "{\"type\", \"body\"}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let store = st.store.clone();
    let stored = blocking(move || {
        let rec = records::json::record_from_json(&r.type_name, r.version, &r.body)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let s = records::put(&store, &rec).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        store.commit()?;
        Ok((s.id, access.shown_new(&store, &s.id, s.new)?))
    })
    .await;
    match stored {
        Ok((id, new)) => (
            if new { StatusCode::CREATED } else { StatusCode::OK },
            Json(json!({"id": id.to_hex(), "new": new})),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct NewLabels {
    labels: std::collections::BTreeMap<String, String>,
    media_type: Option<String>,
}

/// Labels an artifact (an `asl/annotation` record about it; its id is not
/// changed), committed.
async fn label(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    body: JsonBody<NewLabels>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let l = match json_body(body, "{\"labels\": {...}}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if l.labels.is_empty() && l.media_type.is_none() {
        return error(StatusCode::BAD_REQUEST, "give labels or a media_type");
    }
    let store = st.store.clone();
    let stored = blocking(move || {
        if !access.sees(&store, &id)? {
            return Err(Error::NotFound(id));
        }
        let mut a = records::labels::Annotation::new(id);
        for (k, v) in l.labels {
            a = a.label(k, v);
        }
        if let Some(m) = l.media_type {
            a = a.media_type(m);
        }
        let s = records::labels::annotate(&store, &a).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        store.commit()?;
        Ok(s)
    })
    .await;
    match stored {
        Ok(s) => (StatusCode::CREATED, Json(json!({"annotation": s.id.to_hex()}))).into_response(),
        Err(r) => r,
    }
}
