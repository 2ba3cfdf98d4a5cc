//! A store on S3-compatible object storage (feature `s3`), in two ways:
//!
//! - **Living in a bucket** ([`create`], [`tier`], [`attach`]): the store
//!   directory keeps only its open segment, log, checkpoint, index and a
//!   bounded page cache; sealed segments are uploaded and read back in
//!   ranges ([`tiered`]). A `BUCKET` file in the directory is what
//!   makes every later open do that. [`attach`] rebuilds such a store on
//!   another machine from the bucket alone, without downloading the
//!   segments to keep.
//! - **Mirrored** ([`push`], [`restore`]): a local store's `STORE` file and
//!   sealed segments copied to a bucket, and a whole local store rebuilt
//!   from that copy.
//!
//! Either way a bucket prefix holds one store: its `STORE` object says
//! which, and a prefix holding another store is refused. Credentials and
//! endpoint come from the environment (see [`bucket::Bucket::open`]).
//!
//! Everything S3 is in this folder: the client ([`bucket`]), the backend of
//! a store living in a bucket ([`tiered`], with its page cache, uploader and
//! lease apart), and the operations above.

pub mod bucket;
mod replica;
pub mod tiered;

pub use replica::{follow, is_replica, replica, set_delete_grace, Followed};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Meter, ProgressFn, Result, Store, StoreOptions};
use bucket::Bucket;
use tiered::TierConfig;

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Segments sent.
    pub uploaded: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Segments already there.
    pub kept: usize,
    /// Segments deleted from the bucket (no longer in the store).
    pub deleted: usize,
}

/// What a restore or an attach did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Segments read.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Artifacts the rebuilt store holds.
    pub artifacts: u64,
    /// Snapshots it holds.
    pub snapshots: usize,
}

fn open_bucket(url: &str) -> Result<Bucket> {
    Bucket::open(url).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => Error::InvalidArgument(e.to_string()),
        _ => Error::io(format!("open {url}"), e),
    })
}

fn s3err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn fs(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Puts `identity` as the bucket's `STORE`, or checks that the one there is it.
fn claim(b: &Bucket, identity: &[u8]) -> Result<()> {
    match b.get("STORE").map_err(s3err(format!("get {}/STORE", b.url())))? {
        Some(there) if there != identity => Err(Error::InvalidArgument(format!(
            "{} holds another store (its STORE differs): use another prefix",
            b.url()
        ))),
        Some(_) => Ok(()),
        None => b
            .put("STORE", identity.to_vec())
            .map_err(s3err(format!("put {}/STORE", b.url()))),
    }
}

/// Removes what `dir` holds (best effort: what a failed create or replica
/// left in a directory the caller gave).
fn empty_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

fn write_bucket_file(dir: &Path, cfg: &TierConfig) -> Result<()> {
    let p = dir.join(crate::io::BUCKET_FILE);
    Ok(crate::fsutil::write_atomic(
        &crate::io::LocalBackend,
        &p,
        &cfg.encode(),
    )?)
}

/// The local directory a store living at `url` uses by default:
/// `$ASL_S3_CACHE/BUCKET/PREFIX`, else `$XDG_CACHE_HOME/asl/s3/...`,
/// else `~/.cache/asl/s3/...`.
pub fn local_dir_for(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::InvalidArgument(format!("{url:?} is not s3://bucket/prefix")))?;
    let rest = rest.trim_matches('/');
    if rest.is_empty() || rest.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(Error::InvalidArgument(format!("{url:?} is not s3://bucket/prefix")));
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = env("ASL_S3_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("asl/s3")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/asl/s3")))
        .ok_or_else(|| Error::InvalidArgument("set ASL_S3_CACHE for the local part of an s3:// store".into()))?;
    Ok(base.join(rest))
}

