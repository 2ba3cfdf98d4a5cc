//! Remotes (other domains this store fetches from) and the domain table
//! (which local number stands for which other domain in index records).
//!
//! Both are small text files in the store directory, version 1, closed by a
//! CRC32C line over every byte before it, written whole to a temporary
//! name, fsynced and renamed:
//!
//! ```text
//! ASLREMOTES 1
//! remote <name> <url-or-path> key=<64 hex|-> domain=<32 hex|-> seq=<n> token=<token|-> cosigners=<64 hex,...|-> threshold=<n>
//! crc32c=<8 hex digits>
//! ```
//!
//! `key` and `domain` are pinned on the first fetch (or given when the
//! remote is added) and checked on every later one; `seq` is the last
//! manifest accepted, so an older one is refused. `cosigners` and
//! `threshold` are the remote's trust policy (see [`super::cosign`]); a
//! line without them (written before they existed) means the domain's key
//! alone. The file holds tokens and is written with mode 0600.
//!
//! ```text
//! ASLDOMAINS 1
//! domain <n> <32 hex> <name>
//! crc32c=<8 hex digits>
//! ```
//!
//! `n` (1 to 65535) is what an imported artifact's index record carries as
//! its domain and source; 0 is this store.

use std::path::Path;

use crate::error::{FederationError as Error, Result};
use asl_core::DomainId;
use asl_core::{SideFileAccess, Store};
use asl_pel::keys::{hex, parse_key, PublicKey};

/// The remotes file.
pub const REMOTES_FILE: &str = "remotes";
/// The domain table file.
pub const DOMAINS_FILE: &str = "domains";

/// Another domain this store fetches from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Local name: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Another store's directory, or an `aslctl serve` URL (`http://`, `https://`).
    pub url: String,
    /// The key its manifests must be signed with.
    pub key: Option<PublicKey>,
    /// Its domain id.
    pub domain: Option<[u8; 16]>,
    /// The last manifest accepted from it.
    pub seq: u64,
    /// A bearer token for an HTTP remote.
    pub token: Option<String>,
    /// Which signatures its manifests need besides the domain's own.
    pub policy: super::cosign::Policy,
}

fn framed(magic: &str, lines: &[String]) -> Vec<u8> {
    asl_core::textfile::frame(magic, lines)
}

fn unframe(b: &[u8], magic: &str, path: &Path) -> Result<Vec<String>> {
    Ok(asl_core::textfile::unframe(b, magic).map_err(|e| asl_core::Error::corrupt(path, e))?)
}

fn read_file(store: &Store, name: &str) -> Result<Option<(Vec<u8>, std::path::PathBuf)>> {
    Ok(store.side_files().read(name)?.map(|b| (b, store.path().join(name))))
}

/// Remotes carry bearer tokens: the owner alone may read the files.
fn write_file(store: &Store, name: &str, bytes: &[u8]) -> Result<()> {
    Ok(store.side_files().write(name, bytes, SideFileAccess::Private)?)
}

fn opt<T>(v: &str, parse: impl Fn(&str) -> Option<T>) -> std::result::Result<Option<T>, ()> {
    if v == "-" {
        Ok(None)
    } else {
        parse(v).map(Some).ok_or(())
    }
}

impl Remote {
    /// A remote not fetched from yet: its key and domain are pinned by the
    /// first fetch, and the domain's signature alone is trusted.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Remote {
        Remote {
            name: name.into(),
            url: url.into(),
            key: None,
            domain: None,
            seq: 0,
            token: None,
            policy: Default::default(),
        }
    }

    fn line(&self) -> String {
        format!(
            "remote {} {} key={} domain={} seq={} token={} cosigners={} threshold={}",
            self.name,
            self.url,
            self.key.map_or("-".into(), |k| hex(&k)),
            self.domain.map_or("-".into(), |d| hex(&d)),
            self.seq,
            self.token.as_deref().unwrap_or("-"),
            if self.policy.cosigners.is_empty() {
                "-".to_string()
            } else {
                self.policy
                    .cosigners
                    .iter()
                    .map(|k| hex(k))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            self.policy.threshold
        )
    }

    fn parse(l: &str) -> Option<Remote> {
        let mut w = l.split(' ');
        if w.next()? != "remote" {
            return None;
        }
        let name = w.next()?.to_string();
        let url = w.next()?.to_string();
        let mut r = Remote {
            name,
            url,
            key: None,
            domain: None,
            seq: 0,
            token: None,
            policy: Default::default(),
        };
        for kv in w {
            let (k, v) = kv.split_once('=')?;
            match k {
                "key" => r.key = opt(v, |s| parse_key(s).ok()).ok()?,
                "domain" => r.domain = opt(v, super::domain::parse_id).ok()?,
                "seq" => r.seq = v.parse().ok()?,
                "token" => r.token = opt(v, |s| Some(s.to_string())).ok()?,
                "cosigners" if v != "-" => {
                    r.policy.cosigners = v.split(',').map(|k| parse_key(k).ok()).collect::<Option<_>>()?
                }
                "threshold" => r.policy.threshold = v.parse().ok().filter(|n| *n >= 1)?,
                _ => {}
            }
        }
        Some(r)
    }
}

