//! Working copies: a tree checked out into a directory that remembers what
//! it was checked out from, so that changes can be listed, committed as a
//! new tree with a lineage step whose parent is the old one, or discarded.
//!
//! The directory holds one file of ours, `.asl-worktree`: the base tree,
//! the lineage step it belongs to, and for every file, symbolic link and
//! empty directory the tree holds its id and the stamp (size, times, inode,
//! device) it had when last known to hold that id. A file whose stamp is unchanged is not read again; a stamp
//! taken less than a second before it was recorded is not trusted (the file
//! could change again within the clock's granularity), as in the files
//! cache. Byte layout: `spec/records.md`, "Working copies".

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::cbor::Value;
use super::lineage::{self, Lineage, StepChanges};
use super::tree::{self, io, EntryKind, TreeExtras, TreeFile, TreeLink};
use super::{Record, RecordError};
use asl_core::{ArtifactId, FileStamp, PutOptions, Store};

/// The state file's name inside a working copy.
pub const STATE_FILE: &str = ".asl-worktree";
const STATE_TYPE: &str = "asl/worktree-state";

/// What the working copy knows of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    kind: EntryKind,
    size: u64,
    id: ArtifactId,
    stamp: FileStamp,
}

/// A change against the base tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// A file whose contents or execute bit differ.
    Modified(Vec<u8>),
    /// A file the base tree lacks.
    Added(Vec<u8>),
    /// A file of the base tree that is gone.
    Removed(Vec<u8>),
}

impl Status {
    /// The file's path (relative, as bytes).
    pub fn path(&self) -> &[u8] {
        match self {
            Status::Modified(p) | Status::Added(p) | Status::Removed(p) => p,
        }
    }
}

/// An opened working copy.
///
/// ```
/// use asl_records::{tree, worktree::{Status, Worktree}};
///
/// let tmp = tempfile::tempdir().unwrap();
/// let store = asl_core::StoreOptions::new().create(true).open(tmp.path().join("s")).unwrap();
/// let id = store.put(b"v1").unwrap();
/// let t = tree::store_tree(&store, &[tree::TreeFile { path: "a.txt".into(), size: 2, exec: false, id }]).unwrap();
/// let dir = tmp.path().join("wt");
/// let mut wt = Worktree::add(&store, &dir, &t, None).unwrap();
/// std::fs::write(dir.join("a.txt"), b"v2").unwrap();
/// assert_eq!(wt.status().unwrap(), [Status::Modified(b"a.txt".to_vec())]);
/// let (step, new_tree) = wt.commit(&store, "edit a", None).unwrap().unwrap();
/// assert_eq!(wt.tree, new_tree);
/// assert_eq!(wt.lineage, step);
/// ```
#[derive(Debug)]
pub struct Worktree {
    dir: PathBuf,
    /// The tree it was checked out from (or last committed).
    pub tree: ArtifactId,
    /// The lineage step of that tree.
    pub lineage: ArtifactId,
    files: BTreeMap<Vec<u8>, Known>,
    recorded_ns: i64,
    store_id: u64,
}

/// A file found in the directory now.
struct Present {
    kind: EntryKind,
    stamp: FileStamp,
}

fn kind_of(md: &std::fs::Metadata) -> EntryKind {
    if md.permissions().mode() & 0o111 != 0 {
        EntryKind::Exec
    } else {
        EntryKind::File
    }
}

fn kind_text(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "f",
        EntryKind::Exec => "x",
        EntryKind::Dir => "d",
        EntryKind::Link => "l",
    }
}

/// The target of the link at `path`, as bytes.
fn link_target(path: &Path) -> Result<Vec<u8>, RecordError> {
    let t = std::fs::read_link(path).map_err(|e| io(format!("read link {}", path.display()), e))?;
    Ok(t.as_os_str().as_bytes().to_vec())
}

