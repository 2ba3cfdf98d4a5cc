//! What federation moves over HTTP between domains, on this client: a
//! domain's publication, ids the other side lacks, artifacts sent, and
//! bytes from any offset with the chunk tree that proves them. These
//! hand out bytes as they arrive, for a caller that proves them itself
//! (federation's fetch checks every artifact against its id and a large
//! one chunk by chunk against the tree); [`Client::reader`] is the one
//! that proves them for you.

use std::io::Read;
use std::time::Duration;

use asl_core::ArtifactId;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{Client, ClientError, Result};

/// How long a server may stay silent when moving artifacts: before it
/// answers, and between two reads of what it sends (a stalled transfer is
/// cut off, a slow one is not).
pub const SILENCE: Duration = Duration::from_secs(60);

/// A domain's current publication: its signed manifest, the signature, and
/// the co-signatures other domains added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The manifest artifact.
    pub manifest: ArtifactId,
    /// Its signature artifact.
    pub signature: ArtifactId,
    /// Co-signature artifacts.
    pub cosignatures: Vec<ArtifactId>,
}

impl Client {
    /// A client for moving artifacts: as [`Client::new`], and a server
    /// silent for [`SILENCE`] is given up on.
    pub fn for_transfers(url: &str, token: Option<&str>) -> Result<Client> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(SILENCE)
            .build()
            .map_err(|e| ClientError::Invalid(format!("an HTTP client for {url}: {e}")))?;
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            token: token.map(String::from),
            http,
        })
    }

    /// The domain's publication, if it publishes.
    pub fn publication(&self) -> Result<Option<Publication>> {
        let v: Value = match self.call(self.request(Method::GET, "/v1/publication")) {
            Err(e) if e.kind() == asl_core::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        let id = |k: &str| -> Result<ArtifactId> {
            v[k].as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ClientError::Protocol {
                    url: self.base.clone(),
                    detail: format!("the publication has no {k} id"),
                })
        };
        let mut cosignatures = Vec::new();
        for c in v["cosignatures"].as_array().into_iter().flatten() {
            cosignatures.push(
                c.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ClientError::Protocol {
                        url: self.base.clone(),
                        detail: "a co-signature is not an id".into(),
                    })?,
            );
        }
        Ok(Some(Publication {
            manifest: id("manifest")?,
            signature: id("signature")?,
            cosignatures,
        }))
    }

    /// Bytes `offset..end` of artifact `id` (to its end when `end` is
    /// `None`) as the server sends them, not yet proven, with the
    /// artifact's whole length. A server that does not honour the range is
    /// refused, never taken for the bytes from `offset`.
    pub fn fetch(&self, id: &ArtifactId, offset: u64, end: Option<u64>) -> Result<(u64, Box<dyn Read + Send>)> {
        let path = format!("/v1/artifacts/{id}");
        let range = match end {
            Some(e) if e > offset => Some(format!("bytes={offset}-{}", e - 1)),
            _ if offset > 0 => Some(format!("bytes={offset}-")),
            _ => None,
        };
        let mut r = self.request(Method::GET, &path);
        if let Some(v) = &range {
            r = r.header(reqwest::header::RANGE, v);
        }
        let resp = self.answered(r)?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let len = if range.is_none() {
            header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
        } else {
            if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(self.protocol(format!("{path}: the range was not honoured")));
            }
            header(reqwest::header::CONTENT_RANGE).and_then(|v| {
                let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
                (span.split_once('-')?.0.parse::<u64>().ok()? == offset).then(|| total.parse().ok())?
            })
        };
        let len = len.ok_or_else(|| self.protocol(format!("{path}: no usable length")))?;
        Ok((len, Box::new(resp)))
    }

    /// Artifact `id`'s chunk tree as the server sends it (the chaining
    /// values of its 1 MiB chunks), not yet checked against the id.
    pub fn tree(&self, id: &ArtifactId) -> Result<Vec<[u8; 32]>> {
        let path = format!("/v1/artifacts/{id}/tree");
        let resp = self.answered(self.request(Method::GET, &path))?;
        let mut b = Vec::new();
        // 32 bytes per MiB: a 1 TiB artifact's tree is 32 MiB.
        resp.take(64 << 20)
            .read_to_end(&mut b)
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                detail: format!("GET {path}: {e}"),
            })?;
        if b.len() % 32 != 0 {
            return Err(self.protocol(format!("{path}: {} bytes is not a list of chaining values", b.len())));
        }
        Ok(b.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect())
    }

    /// Which of `ids` the server does not have (asked 1,000 at a time).
    pub fn missing(&self, ids: &[ArtifactId]) -> Result<Vec<ArtifactId>> {
        #[derive(serde::Deserialize)]
        struct Missing {
            missing: Vec<crate::Hex>,
        }
        let mut out = Vec::new();
        for batch in ids.chunks(1000) {
            let body = json!({"ids": batch.iter().map(|i| i.to_hex()).collect::<Vec<_>>()});
            let m: Missing = self.call(Self::with_json(
                self.request(Method::POST, "/v1/artifacts:missing"),
                &body,
            ))?;
            out.extend(self.ids(&m.missing)?);
        }
        Ok(out)
    }

    /// Sends artifact `id` of `len` bytes, read from `bytes` as it goes
    /// (the server refuses it unless it hashes to `id`).
    pub fn send_artifact(&self, id: &ArtifactId, len: u64, bytes: &mut dyn Read) -> Result<()> {
        // The client wants a body it owns; the bytes are borrowed. The
        // request runs on a thread of its own reading from a channel, fed
        // from here a piece at a time (memory: a few pieces).
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let req = self
            .request(Method::PUT, &format!("/v1/artifacts/{id}"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            // The whole upload runs under one timeout: allow 1 MiB/s at least.
            .timeout(SILENCE + Duration::from_secs(len >> 20))
            .body(reqwest::blocking::Body::sized(Piped::new(rx), len));
        std::thread::scope(|s| {
            let sent = s.spawn(move || self.send(req).map(drop));
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
            sent.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            url: self.base.clone(),
            detail,
        }
    }
}

/// A reader over pieces sent down a channel: an owned request body for
/// bytes read elsewhere.
struct Piped {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
}

impl Piped {
    fn new(rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Piped {
            rx,
            piece: Vec::new(),
            at: 0,
        }
    }
}

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
