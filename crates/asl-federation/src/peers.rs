//! The two ends of a transfer between domains: a [`Peer`] that a fetch
//! reads published artifacts from, and a [`Sink`] that a push sends them
//! to — another store's directory, or an `aslctl serve` over HTTP(S)
//! (feature `http`, over `asl-client`). Neither end is trusted: every
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

/// An `aslctl serve` of another domain, over HTTP(S): the verifying
/// client's transport ([`asl_client::Client::for_transfers`]), whose bytes
/// the fetch proves as it does any peer's.
#[cfg(feature = "http")]
pub struct HttpPeer(asl_client::Client);

#[cfg(feature = "http")]
impl HttpPeer {
    /// A peer at `base` (`http://host:port`), with an optional bearer token.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        HttpPeer(asl_client::Client::for_transfers(base, token).expect("a client with these settings builds"))
    }

    /// The client's failure in federation's terms: an artifact the peer
    /// lacks is not found, anything else is the remote's failure.
    fn failed(e: asl_client::ClientError, id: Option<&ArtifactId>) -> Error {
        match id {
            Some(id) if e.kind() == asl_core::ErrorKind::NotFound => asl_core::Error::NotFound(*id).into(),
            _ => Error::Remote(e.to_string()),
        }
    }
}

#[cfg(feature = "http")]
impl Peer for HttpPeer {
    fn publication(&self) -> Result<Option<Publication>> {
        let p = self.0.publication().map_err(|e| Self::failed(e, None))?;
        Ok(p.map(|p| Publication {
            manifest: p.manifest,
            signature: p.signature,
            cosignatures: p.cosignatures,
        }))
    }

    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>> {
        let (_, r) = self.0.fetch(id, 0, None).map_err(|e| Self::failed(e, Some(id)))?;
        Ok(r)
    }

    fn reader_at(&self, id: &ArtifactId, offset: u64, end: Option<u64>) -> Result<(u64, Box<dyn Read + '_>)> {
        let (len, r) = self.0.fetch(id, offset, end).map_err(|e| Self::failed(e, Some(id)))?;
        Ok((len, r))
    }

    fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
        self.0.tree(id).map_err(|e| Self::failed(e, Some(id)))
    }
}

#[cfg(feature = "http")]
impl Sink for HttpPeer {
    fn missing(&self, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>> {
        self.0.missing(ids).map_err(|e| Self::failed(e, None))
    }

    fn send(&self, id: &ArtifactId, len: u64, bytes: &mut dyn Read) -> Result<()> {
        self.0.send_artifact(id, len, bytes).map_err(|e| Self::failed(e, None))
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
