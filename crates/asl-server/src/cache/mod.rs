//! Build caches over the store: the Bazel HTTP cache protocol (`/ac/KEY`,
//! `/cas/SHA256`), which ccache's HTTP remote storage also speaks with
//! `layout=bazel`, and ccache's own layouts under `/ccache/`: `flat`
//! (`/ccache/KEY`) and `subdirs`, its default (`/ccache/KE/Y...`, the key's
//! first two characters as a directory). A ccache entry is an AC entry
//! under its own key.
//!
//! A CAS entry is an artifact whose SHA-256 is its key: the put computes the
//! SHA-256 in the same pass that stores the bytes, a body that does not
//! hash to the key is refused (and what it stored is removed again), and an
//! `asl/digest` record lets the key find the artifact. An AC entry is any
//! bytes under a key (an action result, a ccache entry): the bytes are an
//! artifact and an `asl/cache-entry` record points the key at it; a newer
//! entry for the same key replaces the answer, and a put may be made
//! conditional (`If-None-Match: *` to create only, `If-Match: "<id>"` to
//! replace only the answer it names, else 412), so two writers can
//! compare-and-swap a key. Reads are verified like
//! every read, so the cache never answers with bytes it lost.
//!
//! Every entry, CAS ones included, is in the cache namespace
//! ([`asl_records::cache::Space`]), which `--max-size` keeps under a
//! size by evicting the least recently used ([`super::upkeep`]).

mod action;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State as S};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::http::{blocking, error, Access, Refused, Route};
use super::send::send;
use super::upload::{receive, stored};
use super::State;
use asl_core::{ArtifactId, PutOptions};
use asl_records::cache::{Condition, NewEntry};
use asl_records::digests;
use asl_records::RecordError;

pub(super) fn routes() -> Vec<Route> {
    let r = |path, methods, handlers| Route {
        path,
        methods,
        handlers,
    };
    vec![
        r(
            "/ac/{key}",
            &["GET", "HEAD", "PUT"],
            get(ac_get).head(ac_head).put(ac_put),
        ),
        r(
            "/cas/{key}",
            &["GET", "HEAD", "PUT"],
            get(cas_get).head(cas_head).put(cas_put),
        ),
        r(
            "/ccache/{key}",
            &["GET", "HEAD", "PUT"],
            get(cc_get).head(cc_head).put(cc_put),
        ),
        r(
            "/ccache/{dir}/{rest}",
            &["GET", "HEAD", "PUT"],
            get(cc2_get).head(cc2_head).put(cc2_put),
        ),
    ]
}

/// The entry name of a ccache key (2 hex digits and base32hex in ccache
/// 4; any short lower-case alphanumeric string is taken).
fn ccache_name(key: &str) -> Result<String, Refused> {
    let ok = (8..=128).contains(&key.len()) && key.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
    if ok {
        Ok(format!("ccache/{key}"))
    } else {
        Err(Refused(
            StatusCode::BAD_REQUEST,
            "a ccache key is 8 to 128 lower-case letters and digits".into(),
        ))
    }
}

/// The key of a `subdirs` path: the directory is the key's first two
/// characters, the file name the rest.
fn ccache_split(dir: &str, rest: &str) -> Result<String, Refused> {
    if dir.len() != 2 {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a ccache subdirs path is /ccache/<first 2 characters of the key>/<the rest>".into(),
        ));
    }
    ccache_name(&format!("{dir}{rest}"))
}

fn ac_name(key: &str) -> Result<String, Refused> {
    parse_key(key).map(|k| format!("ac/{}", digests::hex(&k)))
}

/// A Bazel key: a SHA-256 as 64 hex digits.
fn parse_key(text: &str) -> Result<[u8; 32], Refused> {
    if text.len() == 64 {
        if let Some(k) = digests::parse_sha256(text) {
            return Ok(k);
        }
    }
    Err(Refused(
        StatusCode::BAD_REQUEST,
        "a cache key is a SHA-256 as 64 hex digits".into(),
    ))
}

/// The artifact the entry `name` (`ac/HEX`, `ccache/KEY`) answers with:
/// its newest live entry.
pub(crate) fn ac_lookup(st: &State, name: &str) -> Result<Option<ArtifactId>, RecordError> {
    if let Some(id) = st.index.entries.lookup_known(&st.store, name)? {
        return Ok(Some(id));
    }
    st.index.with(|i| st.index.entries.lookup(&st.store, i, name))
}

