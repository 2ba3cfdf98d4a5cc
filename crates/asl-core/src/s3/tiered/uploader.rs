//! The uploader: a background thread that runs the queued uploads and
//! deletions in order, retrying a failed one with backoff.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::Shared;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Job {
    /// Upload a sealed segment, then drop its local copy.
    Offload(String),
    /// Upload the current bytes of a mirrored file (`CHECKPOINT`, a snapshot).
    Mirror(String),
    /// Delete a mirrored object.
    Delete(String),
    /// Delete a segment GC dropped, its grace over.
    Expire(String),
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) jobs: VecDeque<Job>,
    pub(super) busy: bool,
    pub(super) failures: u32,
    pub(super) last_error: Option<String>,
    pub(super) shutdown: bool,
}

/// Runs queued jobs in order until shutdown; a failed job stays at the head
/// and is tried again after a backoff (1 s, doubling to 30 s). Segments
/// whose deletion was deferred are queued as their grace ends.
pub(super) fn uploader(s: &Shared) {
    loop {
        let job = {
            let mut q = s.queue.lock();
            loop {
                if q.shutdown {
                    return;
                }
                let (ready, next) = s.deferred.lock().due_by(super::deferred::now());
                for name in ready {
                    let job = Job::Expire(name);
                    if !q.jobs.contains(&job) {
                        q.jobs.push_back(job);
                    }
                }
                if !q.jobs.is_empty() {
                    break;
                }
                match next {
                    Some(secs) => {
                        s.changed.wait_for(&mut q, Duration::from_secs(secs));
                    }
                    None => s.changed.wait(&mut q),
                }
            }
            q.busy = true;
            q.jobs[0].clone()
        };
        let r = run(s, &job);
        let mut q = s.queue.lock();
        q.busy = false;
        match r {
            Ok(()) => {
                q.jobs.pop_front();
                q.failures = 0;
                q.last_error = None;
                s.changed.notify_all();
            }
            Err(e) => {
                q.failures += 1;
                q.last_error = Some(e.to_string());
                s.changed.notify_all();
                let wait = Duration::from_secs(1 << q.failures.min(5).saturating_sub(1)).min(Duration::from_secs(30));
                if !q.shutdown {
                    s.changed.wait_for(&mut q, wait);
                }
            }
        }
    }
}

pub(super) fn run(s: &Shared, job: &Job) -> io::Result<()> {
    // Another directory that took the store over since this one opened
    // must not have its segments or checkpoint overwritten by this one.
    s.check_lease()?;
    match job {
        Job::Offload(name) => {
            let path = s.root.join("segments").join(name);
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                // Already offloaded, or deleted by GC since.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            if s.remote()?.get(name) != Some(&len) {
                s.bucket.put_file(&path, &format!("segments/{name}"))?;
                s.remote_insert(name, len);
            }
            // Readers holding the handle finish their read; new ones go to
            // the bucket.
            s.locals.write().remove(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Job::Mirror(key) => match std::fs::read(s.root.join(key)) {
            Ok(b) => s.bucket.put(key, b),
            // Replaced or deleted since: the job that did that follows.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
        Job::Delete(key) => s.bucket.delete(key),
        Job::Expire(name) => {
            // A replica reads through the checkpoint mirrored last: while
            // that one names the segment, the grace starts again.
            let named = s
                .bucket
                .get("CHECKPOINT")?
                .and_then(|b| crate::snapshot::checkpoint::Checkpoint::decode(&b).ok())
                .is_some_and(|c| {
                    c.segments
                        .iter()
                        .any(|g| crate::block::segment::segment_file_name(g.id) == *name)
                });
            let mut d = s.deferred.lock();
            if named {
                d.due.insert(name.clone(), super::deferred::now() + s.grace);
            } else {
                s.bucket.delete(&format!("segments/{name}"))?;
                d.due.remove(name);
            }
            s.save_deferred(&d)
        }
    }
}
