//! The server's own upkeep, in the background: evicting build-cache
//! entries once the namespace passes 95 % of `--max-size` (down to 90 %),
//! then GC to give their bytes back to the disk, and writing the cache's
//! access times every [`SAVE_EVERY`]. One task does it all, one round at a
//! time, woken by cache puts that pass the mark and by a timer; it ends
//! when the server's state is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use asl_core::GcOptions;

use super::State;

/// How often the access times are written when entries were read.
const SAVE_EVERY: Duration = Duration::from_secs(30);

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
    let weak: Weak<State> = Arc::downgrade(st);
    let wake = st.upkeep.clone();
    rt.spawn(async move {
        let mut saved = Instant::now();
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(SAVE_EVERY) => {}
            }
            let Some(st) = weak.upgrade() else {
                return;
            };
            let save = saved.elapsed() >= SAVE_EVERY;
            if save {
                saved = Instant::now();
            }
            // The round holds the state; dropping it here lets the server
            // stop while the task waits.
            let _ = tokio::task::spawn_blocking(move || round(&st, save)).await;
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

fn round(st: &State, save: bool) {
    if let Some(max) = st.cfg.cache_max_size {
        if let Err(e) = evict(st, max) {
            eprintln!("aslctl: warning: cache eviction failed, retried on the next round: {e}");
        }
    }
    if save {
        if let Err(e) = st.index.entries.save_access(&st.store) {
            eprintln!("aslctl: warning: the cache's access times were not saved: {e}");
        }
    }
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
