//! The index layer's error: an index file could not be read or written, or
//! its bytes are damaged.

crate::error::layer_error!(
    /// Why an index operation failed.
    IndexError
);

/// Result of the index layer.
pub(crate) type Result<T, E = IndexError> = std::result::Result<T, E>;
