//! Fetching what another domain publishes.
//!
//! A fetch reads the remote's latest publication manifest and its
//! signature, checks them (the key pinned for the remote, or the manifest's
//! own on first contact; a sequence number not older than the last
//! accepted), then asks only for the published artifacts this store lacks
//! (have/want against the local index) and stores each through a put that
//! must hash to the id the manifest names: bytes that do not are refused
//! and nothing of them is kept. Artifacts are committed in batches as they
//! arrive, so a fetch cut off anywhere resumes where it stopped, and
//! nothing is half-imported: an artifact is in the store whole or not at
//! all. An imported artifact carries the remote domain's local number as
//! its domain and cross-domain source, and stays internal here. The last
//! step stores the manifest, its signature and an `asl/import` record
//! (domain, manifest, sequence number, the ids fetched), pins the record
//! as `asl.import.<remote>`, and remembers the remote's key, domain and
//! sequence number.

use std::io::Read;

use super::publish::{self, Manifest};
use super::remote::{self, Remote};
use crate::index::{DomainId, Visibility};
use crate::pel::keys::hex;
use crate::records::cbor::Value;
use crate::records::{self, Record};
use crate::{ArtifactId, Error, PutOptions, Result, Store, StoreOptions};

/// The record type of import records.
pub const IMPORT_TYPE: &str = "asl/import";

/// Commit after this many fetched artifacts or bytes, or this long (what a
/// cut-off fetch can lose and fetch again; a slow link still makes
/// progress that survives).
const BATCH_ARTIFACTS: usize = 256;
const BATCH_BYTES: u64 = 64 << 20;
const BATCH_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a remote's published artifacts are read from.
pub trait Peer {
    /// The latest manifest and signature ids, `None` when it publishes nothing.
    fn publication(&self) -> Result<Option<(ArtifactId, ArtifactId)>>;
    /// A published artifact's bytes (the caller verifies them).
    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>>;
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
    fn publication(&self) -> Result<Option<(ArtifactId, ArtifactId)>> {
        Ok(publish::latest_ids(&self.0))
    }

    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>> {
        // What the other domain keeps internal does not exist for us.
        match self.0.info(id)? {
            Some(i) if i.visibility == Visibility::Published => Ok(Box::new(self.0.open_reader(id)?)),
            _ => Err(Error::NotFound(*id)),
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
        self.store.commit()
    }
}

/// An `aslctl serve` of another domain, over HTTP(S).
#[cfg(feature = "server")]
pub struct HttpPeer {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

#[cfg(feature = "server")]
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
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => Ok(Some(r)),
            Err(ureq::Error::StatusCode(404)) => Ok(None),
            Err(e) => Err(Error::io(format!("GET {url}"), std::io::Error::other(e.to_string()))),
        }
    }
}

#[cfg(feature = "server")]
impl Peer for HttpPeer {
    fn publication(&self) -> Result<Option<(ArtifactId, ArtifactId)>> {
        let Some(r) = self.get("/v1/publication")? else {
            return Ok(None);
        };
        let text = r.into_body().read_to_string().map_err(|e| {
            Error::io(
                format!("GET {}/v1/publication", self.base),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidArgument(format!("{}/v1/publication: {e}", self.base)))?;
        let id = |k: &str| {
            v[k].as_str()
                .and_then(|s| s.parse::<ArtifactId>().ok())
                .ok_or_else(|| Error::InvalidArgument(format!("{}/v1/publication: no {k} id", self.base)))
        };
        Ok(Some((id("manifest")?, id("signature")?)))
    }

    fn reader(&self, id: &ArtifactId) -> Result<Box<dyn Read + '_>> {
        match self.get(&format!("/v1/artifacts/{id}"))? {
            Some(r) => Ok(Box::new(r.into_body().into_reader())),
            None => Err(Error::NotFound(*id)),
        }
    }
}

#[cfg(feature = "server")]
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
                .map_err(|e| Error::io(format!("POST {url}"), std::io::Error::other(e.to_string())))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("{url}: {e}")))?;
            for m in v["missing"].as_array().into_iter().flatten() {
                out.push(
                    m.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::InvalidArgument(format!("{url}: a missing entry is not an id")))?,
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
            .map_err(|e| Error::io(format!("PUT {url}"), std::io::Error::other(e.to_string())))
    }

    fn finish(&self) -> Result<()> {
        // Every PUT was committed before it was answered.
        Ok(())
    }
}

