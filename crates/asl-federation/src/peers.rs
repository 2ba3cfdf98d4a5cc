//! The two ends of a transfer between domains: a [`Peer`] that a fetch
//! reads published artifacts from, and a [`Sink`] that a push sends them
//! to — another store's directory, or an `aslctl serve` over HTTP(S)
//! (feature `http`, reqwest's blocking client). Neither end is trusted: every
//! byte a peer sends is checked against its id by the receiving put.

use std::io::Read;

use super::publish;
use super::remote::{self, Remote};
use crate::error::{FederationError as Error, Result};
use asl_core::Visibility;
use asl_core::{ArtifactId, PutOptions, Store, StoreOptions};

/// What a remote says it publishes now: ids, which the fetch reads and
/// checks like any other artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The latest manifest.
    pub manifest: ArtifactId,
    /// The domain's signature record over it.
    pub signature: ArtifactId,
    /// Co-signature records (see [`super::cosign`]).
    pub cosignatures: Vec<ArtifactId>,
}

/// Where a remote's published artifacts are read from.
pub trait Peer: Sync {
    /// The latest publication, `None` when it publishes nothing.
    fn publication(&self) -> Result<Option<Publication>>;
    /// A published artifact's bytes (the caller verifies them).
    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>>;
    /// Its bytes from `offset` to `end` (or the end), with its whole length.
    fn reader_at(&self, id: &ArtifactId, offset: u64, end: Option<u64>) -> Result<(u64, Box<dyn Read + '_>)>;
    /// Its tree: the chaining values of its [`super::ranged::TRANSFER_CHUNK`]
    /// chunks (checked by the caller against the id).
    fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>>;
}

/// Where this store's published artifacts can be sent (push).
pub trait Sink {
    /// Which of `ids` the remote lacks.
    fn missing(&self, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>>;
    /// Sends one artifact; the remote checks it hashes to `id`.
    fn send(&self, id: &ArtifactId, len: u64, bytes: &mut dyn Read) -> Result<()>;
    /// Makes what was sent durable.
    fn finish(&self) -> Result<()>;
}

/// Another store's directory, opened read-only; only its published
/// artifacts are read.
pub struct DirPeer(Store);

impl DirPeer {
    /// Opens the store at `path` to read.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        Ok(DirPeer(StoreOptions::new().read_only(true).open(path)?))
    }
}

impl Peer for DirPeer {
    fn publication(&self) -> Result<Option<Publication>> {
        Ok(publish::latest_ids(&self.0).map(|(manifest, signature)| Publication {
            manifest,
            signature,
            cosignatures: super::cosign::cosignatures(&self.0),
        }))
    }

    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>> {
        Ok(self.reader_at(id, 0, None)?.1)
    }

    fn reader_at(&self, id: &ArtifactId, offset: u64, end: Option<u64>) -> Result<(u64, Box<dyn Read + '_>)> {
        self.published(id)?;
        let r = self.0.open_reader(id)?;
        let len = r.len();
        let take = end.map_or(u64::MAX, |e| e.saturating_sub(offset));
        Ok((len, Box::new(r.into_range(offset, take)?)))
    }

    fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
        self.published(id)?;
        super::ranged::tree_of(&self.0, id)
    }
}

impl DirPeer {
    /// What the other domain keeps internal does not exist for us.
    fn published(&self, id: &ArtifactId) -> Result<()> {
        match self.0.info(id)? {
            Some(i) if i.visibility == Visibility::Published => Ok(()),
            _ => Err(asl_core::Error::NotFound(*id).into()),
        }
    }
}

/// Another store's directory, opened to write (push): what is sent is
/// filed under the sending domain's number in that store's domain table.
pub struct DirSink {
    store: Store,
    placed: PutOptions,
}

impl DirSink {
    /// Opens the store at `path` to write, as a receiver of `from`'s artifacts.
    pub fn open(path: &std::path::Path, from: &super::Domain) -> Result<Self> {
        let store = StoreOptions::new().open(path)?;
        let n = remote::domain_number(&store, &from.id, &from.name)?;
        Ok(DirSink {
            store,
            placed: PutOptions::new().domain(n).source(Some(n)),
        })
    }
}

