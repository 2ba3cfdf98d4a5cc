//! The HTTP API (`aslctl serve`): a store reached by services that do not
//! link the library. Documented in `spec/openapi.yaml`. This crate is a
//! shell over the crates below it (engine, records, PEL, federation) and
//! calls only their public API.
//!
//! axum on tokio; every store call runs on a blocking thread, so a slow
//! client or a long verification never stalls the runtime. Artifacts are
//! immutable and named by their BLAKE3, so the id is the ETag and every
//! successful read may be cached forever. Only verified bytes leave: a
//! small artifact is proven whole before the response starts, a large one
//! chunk by chunk as it streams (a damaged chunk ends the response short of
//! its `Content-Length`, which every client sees as an error, never as
//! data). Uploads stream into the store; one that fails, is too large or is
//! cut off leaves nothing, and an acknowledged one is committed (durable).
//!
//! Without a tokens file the server answers anyone who reaches it, so it
//! refuses to listen anywhere but loopback.
//!
//! Beside `/v1`, the Bazel HTTP cache protocol (`/ac`, `/cas`) serves
//! Bazel's `--remote_cache` and ccache's HTTP remote storage.

mod admin;
mod api;
pub mod auth;
mod cache;
mod heap;
mod http;
mod metrics;
pub mod reapi;
mod replica;
mod send;
mod tls;
mod upkeep;
mod upload;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use asl_core::{Error, Result, Store};
use asl_records::query::QueryIndex;
use asl_records::RecordError;
pub use auth::{Scope, Tokens};
pub use heap::{tune_allocator, Allocator, HeapFigures};
pub use replica::{Followed, Replica};
pub use tls::Tls;

/// How a server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Who may do what; `None`: anyone (loopback only).
    pub tokens: Option<Tokens>,
    /// The largest upload accepted, in bytes (larger: 413, nothing stored).
    pub max_body: u64,
    /// How long an upload may go without a byte arriving (then it is cut
    /// off: 408, nothing stored), and a download without the client taking
    /// one (then the response is cut off).
    pub timeout: Duration,
    /// Ids a `missing` call may ask about at once.
    pub max_batch: usize,
    /// Write one line per request to stderr: time, method, path, status,
    /// milliseconds.
    pub access_log: bool,
    /// The access log's lines as text or as JSON objects.
    pub log_format: LogFormat,
    /// Serve HTTPS with these settings ([`Tls::load`]); `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// Uploads stored at once. Each holds up to two windows of
    /// min(its `Content-Length`, 8 MiB) + 256 KiB while it is stored, so
    /// uploads take at most about `max_uploads` × 17 MiB; beyond the
    /// limit an upload waits (its body unread) up to `timeout`, then gets
    /// 503 with `Retry-After`. gRPC calls are answered 2 × `max_uploads`
    /// at once (each holds a message of up to 4 MiB; more wait up to
    /// `timeout`, then get `RESOURCE_EXHAUSTED`).
    pub max_uploads: usize,
    /// The most disk the build caches' entries (`/ac`, `/cas`, `/ccache`)
    /// may take, in bytes; `None`: no limit. Past 95 % of it, least
    /// recently used entries are evicted down to 90 % and GC reclaims
    /// their bytes, so their segments stay under the limit plus one open
    /// segment (the 5 % above is room for what GC leaves in segments it
    /// does not repack). The index and the query index come on top.
    pub cache_max_size: Option<u64>,
    /// For a store living in a bucket that this server writes: how often
    /// what was written since is published for read replicas (sealed and
    /// checkpointed in one step, see `Maintenance::publish`). A replica is
    /// at most this, the upload, and its own follow interval behind.
    pub publish_interval: Duration,
    /// Serve a read replica ([`Replica`]): writes are sent to the writer.
    pub replica: Option<Replica>,
    /// The process's allocator: its figures in `/metrics`, and how free
    /// memory is given back when uploads go idle.
    pub allocator: Allocator,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tokens: None,
            max_body: 4 << 30,
            timeout: Duration::from_secs(60),
            max_batch: 10_000,
            access_log: false,
            log_format: LogFormat::Text,
            tls: None,
            max_uploads: 8,
            cache_max_size: None,
            publish_interval: Duration::from_secs(30),
            replica: None,
            allocator: Allocator::system(),
        }
    }
}

/// How access log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME METHOD PATH STATUS MSms` (and `grpc-status=N` after the
    /// status of a gRPC call that failed at once), for people.
    #[default]
    Text,
    /// One JSON object per line (`time`, `method`, `path`, `route`,
    /// `status`, `grpc_status`, `ms`), for log collectors.
    Json,
}

