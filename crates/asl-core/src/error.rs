//! The error type of the public API.
//!
//! Corruption is kept apart from I/O: a `Corrupt*` error means bytes on disk are
//! not what the format promises, an `Io` error means the operating system refused
//! an operation. Parsers of on-disk bytes return [`DecodeError`], which knows no
//! file names; the layer that read the bytes wraps it with the file (and the
//! artifact, when there is one).

use std::path::PathBuf;

use crate::id::{ArtifactId, IdError};

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a byte string is not a valid on-disk structure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start with the expected magic.
    #[error("bad magic: expected {expected:?}")]
    BadMagic {
        /// The magic the structure must start with.
        expected: &'static str,
    },
    /// A version this build does not know.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// A checksum did not match.
    #[error("{what} checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Which checksum.
        what: &'static str,
        /// Value on disk.
        stored: u32,
        /// Value computed from the bytes.
        computed: u32,
    },
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(String),
}

/// Errors returned by the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system failed an operation; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A store file (not tied to one artifact) is corrupt.
    #[error("corrupt {file}: {detail}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The bytes of one artifact failed verification.
    #[error("artifact {id} is corrupt in {file}: {detail}")]
    CorruptArtifact {
        /// The artifact.
        id: ArtifactId,
        /// The segment holding it.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No live artifact has this id.
    #[error("artifact {0} not found")]
    NotFound(ArtifactId),
    /// No live artifact id starts with this prefix.
    #[error("no artifact matches id prefix {0}")]
    PrefixNotFound(String),
    /// More than one live artifact id starts with this prefix.
    #[error("id prefix {prefix} is ambiguous: it matches {count} artifacts: {}", list_candidates(candidates, *count))]
    AmbiguousPrefix {
        /// The prefix given.
        prefix: String,
        /// How many artifacts match (at least two).
        count: usize,
        /// The first few of them in id order (at most
        /// [`AMBIGUOUS_SHOWN`]), so a person can pick one as `git` lets them.
        candidates: Vec<crate::ArtifactId>,
    },
    /// A string that is not an artifact id or prefix.
    #[error("invalid artifact id {input:?}: {reason}")]
    InvalidId {
        /// The input.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Another process holds the writer lock.
    #[error("store is locked by {} (lock file {})", holder.as_ref().map_or("another writer".to_string(), |h| h.to_string()), path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as its note says (none from a writer that left no
        /// note, or one this version cannot read).
        holder: Option<crate::lock::LockHolder>,
    },
    /// The directory exists but is not an ASL store (or was made by another program).
    #[error("{path} is not an ASL store: {reason}")]
    NotAStore {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A write was attempted on a store opened read-only.
    #[error("store is open read-only")]
    ReadOnly,
    /// An earlier write failed part-way; reopen the store to recover its last commit.
    #[error("store writer is unusable after an earlier failed write; reopen the store")]
    Poisoned,
    /// A commit was tried while another thread's atomic section is open.
    #[error("another thread's atomic section is open: its writes must commit together")]
    SectionOpen,
    /// The input changed between hashing it and storing it.
    #[error("{0} changed while it was being ingested")]
    InputChanged(String),
    /// Bytes put with an expected id ([`PutOptions::expect`](crate::PutOptions::expect))
    /// hash to another; nothing was stored.
    #[error("the bytes do not hash to {0}")]
    IdMismatch(ArtifactId),
    /// No snapshot has this name.
    #[error("no snapshot named {0:?}")]
    SnapshotNotFound(String),
    /// A snapshot with this name exists already.
    #[error("a snapshot named {0:?} exists already")]
    SnapshotExists(String),
    /// No pin has this name.
    #[error("no pin named {0:?}")]
    PinNotFound(String),
    /// A pin of this name holds another artifact; moving it is
    /// [`Pins::set`](crate::Pins::set).
    #[error("a pin named {name:?} already holds {id} (unpin it first, or move it with repin / --force)")]
    PinExists {
        /// The pin's name.
        name: String,
        /// What it holds now.
        id: crate::id::ArtifactId,
    },
    /// A name or argument the operation cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The artifact is in a snapshot being read, but its bytes are gone (the
    /// snapshot was deleted and collected while the view was open).
    #[error("artifact {0} of the snapshot is no longer stored (was the snapshot deleted?)")]
    NotRetained(ArtifactId),
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Error::InvalidId {
            input: e.input,
            reason: e.reason,
        }
    }
}

impl Error {
    /// An I/O failure; `context` says what was being done ("read {path}").
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Damage found in `file`; `detail` says what is wrong with it.
    pub fn corrupt(file: impl Into<PathBuf>, detail: impl ToString) -> Self {
        Error::Corrupt {
            file: file.into(),
            detail: detail.to_string(),
        }
    }