impl Sink for DirSink {
    fn missing(&self, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>> {
        let mut out = Vec::new();
        for id in ids {
            if !self.store.contains(id)? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    fn send(&self, id: &ArtifactId, _len: u64, bytes: &mut dyn Read) -> Result<()> {
        self.store.put_reader_with(bytes, &self.placed.expect(Some(*id)))?;
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        Ok(self.store.commit()?)
    }
}

/// An `aslctl serve` of another domain, over HTTP(S).
#[cfg(feature = "http")]
pub struct HttpPeer {
    base: String,
    token: Option<String>,
    client: reqwest::blocking::Client,
}

/// How long a remote may stay silent: before it answers, and between two
/// reads of what it sends (a stalled transfer is cut off, a slow one is not).
#[cfg(feature = "http")]
const SILENCE: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(feature = "http")]
impl HttpPeer {
    /// A peer at `base` (`http://host:port`), with an optional bearer token.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(SILENCE)
            .build()
            .expect("a client with these settings builds");
        HttpPeer {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(String::from),
            client,
        }
    }

    fn authorized(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn get(&self, path: &str) -> Result<Option<reqwest::blocking::Response>> {
        self.get_from(path, 0, None)
    }

    /// GET `path`, bytes `offset..end` (a Range request unless the whole).
    fn get_from(&self, path: &str, offset: u64, end: Option<u64>) -> Result<Option<reqwest::blocking::Response>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.authorized(self.client.get(&url));
        match end {
            Some(e) if e > offset => req = req.header("Range", format!("bytes={offset}-{}", e - 1)),
            _ if offset > 0 => req = req.header("Range", format!("bytes={offset}-")),
            _ => {}
        }
        let r = req.send().map_err(|e| Error::Remote(format!("GET {url}: {e}")))?;
        match r.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(r)),
            s => Err(Error::Remote(format!("GET {url}: {s}"))),
        }
    }
}

#[cfg(feature = "http")]
impl Peer for HttpPeer {
    fn publication(&self) -> Result<Option<Publication>> {
        let Some(r) = self.get("/v1/publication")? else {
            return Ok(None);
        };
        let text = r
            .text()
            .map_err(|e| Error::Remote(format!("GET {}/v1/publication: {e}", self.base)))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Remote(format!("{}/v1/publication: {e}", self.base)))?;
        let id = |k: &str| {
            v[k].as_str()
                .and_then(|s| s.parse::<ArtifactId>().ok())
                .ok_or_else(|| Error::Remote(format!("{}/v1/publication: no {k} id", self.base)))
        };
        let mut cosignatures = Vec::new();
        for c in v["cosignatures"].as_array().into_iter().flatten() {
            cosignatures.push(
                c.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    Error::Remote(format!("{}/v1/publication: a co-signature is not an id", self.base))
                })?,
            );
        }
        Ok(Some(Publication {
            manifest: id("manifest")?,
            signature: id("signature")?,
            cosignatures,
        }))
    }

    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>> {
        match self.get(&format!("/v1/artifacts/{id}"))? {
            Some(r) => Ok(Box::new(r)),
            None => Err(asl_core::Error::NotFound(*id).into()),
        }
    }

    fn reader_at(&self, id: &ArtifactId, offset: u64, end: Option<u64>) -> Result<(u64, Box<dyn Read + '_>)> {
        let Some(r) = self.get_from(&format!("/v1/artifacts/{id}"), offset, end)? else {
            return Err(asl_core::Error::NotFound(*id).into());
        };
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bad = |why: &str| Error::Remote(format!("{}/v1/artifacts/{id}: {why}", self.base));
        let len = if offset == 0 && end.is_none() {
            header("content-length").and_then(|v| v.parse().ok())
        } else {
            // "bytes a-b/len", starting where asked: a server that ignored
            // the range would send the bytes from 0, which must not be
            // taken for the bytes from `offset`.
            if r.status() != 206 {
                return Err(bad("the range was not honoured"));
            }
            header("content-range").and_then(|v| {
                let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
                (span.split_once('-')?.0.parse::<u64>().ok()? == offset).then(|| total.parse().ok())?
            })
        };
        let len = len.ok_or_else(|| bad("no usable length"))?;
        Ok((len, Box::new(r)))
    }

    fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
        let path = format!("/v1/artifacts/{id}/tree");
        let Some(r) = self.get(&path)? else {
            return Err(asl_core::Error::NotFound(*id).into());
        };
        let mut b = Vec::new();
        // 32 bytes per MiB: a 1 TiB artifact's tree is 32 MiB.
        r.take(64 << 20)
            .read_to_end(&mut b)
            .map_err(|e| asl_core::Error::io(format!("GET {}{path}", self.base), e))?;
        if b.len() % 32 != 0 {
            return Err(Error::Remote(format!(
                "{}{path}: {} bytes is not a list of chaining values",
                self.base,
                b.len()
            )));
        }
        Ok(b.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect())
    }
}

