//! The store's signing key and the keys it trusts.
//!
//! Every store has one ed25519 key (made on first use, kept in
//! `keys/pel-signing.key`, mode 0600). It signs the store's receipts (as
//! `asl/signature` records beside them) and its attestations (DSSE). A
//! receipt the store did not sign itself is used from the action cache
//! only when at least `threshold` of the keys listed in `keys/trust` signed
//! it: a cache is a claim about what a program produced, and a claim from
//! an unknown party is not evidence.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};

use super::PelError;
use asl_core::{ArtifactId, SideFileAccess, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Record};

/// The key file, inside the store directory.
pub const KEY_FILE: &str = "keys/pel-signing.key";
/// The trust file, inside the store directory.
pub const TRUST_FILE: &str = "keys/trust";
/// The record type of signatures.
pub const SIGNATURE_TYPE: &str = "asl/signature";
const TRUST_TYPE: &str = "asl/pel-trust";

const KEY_MAGIC: &[u8; 8] = b"ASLSKEY\0";
const KEY_VERSION: u32 = 1;
const KEY_LEN: usize = 8 + 4 + 32 + 32 + 4;

/// What a signature over a record's id signs: a context string, so that a
/// signature made for one purpose can never be replayed as another.
const CONTEXT: &[u8] = b"asl signature v1\0";

/// A public key, 32 bytes.
pub type PublicKey = [u8; 32];

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key from 64 hex characters.
pub fn parse_key(s: &str) -> Result<PublicKey, PelError> {
    let bad = || PelError::Trust(format!("{s:?} is not a public key (64 hex characters)"));
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    VerifyingKey::from_bytes(&out).map_err(|_| bad())?;
    Ok(out)
}

/// The store's signing key.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// A signer from a 32-byte seed (tests and other stores' keys).
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The store's key, made (from the OS's random source) and saved on
    /// first use.
    pub fn of_store(store: &Store) -> Result<Signer, PelError> {
        let path = store.side_files().path(KEY_FILE)?;
        match store.side_files().read(KEY_FILE)? {
            Some(b) => Signer::decode(&b).map_err(|e| PelError::Trust(format!("{}: {e}", path.display()))),
            None => {
                if store.is_read_only() {
                    return Err(PelError::Trust(format!(
                        "{} does not exist and the store is open read-only",
                        path.display()
                    )));
                }
                let s = Signer::random()?;
                store
                    .side_files()
                    .write(KEY_FILE, &s.encode(), SideFileAccess::Private)?;
                Ok(s)
            }
        }
    }

    /// A new key from the OS's random source.
    fn random() -> Result<Signer, PelError> {
        let mut seed = [0u8; 32];
        asl_core::io::random_bytes(&mut seed).map_err(|e| asl_core::Error::io("read the OS's random source", e))?;
        Ok(Signer::from_seed(seed))
    }

    /// A signing key kept in its own file (a co-signer's, say), in the
    /// format of the store's key file.
    pub fn load(path: &Path) -> Result<Signer, PelError> {
        let b = fs::read(path).map_err(|e| asl_core::Error::io(format!("read {}", path.display()), e))?;
        Signer::decode(&b).map_err(|e| PelError::Trust(format!("{}: {e}", path.display())))
    }

    /// Makes a new signing key (from the OS's random source) and saves it
    /// at `path` with mode 0600; an existing file is never overwritten.
    pub fn create_file(path: &Path) -> Result<Signer, PelError> {
        if path.exists() {
            return Err(PelError::Trust(format!(
                "{} exists; a key file is never overwritten",
                path.display()
            )));
        }
        let s = Signer::random()?;
        // Not a side file: the file's directory is the user's, and is left
        // as it is.
        fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(&s.encode()).and_then(|_| f.sync_all()))
            .map_err(|e| asl_core::Error::io(format!("write {}", path.display()), e))?;
        Ok(s)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(KEY_LEN);
        b.extend_from_slice(KEY_MAGIC);
        b.extend_from_slice(&KEY_VERSION.to_le_bytes());
        b.extend_from_slice(self.key.as_bytes());
        b.extend_from_slice(self.key.verifying_key().as_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Signer, String> {
        if b.len() != KEY_LEN || &b[..8] != KEY_MAGIC {
            return Err("not an ASL signing key file".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if version != KEY_VERSION {
            return Err(format!("key file version {version}, this build reads {KEY_VERSION}"));
        }
        if crc32c::crc32c(&b[..KEY_LEN - 4]).to_le_bytes() != b[KEY_LEN - 4..] {
            return Err("checksum mismatch".into());
        }
        let s = Signer::from_seed(b[12..44].try_into().unwrap());
        if s.public() != b[44..76] {
            return Err("the public key does not match the secret key".into());
        }
        Ok(s)
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.key.verifying_key().to_bytes()
    }

    /// Signs raw bytes (DSSE's pre-authentication encoding, for one).
    pub fn sign_bytes(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// An `asl/signature` record over artifact `subject`.
    pub fn signature_record(&self, subject: &ArtifactId) -> Record {
        let sig = self.sign_bytes(&signed_message(subject));
        Record::new(
            SIGNATURE_TYPE,
            1,
            Value::Map(vec![
                (Value::text("subject"), Value::Bytes(subject.as_bytes().to_vec())),
                (Value::text("key"), Value::Bytes(self.public().to_vec())),
                (Value::text("signature"), Value::Bytes(sig.to_vec())),
            ]),
        )
    }

    /// Signs `subject` and stores the signature record.
    pub fn sign(&self, store: &Store, subject: &ArtifactId) -> Result<ArtifactId, PelError> {
        Ok(records::put(store, &self.signature_record(subject))?.id)
    }
}

fn signed_message(subject: &ArtifactId) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(subject.as_bytes());
    m
}

/// Checks an ed25519 signature over raw bytes.
pub fn verify_bytes(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let (Ok(k), Ok(sig)) = (VerifyingKey::from_bytes(key), <[u8; 64]>::try_from(sig)) else {
        return false;
    };
    k.verify(msg, &Signature::from_bytes(&sig)).is_ok()
}

/// The key that made signature record `r`, if `r` is a valid signature
/// over `subject`.
pub fn signer_of(r: &Record, subject: &ArtifactId) -> Option<PublicKey> {
    if r.type_name != SIGNATURE_TYPE || r.version != 1 {
        return None;
    }
    let bytes = |k: &str| match r.body.get(k) {
        Some(Value::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    };
    if bytes("subject")? != subject.as_bytes() {
        return None;
    }
    let key: PublicKey = bytes("key")?.try_into().ok()?;
    verify_bytes(&key, &signed_message(subject), bytes("signature")?).then_some(key)
}

/// Which other keys the store trusts, and how many must agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trust {
    /// How many trusted keys must have signed a receipt the store did not
    /// sign itself (k of n); at least 1.
    pub threshold: usize,
    /// The trusted keys, with a name each.
    pub keys: Vec<(String, PublicKey)>,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            threshold: 1,
            keys: Vec::new(),
        }
    }
}

