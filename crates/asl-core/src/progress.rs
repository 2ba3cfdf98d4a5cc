//! How far a long operation has got, for a caller that shows it (a progress
//! bar, a log line): the operation calls back with its phase and the units
//! done of a known total, and never depends on anyone listening.

/// One report: `done` of `total` units (bytes unless the phase says
/// otherwise) in the named phase. `done` only rises within a phase, and a
/// phase ends with `done == total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step<'a> {
    /// What is being done, e.g. `"segments"` or `"artifacts"`.
    pub phase: &'a str,
    /// Units done so far.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// A progress callback, given to the operations that take one.
pub type ProgressFn<'a> = &'a (dyn Fn(Step<'_>) + Sync);

/// Reports to `to`, when there is anyone to report to.
pub(crate) fn report(to: Option<ProgressFn<'_>>, phase: &str, done: u64, total: u64) {
    if let Some(f) = to {
        f(Step { phase, done, total });
    }
}
