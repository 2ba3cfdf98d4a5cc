//! zstd contexts kept for reuse across threads, a few of each kind.

/// zstd contexts kept for reuse, shared by every thread. Creating one
/// allocates and clears its tables, which costs more than a 64 KiB chunk's
/// whole decode, so they are kept; but not one per thread: a server runs
/// puts and reads on a pool of blocking threads that grows with its
/// load, and a compression context for 1 MiB blocks holds about 1 MiB.
/// At most [`KEPT`] of each kind stay, whatever the number of threads.
pub(crate) struct Kept<T>(parking_lot::Mutex<Vec<T>>);

/// Contexts of each kind kept (more than cores: a context is held only
/// for one call, so a few more cover the threads that overlap).
const KEPT: usize = 8;

impl<T> Kept<T> {
    pub(crate) const fn new() -> Self {
        Kept(parking_lot::Mutex::new(Vec::new()))
    }

    /// Runs `f` with a kept context (or a new one from `make`), then keeps
    /// it if fewer than [`KEPT`] are.
    pub(crate) fn with<R>(
        &self,
        make: impl FnOnce() -> std::io::Result<T>,
        f: impl FnOnce(&mut T) -> R,
    ) -> std::io::Result<R> {
        let popped = self.0.lock().pop();
        let mut ctx = match popped {
            Some(c) => c,
            None => make()?,
        };
        let r = f(&mut ctx);
        let mut kept = self.0.lock();
        if kept.len() < KEPT {
            kept.push(ctx);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many threads compress at once, at most KEPT contexts stay.
    #[test]
    fn at_most_kept_contexts_stay_whatever_the_threads() {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let kept: Kept<u32> = Kept::new();
        let barrier = std::sync::Barrier::new(32);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    let make = || Ok(MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u32);
                    // All 32 hold one at once: each makes its own.
                    kept.with(make, |_| barrier.wait()).unwrap();
                });
            }
        });
        assert_eq!(MADE.load(std::sync::atomic::Ordering::Relaxed), 32);
        assert_eq!(kept.0.lock().len(), KEPT);
        // The next call reuses one instead of making another.
        kept.with(
            || -> std::io::Result<u32> { unreachable!("a kept context exists") },
            |_| (),
        )
        .unwrap();
    }
}
