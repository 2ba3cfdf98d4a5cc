//! Command blocks: puts, removals, labels and one lineage step applied as
//! one atomic unit. A [`Batch`] only collects operations; [`Batch::commit`]
//! checks all of them first (nothing is written when any is wrong), then
//! applies them in a store atomic section ([`asl_core::Store::begin_atomic`])
//! and commits once, so after a crash the store holds all of the batch or
//! none of it. Dropping a batch without committing it writes nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::labels::Annotation;
use super::lineage::{self, Lineage, StepChanges};
use super::{put, schema, time, RecordError};
use asl_core::{ArtifactId, Put, PutOptions, Store};

/// Where a put's bytes come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This file (read when the batch is applied).
    File(PathBuf),
}

/// A put of this batch, by its position among the batch's puts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutHandle(pub usize);

/// What a label names: an artifact in the store, or one of the batch's puts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An artifact live in the store.
    Id(ArtifactId),
    /// A put of this batch.
    Put(PutHandle),
}

impl From<PutHandle> for Target {
    fn from(h: PutHandle) -> Self {
        Target::Put(h)
    }
}

impl From<ArtifactId> for Target {
    fn from(id: ArtifactId) -> Self {
        Target::Id(id)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(Input),
    Remove(ArtifactId),
    Label {
        target: Target,
        labels: BTreeMap<String, String>,
        media_type: Option<String>,
    },
}

/// What a committed batch did, in the order of its operations.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Each put, in order.
    pub puts: Vec<Put>,
    /// Artifacts removed.
    pub removed: Vec<ArtifactId>,
    /// Annotation records written, with their subjects.
    pub annotations: Vec<(ArtifactId, ArtifactId)>,
    /// The lineage step written, when the batch had one.
    pub lineage: Option<ArtifactId>,
}

/// A block of operations applied all at once or not at all.
///
/// ```
/// use asl_records::batch::Batch;
/// use asl_records::lineage::Lineage;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
/// let old = store.put(b"draft").unwrap();
/// store.commit().unwrap();
///
/// let mut b = Batch::new(&store);
/// let report = b.put(b"final".to_vec());
/// b.label(report, [("status", "approved")], Some("text/plain"));
/// b.remove(old);
/// b.lineage(Lineage { summary: Some("publish the report".into()), ..Lineage::default() });
/// let done = b.commit().unwrap(); // durable: all four, or after a crash none
/// assert!(!store.contains(&old).unwrap());
/// assert!(done.lineage.is_some());
/// ```
pub struct Batch<'s> {
    store: &'s Store,
    ops: Vec<Op>,
    puts: usize,
    lineage: Option<Lineage>,
}

impl<'s> Batch<'s> {
    /// An empty batch on `store`.
    pub fn new(store: &'s Store) -> Self {
        Self {
            store,
            ops: Vec::new(),
            puts: 0,
            lineage: None,
        }
    }

    /// Adds a put of `bytes`.
    pub fn put(&mut self, bytes: Vec<u8>) -> PutHandle {
        self.put_input(Input::Bytes(bytes))
    }

    /// Adds a put of the file at `path`.
    pub fn put_file(&mut self, path: impl Into<PathBuf>) -> PutHandle {
        self.put_input(Input::File(path.into()))
    }

    /// Adds a put.
    pub fn put_input(&mut self, input: Input) -> PutHandle {
        self.ops.push(Op::Put(input));
        self.puts += 1;
        PutHandle(self.puts - 1)
    }

    /// Adds a removal of a live artifact.
    pub fn remove(&mut self, id: ArtifactId) {
        self.ops.push(Op::Remove(id));
    }

    /// Adds labels (and a media type) for a live artifact or one of the
    /// batch's puts.
    pub fn label<K: Into<String>, V: Into<String>>(
        &mut self,
        target: impl Into<Target>,
        labels: impl IntoIterator<Item = (K, V)>,
        media_type: Option<&str>,
    ) {
        self.ops.push(Op::Label {
            target: target.into(),
            labels: labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            media_type: media_type.map(str::to_string),
        });
    }

    /// Sets the batch's lineage step; its `changes` are filled in with what
    /// the batch did.
    pub fn lineage(&mut self, l: Lineage) {
        self.lineage = Some(l);
    }

