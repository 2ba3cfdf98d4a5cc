//! Lineage: `asl/lineage` records, each one step of a history (what
//! changed, by whom, why, with what outcome) linked to the step before it by
//! id, so a chain cannot be rewritten without changing every id after the
//! change. A step may name the state it produced (a tree); reverting a step
//! makes a new state and a new step that points back, never an edit.

use super::cbor::Value;
use super::tree::{self, Change};
use super::{put, time, Record, RecordError, Source, Stored};
use asl_core::{ArtifactId, Store};

/// The record type lineage steps are stored as.
pub const LINEAGE: &str = "asl/lineage";

/// Deepest chain walked: far beyond any real history, small enough that a
/// walk always ends.
pub const MAX_CHAIN: usize = 1 << 20;

/// What a step changed in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepChanges {
    /// Artifacts stored.
    pub added: Vec<ArtifactId>,
    /// Artifacts removed from CURRENT.
    pub removed: Vec<ArtifactId>,
    /// Annotation records written.
    pub annotations: Vec<ArtifactId>,
}

/// One step (the fields of the seed's JSON lineage; its `id` is the
/// record's own id).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lineage {
    /// The step before, if any.
    pub parent: Option<ArtifactId>,
    /// Position in the chain (the parent's plus one; 0 for a first step).
    pub seq: Option<u64>,
    /// The run this step belongs to.
    pub run_id: Option<String>,
    /// Who made it.
    pub actor: Option<String>,
    /// What it did, in a line.
    pub summary: Option<String>,
    /// Why.
    pub intent: Option<String>,
    /// What came of it.
    pub outcome: Option<String>,
    /// Where its inputs came from (free-form).
    pub provenance: Option<Value>,
    /// What it affects (free-form).
    pub impact: Option<Value>,
    /// Tests run and their results (free-form).
    pub tests: Option<Value>,
    /// An artifact holding its diff.
    pub diff: Option<ArtifactId>,
    /// A git commit it corresponds to.
    pub git_sha: Option<String>,
    /// The state (a tree) it produced.
    pub tree: Option<ArtifactId>,
    /// The step it reverts.
    pub reverts: Option<ArtifactId>,
    /// What it changed in the store.
    pub changes: Option<StepChanges>,
    /// When (record time text); filled in when stored.
    pub created_at: Option<String>,
}

fn id_value(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

fn ids_value(ids: &[ArtifactId]) -> Value {
    Value::Array(ids.iter().map(id_value).collect())
}

fn as_id(v: &Value) -> Option<ArtifactId> {
    match v {
        Value::Bytes(b) => Some(ArtifactId::from_bytes(b.as_slice().try_into().ok()?)),
        _ => None,
    }
}

impl Lineage {
    /// As a record (`created_at` must be set: [`put_lineage`] sets it).
    pub fn to_record(&self) -> Record {
        let mut m = Vec::new();
        let mut text = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.push((Value::text(k), Value::text(v)));
            }
        };
        text("run_id", &self.run_id);
        text("actor", &self.actor);
        text("summary", &self.summary);
        text("intent", &self.intent);
        text("outcome", &self.outcome);
        text("git_sha", &self.git_sha);
        text("created_at", &self.created_at);
        for (k, v) in [
            ("parent", &self.parent),
            ("diff", &self.diff),
            ("tree", &self.tree),
            ("reverts", &self.reverts),
        ] {
            if let Some(id) = v {
                m.push((Value::text(k), id_value(id)));
            }
        }
        for (k, v) in [
            ("provenance", &self.provenance),
            ("impact", &self.impact),
            ("tests", &self.tests),
        ] {
            if let Some(v) = v {
                m.push((Value::text(k), v.clone()));
            }
        }
        if let Some(seq) = self.seq {
            m.push((Value::text("seq"), Value::Unsigned(seq)));
        }
        if let Some(c) = &self.changes {
            let mut cm = Vec::new();
            for (k, ids) in [
                ("added", &c.added),
                ("removed", &c.removed),
                ("annotations", &c.annotations),
            ] {
                if !ids.is_empty() {
                    cm.push((Value::text(k), ids_value(ids)));
                }
            }
            m.push((Value::text("changes"), Value::Map(cm)));
        }
        Record::new(LINEAGE, 1, Value::Map(m))
    }

    /// From an `asl/lineage` record (checked against its schema).
    pub fn from_record(r: &Record) -> Result<Self, RecordError> {
        if r.type_name != LINEAGE {
            return Err(RecordError::Input(format!(
                "a {} record is not a lineage step",
                r.type_name
            )));
        }
        super::schema::check(r)?;
        let b = &r.body;
        let text = |k: &str| match b.get(k) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let id = |k: &str| b.get(k).and_then(as_id);
        let ids = |v: Option<&Value>| -> Vec<ArtifactId> {
            match v {
                Some(Value::Array(a)) => a.iter().filter_map(as_id).collect(),
                _ => Vec::new(),
            }
        };
        Ok(Self {
            parent: id("parent"),
            seq: match b.get("seq") {
                Some(Value::Unsigned(n)) => Some(*n),
                _ => None,
            },
            run_id: text("run_id"),
            actor: text("actor"),
            summary: text("summary"),
            intent: text("intent"),
            outcome: text("outcome"),
            provenance: b.get("provenance").cloned(),
            impact: b.get("impact").cloned(),
            tests: b.get("tests").cloned(),
            diff: id("diff"),
            git_sha: text("git_sha"),
            tree: id("tree"),
            reverts: id("reverts"),
            changes: b.get("changes").map(|c| StepChanges {
                added: ids(c.get("added")),
                removed: ids(c.get("removed")),
                annotations: ids(c.get("annotations")),
            }),
            created_at: text("created_at"),
        })
    }
}

