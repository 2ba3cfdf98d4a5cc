//! Cache entries: a name (an action key `ac/HEX`, a ccache key) pointing at
//! an artifact through an `asl/cache-entry` record. The newest live entry
//! answers; a put may be conditional, so two writers can compare-and-swap
//! a name. What a build-cache door serves is decided here, not in the door.

use asl_core::{ArtifactId, Store};
use parking_lot::Mutex;

use crate::cbor::Value;
use crate::query::QueryIndex;
use crate::{Record, RecordError, Source};

/// The record type of cache entries.
pub const CACHE_ENTRY: &str = "asl/cache-entry";

/// When a put of an entry may replace the current answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always (the newest entry wins).
    Always,
    /// Only when the name has no answer yet (`If-None-Match: *`).
    Absent,
    /// Only when the current answer is this artifact (`If-Match`).
    Current(ArtifactId),
}

/// The cache entries of one store, as the process holding its writer sees
/// them: puts are checked and written one at a time, and their times
/// strictly increase, so two entries for a name put within a millisecond
/// still order.
#[derive(Default)]
pub struct Entries {
    /// The last time stamped, in milliseconds; also what serialises puts.
    last: Mutex<u64>,
}

impl Entries {
    /// Entries of a store (nothing is read until asked).
    pub fn new() -> Self {
        Self::default()
    }

    /// The artifact `name` answers with: its newest entry whose artifact is
    /// live. `index` must be up to date with the store.
    pub fn lookup(&self, store: &Store, index: &QueryIndex, name: &str) -> Result<Option<ArtifactId>, RecordError> {
        // The index orders by whole seconds; the entries' own times (to the
        // millisecond, strictly increasing per writer) decide within one.
        let mut best: Option<(String, ArtifactId)> = None;
        for (_, rid) in index.records_with("cache_key", name.as_bytes())? {
            let Ok(r) = crate::get(store as &dyn Source, &rid) else {
                continue;
            };
            let (Some(Value::Text(at)), Some(Value::Bytes(b))) = (r.body.get("created_at"), r.body.get("value")) else {
                continue;
            };
            let Ok(b) = <[u8; 32]>::try_from(b.as_slice()) else {
                continue;
            };
            let id = ArtifactId::from_bytes(b);
            if best.as_ref().is_none_or(|(t, _)| at > t) && store.contains(&id)? {
                best = Some((at.clone(), id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Points `name` at `value` (already stored) when `when` allows it,
    /// committed and indexed; false, and nothing written, when it does not.
    /// The check and the write are one step among this store's entry puts.
    pub fn put(
        &self,
        store: &Store,
        index: &mut QueryIndex,
        name: &str,
        value: &ArtifactId,
        when: &Condition,
    ) -> Result<bool, RecordError> {
        let mut last = self.last.lock();
        let current = self.lookup(store, index, name)?;
        let allowed = match when {
            Condition::Always => true,
            Condition::Absent => current.is_none(),
            Condition::Current(c) => current == Some(*c),
        };
        if !allowed {
            return Ok(false);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        *last = now.max(*last + 1);
        let entry = Record::new(
            CACHE_ENTRY,
            1,
            Value::Map(vec![
                (Value::text("cache_key"), Value::text(name)),
                (Value::text("value"), Value::Bytes(value.as_bytes().to_vec())),
                (Value::text("created_at"), Value::text(stamp(*last))),
            ]),
        );
        crate::put(store, &entry)?;
        store.commit()?;
        index.refresh(store)?;
        Ok(true)
    }
}

/// Milliseconds since the epoch as record time text with a fraction.
fn stamp(ms: u64) -> String {
    let whole = crate::time::format(ms / 1000);
    format!("{}.{:03}Z", &whole[..whole.len() - 1], ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::StoreOptions;

    #[test]
    fn the_newest_entry_answers_and_conditional_puts_compare_and_swap() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let (a, b) = (s.put(b"first").unwrap(), s.put(b"second").unwrap());
        s.commit().unwrap();
        let (mut index, _) = QueryIndex::open(&s).unwrap();
        let e = Entries::new();
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), None);
        assert!(!e.put(&s, &mut index, "ac/k", &a, &Condition::Current(b)).unwrap());
        assert!(e.put(&s, &mut index, "ac/k", &a, &Condition::Absent).unwrap());
        assert!(!e.put(&s, &mut index, "ac/k", &b, &Condition::Absent).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(a));
        // Within the same millisecond too, the newer entry answers.
        assert!(e.put(&s, &mut index, "ac/k", &b, &Condition::Current(a)).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(b));
        assert!(e.put(&s, &mut index, "ac/k", &a, &Condition::Always).unwrap());
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(a));
        // An entry whose artifact is gone does not answer.
        s.remove(&a).unwrap();
        s.commit().unwrap();
        index.refresh(&s).unwrap();
        assert_eq!(e.lookup(&s, &index, "ac/k").unwrap(), Some(b));
    }
}
