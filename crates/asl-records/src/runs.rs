//! Run records: one per attempt of a tool, blocked and failed ones
//! included, as `asl/run` or as seed 003's service writes them
//! (`asl/run-artifact`, see `run_artifact`); found by day, tool, mode,
//! status and run id through the query index, and pruned by age when they
//! are no longer wanted.

use super::query::{Hit, Query, QueryIndex};
use super::{time, RecordError};
use asl_core::{ArtifactId, Store};

/// The record type run records are stored as.
pub const RUN: &str = "asl/run";

/// Both types of run record: this store's own and seed 003's artifact.
pub const TYPES: [&str; 2] = [RUN, crate::run_artifact::TYPE];

/// Which run records [`prune`] removes: older than `older_than` seconds and
/// matching every given field.
#[derive(Clone, Debug, Default)]
pub struct Prune {
    /// Minimum age, in seconds before now.
    pub older_than: u64,
    /// Only runs with this status (`OK`, `BLOCKED`, `ERROR`).
    pub status: Option<String>,
    /// Only runs of this tool.
    pub tool: Option<String>,
    /// Only runs in this mode.
    pub mode: Option<String>,
    /// Report what would go; remove nothing.
    pub dry_run: bool,
}

/// The run records of both [`TYPES`] matching `query` (whose type is
/// ignored), in its order and limit.
pub fn find(index: &QueryIndex, query: &Query) -> Result<Vec<Hit>, RecordError> {
    find_with(query, |q| index.find(q))
}

/// [`find`] as `view`'s audience sees the store, keeping only what `only`
/// keeps.
pub fn find_only(
    index: &QueryIndex,
    view: &asl_core::View<'_>,
    query: &Query,
    only: &asl_core::ListFilter,
) -> Result<Vec<Hit>, RecordError> {
    find_with(query, |q| index.find_only(view, q, only))
}

fn find_with(
    query: &Query,
    mut find: impl FnMut(&Query) -> Result<Vec<Hit>, RecordError>,
) -> Result<Vec<Hit>, RecordError> {
    let mut hits = Vec::new();
    for t in TYPES {
        hits.extend(find(&Query {
            type_name: Some(t.into()),
            limit: None,
            newest_first: false,
            ..query.clone()
        })?);
    }
    hits.sort_unstable_by_key(|h| (h.time, h.subject));
    Ok(query.arrange(hits))
}

/// Removes the run records `p` selects from CURRENT and commits; returns
/// their ids, oldest first. What only they held (outputs nobody else
/// names, say) is then garbage for GC, unless a snapshot or pin keeps it.
///
/// ```
/// use asl_records::{self as records, cbor::Value, query::QueryIndex, runs, Record};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
/// let run = |t: &str, status: &str| Record::new("asl/run", 1, Value::Map(vec![
///     (Value::text("run_id"), Value::text(t)), (Value::text("created_at"), Value::text(t)),
///     (Value::text("mode"), Value::text("fast")), (Value::text("tool"), Value::text("mill")),
///     (Value::text("status"), Value::text(status)),
/// ]));
/// let old = records::put(&store, &run("2020-01-01T00:00:00Z", "OK")).unwrap().id;
/// records::put(&store, &run("2020-01-02T00:00:00Z", "BLOCKED")).unwrap();
/// store.commit().unwrap();
/// let (mut index, _) = QueryIndex::open(&store).unwrap();
/// let p = runs::Prune { older_than: 90 * 86_400, status: Some("OK".into()), ..Default::default() };
/// assert_eq!(runs::prune(&store, &mut index, &p).unwrap(), vec![old]);
/// ```
pub fn prune(store: &Store, index: &mut QueryIndex, p: &Prune) -> Result<Vec<ArtifactId>, RecordError> {
    let now = time::parse(&time::now()).unwrap_or(0);
    let mut labels = Vec::new();
    for (k, v) in [("status", &p.status), ("tool", &p.tool), ("mode", &p.mode)] {
        if let Some(v) = v {
            labels.push((k.to_string(), v.clone()));
        }
    }
    let q = Query {
        labels,
        until: Some(now.saturating_sub(p.older_than)),
        ..Query::default()
    };
    let ids: Vec<ArtifactId> = find(index, &q)?.into_iter().map(|h| h.subject).collect();
    if !p.dry_run && !ids.is_empty() {
        for id in &ids {
            store.remove(id)?;
        }
        store.commit()?;
        index.refresh(store)?;
    }
    Ok(ids)
}
