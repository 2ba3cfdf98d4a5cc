//! The plumbing every route shares: error responses, running store work
//! on a blocking thread, what a caller may see ([`Access`]), JSON bodies
//! and ids in paths.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Json;
use serde_json::json;

use std::sync::Arc;

use super::State;
use asl_core::{ArtifactId, Audience, Error, ErrorKind, Store, View};

pub(super) fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

/// An error of a layer below, answered by its kind: what the client did
/// wrong is 4xx, damage and failures are 5xx; messages are the layer's one
/// line. Handlers return these errors as they are, never a message wrapped
/// in another kind.
pub(super) trait Failure: std::fmt::Display + Send + 'static {
    fn kind(&self) -> ErrorKind;

    /// The status for this error.
    fn status(&self) -> StatusCode {
        status_of(self.kind())
    }
}

/// The status that answers a failure of kind `k`.
fn status_of(k: ErrorKind) -> StatusCode {
    match k {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Refused => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Remote => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Failure for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }

    fn status(&self) -> StatusCode {
        match self {
            // The snapshot held it, but its bytes have since been collected.
            Error::NotRetained(_) => StatusCode::GONE,
            _ => status_of(Error::kind(self)),
        }
    }
}

impl Failure for asl_records::RecordError {
    fn kind(&self) -> ErrorKind {
        asl_records::RecordError::kind(self)
    }
}

impl Failure for asl_pel::PelError {
    fn kind(&self) -> ErrorKind {
        asl_pel::PelError::kind(self)
    }
}

impl Failure for asl_federation::FederationError {
    fn kind(&self) -> ErrorKind {
        asl_federation::FederationError::kind(self)
    }
}

/// A store error as a response (see [`Failure`]).
pub(super) fn store_error(e: Error) -> Response {
    failure(e)
}

/// Any layer's error as a response (see [`Failure`]).
pub(super) fn failure(e: impl Failure) -> Response {
    error(e.status(), e.to_string())
}

/// Runs store work on a blocking thread.
pub(super) async fn blocking<T: Send + 'static, E: Failure>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store task failed: {e}"),
        )),
    }
}

/// One route of the API: its path, the methods it answers, and their
/// handlers. `methods` is what the route table tells (tests and docs walk
/// it); a test checks every other method is refused with 405, so the two
/// cannot drift apart. A route with GET answers HEAD too.
pub(super) struct Route {
    pub(super) path: &'static str,
    pub(super) methods: &'static [&'static str],
    pub(super) handlers: MethodRouter<Arc<State>>,
}

/// Who the caller is to the store, set on every request by `authorize`:
/// its audience decides what exists for it ([`View`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Access {
    pub(super) audience: Audience,
    /// What the caller's token allows (everything without tokens).
    pub(super) scope: super::Scope,
}

/// Runs one request's store work on a blocking thread through the view of
/// the caller's audience: the way every handler reads the store, so none
/// decides visibility itself (writes go through [`View::store`]).
pub(super) async fn with_view<T: Send + 'static, E: Failure>(
    store: &Arc<Store>,
    access: Access,
    f: impl FnOnce(&View<'_>) -> Result<T, E> + Send + 'static,
) -> Result<T, Response> {
    let store = store.clone();
    blocking(move || f(&store.view(access.audience))).await
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
        .map_err(|e: asl_core::IdError| Refused(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The listing filter a query's `domain` and `visibility` ask for, or the
/// 400/404 that answers them.
pub(super) fn list_filter(
    st: &State,
    domain: &Option<String>,
    visibility: &Option<String>,
) -> Result<asl_core::ListFilter, Refused> {
    let visibility = match visibility.as_deref() {
        None => None,
        Some(v) => Some(asl_core::Visibility::from_name(v).ok_or_else(|| {
            Refused(
                StatusCode::BAD_REQUEST,
                format!("visibility {v:?} is neither internal nor published"),
            )
        })?),
    };
    let domain = match domain.as_deref() {
        None => None,
        Some(d) => Some(
            asl_federation::remote::domain_named(&st.store, d)
                .map_err(|e| Refused(StatusCode::NOT_FOUND, e.to_string()))?,
        ),
    };
    Ok(asl_core::ListFilter { domain, visibility })
}
