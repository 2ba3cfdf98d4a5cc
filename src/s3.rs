//! A store's immutable files on S3-compatible object storage (feature
//! `s3`, the `object_store` crate): `push` mirrors them to a bucket,
//! `restore` rebuilds a store from the bucket alone.
//!
//! What goes up is what never changes once written: the `STORE` identity
//! file and every sealed segment. A push seals the open segment first
//! (committing it), so after a push the bucket holds every committed
//! artifact; the checkpoint, log and index files stay local, since `repair`
//! rebuilds them from the segments. A push is a mirror: segments already in
//! the bucket with the same length are not sent again (so a push cut off
//! part-way resumes where it stopped), and segments that garbage collection
//! has since deleted locally are deleted from the bucket after the new
//! ones are up. A bucket that holds another store (another `STORE`) is
//! refused. `restore` downloads `STORE` and the segments into an empty
//! directory and runs `repair`, which checks every block and rebuilds the
//! index, log and checkpoint.
//!
//! Credentials and endpoint come from the environment, as for other S3
//! tools: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (for S3-compatible servers) and `AWS_ALLOW_HTTP=true`
//! for a plain-HTTP endpoint.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use crate::{Error, Result, Store, StoreOptions};

/// Parts of a multipart upload.
const PART: usize = 8 << 20;

/// A bucket and a prefix in it, e.g. `s3://bucket/stores/main`.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    rt: tokio::runtime::Runtime,
}

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

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Segments fetched.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Artifacts the rebuilt store holds.
    pub artifacts: u64,
}

fn s3err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        context: what.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io {
        context: what,
        source: e,
    }
}

impl Bucket {
    /// The bucket an `s3://BUCKET[/PREFIX]` URL names, with credentials and
    /// endpoint from the environment.
    pub fn open(url: &str) -> Result<Bucket> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidArgument(format!("{url:?} is not s3://bucket/prefix")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidArgument(format!("{url:?} names no bucket")));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("{url}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(io("start the async runtime".into()))?;
        Ok(Bucket {
            store: Arc::new(s3),
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
            rt,
        })
    }

