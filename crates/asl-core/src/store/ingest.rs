//! Ingest of files and directory trees: the policy `aslctl ingest` runs, in
//! the library so that every front end (the CLI, a server, an embedding
//! program) gets the same behaviour.
//!
//! Two steps. [`IngestPlan::walk`] checks every input before anything is
//! written (a missing path, a socket or an unreadable file stops it with the
//! store untouched; symbolic links and empty directories met inside
//! directories are listed for the trees, special files met there are
//! skipped and counted). [`Store::ingest_plan`](crate::Store::ingest_plan) then stores the inputs in
//! windows: the small files of a window are read on all cores and stored with
//! one `put_batch`, large files stream one at a time; results keep the input
//! order. It commits every gigabyte or 20 000 files and at the end, and tells
//! the caller which results each commit made durable.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub use super::files_cache::FileStamp;
use super::files_cache::{FilesCache, Keys};
use super::options::PutOptions;
use super::put::Put;
use super::walk::refuse;
pub use super::walk::{IngestInput, IngestLink, IngestPlan};
use super::Store;

/// The files cache's file, in the store directory.
pub(crate) const FILES_CACHE: &str = "files-cache";

/// How [`Store::ingest_plan`](crate::Store::ingest_plan) stores its inputs.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Applied to every artifact stored.
    pub put: PutOptions,
    /// Commit once this many new bytes were stored since the last commit.
    /// Default 1 GiB.
    pub commit_bytes: u64,
    /// Commit once this many inputs were stored since the last commit.
    /// Default 20 000.
    pub commit_files: usize,
    /// Small files read and stored together, at most this many bytes. Default 64 MiB.
    pub window_bytes: u64,
    /// ... and at most this many files. Default 4096.
    pub window_files: usize,
    /// The store's files cache (default [`FilesCacheMode::Off`]; `aslctl
    /// ingest` uses it).
    pub files_cache: FilesCacheMode,
}

/// How an ingest uses the store's files cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FilesCacheMode {
    /// Neither read nor written.
    #[default]
    Off,
    /// A file whose path, size, times, inode and device are those an earlier
    /// ingest recorded, settled for longer than the timestamp granularity,
    /// and whose artifact is still live, is not read again; what every input
    /// holds is recorded.
    Use,
    /// Every file is read; what each holds is recorded (`--no-cache`).
    Refresh,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            put: PutOptions::default(),
            commit_bytes: 1 << 30,
            commit_files: 20_000,
            window_bytes: 64 << 20,
            window_files: 4096,
            files_cache: FilesCacheMode::Off,
        }
    }
}

/// One input, stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// The input's path.
    pub path: PathBuf,
    /// What the put did.
    pub put: Put,
}

/// What [`Store::ingest_plan`](crate::Store::ingest_plan) tells its caller as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum IngestEvent<'a> {
    /// Bytes of input processed so far, rising to `total`.
    Progress {
        /// Done.
        done: u64,
        /// The plan's total.
        total: u64,
    },
    /// A commit returned: these results (the next ones in input order) are
    /// durable. Print or acknowledge them now, not before.
    Committed(&'a [Ingested]),
}

/// The outcome of an ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    /// One result per input, in input order.
    pub files: Vec<Ingested>,
    /// Entries skipped by the walk.
    pub skipped: u64,
    /// Bytes of all inputs.
    pub bytes: u64,
    /// Inputs that were stored (not deduplicated).
    pub new_files: u64,
    /// Their bytes.
    pub new_bytes: u64,
    /// Inputs the files cache vouched for, not read.
    pub cached_files: u64,
    /// Why the files cache could not be saved (the ingest itself is
    /// committed; the next one reads those files again).
    pub files_cache_error: Option<String>,
    /// Wall time of the storing (the walk excluded).
    pub elapsed: Duration,
}

