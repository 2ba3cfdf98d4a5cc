//! A parallel map on scoped OS threads, for work done while the writer lock
//! is held (framing a packed block, GC's lookups and reads, compressing the
//! chunks GC copies).
//!
//! Rayon is not used there on purpose. A rayon thread that waits for parallel
//! work runs other jobs of its pool meanwhile; if one of those is a caller's
//! own put (a `par_iter` of puts, say), it asks for the writer lock its own
//! thread already holds, and the process hangs (a test put exactly that
//! together). A scoped thread's `join` waits without running anything else.

/// `f(i, &items[i])` for every item, on up to one thread per core, each
/// taking a run of at least `min_run` items; results in item order. A panic in
/// `f` is raised again here.
pub(crate) fn map<'a, T: Sync, R: Send>(
    items: &'a [T],
    min_run: usize,
    f: impl Fn(usize, &'a T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len().div_ceil(min_run.max(1))).max(1);
    if threads == 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let run = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let others: Vec<_> = items
            .chunks(run)
            .enumerate()
            .skip(1)
            .map(|(k, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, t)| f(k * run + i, t))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        let mut out: Vec<R> = items[..run].iter().enumerate().map(|(i, t)| f(i, t)).collect();
        for h in others {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_in_order_on_any_split() {
        for n in [0usize, 1, 2, 7, 64, 1000] {
            let items: Vec<usize> = (0..n).collect();
            for min_run in [1, 3, 64, 10_000] {
                let got = super::map(&items, min_run, |i, x| {
                    assert_eq!(i, *x);
                    x * 2
                });
                assert_eq!(got, items.iter().map(|x| x * 2).collect::<Vec<_>>());
            }
        }
    }
}