/// The blob the entry `name` (`cas/HEX`) names ([`find_blob`]).
fn cas_lookup(st: &State, name: &str) -> Result<Option<ArtifactId>, RecordError> {
    match name.strip_prefix("cas/").and_then(digests::parse_sha256) {
        Some(key) => find_blob(st, &key),
        None => Ok(None),
    }
}

/// The `cas/` entries an action result holds, read from the stored value
/// (an action result is small; one over 16 MiB is not read and holds
/// nothing).
fn ac_holds(st: &State, name: &str, value: &ArtifactId, len: u64) -> Vec<[u8; 32]> {
    if !name.starts_with("ac/") || len > 16 << 20 {
        return Vec::new();
    }
    let Ok(bytes) = st.store.get(value) else {
        return Vec::new();
    };
    action::holds(&bytes, |sha| st.store.get(&find_blob(st, sha).ok()??).ok())
}

async fn answer(
    st: Arc<State>,
    access: Access,
    name: Result<String, Refused>,
    headers: HeaderMap,
    with_body: bool,
    lookup: fn(&State, &str) -> Result<Option<ArtifactId>, RecordError>,
) -> Response {
    let name = match name {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let s2 = st.clone();
    // What the caller may not see answers exactly as an absent key does.
    let found = blocking(move || match lookup(&s2, &name)? {
        Some(id) if s2.store.view(access.audience).contains(&id)? => Ok::<_, RecordError>(Some(id)),
        _ => Ok(None),
    });
    match found.await {
        Ok(Some(id)) => send(&st, access, id, &headers, with_body).await,
        Ok(None) => error(StatusCode::NOT_FOUND, "not in the cache"),
        Err(r) => r,
    }
}

async fn ac_get(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ac_name(&key), headers, true, ac_lookup).await
}

async fn ac_head(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ac_name(&key), headers, false, ac_lookup).await
}

async fn cas_get(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(
        st,
        a,
        parse_key(&key).map(|k| format!("cas/{}", digests::hex(&k))),
        headers,
        true,
        cas_lookup,
    )
    .await
}

async fn cas_head(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(
        st,
        a,
        parse_key(&key).map(|k| format!("cas/{}", digests::hex(&k))),
        headers,
        false,
        cas_lookup,
    )
    .await
}

/// Stores an action-cache entry.
async fn ac_put(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    entry_put(st, a, ac_name(&key), headers, body).await
}

async fn cc_get(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ccache_name(&key), headers, true, ac_lookup).await
}

async fn cc_head(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ccache_name(&key), headers, false, ac_lookup).await
}

async fn cc_put(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    entry_put(st, a, ccache_name(&key), headers, body).await
}

