//! Labels: `key=value` pairs and a media type attached to an artifact
//! without changing its id, as an `asl/annotation` record that names the
//! artifact as its subject (the way an OCI referrer points at its subject).
//! An artifact's labels are those of all its annotations; the query index
//! ([`super::query`]) finds artifacts by them.

use std::collections::BTreeMap;

use super::cbor::Value;
use super::query::QueryIndex;
use super::{put, time, Record, RecordError, Source, Stored};
use asl_core::{ArtifactId, Store};

/// The record type annotations are stored as.
pub const ANNOTATION: &str = "asl/annotation";

/// Labels and a media type for one artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The artifact spoken about.
    pub subject: ArtifactId,
    /// Labels, by key.
    pub labels: BTreeMap<String, String>,
    /// The artifact's media type (`text/csv`, `application/x-hdf5`, ...).
    pub media_type: Option<String>,
    /// When it was made (record time text); [`annotate`] fills it in.
    pub created_at: Option<String>,
}

impl Annotation {
    /// An annotation of `subject` with nothing in it yet.
    pub fn new(subject: ArtifactId) -> Self {
        Self {
            subject,
            labels: BTreeMap::new(),
            media_type: None,
            created_at: None,
        }
    }

    /// Adds label `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the media type.
    pub fn media_type(mut self, m: impl Into<String>) -> Self {
        self.media_type = Some(m.into());
        self
    }

    /// As a record.
    pub fn to_record(&self) -> Record {
        let mut body = vec![(Value::text("subject"), Value::Bytes(self.subject.as_bytes().to_vec()))];
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (Value::text(k), Value::text(v)))
                .collect();
            body.push((Value::text("labels"), Value::Map(labels)));
        }
        if let Some(m) = &self.media_type {
            body.push((Value::text("media_type"), Value::text(m)));
        }
        if let Some(t) = &self.created_at {
            body.push((Value::text("created_at"), Value::text(t)));
        }
        Record::new(ANNOTATION, 1, Value::Map(body))
    }

    /// From an `asl/annotation` record (checked against its schema).
    pub fn from_record(r: &Record) -> Result<Self, RecordError> {
        if r.type_name != ANNOTATION {
            return Err(RecordError::Input(format!(
                "a {} record is not an annotation",
                r.type_name
            )));
        }
        super::schema::check(r)?;
        let text = |k: &str| match r.body.get(k) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let Some(Value::Bytes(s)) = r.body.get("subject") else {
            return Err(RecordError::Input("annotation without a subject".into()));
        };
        let subject = ArtifactId::from_bytes(
            s.as_slice()
                .try_into()
                .map_err(|_| RecordError::Input("bad subject".into()))?,
        );
        let mut labels = BTreeMap::new();
        if let Some(Value::Map(m)) = r.body.get("labels") {
            for (k, v) in m {
                if let (Value::Text(k), Value::Text(v)) = (k, v) {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Self {
            subject,
            labels,
            media_type: text("media_type"),
            created_at: text("created_at"),
        })
    }
}

/// Parses `key=value` (split at the first `=`).
pub fn parse_label(s: &str) -> Result<(String, String), RecordError> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(RecordError::Input(format!("label {s:?} is not key=value"))),
    }
}

/// Stores annotation `a` (stamped with the time now unless it has one).
/// The subject must be live in the store: labels on nothing are refused
/// (`Error::NotFound`).
/// Visible after the store's next commit, like any put.
///
/// ```
/// use asl_records::{labels::{annotate, Annotation}, query::{Query, QueryIndex}};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
/// let report = store.put(b"results").unwrap();
/// annotate(&store, &Annotation::new(report).label("tool", "mill").media_type("text/plain")).unwrap();
/// store.commit().unwrap();
/// let (index, _) = QueryIndex::open(&store).unwrap();
/// let q = Query { labels: vec![("tool".into(), "mill".into())], ..Query::default() };
/// assert_eq!(index.find(&q).unwrap()[0].subject, report);
/// ```
pub fn annotate(store: &Store, a: &Annotation) -> Result<Stored, RecordError> {
    if !store.contains(&a.subject)? {
        return Err(RecordError::Store(asl_core::Error::NotFound(a.subject)));
    }
    let mut a = a.clone();
    // To the millisecond, so that the newer of two annotations made within
    // a second is known ([`media_type_of`]).
    a.created_at.get_or_insert_with(time::now_millis);
    put(store, &a.to_record())
}

/// The media type the newest annotation of `id` that `from` holds gives
/// it, if any (what `aslctl serve` sends as `Content-Type`). `index` finds
/// the annotations; one `from` does not hold (another audience's) counts
/// as absent.
pub fn media_type_of(from: &dyn Source, index: &QueryIndex, id: &ArtifactId) -> Result<Option<String>, RecordError> {
    media_type_in(from, &index.subjects(), id)
}

/// [`media_type_of`] through a [`Subjects`](crate::query::Subjects) handle.
pub fn media_type_in(
    from: &dyn Source,
    subjects: &crate::query::Subjects,
    id: &ArtifactId,
) -> Result<Option<String>, RecordError> {
    let mut best: Option<(u64, String)> = None;
    for rid in subjects.annotations_of(id)? {
        let Ok(bytes) = from.read(&rid) else {
            continue;
        };
        let Ok(r) = Record::decode(&bytes) else {
            continue;
        };
        if r.type_name != ANNOTATION {
            continue;
        }
        let a = Annotation::from_record(&r)?;
        if let Some(m) = a.media_type {
            let at = a.created_at.as_deref().and_then(time::parse_millis).unwrap_or(0);
            if best.as_ref().is_none_or(|(t, _)| at >= *t) {
                best = Some((at, m));
            }
        }
    }
    Ok(best.map(|(_, m)| m))
}