/// The peer a remote's URL names.
pub fn peer_for(r: &Remote) -> Result<Box<dyn Peer>> {
    if r.url.starts_with("http://") || r.url.starts_with("https://") {
        #[cfg(feature = "server")]
        return Ok(Box::new(HttpPeer::new(&r.url, r.token.as_deref())));
        #[cfg(not(feature = "server"))]
        return Err(Error::InvalidArgument(format!(
            "{} is an HTTP remote and this build lacks feature server",
            r.url
        )));
    }
    Ok(Box::new(DirPeer::open(std::path::Path::new(&r.url))?))
}

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// The manifest's sequence number.
    pub seq: u64,
    /// Artifacts it lists.
    pub listed: usize,
    /// Of those, already here.
    pub present: usize,
    /// Fetched, verified and stored.
    pub fetched: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The import record (`None` when the manifest was not new and nothing was fetched).
    pub import: Option<ArtifactId>,
}

fn read_all(peer: &dyn Peer, id: &ArtifactId, limit: u64) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    peer.reader(id)?
        .take(limit + 1)
        .read_to_end(&mut b)
        .map_err(|e| Error::io(format!("read {id} from the remote"), e))?;
    if b.len() as u64 > limit || ArtifactId::of(&b) != *id {
        return Err(Error::InvalidArgument(format!(
            "the remote sent other bytes than {id} (refused)"
        )));
    }
    Ok(b)
}

/// Fetches what remote `name` publishes (see the module docs).
pub fn fetch(store: &Store, name: &str) -> Result<FetchReport> {
    let mut r = remote::get(store, name)?;
    let peer = peer_for(&r)?;
    fetch_from(store, &mut r, &*peer)
}

/// [`fetch`] from a given peer, updating `r`.
pub fn fetch_from(store: &Store, r: &mut Remote, peer: &dyn Peer) -> Result<FetchReport> {
    let (mid, sid) = peer
        .publication()?
        .ok_or_else(|| Error::InvalidArgument(format!("remote {} publishes nothing", r.name)))?;
    let mb = read_all(peer, &mid, 1 << 30)?;
    let sb = read_all(peer, &sid, 1 << 20)?;
    let claimed = Manifest::from_record(&Record::decode(&mb).map_err(|e| Error::InvalidArgument(e.to_string()))?)
        .map_err(|e| Error::InvalidArgument(format!("remote {}: manifest {mid}: {e}", r.name)))?;
    // First contact trusts the manifest's own key and domain (and says so);
    // afterwards both must stay the same.
    let key = r.key.unwrap_or(claimed.key);
    if r.domain.is_some_and(|d| d != claimed.domain) {
        return Err(Error::InvalidArgument(format!(
            "remote {}: the manifest is domain {}'s, not {}'s",
            r.name,
            hex(&claimed.domain),
            hex(&r.domain.unwrap_or_default())
        )));
    }
    // The same manifest again is fine (a cut-off fetch resumes); an older
    // one is a replay.
    let after = if claimed.seq == r.seq {
        r.seq.saturating_sub(1)
    } else {
        r.seq
    };
    let m = publish::check_manifest(&mb, &sb, &key, after)
        .map_err(|e| Error::InvalidArgument(format!("remote {}: manifest {mid}: {e}; nothing stored", r.name)))?;
    let n = remote::domain_number(store, &m.domain, &m.name)?;
    let placed = PutOptions::new().domain(n).source(Some(n));
    let mut rep = FetchReport {
        seq: m.seq,
        listed: m.published.len(),
        ..Default::default()
    };
    let mut fetched = Vec::new();
    let (mut since, mut since_bytes, mut since_t) = (0usize, 0u64, std::time::Instant::now());
    for id in &m.published {
        if store.contains(id)? {
            rep.present += 1;
            continue;
        }
        let reader = peer.reader(id)?;
        let put = store
            .put_reader_with(reader, &placed.expect(Some(*id)))
            .map_err(|e| match e {
                Error::IdMismatch { .. } => Error::InvalidArgument(format!(
                    "remote {}: the bytes sent for {id} do not hash to it; nothing of them is stored",
                    r.name
                )),
                e => e,
            })?;
        rep.fetched += 1;
        rep.bytes += put.len;
        fetched.push(*id);
        since += 1;
        since_bytes += put.len;
        if since >= BATCH_ARTIFACTS || since_bytes >= BATCH_BYTES || since_t.elapsed() >= BATCH_TIME {
            store.commit()?;
            (since, since_bytes, since_t) = (0, 0, std::time::Instant::now());
        }
    }
    if m.seq == r.seq && fetched.is_empty() && r.key.is_some() {
        store.commit()?;
        return Ok(rep);
    }
    // Where the imports came from, kept with them.
    store.put_with(&mb, &placed)?;
    store.put_with(&sb, &placed)?;
    let rec = import_record(&m, n, &mid, &sid, &fetched);
    let stored = records::put(store, &rec).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    store.commit()?;
    store.repin(&format!("asl.import.{}", r.name), &stored.id)?;
    r.key = Some(key);
    r.domain = Some(m.domain);
    r.seq = m.seq;
    remote::update(store, r)?;
    rep.import = Some(stored.id);
    Ok(rep)
}