#[cfg(feature = "http")]
impl Sink for HttpPeer {
    fn missing(&self, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>> {
        let url = format!("{}/v1/artifacts:missing", self.base);
        let mut out = Vec::new();
        for batch in ids.chunks(1000) {
            let body = serde_json::json!({"ids": batch.iter().map(|i| i.to_hex()).collect::<Vec<_>>()}).to_string();
            let req = self
                .authorized(self.client.post(&url))
                .header("Content-Type", "application/json")
                .body(body);
            let text = req
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text())
                .map_err(|e| Error::Remote(format!("POST {url}: {e}")))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Remote(format!("{url}: {e}")))?;
            for m in v["missing"].as_array().into_iter().flatten() {
                out.push(
                    m.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::Remote(format!("{url}: a missing entry is not an id")))?,
                );
            }
        }
        Ok(out)
    }

    fn send(&self, id: &ArtifactId, len: u64, bytes: &mut dyn Read) -> Result<()> {
        let url = format!("{}/v1/artifacts/{id}", self.base);
        // The client wants a body it owns; the bytes are borrowed. The
        // request runs on a thread of its own reading from a channel, fed
        // from here a piece at a time (memory: a few pieces).
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let req = self
            .authorized(self.client.put(&url))
            .header("Content-Type", "application/octet-stream")
            // The whole upload runs under one timeout: allow 1 MiB/s at least.
            .timeout(SILENCE + std::time::Duration::from_secs(len >> 20))
            .body(reqwest::blocking::Body::sized(Piped::new(rx), len));
        std::thread::scope(|s| {
            let sent = s.spawn(move || req.send().and_then(|r| r.error_for_status()).map(drop));
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let piece = match bytes.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = piece.is_err();
                // A closed channel: the request ended early; its error says why.
                if tx.send(piece).is_err() || failed {
                    break;
                }
            }
            drop(tx);
            sent.join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map_err(|e| Error::Remote(format!("PUT {url}: {e}")))
        })
    }

    fn finish(&self) -> Result<()> {
        // Every PUT was committed before it was answered.
        Ok(())
    }
}

/// A reader over pieces sent down a channel: an owned request body for
/// bytes read elsewhere.
#[cfg(feature = "http")]
struct Piped {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
}

#[cfg(feature = "http")]
impl Piped {
    fn new(rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Piped {
            rx,
            piece: Vec::new(),
            at: 0,
        }
    }
}

#[cfg(feature = "http")]
impl Read for Piped {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.piece.len() {
            match self.rx.recv() {
                Ok(p) => (self.piece, self.at) = (p?, 0),
                // The sender is done: the end of the body.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The peer a remote's URL names.
pub fn peer_for(r: &Remote) -> Result<Box<dyn Peer>> {
    if r.url.starts_with("http://") || r.url.starts_with("https://") {
        #[cfg(feature = "http")]
        return Ok(Box::new(HttpPeer::new(&r.url, r.token.as_deref())));
        #[cfg(not(feature = "http"))]
        return Err(Error::Invalid(format!(
            "{} is an HTTP remote and this build lacks feature http",
            r.url
        )));
    }
    Ok(Box::new(DirPeer::open(std::path::Path::new(&r.url))?))
}