impl Trust {
    /// The store's trust file, or the default (no other key) when it has none.
    pub fn of_store(store: &Store) -> Result<Trust, PelError> {
        let path = store.side_files().path(TRUST_FILE)?;
        let Some(bytes) = store.side_files().read(TRUST_FILE)? else {
            return Ok(Trust::default());
        };
        let damaged = |why: String| PelError::Trust(format!("{} is damaged: {why}", path.display()));
        let r = Record::from_sealed_file(&bytes, TRUST_TYPE, 1).map_err(damaged)?;
        let threshold = match r.body.get("threshold") {
            Some(Value::Unsigned(n)) if *n >= 1 => *n as usize,
            _ => return Err(damaged("no threshold".into())),
        };
        let mut keys = Vec::new();
        if let Some(Value::Array(items)) = r.body.get("keys") {
            for k in items {
                match (k.get("name"), k.get("key")) {
                    (Some(Value::Text(n)), Some(Value::Bytes(b))) if b.len() == 32 => {
                        keys.push((n.clone(), b.as_slice().try_into().unwrap()))
                    }
                    _ => return Err(damaged("a key entry is malformed".into())),
                }
            }
        }
        Ok(Trust { threshold, keys })
    }

    /// Saves the trust file (atomically).
    pub fn save(&self, store: &Store) -> Result<(), PelError> {
        if self.threshold == 0 {
            return Err(PelError::Trust("the threshold must be at least 1".into()));
        }
        let keys = self
            .keys
            .iter()
            .map(|(n, k)| {
                Value::Map(vec![
                    (Value::text("name"), Value::text(n)),
                    (Value::text("key"), Value::Bytes(k.to_vec())),
                ])
            })
            .collect();
        let body = Value::Map(vec![
            (Value::text("threshold"), Value::Unsigned(self.threshold as u64)),
            (Value::text("keys"), Value::Array(keys)),
        ]);
        let bytes = Record::new(TRUST_TYPE, 1, body).to_sealed_file()?;
        Ok(store.side_files().write(TRUST_FILE, &bytes, SideFileAccess::Private)?)
    }

    /// Whether signatures by `signers` make a receipt trusted: one by
    /// `own` always does; otherwise `threshold` distinct trusted keys.
    pub fn accepts(&self, own: &PublicKey, signers: &[PublicKey]) -> bool {
        if signers.contains(own) {
            return true;
        }
        let mut trusted: Vec<&PublicKey> = signers
            .iter()
            .filter(|s| self.keys.iter().any(|(_, k)| k == *s))
            .collect();
        trusted.sort_unstable();
        trusted.dedup();
        trusted.len() >= self.threshold
    }
}
