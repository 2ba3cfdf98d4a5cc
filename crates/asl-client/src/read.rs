//! Reading artifacts without trusting the server: every byte handed out is
//! proven against the id first. An artifact of one chunk (1 MiB) or less is
//! read whole and hashed; a larger one's chunk tree (`GET
//! /v1/artifacts/{id}/tree`, 32 bytes a chunk) is checked against the id
//! once, then each chunk against the tree before a byte of it is returned,
//! so a long download is verified as it streams and a range costs the
//! chunks it touches. A server that sends a wrong byte, too many or too few
//! is caught here ([`ClientError::Corrupt`]), whatever it claims.

use std::io::Read;

use asl_core::chunk_tree as tree;
use asl_core::ArtifactId;
use reqwest::blocking::Response;
use reqwest::Method;

use crate::{Client, ClientError, Result};

/// The chunk size of the trees the server sends (the federation transfer
/// chunk).
pub const CHUNK: usize = 1 << 20;

/// A reader of one artifact whose every byte was proven against its id
/// before it is returned ([`Client::reader`]). A chunk that does not prove
/// fails the read with `InvalidData`; a body cut short, with
/// `UnexpectedEof`.
pub struct Verified {
    body: Response,
    id: ArtifactId,
    url: String,
    /// The chunk tree; empty when the artifact is one chunk.
    cvs: Vec<[u8; 32]>,
    /// The artifact's length, and the first byte of the next chunk.
    len: u64,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Verified {
    /// The artifact's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let want = (self.len - self.next).min(CHUNK as u64) as usize;
        self.buf.resize(want, 0);
        read_exact(&mut self.body, &mut self.buf)?;
        let index = self.next / CHUNK as u64;
        let ok = if self.cvs.is_empty() {
            blake3::hash(&self.buf).as_bytes() == self.id.as_bytes()
        } else {
            tree::chunk_matches(&self.buf, index, CHUNK, &self.cvs, self.id.as_bytes())
        };
        if !ok {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: chunk {index} of {} is not the artifact's bytes (the server sent something else)",
                    self.url, self.id
                ),
            ));
        }
        self.next += want as u64;
        self.pos = 0;
        Ok(())
    }
}

impl Read for Verified {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next == self.len {
                // Nothing past the end: a longer body is not this artifact.
                let mut extra = [0u8; 1];
                if self.len > 0 && read_some(&mut self.body, &mut extra)? > 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: more bytes than {} has", self.url, self.id),
                    ));
                }
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_some(r: &mut impl Read, b: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(b) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_exact(r: &mut impl Read, b: &mut [u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < b.len() {
        match read_some(r, &mut b[at..])? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server's answer ended before the artifact did",
                ))
            }
            n => at += n,
        }
    }
    Ok(())
}

impl Client {
    /// The response to `r` when it succeeded, its body unread; else the
    /// server's error.
    pub(crate) fn answered(&self, r: reqwest::blocking::RequestBuilder) -> Result<Response> {
        let resp = r.send().map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Err(self.refusal(status, &body))
    }

    /// Artifact `id`'s chunk tree, checked against the id (and against its
    /// length: one chaining value a chunk).
    fn proven_tree(&self, id: &ArtifactId, len: u64) -> Result<Vec<[u8; 32]>> {
        let cvs = self.tree(id)?;
        let chunks = len.div_ceil(CHUNK as u64);
        if cvs.len() as u64 != chunks {
            return Err(self.corrupt(id, format!("a tree of {} chunks for {chunks}", cvs.len())));
        }
        if tree::root(&cvs).is_none_or(|r| r.as_bytes() != id.as_bytes()) {
            return Err(self.corrupt(id, "a chunk tree that does not add up to the id".into()));
        }
        Ok(cvs)
    }

    fn corrupt(&self, id: &ArtifactId, detail: String) -> ClientError {
        ClientError::Corrupt {
            url: self.base.clone(),
            id: *id,
            detail,
        }
    }

    /// Artifact `id`, read as it streams with every byte proven first.
    pub fn reader(&self, id: &ArtifactId) -> Result<Verified> {
        let body = self.answered(self.request(Method::GET, &format!("/v1/artifacts/{id}")))?;
        let len = body
            .content_length()
            .ok_or_else(|| self.corrupt(id, "an answer without a length".into()))?;
        let cvs = if len > CHUNK as u64 {
            self.proven_tree(id, len)?
        } else {
            Vec::new()
        };
        Ok(Verified {
            body,
            id: *id,
            url: self.base.clone(),
            cvs,
            len,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Artifact `id`, whole, proven against its id.
    pub fn get(&self, id: &ArtifactId) -> Result<Vec<u8>> {
        let mut r = self.reader(id)?;
        let mut out = Vec::with_capacity(r.len().min(64 << 20) as usize);
        r.read_to_end(&mut out).map_err(|e| self.read_failed(id, e))?;
        Ok(out)
    }

    /// Bytes `offset..offset + len` of artifact `id` (fewer at its end),
    /// proven: the chunks they lie in are fetched and each checked against
    /// the artifact's tree.
    pub fn read_range(&self, id: &ArtifactId, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let first = offset / CHUNK as u64;
        let last = (offset + len - 1) / CHUNK as u64;
        let range = format!("bytes={}-{}", first * CHUNK as u64, (last + 1) * CHUNK as u64 - 1);
        let body = self.answered(
            self.request(Method::GET, &format!("/v1/artifacts/{id}"))
                .header(reqwest::header::RANGE, range),
        )?;
        // The whole artifact's length, from `Content-Range: bytes a-b/LEN`
        // (or the body's, when the server answered with all of it).
        let total = match body.headers().get(reqwest::header::CONTENT_RANGE) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.rsplit('/').next())
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| self.corrupt(id, "an unreadable Content-Range".into()))?,
            None => body.content_length().unwrap_or(0),
        };
        let whole = body.status() == reqwest::StatusCode::OK;
        if offset >= total {
            return Err(ClientError::Invalid(format!(
                "{id} has {total} bytes; offset {offset} is past them"
            )));
        }
        let cvs = if total > CHUNK as u64 {
            self.proven_tree(id, total)?
        } else {
            Vec::new()
        };
        let start = if whole { 0 } else { first * CHUNK as u64 };
        let end = ((last + 1) * CHUNK as u64).min(total);
        let mut r = Verified {
            body,
            id: *id,
            url: self.base.clone(),
            cvs,
            len: if whole { total } else { end },
            next: start,
            buf: Vec::new(),
            pos: 0,
        };
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            r.fill().map_err(|e| self.read_failed(id, e))?;
            let chunk_end = at + r.buf.len() as u64;
            let a = offset.max(at);
            let b = (offset + len).min(chunk_end);
            if a < b {
                out.extend_from_slice(&r.buf[(a - at) as usize..(b - at) as usize]);
            }
            at = chunk_end;
        }
        Ok(out)
    }

    fn read_failed(&self, id: &ArtifactId, e: std::io::Error) -> ClientError {
        match e.kind() {
            std::io::ErrorKind::InvalidData => self.corrupt(id, e.to_string()),
            _ => ClientError::Unreachable {
                url: self.base.clone(),
                detail: e.to_string(),
            },
        }
    }
}
