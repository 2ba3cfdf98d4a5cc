//! Ingest as one call: files and directories stored by the engine
//! ([`Store::ingest_plan`]), then the trees of the directories given and,
//! when the put options ask for SHA-256, a digest record per file, all
//! committed after the files they name (a tree is never visible before its
//! files). On a failure nothing more is committed: what the events reported
//! committed stays, and the caller drops the rest with [`Store::abandon`]
//! (as `aslctl ingest` does) rather than let a later commit store half of
//! the ingest.

use std::collections::HashMap;
use std::path::PathBuf;

use asl_core::{ArtifactId, IngestEvent, IngestOptions, IngestPlan, IngestReport, Store};

use crate::query::{QueryIndex, Refresh};
use crate::{digests, tree, RecordError};

/// What an ingest stored and recorded.
pub struct IngestOutcome {
    /// The engine's report: every file, what was new, timings.
    pub report: IngestReport,
    /// The tree of each directory given: (the path as given, its tree id).
    pub trees: Vec<(PathBuf, ArtifactId)>,
    /// Each file's SHA-256, when asked for.
    pub sha256: HashMap<ArtifactId, [u8; 32]>,
    /// Files the files cache skipped that had no digest recorded yet, read
    /// back from the store for it.
    pub read_back: usize,
    /// What opening the query index did, when digests needed it.
    pub index_refresh: Option<Refresh>,
}

/// Ingests `plan` (walked from `roots`) into `store`; see the module docs.
/// `on_event` sees the engine's progress and each commit of files.
///
/// A directory comes back as a tree, which checks out as it was:
///
/// ```
/// use asl_core::{IngestOptions, IngestPlan};
/// use asl_records::{ingest::ingest, tree};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path().join("store"))?;
/// let src = dir.path().join("src");
/// std::fs::create_dir_all(src.join("docs")).unwrap();
/// std::fs::write(src.join("docs/a.md"), b"# A").unwrap();
/// let roots = vec![src];
/// let plan = IngestPlan::walk(&roots)?;
/// let done = ingest(&store, &roots, &plan, &IngestOptions::default(), &mut |_| {})?;
/// let (_, root) = done.trees[0].clone();
/// let paths: Vec<_> = tree::walk(&store, &root)?.into_iter().map(|(p, _)| p).collect();
/// assert!(paths.contains(&b"docs/a.md".to_vec()));
/// tree::checkout(&store, &root, &dir.path().join("out"), false)?;
/// assert_eq!(std::fs::read(dir.path().join("out/docs/a.md")).unwrap(), b"# A");
/// # Ok::<(), asl_records::RecordError>(())
/// ```
pub fn ingest(
    store: &Store,
    roots: &[PathBuf],
    plan: &IngestPlan,
    opts: &IngestOptions,
    on_event: &mut dyn FnMut(IngestEvent<'_>),
) -> Result<IngestOutcome, RecordError> {
    let report = store.ingest_plan(plan, opts, on_event)?;
    let trees = tree::trees_of_ingest(store, roots, plan, &report)?;
    let mut out = IngestOutcome {
        report,
        trees,
        sha256: HashMap::new(),
        read_back: 0,
        index_refresh: None,
    };
    if opts.put.wants_sha256() {
        record_digests(store, &mut out)?;
    }
    store.commit()?;
    Ok(out)
}

/// Stores an `asl/digest` record for every file: with the SHA-256 its put
/// computed, or for a file the files cache skipped, the one already
/// recorded, else one computed by reading it back from the store.
fn record_digests(store: &Store, out: &mut IngestOutcome) -> Result<(), RecordError> {
    let mut items = Vec::new();
    let mut unknown = Vec::new();
    for f in &out.report.files {
        match f.put.sha256 {
            Some(sha) => {
                if out.sha256.insert(f.put.id, sha).is_none() {
                    items.push((f.put.id, sha, f.put.len));
                }
            }
            None => unknown.push((f.put.id, f.put.len)),
        }
    }
    if !unknown.is_empty() {
        let (index, refresh) = QueryIndex::open(store)?;
        out.index_refresh = Some(refresh);
        for (id, len) in unknown {
            if out.sha256.contains_key(&id) {
                continue;
            }
            let sha = match digests::digest_of(store, &index, &id)? {
                Some(sha) => sha,
                None => {
                    out.read_back += 1;
                    digests::sha256_of_stored(store, &id)?
                }
            };
            out.sha256.insert(id, sha);
            items.push((id, sha, len));
        }
    }
    digests::record(store, &items)?;
    Ok(())
}
