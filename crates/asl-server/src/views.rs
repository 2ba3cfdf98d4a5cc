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
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;

use super::http::{blocking, error, json_body, parse_id, with_view, Access, JsonBody, Route};
use super::send::send_reader;
use super::State;
use asl_core::Error;
use asl_pel::provenance::{self, Direction};
use asl_records::query::Query as Find;
use asl_records::{self as records, Source};

pub(super) fn routes() -> Vec<Route> {
    let r = |path, methods, handlers| Route {
        path,
        methods,
        handlers,
    };
    vec![
        r(
            "/v1/snapshots",
            &["GET", "HEAD", "POST"],
            get(list_snapshots).post(create_snapshot),
        ),
        r(
            "/v1/snapshots/{name}/artifacts/{id}",
            &["GET", "HEAD"],
            get(snap_get).head(snap_head),
        ),
        r("/v1/records", &["POST"], post(new_record)),
        r("/v1/runs", &["POST"], post(new_run)),
        r("/v1/records/{id}", &["GET", "HEAD"], get(record)),
        r("/v1/artifacts/{id}/labels", &["POST"], post(label)),
        r("/v1/find", &["GET", "HEAD"], get(find)),
        r("/v1/lineage/{id}", &["GET", "HEAD"], get(lineage)),
        r("/v1/publication", &["GET", "HEAD"], get(publication)),
        r("/v1/artifacts/{id}/tree", &["GET", "HEAD"], get(tree)),
    ]
}

async fn list_snapshots(S(st): S<Arc<State>>, Extension(access): Extension<Access>) -> Response {
    let list: Vec<serde_json::Value> = st
        .store
        .view(access.audience)
        .snapshots()
        .iter()
        .map(|m| {
            let mut j = json!({"name": m.name, "created": m.created});
            if let (Some(n), Some(b)) = (m.artifacts, m.bytes) {
                j["artifacts"] = json!(n);
                j["bytes"] = json!(b);
            }
            j
        })
        .collect();
    Json(json!({"snapshots": list})).into_response()
}

/// The domain's latest publication manifest and its signature record
/// (both published, so any token may read them; federation fetches start
/// here).
async fn publication(S(st): S<Arc<State>>) -> Response {
    match asl_federation::publish::latest_ids(&st.store) {
        Some((manifest, signature)) => {
            let cosignatures: Vec<String> = asl_federation::cosign::cosignatures(&st.store)
                .iter()
                .map(|c| c.to_hex())
                .collect();
            Json(json!({"manifest": manifest.to_hex(), "signature": signature.to_hex(), "cosignatures": cosignatures}))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "this domain publishes nothing"),
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
    let got = with_view(&st.store, access, move |view| {
        if !view.contains(&id)? {
            return Err(Error::NotFound(id).into());
        }
        asl_federation::ranged::tree_of(view.store(), &id)
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
    match blocking(move || store.snapshots().create(&body.name)).await {
        Ok(m) => (StatusCode::CREATED, Json(super::admin::snapshot_json(&m))).into_response(),
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
    let reader = with_view(&st.store, access, move |view| view.at(&name)?.open_reader(&id)).await;
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
    let got = with_view(&st.store, access, move |view| {
        let r = records::get(view as &dyn Source, &id)?;
        Ok::<_, records::RecordError>(records::json::record_to_json(&r))
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
    /// `oldest` (first; the default) or `newest`.
    order: Option<String>,
    /// Only subjects of this domain (`local`, or a name, id or number in
    /// the domain table) and of this visibility.
    domain: Option<String>,
    visibility: Option<String>,
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
        limit: q.limit,
        newest_first: match q.order.as_deref() {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(o) => return error(StatusCode::BAD_REQUEST, format!("order={o:?} is not oldest or newest")),
        },
    };
    let only = match super::http::list_filter(&st, &q.domain, &q.visibility) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let s2 = st.clone();
    let hits = with_view(&st.store, access, move |view| {
        let hits = s2.index.with(|i| {
            i.refresh(view.store())?;
            i.find_only(view, &query, &only)
        })?;
        let mut out = Vec::new();
        for h in hits {
            let recs: Vec<String> = h.records.iter().map(|r| r.to_hex()).collect();
            out.push(json!({"subject": h.subject.to_hex(), "time": h.time, "records": recs}));
        }
        Ok::<_, records::RecordError>(out)
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
    let out = with_view(&st.store, access, move |view| {
        let g = s2.index.with(|i| {
            i.refresh(view.store())?;
            Ok::<_, records::RecordError>(provenance::lineage_in(view, i, &id, dir, 10_000))
        })?;
        Ok::<_, asl_pel::PelError>(g?.to_json())
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
    let s2 = st.clone();
    let stored = with_view(&st.store, access, move |view| {
        // Checked against the built-in types and the store's registered ones.
        let (rec, _) = s2.index.with(|i| {
            i.refresh(view.store())?;
            records::schema::user::record_from_json(i, view, &r.type_name, r.version, &r.body)
        })?;
        let s = records::put(view.store(), &rec)?;
        view.store().commit()?;
        if rec.type_name == records::labels::ANNOTATION {
            // GET answers with a media type it gives at once.
            s2.index.with(|i| i.refresh(view.store()))?;
        }
        Ok::<_, records::RecordError>((s.id, view.shown_new(&s.id, s.new)?))
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
#[serde(deny_unknown_fields)]
struct RunQuery {
    #[serde(default)]
    summarize_request: bool,
    #[serde(default)]
    accept_mismatch: bool,
}

/// Stores a run artifact as seed 003's service writes it (the body is its
/// JSON), after recomputing the hashes it declares: 400 naming a mismatch
/// (nothing stored) unless `accept_mismatch=true`, which stores it
/// labelled `run.hashes=mismatch`.
async fn new_run(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    q: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
    body: JsonBody<serde_json::Value>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let j = match json_body(body, "a run artifact (seed 003's JSON)") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let stored = with_view(&st.store, access, move |view| {
        let rec = records::run_artifact::record(&j, q.summarize_request)?;
        let mut s = records::run_artifact::put_all(view.store(), &[rec], q.accept_mismatch)?;
        Ok::<_, records::RecordError>(s.remove(0))
    })
    .await;
    match stored {
        Ok(s) => (
            if s.new { StatusCode::CREATED } else { StatusCode::OK },
            Json(json!({"id": s.id.to_hex(), "run_id": s.run_id, "new": s.new,
                        "verdict": records::run_artifact::verdict(&s.hashes),
                        "hashes": records::run_artifact::checks_json(&s.hashes)})),
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
    let s2 = st.clone();
    let stored = with_view(&st.store, access, move |view| {
        if !view.contains(&id)? {
            return Err(records::RecordError::Store(Error::NotFound(id)));
        }
        let store = view.store();
        let mut a = records::labels::Annotation::new(id);
        for (k, v) in l.labels {
            a = a.label(k, v);
        }
        if let Some(m) = l.media_type {
            a = a.media_type(m);
        }
        let s = records::labels::annotate(store, &a)?;
        store.commit()?;
        // GET answers with the media type at once.
        s2.index.with(|i| i.refresh(store))?;
        Ok(s)
    })
    .await;
    match stored {
        Ok(s) => (StatusCode::CREATED, Json(json!({"annotation": s.id.to_hex()}))).into_response(),
        Err(r) => r,
    }
}
