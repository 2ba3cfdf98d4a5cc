//! Serving a read replica of a store living in a bucket: a follow task
//! that brings the replica to what the writer last published and has the
//! store, the query index and the cache namespace read it; and writes,
//! which a replica never takes, sent to the writer (a 307 redirect to the
//! address the bucket names for the leaseholder, or 503 saying why not).

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Request, State as S};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::http::error;
use super::State;

/// What one follow step found ([`Replica::follow`]). Whether the files
/// changed is not asked: the store handle tells by refreshing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    /// The writer's address, as the bucket names it for the leaseholder.
    pub writer: Option<String>,
}

/// How a replica follows its writer. The step is the caller's (the
/// server does not know where the store's files come from):
/// `aslctl serve` passes `asl::s3::follow` on the replica's directory.
#[derive(Clone)]
pub struct Replica {
    /// How often to follow.
    pub interval: Duration,
    /// Brings the replica's files to the writer's latest published state.
    pub follow: Arc<dyn Fn() -> asl_core::Result<Followed> + Send + Sync>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica(every {:?})", self.interval)
    }
}

/// Starts the follow task of a replica (nothing for a writer, or without a
/// tokio runtime): a first step at once, then one every interval.
pub(crate) fn start(st: &Arc<State>) {
    let Some(r) = st.cfg.replica.clone() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<State> = Arc::downgrade(st);
    rt.spawn(async move {
        // The query index and the cache namespace have not taken the
        // store's newest state yet (a step failed part-way).
        let mut behind = true;
        loop {
            let Some(st) = weak.upgrade() else {
                return;
            };
            let step_r = r.clone();
            // The step talks to the bucket: off the runtime's threads.
            let was = behind;
            behind = tokio::task::spawn_blocking(move || step(&st, &step_r, was))
                .await
                .unwrap_or(true);
            tokio::time::sleep(r.interval).await;
        }
    });
}

/// One follow: the files, then the store handle, then what is derived
/// from it. Returns whether the derived part is still behind (to be taken
/// on the next step even when the files do not change again).
fn step(st: &State, r: &Replica, behind: bool) -> bool {
    st.store
        .maintenance()
        .release_mapped_pages_over(crate::upkeep::MAPPED_BUDGET);
    match (r.follow)() {
        Ok(f) => *st.writer_url.write() = f.writer,
        Err(e) => eprintln!(
            "aslctl: warning: following the writer failed, retried in {:?}: {e}",
            r.interval
        ),
    }
    // The handle may be behind the files even when this follow changed
    // nothing (a refresh that failed before, another process's follow).
    let changed = match st.store.maintenance().refresh() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aslctl: warning: the replica did not take the writer's new state, retried next time: {e}");
            return behind;
        }
    };
    if !changed && !behind {
        return false;
    }
    let derived = st.index.with(|i| {
        i.refresh(&st.store)?;
        st.index.entries.load(&st.store, i).map(drop)
    });
    match derived {
        Ok(()) => {
            st.metrics.followed();
            false
        }
        Err(e) => {
            let e: asl_records::RecordError = e;
            eprintln!("aslctl: warning: the replica's query index did not take the new state, retried next time: {e}");
            true
        }
    }
}

/// Whether a call would change the store: what a replica sends on.
fn changes(method: &Method, path: &str) -> bool {
    if crate::reapi::writes(path) {
        return true;
    }
    let reads = [Method::GET, Method::HEAD];
    let read_posts = ["/v1/artifacts:missing", "/v1/verify"];
    let grpc = path.starts_with("/build.bazel.remote.") || path.starts_with("/google.bytestream.");
    !reads.contains(method) && !read_posts.contains(&path) && !grpc
}

/// Sends a replica's writes to the writer.
pub(crate) async fn redirect_writes(S(st): S<Arc<State>>, req: Request, next: Next) -> Response {
    if st.cfg.replica.is_none() || !changes(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let writer = st.writer_url.read().clone();
    if crate::reapi::is_grpc(&req) {
        let to = writer.map_or(String::new(), |w| format!(" at {w}"));
        return tonic::Status::failed_precondition(format!("this server is a read replica: write to the writer{to}"))
            .into_http();
    }
    match writer {
        Some(w) => {
            let tail = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let to = format!("{}{tail}", w.trim_end_matches('/'));
            let mut r = error(
                StatusCode::TEMPORARY_REDIRECT,
                format!("this server is a read replica: write to {to}"),
            );
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server is a read replica and the writer has not named its address in the bucket (it is not \
             served, or is served by an older aslctl): write to the writer directly",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_and_writes_go() {
        assert!(!changes(&Method::GET, "/v1/artifacts/abc"));
        assert!(!changes(&Method::POST, "/v1/artifacts:missing"));
        assert!(changes(&Method::PUT, "/v1/artifacts"));
        assert!(changes(&Method::DELETE, "/v1/artifacts/abc"));
        assert!(changes(&Method::POST, "/v1/records"));
        assert!(changes(&Method::POST, "/v1/gc"));
        assert!(changes(&Method::PUT, "/ac/abc"));
        assert!(changes(
            &Method::POST,
            "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult"
        ));
        assert!(!changes(
            &Method::POST,
            "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
        ));
    }
}
