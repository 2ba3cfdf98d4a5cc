//! A store that lives in a bucket (feature `s3`): sealed segments go to
//! S3-compatible object storage and leave the local disk; the open segment,
//! the log, the checkpoint and the index stay local.
//!
//! [`TieredBackend`] is the local file system with three differences, all
//! under the store directory:
//!
//! - A sealed segment is *offloaded* once the store says its seal is
//!   committed ([`Backend::offload`]): a background thread uploads it (one
//!   put, or a multipart upload that only appears whole), and only then
//!   deletes the local copy. An upload that fails is retried with backoff
//!   and, if the process ends first, queued again at the next open, because
//!   the local copy stays until the bucket has it. So nothing the store
//!   acknowledged ever exists only in a half-sent object.
//! - Reads of an offloaded segment fetch byte ranges from the bucket in
//!   pages of [`PAGE`] bytes, several missing pages in one request, through a
//!   page cache on local disk bounded by a byte budget with least-recently-
//!   used eviction. Each cached page carries a CRC32C, so a damaged cache
//!   file is fetched again rather than reported as a damaged segment; what
//!   the bucket returns is checked by the store's own block checksums and
//!   artifact hashes like any other read.
//! - `CHECKPOINT` and snapshot files are mirrored to the bucket after each
//!   change (and snapshot files deleted with their local copy), so a store
//!   rebuilt from the bucket alone gets its snapshots and pins back.
//!
//! The `BUCKET` file in the store directory says which bucket, and is what
//! makes an ordinary open use this backend ([`TierConfig`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::bucket::Bucket;
pub use crate::io::BUCKET_FILE;
use crate::io::{Backend, GrowingMap, LocalBackend, LockGuard, Mapped, OpenMode, StoreFile, TierStatus};

mod cache;
mod config;
mod deferred;
mod lease;
mod read;
use read::TieredFile;

mod uploader;

use cache::PageCache;
use config::rand_suffix;
pub use config::TierConfig;
use deferred::Deferred;
pub use deferred::{decode as decode_deletes, DELETES_FILE};
use lease::{acquire_lease, decode_lease, encode_writer, lease_lost};
pub use lease::{take_over, writer_url};
use uploader::{uploader, Job, Queue};

/// Bytes per cached page and per unit of a ranged fetch.
pub const PAGE: u64 = 1 << 20;
/// Pages fetched at most at once (a long read streams in 8 MiB steps).
const RUN: u64 = 16;
/// Pages per request within a run: a run is fetched as this many
/// concurrent requests, since one stream from an object store is slower
/// than several.
const PER_REQUEST: u64 = 4;
/// Failed attempts at the queue's head after which `settle` gives up.
const SETTLE_ATTEMPTS: u32 = 3;

/// Magic first line of the `BUCKET` file.
pub const BUCKET_MAGIC: &str = "ASLBUCKET";
/// The object naming the one directory that may write the store.
pub const LEASE: &str = "LEASE";
/// Magic first line of the `LEASE` object.
pub const LEASE_MAGIC: &str = "ASLLEASE";
/// The object naming the address the leaseholder serves the store at.
pub const WRITER: &str = "WRITER";
/// Magic first line of the `WRITER` object.
pub const WRITER_MAGIC: &str = "ASLWRITER";
/// Default page cache budget: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// How long a segment GC drops stays in the bucket by default (15 min):
/// read replicas still reading it through an older checkpoint have that
/// long to follow the newer one.
pub const DEFAULT_DELETE_GRACE: u64 = 15 * 60;

struct Shared {
    root: PathBuf,
    bucket: Bucket,
    /// Opened to write: holds the lease, so may change the bucket.
    writer: bool,
    holder: String,
    /// [`TierConfig::delete_grace`].
    grace: u64,
    /// Segments GC dropped, waiting out the grace before they are deleted
    /// from the bucket (a writer's; a reader's stays empty).
    deferred: Mutex<Deferred>,
    /// Segments in the bucket: file name → length; `None` until a listing
    /// succeeds (the bucket may be down at open: what is local still reads).
    remote: RwLock<Option<BTreeMap<String, u64>>>,
    /// Open handles of sealed segments still on local disk, so reads do not
    /// open a file each time and eviction can cut them off.
    locals: RwLock<HashMap<String, Arc<File>>>,
    cache: PageCache,
    queue: Mutex<Queue>,
    changed: Condvar,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
    hits: AtomicU64,
    /// The last page fetched of each segment, and how many fetches in a
    /// row each began right after the one before: from the third such a
    /// read is taken as sequential, and gets a whole run read ahead.
    last_fetched: Mutex<HashMap<String, (u64, u32)>>,
}

