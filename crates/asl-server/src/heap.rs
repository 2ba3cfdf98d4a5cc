//! The process's allocator as the server sees it. The allocator is chosen
//! by the program that links the server (a library must not impose one), so
//! the server is told which it runs on: it reports that allocator's figures
//! in `/metrics` and asks it to give free memory back when uploads go idle.
//! The system allocator (glibc's malloc on Linux) is the default and is
//! tuned here; `aslctl` brings jemalloc (see `docs/benchmarks/serve-memory.md`).

/// What the allocator says of its heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapFigures {
    /// Bytes the program has allocated and not freed.
    pub in_use: u64,
    /// Bytes the allocator holds in memory beyond those: free but not
    /// given back, and its own bookkeeping.
    pub free: u64,
}

/// The process's allocator: its name, and hooks for its figures, for
/// giving memory back and for describing its settings.
#[derive(Clone, Copy, Debug)]
pub struct Allocator {
    /// Shown in `/metrics` (`asl_allocator_info`).
    pub name: &'static str,
    /// Reads the heap's figures; `None` where the allocator cannot tell.
    pub figures: fn() -> Option<HeapFigures>,
    /// Gives free memory the allocator holds back to the system.
    pub release: fn(),
    /// How it is set up, in a few words (`asl_allocator_info`'s `settings`
    /// label; empty: not shown).
    pub settings: fn() -> String,
}

impl Allocator {
    /// The system allocator: glibc's malloc, or whatever the platform has
    /// (then without figures, and releasing nothing).
    pub fn system() -> Allocator {
        Allocator {
            name: SYSTEM_NAME,
            figures: glibc_figures,
            release: glibc_trim,
            settings: String::new,
        }
    }

    /// Whether this is [`Allocator::system`], which the server tunes.
    pub fn is_system(&self) -> bool {
        self.name == SYSTEM_NAME
    }
}

const SYSTEM_NAME: &str = if cfg!(all(target_os = "linux", target_env = "gnu")) {
    "glibc"
} else {
    "system"
};

/// Tunes glibc's allocator for a long-running server. [`crate::router`] calls it
/// when the configured allocator is [`Allocator::system`];
/// a server process calls it first, before its store and runtime start
/// threads, since glibc's arena cap holds only for arenas made after it.
///
/// It has the C allocator give memory back to the system as it is freed:
/// large blocks (an upload's windows) are always mapped on their own and
/// unmapped when freed, instead of glibc's default of raising that
/// threshold after the first such free and keeping later ones in its
/// arenas for good. What the arenas keep is trimmed when uploads go idle.
///
/// It also caps glibc's arenas at one per core, as if `MALLOC_ARENA_MAX`
/// were the core count, unless that variable is set. glibc's default is
/// eight per core, and a server whose blocking pool grows to hundreds of
/// threads under load spreads its free memory over all of them: measured
/// with two soaks side by side, the cap held 19–24 MiB free where the
/// default held 41–52 MiB, for 2 % fewer calls (docs/benchmarks/serve-memory.md).
#[allow(unsafe_code)]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tuning parameter of glibc's allocator;
        // it is safe to call at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

/// glibc's own account: bytes in use (arenas and mapped blocks) and bytes
/// free in its arenas but not given back. Together with the server's parts
/// this tells a part filling to its bound from a leak, and both from
/// fragmentation.
#[allow(unsafe_code)]
fn glibc_figures() -> Option<HeapFigures> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics (taking
        // each arena's lock in turn); it is safe from any thread.
        let m = unsafe { libc::mallinfo2() };
        Some(HeapFigures {
            in_use: (m.uordblks + m.hblkhd) as u64,
            free: m.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns the free memory glibc's arenas hold to the system.
#[allow(unsafe_code)]
fn glibc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own
    // arenas; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
