//! Records: typed facts stored as ordinary artifacts whose bytes are
//! canonical CBOR, so that every fact the store knows is content-addressed
//! and verifiable like the bytes it describes.
//!
//! This layer sits on the store and calls only it. Built so far (issue 11):
//! the encoding ([`cbor`]), the envelope every record shares ([`Record`]),
//! the schema registry ([`schema`]) and storing and reading records
//! ([`put`], [`get`]); with feature `json`, a JSON view for people and
//! scripts ([`json`]). Byte layouts: `spec/records.md`.
//!
//! ```
//! use asl_records::{self as records, cbor::Value, schema::Checked, Record};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
//! let body = Value::Map(vec![
//!     (Value::text("subject"), Value::Bytes(store.put(b"data").unwrap().as_bytes().to_vec())),
//!     (Value::text("media_type"), Value::text("text/plain")),
//! ]);
//! let stored = records::put(&store, &Record::new("asl/annotation", 1, body)).unwrap();
//! assert_eq!(stored.checked, Checked::Valid);
//! store.commit().unwrap();
//! assert_eq!(records::get(&store, &stored.id).unwrap().type_name, "asl/annotation");
//! ```

pub mod batch;
#[cfg(feature = "json")]
pub mod batch_document;
pub mod cache;
pub mod cbor;
pub mod digests;
mod envelope;
pub mod expiry;
pub mod ingest;
#[cfg(feature = "json")]
pub mod json;
pub mod labels;
pub mod lineage;
pub mod query;
pub mod run_artifact;
pub mod runs;
pub mod schema;
pub mod time;
pub mod tree;
pub mod worktree;

pub use envelope::{looks_like_record, Record, MAGIC};

use asl_core::{ArtifactId, Store};

/// Why a record could not be made, stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not canonical CBOR.
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    /// The bytes are CBOR but not a record envelope.
    #[error("not a record: {0}")]
    NotARecord(String),
    /// The type name or version is malformed.
    #[error("{0}")]
    BadType(String),
    /// A record of a registered type breaks its schema.
    #[error("record of type {type_name} version {version} does not match its schema: {detail}")]
    Schema {
        /// The type.
        type_name: String,
        /// The schema version.
        version: u64,
        /// What is wrong, with the field's path.
        detail: String,
    },
    /// Input that could not be turned into a record body.
    #[error("{0}")]
    Input(String),
    /// The query index failed (it is derived: `aslctl reindex` rebuilds it).
    #[error("query index: {0}")]
    Index(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] asl_core::Error),
    /// A moment's conflict with the store's own upkeep (a cache value
    /// evicted while it was being stored): the same call again succeeds.
    #[error("{0}")]
    Retry(String),
}

impl RecordError {
    /// What kind of failure this is (see [`asl_core::ErrorKind`]).
    pub fn kind(&self) -> asl_core::ErrorKind {
        use asl_core::ErrorKind;
        match self {
            RecordError::Cbor(_)
            | RecordError::NotARecord(_)
            | RecordError::BadType(_)
            | RecordError::Schema { .. }
            | RecordError::Input(_) => ErrorKind::Invalid,
            // The index is derived data that went wrong: `reindex` mends it.
            RecordError::Index(_) => ErrorKind::Corrupt,
            RecordError::Store(e) => e.kind(),
            RecordError::Retry(_) => ErrorKind::Unavailable,
        }
    }
}

/// A record stored by [`put`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its id (the BLAKE3 of its bytes).
    pub id: ArtifactId,
    /// Whether the registry knew its type and checked it.
    pub checked: schema::Checked,
    /// False when the store already held it.
    pub new: bool,
}

/// Checks `r` against the registry and stores it (visible after the
/// store's next commit, like any put). A record of a registered type that
/// breaks its schema is refused and nothing is written; one of an
/// unregistered type is stored and reported as [`schema::Checked::Unknown`].
pub fn put(store: &Store, r: &Record) -> Result<Stored, RecordError> {
    put_prepared(store, &prepare(r)?)
}

/// A record checked against the registry and encoded, not yet stored: what
/// [`put`] does before it writes, for a caller that wants every refusal
/// before it so much as opens a store.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The record's canonical bytes.
    pub bytes: Vec<u8>,
    /// What the registry said of it.
    pub checked: schema::Checked,
}

/// Checks `r` against the registry and encodes it (see [`put`]).
pub fn prepare(r: &Record) -> Result<Prepared, RecordError> {
    let checked = schema::check(r)?;
    Ok(Prepared {
        bytes: r.encode()?,
        checked,
    })
}

/// Stores a record [`prepare`] accepted.
pub fn put_prepared(store: &Store, p: &Prepared) -> Result<Stored, RecordError> {
    let put = store.put_with(&p.bytes, &asl_core::PutOptions::default())?;
    Ok(Stored {
        id: put.id,
        checked: p.checked,
        new: put.new,
    })
}

/// Reads record `id` (verified like every read) from CURRENT or a snapshot
/// and decodes it.
pub fn get(from: &dyn Source, id: &ArtifactId) -> Result<Record, RecordError> {
    Record::decode(&from.read(id)?)
}

/// What records and the files they name are read from: CURRENT (a
/// [`Store`]), a snapshot ([`asl_core::SnapshotView`]), or either as one
/// audience sees it ([`asl_core::View`], [`asl_core::SnapshotAt`]), where
/// what the audience may not see is absent.
pub trait Source: Sync {
    /// The artifact's bytes, verified.
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>>;
    /// A streaming reader over the artifact, verified as it goes.
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<asl_core::ArtifactReader>;
}

impl Source for Store {
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>> {
        self.get(id)
    }
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<asl_core::ArtifactReader> {
        self.open_reader(id)
    }
}

impl Source for asl_core::View<'_> {
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>> {
        self.get(id)
    }
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<asl_core::ArtifactReader> {
        self.open_reader(id)
    }
}

impl Source for asl_core::SnapshotAt<'_> {
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>> {
        self.get(id)
    }
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<asl_core::ArtifactReader> {
        self.open_reader(id)
    }
}

impl Source for asl_core::SnapshotView<'_> {
    fn read(&self, id: &ArtifactId) -> asl_core::Result<Vec<u8>> {
        self.get(id)
    }
    fn reader(&self, id: &ArtifactId) -> asl_core::Result<asl_core::ArtifactReader> {
        self.open_reader(id)
    }
}