/// The backend of a store that lives in a bucket (see the module docs).
pub struct TieredBackend {
    local: LocalBackend,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TieredBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TieredBackend({} in {})",
            self.shared.root.display(),
            self.shared.bucket.url()
        )
    }
}

/// Where a path falls in the store directory.
enum Place {
    /// `segments/NAME`.
    Segment(String),
    /// `CHECKPOINT` or `snapshots/NAME`: mirrored under the same key.
    Mirrored(String),
    Other,
}

impl TieredBackend {
    /// The backend for the store directory `root` living in the bucket
    /// `cfg` names: lists the bucket's segments and opens the page cache
    /// (`root/cache`). Starts the uploader thread. A `writer` must hold the
    /// bucket's lease, and takes it when nobody does; a reader changes
    /// nothing in the bucket.
    pub fn open(root: &Path, cfg: &TierConfig, writer: bool) -> io::Result<Self> {
        if writer && cfg.replica {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a read replica of {}: it is never written; write through the writer's server",
                    root.display(),
                    cfg.url
                ),
            ));
        }
        let bucket = Bucket::open(&cfg.url)?;
        if writer {
            acquire_lease(&bucket, &cfg.holder, root)?;
        }
        let deferred = if writer {
            Deferred::load(root)
        } else {
            Deferred::default()
        };
        let remote = bucket.list("segments").ok().map(|mut r| {
            // Segments waiting out their grace are no longer the store's.
            r.retain(|n, _| !deferred.due.contains_key(n));
            r
        });
        let cache = PageCache::open(&root.join("cache"), cfg.cache_bytes)?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            bucket,
            writer,
            holder: cfg.holder.clone(),
            grace: cfg.delete_grace,
            deferred: Mutex::new(deferred),
            remote: RwLock::new(remote),
            locals: RwLock::new(HashMap::new()),
            cache,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            last_fetched: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("asl-uploader".into())
            .spawn(move || uploader(&s))?;
        let me = Self {
            local: LocalBackend,
            shared,
        };
        if writer {
            me.mirror_missing_indexes();
        }
        Ok(me)
    }

    /// Leaves `names` out of the bucket's segments as this backend sees
    /// them: a directory being attached does not rebuild from segments GC
    /// dropped that wait out their grace.
    pub fn hide(&self, names: impl IntoIterator<Item = String>) -> io::Result<()> {
        let mut remote = self.shared.remote()?.clone();
        for n in names {
            remote.remove(&n);
        }
        *self.shared.remote.write() = Some(remote);
        Ok(())
    }

    /// Queues the index files the bucket lacks (a store tiered before
    /// index files were mirrored, or uploads cut off by a stop), so that a
    /// replica finds every file the checkpoint names.
    fn mirror_missing_indexes(&self) {
        let Ok(there) = self.shared.bucket.list("index") else {
            return;
        };
        let dir = self.shared.root.join("index");
        for name in self.local.list(&dir).unwrap_or_default() {
            if let Place::Mirrored(key) = self.place(&dir.join(&name)) {
                if !there.contains_key(&name) {
                    self.enqueue(Job::Mirror(key));
                }
            }
        }
    }

    fn place(&self, path: &Path) -> Place {
        let Ok(rel) = path.strip_prefix(&self.shared.root) else {
            return Place::Other;
        };
        let parts: Vec<_> = rel.iter().filter_map(|p| p.to_str()).collect();
        match parts[..] {
            ["segments", name] if !name.starts_with('.') => Place::Segment(name.to_string()),
            ["CHECKPOINT"] => Place::Mirrored("CHECKPOINT".into()),
            // What a replica reads the checkpoint's entries through.
            ["index", name] if name.ends_with(".idx") && !name.starts_with('.') => {
                Place::Mirrored(format!("index/{name}"))
            }
            ["snapshots", name] if name.ends_with(".idx") && !name.starts_with('.') => {
                Place::Mirrored(format!("snapshots/{name}"))
            }
            _ => Place::Other,
        }
    }

    fn remote_len(&self, name: &str) -> Option<u64> {
        self.shared.remote_len(name)
    }

    fn enqueue(&self, job: Job) {
        let mut q = self.shared.queue.lock();
        if !q.jobs.contains(&job) {
            q.jobs.push_back(job);
            self.shared.changed.notify_all();
        }
    }

    fn remote_file(&self, name: String, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        let len = self
            .remote_len(&name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} is not there", path.display())))?;
        Ok(Box::new(TieredFile {
            shared: self.shared.clone(),
            name,
            len,
        }))
    }
}