impl Worktree {
    /// Checks out tree `tree` into `dir` (new or empty) and makes it a
    /// working copy. Its lineage starts at `lineage` when given (a step whose
    /// tree is `tree`), else at a new first step naming `tree`, committed.
    pub fn add(
        store: &Store,
        dir: &Path,
        tree_id: &ArtifactId,
        lineage: Option<&ArtifactId>,
    ) -> Result<Self, RecordError> {
        if dir.join(STATE_FILE).exists() {
            return Err(RecordError::Input(format!(
                "{} is a working copy already",
                dir.display()
            )));
        }
        let step = match lineage {
            Some(l) => {
                let s = lineage::read(store, l)?;
                if s.tree != Some(*tree_id) {
                    return Err(RecordError::Input(format!("lineage step {l} is not of tree {tree_id}")));
                }
                *l
            }
            None => {
                tree::read_tree(store, tree_id)?;
                let step = Lineage {
                    tree: Some(*tree_id),
                    summary: Some("working copy made".into()),
                    ..Lineage::default()
                };
                lineage::put_lineage(store, &step)?.id
            }
        };
        store.commit()?;
        tree::checkout(store, tree_id, dir, false)?;
        let mut wt = Worktree {
            dir: dir.to_path_buf(),
            tree: *tree_id,
            lineage: step,
            files: BTreeMap::new(),
            recorded_ns: 0,
            store_id: store.store_id(),
        };
        wt.files = wt.known_from_tree(store, tree_id)?;
        wt.save()?;
        Ok(wt)
    }

    /// The files of `tree_id` with the stamps they have in the directory now
    /// (all just written or proven to hold these bytes).
    fn known_from_tree(&self, store: &Store, tree_id: &ArtifactId) -> Result<BTreeMap<Vec<u8>, Known>, RecordError> {
        let mut out = BTreeMap::new();
        let empty = tree::empty_tree_id();
        for (p, e) in tree::walk(store, tree_id)? {
            // Directories are known by what they hold, but for empty ones.
            if e.kind == EntryKind::Dir && e.id != empty {
                continue;
            }
            let path = self.dir.join(OsStr::from_bytes(&p));
            let md = std::fs::symlink_metadata(&path).map_err(|x| io(format!("stat {}", path.display()), x))?;
            out.insert(
                p,
                Known {
                    kind: e.kind,
                    size: e.size,
                    id: e.id,
                    stamp: FileStamp::of(&md),
                },
            );
        }
        Ok(out)
    }