impl Store {
    /// Walks `paths` and stores them (see [`IngestPlan::walk`] and
    /// [`Store::ingest_plan`](crate::Store::ingest_plan)).
    pub fn ingest(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        on_event: &mut dyn FnMut(IngestEvent<'_>),
    ) -> Result<IngestReport> {
        let plan = IngestPlan::walk_excluding(paths, Some(self.path()))?;
        self.ingest_plan(&plan, opts, on_event)
    }

    /// Stores the inputs of `plan`, committing as it goes and at the end.
    ///
    /// On an error (an input changed or vanished, a full disk) it returns at
    /// once: results already reported as [`IngestEvent::Committed`] are
    /// durable, the rest are buffered and uncommitted. The caller chooses:
    /// commit them, or [`Store::abandon`](crate::Store::abandon) the store so the next open recovers
    /// the last commit (what `aslctl ingest` does, so that nothing it did not
    /// print is kept).
    pub fn ingest_plan(
        &self,
        plan: &IngestPlan,
        opts: &IngestOptions,
        on_event: &mut dyn FnMut(IngestEvent<'_>),
    ) -> Result<IngestReport> {
        let start = Instant::now();
        let inputs = &plan.inputs;
        let total = plan.bytes();
        let small = self.small_threshold() as u64;
        let mut rep = IngestReport {
            skipped: plan.skipped,
            bytes: total,
            ..Default::default()
        };
        let cache_path = self.layout.root.join(FILES_CACHE);
        let mut cache = match opts.files_cache {
            FilesCacheMode::Off => None,
            FilesCacheMode::Use => Some(FilesCache::load(&*self.layout.io, &cache_path)),
            FilesCacheMode::Refresh => Some(FilesCache::default()),
        };
        // One result per input, made on all cores (a path copied for each:
        // a tenth of an unchanged re-ingest of 56 000 files on one core).
        // Inputs the cache vouches for, whose artifact is still live, get
        // their put now; the others as they are stored.
        rep.files = {
            use rayon::prelude::*;
            let unset = Put {
                id: crate::ArtifactId::from_bytes([0; 32]),
                len: 0,
                new: false,
                placement: Default::default(),
                sha256: None,
            };
            inputs
                .par_iter()
                .with_min_len(1024)
                .map(|i| Ingested {
                    path: i.path.clone(),
                    put: unset,
                })
                .collect()
        };
        let mut hit = vec![false; inputs.len()];
        let keys = Keys::new();
        // (A refreshed cache starts empty: nothing in it to ask.)
        if let Some(c) = cache.as_ref().filter(|_| opts.files_cache == FilesCacheMode::Use) {
            self.vouched(c, &keys, inputs, &mut rep.files, &mut hit)?;
        }
        // Every other input will be read: one this process may not read stops
        // the ingest here, before anything is stored. (A cached input was read
        // before, and a change of its permissions changes its ctime, which the
        // cache compares.)
        for (input, hit) in inputs.iter().zip(&hit) {
            if !hit {
                crate::io::check_readable(&input.path).map_err(|e| refuse(&input.path, e))?;
            }
        }
        let (mut acked, mut since_commit, mut done) = (0usize, 0u64, 0u64);
        let mut next = 0;
        while next < inputs.len() {
            let end = window_end(inputs, next, small, opts);
            let window = &inputs[next..end];
            let known = &hit[next..end];
            rep.cached_files += known.iter().filter(|&&k| k).count() as u64;
            let rest: Vec<IngestInput> = window
                .iter()
                .zip(known)
                .filter(|(_, k)| !**k)
                .map(|(i, _)| i.clone())
                .collect();
            let mut stored = self
                .store_window(&rest, small, opts, &mut |d| {
                    on_event(IngestEvent::Progress { done: done + d, total })
                })?
                .into_iter();
            for ((known, input), f) in known.iter().zip(window).zip(&mut rep.files[next..end]) {
                if !known {
                    f.put = stored
                        .next()
                        .ok_or_else(|| Error::io("ingest", io::Error::other("a window lost a result")))?;
                }
                if f.put.new {
                    since_commit += f.put.len;
                    rep.new_files += 1;
                    rep.new_bytes += f.put.len;
                }
                done += input.size;
            }
            next = end;
            on_event(IngestEvent::Progress { done, total });
            if since_commit >= opts.commit_bytes || next - acked >= opts.commit_files {
                self.commit()?;
                on_event(IngestEvent::Committed(&rep.files[acked..next]));
                acked = next;
                since_commit = 0;
            }
        }
        self.commit()?;
        if acked < next {
            on_event(IngestEvent::Committed(&rep.files[acked..next]));
        }
        if let Some(c) = &mut cache {
            // A file the cache answered keeps its entry as it is (it was
            // settled, and still is); when nothing else was read, the file is
            // not written again.
            let mut changed = opts.files_cache == FilesCacheMode::Refresh;
            let mut keys = keys;
            for ((f, input), hit) in rep.files.iter().zip(inputs).zip(&hit) {
                if *hit {
                    continue;
                }
                if let Some(key) = keys.key(&f.path) {
                    c.record_key(key, input.stamp, f.put.id, plan.walked_ns);
                    changed = true;
                }
            }
            if changed {
                rep.files_cache_error = c.save(&*self.layout.io, &cache_path).err().map(|e| e.to_string());
            }
        }
        rep.elapsed = start.elapsed();
        Ok(rep)
    }

    /// Sets the put of each of `files` (the results of `inputs`) that the
    /// cache vouches for and the store still holds, and marks it in `hit`.
    /// On all cores, each taking a stretch of the inputs: an unchanged
    /// re-ingest is nearly all this and the walk.
    fn vouched(
        &self,
        cache: &FilesCache,
        keys: &Keys,
        inputs: &[IngestInput],
        files: &mut [Ingested],
        hit: &mut [bool],
    ) -> Result<()> {
        use rayon::prelude::*;
        const STRETCH: usize = 4096;
        files
            .par_chunks_mut(STRETCH)
            .zip(hit.par_chunks_mut(STRETCH))
            .zip(inputs.par_chunks(STRETCH))
            .try_for_each(|((files, hit), inputs)| {
                let (mut keys, mut key, mut hint) = (keys.clone(), Vec::new(), 0);
                let mut ids: Vec<(crate::ArtifactId, u32)> = inputs
                    .iter()
                    .enumerate()
                    .filter_map(|(k, input)| {
                        keys.key_into(&input.path, &mut key)
                            .then(|| cache.lookup_key(&key, &input.stamp, &mut hint))
                            .flatten()
                            .map(|id| (id, k as u32))
                    })
                    .collect();
                self.existing_sorted(&mut ids, |k, put| {
                    (files[k as usize].put, hit[k as usize]) = (put, true);
                })
            })
    }

    /// Stores one window: its small files with one `put_batch`, then its
    /// large ones; returns the puts in input order. `progress` gets bytes done
    /// within the window.
    fn store_window(
        &self,
        window: &[IngestInput],
        small: u64,
        opts: &IngestOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<Put>> {
        let (small_idx, large_idx): (Vec<usize>, Vec<usize>) =
            (0..window.len()).partition(|&i| window[i].size <= small);
        let mut puts: Vec<Option<Put>> = vec![None; window.len()];
        let mut done = 0u64;
        if !small_idx.is_empty() {
            let picked: Vec<&IngestInput> = small_idx.iter().map(|&i| &window[i]).collect();
            let bufs = read_all(&picked)?;
            for (i, p) in small_idx.iter().zip(self.put_batch_with(&bufs, &opts.put)?) {
                done += window[*i].size;
                puts[*i] = Some(p);
            }
            progress(done);
        }
        for i in large_idx {
            let input = &window[i];
            let base = done;
            let p = self.put_file_with_progress(&input.path, &opts.put, &mut |d| progress(base + d))?;
            done += input.size;
            puts[i] = Some(p);
        }
        Ok(puts.into_iter().flatten().collect())
    }
}

/// The end of the window starting at `next`: as many inputs as keep the small
/// files under the window's byte and file limits (at least one).
fn window_end(inputs: &[IngestInput], next: usize, small: u64, opts: &IngestOptions) -> usize {
    let mut small_bytes = 0u64;
    (next..inputs.len())
        .take_while(|&i| {
            if inputs[i].size <= small {
                small_bytes += inputs[i].size;
            }
            small_bytes <= opts.window_bytes && i - next < opts.window_files
        })
        .last()
        .map(|i| i + 1)
        .unwrap_or(next + 1)
}

fn read_all(inputs: &[&IngestInput]) -> Result<Vec<Vec<u8>>> {
    use rayon::prelude::*;
    // Reading thousands of small files is mostly system-call time: spread it.
    inputs
        .par_iter()
        .with_min_len(16)
        .map(|i| {
            fs::read(&i.path).map_err(|e| Error::Io {
                context: format!("read {}", i.path.display()),
                source: e,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    #[test]
    fn ingest_reports_in_order_and_commits_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..30u32 {
            let sub = if i % 2 == 0 { "sub/" } else { "" };
            let body = if i % 10 == 0 {
                vec![i as u8; 300_000]
            } else {
                format!("file {i}").into_bytes()
            };
            std::fs::write(src.join(format!("{sub}f{i:02}")), body).unwrap();
        }
        // A link is a tree's business, not an input; a FIFO is skipped.
        std::os::unix::fs::symlink(src.join("f01"), src.join("link")).unwrap();
        assert!(std::process::Command::new("mkfifo")
            .arg(src.join("fifo"))
            .status()
            .unwrap()
            .success());
        let store = StoreOptions::new().create(true).open(dir.path().join("store")).unwrap();
        let opts = IngestOptions {
            commit_files: 7,
            window_files: 5,
            ..Default::default()
        };
        let mut committed = Vec::new();
        let mut last_progress = 0;
        let rep = store
            .ingest(std::slice::from_ref(&src), &opts, &mut |ev| match ev {
                IngestEvent::Committed(done) => committed.extend(done.iter().map(|d| d.path.clone())),
                IngestEvent::Progress { done, total } => {
                    assert!(done >= last_progress && done <= total);
                    last_progress = done;
                }
            })
            .unwrap();
        assert_eq!(rep.files.len(), 30);
        assert_eq!(rep.skipped, 1);
        assert_eq!(last_progress, rep.bytes);
        let paths: Vec<PathBuf> = rep.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(committed, paths, "every result reported durable once, in order");
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        for f in &rep.files {
            assert_eq!(store.get(&f.put.id).unwrap(), std::fs::read(&f.path).unwrap());
        }
        // A second ingest of the same tree stores nothing new.
        let again = store.ingest(&[src], &opts, &mut |_| {}).unwrap();
        assert_eq!(again.new_files, 0);
        // A missing input is refused before anything is written.
        let before = store.stat().unwrap();
        let err = store
            .ingest(&[dir.path().join("nope")], &opts, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("cannot ingest"), "{err}");
        assert_eq!(store.stat().unwrap().current_id, before.current_id);
    }
}