/// The store's remotes, in the order they were added.
pub fn remotes(store: &Store) -> Result<Vec<Remote>> {
    let Some((b, path)) = read_file(store, REMOTES_FILE)? else {
        return Ok(Vec::new());
    };
    unframe(&b, "ASLREMOTES", &path)?
        .iter()
        .map(|l| {
            Remote::parse(l).ok_or_else(|| asl_core::Error::corrupt(&path, format!("unreadable line {l:?}")).into())
        })
        .collect()
}

fn save(store: &Store, list: &[Remote]) -> Result<()> {
    let lines: Vec<String> = list.iter().map(Remote::line).collect();
    write_file(store, REMOTES_FILE, &framed("ASLREMOTES", &lines))
}

/// Adds a remote; a name already used is refused.
pub fn add(store: &Store, r: Remote) -> Result<()> {
    super::check_name("remote", &r.name)?;
    if r.url.is_empty() || r.url.contains(char::is_whitespace) {
        return Err(Error::Invalid(format!("{:?} is not a path or URL", r.url)));
    }
    if r.token
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace) || t == "-")
    {
        return Err(Error::Invalid("a token has no spaces".into()));
    }
    r.policy.check()?;
    let mut list = remotes(store)?;
    if list.iter().any(|x| x.name == r.name) {
        return Err(Error::Invalid(format!("remote {} exists", r.name)));
    }
    list.push(r);
    save(store, &list)
}

/// Removes a remote.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let mut list = remotes(store)?;
    let before = list.len();
    list.retain(|r| r.name != name);
    if list.len() == before {
        return Err(Error::NotFound(format!("no remote {name}")));
    }
    save(store, &list)
}

/// One remote by name.
pub fn get(store: &Store, name: &str) -> Result<Remote> {
    remotes(store)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::NotFound(format!("no remote {name} (aslctl remote add)")))
}

/// Replaces a remote's entry (after a fetch pinned its key or moved its seq).
pub fn update(store: &Store, r: &Remote) -> Result<()> {
    r.policy.check()?;
    let mut list = remotes(store)?;
    let slot = list
        .iter_mut()
        .find(|x| x.name == r.name)
        .ok_or_else(|| Error::NotFound(format!("no remote {}", r.name)))?;
    *slot = r.clone();
    save(store, &list)
}

/// The domain table: (local number, domain id, name).
pub fn domains(store: &Store) -> Result<Vec<(u16, [u8; 16], String)>> {
    let Some((b, path)) = read_file(store, DOMAINS_FILE)? else {
        return Ok(Vec::new());
    };
    unframe(&b, "ASLDOMAINS", &path)?
        .iter()
        .map(|l| {
            let mut w = l.splitn(4, ' ');
            let parsed = (|| {
                if w.next()? != "domain" {
                    return None;
                }
                let n: u16 = w.next()?.parse().ok()?;
                let id = super::domain::parse_id(w.next()?)?;
                Some((n, id, w.next().unwrap_or("").to_string()))
            })();
            parsed.ok_or_else(|| asl_core::Error::corrupt(&path, format!("unreadable line {l:?}")).into())
        })
        .collect()
}

/// The local number of the domain `text` names: `local`, or the store's
/// own domain's name or id, is [`DomainId::LOCAL`]; another is looked up
/// in the domain table by name, id (32 hex digits) or local number. For
/// listings per domain (`aslctl ls --domain`, `GET /v1/artifacts?domain=`).
pub fn domain_named(store: &Store, text: &str) -> Result<DomainId> {
    let own = super::domain::Domain::of_store(store)?;
    if text == "local" || own.is_some_and(|d| d.name == text || d.id_hex() == text) {
        return Ok(DomainId::LOCAL);
    }
    let table = domains(store)?;
    let by_number = text.parse::<u16>().ok();
    let by_id = super::domain::parse_id(text);
    table
        .iter()
        .find(|(n, id, name)| name == text || Some(*n) == by_number || Some(*id) == by_id)
        .map(|(n, _, _)| DomainId(*n))
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(_, _, name)| name.as_str()).collect();
            Error::NotFound(format!(
                "no domain {text:?}: this store knows `local`{}{}",
                if known.is_empty() { "" } else { " and " },
                known.join(", ")
            ))
        })
}

/// The local number of domain `id`, given one (the next free) on first use.
pub fn domain_number(store: &Store, id: &[u8; 16], name: &str) -> Result<DomainId> {
    let mut table = domains(store)?;
    if let Some((n, _, _)) = table.iter().find(|(_, d, _)| d == id) {
        return Ok(DomainId(*n));
    }
    let n = table.iter().map(|(n, _, _)| *n).max().unwrap_or(0);
    let n = n
        .checked_add(1)
        .ok_or_else(|| Error::Invalid("the domain table is full (65535 domains)".into()))?;
    table.push((n, *id, name.to_string()));
    let lines: Vec<String> = table
        .iter()
        .map(|(n, d, name)| format!("domain {n} {} {name}", hex(d)))
        .collect();
    write_file(store, DOMAINS_FILE, &framed("ASLDOMAINS", &lines))?;
    Ok(DomainId(n))
}
