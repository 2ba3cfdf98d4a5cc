//! The store's domain identity: the `domain` file, text, version 1, closed
//! by a CRC32C line like the other small text files of a store:
//!
//! ```text
//! ASLDOMAIN 1
//! id=<32 hex digits>
//! name=<name>
//! crc32c=<8 hex digits>
//! ```
//!
//! The id is random and never changes; the name is for people and may.
//! The signing key is the store's (`keys/pel-signing.key`).

use std::path::Path;

use crate::pel::keys::{hex, PublicKey, Signer};
use crate::{Error, Result, Store};

/// Name of the domain file in the store directory.
pub const DOMAIN_FILE: &str = "domain";
const MAGIC: &str = "ASLDOMAIN";

/// A store's domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Random, fixed at creation.
    pub id: [u8; 16],
    /// A name for people: letters, digits, `-`, `_`, `.`; 1 to 64.
    pub name: String,
}

impl Domain {
    /// The id as 32 hex digits.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    fn encode(&self) -> Vec<u8> {
        crate::textfile::frame(MAGIC, &[format!("id={}", self.id_hex()), format!("name={}", self.name)])
    }

    fn decode(b: &[u8], path: &Path) -> Result<Self> {
        use crate::textfile::field;
        let bad = |why: &str| Error::corrupt(path, why.to_string());
        let lines = crate::textfile::unframe(b, MAGIC).map_err(|e| bad(&e))?;
        Ok(Domain {
            id: field(&lines, "id")
                .and_then(parse_id)
                .ok_or_else(|| bad("no id line"))?,
            name: field(&lines, "name").ok_or_else(|| bad("no name line"))?.to_string(),
        })
    }

    /// The store's domain, if it has one yet.
    pub fn of_store(store: &Store) -> Result<Option<Domain>> {
        let path = store.path().join(DOMAIN_FILE);
        match std::fs::read(&path) {
            Ok(b) => Domain::decode(&b, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Gives the store its domain: a new random id and `name`. A store has
    /// one domain for life, so a second init is refused.
    pub fn init(store: &Store, name: &str) -> Result<Domain> {
        super::check_name("domain", name)?;
        if let Some(d) = Domain::of_store(store)? {
            return Err(Error::InvalidArgument(format!(
                "the store is already domain {} ({})",
                d.name,
                d.id_hex()
            )));
        }
        if store.config().read_only {
            return Err(Error::ReadOnly);
        }
        let mut id = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
            .map_err(|e| Error::io("read /dev/urandom", e))?;
        let d = Domain {
            id,
            name: name.to_string(),
        };
        let path = store.path().join(DOMAIN_FILE);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, d.encode())
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .and_then(|_| std::fs::File::open(store.path())?.sync_all())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(d)
    }

    /// The store's domain, made on first use with the store directory's
    /// name (or `store`) as its name.
    pub fn ensure(store: &Store) -> Result<Domain> {
        if let Some(d) = Domain::of_store(store)? {
            return Ok(d);
        }
        let dir = store
            .path()
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .map(|n| n.trim_start_matches('.').to_string())
            .filter(|n| super::check_name("domain", n).is_ok())
            .unwrap_or_else(|| "store".into());
        Domain::init(store, &dir)
    }

    /// The domain's signing key (the store's).
    pub fn signer(store: &Store) -> Result<Signer> {
        Signer::of_store(store).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// The domain's public key.
    pub fn public_key(store: &Store) -> Result<PublicKey> {
        Ok(Domain::signer(store)?.public())
    }
}

/// A domain id from 32 hex digits.
pub fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
