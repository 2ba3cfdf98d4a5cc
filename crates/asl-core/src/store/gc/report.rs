//! What GC is asked to do ([`GcOptions`]) and what it reports
//! ([`GcReport`]), with the process memory measurements the report carries.

use std::time::Duration;

/// The default GC threshold: rewrite a segment once 5 % of it is garbage.
pub const DEFAULT_THRESHOLD: f64 = 0.95;

/// How [`Maintenance::gc`](crate::Maintenance::gc) chooses its work.
///
/// The policy is one number: a sealed segment is rewritten once its live
/// fraction falls below `threshold`. The default, [`DEFAULT_THRESHOLD`]
/// (0.95), rewrites a segment as soon as 5 % of it is garbage, so GC copies
/// at most 19 bytes for every byte it frees and no sealed segment keeps more
/// than 5 % garbage after it; garbage spread evenly over the store (every
/// tenth artifact removed, say) is reclaimed whole, where a lower threshold
/// would leave all of it. Dead segments go first, then the most-garbage ones.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Repack a segment when its live fraction (live / total logical bytes) is
    /// below this; 0.0 deletes only segments with nothing live, 1.0 repacks
    /// every segment holding any garbage.
    pub threshold: f64,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            dry_run: false,
        }
    }
}

/// What a GC run did (or, with `dry_run`, would do, from the usage counters).
/// As JSON (`aslctl gc --json`, the server's `POST /v1/gc`), `elapsed` is
/// `seconds`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Segments deleted (their live artifacts, if any, copied first).
    pub segments_deleted: u64,
    /// Of those, segments that still held live artifacts.
    pub segments_repacked: u64,
    /// Bytes of segment files deleted.
    pub reclaimed_bytes: u64,
    /// Logical bytes of live artifacts copied.
    pub repacked_bytes: u64,
    /// Live artifacts copied.
    pub artifacts_copied: u64,
    /// Live logical bytes before, by the usage counters.
    pub live_before: u64,
    /// Garbage logical bytes before, by the usage counters.
    pub garbage_before: u64,
    /// Live logical bytes after.
    pub live_after: u64,
    /// Garbage logical bytes after.
    pub garbage_after: u64,
    /// Largest amount of bookkeeping memory GC held at once, in bytes (the
    /// artifact list of one victim segment with what its lookup pass found,
    /// the ids writers changed meanwhile, the records awaiting a commit and
    /// one block being packed): an account of GC's own buffers, not a
    /// measurement.
    pub peak_memory_bytes: u64,
    /// Measured: the process's peak resident memory during the run, where
    /// the OS tells it (Linux: the high-water mark is reset when GC starts
    /// and read when it ends; it covers every thread of the process, so a
    /// program doing other work meanwhile is counted too). `None` elsewhere.
    pub peak_rss_bytes: Option<u64>,
    /// Measured: the largest anonymous resident memory of the process (heap
    /// and stacks, not mapped index and segment files, whose pages the
    /// kernel can drop at will) seen when GC started, after each batch and
    /// at the end; Linux only. The part of `peak_rss_bytes` that is memory
    /// in the usual sense.
    pub peak_heap_bytes: Option<u64>,
    /// Wall time.
    #[serde(rename = "seconds", with = "seconds")]
    pub elapsed: Duration,
    /// Victims left alone, with the reason (damage GC will not guess around).
    pub skipped: Vec<String>,
    /// Chunk records the sweep found no retained manifest naming (dropped
    /// from the index; their bytes go with the segments holding them).
    pub chunks_swept: u64,
    /// Bytes of those chunks.
    pub chunk_bytes_swept: u64,
}

/// A duration as fractional seconds, the unit every report prints.
mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = <f64 as serde::Deserialize>::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Resets the process's peak-RSS high-water mark (Linux `clear_refs`, value
/// 5); false where that is not possible, so no older peak is reported.
pub(super) fn reset_peak_rss() -> bool {
    cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// The process's peak resident memory since the last reset (`VmHWM`).
pub(super) fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// The process's anonymous resident memory now (`RssAnon`).
pub(super) fn heap_now() -> Option<u64> {
    status_bytes("RssAnon:")
}

pub(super) fn note_heap(rep: &mut GcReport) {
    if let Some(now) = heap_now() {
        rep.peak_heap_bytes = Some(rep.peak_heap_bytes.map_or(now, |p| p.max(now)));
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
pub(super) fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