/// The shared state of every handler.
pub(crate) struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) cfg: Config,
    /// The query index: build-cache keys and SHA-256 digests resolve
    /// through it. This server is the store's only writer, so it brings the
    /// index up to date after each write of its own.
    pub(crate) index: Index,
    /// One permit per upload being stored ([`Config::max_uploads`]).
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// One permit per gRPC call being answered (twice `max_uploads`): a
    /// call's messages are held whole, up to 4 MiB each.
    pub(crate) grpc_calls: Arc<tokio::sync::Semaphore>,
    /// What `/metrics` answers.
    pub(crate) metrics: metrics::Metrics,
    /// Wakes the upkeep task after a build-cache put.
    pub(crate) upkeep: Arc<tokio::sync::Notify>,
    /// A replica's writer, as the bucket last named it: where
    /// writes are redirected.
    pub(crate) writer_url: parking_lot::RwLock<Option<String>>,
    /// Small reads are answered on the runtime's thread (the store is on
    /// local disk, see `send`).
    pub(crate) inline_reads: bool,
}

impl Drop for State {
    fn drop(&mut self) {
        // The reads since the last write of the access file, kept for the
        // next start (a replica evicts nothing and writes no file).
        if self.cfg.replica.is_none() {
            if let Err(e) = self.index.entries.save_access(&self.store) {
                eprintln!("aslctl: warning: the cache's access times were not saved: {e}");
            }
        }
        // The upkeep task, waiting, sees the state gone and ends.
        self.upkeep.notify_one();
    }
}

/// The query index of a served store, opened when it first can be: a
/// server started where the index cannot be opened (a full disk, say)
/// still serves artifacts, and the calls that need the index say why they
/// cannot be answered until it opens.
pub(crate) struct Index {
    store: Arc<Store>,
    /// Readers share it; a call that brings it up to date (or opens it)
    /// has it alone.
    slot: parking_lot::RwLock<Option<QueryIndex>>,
    /// The build caches' entries: checked and written one put at a time,
    /// counted from the records when the index opens.
    pub(crate) entries: asl_records::cache::Entries,
    /// The index's annotation lookups, for reads that must not wait while
    /// a put or an eviction holds the index to write (a GET's media type).
    /// Taken again after each hold, since a rebuild replaces it.
    subjects: parking_lot::RwLock<Option<asl_records::query::Subjects>>,
}

impl Index {
    fn new(store: Arc<Store>) -> Index {
        let index = Index {
            store,
            slot: parking_lot::RwLock::new(None),
            entries: asl_records::cache::Entries::new(),
            subjects: parking_lot::RwLock::new(None),
        };
        if let Err(e) = index.with(|_| Ok::<_, RecordError>(())) {
            eprintln!("aslctl: the query index is not open yet ({e}); artifacts are served, and what needs the index is retried on each call");
        }
        index
    }

    /// Runs `f` on the index if it is open; nothing otherwise.
    pub(crate) fn if_open<E: From<RecordError>>(
        &self,
        f: impl FnOnce(&mut QueryIndex) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut slot = self.slot.write();
        let r = match slot.as_mut() {
            Some(index) => f(index),
            None => Ok(()),
        };
        *self.subjects.write() = slot.as_ref().map(QueryIndex::subjects);
        r
    }

    /// Runs `f` on the index if it is open, beside other readers (`None`
    /// when it is not open: the caller answers without it).
    pub(crate) fn read_if_open<T>(&self, f: impl FnOnce(&QueryIndex) -> T) -> Option<T> {
        self.slot.read().as_ref().map(f)
    }

    /// What the index holds in memory, if it is open and not being
    /// written this moment (a scrape does not wait behind a rebuild).
    pub(crate) fn memory(&self) -> Option<asl_records::query::IndexMemory> {
        self.slot.try_read()?.as_ref().map(QueryIndex::memory)
    }

    /// The index's annotation lookups without waiting for its writer;
    /// `None` when it is not open.
    pub(crate) fn subjects(&self) -> Option<asl_records::query::Subjects> {
        self.subjects.read().clone()
    }

    /// Runs `f` on the index, opening it first if it is not open.
    pub(crate) fn with<T, E: From<RecordError>>(
        &self,
        f: impl FnOnce(&mut QueryIndex) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut slot = self.slot.write();
        if slot.is_none() {
            let (mut index, _) = QueryIndex::open(&self.store)?;
            // It writes after every put of a cache entry: sealed when the
            // server stops, not each time (a crash leaves it to be rebuilt).
            index.seal_on_drop_only();
            if let Some(why) = self.entries.load(&self.store, &index)? {
                eprintln!("aslctl: warning: the cache's access times were not read ({why}); entries count as last used when written");
            }
            *slot = Some(index);
        }
        let r = f(slot.as_mut().expect("opened above"));
        *self.subjects.write() = slot.as_ref().map(QueryIndex::subjects);
        r
    }
}