    /// True when the error reports damaged data (as opposed to I/O, usage or lookup failures).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::CorruptArtifact { .. })
    }

    /// What kind of failure this is, for a caller that decides by it (the
    /// CLI's exit code, a server's status, whether a PEL node failed or the
    /// run's environment did).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } | Error::CorruptArtifact { .. } => ErrorKind::Corrupt,
            Error::NotFound(_)
            | Error::PrefixNotFound(_)
            | Error::SnapshotNotFound(_)
            | Error::PinNotFound(_)
            | Error::NotRetained(_) => ErrorKind::NotFound,
            Error::Locked { .. } | Error::ReadOnly | Error::Poisoned | Error::SectionOpen => ErrorKind::Unavailable,
            Error::SnapshotExists(_) | Error::PinExists { .. } | Error::InputChanged(_) => ErrorKind::Conflict,
            Error::AmbiguousPrefix { .. }
            | Error::InvalidId { .. }
            | Error::NotAStore { .. }
            | Error::IdMismatch(_)
            | Error::InvalidArgument(_) => ErrorKind::Invalid,
        }
    }
}

/// The kinds of failure every layer's error sorts itself into with a
/// `kind()` method, so that the shells above decide by kind and never by
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system failed an operation (a disk, a file's mode, a
    /// full disk): the request itself may be fine.
    Io,
    /// Stored bytes are damaged; nothing wrong was handed out.
    Corrupt,
    /// What was named (an artifact, snapshot, pin, record, remote) is not there.
    NotFound,
    /// The store cannot take the request now (another writer holds it, it
    /// is read-only, an earlier failure left the writer unusable).
    Unavailable,
    /// The request collides with what exists (a name taken, an input that
    /// changed under it).
    Conflict,
    /// The request is malformed or names something that cannot be (an
    /// argument, a document, a record that breaks its schema).
    Invalid,
    /// A check refused it: a signature, a trust policy, a rule of the format
    /// graph, a receipt that holds an artifact.
    Refused,
    /// A remote peer failed or answered outside its protocol.
    Remote,
}

/// An operating-system failure and what was being done. Every layer's error
/// converts from it, so `.ctx(..)?` works in each.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) context: String,
    pub(crate) source: std::io::Error,
}

impl From<IoFailure> for Error {
    fn from(f: IoFailure) -> Self {
        Error::Io {
            context: f.context,
            source: f.source,
        }
    }
}

/// Attaches a context string to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, IoFailure>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, IoFailure> {
        self.map_err(|source| IoFailure {
            context: what(),
            source,
        })
    }
}

/// Defines a layer's error: I/O failures apart from corruption, both naming
/// what they concern, converted into the public [`Error`] at the boundary
/// (`Io` to `Io`, `Corrupt` to `Corrupt`).
macro_rules! layer_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            /// The operating system failed an operation; `context` says which and on what.
            #[error("{context}: {source}")]
            Io {
                /// What was being done, with the path.
                context: String,
                /// The underlying error.
                #[source]
                source: std::io::Error,
            },
            /// Bytes in a file are not what the format promises.
            #[error("corrupt {file}: {detail}")]
            Corrupt {
                /// The damaged file.
                file: std::path::PathBuf,
                /// What is wrong.
                detail: String,
            },
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
                Self::Io {
                    context: context.into(),
                    source,
                }
            }

            pub(crate) fn corrupt(file: impl Into<std::path::PathBuf>, detail: impl ToString) -> Self {
                Self::Corrupt {
                    file: file.into(),
                    detail: detail.to_string(),
                }
            }

            /// True when the error reports damaged data rather than an I/O failure.
            #[allow(dead_code)]
            pub fn is_corruption(&self) -> bool {
                matches!(self, Self::Corrupt { .. })
            }
        }

        impl From<$crate::error::IoFailure> for $name {
            fn from(f: $crate::error::IoFailure) -> Self {
                Self::Io {
                    context: f.context,
                    source: f.source,
                }
            }
        }

        impl From<$name> for $crate::error::Error {
            fn from(e: $name) -> Self {
                match e {
                    $name::Io { context, source } => $crate::error::Error::Io { context, source },
                    $name::Corrupt { file, detail } => $crate::error::Error::Corrupt { file, detail },
                }
            }
        }
    };
}
pub(crate) use layer_error;

/// How many of the ids an ambiguous prefix matches its error names.
pub const AMBIGUOUS_SHOWN: usize = 8;

fn list_candidates(ids: &[crate::ArtifactId], count: usize) -> String {
    let mut s = ids
        .iter()
        .take(AMBIGUOUS_SHOWN)
        .map(|i| i.to_hex())
        .collect::<Vec<_>>()
        .join(", ");
    let shown = ids.len().min(AMBIGUOUS_SHOWN);
    if count > shown {
        s.push_str(&format!(" and {} more", count - shown));
    }
    s
}
