//! A client for a served store (`aslctl serve`, `spec/openapi.yaml`): what
//! a program — `aslctl --server` among them — calls to keep up a store that
//! a server holds, without linking the engine to it.
//!
//! Blocking, over the workspace's one HTTP stack (reqwest). Replies are the
//! engine's own report types, decoded from the JSON the server writes with
//! them, so a report read through the client is the report `aslctl` prints
//! in-process. Errors keep the server's kind ([`ClientError::kind`]): a
//! refusal stays a refusal, a missing artifact stays not found.
//!
//! Artifacts read through it are proven against their ids, whole or by
//! range, before a byte is returned ([`Client::reader`], [`Client::get`],
//! [`Client::read_range`]): the server is not trusted with them.
//!
//! Depends on `asl-core` for its types only; it may be used beside any
//! layer.

use std::time::Duration;

use asl_core::{
    ArtifactId, ErrorKind, GcOptions, GcReport, ScrubBudget, ScrubOptions, Sealed, StoreStat, VerifyReport,
};
use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

mod read;
mod transfer;
pub use read::{Verified, CHUNK};
pub use transfer::{Publication, SILENCE};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status; `message` is its one line.
    #[error("{url}: {message} (HTTP {status})")]
    Status {
        /// The server.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The server could not be reached, or the exchange broke off.
    #[error("{url}: {detail}")]
    Unreachable {
        /// The server.
        url: String,
        /// Why.
        detail: String,
    },
    /// The server answered outside the API: a reply that does not parse.
    #[error("{url}: an answer outside the API: {detail}")]
    Protocol {
        /// The server.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The server sent bytes that are not the artifact it was asked for
    /// (a flipped byte, a wrong length, a tree that does not add up).
    #[error("{url}: {id} came back wrong: {detail}")]
    Corrupt {
        /// The server.
        url: String,
        /// The artifact asked for.
        id: ArtifactId,
        /// What did not prove.
        detail: String,
    },
    /// An argument the client cannot send (a URL that is not one).
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// What kind of failure this is: the kind the server's status stands
    /// for, so a caller decides as it would in-process.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Status { status, .. } => match *status {
                404 | 410 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 | 413 | 416 => ErrorKind::Invalid,
                401 | 403 => ErrorKind::Refused,
                503 => ErrorKind::Unavailable,
                _ => ErrorKind::Remote,
            },
            ClientError::Unreachable { .. } | ClientError::Protocol { .. } => ErrorKind::Remote,
            ClientError::Corrupt { .. } => ErrorKind::Corrupt,
            ClientError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// The result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A served store's API at one address, with one bearer token (or none,
/// for a server on loopback without tokens).
///
/// Every byte it reads is proven against the artifact's id on this side,
/// so a client need not trust the server or the network (`asl-server`'s
/// `serve` page runs this against a store served in-process):
///
/// ```no_run
/// use asl_client::Client;
///
/// let client = Client::new("https://cache.example:8443", Some("reader-token"))?;
/// let id = "8e4c7c1b99dbfd50e7a95185fead5ee1448fa904a2fdd778eaf5f2dbfd629a99".parse()?;
/// let head = client.read_range(&id, 0, 4096)?;      // verified, or an error
/// let whole = client.get(&id)?;
/// assert!(whole.starts_with(&head));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: Http,
}

/// What a removal did (`DELETE /v1/artifacts/{id}`, `POST /v1/artifacts:remove`).
#[derive(Clone, Debug)]
pub struct Removed {
    /// Removed from CURRENT.
    pub removed: Vec<ArtifactId>,
    /// Not live (or not visible to this token), untouched.
    pub not_found: Vec<ArtifactId>,
    /// When a forced removal withdrew published artifacts: how many, and
    /// the sequence number of the publication's new manifest.
    pub unpublished: Option<Unpublished>,
}

