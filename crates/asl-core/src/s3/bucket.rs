//! A bucket of S3-compatible object storage, seen through blocking calls
//! (feature `s3`, the `object_store` crate): the one client both the
//! tiered backend and the push/restore mirror use.
//!
//! Every call runs on the bucket's own small tokio runtime, so callers stay
//! synchronous like the rest of the store; that includes the server's
//! blocking threads, which are not async contexts. Errors are `io::Error`s
//! naming the object, with `NotFound` kept as such, so the layers above
//! treat a missing object like a missing file.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};

/// Parts of a multipart upload; files up to this size go in one put.
const PART: usize = 8 << 20;

/// A bucket and a prefix in it, e.g. `s3://bucket/stores/main`.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({})", self.url)
    }
}

fn err(what: String, e: object_store::Error) -> io::Error {
    let text = e.to_string();
    // With no credentials in the environment the client falls back to the
    // instance metadata service, whose refusal would read as the cause.
    if text.contains("169.254.169.254") && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        return io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or run where instance credentials are available)"
            ),
        );
    }
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, format!("{what}: not found")),
        _ => io::Error::other(format!("{what}: {text}")),
    }
}

impl Bucket {
    /// The bucket an `s3://BUCKET[/PREFIX]` URL names. Credentials and
    /// endpoint come from the environment, as for other S3 tools:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` (for S3-compatible servers) and
    /// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.
    pub fn open(url: &str) -> io::Result<Bucket> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?} {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("is not s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("names no bucket"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".") {
            return Err(bad("has a relative part in its prefix"));
        }
        // A dead endpoint should surface as an error within seconds, not
        // after object_store's default of minutes: the tiered backend
        // retries uploads itself, and a read has a caller waiting.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
        };
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .build()
            .map_err(|e| bad(&format!(": {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("asl-s3")
            .enable_all()
            .build()?;
        Ok(Bucket {
            store: Arc::new(s3),
            prefix: prefix.to_string(),
            url: url.to_string(),
            rt,
        })
    }

    /// The URL the bucket was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks that the bucket exists and can be listed with these
    /// credentials: a missing bucket is `NotFound`, naming it.
    pub fn check(&self) -> io::Result<()> {
        let key = self.key("");
        let bucket = self
            .url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap_or_default();
        let listed = self
            .rt
            .block_on(async { self.store.list_with_delimiter(Some(&key)).await });
        match listed {
            Ok(_) => Ok(()),
            Err(e) => {
                let missing =
                    matches!(e, object_store::Error::NotFound { .. }) || e.to_string().contains("NoSuchBucket");
                if missing {
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("bucket {bucket} does not exist (create it first, e.g. `aws s3 mb s3://{bucket}`)"),
                    ))
                } else {
                    Err(err(format!("list {}", self.url), e))
                }
            }
        }
    }

    fn key(&self, name: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(name)
        } else {
            Key::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The objects directly under `dir` (relative to the prefix): name → length.
    pub fn list(&self, dir: &str) -> io::Result<BTreeMap<String, u64>> {
        let key = self.key(dir);
        self.rt.block_on(async {
            let mut out = BTreeMap::new();
            let mut list = self.store.list(Some(&key));
            while let Some(m) = list.next().await {
                let m = m.map_err(|e| err(format!("list {}/{dir}", self.url), e))?;
                // Only direct children: a deeper key is not a file of ours.
                let rel = m.location.prefix_match(&key).map(|p| p.count());
                if let (Some(1), Some(name)) = (rel, m.location.filename()) {
                    out.insert(name.to_string(), m.size);
                }
            }
            Ok(out)
        })
    }

    /// The length of an object, or `None` when it is not there.
    pub fn head(&self, name: &str) -> io::Result<Option<u64>> {
        let key = self.key(name);
        match self.rt.block_on(self.store.head(&key)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(format!("head {key}"), e)),
        }
    }

    /// A whole object, or `None` when it is not there.
    pub fn get(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let key = self.key(name);
        self.rt.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => Ok(Some(
                    r.bytes().await.map_err(|e| err(format!("get {key}"), e))?.to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(format!("get {key}"), e)),
            }
        })
    }

    /// Bytes `range` of an object; exactly that many, or an error.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        let key = self.key(name);
        let want = range.end - range.start;
        let b = self
            .rt
            .block_on(self.store.get_range(&key, range.clone()))
            .map_err(|e| err(format!("get {key} bytes {}..{}", range.start, range.end), e))?;
        if b.len() as u64 != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("get {key}: {} bytes of the {want} asked for", b.len()),
            ));
        }
        Ok(b.to_vec())
    }

    /// Several byte ranges of one object, fetched concurrently (one request
    /// each, unlike object_store's `get_ranges`, which merges neighbours
    /// into one request); each exactly as long as asked, or an error.
    pub fn get_ranges(&self, name: &str, ranges: &[Range<u64>]) -> io::Result<Vec<Vec<u8>>> {
        let key = self.key(name);
        let got = self.rt.block_on(futures_util::future::try_join_all(
            ranges.iter().map(|r| self.store.get_range(&key, r.clone())),
        ));
        let got = got.map_err(|e| err(format!("get {key} in {} ranges", ranges.len()), e))?;
        ranges
            .iter()
            .zip(got)
            .map(|(r, b)| {
                if b.len() as u64 == r.end - r.start {
                    Ok(b.to_vec())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("get {key}: {} bytes of the {} asked for", b.len(), r.end - r.start),
                    ))
                }
            })
            .collect()
    }

    /// Streams a whole object into `w`; returns its length.
    pub fn get_to(&self, name: &str, w: &mut dyn io::Write) -> io::Result<u64> {
        let key = self.key(name);
        self.rt.block_on(async {
            let mut s = self
                .store
                .get(&key)
                .await
                .map_err(|e| err(format!("get {key}"), e))?
                .into_stream();
            let mut n = 0u64;
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| err(format!("get {key}"), e))?;
                w.write_all(&chunk)?;
                n += chunk.len() as u64;
            }
            Ok(n)
        })
    }

    /// Writes a small object whole.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        let key = self.key(name);
        self.rt
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .map(drop)
            .map_err(|e| err(format!("put {key}"), e))
    }

    /// Sends the file at `path` as `name`: one put, or a multipart upload
    /// for a large file. The object appears only when the upload completes,
    /// so a cut-off upload leaves no partial object behind.
    pub fn put_file(&self, path: &Path, name: &str) -> io::Result<u64> {
        self.put_file_metered(path, name, &crate::Meter::new(None, "upload", 0))
    }

    /// [`Bucket::put_file`], counting the bytes sent on `meter`.
    pub fn put_file_metered(&self, path: &Path, name: &str, meter: &crate::Meter<'_>) -> io::Result<u64> {
        let key = self.key(name);
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        if len as usize <= PART {
            let mut b = Vec::with_capacity(len as usize);
            f.read_to_end(&mut b)?;
            self.put(name, b)?;
            meter.add(len);
            return Ok(len);
        }
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| err(format!("start upload of {key}"), e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                if let Err(e) = w.wait_for_capacity(8).await {
                    // Tell the server to drop the parts already sent.
                    let _ = w.abort().await;
                    return Err(err(format!("upload {key}"), e));
                }
                w.write(&buf[..n]);
                meter.add(n as u64);
            }
            w.finish()
                .await
                .map_err(|e| err(format!("finish upload of {key}"), e))?;
            Ok(len)
        })
    }

    /// Writes a small object only if there is none by that name (a
    /// conditional put, `If-None-Match: *`): `false` when one was there.
    pub fn put_new(&self, name: &str, bytes: Vec<u8>) -> io::Result<bool> {
        let key = self.key(name);
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .rt
            .block_on(self.store.put_opts(&key, PutPayload::from(bytes), opts))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(err(format!("put {key} if absent"), e)),
        }
    }

    /// Deletes an object (one already gone is not an error).
    pub fn delete(&self, name: &str) -> io::Result<()> {
        let key = self.key(name);
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(format!("delete {key}"), e)),
        }
    }
}