async fn cc2_get(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path((dir, rest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ccache_split(&dir, &rest), headers, true, ac_lookup).await
}

async fn cc2_head(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path((dir, rest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    answer(st, a, ccache_split(&dir, &rest), headers, false, ac_lookup).await
}

async fn cc2_put(
    S(st): S<Arc<State>>,
    Extension(a): Extension<Access>,
    Path((dir, rest)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    entry_put(st, a, ccache_split(&dir, &rest), headers, body).await
}

/// Stores an entry under `name`: the bytes, then the record pointing the
/// name at them, committed together.
async fn entry_put(
    st: Arc<State>,
    access: Access,
    name: Result<String, Refused>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = match name {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let put = match receive(&st, PutOptions::new(), &headers, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // Conditional writes: `If-None-Match: *` creates only; `If-Match:
    // "<id>"` replaces only the answer whose ETag it names.
    let header = |n: axum::http::HeaderName| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let create_only = header(axum::http::header::IF_NONE_MATCH).is_some_and(|v| v.trim() == "*");
    let must_match = header(axum::http::header::IF_MATCH).map(|v| v.trim().trim_matches('"').to_ascii_lowercase());
    let s2 = st.clone();
    let id = put.id;
    // `None`: an `If-Match` naming no id, which no current answer matches.
    let when = match (create_only, &must_match) {
        (true, _) => Some(Condition::Absent),
        (false, Some(m)) => m.parse::<ArtifactId>().ok().map(Condition::Current),
        (false, None) => Some(Condition::Always),
    };
    let done = blocking(move || {
        let written = match &when {
            Some(w) => put_entry(&s2, &name, &put, w)?,
            None => false,
        };
        if !written {
            // The value stays only if something else holds it.
            if put.new {
                s2.store.remove(&id)?;
                s2.store.commit()?;
            }
            return Ok(None);
        }
        Ok::<_, RecordError>(s2.store.view(access.audience).shown_new(&put.id, put.new).map(Some)?)
    })
    .await;
    match done {
        Ok(Some(new)) => stored(&put, new),
        Ok(None) => error(
            StatusCode::PRECONDITION_FAILED,
            "the key's current entry is not the one the request's If-Match / If-None-Match names",
        ),
        Err(r) => r,
    }
}

/// Makes a stored blob (`put`, its SHA-256 taken as it was stored) the CAS
/// entry for `key`, committed; `Err(actual)` when its SHA-256 is not the
/// key, and what the put added is removed again. Both doors (`/cas`,
/// REAPI) store blobs through it.
pub(crate) fn put_blob(st: &State, put: &asl_core::Put, key: &[u8; 32]) -> Result<Result<(), [u8; 32]>, RecordError> {
    let sha = put.sha256.unwrap_or_default();
    if sha != *key {
        if put.new {
            st.store.remove(&put.id)?;
            st.store.commit()?;
        }
        return Ok(Err(sha));
    }
    let name = format!("cas/{}", digests::hex(&sha));
    let entry = NewEntry {
        name: &name,
        value: put.id,
        len: put.len,
        shared: !put.new,
        holds: Vec::new(),
        with: vec![digests::digest_record(&put.id, &sha, put.len)],
    };
    st.index
        .with(|i| st.index.entries.put(&st.store, i, &entry, &Condition::Always))?;
    super::upkeep::after_put(st);
    Ok(Ok(()))
}

/// Points the entry `name` (`ac/HEX`, `ccache/KEY`) at a stored value when
/// `when` allows (false: it did not, nothing written). An action result's
/// entry holds the blobs it names.
pub(crate) fn put_entry(st: &State, name: &str, put: &asl_core::Put, when: &Condition) -> Result<bool, RecordError> {
    let entry = NewEntry {
        holds: ac_holds(st, name, &put.id, put.len),
        name,
        value: put.id,
        len: put.len,
        shared: !put.new,
        with: Vec::new(),
    };
    let written = st.index.with(|i| st.index.entries.put(&st.store, i, &entry, when))?;
    super::upkeep::after_put(st);
    Ok(written)
}

/// The artifact holding the blob whose SHA-256 is `sha`, if the store has
/// one, marked used: from the cache namespace's memory when it is an entry
/// there, else through the query index (a blob stored another way with its
/// digest recorded).
pub(crate) fn find_blob(st: &State, sha: &[u8; 32]) -> Result<Option<ArtifactId>, RecordError> {
    let name = format!("cas/{}", digests::hex(sha));
    if let Some(id) = st.index.entries.lookup_known(&st.store, &name)? {
        return Ok(Some(id));
    }
    let found = st.index.with(|i| digests::resolve(&st.store, i, sha))?;
    if found.is_some() {
        st.index.entries.touch(&name);
    }
    Ok(found)
}

/// Stores a CAS entry: its SHA-256, taken as it is stored, must be the key.
async fn cas_put(
    S(st): S<Arc<State>>,
    Extension(access): Extension<Access>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match parse_key(&key) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let put = match receive(&st, PutOptions::new().sha256(true), &headers, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let s2 = st.clone();
    let p2 = put;
    let done = blocking(move || {
        if let Err(actual) = put_blob(&s2, &p2, &key)? {
            return Ok(Err(digests::hex(&actual)));
        }
        Ok::<_, RecordError>(Ok(s2.store.view(access.audience).shown_new(&p2.id, p2.new)?))
    })
    .await;
    match done {
        Ok(Ok(new)) => stored(&put, new),
        Ok(Err(actual)) => error(
            StatusCode::BAD_REQUEST,
            format!("the body's SHA-256 is {actual}, not the key"),
        ),
        Err(r) => r,
    }
}