    /// Opens the working copy at `dir`.
    pub fn open(dir: &Path) -> Result<Self, RecordError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                RecordError::Input(format!("{} is not a working copy (no {STATE_FILE})", dir.display()))
            }
            _ => io(format!("read {}", path.display()), e),
        })?;
        let damaged = |why: &str| RecordError::Input(format!("{} is damaged: {why}", path.display()));
        let r = Record::from_sealed_file(&bytes, STATE_TYPE, 1).map_err(|e| damaged(&e))?;
        let id = |k: &str| match r.body.get(k) {
            Some(Value::Bytes(b)) if b.len() == 32 => Ok(ArtifactId::from_bytes(b.as_slice().try_into().unwrap())),
            _ => Err(damaged(&format!("no {k}"))),
        };
        let uint = |v: Option<&Value>| match v {
            Some(Value::Unsigned(n)) => Ok(*n),
            _ => Err(damaged("a number is missing")),
        };
        let mut files = BTreeMap::new();
        let Some(Value::Array(items)) = r.body.get("files") else {
            return Err(damaged("no files"));
        };
        for it in items {
            let Value::Array(f) = it else {
                return Err(damaged("a file entry is not an array"));
            };
            let (Some(Value::Bytes(p)), Some(Value::Text(k)), Some(Value::Bytes(fid))) =
                (f.first(), f.get(1), f.get(3))
            else {
                return Err(damaged("a file entry is malformed"));
            };
            let kind = match k.as_str() {
                "x" => EntryKind::Exec,
                "f" => EntryKind::File,
                "l" => EntryKind::Link,
                "d" => EntryKind::Dir,
                _ => return Err(damaged("a file entry has a bad kind")),
            };
            let fid: [u8; 32] = fid
                .as_slice()
                .try_into()
                .map_err(|_| damaged("a file id is not 32 bytes"))?;
            files.insert(
                p.clone(),
                Known {
                    kind,
                    size: uint(f.get(2))?,
                    id: ArtifactId::from_bytes(fid),
                    stamp: FileStamp {
                        size: uint(f.get(2))?,
                        mtime_ns: uint(f.get(4))? as i64,
                        ctime_ns: uint(f.get(5))? as i64,
                        ino: uint(f.get(6))?,
                        dev: uint(f.get(7))?,
                    },
                },
            );
        }
        Ok(Worktree {
            dir: dir.to_path_buf(),
            tree: id("tree")?,
            lineage: id("lineage")?,
            files,
            recorded_ns: uint(r.body.get("recorded_ns"))? as i64,
            store_id: uint(r.body.get("store_id"))?,
        })
    }

    /// Refuses a store other than the one the working copy was made from.
    fn check_store(&self, store: &Store) -> Result<(), RecordError> {
        if store.store_id() != self.store_id {
            return Err(RecordError::Input(format!(
                "{} belongs to another store (id {:016x}, this one is {:016x})",
                self.dir.display(),
                self.store_id,
                store.store_id()
            )));
        }
        Ok(())
    }

    /// Writes the state file (temp + rename), recording now as the time
    /// its stamps were taken.
    fn save(&mut self) -> Result<(), RecordError> {
        self.recorded_ns = crate::time::now_ns();
        let files = self
            .files
            .iter()
            .map(|(p, k)| {
                Value::Array(vec![
                    Value::Bytes(p.clone()),
                    Value::text(kind_text(k.kind)),
                    Value::Unsigned(k.size),
                    Value::Bytes(k.id.as_bytes().to_vec()),
                    Value::Unsigned(k.stamp.mtime_ns.max(0) as u64),
                    Value::Unsigned(k.stamp.ctime_ns.max(0) as u64),
                    Value::Unsigned(k.stamp.ino),
                    Value::Unsigned(k.stamp.dev),
                ])
            })
            .collect();
        let body = Value::Map(vec![
            (Value::text("tree"), Value::Bytes(self.tree.as_bytes().to_vec())),
            (Value::text("lineage"), Value::Bytes(self.lineage.as_bytes().to_vec())),
            (
                Value::text("recorded_ns"),
                Value::Unsigned(self.recorded_ns.max(0) as u64),
            ),
            (Value::text("store_id"), Value::Unsigned(self.store_id)),
            (Value::text("files"), Value::Array(files)),
        ]);
        let bytes = Record::new(STATE_TYPE, 1, body).to_sealed_file()?;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, &bytes).map_err(|e| io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(format!("rename {}", path.display()), e))?;
        Ok(())
    }

    /// The regular files, symbolic links and empty directories in the
    /// directory now (ours and special files left out), by relative path.
    fn scan(&self) -> Result<BTreeMap<Vec<u8>, Present>, RecordError> {
        let mut out = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let abs = self.dir.join(&rel);
            let rd = std::fs::read_dir(&abs).map_err(|e| io(format!("read {}", abs.display()), e))?;
            let mut empty = true;
            for ent in rd {
                empty = false;
                let ent = ent.map_err(|e| io(format!("read {}", abs.display()), e))?;
                let name = ent.file_name();
                if rel.as_os_str().is_empty() && (name == STATE_FILE || name == format!("{STATE_FILE}.tmp").as_str()) {
                    continue;
                }
                let p = rel.join(&name);
                let md =
                    std::fs::symlink_metadata(self.dir.join(&p)).map_err(|e| io(format!("stat {}", p.display()), e))?;
                let kind = if md.is_symlink() {
                    EntryKind::Link
                } else if md.is_dir() {
                    stack.push(p);
                    continue;
                } else if md.is_file() {
                    kind_of(&md)
                } else {
                    continue;
                };
                out.insert(
                    p.as_os_str().as_bytes().to_vec(),
                    Present {
                        kind,
                        stamp: FileStamp::of(&md),
                    },
                );
            }
            if empty && !rel.as_os_str().is_empty() {
                let md = std::fs::symlink_metadata(&abs).map_err(|e| io(format!("stat {}", abs.display()), e))?;
                out.insert(
                    rel.as_os_str().as_bytes().to_vec(),
                    Present {
                        kind: EntryKind::Dir,
                        stamp: FileStamp::of(&md),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Whether the file at `p`, now `now`, still holds what `k` says.
    fn unchanged(&self, p: &[u8], k: &Known, now: &Present) -> Result<bool, RecordError> {
        if now.kind != k.kind {
            return Ok(false);
        }
        match k.kind {
            // An empty directory is the same as long as it is one.
            EntryKind::Dir => return Ok(true),
            EntryKind::Link => {
                let target = link_target(&self.dir.join(OsStr::from_bytes(p)))?;
                return Ok(ArtifactId::of(&target) == k.id);
            }
            EntryKind::File | EntryKind::Exec => {}
        }
        if now.stamp.size != k.size {
            return Ok(false);
        }
        let settled = k.stamp.mtime_ns.max(k.stamp.ctime_ns) < self.recorded_ns - 1_000_000_000;
        if settled && now.stamp == k.stamp {
            return Ok(true);
        }
        Ok(hash_file(&self.dir.join(OsStr::from_bytes(p)))? == k.id)
    }

    /// The changes against the base tree, in path order. Files whose stamps
    /// are unchanged are not read.
    pub fn status(&self) -> Result<Vec<Status>, RecordError> {
        self.status_of(&self.scan()?)
    }

    /// The changes, given what the directory holds now.
    fn status_of(&self, present: &BTreeMap<Vec<u8>, Present>) -> Result<Vec<Status>, RecordError> {
        let mut out = Vec::new();
        for (p, k) in &self.files {
            match present.get(p) {
                None => out.push(Status::Removed(p.clone())),
                Some(now) if !self.unchanged(p, k, now)? => out.push(Status::Modified(p.clone())),
                Some(_) => {}
            }
        }
        for p in present.keys() {
            if !self.files.contains_key(p) {
                out.push(Status::Added(p.clone()));
            }
        }
        out.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(out)
    }

    /// Stores the changed and added files, a new tree of the directory and
    /// a lineage step (parent: the working copy's step) and commits; the
    /// working copy then stands on the new tree. `None` when nothing changed.
    pub fn commit(
        &mut self,
        store: &Store,
        summary: &str,
        actor: Option<&str>,
    ) -> Result<Option<(ArtifactId, ArtifactId)>, RecordError> {
        self.check_store(store)?;
        let present = self.scan()?;
        let changes = self.status_of(&present)?;
        if changes.is_empty() {
            return Ok(None);
        }
        let mut files: BTreeMap<Vec<u8>, Known> = BTreeMap::new();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let changed: std::collections::HashSet<&[u8]> = changes.iter().map(|c| c.path()).collect();
        for (p, now) in &present {
            let known = match self.files.get(p) {
                Some(k) if !changed.contains(p.as_slice()) => Known {
                    stamp: now.stamp,
                    ..k.clone()
                },
                _ if now.kind == EntryKind::Dir => Known {
                    kind: EntryKind::Dir,
                    size: 0,
                    id: tree::empty_tree_id(),
                    stamp: now.stamp,
                },
                _ if now.kind == EntryKind::Link => {
                    let path = self.dir.join(OsStr::from_bytes(p));
                    let target = link_target(&path)?;
                    let put = store.put_with(&target, &PutOptions::default())?;
                    if put.new {
                        added.push(put.id);
                    }
                    Known {
                        kind: EntryKind::Link,
                        size: target.len() as u64,
                        id: put.id,
                        stamp: now.stamp,
                    }
                }
                _ => {
                    let path = self.dir.join(OsStr::from_bytes(p));
                    let put = store.put_file_with(&path, &PutOptions::default())?;
                    // The stamp is taken after the read: a file written to
                    // meanwhile shows a newer stamp and is read again next time.
                    let md = std::fs::symlink_metadata(&path).map_err(|e| io(format!("stat {}", path.display()), e))?;
                    if put.new {
                        added.push(put.id);
                    }
                    Known {
                        kind: kind_of(&md),
                        size: put.len,
                        id: put.id,
                        stamp: FileStamp::of(&md),
                    }
                }
            };
            files.insert(p.clone(), known);
        }
        for c in &changes {
            if let Status::Removed(p) | Status::Modified(p) = c {
                if let Some(k) = self.files.get(p) {
                    removed.push(k.id);
                }
            }
        }
        let mut list = Vec::new();
        let mut extras = TreeExtras::default();
        for (p, k) in &files {
            let path = PathBuf::from(OsStr::from_bytes(p));
            match k.kind {
                EntryKind::Dir => extras.empty_dirs.push(path),
                EntryKind::Link => extras.links.push(TreeLink {
                    target: link_target(&self.dir.join(&path))?,
                    path,
                }),
                EntryKind::File | EntryKind::Exec => list.push(TreeFile {
                    path,
                    size: k.size,
                    exec: k.kind == EntryKind::Exec,
                    id: k.id,
                }),
            }
        }
        let new_tree = tree::store_tree_with(store, &list, &extras)?;
        let step = Lineage {
            parent: Some(self.lineage),
            summary: Some(summary.to_string()),
            actor: actor.map(str::to_string),
            tree: Some(new_tree),
            changes: Some(StepChanges {
                added,
                removed,
                annotations: Vec::new(),
            }),
            ..Lineage::default()
        };
        let step_id = lineage::put_lineage(store, &step)?.id;
        store.commit()?;
        self.tree = new_tree;
        self.lineage = step_id;
        self.files = files;
        self.save()?;
        Ok(Some((step_id, new_tree)))
    }

    /// Puts the directory back to the base tree: changed and removed files
    /// restored (verified as they are written), added files deleted.
    /// Returns how many files it touched.
    pub fn discard(&mut self, store: &Store) -> Result<usize, RecordError> {
        self.check_store(store)?;
        let changes = self.status()?;
        for c in &changes {
            let path = self.dir.join(OsStr::from_bytes(c.path()));
            match c {
                Status::Added(_) => {
                    let gone = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                        std::fs::remove_dir(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    gone.map_err(|e| io(format!("remove {}", path.display()), e))?
                }
                Status::Modified(p) | Status::Removed(p) => {
                    let k = &self.files[p];
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io(format!("create {}", parent.display()), e))?;
                    }
                    match k.kind {
                        EntryKind::Dir => {
                            std::fs::create_dir_all(&path).map_err(|e| io(format!("create {}", path.display()), e))?
                        }
                        EntryKind::Link => tree::write_link(store, &k.id, &path)?,
                        EntryKind::File | EntryKind::Exec => {
                            tree::write_file(store, &k.id, &path, k.kind == EntryKind::Exec)?
                        }
                    }
                }
            }
        }
        let tree_id = self.tree;
        self.files = self.known_from_tree(store, &tree_id)?;
        self.save()?;
        Ok(changes.len())
    }
}

/// The artifact id the file at `path` would have.
fn hash_file(path: &Path) -> Result<ArtifactId, RecordError> {
    let f = std::fs::File::open(path).map_err(|e| io(format!("open {}", path.display()), e))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f)
        .map_err(|e| io(format!("read {}", path.display()), e))?;
    Ok(ArtifactId::from_bytes(*h.finalize().as_bytes()))
}
