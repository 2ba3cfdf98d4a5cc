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

/// A running count of one phase's units, shared by the threads of an
/// operation and reported as it rises; with nobody listening it only counts.
///
/// ```
/// use std::io::Read;
/// use std::sync::Mutex;
/// use asl_core::{Meter, Step};
///
/// let seen = Mutex::new(Vec::new());
/// let report = |s: Step<'_>| seen.lock().unwrap().push((s.done, s.total));
/// let meter = Meter::new(Some(&report), "copy", 10);
/// let mut out = Vec::new();
/// meter.reader(&b"0123456789"[..]).read_to_end(&mut out).unwrap();
/// meter.finish();
/// let seen = seen.into_inner().unwrap();
/// assert_eq!((seen[0], *seen.last().unwrap()), ((0, 10), (10, 10)));
/// ```
pub struct Meter<'a> {
    to: Option<ProgressFn<'a>>,
    phase: &'a str,
    /// Units done. Threads report while holding this lock, so a listener
    /// never sees the count fall.
    done: parking_lot::Mutex<u64>,
    total: u64,
}

impl<'a> Meter<'a> {
    /// A meter at 0 of `total`, reporting the start at once so a bar shows
    /// what is coming.
    pub fn new(to: Option<ProgressFn<'a>>, phase: &'a str, total: u64) -> Self {
        report(to, phase, 0, total);
        Meter {
            to,
            phase,
            done: parking_lot::Mutex::new(0),
            total,
        }
    }

    /// Counts `n` more units done. The report never passes the total: an
    /// estimate that fell short (a size a manifest did not give) stops at
    /// it rather than break the promise of [`Step`].
    pub fn add(&self, n: u64) {
        let mut done = self.done.lock();
        *done += n;
        report(self.to, self.phase, (*done).min(self.total), self.total);
    }

    /// Ends the phase: reports it complete.
    pub fn finish(&self) {
        report(self.to, self.phase, self.total, self.total);
    }

    /// A reader that counts the bytes read through it on this meter.
    pub fn reader<R: std::io::Read>(&self, inner: R) -> Metered<'_, 'a, R> {
        Metered { inner, meter: self }
    }

    /// A writer that counts the bytes written through it on this meter.
    pub fn writer<W: std::io::Write>(&self, inner: W) -> Metered<'_, 'a, W> {
        Metered { inner, meter: self }
    }
}

/// A reader or writer counting what passes through it on a [`Meter`].
pub struct Metered<'m, 'a, T> {
    inner: T,
    meter: &'m Meter<'a>,
}

impl<T> Metered<'_, '_, T> {
    /// The reader or writer inside.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: std::io::Read> std::io::Read for Metered<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

impl<W: std::io::Write> std::io::Write for Metered<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
