//! The two ends of a transfer between domains: a [`Peer`] that a fetch
//! reads published artifacts from, and a [`Sink`] that a push sends them
//! to — another store's directory, or an `aslctl serve` over HTTP(S)
//! (feature `server`, the `ureq` client). Neither end is trusted: every
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
    agent: ureq::Agent,
}

#[cfg(feature = "http")]
impl HttpPeer {
    /// A peer at `base` (`http://host:port`), with an optional bearer token.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .timeout_recv_body(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        HttpPeer {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(String::from),
            agent,
        }
    }

    fn get(&self, path: &str) -> Result<Option<ureq::http::Response<ureq::Body>>> {
        self.get_from(path, 0, None)
    }

    /// GET `path`, bytes `offset..end` (a Range request unless the whole).
    fn get_from(&self, path: &str, offset: u64, end: Option<u64>) -> Result<Option<ureq::http::Response<ureq::Body>>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        match end {
            Some(e) if e > offset => req = req.header("Range", format!("bytes={offset}-{}", e - 1)),
            _ if offset > 0 => req = req.header("Range", format!("bytes={offset}-")),
            _ => {}
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => Ok(Some(r)),
            Err(ureq::Error::StatusCode(404)) => Ok(None),
            Err(e) => Err(Error::Remote(format!("GET {url}: {e}"))),
        }
    }
}

#[cfg(feature = "http")]
impl Peer for HttpPeer {
    fn publication(&self) -> Result<Option<Publication>> {
        let Some(r) = self.get("/v1/publication")? else {
            return Ok(None);
        };
        let text = r.into_body().read_to_string().map_err(|e| {
            asl_core::Error::io(
                format!("GET {}/v1/publication", self.base),
                std::io::Error::other(e.to_string()),
            )
        })?;
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
            Some(r) => Ok(Box::new(r.into_body().into_reader())),
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
        Ok((len, Box::new(r.into_body().into_reader())))
    }

    fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
        let path = format!("/v1/artifacts/{id}/tree");
        let Some(r) = self.get(&path)? else {
            return Err(asl_core::Error::NotFound(*id).into());
        };
        let mut b = Vec::new();
        // 32 bytes per MiB: a 1 TiB artifact's tree is 32 MiB.
        r.into_body()
            .into_reader()
            .take(64 << 20)
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
            let mut req = self.agent.post(&url).header("Content-Type", "application/json");
            if let Some(t) = &self.token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            let text = req
                .send(body.as_bytes())
                .and_then(|r| r.into_body().read_to_string())
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
        let mut req = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string());
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.send(ureq::SendBody::from_reader(bytes))
            .map(drop)
            .map_err(|e| Error::Remote(format!("PUT {url}: {e}")))
    }

    fn finish(&self) -> Result<()> {
        // Every PUT was committed before it was answered.
        Ok(())
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