impl Drop for TieredBackend {
    fn drop(&mut self) {
        // What is still queued is queued again by the next open.
        self.shared.queue.lock().shutdown = true;
        self.shared.changed.notify_all();
    }
}

impl Backend for TieredBackend {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        match (mode, self.place(path)) {
            (OpenMode::Read, Place::Segment(name)) if !path.exists() => self.remote_file(name, path),
            _ => self.local.open(path, mode),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.place(path) {
            Place::Segment(name) if !path.exists() && self.remote_len(&name).is_some() => self
                .shared
                .bucket
                .get(&format!("segments/{name}"))?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} is gone", path.display()))),
            _ => self.local.read(path),
        }
    }

    fn map(&self, path: &Path) -> io::Result<Mapped> {
        match self.place(path) {
            Place::Segment(_) if !path.exists() => Ok(Mapped::new(self.read(path)?)),
            _ => self.local.map(path),
        }
    }

    fn map_growing(&self, path: &Path, reserve: u64, published: u64) -> io::Result<Option<GrowingMap>> {
        // The open segment is always on local disk.
        self.local.map_growing(path, reserve, published)
    }

    fn open_sealed(&self, path: &Path) -> io::Result<Option<Box<dyn StoreFile>>> {
        let Place::Segment(name) = self.place(path) else {
            return Ok(None);
        };
        match File::open(path) {
            Ok(f) => {
                let len = f.metadata()?.len();
                self.shared.locals.write().insert(name.clone(), Arc::new(f));
                Ok(Some(Box::new(TieredFile {
                    shared: self.shared.clone(),
                    name,
                    len,
                })))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.remote_file(name, path).map(Some),
            Err(e) => Err(e),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Place::Segment(name) = self.place(from) {
            if let Some(len) = self.remote_len(&name) {
                if !from.exists() {
                    // Moving an offloaded segment out (repair's quarantine):
                    // bring it down, then it is no longer in the bucket.
                    let tmp = to.with_extension("part");
                    let mut f = File::create(&tmp)?;
                    let got = self.shared.bucket.get_to(&format!("segments/{name}"), &mut f)?;
                    if got != len {
                        return Err(io::Error::other(format!("{name}: {got} bytes, the listing says {len}")));
                    }
                    f.sync_all()?;
                    std::fs::rename(&tmp, to)?;
                } else {
                    self.local.rename(from, to)?;
                }
                self.forget_segment(&name)?;
                return Ok(());
            }
        }
        self.local.rename(from, to)?;
        if let Place::Mirrored(key) = self.place(to) {
            self.enqueue(Job::Mirror(key));
        }
        if let Place::Mirrored(key) = self.place(from) {
            self.enqueue(Job::Delete(key));
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match self.place(path) {
            Place::Segment(name) => {
                let local = self.local.remove(path);
                self.shared.locals.write().remove(&name);
                if self.remote_len(&name).is_some() {
                    self.forget_segment(&name)
                } else {
                    local
                }
            }
            Place::Mirrored(key) => {
                self.local.remove(path)?;
                self.enqueue(Job::Delete(key));
                Ok(())
            }
            Place::Other => self.local.remove(path),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = self.local.list(dir)?;
        if dir == self.shared.root.join("segments") {
            // Listing the segments must name every one, or cleanup and
            // repair would act on half a picture.
            let remote = self.shared.remote()?;
            let mut extra: Vec<String> = remote.keys().filter(|n| !names.contains(n)).cloned().collect();
            names.append(&mut extra);
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.local.create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.local.sync_dir(dir)
    }

    fn create_private_dir(&self, dir: &Path) -> io::Result<()> {
        self.local.create_private_dir(dir)
    }

    fn is_file(&self, path: &Path) -> bool {
        self.local.is_file(path) || matches!(self.place(path), Place::Segment(n) if self.remote_len(&n).is_some())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.local.is_dir(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        match self.place(path) {
            Place::Segment(name) if !path.exists() => self
                .remote_len(&name)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} is not there", path.display()))),
            _ => self.local.file_len(path),
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.local.try_lock(path)
    }

    fn lock_note(&self, path: &Path) -> Option<String> {
        self.local.lock_note(path)
    }

    fn drop_cache(&self, path: &Path) {
        self.local.drop_cache(path)
    }

    fn offload(&self, path: &Path) {
        if let Place::Segment(name) = self.place(path) {
            if path.exists() {
                self.enqueue(Job::Offload(name));
            }
        }
    }

    fn mirrors_catalog(&self) -> bool {
        true
    }

    fn announce(&self, url: &str) -> io::Result<()> {
        let s = &self.shared;
        if !s.writer {
            return Ok(());
        }
        s.check_lease()?;
        s.bucket.put(WRITER, encode_writer(&s.holder, url))
    }

    fn relist(&self) -> io::Result<()> {
        let listed = self.shared.bucket.list("segments")?;
        *self.shared.remote.write() = Some(listed);
        Ok(())
    }

    fn settle(&self) -> io::Result<()> {
        let mut q = self.shared.queue.lock();
        loop {
            if q.jobs.is_empty() && !q.busy {
                return Ok(());
            }
            if q.failures >= SETTLE_ATTEMPTS {
                return Err(io::Error::other(format!(
                    "{} uploads to {} wait: {} (the bytes are safe in the local directory; they are sent when the \
                     bucket answers, or at the next open)",
                    q.jobs.len(),
                    self.shared.bucket.url(),
                    q.last_error.as_deref().unwrap_or("failed")
                )));
            }
            self.shared.changed.wait(&mut q);
        }
    }

    fn tier_status(&self) -> Option<TierStatus> {
        let s = &self.shared;
        let q = s.queue.lock();
        let seg_dir = s.root.join("segments");
        let local_segments = self
            .local
            .list(&seg_dir)
            .map(|v| v.iter().filter(|n| n.ends_with(".seg")).count())
            .unwrap_or(0);
        let (cache_bytes, cache_budget) = s.cache.usage();
        Some(TierStatus {
            url: s.bucket.url().to_string(),
            remote_segments: s.remote().map_or(0, |r| r.len()),
            local_segments,
            queued: q.jobs.len(),
            last_error: q.last_error.clone(),
            cache_bytes,
            cache_budget,
            fetches: s.fetches.load(Ordering::Relaxed),
            fetched_bytes: s.fetched_bytes.load(Ordering::Relaxed),
            cache_hits: s.hits.load(Ordering::Relaxed),
        })
    }
}

impl TieredBackend {
    /// Drops a segment from the store: deleted from the bucket once its
    /// grace has passed (at once without one), its cached pages forgotten.
    fn forget_segment(&self, name: &str) -> io::Result<()> {
        let s = &self.shared;
        s.check_lease()?;
        if s.grace == 0 {
            s.bucket.delete(&format!("segments/{name}"))?;
        } else {
            let mut d = s.deferred.lock();
            d.due.insert(name.to_string(), deferred::now() + s.grace);
            s.save_deferred(&d)?;
        }
        s.remote_remove(name);
        s.cache.drop_segment(name);
        s.changed.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_cache_keeps_to_its_budget_and_drops_damaged_pages() {
        let d = tempfile::tempdir().unwrap();
        let c = PageCache::open(d.path(), 3 * 104).unwrap();
        for p in 0..5u64 {
            c.put("00000001.seg", p, &[p as u8; 100]);
        }
        // Three fit; the two used least recently went.
        assert_eq!(c.usage().0, 3 * 104);
        assert!(!c.has("00000001.seg", 0) && !c.has("00000001.seg", 1));
        assert_eq!(*c.get("00000001.seg", 2).unwrap(), vec![2u8; 100]);
        // Page 2 was just used, so page 3 goes next.
        c.put("00000001.seg", 9, &[9; 100]);
        assert!(c.has("00000001.seg", 2) && !c.has("00000001.seg", 3));
        // Reopened (nothing in memory), the cache finds its pages again,
        // but does not serve a damaged one.
        drop(c);
        let f = d.path().join("00000001.seg.4");
        let mut b = std::fs::read(&f).unwrap();
        b[7] ^= 0x40;
        std::fs::write(&f, b).unwrap();
        let c = PageCache::open(d.path(), 3 * 104).unwrap();
        assert!(c.get("00000001.seg", 4).is_none());
        assert!(!f.exists());
        assert_eq!(*c.get("00000001.seg", 9).unwrap(), vec![9u8; 100]);
        c.drop_segment("00000001.seg");
        assert_eq!(c.usage().0, 0);
    }
}
