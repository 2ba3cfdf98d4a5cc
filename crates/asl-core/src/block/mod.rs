//! Blocks and segments: the bottom layer that owns artifact bytes on disk.
//!
//! A segment is an append-only file of blocks. Small artifacts are packed many to
//! a block; a large artifact is written as a run of chunk blocks followed by a
//! trailer block naming it. Every block carries a CRC-32C of its header and of its
//! stored body, and packed blocks and trailers record the ids they hold, so the
//! index and log above can be rebuilt from the segments alone.

pub(crate) mod active;
pub mod cdc;
pub(crate) mod error;
pub mod format;
pub mod frames;
pub(crate) mod kept;
pub(crate) mod lossy;
pub mod manifest;
pub(crate) mod reader;
pub(crate) mod scan;
pub(crate) mod segment;
pub mod tree;
pub(crate) mod writer;
