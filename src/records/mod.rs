//! Records: typed facts stored as ordinary artifacts whose bytes are
//! canonical CBOR, so that every fact the store knows is content-addressed
//! and verifiable like the bytes it describes.
//!
//! This layer sits on the store and is built up in steps (see issue 11):
//! first the encoding every record uses, [`cbor`].

pub mod cbor;
