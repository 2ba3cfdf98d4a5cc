//! The server's own upkeep, in the background: evicting build-cache
//! entries once the namespace passes 95 % of `--max-size` (down to 90 %),
//! then GC to give their bytes back to the disk, writing the cache's
//! access times every [`SAVE_EVERY`], and, for a store living in a bucket,
//! publishing what was written for read replicas every
//! `Config::publish_interval`; and giving back the pages of the store's
//! file maps past a budget. One task does it all, one round at a time,
//! woken by cache puts that pass the mark and by a timer; it ends when the
//! server's state is dropped. A replica's server has none of this to do
//! but the last, which its follow task does.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use asl_core::{GcOptions, LogCursor};

use super::State;

/// How often the access times are written when entries were read.
const SAVE_EVERY: Duration = Duration::from_secs(30);

/// Mapped file pages (segments, index) the server lets stay resident
/// before each round gives them back: without this its resident size
/// climbs with every segment read until the kernel needs the memory, and
/// says nothing about the server's own memory.
pub(crate) const MAPPED_BUDGET: u64 = 32 << 20;

/// The namespace sizes eviction starts at and brings it down to.
fn marks(max: u64) -> (u64, u64) {
    (max / 20 * 19, max / 10 * 9)
}

/// Starts the upkeep task on the current tokio runtime (none: no upkeep,
/// as for a router driven without one).
pub(crate) fn start(st: &Arc<State>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if st.cfg.replica.is_some() {
        return;
    }
    let weak: Weak<State> = Arc::downgrade(st);
    let wake = st.upkeep.clone();
    let tiered = st.store.maintenance().tier_status().is_some();
    let tick = if tiered {
        st.cfg.publish_interval.min(SAVE_EVERY)
    } else {
        SAVE_EVERY
    };
    rt.spawn(async move {
        let mut saved = Instant::now();
        let mut published = (Instant::now(), None);
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
            let Some(st) = weak.upgrade() else {
                return;
            };
            let save = saved.elapsed() >= SAVE_EVERY;
            if save {
                saved = Instant::now();
            }
            let publish = tiered && published.0.elapsed() >= st.cfg.publish_interval;
            if publish {
                published.0 = Instant::now();
            }
            // The round holds the state; dropping it here lets the server
            // stop while the task waits.
            let last = published.1;
            if let Ok(Some(at)) = tokio::task::spawn_blocking(move || round(&st, save, publish.then_some(last))).await {
                published.1 = Some(at);
            }
        }
    });
}

/// Wakes the upkeep after a cache put, when the namespace is past the mark.
pub(crate) fn after_put(st: &State) {
    if let Some(max) = st.cfg.cache_max_size {
        if st.index.entries.space().usage().bytes > marks(max).0 {
            st.upkeep.notify_one();
        }
    }
}

/// One round; with `publish` (the history position last published, if
/// any), publishes when the store changed since, and returns where it did.
fn round(st: &State, save: bool, publish: Option<Option<LogCursor>>) -> Option<LogCursor> {
    if let Some(max) = st.cfg.cache_max_size {
        if let Err(e) = evict(st, max) {
            eprintln!("aslctl: warning: cache eviction failed, retried on the next round: {e}");
        }
    }
    if save {
        // As often as the access times are saved: expired artifacts wait
        // at most that long (and for the GC after) to go.
        match expire(st, false) {
            Ok(x) if !x.removed.is_empty() => {
                if let Err(e) = st.store.maintenance().gc(&GcOptions::default()) {
                    eprintln!("aslctl: warning: GC after expiry failed, retried on the next round: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("aslctl: warning: the expiry sweep failed, retried on the next round: {e}"),
        }
        if let Err(e) = st.index.entries.save_access(&st.store) {
            eprintln!("aslctl: warning: the cache's access times were not saved: {e}");
        }
    }
    st.store.maintenance().release_mapped_pages_over(MAPPED_BUDGET);
    let last = publish?;
    let m = st.store.maintenance();
    if last == Some(m.log_cursor()) {
        return None;
    }
    match m.publish() {
        Ok(()) => {
            st.metrics.published();
            Some(m.log_cursor())
        }
        Err(e) => {
            eprintln!("aslctl: warning: publishing for read replicas failed, retried on the next round: {e}");
            None
        }
    }
}

/// Sweeps expired ephemeral artifacts out of CURRENT (see
/// `asl_federation::removal::expire`); GC reclaims them after.
pub(crate) fn expire(
    st: &State,
    dry_run: bool,
) -> Result<asl_federation::removal::Expired, asl_federation::FederationError> {
    let now = asl_records::time::now_ns().max(0) as u64 / 1_000_000_000;
    let x = st
        .index
        .with(|i| asl_federation::removal::expire(&st.store, i, now, dry_run))?;
    if st.cfg.access_log && !x.removed.is_empty() {
        eprintln!("aslctl: {} ephemeral artifacts expired", x.removed.len());
    }
    Ok(x)
}

fn evict(st: &State, max: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (trigger, target) = marks(max);
    let victims = st
        .index
        .with(|i| asl_federation::removal::evict(&st.store, i, &st.index.entries, trigger, target))?;
    if victims.is_empty() {
        return Ok(());
    }
    let bytes: u64 = victims.iter().map(|v| v.bytes).sum();
    st.metrics.evicted(victims.len() as u64, bytes);
    let gc = st.store.maintenance().gc(&GcOptions::default())?;
    st.metrics.gc_done(gc.reclaimed_bytes);
    if st.cfg.access_log {
        eprintln!(
            "aslctl: evicted {} cache entries ({bytes} bytes); GC reclaimed {} bytes",
            victims.len(),
            gc.reclaimed_bytes
        );
    }
    Ok(())
}
