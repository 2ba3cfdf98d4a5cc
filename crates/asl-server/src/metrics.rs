//! What the server counts, for `/metrics` (OpenMetrics text, which
//! Prometheus scrapes): requests by route, method and status, their
//! latency, bytes in and out, build-cache hits, misses and evictions and
//! the cache namespace's size, uploads in flight, GC runs and what they reclaimed, the store's size and the
//! process's resident memory.
//!
//! Routes are labelled by their template (`/v1/artifacts/{id}`), never by
//! the path asked for, so a label never names an artifact and the number
//! of series stays fixed. Latency is measured to the response's head;
//! bytes are counted as the bodies pass, so a response cut short counts
//! what was sent.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Part {
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lookup {
    protocol: String,
    result: String,
}

/// The server's metrics and their registry.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    latency: Family<Route, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    cache: Family<Lookup, Counter>,
    evictions: Counter,
    evicted: Counter,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cache_max: Gauge,
    uploads: Gauge,
    gc_runs: Counter,
    gc_reclaimed: Counter,
    publishes: Counter,
    follows: Counter,
    artifacts: Gauge,
    physical: Gauge,
    garbage: Gauge,
    rss: Gauge,
    memory: MemoryGauges,
    /// When the store's figures were last taken (they cost a pass over the
    /// index, so a scrape reuses them for [`STAT_EVERY`]).
    stat_at: parking_lot::Mutex<Option<Instant>>,
}

/// How long the store's figures are reused between scrapes.
const STAT_EVERY: Duration = Duration::from_secs(60);

