//! Trees: directories as records (`asl/tree` version 1), so that a stored
//! directory can be listed, compared and restored, and a snapshot can hold
//! one whole.
//!
//! A tree lists its entries sorted by name bytes, each `[name, kind, size,
//! id]`: names are byte strings (a file name that is not UTF-8 survives),
//! the kind is `"f"` (file), `"x"` (executable file: the one mode bit kept,
//! as git keeps it), `"d"` (directory, whose id is its tree's and whose
//! size is the bytes of every file below it; an empty directory names the
//! empty tree) or `"l"` (symbolic link: its id is the artifact holding the
//! link's target path, its size that path's length; restored as a link,
//! never followed). A tree holding a link is version 2, any other version 1
//! (the bytes, and so the ids, of trees without links are what they were
//! before links were kept). Special files are not in trees: the walk that
//! ingests a directory skips them and counts them.
//!
//! A subtree is stored before the tree that names it, all in the caller's
//! batch, so that once a commit makes the root visible every tree and file
//! it reaches is visible too.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cbor::Value;
use super::{Record, RecordError, Source};
use asl_core::{ArtifactId, Store};

mod build;
pub(crate) mod entry;
mod walked;
pub use build::{store_directory, store_tree, store_tree_with, TreeExtras, TreeFile, TreeLink};
pub use entry::{check_name, EntryKind, TreeEntry};
use entry::{entry, version_for};
pub use walked::trees_of_ingest;

/// The record type of trees.
pub const TREE_TYPE: &str = "asl/tree";

/// The id of the tree with no entries (what an empty directory names).
pub fn empty_tree_id() -> ArtifactId {
    let bytes = build::encode_tree(&[]).expect("the empty tree encodes");
    ArtifactId::of(&bytes)
}

/// What entries found by [`walk`] (paths relative to a new tree's root)
/// are built back from: the files, and the links (their targets read back,
/// verified) and empty directories; other directories follow from what
/// they hold.
pub fn parts_of(
    store: &dyn Source,
    entries: impl IntoIterator<Item = (Vec<u8>, TreeEntry)>,
) -> Result<(Vec<TreeFile>, TreeExtras), RecordError> {
    let empty = empty_tree_id();
    let mut files = Vec::new();
    let mut extras = TreeExtras::default();
    for (path, e) in entries {
        let path = std::path::PathBuf::from(OsStr::from_bytes(&path));
        match e.kind {
            EntryKind::File | EntryKind::Exec => files.push(TreeFile {
                path,
                size: e.size,
                exec: e.kind == EntryKind::Exec,
                id: e.id,
            }),
            EntryKind::Link => extras.links.push(TreeLink {
                path,
                target: store.read(&e.id)?,
            }),
            EntryKind::Dir if e.id == empty => extras.empty_dirs.push(path),
            EntryKind::Dir => {}
        }
    }
    Ok((files, extras))
}

/// Whether a walked entry is one a tree is built back from: anything but a
/// directory that holds something.
pub fn is_leaf(e: &TreeEntry) -> bool {
    e.kind != EntryKind::Dir || e.id == empty_tree_id()
}

/// The record of a tree with `entries` (sorted here; a name twice or a bad
/// name is refused).
pub fn tree_record(mut entries: Vec<TreeEntry>) -> Result<Record, RecordError> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let items = entries
        .iter()
        .map(|e| {
            Value::Array(vec![
                Value::Bytes(e.name.clone()),
                Value::text(e.kind.code()),
                Value::Unsigned(e.size),
                Value::Bytes(e.id.as_bytes().to_vec()),
            ])
        })
        .collect();
    let body = Value::Map(vec![(Value::text("entries"), Value::Array(items))]);
    let r = Record::new(TREE_TYPE, version_for(entries.iter().map(|e| e.kind)), body);
    super::schema::check(&r)?;
    Ok(r)
}