/// Creates a new store at `dir` (new or empty) living in the bucket at
/// `url`, which must hold no store yet.
pub fn create(url: &str, dir: &Path, opts: StoreOptions, cache_bytes: u64) -> Result<Store> {
    if !is_empty_dir(dir) {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty: create into a new directory",
            dir.display()
        )));
    }
    let b = open_bucket(url)?;
    checked(&b)?;
    if b.head("STORE").map_err(s3err(format!("head {url}/STORE")))?.is_some() {
        return Err(Error::InvalidArgument(format!(
            "{url} already holds a store: attach to it instead"
        )));
    }
    // A create that fails part-way leaves no local store behind: a retry
    // would refuse the directory, and `--store s3://…` must never find a
    // store there that the bucket does not hold.
    let existed = dir.exists();
    let made = opts
        .clone()
        .create(true)
        .open(dir)
        .map(drop)
        .and_then(|()| tier(dir, url, cache_bytes));
    if let Err(e) = made {
        if existed {
            empty_dir(dir);
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    opts.open(dir)
}

/// The bucket, checked to exist: a missing one is an invalid argument that
/// names it, not an I/O failure.
fn checked(b: &Bucket) -> Result<()> {
    b.check().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::InvalidArgument(e.to_string()),
        _ => Error::io(format!("reach {}", b.url()), e),
    })
}

/// Whether the store directory `dir` lives in the bucket at `url`: its
/// `BUCKET` file names that URL. `Err` says what it is instead.
pub fn attached_to(dir: &Path, url: &str) -> Result<()> {
    let p = dir.join(crate::io::BUCKET_FILE);
    let cfg = match std::fs::read(&p) {
        Ok(b) => TierConfig::decode(&b).map_err(|e| Error::corrupt(&p, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::InvalidArgument(format!(
                "{} holds a local store not attached to {url}: move it away, or use it with --store {}",
                dir.display(),
                dir.display()
            )))
        }
        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
    };
    if cfg.url.trim_end_matches('/') != url.trim_end_matches('/') {
        return Err(Error::InvalidArgument(format!(
            "{} is attached to {}, not to {url}",
            dir.display(),
            cfg.url
        )));
    }
    Ok(())
}

/// Moves the existing local store at `dir` into the bucket at `url` (empty,
/// or holding this same store): writes `BUCKET`, and the next open uploads
/// every sealed segment and drops its local copy.
pub fn tier(dir: &Path, url: &str, cache_bytes: u64) -> Result<()> {
    let store = StoreOptions::new().open(dir)?;
    if store.maintenance().tier_status().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{} already lives in a bucket",
            dir.display()
        )));
    }
    let identity = std::fs::read(dir.join("STORE")).map_err(fs(format!("read {}/STORE", dir.display())))?;
    let b = open_bucket(url)?;
    checked(&b)?;
    claim(&b, &identity)?;
    write_bucket_file(dir, &TierConfig::new(url, cache_bytes))?;
    // Closed and opened again through the tiered backend, which queues
    // the sealed segments; closing waits for them to go up.
    store.close()?;
    StoreOptions::new().open(dir)?.close()
}

/// Rebuilds the local part of a store living at `url` in `dir` (new or
/// empty), from the bucket alone: `STORE`, the mirrored checkpoint and
/// snapshot files are fetched, then repair reads every segment through the
/// bucket (checking every block) and rebuilds the index, log and
/// checkpoint. The segments are not kept locally.
///
/// The directory can read at once; it can write once it holds the
/// bucket's lease, which its first writing open takes when nobody holds it.
/// `take_over` takes it from whoever held it (a machine that is gone);
/// without it nothing in the bucket changes.
pub fn attach(url: &str, dir: &Path, cache_bytes: u64, take_over: bool) -> Result<RestoreReport> {
    attach_with(url, dir, cache_bytes, take_over, None)
}

/// [`attach`], telling `progress` the bytes of segments read through the
/// bucket (phase `"segments"`).
pub fn attach_with(
    url: &str,
    dir: &Path,
    cache_bytes: u64,
    take_over: bool,
    progress: Option<ProgressFn<'_>>,
) -> Result<RestoreReport> {
    let (b, identity, segments) = begin_rebuild(url, dir, "attach")?;
    fetch_catalog(&b, dir)?;
    let cfg = TierConfig::new(url, cache_bytes);
    write_bucket_file(dir, &cfg)?;
    std::fs::write(dir.join("STORE"), identity).map_err(fs(format!("write {}/STORE", dir.display())))?;
    if take_over {
        tiered::take_over(&b, &cfg.holder, dir).map_err(s3err(format!("take over {url}")))?;
    }
    // Repair through a reader: it rebuilds local files only, and not from
    // segments GC dropped that only wait out their grace in the bucket.
    let reader = tiered::TieredBackend::open(dir, &cfg, false).map_err(s3err(format!("open {url}")))?;
    if let Some(b) = b
        .get(tiered::DELETES_FILE)
        .map_err(s3err(format!("get {url}/DELETES")))?
    {
        let gone = tiered::decode_deletes(&b).map_err(|e| Error::corrupt(Path::new(&format!("{url}/DELETES")), e))?;
        reader.hide(gone.into_keys()).map_err(s3err(format!("list {url}")))?;
    }
    StoreOptions::new()
        .backend(std::sync::Arc::new(reader))
        .repair_with_progress(dir, progress)?;
    report(dir, segments)
}