fn import_record(m: &Manifest, n: DomainId, mid: &ArtifactId, sid: &ArtifactId, fetched: &[ArtifactId]) -> Record {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Record::new(
        IMPORT_TYPE,
        1,
        Value::Map(vec![
            (Value::text("domain"), Value::Bytes(m.domain.to_vec())),
            (Value::text("name"), Value::text(m.name.clone())),
            (Value::text("local"), Value::Unsigned(n.0 as u64)),
            (Value::text("manifest"), Value::Bytes(mid.as_bytes().to_vec())),
            (Value::text("signature"), Value::Bytes(sid.as_bytes().to_vec())),
            (Value::text("seq"), Value::Unsigned(m.seq)),
            (
                Value::text("fetched"),
                Value::Array(fetched.iter().map(|i| Value::Bytes(i.as_bytes().to_vec())).collect()),
            ),
            (Value::text("fetched_at"), Value::text(records::time::format(now))),
        ]),
    )
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Artifacts this domain publishes (with its manifest and signature).
    pub published: usize,
    /// Of those, sent (the remote lacked them).
    pub sent: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Sends remote `name` what this domain publishes and it lacks, with the
/// latest manifest and signature, so a fetch there from this domain then
/// finds everything present. Only published artifacts ever leave.
pub fn push(store: &Store, name: &str) -> Result<PushReport> {
    let r = remote::get(store, name)?;
    let (mid, sid) = publish::latest_ids(store)
        .ok_or_else(|| Error::InvalidArgument("this domain publishes nothing (aslctl publish)".into()))?;
    let (_, m) = publish::latest(store)?.ok_or_else(|| Error::InvalidArgument("no manifest".into()))?;
    let mut ids = m.published.clone();
    ids.push(mid);
    ids.push(sid);
    let sink: Box<dyn Sink> = if r.url.starts_with("http://") || r.url.starts_with("https://") {
        #[cfg(feature = "server")]
        {
            Box::new(HttpPeer::new(&r.url, r.token.as_deref()))
        }
        #[cfg(not(feature = "server"))]
        return Err(Error::InvalidArgument(format!(
            "{} is an HTTP remote and this build lacks feature server",
            r.url
        )));
    } else {
        let domain = super::Domain::ensure(store)?;
        Box::new(DirSink::open(std::path::Path::new(&r.url), &domain)?)
    };
    let mut rep = PushReport {
        published: ids.len(),
        ..Default::default()
    };
    for id in sink.missing(&ids)? {
        // Published since the manifest? Only what is published now leaves.
        match store.info(&id)? {
            Some(i) if i.visibility == Visibility::Published => {
                let mut reader = store.open_reader(&id)?;
                sink.send(&id, i.len, &mut reader)?;
                rep.sent += 1;
                rep.bytes += i.len;
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{id} is in the manifest but no longer published here: publish again first"
                )))
            }
        }
    }
    sink.finish()?;
    Ok(rep)
}
