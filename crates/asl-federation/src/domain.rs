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

use crate::error::{FederationError as Error, Result};
use asl_core::{SideFileAccess, Store};
use asl_pel::keys::{hex, PublicKey, Signer};

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
        asl_core::textfile::frame(MAGIC, &[format!("id={}", self.id_hex()), format!("name={}", self.name)])
    }

    fn decode(b: &[u8], path: &Path) -> Result<Self> {
        use asl_core::textfile::field;
        let bad = |why: &str| asl_core::Error::corrupt(path, why.to_string());
        let lines = asl_core::textfile::unframe(b, MAGIC).map_err(|e| bad(&e))?;
        Ok(Domain {
            id: field(&lines, "id")
                .and_then(parse_id)
                .ok_or_else(|| bad("no id line"))?,
            name: field(&lines, "name").ok_or_else(|| bad("no name line"))?.to_string(),
        })
    }

    /// The store's domain, if it has one yet.
    pub fn of_store(store: &Store) -> Result<Option<Domain>> {
        match store.side_files().read(DOMAIN_FILE)? {
            Some(b) => Domain::decode(&b, &store.side_files().path(DOMAIN_FILE)?).map(Some),
            None => Ok(None),
        }
    }

    /// Gives the store its domain: a new random id and `name`. A store has
    /// one domain for life, so a second init is refused.
    pub fn init(store: &Store, name: &str) -> Result<Domain> {
        super::check_name("domain", name)?;
        if let Some(d) = Domain::of_store(store)? {
            return Err(Error::Invalid(format!(
                "the store is already domain {} ({})",
                d.name,
                d.id_hex()
            )));
        }
        if store.is_read_only() {
            return Err(asl_core::Error::ReadOnly.into());
        }
        let mut id = [0u8; 16];
        asl_core::io::random_bytes(&mut id).map_err(|e| asl_core::Error::io("read /dev/urandom", e))?;
        let d = Domain {
            id,
            name: name.to_string(),
        };
        store
            .side_files()
            .write(DOMAIN_FILE, &d.encode(), SideFileAccess::Shared)?;
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
        Ok(Signer::of_store(store)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::io::{CrashMode, SimBackend};
    use asl_core::StoreOptions;
    use std::sync::Arc;

    /// The domain file, the remotes and the signing key are the store's
    /// files like its segments: written through its backend (here the
    /// simulated disk, nothing on the real one) and durable once made.
    #[test]
    fn identity_files_go_through_the_store_backend_and_survive_a_power_cut() {
        let sim = Arc::new(SimBackend::new());
        let root = std::path::Path::new("/nowhere-on-disk/store");
        let s = StoreOptions::new()
            .create(true)
            .backend(sim.clone())
            .open(root)
            .unwrap();
        let d = Domain::init(&s, "lab").unwrap();
        let key = Domain::public_key(&s).unwrap();
        let peer = crate::remote::Remote {
            name: "peer".into(),
            url: "/elsewhere".into(),
            key: None,
            domain: None,
            seq: 0,
            token: Some("secret-token".into()),
            policy: Default::default(),
        };
        crate::remote::add(&s, peer.clone()).unwrap();
        assert!(!root.exists(), "nothing written to the real disk");
        let after = Arc::new(sim.crash_image(CrashMode::DropUnsynced));
        let s2 = StoreOptions::new().backend(after).open(root).unwrap();
        assert_eq!(Domain::of_store(&s2).unwrap(), Some(d));
        assert_eq!(Domain::public_key(&s2).unwrap(), key);
        assert_eq!(crate::remote::get(&s2, "peer").unwrap(), peer);
    }
}
