//! The federation's error: what failed is told apart — the request, the
//! remote, a check on what a peer sent, or a layer below — so that a caller
//! decides by [`FederationError::kind`], never by reading the message.

use asl_core::ErrorKind;
use asl_pel::PelError;
use asl_records::RecordError;

/// Why a federation operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// An argument or configuration the operation cannot take: a bad name,
    /// a URL that is neither a path nor a URL, a remote that exists already.
    #[error("{0}")]
    Invalid(String),
    /// What the operation names is not there: a remote, a federated
    /// snapshot, a publication.
    #[error("{0}")]
    NotFound(String),
    /// A remote failed or answered outside the protocol: unreachable, an
    /// HTTP error, a reply that does not parse, bytes that do not prove
    /// themselves, a listing that lacks what it lists.
    #[error("{0}")]
    Remote(String),
    /// A check refused what a peer sent or what would be published: a
    /// manifest whose signature or trust does not hold, a published record
    /// naming an internal artifact.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] asl_core::Error),
    /// The records layer failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Keys or signing failed.
    #[error(transparent)]
    Pel(#[from] PelError),
}

impl FederationError {
    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            FederationError::Invalid(_) => ErrorKind::Invalid,
            FederationError::NotFound(_) => ErrorKind::NotFound,
            FederationError::Remote(_) => ErrorKind::Remote,
            FederationError::Refused(_) => ErrorKind::Refused,
            FederationError::Store(e) => e.kind(),
            FederationError::Record(e) => e.kind(),
            FederationError::Pel(e) => e.kind(),
        }
    }
}

impl From<asl_records::cbor::CborError> for FederationError {
    fn from(e: asl_records::cbor::CborError) -> Self {
        FederationError::Record(e.into())
    }
}

impl From<asl_core::id::IdError> for FederationError {
    fn from(e: asl_core::id::IdError) -> Self {
        FederationError::Store(e.into())
    }
}

/// Result of the federation layer.
pub type Result<T, E = FederationError> = std::result::Result<T, E>;
