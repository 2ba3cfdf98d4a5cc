//! `aslctl serve`: the HTTP API over a store (`asl::server`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::error::CliError;
use asl::server::{self, Config, Tokens};
use asl::Error;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free one. The address actually
    /// bound is printed first, as `listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Bearer tokens (JSON: {"tokens": [{"name", "token", "scope"}]}, scope
    /// read, write or admin). Without it the server takes anyone's
    /// requests and so listens on loopback only.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// The largest upload accepted (`64M`, `4G`...).
    #[arg(long, default_value = "4G")]
    max_body: String,
    /// Seconds an upload may go without a byte arriving before it is cut
    /// off (408, nothing stored).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Uploads stored at once; more wait (up to --timeout, then 503). The
    /// server's memory for uploads is about this many × 17 MiB at most
    /// (less for uploads under 8 MiB that give a Content-Length).
    #[arg(long, default_value_t = 8)]
    max_uploads: usize,
    /// The most disk the build caches (/ac, /cas, /ccache) may take (`10G`,
    /// `500M`...): past 95 % of it the least recently used entries are
    /// evicted and GC reclaims them. Without it the caches grow until
    /// entries are removed by hand.
    #[arg(long, value_name = "SIZE")]
    max_size: Option<String>,
    /// Seal segments at this size (default 256M). A cache with a small
    /// --max-size wants small segments: the store stays under the limit
    /// plus one segment.
    #[arg(long, value_name = "SIZE")]
    segment_size: Option<String>,
    /// Index records the store holds in memory before writing them to an
    /// index file (default 200000, about 25 MiB of the server's heap).
    #[arg(long, value_name = "RECORDS")]
    memtable_records: Option<usize>,
    /// Decompressed blocks, and proven pieces of large artifacts read
    /// twice, kept for the next reads (default 64M): the largest part of
    /// the server's heap once warm. 0: every GET proves every byte again.
    #[arg(long, value_name = "SIZE")]
    block_cache: Option<String>,
    /// Snapshots made through the server (`POST /v1/snapshots`) also
    /// snapshot the ZFS dataset holding the store, as `snapshot create
    /// --zfs` does; refused at start off ZFS.
    #[cfg(feature = "zfs")]
    #[arg(long)]
    zfs: bool,
    /// The access log's lines: `text` (TIME METHOD PATH STATUS MSms) or
    /// `json` (one object per line, for log collectors).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Serve HTTPS with this certificate chain (PEM, the server's first).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Accept only clients presenting a certificate this CA (PEM) signed.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// For a store living in a bucket: seconds between publishing what was
    /// written for read replicas (seal and checkpoint in one step, only
    /// when something changed). Each publish may start a new segment.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    publish_interval: u64,
    /// For a read replica (`aslctl s3 replica`): seconds between looks at
    /// what the writer published. A replica is at most
    /// --publish-interval + the upload + this behind the writer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    follow_interval: u64,
}

/// How a read replica's server follows its writer; `None` for any other
/// store (or a build without S3).
#[cfg(feature = "s3")]
fn replica(dir: &Path, secs: u64) -> Option<server::Replica> {
    if !asl::s3::is_replica(dir) {
        return None;
    }
    let dir = dir.to_path_buf();
    Some(server::Replica {
        interval: std::time::Duration::from_secs(secs.max(1)),
        follow: Arc::new(move || asl::s3::follow(&dir).map(|f| server::Followed { writer: f.writer })),
    })
}

#[cfg(feature = "jemalloc")]
fn allocator() -> server::Allocator {
    crate::jemalloc::allocator()
}

#[cfg(not(feature = "jemalloc"))]
fn allocator() -> server::Allocator {
    server::Allocator::system()
}

#[cfg(not(feature = "s3"))]
fn replica(_: &Path, _: u64) -> Option<server::Replica> {
    None
}

pub(crate) fn serve(dir: &Path, a: &ServeArgs) -> Result<ExitCode, CliError> {
    let allocator = allocator();
    if allocator.is_system() {
        // Before the store and the runtime start threads: glibc's arena cap
        // holds only for arenas made after it.
        server::tune_allocator();
    }
    let addr: std::net::SocketAddr = a
        .listen
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("{:?} is not an address like 127.0.0.1:7878", a.listen)))?;
    let cfg = Config {
        tokens: a.tokens.as_deref().map(Tokens::load).transpose()?,
        max_body: crate::args::parse_size(&a.max_body)?,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
        // `-q` (global) turns the access log off with the other notes.
        access_log: crate::global::chatty(),
        log_format: if a.log_format == "json" {
            server::LogFormat::Json
        } else {
            server::LogFormat::Text
        },
        max_uploads: a.max_uploads.max(1),
        cache_max_size: a.max_size.as_deref().map(crate::args::parse_size).transpose()?,
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(server::Tls::load(cert, key, a.tls_client_ca.as_deref())?),
            _ => None,
        },
        publish_interval: std::time::Duration::from_secs(a.publish_interval.max(1)),
        replica: replica(dir, a.follow_interval),
        allocator,
        ..Config::default()
    };
    server::check_listen(&addr, &cfg)?;
    let mut opts = crate::opts();
    let mut create = true;
    if let Some(s) = &a.segment_size {
        opts = opts.segment_target(crate::args::parse_size(s)?);
    }
    if let Some(n) = a.memtable_records {
        opts = opts.memtable_limit(n);
    }
    if let Some(r) = &cfg.replica {
        // The files as the writer last published them, before they are
        // opened: a replica stopped for long may hold a state whose
        // segments GC has deleted since.
        if let Err(e) = (r.follow)() {
            eprintln!("aslctl: warning: following the writer failed, serving the state held: {e}");
        }
        opts = crate::opts().read_only(true);
        create = false;
    }
    #[cfg(feature = "zfs")]
    if a.zfs {
        opts = opts.zfs(true);
    }
    if let Some(s) = &a.block_cache {
        opts = opts.block_cache(crate::args::parse_size(s)? as usize);
    }
    let store = Arc::new(if create {
        crate::global::open_creating(opts, dir)?
    } else {
        opts.open(dir)?
    });
    crate::global::announce_created();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            context: "start the async runtime".into(),
            source: e,
        })?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Io {
            context: format!("listen on {addr}"),
            source: e,
        })?;
        let bound = listener.local_addr().map_err(|e| Error::Io {
            context: "listening socket".into(),
            source: e,
        })?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        out!("listening on {scheme}://{bound}");
        if cfg.tokens.is_none() {
            say!("aslctl: no --tokens: serving anyone on loopback {bound}, reads and writes");
        }
        // Ctrl-C or SIGTERM (what a service manager sends) stops taking
        // requests, lets those in flight finish, and closes the store.
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            say!("aslctl: stopping: finishing requests in flight");
        };
        server::serve(listener, store.clone(), cfg, stop).await
    })?;
    // Every acknowledged put was committed; closing syncs what is left.
    if let Ok(s) = Arc::try_unwrap(store) {
        crate::close_committed(s);
    }
    Ok(ExitCode::SUCCESS)
}