/// The API's routes over `store`, for embedding in a larger axum app or
/// driving in tests. Opens the store's query index (held while the router
/// lives) if it can, else when first needed. Called within a tokio
/// runtime, it also starts the cache's upkeep (eviction, GC, access
/// times), which ends when the router is dropped.
pub fn router(store: Arc<Store>, cfg: Config) -> Result<axum::Router> {
    if cfg.allocator.is_system() {
        tune_allocator();
    }
    let index = Index::new(store.clone());
    let inline_reads = store.maintenance().tier_status().is_none();
    let cfg_uploads = cfg.max_uploads.max(1);
    let cfg_allocator = cfg.allocator;
    let st = Arc::new(State {
        store,
        cfg,
        index,
        uploads: Arc::new(tokio::sync::Semaphore::new(cfg_uploads)),
        grpc_calls: Arc::new(tokio::sync::Semaphore::new(2 * cfg_uploads)),
        metrics: metrics::Metrics::new(cfg_allocator),
        upkeep: Arc::new(tokio::sync::Notify::new()),
        writer_url: parking_lot::RwLock::new(None),
        inline_reads,
    });
    upkeep::start(&st);
    replica::start(&st);
    Ok(api::routes(st))
}

/// Every route the server answers, with the methods each takes (a route
/// with GET answers HEAD too): what `spec/openapi.yaml` documents and the
/// access tests walk.
pub fn route_table() -> Vec<(&'static str, &'static [&'static str])> {
    api::table().into_iter().map(|r| (r.path, r.methods)).collect()
}

/// Checks that `addr` may be listened on with `cfg`: without tokens, only a
/// loopback address.
pub fn check_listen(addr: &SocketAddr, cfg: &Config) -> Result<()> {
    if cfg.tokens.is_none() && !addr.ip().is_loopback() {
        return Err(Error::InvalidArgument(format!(
            "{addr} is not a loopback address: without --tokens anyone reaching it could write; give a tokens file or listen on 127.0.0.1"
        )));
    }
    Ok(())
}

/// Serves the API on `listener` until `shutdown` resolves (or forever).
///
/// A store served in-process on a free loopback port, read back through
/// `asl-client`, which proves every byte against the id on its side:
///
/// ```
/// use std::sync::Arc;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Arc::new(asl_core::StoreOptions::new().create(true).open(dir.path())?);
/// let id = store.put(&vec![5u8; 300_000])?;
/// store.commit()?;
/// let rt = tokio::runtime::Runtime::new()?;
/// let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
/// let url = format!("http://{}", listener.local_addr()?);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let quit = async { stopped.await.unwrap_or(()) };
/// let server = rt.spawn(asl_server::serve(listener, store.clone(), asl_server::Config::default(), quit));
///
/// let client = asl_client::Client::new(&url, None)?;
/// assert_eq!(client.read_range(&id, 1000, 10)?, [5u8; 10]);
/// assert_eq!(client.stat()?.artifacts, 1);
/// stop.send(()).unwrap();
/// rt.block_on(server)??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr().map_err(|e| Error::Io {
        context: "listening socket".into(),
        source: e,
    })?;
    check_listen(&addr, &cfg)?;
    // The lock names this server, so that `aslctl` run on the store while
    // it serves acts through it rather than stopping at "locked". A
    // wildcard address is reached on this machine through loopback.
    let mut reach = addr;
    if reach.ip().is_unspecified() {
        reach.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    // A store living in a bucket names the server in its lease too: a
    // request to the bucket, so off the runtime's threads.
    let named = store.clone();
    let url = format!("{scheme}://{reach}");
    match tokio::task::spawn_blocking(move || named.maintenance().announce(&url)).await {
        Ok(Ok(()) | Err(Error::ReadOnly)) => {}
        Ok(Err(e)) => eprintln!("aslctl: warning: the store's lock does not name this server: {e}"),
        Err(e) => eprintln!("aslctl: warning: the store's lock does not name this server: {e}"),
    }
    let failed = |e| Error::Io {
        context: format!("serve on {addr}"),
        source: e,
    };
    if let Some(tls) = cfg.tls.clone() {
        let listener = tls::TlsListener::new(listener, &tls, cfg.timeout).map_err(failed)?;
        return axum::serve(listener, router(store, cfg)?)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(failed);
    }
    use axum::serve::ListenerExt;
    // Responses go out at once: without this, a client that writes a
    // request in two pieces waits out delayed ACKs on every call.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(store, cfg)?)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(failed)
}