/// The entries of tree `id`, read from `store` and checked.
pub fn read_tree(store: &dyn Source, id: &ArtifactId) -> Result<Vec<TreeEntry>, RecordError> {
    let r = super::get(store, id)?;
    parse_tree(&r).map_err(|e| match e {
        RecordError::NotARecord(why) => RecordError::NotARecord(format!("{id}: {why}")),
        other => other,
    })
}

/// The entries of a tree record.
pub fn parse_tree(r: &Record) -> Result<Vec<TreeEntry>, RecordError> {
    if r.type_name != TREE_TYPE || !(1..=2).contains(&r.version) {
        return Err(RecordError::NotARecord(format!(
            "a {} version {} record, not a tree",
            r.type_name, r.version
        )));
    }
    super::schema::check(r)?;
    let Some(Value::Array(items)) = r.body.get("entries") else {
        unreachable!("the schema requires entries")
    };
    items.iter().map(|v| entry(v).map_err(RecordError::Input)).collect()
}

/// Whether artifact `id` is a tree. Only the first bytes of an artifact
/// that is not a record are read, so asking of a large file costs one small
/// range read, not the file.
pub fn is_tree(from: &dyn Source, id: &ArtifactId) -> Result<bool, RecordError> {
    let r = from.reader(id)?;
    let len = r.len();
    let mut head = Vec::new();
    std::io::Read::read_to_end(&mut r.into_range(0, len.min(super::MAGIC.len() as u64))?, &mut head)
        .map_err(|e| RecordError::Store(asl_core::Error::io(format!("read {id}"), e)))?;
    if head != super::MAGIC {
        return Ok(false);
    }
    Ok(super::get(from, id).is_ok_and(|r| r.type_name == TREE_TYPE))
}

/// Every entry below tree `id`, depth first in name order, with its path
/// from the root (as bytes joined by `/`).
pub fn walk(store: &dyn Source, id: &ArtifactId) -> Result<Vec<(Vec<u8>, TreeEntry)>, RecordError> {
    let mut out = Vec::new();
    walk_into(store, id, &[], &mut out, 0)?;
    Ok(out)
}

/// Deepest tree nesting followed: a hostile store cannot make a walk recurse
/// without end (a tree cannot name itself, its id would be its own hash, but
/// a deep chain is possible).
const MAX_TREE_DEPTH: usize = 4096;

fn walk_into(
    store: &dyn Source,
    id: &ArtifactId,
    prefix: &[u8],
    out: &mut Vec<(Vec<u8>, TreeEntry)>,
    depth: usize,
) -> Result<(), RecordError> {
    if depth > MAX_TREE_DEPTH {
        return Err(RecordError::Input(format!("trees nested deeper than {MAX_TREE_DEPTH}")));
    }
    for e in read_tree(store, id)? {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&e.name);
        let sub = (e.kind == EntryKind::Dir).then_some(e.id);
        out.push((path.clone(), e));
        if let Some(sub) = sub {
            walk_into(store, &sub, &path, out, depth + 1)?;
        }
    }
    Ok(())
}

/// One difference between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second tree.
    Added(Vec<u8>, TreeEntry),
    /// Only in the first.
    Removed(Vec<u8>, TreeEntry),
    /// In both, with other contents or kind: (path, before, after).
    Modified(Vec<u8>, TreeEntry, TreeEntry),
}

/// The files that differ from tree `a` to tree `b` (subtrees with equal
/// ids are skipped unread).
pub fn diff(store: &dyn Source, a: &ArtifactId, b: &ArtifactId) -> Result<Vec<Change>, RecordError> {
    let mut out = Vec::new();
    diff_into(store, Some(a), Some(b), &[], &mut out)?;
    Ok(out)
}