    fn key(&self, name: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(name)
        } else {
            Key::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The bucket's segments: name → length.
    fn segments(&self) -> Result<BTreeMap<String, u64>> {
        let dir = self.key("segments");
        self.rt.block_on(async {
            let mut out = BTreeMap::new();
            let mut list = self.store.list(Some(&dir));
            while let Some(m) = list.next().await {
                let m = m.map_err(|e| s3err(&format!("list {}", self.url), e))?;
                if let Some(name) = m.location.filename() {
                    out.insert(name.to_string(), m.size);
                }
            }
            Ok(out)
        })
    }

    fn get_small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key(name);
        self.rt.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => Ok(Some(
                    r.bytes().await.map_err(|e| s3err(&format!("get {key}"), e))?.to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(s3err(&format!("get {key}"), e)),
            }
        })
    }

    /// Sends the file at `path` as `name` (one put, or a multipart upload
    /// for a large one).
    fn upload(&self, path: &Path, name: &str) -> Result<u64> {
        let key = self.key(name);
        let mut f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
        let len = f.metadata().map_err(io(format!("stat {}", path.display())))?.len();
        self.rt.block_on(async {
            if len as usize <= PART {
                let mut b = Vec::with_capacity(len as usize);
                f.read_to_end(&mut b).map_err(io(format!("read {}", path.display())))?;
                self.store
                    .put(&key, PutPayload::from(b))
                    .await
                    .map_err(|e| s3err(&format!("put {key}"), e))?;
                return Ok(len);
            }
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| s3err(&format!("start upload of {key}"), e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = f.read(&mut buf).map_err(io(format!("read {}", path.display())))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4)
                    .await
                    .map_err(|e| s3err(&format!("upload {key}"), e))?;
                w.write(&buf[..n]);
            }
            w.finish()
                .await
                .map_err(|e| s3err(&format!("finish upload of {key}"), e))?;
            Ok(len)
        })
    }

    /// Mirrors the store at `dir` to the bucket (see the module docs).
    pub fn push(&self, dir: &Path) -> Result<PushReport> {
        // Held open (the writer lock) so nothing changes during the push;
        // sealing makes every committed artifact part of a sealed segment.
        let store = StoreOptions::new().open(dir)?;
        store.seal()?;
        let identity = std::fs::read(dir.join("STORE")).map_err(io(format!("read {}/STORE", dir.display())))?;
        match self.get_small("STORE")? {
            Some(b) if b != identity => {
                return Err(Error::InvalidArgument(format!(
                    "{} holds another store (its STORE differs): push to another prefix",
                    self.url
                )))
            }
            Some(_) => {}
            None => {
                let key = self.key("STORE");
                self.rt
                    .block_on(self.store.put(&key, PutPayload::from(identity.clone())))
                    .map_err(|e| s3err(&format!("put {key}"), e))?;
            }
        }
        let there = self.segments()?;
        let mut local = BTreeMap::new();
        for e in std::fs::read_dir(dir.join("segments")).map_err(io(format!("list {}/segments", dir.display())))? {
            let e = e.map_err(io(format!("list {}/segments", dir.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".seg") {
                let len = e.metadata().map_err(io(format!("stat {name}")))?.len();
                local.insert(name, (e.path(), len));
            }
        }
        let mut r = PushReport::default();
        for (name, (path, len)) in &local {
            if there.get(name) == Some(len) {
                r.kept += 1;
                continue;
            }
            r.bytes += self.upload(path, &format!("segments/{name}"))?;
            r.uploaded += 1;
        }
        // Only once everything present is up: what GC deleted goes.
        for name in there.keys().filter(|n| !local.contains_key(*n)) {
            let key = self.key(&format!("segments/{name}"));
            self.rt
                .block_on(self.store.delete(&key))
                .map_err(|e| s3err(&format!("delete {key}"), e))?;
            r.deleted += 1;
        }
        drop(store);
        Ok(r)
    }

    /// Rebuilds a store in `dir` (which must not exist or be empty) from
    /// the bucket: `STORE` and the segments fetched, then `repair`.
    pub fn restore(&self, dir: &Path) -> Result<RestoreReport> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::InvalidArgument(format!(
                "{} is not empty: restore into a new directory",
                dir.display()
            )));
        }
        let identity = self
            .get_small("STORE")?
            .ok_or_else(|| Error::InvalidArgument(format!("{} holds no store (no STORE object)", self.url)))?;
        let segdir = dir.join("segments");
        std::fs::create_dir_all(&segdir).map_err(io(format!("create {}", segdir.display())))?;
        let mut r = RestoreReport::default();
        for (name, len) in self.segments()? {
            if !name.ends_with(".seg") || name.contains('/') || name.starts_with('.') {
                continue;
            }
            let key = self.key(&format!("segments/{name}"));
            let tmp = segdir.join(format!(".{name}.part"));
            let got = self.rt.block_on(async {
                let mut f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
                let mut s = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| s3err(&format!("get {key}"), e))?
                    .into_stream();
                let mut n = 0u64;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk.map_err(|e| s3err(&format!("get {key}"), e))?;
                    std::io::Write::write_all(&mut f, &chunk).map_err(io(format!("write {}", tmp.display())))?;
                    n += chunk.len() as u64;
                }
                f.sync_all().map_err(io(format!("sync {}", tmp.display())))?;
                Ok::<_, Error>(n)
            })?;
            if got != len {
                return Err(s3err(
                    &format!("get {key}"),
                    format!("{got} bytes, the listing says {len}"),
                ));
            }
            std::fs::rename(&tmp, segdir.join(&name)).map_err(io(format!("rename {}", tmp.display())))?;
            r.segments += 1;
            r.bytes += got;
        }
        std::fs::write(dir.join("STORE"), identity).map_err(io(format!("write {}/STORE", dir.display())))?;
        // Every block is checked and the index, log and checkpoint rebuilt.
        crate::Store::repair(dir)?;
        let store = Store::open(dir)?;
        r.artifacts = store.iter()?.count() as u64;
        Ok(r)
    }
}