/// The start of a rebuild into `dir` (which must be new or empty): the
/// bucket, the store identity it holds, its segments, and the directories.
fn begin_rebuild(url: &str, dir: &Path, verb: &str) -> Result<(Bucket, Vec<u8>, BTreeMap<String, u64>)> {
    if !is_empty_dir(dir) {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty: {verb} into a new directory",
            dir.display()
        )));
    }
    let b = open_bucket(url)?;
    checked(&b)?;
    let identity = b
        .get("STORE")
        .map_err(s3err(format!("get {url}/STORE")))?
        .ok_or_else(|| Error::InvalidArgument(format!("{url} holds no store (no STORE object)")))?;
    let segments = b.list("segments").map_err(s3err(format!("list {url}")))?;
    for d in ["segments", "snapshots"] {
        std::fs::create_dir_all(dir.join(d)).map_err(fs(format!("create {}/{d}", dir.display())))?;
    }
    Ok((b, identity, segments))
}

/// The mirrored checkpoint (as the old state repair reads snapshot names
/// and pins from) and the snapshot files it may name.
fn fetch_catalog(b: &Bucket, dir: &Path) -> Result<()> {
    for name in b.list("snapshots").map_err(s3err(format!("list {}", b.url())))?.keys() {
        if !name.ends_with(".idx") || name.starts_with('.') {
            continue;
        }
        if let Some(bytes) = b
            .get(&format!("snapshots/{name}"))
            .map_err(s3err(format!("get {}/snapshots/{name}", b.url())))?
        {
            std::fs::write(dir.join("snapshots").join(name), bytes).map_err(fs(format!("write {name}")))?;
        }
    }
    if let Some(bytes) = b
        .get("CHECKPOINT")
        .map_err(s3err(format!("get {}/CHECKPOINT", b.url())))?
    {
        std::fs::write(dir.join("CHECKPOINT"), bytes).map_err(fs(format!("write {}/CHECKPOINT", dir.display())))?;
    }
    Ok(())
}

fn report(dir: &Path, segments: BTreeMap<String, u64>) -> Result<RestoreReport> {
    let store = StoreOptions::new().read_only(true).open(dir)?;
    Ok(RestoreReport {
        segments: segments.len(),
        bytes: segments.values().sum(),
        artifacts: store.iter()?.count() as u64,
        snapshots: store.snapshots().list().len(),
    })
}

/// Mirrors the local store at `dir` to the bucket at `url`: seals the open
/// segment (committing it), then sends the `STORE` file, every sealed
/// segment the bucket lacks (a cut-off push resumes where it stopped), and
/// the checkpoint and snapshot files; segments GC deleted locally are
/// deleted from the bucket once the new ones are up.
pub fn push(url: &str, dir: &Path) -> Result<PushReport> {
    push_with(url, dir, None)
}

