//! jemalloc as aslctl's allocator (feature `jemalloc`, on by default), set up
//! for a server that runs for months. Measured in 50- and 60-minute soaks
//! beside glibc's malloc (docs/benchmarks/soak.md): glibc's heap drifts up
//! 14-15 % as its free memory fragments; jemalloc with one arena and freed
//! pages returned within a second held its heap within 8-10 %, though about
//! 20 MiB above glibc's level.

use std::ffi::c_char;

#[cfg(feature = "server")]
use asl::server::{Allocator, HeapFigures};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// Read by jemalloc before `main` (so it must be a constant). One arena:
/// free memory is reused by every thread instead of sitting in the arena
/// of the thread that freed it, which is what fragmented glibc's heap; the
/// per-thread caches keep the allocation fast path off the arena's lock.
/// Freed pages go back to the system within a second (dirty decay 1 s, no
/// muzzy stage), from a background thread rather than on the freeing
/// thread. A decay of 0 cost 10-20 % on a 1 GiB ingest (every freed buffer
/// unmapped at once); 1 s costs nothing measurable against glibc. The
/// environment's `_RJEM_MALLOC_CONF` is read after this and overrides it.
#[allow(non_upper_case_globals, unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
static malloc_conf: Option<&'static c_char> = Some({
    const CONF: &[u8] = b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
    // SAFETY: c_char and u8 have the same size and alignment, and CONF is
    // NUL-terminated and lives for the whole program.
    unsafe { &*(CONF.as_ptr() as *const c_char) }
});

/// The settings that matter here, as jemalloc reports them now: arenas and
/// arena 0's decays (`/metrics` shows them, so a test can see them).
#[cfg(feature = "server")]
#[allow(unsafe_code)]
fn settings() -> String {
    // SAFETY: the names are NUL-terminated; each reads the type jemalloc
    // documents for it (an unsigned for narenas, an ssize_t for decays).
    let (arenas, dirty, muzzy) = unsafe {
        (
            tikv_jemalloc_ctl::raw::read::<u32>(b"opt.narenas\0").ok(),
            tikv_jemalloc_ctl::raw::read::<isize>(b"arena.0.dirty_decay_ms\0").ok(),
            tikv_jemalloc_ctl::raw::read::<isize>(b"arena.0.muzzy_decay_ms\0").ok(),
        )
    };
    let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    format!(
        "narenas={} dirty_decay_ms={} muzzy_decay_ms={}",
        show(arenas.map(|a| a.to_string())),
        show(dirty.map(|d| d.to_string())),
        show(muzzy.map(|m| m.to_string()))
    )
}

/// The allocator as the server reports and drives it.
#[cfg(feature = "server")]
pub(crate) fn allocator() -> Allocator {
    Allocator {
        name: "jemalloc",
        figures,
        release,
        settings,
    }
}

/// `stats.allocated` is what the program holds; `stats.resident` what
/// jemalloc keeps in memory (pages with data in them, its metadata, and
/// dirty pages not yet returned), so the difference is its overhead.
#[cfg(feature = "server")]
fn figures() -> Option<HeapFigures> {
    // The statistics are a snapshot taken when the epoch advances.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let in_use = tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()? as u64;
    Some(HeapFigures {
        in_use,
        free: resident.saturating_sub(in_use),
    })
}

/// Purges every arena's unused dirty pages now (the decay does this within
/// a second; an idle server need not keep them that long).
#[cfg(feature = "server")]
#[allow(unsafe_code)]
fn release() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`, 4096 being that constant; it takes
    // and returns nothing.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: the name is NUL-terminated; a command with no old or new
    // value is called with null pointers and zero lengths, as jemalloc's
    // mallctl documents.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr() as *const c_char,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}