    /// Checks every operation without writing anything: removals and labels
    /// name live artifacts (or the batch's puts), no artifact is removed
    /// twice or labelled after its removal, files are readable, labels and
    /// the lineage step pass their schemas and the step's parent is a step.
    pub fn check(&self) -> Result<(), RecordError> {
        let mut removed = HashSet::new();
        for (i, op) in self.ops.iter().enumerate() {
            let at = |e: String| RecordError::Input(format!("operation {}: {e}", i + 1));
            match op {
                Op::Put(Input::Bytes(_)) => {}
                Op::Put(Input::File(p)) => {
                    let md = std::fs::metadata(p).map_err(|e| at(format!("{}: {e}", p.display())))?;
                    if !md.is_file() {
                        return Err(at(format!("{} is not a regular file", p.display())));
                    }
                    std::fs::File::open(p).map_err(|e| at(format!("{}: {e}", p.display())))?;
                }
                Op::Remove(id) => {
                    if !removed.insert(*id) {
                        return Err(at(format!("{id} is removed twice")));
                    }
                    if !self.store.contains(id)? {
                        return Err(RecordError::Store(asl_core::Error::NotFound(*id)));
                    }
                }
                Op::Label {
                    target,
                    labels,
                    media_type,
                } => {
                    let subject = match target {
                        Target::Id(id) => {
                            if removed.contains(id) {
                                return Err(at(format!("{id} is labelled after the batch removes it")));
                            }
                            if !self.store.contains(id)? {
                                return Err(RecordError::Store(asl_core::Error::NotFound(*id)));
                            }
                            *id
                        }
                        Target::Put(h) if h.0 < self.puts => ArtifactId::from_bytes([0; 32]),
                        Target::Put(h) => return Err(at(format!("there is no put number {}", h.0 + 1))),
                    };
                    if labels.is_empty() && media_type.is_none() {
                        return Err(at("a label operation with no labels and no media type".into()));
                    }
                    let a = annotation(subject, labels, media_type);
                    schema::check(&a.to_record()).map_err(|e| at(e.to_string()))?;
                }
            }
        }
        if let Some(l) = &self.lineage {
            lineage::prepare(self.store, l)?;
        }
        Ok(())
    }

    /// Checks the batch ([`Batch::check`]), then applies it and commits, as
    /// one commit. A failure while applying (a file unreadable by then, a
    /// disk error) leaves the store's writer unusable, so that no part of
    /// the batch is ever committed; reopening the store recovers the state
    /// before it.
    pub fn commit(self) -> Result<Applied, RecordError> {
        self.check()?;
        let store = self.store;
        let section = store.begin_atomic()?;
        let mut done = Applied::default();
        let opts = PutOptions::default();
        for op in &self.ops {
            match op {
                Op::Put(Input::Bytes(b)) => done.puts.push(store.put_with(b, &opts)?),
                Op::Put(Input::File(p)) => done.puts.push(store.put_file_with(p, &opts)?),
                Op::Remove(id) => {
                    store.remove(id)?;
                    done.removed.push(*id);
                }
                Op::Label {
                    target,
                    labels,
                    media_type,
                } => {
                    let subject = match target {
                        Target::Id(id) => *id,
                        Target::Put(h) => done.puts[h.0].id,
                    };
                    let mut a = annotation(subject, labels, media_type);
                    a.created_at = Some(time::now());
                    done.annotations.push((put(store, &a.to_record())?.id, subject));
                }
            }
        }
        if let Some(l) = &self.lineage {
            let mut l = l.clone();
            l.changes = Some(StepChanges {
                added: done.puts.iter().filter(|p| p.new).map(|p| p.id).collect(),
                removed: done.removed.clone(),
                annotations: done.annotations.iter().map(|(a, _)| *a).collect(),
            });
            done.lineage = Some(lineage::put_lineage(store, &l)?.id);
        }
        section.commit()?;
        Ok(done)
    }
}

fn annotation(subject: ArtifactId, labels: &BTreeMap<String, String>, media_type: &Option<String>) -> Annotation {
    let mut a = Annotation::new(subject);
    a.labels = labels.clone();
    a.media_type = media_type.clone();
    a
}
