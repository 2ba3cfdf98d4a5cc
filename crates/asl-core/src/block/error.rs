//! The block layer's error: reading or writing a segment failed, or its bytes
//! are damaged. Lookups, usage and store state are the store's business.

crate::error::layer_error!(
    /// Why a segment operation failed.
    BlockError
);

/// Result of the block layer.
pub(crate) type Result<T, E = BlockError> = std::result::Result<T, E>;
