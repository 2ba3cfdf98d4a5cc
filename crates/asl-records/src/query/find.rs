//! Answering queries: records by label, type, media type and time, and
//! the records that name an artifact in a given field.

use super::*;

/// What a query asks: every condition must hold. Times are seconds since
/// 1970; `since` is inclusive, `until` exclusive, and both apply to the
/// record that carries the label (its `created_at`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Labels `key=value`, all required (by any annotation of the subject).
    pub labels: Vec<(String, String)>,
    /// Media type.
    pub media_type: Option<String>,
    /// Record type (`asl/run`, `asl/annotation`, ...).
    pub type_name: Option<String>,
    /// Earliest time.
    pub since: Option<u64>,
    /// Time before which records count.
    pub until: Option<u64>,
    /// At most this many hits: the newest of them.
    pub limit: Option<usize>,
    /// Newest first (ties in descending id order) rather than oldest first.
    pub newest_first: bool,
}

impl Query {
    /// `hits` (oldest first, as found) cut to the query's limit and put in
    /// its order.
    pub(crate) fn arrange(&self, mut hits: Vec<Hit>) -> Vec<Hit> {
        if let Some(n) = self.limit {
            hits.drain(..hits.len().saturating_sub(n));
        }
        if self.newest_first {
            hits.reverse();
        }
        hits
    }
}

impl QueryIndex {
    /// The artifacts matching `q`, oldest first (by their newest matching
    /// record), ties in id order; or as `q.newest_first` and `q.limit` ask.
    pub fn find(&self, q: &Query) -> Result<Vec<Hit>, RecordError> {
        Ok(q.arrange(self.find_all(q)?))
    }