/// Published artifacts a forced removal took out of the publication.
#[derive(Clone, Debug, Deserialize)]
pub struct Unpublished {
    /// How many.
    pub artifacts: usize,
    /// The new manifest's sequence number.
    pub manifest_seq: u64,
}

/// A GC run's report, with the segment bytes left after it.
#[derive(Clone, Debug, Deserialize)]
pub struct GcDone {
    /// The engine's report.
    #[serde(flatten)]
    pub report: GcReport,
    /// Bytes of segment files after the run.
    pub physical_after: u64,
    /// Expired ephemeral artifacts the sweep before the run removed.
    #[serde(default)]
    pub expired: u64,
    /// Expired ones left because something holds them.
    #[serde(default)]
    pub expired_held: u64,
}

/// A snapshot made or deleted through the server.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot {
    /// Its name.
    pub name: String,
    /// CURRENT's identity as it held (hex).
    pub identity: String,
    /// When it was taken, in seconds since 1970.
    pub created: u64,
    /// Artifacts it holds.
    pub artifacts: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Ids as the server writes them (hex), read into ids or refused as an
/// answer outside the API.
#[derive(Deserialize)]
#[serde(transparent)]
struct Hex(String);

impl Client {
    fn id(&self, h: &Hex) -> Result<ArtifactId> {
        h.0.parse().map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            detail: format!("{:?} is not an id: {e}", h.0),
        })
    }

    fn ids(&self, hs: &[Hex]) -> Result<Vec<ArtifactId>> {
        hs.iter().map(|h| self.id(h)).collect()
    }

    /// A client of the server at `url` (`http://HOST:PORT`), sending
    /// `token` as its bearer token when given. Upkeep calls may run long
    /// (a GC, a scrub), so only connecting has a time limit.
    pub fn new(url: &str, token: Option<&str>) -> Result<Client> {
        Client::trusting(url, token, None)
    }

    /// [`Client::new`] that also trusts the CA certificates in `ca_pem`
    /// (PEM), for an HTTPS server whose certificate a private CA signed.
    pub fn trusting(url: &str, token: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Client> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Invalid(format!(
                "{url:?} is not a server URL (http://HOST:PORT)"
            )));
        }
        let mut builder = Http::builder().connect_timeout(Duration::from_secs(10)).timeout(None);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Invalid(format!("the CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Invalid("the CA file holds no certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Invalid(format!("an HTTP client for {url}: {e}")))?;
        Ok(Client {
            base,
            token: token.map(str::to_string),
            http,
        })
    }

    /// The server's address.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Why a request got no answer: reqwest's own line ("error sending
    /// request") hides it; its sources say it (connection refused, a
    /// certificate not trusted).
    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(&format!(": {s}"));
            source = s.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            detail,
        }
    }

    /// The server's error answer: its status and its one line.
    fn refusal(&self, status: u16, body: &[u8]) -> ClientError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        ClientError::Status {
            url: self.base.clone(),
            status,
            message,
        }
    }

    /// Sends `r` and returns the body of a success, or the server's error.
    fn send(&self, r: RequestBuilder) -> Result<Vec<u8>> {
        let resp = r.send().map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.bytes().map_err(|e| self.unreachable(e))?.to_vec();
        if status.is_success() {
            return Ok(body);
        }
        Err(self.refusal(status.as_u16(), &body))
    }

    fn call<T: DeserializeOwned>(&self, r: RequestBuilder) -> Result<T> {
        let body = self.send(r)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            detail: e.to_string(),
        })
    }

    fn with_json(r: RequestBuilder, v: &Value) -> RequestBuilder {
        r.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(v.to_string())
    }

    /// Removes `ids` from CURRENT, as `aslctl rm` does (refused, nothing
    /// removed, when one is published or held by a receipt, unless `force`).
    pub fn remove(&self, ids: &[ArtifactId], force: bool) -> Result<Removed> {
        #[derive(Deserialize)]
        struct Reply {
            removed: Vec<Hex>,
            not_found: Vec<Hex>,
            #[serde(default)]
            unpublished: Option<Unpublished>,
        }
        let body = json!({"ids": ids.iter().map(|i| i.to_hex()).collect::<Vec<_>>(), "force": force});
        let r: Reply = self.call(Self::with_json(
            self.request(Method::POST, "/v1/artifacts:remove"),
            &body,
        ))?;
        Ok(Removed {
            removed: self.ids(&r.removed)?,
            not_found: self.ids(&r.not_found)?,
            unpublished: r.unpublished,
        })
    }

    /// A GC run on the served store.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcDone> {
        let body = json!({"threshold": opts.threshold, "dry_run": opts.dry_run});
        self.call(Self::with_json(self.request(Method::POST, "/v1/gc"), &body))
    }

    /// A full scrub of the served store.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.scrub(&ScrubOptions::default())
    }

    /// A scrub of the served store in budget (see
    /// [`asl_core::Maintenance::scrub`]).
    pub fn scrub(&self, opts: &ScrubOptions) -> Result<VerifyReport> {
        // Numbers and a literal only: nothing to escape.
        let mut query = Vec::new();
        match opts.budget {
            Some(ScrubBudget::Bytes(b)) => query.push(format!("budget={b}")),
            Some(ScrubBudget::Fraction(f)) => query.push(format!("sample={f}")),
            None => {}
        }
        if opts.since_last {
            query.push("since_last=true".to_string());
        }
        let path = match query.is_empty() {
            true => "/v1/verify".to_string(),
            false => format!("/v1/verify?{}", query.join("&")),
        };
        self.call(self.request(Method::POST, &path))
    }

    /// Seals the open segment.
    pub fn seal(&self) -> Result<Option<Sealed>> {
        #[derive(Deserialize)]
        struct Answer {
            sealed: Option<Sealed>,
        }
        self.call::<Answer>(self.request(Method::POST, "/v1/seal"))
            .map(|a| a.sealed)
    }

    /// The store's figures.
    pub fn stat(&self) -> Result<StoreStat> {
        self.call(self.request(Method::GET, "/v1/stat"))
    }

    /// The pins, by name.
    pub fn pins(&self) -> Result<Vec<(String, ArtifactId)>> {
        #[derive(Deserialize)]
        struct Pin {
            name: String,
            id: Hex,
        }
        #[derive(Deserialize)]
        struct Pins {
            pins: Vec<Pin>,
        }
        let p: Pins = self.call(self.request(Method::GET, "/v1/pins"))?;
        p.pins.into_iter().map(|p| Ok((p.name, self.id(&p.id)?))).collect()
    }

    /// Pins `id` as `name` (`force` moves an existing pin).
    pub fn pin(&self, name: &str, id: &ArtifactId, force: bool) -> Result<()> {
        let body = json!({"id": id.to_hex(), "force": force});
        let path = format!("/v1/pins/{}", segment(name));
        self.send(Self::with_json(self.request(Method::PUT, &path), &body))
            .map(drop)
    }

    /// Removes the pin `name`; returns what it held.
    pub fn unpin(&self, name: &str) -> Result<ArtifactId> {
        #[derive(Deserialize)]
        struct Unpinned {
            id: Hex,
        }
        let u: Unpinned = self.call(self.request(Method::DELETE, &format!("/v1/pins/{}", segment(name))))?;
        self.id(&u.id)
    }

    /// Takes a snapshot of CURRENT named `name`.
    pub fn create_snapshot(&self, name: &str) -> Result<Snapshot> {
        self.call(Self::with_json(
            self.request(Method::POST, "/v1/snapshots"),
            &json!({"name": name}),
        ))
    }

    /// Deletes the snapshot `name`; returns what it was.
    pub fn delete_snapshot(&self, name: &str) -> Result<Snapshot> {
        self.call(self.request(Method::DELETE, &format!("/v1/snapshots/{}", segment(name))))
    }
}

/// A name as one path segment: snapshot and pin names are letters, digits
/// and `._-`, but a name that is not must not reach another route.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
