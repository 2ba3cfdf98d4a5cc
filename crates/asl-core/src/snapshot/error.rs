//! The snapshot layer's error: the log or a checkpoint could not be read or
//! written, or its bytes are damaged. (Replay has its own error,
//! `ReplayError`, since it touches no file.)

crate::error::layer_error!(
    /// Why a log or checkpoint operation failed.
    SnapshotError
);

/// Result of the snapshot layer.
pub(crate) type Result<T, E = SnapshotError> = std::result::Result<T, E>;
