//! Ephemeral artifacts: seed 000's runtime objects, "discarded after
//! execution". An `asl/expiry` record gives an artifact (its subject) a
//! time after which nothing needs it. The federation layer's sweep
//! (`asl_federation::removal::expire`, which `aslctl gc` and the server's
//! GC run first) takes such an artifact out of CURRENT once its time has
//! passed, unless a pin, a snapshot, publication or a live PEL receipt
//! still holds it; GC then reclaims its bytes like any other garbage.
//!
//! An artifact given several expiry times expires at the latest of them,
//! so a later record can only extend its life. The query index dates an
//! expiry record by its `expires_at`, so the due ones are one time range.

use asl_core::{ArtifactId, Store};

use crate::cbor::Value;
use crate::query::{Hit, Query, QueryIndex};
use crate::{put, time, Record, RecordError};

/// The record type.
pub const EXPIRY: &str = "asl/expiry";

/// Gives the live artifact `subject` the expiry time `at` (seconds since
/// 1970); returns the record's id. Commit to make it durable.
pub fn set(store: &Store, subject: &ArtifactId, at: u64) -> Result<ArtifactId, RecordError> {
    if !store.contains(subject)? {
        return Err(RecordError::Store(asl_core::Error::NotFound(*subject)));
    }
    let r = Record::new(
        EXPIRY,
        1,
        Value::Map(vec![
            (Value::text("subject"), Value::Bytes(subject.as_bytes().to_vec())),
            (Value::text("expires_at"), Value::text(time::format(at))),
        ]),
    );
    Ok(put(store, &r)?.id)
}

/// The artifacts whose latest expiry time is at or before `now`, oldest
/// first, each with every expiry record naming it (`Hit::records`). The
/// subjects may have been removed already; their records are then left
/// to remove. Bring `index` up to date first.
pub fn due(index: &QueryIndex, now: u64) -> Result<Vec<Hit>, RecordError> {
    let all = index.find(&Query {
        type_name: Some(EXPIRY.into()),
        ..Query::default()
    })?;
    // A hit's time is its newest matching record's: the latest expiry.
    Ok(all.into_iter().take_while(|h| h.time <= now).collect())
}
