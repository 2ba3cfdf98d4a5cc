//! How a PEL node fails: by its own fault (an ERROR receipt records it and
//! the run goes on) or by its environment's (the store or the sandbox
//! failed: the run stops, and no signed receipt blames the node).

use asl_records as records;

use crate::PelError;

/// Why a node produced no outputs: its own failure, or its environment's.
/// (Not a [`PelError`] variant: a node's own failure is not an error of the
/// run.)
#[derive(Debug)]
pub enum OpError {
    /// The node failed (an input it cannot take, a parameter out of range,
    /// a command that failed): a signed ERROR receipt says so, and the run
    /// goes on with the nodes that do not depend on it.
    Node(String),
    /// What the node stands on failed: the store could not read or write
    /// (I/O, damaged bytes, an unusable writer), or a file of the sandbox
    /// could not be made. The run stops with this error; no receipt blames
    /// the node for it.
    Environment(PelError),
}

impl OpError {
    /// The environment's failure `e` (for I/O that is not the store's).
    pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        OpError::Environment(PelError::Store(asl_core::Error::io(context, e)))
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Node(m) => f.write_str(m),
            OpError::Environment(e) => e.fmt(f),
        }
    }
}

impl From<&str> for OpError {
    fn from(m: &str) -> Self {
        OpError::Node(m.to_string())
    }
}

impl From<String> for OpError {
    fn from(m: String) -> Self {
        OpError::Node(m)
    }
}

/// Kinds of failure that are the environment's, not the node's.
fn environment(kind: asl_core::ErrorKind) -> bool {
    use asl_core::ErrorKind;
    matches!(kind, ErrorKind::Io | ErrorKind::Corrupt | ErrorKind::Unavailable)
}

impl From<asl_core::Error> for OpError {
    fn from(e: asl_core::Error) -> Self {
        match environment(e.kind()) {
            true => OpError::Environment(PelError::Store(e)),
            false => OpError::Node(e.to_string()),
        }
    }
}

impl From<records::RecordError> for OpError {
    fn from(e: records::RecordError) -> Self {
        match environment(e.kind()) {
            true => OpError::Environment(PelError::Record(e)),
            false => OpError::Node(e.to_string()),
        }
    }
}