/// [`push`], telling `progress` the bytes of segments sent (phase
/// `"upload"`).
pub fn push_with(url: &str, dir: &Path, progress: Option<ProgressFn<'_>>) -> Result<PushReport> {
    // Held open (the writer lock) so nothing changes during the push.
    let store = StoreOptions::new().open(dir)?;
    if store.maintenance().tier_status().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{} lives in a bucket already; push mirrors a local store",
            dir.display()
        )));
    }
    store.maintenance().seal()?;
    store.maintenance().checkpoint()?;
    let identity = std::fs::read(dir.join("STORE")).map_err(fs(format!("read {}/STORE", dir.display())))?;
    let b = open_bucket(url)?;
    checked(&b)?;
    claim(&b, &identity)?;
    let there = b.list("segments").map_err(s3err(format!("list {url}")))?;
    let mut local = BTreeMap::new();
    let segdir = dir.join("segments");
    for e in std::fs::read_dir(&segdir).map_err(fs(format!("list {}", segdir.display())))? {
        let e = e.map_err(fs(format!("list {}", segdir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".seg") {
            let len = e.metadata().map_err(fs(format!("stat {name}")))?.len();
            local.insert(name, (e.path(), len));
        }
    }
    let mut r = PushReport::default();
    let sending: Vec<_> = local
        .iter()
        .filter(|(name, (_, len))| there.get(*name) != Some(len))
        .collect();
    r.kept = local.len() - sending.len();
    let meter = Meter::new(progress, "upload", sending.iter().map(|(_, (_, len))| len).sum());
    for (name, (path, _)) in sending {
        let key = format!("segments/{name}");
        r.bytes += b
            .put_file_metered(path, &key, &meter)
            .map_err(s3err(format!("upload {url}/{key}")))?;
        r.uploaded += 1;
    }
    meter.finish();
    mirror_catalog(&b, dir)?;
    // Only once everything present is up: what GC deleted goes.
    for name in there.keys().filter(|n| !local.contains_key(*n)) {
        b.delete(&format!("segments/{name}"))
            .map_err(s3err(format!("delete {url}/segments/{name}")))?;
        r.deleted += 1;
    }
    drop(store);
    Ok(r)
}

/// Sends the checkpoint and the snapshot files, and deletes snapshot
/// objects whose file is gone.
fn mirror_catalog(b: &Bucket, dir: &Path) -> Result<()> {
    let snapdir = dir.join("snapshots");
    let mut names = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&snapdir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".idx") && !name.starts_with('.') {
            let key = format!("snapshots/{name}");
            b.put_file(&e.path(), &key)
                .map_err(s3err(format!("upload {}/{key}", b.url())))?;
            names.insert(name);
        }
    }
    for name in b.list("snapshots").map_err(s3err(format!("list {}", b.url())))?.keys() {
        if !names.contains(name) {
            b.delete(&format!("snapshots/{name}"))
                .map_err(s3err(format!("delete {}/snapshots/{name}", b.url())))?;
        }
    }
    b.put_file(&dir.join("CHECKPOINT"), "CHECKPOINT")
        .map_err(s3err(format!("upload {}/CHECKPOINT", b.url())))
        .map(drop)
}

/// Rebuilds a whole local store in `dir` (new or empty) from the bucket at
/// `url`: `STORE`, the segments, the checkpoint and snapshot files fetched,
/// then `repair`, which checks every block and rebuilds the index and log.
pub fn restore(url: &str, dir: &Path) -> Result<RestoreReport> {
    restore_with(url, dir, None)
}

/// [`restore`], telling `progress` the bytes downloaded (phase
/// `"download"`), then those of segments repair checked (`"segments"`).
pub fn restore_with(url: &str, dir: &Path, progress: Option<ProgressFn<'_>>) -> Result<RestoreReport> {
    let (b, identity, segments) = begin_rebuild(url, dir, "restore")?;
    let segdir = dir.join("segments");
    let wanted = |name: &str| name.ends_with(".seg") && !name.starts_with('.');
    let total = segments.iter().filter(|(n, _)| wanted(n)).map(|(_, len)| len).sum();
    let meter = Meter::new(progress, "download", total);
    for (name, len) in segments.iter().filter(|(n, _)| wanted(n)) {
        let key = format!("segments/{name}");
        let tmp = segdir.join(format!(".{name}.part"));
        let f = std::fs::File::create(&tmp).map_err(fs(format!("create {}", tmp.display())))?;
        let mut w = meter.writer(f);
        let got = b.get_to(&key, &mut w).map_err(s3err(format!("get {url}/{key}")))?;
        let f = w.into_inner();
        if got != *len {
            return Err(Error::io(
                format!("get {url}/{key}"),
                std::io::Error::other(format!("{got} bytes, the listing says {len}")),
            ));
        }
        f.sync_all().map_err(fs(format!("sync {}", tmp.display())))?;
        std::fs::rename(&tmp, segdir.join(name)).map_err(fs(format!("rename {}", tmp.display())))?;
    }
    meter.finish();
    fetch_catalog(&b, dir)?;
    std::fs::write(dir.join("STORE"), identity).map_err(fs(format!("write {}/STORE", dir.display())))?;
    StoreOptions::new().repair_with_progress(dir, progress)?;
    report(dir, segments)
}