    /// Every artifact matching `q`'s conditions, oldest first.
    fn find_all(&self, q: &Query) -> Result<Vec<Hit>, RecordError> {
        let mut prefixes = Vec::new();
        for (k, v) in &q.labels {
            prefixes.push(rows::prefix(rows::LABEL, &[k.as_bytes(), v.as_bytes()]));
        }
        if let Some(m) = &q.media_type {
            prefixes.push(rows::prefix(rows::MEDIA, &[m.as_bytes()]));
        }
        if let Some(t) = &q.type_name {
            prefixes.push(rows::prefix(rows::TYPE, &[t.as_bytes()]));
        }
        if prefixes.is_empty() {
            prefixes.push(rows::prefix(rows::ALL, &[]));
        }
        let since = q.since.unwrap_or(0);
        let until = q.until.unwrap_or(u64::MAX);
        if since >= until {
            return Ok(Vec::new());
        }
        // Each condition's keys, as flat (subject, time, record) lists sorted
        // by subject, scanned on all cores; then a merge of the lists.
        use rayon::prelude::*;
        let mut lists: Vec<Vec<Row>> = prefixes
            .into_par_iter()
            .map(|p| {
                let mut lo = p.clone();
                lo.extend_from_slice(&since.to_be_bytes());
                let mut hi = p;
                hi.extend_from_slice(&until.to_be_bytes());
                let mut list = Vec::new();
                for kv in self.p().keys.range(lo.as_slice()..hi.as_slice()) {
                    let k = kv.key().map_err(db_err)?;
                    if let Some((t, subject, record)) = rows::tail(&k) {
                        list.push(Row { subject, t, record });
                    }
                }
                list.par_sort_unstable_by_key(|r| r.subject);
                Ok(list)
            })
            .collect::<Result<_, RecordError>>()?;
        lists.sort_by_key(|l| l.len());
        let (first, rest) = lists.split_first().expect("at least one condition");
        let mut cursors = vec![0usize; rest.len()];
        let mut hits = Vec::new();
        let mut i = 0;
        'subjects: while i < first.len() {
            let subject = first[i].subject;
            let mut hit = Hit {
                subject,
                time: 0,
                records: Vec::new(),
            };
            while i < first.len() && first[i].subject == subject {
                hit.time = hit.time.max(first[i].t);
                hit.records.push(first[i].record);
                i += 1;
            }
            for (list, at) in rest.iter().zip(cursors.iter_mut()) {
                // Lists are sorted by subject: each cursor only moves on.
                *at += list[*at..].partition_point(|r| r.subject < subject);
                let mut found = false;
                while *at < list.len() && list[*at].subject == subject {
                    hit.time = hit.time.max(list[*at].t);
                    hit.records.push(list[*at].record);
                    *at += 1;
                    found = true;
                }
                if !found {
                    continue 'subjects;
                }
            }
            hit.records.sort_unstable();
            hit.records.dedup();
            hits.push(hit);
        }
        hits.sort_unstable_by_key(|h| (h.time, h.subject));
        Ok(hits)
    }

    /// [`QueryIndex::find`] without the hits whose subject is no longer
    /// live in CURRENT (an annotation outlives its subject until it is
    /// removed itself).
    pub fn find_live(&self, store: &Store, q: &Query) -> Result<Vec<Hit>, RecordError> {
        self.find_in(&store.view(asl_core::Audience::Owner), q)
    }

    /// [`QueryIndex::find_live`] as `view`'s audience sees the store: a hit
    /// whose subject it may not see is left out, and so is every matching
    /// record it may not see (a hit it sees through no record stays, with
    /// an empty list: the subject matched).
    pub fn find_in(&self, view: &asl_core::View<'_>, q: &Query) -> Result<Vec<Hit>, RecordError> {
        self.find_only(view, q, &asl_core::ListFilter::default())
    }

    /// [`QueryIndex::find_in`] with only the hits whose subject `only`
    /// keeps (of one domain, of one visibility).
    pub fn find_only(
        &self,
        view: &asl_core::View<'_>,
        q: &Query,
        only: &asl_core::ListFilter,
    ) -> Result<Vec<Hit>, RecordError> {
        let mut out = Vec::new();
        for mut h in self.find_all(q)? {
            let kept = match only.is_empty() {
                true => view.contains(&h.subject)?,
                false => view.info(&h.subject)?.is_some_and(|i| only.keeps(&i)),
            };
            if !kept {
                continue;
            }
            // The owner sees every record: no lookup per record, and the
            // records are listed as `find_live` always listed them.
            if view.audience() == asl_core::Audience::Owner {
                out.push(h);
                continue;
            }
            let mut seen = Vec::with_capacity(h.records.len());
            for r in h.records {
                if view.contains(&r)? {
                    seen.push(r);
                }
            }
            h.records = seen;
            out.push(h);
        }
        Ok(q.arrange(out))
    }

    /// The records whose field `field` holds `value`, oldest first: a label
    /// (`value` its text), a field of a registered type indexed like one
    /// (`run_id` of runs and receipts, say), or a receipt's `pel.key`
    /// (action key), `pel.in` or `pel.out` (an input's or output's id), an
    /// overlay log's `overlay.of` or `overlay.base`.
    pub fn records_with(&self, field: &str, value: &[u8]) -> Result<Vec<(u64, ArtifactId)>, RecordError> {
        let p = rows::prefix(rows::LABEL, &[field.as_bytes(), value]);
        let mut out = Vec::new();
        for kv in self.p().keys.prefix(p.as_slice()) {
            let k = kv.key().map_err(db_err)?;
            // A longer field value that starts with `value` shares the prefix
            // only if its length bytes match, which they cannot: the length
            // is part of the prefix. So every key here is an exact match.
            if let Some((t, _, record)) = rows::tail(&k) {
                if k.len() == p.len() + rows::TAIL {
                    out.push((t, record));
                }
            }
        }
        Ok(out)
    }

    /// The records whose subject is `subject`, in id order: annotations,
    /// and every other record naming a subject (a digest, an expiry, a
    /// signature), so a caller checks each one's type.
    pub fn annotations_of(&self, subject: &ArtifactId) -> Result<Vec<ArtifactId>, RecordError> {
        self.subjects().annotations_of(subject)
    }

    /// A handle for [`QueryIndex::annotations_of`] that needs no borrow of
    /// the index: a reader keeps it to look annotations up while another
    /// thread holds the index to write. It sees what the index holds as
    /// writes land, and goes stale when the index is rebuilt (take a new
    /// one then).
    pub fn subjects(&self) -> Subjects {
        Subjects(self.p().subjects.clone())
    }
}

/// See [`QueryIndex::subjects`].
#[derive(Clone)]
pub struct Subjects(fjall::Keyspace);

impl Subjects {
    /// The records whose subject is `subject`, in id order: annotations,
    /// and every other record naming a subject (a digest, an expiry, a
    /// signature), so a caller checks each one's type.
    pub fn annotations_of(&self, subject: &ArtifactId) -> Result<Vec<ArtifactId>, RecordError> {
        let mut out = Vec::new();
        for kv in self.0.prefix(subject.as_bytes()) {
            let k = kv.key().map_err(db_err)?;
            let id: [u8; 32] = k
                .get(32..64)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| RecordError::Index("a subjects key is not 64 bytes (run `aslctl reindex`)".into()))?;
            out.push(ArtifactId::from_bytes(id));
        }
        Ok(out)
    }
}