/// Reads lineage step `id`.
pub fn read(src: &dyn Source, id: &ArtifactId) -> Result<Lineage, RecordError> {
    Lineage::from_record(&super::get(src, id)?).map_err(|e| match e {
        RecordError::Input(why) => RecordError::Input(format!("{id}: {why}")),
        other => other,
    })
}

/// Fills in what a step to be stored needs: the time now unless given, and
/// `seq` from its parent, which must be a lineage step in the store.
pub fn prepare(store: &Store, l: &Lineage) -> Result<Lineage, RecordError> {
    let mut l = l.clone();
    l.created_at.get_or_insert_with(time::now);
    if let Some(p) = &l.parent {
        let parent = read(store, p)?;
        let want = parent.seq.unwrap_or(0) + 1;
        match l.seq {
            Some(s) if s != want => {
                return Err(RecordError::Input(format!(
                    "seq {s} does not follow its parent's ({})",
                    want - 1
                )))
            }
            _ => l.seq = Some(want),
        }
    } else {
        l.seq.get_or_insert(0);
    }
    super::schema::check(&l.to_record())?;
    Ok(l)
}

/// Stores step `l` (see [`prepare`]). Visible after the store's next commit.
pub fn put_lineage(store: &Store, l: &Lineage) -> Result<Stored, RecordError> {
    put(store, &prepare(store, l)?.to_record())
}

/// The chain ending at `id`, newest first.
///
/// ```
/// use asl_records::lineage::{chain, put_lineage, Lineage};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
/// let first = put_lineage(&store, &Lineage { summary: Some("import".into()), ..Lineage::default() }).unwrap().id;
/// let step = Lineage { parent: Some(first), summary: Some("clean".into()), ..Lineage::default() };
/// let second = put_lineage(&store, &step).unwrap().id;
/// store.commit().unwrap();
/// let steps = chain(&store, &second).unwrap();
/// assert_eq!(steps.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [second, first]);
/// assert_eq!(steps[0].1.seq, Some(1)); // filled in from the parent
/// ```
pub fn chain(src: &dyn Source, id: &ArtifactId) -> Result<Vec<(ArtifactId, Lineage)>, RecordError> {
    let mut out = Vec::new();
    let mut next = Some(*id);
    while let Some(id) = next {
        if out.len() >= MAX_CHAIN {
            return Err(RecordError::Input(format!(
                "lineage chain longer than {MAX_CHAIN} steps"
            )));
        }
        let l = read(src, &id)?;
        next = l.parent;
        out.push((id, l));
    }
    Ok(out)
}

/// Reverts step `id`: the changes from its parent's tree to its own are
/// undone on top of `onto`'s tree (default: `id` itself, the usual case of
/// undoing the newest step), giving a new tree, and a new step is stored
/// whose parent is `onto` and which `reverts` `id`. Both steps must carry
/// trees, and so must `id`'s parent; a file changed since in a way the
/// revert would overwrite is a conflict, and nothing is written. Returns
/// the new step and its tree (visible after the store's next commit).
pub fn revert(
    store: &Store,
    id: &ArtifactId,
    onto: Option<&ArtifactId>,
    actor: Option<String>,
) -> Result<(Stored, ArtifactId), RecordError> {
    let step = read(store, id)?;
    let no_tree = |what: &str| RecordError::Input(format!("{what} carries no tree: there is no state to revert"));
    let after = step.tree.ok_or_else(|| no_tree(&format!("step {id}")))?;
    let parent_id = step
        .parent
        .ok_or_else(|| RecordError::Input(format!("step {id} has no parent: nothing before it to go back to")))?;
    let before = read(store, &parent_id)?
        .tree
        .ok_or_else(|| no_tree(&format!("its parent {parent_id}")))?;
    let onto_id = onto.copied().unwrap_or(*id);
    let base = if onto_id == *id {
        after
    } else {
        read(store, &onto_id)?
            .tree
            .ok_or_else(|| no_tree(&format!("step {onto_id}")))?
    };
    let mut files: std::collections::BTreeMap<Vec<u8>, tree::TreeEntry> = tree::walk(store, &base)?
        .into_iter()
        .filter(|(_, e)| tree::is_leaf(e))
        .collect();
    let conflict = |p: &[u8]| {
        RecordError::Input(format!(
            "{} changed since step {id}: reverting it would overwrite that",
            String::from_utf8_lossy(p)
        ))
    };
    for c in tree::diff(store, &before, &after)? {
        match c {
            Change::Added(p, e) => match files.get(&p) {
                Some(now) if now.id == e.id && now.kind == e.kind => {
                    files.remove(&p);
                }
                Some(_) => return Err(conflict(&p)),
                None => {}
            },
            Change::Removed(p, e) => match files.get(&p) {
                None => {
                    files.insert(p, e);
                }
                Some(now) if now.id == e.id && now.kind == e.kind => {}
                Some(_) => return Err(conflict(&p)),
            },
            Change::Modified(p, old, new) => match files.get(&p) {
                Some(now) if now.id == new.id && now.kind == new.kind => {
                    files.insert(p, old);
                }
                Some(now) if now.id == old.id && now.kind == old.kind => {}
                _ => return Err(conflict(&p)),
            },
        }
    }
    let (list, extras) = tree::parts_of(store, files)?;
    let new_tree = tree::store_tree_with(store, &list, &extras)?;
    let step = Lineage {
        parent: Some(onto_id),
        summary: Some(format!("revert {id}")),
        actor,
        tree: Some(new_tree),
        reverts: Some(*id),
        ..Lineage::default()
    };
    Ok((put_lineage(store, &step)?, new_tree))
}