fn diff_into(
    store: &dyn Source,
    a: Option<&ArtifactId>,
    b: Option<&ArtifactId>,
    prefix: &[u8],
    out: &mut Vec<Change>,
) -> Result<(), RecordError> {
    if a == b {
        return Ok(());
    }
    let ea = a.map(|id| read_tree(store, id)).transpose()?.unwrap_or_default();
    let eb = b.map(|id| read_tree(store, id)).transpose()?.unwrap_or_default();
    let join = |name: &[u8]| {
        let mut p = prefix.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        p
    };
    let (mut i, mut j) = (0, 0);
    while i < ea.len() || j < eb.len() {
        let ord = match (ea.get(i), eb.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let x = &ea[i];
                removed_or_added(store, x, &join(&x.name), true, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let y = &eb[j];
                removed_or_added(store, y, &join(&y.name), false, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ea[i], &eb[j]);
                let path = join(&x.name);
                match (x.kind == EntryKind::Dir, y.kind == EntryKind::Dir) {
                    (true, true) => diff_into(store, Some(&x.id), Some(&y.id), &path, out)?,
                    (false, false) if x != y => out.push(Change::Modified(path, x.clone(), y.clone())),
                    (false, false) => {}
                    // A file became a directory or back: the one goes, the other comes.
                    _ => {
                        removed_or_added(store, x, &path, true, out)?;
                        removed_or_added(store, y, &path, false, out)?;
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn removed_or_added(
    store: &dyn Source,
    e: &TreeEntry,
    path: &[u8],
    removed: bool,
    out: &mut Vec<Change>,
) -> Result<(), RecordError> {
    // An empty directory is a change of its own; another one is the
    // changes of what it holds.
    if e.kind == EntryKind::Dir && e.id != empty_tree_id() {
        let (a, b) = if removed {
            (Some(&e.id), None)
        } else {
            (None, Some(&e.id))
        };
        return diff_into(store, a, b, path, out);
    }
    out.push(if removed {
        Change::Removed(path.to_vec(), e.clone())
    } else {
        Change::Added(path.to_vec(), e.clone())
    });
    Ok(())
}

/// Restores tree `id` into `dir`, every file proven against its id as it is
/// read. `dir` must not exist or be empty, unless `overwrite`: then files of
/// the tree replace files of the same name (others in `dir` stay). Each
/// file is written beside its name and renamed over it once complete.
/// Returns the number of files written.
pub fn checkout(store: &dyn Source, id: &ArtifactId, dir: &Path, overwrite: bool) -> Result<u64, RecordError> {
    checkout_with_progress(store, id, dir, overwrite, None)
}

/// [`checkout`], reporting the bytes of files written (phase `"files"`) to
/// `progress` as they complete.
pub fn checkout_with_progress(
    store: &dyn Source,
    id: &ArtifactId,
    dir: &Path,
    overwrite: bool,
    progress: Option<asl_core::ProgressFn<'_>>,
) -> Result<u64, RecordError> {
    // Every tree is read and checked before the first byte is written (the
    // files are proven as they are copied).
    let entries = walk(store, id)?;
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if !overwrite && it.next().is_some() {
                return Err(RecordError::Input(format!(
                    "{} is not empty (checkout writes into a new or empty directory unless told to overwrite)",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?
        }
        Err(e) => return Err(io(format!("read {}", dir.display()), e)),
    }
    // Directories first (a parent is walked before what it holds), then the
    // files and links on every core: a checkout is mostly system calls per
    // file.
    for (path, e) in &entries {
        if e.kind == EntryKind::Dir {
            let to = dir.join(OsStr::from_bytes(path));
            match std::fs::create_dir(&to) {
                Ok(()) => {}
                Err(x) if x.kind() == std::io::ErrorKind::AlreadyExists && to.is_dir() => {}
                Err(x) => return Err(io(format!("create {}", to.display()), x)),
            }
        }
    }
    use rayon::prelude::*;
    let files: Vec<&(Vec<u8>, TreeEntry)> = entries.iter().filter(|(_, e)| e.kind != EntryKind::Dir).collect();
    let total: u64 = files.iter().map(|(_, e)| e.size).sum();
    let done = std::sync::atomic::AtomicU64::new(0);
    let report = |n: u64| {
        if let Some(f) = progress {
            let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            f(asl_core::Step {
                phase: "files",
                done: d.min(total),
                total,
            });
        }
    };
    report(0);
    files.par_iter().try_for_each(|(path, e)| {
        let to = dir.join(OsStr::from_bytes(path));
        match e.kind {
            EntryKind::Link => write_link(store, &e.id, &to),
            _ => write_file(store, &e.id, &to, e.kind == EntryKind::Exec),
        }?;
        report(e.size);
        Ok::<(), RecordError>(())
    })?;
    Ok(files.len() as u64)
}

/// Makes `to` a symbolic link to the target held by artifact `id` (read
/// verified), replacing what is there. The target is only written, never
/// followed: a link may point anywhere, as it did where it was ingested.
pub(crate) fn write_link(store: &dyn Source, id: &ArtifactId, to: &Path) -> Result<(), RecordError> {
    let target = store.read(id)?;
    if target.is_empty() || target.contains(&0) {
        return Err(RecordError::Input(format!(
            "{}: artifact {id} is not a link target (empty, or holds NUL)",
            to.display()
        )));
    }
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".asl-checkout");
    let tmp = to.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &tmp)
        .map_err(|e| io(format!("create link {}", tmp.display()), e))?;
    // Renamed over whatever has the name: a link to a directory is
    // replaced itself, never entered.
    std::fs::rename(&tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(format!("rename to {}", to.display()), e)
    })
}

/// A file-system error while checking out, with what was being done.
pub(crate) fn io(what: String, e: std::io::Error) -> RecordError {
    RecordError::Store(asl_core::Error::Io {
        context: what,
        source: e,
    })
}

pub(crate) fn write_file(store: &dyn Source, id: &ArtifactId, to: &Path, exec: bool) -> Result<(), RecordError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    thread_local! {
        /// The copy buffer, one per thread for all its files: allocating
        /// (and zeroing) a fresh one per file cost more than small files do.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".asl-checkout");
    let tmp = to.with_file_name(name);
    let mode = if exec { 0o755 } else { 0o644 };
    let result = (|| {
        let mut r = store.reader(id)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| io(format!("create {}", tmp.display()), e))?;
        BUF.with(|b| -> Result<(), RecordError> {
            let mut buf = b.borrow_mut();
            if buf.is_empty() {
                buf.resize(1 << 20, 0);
            }
            loop {
                let n = match std::io::Read::read(&mut r, &mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // The reader carries the store's own error (corruption
                    // named with artifact and segment) inside its io::Error.
                    Err(e) => return Err(RecordError::Store(asl_core::Error::from_reader_io(e))),
                };
                f.write_all(&buf[..n])
                    .map_err(|e| io(format!("write {}", tmp.display()), e))?;
            }
        })?;
        // The mode exactly, whatever the umask (on the open file: no second
        // path lookup).
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(format!("chmod {}", tmp.display()), e))?;
        std::fs::rename(&tmp, to).map_err(|e| io(format!("rename to {}", to.display()), e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Takes snapshot `name` of tree `id`: the tree, its subtrees and every
/// file they name, and nothing else, so that the snapshot keeps exactly
/// that directory (restic's "back up, list, restore", with `snapshot list`,
/// `ls-tree` and `checkout`). Every one must be in CURRENT.
pub fn snapshot_tree(store: &Store, name: &str, id: &ArtifactId) -> Result<asl_core::SnapshotMeta, RecordError> {
    let mut ids: std::collections::HashSet<ArtifactId> = walk(store, id)?.into_iter().map(|(_, e)| e.id).collect();
    ids.insert(*id);
    Ok(store.snapshots().create_of(name, &ids)?)
}