impl Metrics {
    pub(crate) fn new(allocator: crate::Allocator) -> Metrics {
        let mut registry = Registry::with_prefix("asl");
        let requests = Family::<Request, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let latency = Family::<Route, Histogram>::new_with_constructor(|| {
            // 100 µs to about 100 s.
            Histogram::new(exponential_buckets(0.0001, 4.0, 11))
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response's head",
            Unit::Seconds,
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register_with_unit(
            "http_received",
            "Request body bytes received",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register_with_unit("http_sent", "Response body bytes sent", Unit::Bytes, bytes_out.clone());
        let cache = Family::<Lookup, Counter>::default();
        registry.register(
            "cache_lookups",
            "Build-cache reads (/ac, /cas, /ccache) by protocol: hit or miss",
            cache.clone(),
        );
        let evictions = Counter::default();
        registry.register("cache_evictions", "Build-cache entries evicted", evictions.clone());
        let evicted = Counter::default();
        registry.register_with_unit(
            "cache_evicted",
            "Bytes the evicted entries took (records and the values that went with them)",
            Unit::Bytes,
            evicted.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("cache_entries", "Live build-cache entries", cache_entries.clone());
        let cache_bytes = Gauge::default();
        registry.register_with_unit(
            "cache_size",
            "Bytes the build-cache namespace counts: entry records and the values it wrote",
            Unit::Bytes,
            cache_bytes.clone(),
        );
        let cache_max = Gauge::default();
        registry.register_with_unit(
            "cache_max_size",
            "The namespace's limit (--max-size); 0 when it has none",
            Unit::Bytes,
            cache_max.clone(),
        );
        let uploads = Gauge::default();
        registry.register("uploads_in_flight", "Uploads being stored now", uploads.clone());
        let gc_runs = Counter::default();
        registry.register(
            "gc_runs",
            "GC runs, asked for through the API or after evictions",
            gc_runs.clone(),
        );
        let gc_reclaimed = Counter::default();
        registry.register_with_unit(
            "gc_reclaimed",
            "Segment bytes those runs deleted",
            Unit::Bytes,
            gc_reclaimed.clone(),
        );
        let publishes = Counter::default();
        registry.register(
            "publishes",
            "States published for read replicas (a store living in a bucket that this server writes)",
            publishes.clone(),
        );
        let follows = Counter::default();
        registry.register(
            "replica_updates",
            "Newer published states this read replica took from its writer",
            follows.clone(),
        );
        let artifacts = Gauge::default();
        registry.register(
            "store_artifacts",
            "Live artifacts (taken at most once a minute)",
            artifacts.clone(),
        );
        let physical = Gauge::default();
        registry.register_with_unit(
            "store_segment",
            "Bytes of segment files (taken at most once a minute)",
            Unit::Bytes,
            physical.clone(),
        );
        let garbage = Gauge::default();
        registry.register_with_unit(
            "store_garbage",
            "Logical bytes nothing retains, what GC can reclaim (taken at most once a minute)",
            Unit::Bytes,
            garbage.clone(),
        );
        let rss = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "The server process's resident memory",
            Unit::Bytes,
            rss.clone(),
        );
        let memory = MemoryGauges::register(&mut registry, allocator);
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            cache,
            evictions,
            evicted,
            cache_entries,
            cache_bytes,
            cache_max,
            uploads,
            gc_runs,
            gc_reclaimed,
            publishes,
            follows,
            artifacts,
            physical,
            garbage,
            rss,
            memory,
            stat_at: parking_lot::Mutex::new(None),
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&Request {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
        let protocol = ["/ac/", "/cas/", "/ccache/"]
            .iter()
            .find(|p| route.starts_with(*p))
            .map(|p| p.trim_matches('/'));
        if let (Some(protocol), "GET" | "HEAD") = (protocol, method) {
            let result = match status {
                200..=299 | 304 => "hit",
                404 => "miss",
                _ => return,
            };
            self.cache
                .get_or_create(&Lookup {
                    protocol: protocol.to_string(),
                    result: result.to_string(),
                })
                .inc();
        }
    }

    /// The counter request body bytes go to as they are read.
    pub(crate) fn received(&self) -> Counter {
        self.bytes_in.clone()
    }

    /// The counter response body bytes go to as they are sent.
    pub(crate) fn sent(&self) -> Counter {
        self.bytes_out.clone()
    }

    pub(crate) fn gc_done(&self, reclaimed: u64) {
        self.gc_runs.inc();
        self.gc_reclaimed.inc_by(reclaimed);
    }

    pub(crate) fn published(&self) {
        self.publishes.inc();
    }

    pub(crate) fn followed(&self) {
        self.follows.inc();
    }

    pub(crate) fn evicted(&self, entries: u64, bytes: u64) {
        self.evictions.inc_by(entries);
        self.evicted.inc_by(bytes);
    }

    /// Whether the store's figures are due again (and, if so, marks them
    /// taken now).
    pub(crate) fn stat_due(&self) -> bool {
        let mut at = self.stat_at.lock();
        if at.is_some_and(|t| t.elapsed() < STAT_EVERY) {
            return false;
        }
        *at = Some(Instant::now());
        true
    }

    pub(crate) fn store_figures(&self, s: &asl_core::StoreStat) {
        self.artifacts.set(s.artifacts as i64);
        self.physical.set(s.physical_bytes as i64);
        self.garbage.set(s.garbage_bytes as i64);
    }

    /// The text a scrape gets, with the gauges read now.
    pub(crate) fn encode(
        &self,
        uploads_in_flight: usize,
        cache: asl_records::cache::Usage,
        max: Option<u64>,
        memory: &[Memory],
    ) -> String {
        self.memory.set(memory);
        self.uploads.set(uploads_in_flight as i64);
        self.cache_entries.set(cache.entries as i64);
        self.cache_bytes.set(cache.bytes as i64);
        self.cache_max.set(max.unwrap_or(0) as i64);
        if let Some(rss) = resident_bytes() {
            self.rss.set(rss as i64);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A body that adds the bytes of its frames to a counter as they pass, and
/// otherwise is the body it wraps: its size hint is kept, so a response of
/// known length still goes out with `Content-Length`, not chunked.
pub(crate) struct Counted {
    inner: axum::body::Body,
    counter: Counter,
}

impl Counted {
    pub(crate) fn wrap(inner: axum::body::Body, counter: Counter) -> axum::body::Body {
        axum::body::Body::new(Counted { inner, counter })
    }
}

impl axum::body::HttpBody for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                self.counter.inc_by(d.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The heap's figures: each bounded part beside its bound, and the
/// allocator's own account.
struct MemoryGauges {
    parts: Family<Part, Gauge>,
    bounds: Family<Part, Gauge>,
    heap: Family<Part, Gauge>,
    allocator: crate::Allocator,
}

impl MemoryGauges {
    fn register(registry: &mut Registry, allocator: crate::Allocator) -> MemoryGauges {
        let g = MemoryGauges {
            parts: Family::default(),
            bounds: Family::default(),
            heap: Family::default(),
            allocator,
        };
        registry.register_with_unit(
            "memory",
            "Heap the server's bounded parts hold now, by part (see memory_bound)",
            Unit::Bytes,
            g.parts.clone(),
        );
        registry.register_with_unit(
            "memory_bound",
            "The most each part keeps",
            Unit::Bytes,
            g.bounds.clone(),
        );
        registry.register(
            "allocator",
            "The allocator the process runs on (its heap is asl_heap_bytes)",
            Info::new(
                [
                    ("name", allocator.name.to_string()),
                    ("settings", (allocator.settings)()),
                ]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect::<Vec<_>>(),
            ),
        );
        registry.register_with_unit(
            "heap",
            "The allocator's heap: in_use by the program, free but held by the allocator",
            Unit::Bytes,
            g.heap.clone(),
        );
        g
    }

    fn set(&self, memory: &[Memory]) {
        for m in memory {
            self.parts.get_or_create(&Part { part: m.part }).set(m.bytes as i64);
            self.bounds.get_or_create(&Part { part: m.part }).set(m.bound as i64);
        }
        if let Some(h) = (self.allocator.figures)() {
            self.heap.get_or_create(&Part { part: "in_use" }).set(h.in_use as i64);
            self.heap.get_or_create(&Part { part: "free" }).set(h.free as i64);
        }
    }
}

/// One bounded part of the server's heap, for [`Metrics::encode`].
pub(crate) struct Memory {
    pub(crate) part: &'static str,
    pub(crate) bytes: u64,
    pub(crate) bound: u64,
}

/// The process's resident memory (`VmRSS`), where the OS tells it.
fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_count_as_hits_and_misses_and_labels_are_templates() {
        let m = Metrics::new(crate::Allocator::system());
        m.request("/cas/{key}", "GET", 200, Duration::from_millis(1));
        m.request("/cas/{key}", "GET", 404, Duration::from_millis(1));
        m.request("/cas/{key}", "PUT", 200, Duration::from_millis(1));
        m.request("/v1/artifacts/{id}", "GET", 200, Duration::from_millis(1));
        let memory = [Memory {
            part: "block_cache",
            bytes: 5,
            bound: 7,
        }];
        let text = m.encode(0, Default::default(), None, &memory);
        assert!(text.contains(r#"asl_memory_bytes{part="block_cache"} 5"#), "{text}");
        assert!(
            text.contains(r#"asl_memory_bound_bytes{part="block_cache"} 7"#),
            "{text}"
        );
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(text.contains(r#"asl_heap_bytes{part="in_use"} "#), "{text}");
        assert!(
            text.contains(r#"asl_cache_lookups_total{protocol="cas",result="hit"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"asl_cache_lookups_total{protocol="cas",result="miss"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"route="/v1/artifacts/{id}""#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
