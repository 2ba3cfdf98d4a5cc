//! Building trees from files: the trees of every directory on the files'
//! paths, stored bottom-up (a subtree before the tree naming it) without
//! committing. An ingest's files come in walk order, which is the order
//! trees list them in, so their trees are built as the walk closes each
//! directory; other callers give files in any order and get them sorted
//! into a map first.
//!
//! A tree's record is encoded here directly from its entries (the same
//! canonical bytes as the record built from values, which a test checks),
//! under the same rules as the schema's: valid names, strictly increasing.
//! A re-ingest of 56 000 unchanged files spent a third of its time
//! building and encoding trees through values.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{check_name, EntryKind, TREE_TYPE};
use crate::records::cbor;
use crate::records::envelope::SELF_DESCRIBED;
use crate::records::RecordError;
use crate::{ArtifactId, Store};

/// One entry of a tree being built: name, kind, size, id.
type Item<'a> = (&'a [u8], EntryKind, u64, ArtifactId);

fn file_kind(exec: bool) -> EntryKind {
    if exec {
        EntryKind::Exec
    } else {
        EntryKind::File
    }
}

/// The canonical bytes of the tree record holding `items`, which must have
/// valid names in strictly increasing byte order (as the schema requires).
pub(super) fn encode_tree(items: &[Item<'_>]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(32 + items.len() * 64);
    cbor::head(6, SELF_DESCRIBED, &mut out);
    cbor::head(4, 4, &mut out);
    text("asl", &mut out);
    text(TREE_TYPE, &mut out);
    cbor::head(0, 1, &mut out);
    cbor::head(5, 1, &mut out);
    text("entries", &mut out);
    cbor::head(4, items.len() as u64, &mut out);
    let mut prev: Option<&[u8]> = None;
    for (i, (name, kind, size, id)) in items.iter().enumerate() {
        check_name(name).map_err(|e| RecordError::Input(format!("tree entry {i}: {e}")))?;
        if prev.is_some_and(|p| p >= *name) {
            return Err(RecordError::Input(format!(
                "tree entry {i}: names not in strictly increasing byte order"
            )));
        }
        prev = Some(name);
        cbor::head(4, 4, &mut out);
        cbor::head(2, name.len() as u64, &mut out);
        out.extend_from_slice(name);
        text(kind.code(), &mut out);
        cbor::head(0, *size, &mut out);
        cbor::head(2, 32, &mut out);
        out.extend_from_slice(id.as_bytes());
    }
    Ok(out)
}

fn text(t: &str, out: &mut Vec<u8>) {
    cbor::head(3, t.len() as u64, out);
    out.extend_from_slice(t.as_bytes());
}

/// Stores the tree holding `items`; returns its id and total file bytes.
fn put_entries(store: &Store, items: &[Item<'_>]) -> Result<(ArtifactId, u64), RecordError> {
    let bytes = encode_tree(items)?;
    let id = store.put_with(&bytes, &crate::PutOptions::default())?.id;
    Ok((id, items.iter().map(|i| i.2).sum()))
}

/// A directory the ordered builder has open: its name and its entries so far.
struct Open<'a> {
    name: &'a [u8],
    items: Vec<Item<'a>>,
}

/// Stores the trees of `files` (path relative to the root, size, whether
/// executable, id) given in walk order: each directory's entries in name
/// byte order, a subdirectory's files where its name falls. Each directory
/// is stored when the walk leaves it. `None` (nothing stored for the root;
/// subtrees already stored are harmless puts) when the files are not in
/// that order or a path is not a plain relative one: the caller then takes
/// [`store_tree`], which sorts and says what is wrong.
fn store_in_walk_order<'a>(
    store: &Store,
    files: impl Iterator<Item = (&'a Path, u64, bool, ArtifactId)>,
) -> Result<Option<(ArtifactId, u64)>, RecordError> {
    let mut stack: Vec<Open<'a>> = vec![Open {
        name: b"",
        items: Vec::new(),
    }];
    let mut dirs: Vec<&'a [u8]> = Vec::new();
    // The directory part of the file before: most files share it with
    // the one before them, and then the open directories stay as they are.
    let mut last_dir: Option<&'a [u8]> = None;
    let close = |stack: &mut Vec<Open<'a>>| -> Result<(), RecordError> {
        let dir = stack.pop().expect("a directory below the root");
        let (id, size) = put_entries(store, &dir.items)?;
        let parent = stack.last_mut().expect("the root stays");
        parent.items.push((dir.name, EntryKind::Dir, size, id));
        Ok(())
    };
    let odd = |name: &[u8]| name.is_empty() || name == b"." || name == b"..";
    for (path, size, exec, id) in files {
        let bytes = path.as_os_str().as_bytes();
        let (dir, leaf) = match bytes.iter().rposition(|&b| b == b'/') {
            Some(cut) => (&bytes[..cut], &bytes[cut + 1..]),
            None => (&bytes[..0], bytes),
        };
        if odd(leaf) {
            return Ok(None);
        }
        if last_dir != Some(dir) {
            dirs.clear();
            if !dir.is_empty() {
                dirs.extend(dir.split(|&b| b == b'/'));
            }
            if dirs.iter().any(|d| odd(d)) {
                return Ok(None);
            }
            // How many of the open directories this file is still inside.
            let mut depth = 0;
            while depth < dirs.len() && depth + 1 < stack.len() && stack[depth + 1].name == dirs[depth] {
                depth += 1;
            }
            while stack.len() > depth + 1 {
                close(&mut stack)?;
            }
            for d in &dirs[depth..] {
                let top = stack.last().expect("the root stays");
                if top.items.last().is_some_and(|e| e.0 >= *d) {
                    return Ok(None);
                }
                stack.push(Open {
                    name: d,
                    items: Vec::new(),
                });
            }
            last_dir = Some(dir);
        }
        let top = stack.last_mut().expect("the root stays");
        if top.items.last().is_some_and(|e| e.0 >= leaf) {
            return Ok(None);
        }
        top.items.push((leaf, file_kind(exec), size, id));
    }
    while stack.len() > 1 {
        close(&mut stack)?;
    }
    let root = stack.pop().expect("the root");
    put_entries(store, &root.items).map(Some)
}

/// Below this many files a directory's trees are built on one core.
const PARALLEL_FILES: usize = 2048;

/// The inputs of a walk from the root whose bytes are `r`: the one run of
/// them whose paths begin with `r` and a `/`, if they make one.
fn run_below(plan: &crate::IngestPlan, r: &[u8]) -> Option<Range<usize>> {
    let below = |i: &crate::IngestInput| matches!(i.path.as_os_str().as_bytes().strip_prefix(r), Some([b'/', ..]));
    let start = plan.inputs.iter().position(below)?;
    let end = start + plan.inputs[start..].iter().take_while(|i| below(i)).count();
    (!plan.inputs[end..].iter().any(below)).then_some(start..end)
}

/// One entry of a directory being built on all cores.
enum Part<'a> {
    /// The input at this position.
    File(usize),
    /// A subdirectory and the run of inputs below it.
    Dir(&'a [u8], Range<usize>),
}

/// Stores the trees of the directory holding the inputs `run` of an ingest
/// (their paths past the first `off` bytes are relative to it, in walk
/// order), its subdirectories of many files on all cores; returns its id
/// and total file bytes, or `None` when the order is not a walk's.
fn store_run<'a>(
    store: &Store,
    plan: &'a crate::IngestPlan,
    report: &crate::IngestReport,
    run: Range<usize>,
    off: usize,
) -> Result<Option<(ArtifactId, u64)>, RecordError> {
    use rayon::prelude::*;
    let rel = |i: usize| -> &'a [u8] { &plan.inputs[i].path.as_os_str().as_bytes()[off..] };
    let item = |i: usize| {
        (
            rel(i),
            plan.inputs[i].exec,
            report.files[i].put.len,
            report.files[i].put.id,
        )
    };
    if run.len() < PARALLEL_FILES {
        let files = run.map(|i| {
            let (p, exec, size, id) = item(i);
            (Path::new(std::ffi::OsStr::from_bytes(p)), size, exec, id)
        });
        return store_in_walk_order(store, files);
    }
    let mut parts: Vec<Part<'a>> = Vec::new();
    for i in run {
        let p = rel(i);
        let Some(cut) = p.iter().position(|&b| b == b'/') else {
            parts.push(Part::File(i));
            continue;
        };
        match parts.last_mut() {
            Some(Part::Dir(name, r)) if *name == &p[..cut] => r.end = i + 1,
            _ => parts.push(Part::Dir(&p[..cut], i..i + 1)),
        }
    }
    // The names as the one-core builder checks them: plain, and strictly
    // increasing (a directory met again after another name is not a walk's).
    let name = |p: &Part<'a>| match p {
        Part::File(i) => rel(*i),
        Part::Dir(n, _) => n,
    };
    let odd = |n: &[u8]| n.is_empty() || n == b"." || n == b"..";
    if parts.iter().any(|p| odd(name(p))) || parts.windows(2).any(|w| name(&w[0]) >= name(&w[1])) {
        return Ok(None);
    }
    let items: Vec<Option<Item<'a>>> = parts
        .par_iter()
        .map(|p| match p {
            Part::File(i) => {
                let (n, exec, size, id) = item(*i);
                Ok(Some((n, file_kind(exec), size, id)))
            }
            Part::Dir(n, r) => Ok(store_run(store, plan, report, r.clone(), off + n.len() + 1)?
                .map(|(id, size)| (*n, EntryKind::Dir, size, id))),
        })
        .collect::<Result<_, RecordError>>()?;
    match items.into_iter().collect::<Option<Vec<Item<'a>>>>() {
        Some(items) => put_entries(store, &items).map(Some),
        None => Ok(None),
    }
}

/// A file to put in a tree: its path relative to the tree's root.
#[derive(Clone, Debug)]
pub struct TreeFile {
    /// Relative path (normal components only).
    pub path: PathBuf,
    /// Its length.
    pub size: u64,
    /// Whether it is executable.
    pub exec: bool,
    /// Its artifact id.
    pub id: ArtifactId,
}

enum Node {
    /// A file: size, executable, id.
    File(u64, bool, ArtifactId),
    Dir(BTreeMap<Vec<u8>, Node>),
}

/// Stores the trees of a directory holding `files` (every directory on a
/// file's path gets one) and returns the root tree's id. Uncommitted, like
/// any put: the caller commits.
pub fn store_tree(store: &Store, files: &[TreeFile]) -> Result<ArtifactId, RecordError> {
    let mut root = BTreeMap::new();
    for f in files {
        let mut names = Vec::new();
        for c in f.path.components() {
            match c {
                Component::Normal(n) => names.push(n.as_bytes()),
                _ => return Err(RecordError::Input(format!("{}: not a relative path", f.path.display()))),
            }
        }
        let Some((leaf, dirs)) = names.split_last() else {
            return Err(RecordError::Input("an empty path in a tree".into()));
        };
        let mut at = &mut root;
        for d in dirs {
            // A directory is named once, by its first file; the files after
            // it find it without an owned copy of the name.
            if !at.contains_key(*d) {
                at.insert(d.to_vec(), Node::Dir(BTreeMap::new()));
            }
            let node = at.get_mut(*d).expect("inserted above");
            at = match node {
                Node::Dir(m) => m,
                Node::File(..) => {
                    return Err(RecordError::Input(format!(
                        "{}: a file is also a directory",
                        f.path.display()
                    )))
                }
            };
        }
        if at.insert(leaf.to_vec(), Node::File(f.size, f.exec, f.id)).is_some() {
            return Err(RecordError::Input(format!("{}: named twice", f.path.display())));
        }
    }
    Ok(store_dir(store, &root)?.0)
}

/// Stores the tree of `dir` (its subtrees first) and returns its id and
/// total file bytes. The map is in name order already, so the entries go
/// straight into the record's body.
fn store_dir(store: &Store, dir: &BTreeMap<Vec<u8>, Node>) -> Result<(ArtifactId, u64), RecordError> {
    let mut items: Vec<Item<'_>> = Vec::with_capacity(dir.len());
    for (name, node) in dir {
        items.push(match node {
            Node::File(size, exec, id) => (name, file_kind(*exec), *size, *id),
            Node::Dir(sub) => {
                let (id, size) = store_dir(store, sub)?;
                (name, EntryKind::Dir, size, id)
            }
        });
    }
    put_entries(store, &items)
}
/// Stores every regular file below directory `dir` and the trees holding
/// them; returns the root tree's id (uncommitted). Symbolic links and
/// special files are refused: a tree holds files and directories only.
pub fn store_directory(store: &Store, dir: &Path) -> Result<ArtifactId, RecordError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |p: &Path, e: std::io::Error| RecordError::Input(format!("{}: {e}", p.display()));
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io_err(&d, e))? {
            let path = e.map_err(|e| io_err(&d, e))?.path();
            let md = std::fs::symlink_metadata(&path).map_err(|e| io_err(&path, e))?;
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                let id = store
                    .put_file_with(&path, &crate::PutOptions::default(), &mut |_| {})?
                    .id;
                files.push(TreeFile {
                    path: path.strip_prefix(dir).expect("below dir").to_path_buf(),
                    size: md.len(),
                    exec: md.permissions().mode() & 0o111 != 0,
                    id,
                });
            } else {
                return Err(RecordError::Input(format!(
                    "{} is neither a file nor a directory",
                    path.display()
                )));
            }
        }
    }
    store_tree(store, &files)
}

/// After `store.ingest_plan(plan)` returned `report`: stores the tree of
/// each directory in `roots` (the paths the plan was walked from; files
/// among them get no tree) and returns `(directory, tree id)` in order.
/// Uncommitted: the caller commits.
pub fn trees_of_ingest(
    store: &Store,
    roots: &[PathBuf],
    plan: &crate::IngestPlan,
    report: &crate::IngestReport,
) -> Result<Vec<(PathBuf, ArtifactId)>, RecordError> {
    let mut out = Vec::new();
    for root in roots {
        if !root.is_dir() || plan.excluded.contains(root) {
            continue;
        }
        // A walk made each path by joining names onto its root, so the
        // root's bytes and a `/` begin it: they are cut off directly (a
        // `strip_prefix` for each of 56 000 files compared them component
        // by component), and the files below the root are one run of the
        // inputs, whose subdirectories are built on all cores. A path that
        // is not plain after them fails the ordered builders, and the
        // general way takes the exact `strip_prefix`.
        let r = root.as_os_str().as_bytes();
        let plain_root = plain(r.strip_prefix(b"/").unwrap_or(r));
        let ordered = match run_below(plan, r).filter(|_| plain_root) {
            Some(run) => store_run(store, plan, report, run, r.len() + 1)?,
            None => {
                let files = plan.inputs.iter().zip(&report.files).filter_map(|(input, done)| {
                    let rel = input.path.strip_prefix(root).ok()?;
                    Some((rel, done.put.len, input.exec, done.put.id))
                });
                store_in_walk_order(store, files)?
            }
        };
        // A walk lists a directory's files in the order its trees hold
        // them; anything else (never seen from a walk) takes the general way.
        let id = match ordered {
            Some((id, _)) => id,
            None => {
                let files: Vec<TreeFile> = plan
                    .inputs
                    .iter()
                    .zip(&report.files)
                    .filter_map(|(input, done)| {
                        let rel = input.path.strip_prefix(root).ok()?;
                        Some((rel, done.put.len, input.exec, done.put.id))
                    })
                    .map(|(rel, size, exec, id)| TreeFile {
                        path: rel.to_path_buf(),
                        size,
                        exec,
                        id,
                    })
                    .collect();
                store_tree(store, &files)?
            }
        };
        out.push((root.clone(), id));
    }
    Ok(out)
}

/// Whether `p` is one or more names joined by single `/`s, none of them `.`.
fn plain(p: &[u8]) -> bool {
    !p.is_empty() && p.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tree::{tree_record, TreeEntry};

    fn id(n: u64) -> ArtifactId {
        ArtifactId::of(&n.to_le_bytes())
    }

    #[test]
    fn trees_of_an_ingest_are_those_of_its_paths_under_any_root_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::StoreOptions::new()
            .create(true)
            .open(dir.path().join("s"))
            .unwrap();
        let top = dir.path().join("t");
        for f in ["a/x", "a/b/y", "a/b/c/z", "a/b.txt", "a/bc"] {
            let p = top.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        let spell = |s: &str| PathBuf::from(format!("{}/{s}", top.display()));
        let want = {
            let plan = crate::IngestPlan::walk(&[spell("a")]).unwrap();
            let rep = store.ingest_plan(&plan, &Default::default(), &mut |_| {}).unwrap();
            trees_of_ingest(&store, &[spell("a")], &plan, &rep).unwrap()[0].1
        };
        // Each root as the walk was given it, and the plain root against a
        // walk given another spelling of it: the same tree, except where
        // the path below the root is not a plain one (`b/../x`), refused as
        // it always was.
        for (walked, root, same) in [
            ("a/", "a/", true),
            ("a/.", "a/.", true),
            ("./a", "./a", true),
            ("a//", "a//", true),
            ("a/b/..", "a/b/..", true),
            ("a/./", "a", true),
            ("a//", "a", true),
            ("a", "a/.", true),
            ("a/b/..", "a", false),
        ] {
            let plan = crate::IngestPlan::walk(&[spell(walked)]).unwrap();
            let rep = store.ingest_plan(&plan, &Default::default(), &mut |_| {}).unwrap();
            let got = trees_of_ingest(&store, &[spell(root)], &plan, &rep);
            match got {
                Ok(t) => assert!(same && t[0].1 == want, "walked {walked:?}, tree of {root:?}"),
                Err(e) => assert!(!same, "walked {walked:?}, tree of {root:?}: {e}"),
            }
        }
    }

    #[test]
    fn large_trees_built_on_all_cores_are_the_sorting_builders() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::StoreOptions::new()
            .create(true)
            .open(dir.path().join("s"))
            .unwrap();
        let top = dir.path().join("t");
        // 10 000 files: directories above and below the parallel threshold,
        // files beside directories at every level, a name that sorts
        // between a directory and its files (`d1.txt` after `d1/`).
        for i in 0..10_000 {
            let rel = match i % 4 {
                0 => format!("d{}/e{}/f{i}", i % 3, i % 5),
                1 => format!("d{}/g{i}", i % 3),
                2 => format!("d1.txt{i}"),
                _ => format!("d{}/e{}/h/{i}", i % 3, i % 2),
            };
            let p = top.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &rel).unwrap();
        }
        let plan = crate::IngestPlan::walk(std::slice::from_ref(&top)).unwrap();
        let rep = store.ingest_plan(&plan, &Default::default(), &mut |_| {}).unwrap();
        let sorted: Vec<TreeFile> = plan
            .inputs
            .iter()
            .zip(&rep.files)
            .map(|(i, f)| TreeFile {
                path: i.path.strip_prefix(&top).unwrap().to_path_buf(),
                size: f.put.len,
                exec: i.exec,
                id: f.put.id,
            })
            .collect();
        let want = store_tree(&store, &sorted).unwrap();
        let got = trees_of_ingest(&store, std::slice::from_ref(&top), &plan, &rep).unwrap();
        assert_eq!(got[0].1, want);
        // Out of a walk's order (two runs swapped; a directory met again
        // after another name): the general way still gives the same tree.
        let first_d1 = plan
            .inputs
            .iter()
            .position(|i| i.path.starts_with(top.join("d1")))
            .unwrap();
        for disorder in [0, 1] {
            let (mut p2, mut r2) = (plan.clone(), rep.clone());
            if disorder == 0 {
                p2.inputs.rotate_left(first_d1);
                r2.files.rotate_left(first_d1);
            } else {
                p2.inputs.swap(1, first_d1);
                r2.files.swap(1, first_d1);
            }
            let got = trees_of_ingest(&store, std::slice::from_ref(&top), &p2, &r2).unwrap();
            assert_eq!(got[0].1, want, "disorder {disorder}");
        }
    }

    #[test]
    fn direct_encoding_is_the_records_encoding() {
        // Sizes and counts on both sides of every CBOR length boundary,
        // names of every kind of byte a file system allows.
        let sizes = [0, 23, 24, 255, 256, 65_535, 65_536, u32::MAX as u64, 1 << 32, u64::MAX];
        for count in [0usize, 1, 23, 24, 300] {
            let mut names: Vec<Vec<u8>> = (0..count)
                .map(|i| match i % 4 {
                    0 => format!("f{i}").into_bytes(),
                    1 => format!("d\u{e9}{i}").into_bytes(),
                    2 => vec![0xff, b'x', 0x80 + (i % 100) as u8, 0x80 + (i / 100) as u8],
                    _ => "n"
                        .repeat(i % 40 + 1)
                        .into_bytes()
                        .into_iter()
                        .chain(i.to_string().into_bytes())
                        .collect(),
                })
                .collect();
            names.sort();
            names.dedup();
            let kinds = [EntryKind::File, EntryKind::Exec, EntryKind::Dir];
            let entries: Vec<TreeEntry> = names
                .iter()
                .enumerate()
                .map(|(i, n)| TreeEntry {
                    name: n.clone(),
                    kind: kinds[i % 3],
                    size: sizes[i % sizes.len()],
                    id: id(i as u64),
                })
                .collect();
            let items: Vec<Item<'_>> = entries.iter().map(|e| (&e.name[..], e.kind, e.size, e.id)).collect();
            let want = tree_record(entries.clone()).unwrap().encode().unwrap();
            assert_eq!(encode_tree(&items).unwrap(), want, "{count} entries");
        }
    }

    #[test]
    fn direct_encoding_refuses_what_the_schema_refuses() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(encode_tree(&[(bad, EntryKind::File, 1, id(1))]).is_err(), "{bad:?}");
        }
        let unordered = [
            (&b"b"[..], EntryKind::File, 1, id(1)),
            (b"a", EntryKind::File, 1, id(2)),
        ];
        assert!(encode_tree(&unordered).is_err());
        let twice = [(&b"a"[..], EntryKind::File, 1, id(1)), (b"a", EntryKind::Dir, 1, id(2))];
        assert!(encode_tree(&twice).is_err());
    }

    #[test]
    fn walk_order_builds_the_same_trees_and_anything_else_is_left_to_the_sorting_way() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::StoreOptions::new().create(true).open(dir.path()).unwrap();
        // Walk order: names compared within a directory, so `a/z` comes
        // before `a.txt` (a byte sort of whole paths would put it after).
        let walked = ["a/b/c", "a/b/d", "a/z", "a.txt", "b", "c/d/e/f", "c/g", "x\u{e9}"];
        let files: Vec<TreeFile> = walked
            .iter()
            .enumerate()
            .map(|(i, p)| TreeFile {
                path: p.into(),
                size: i as u64 * 100,
                exec: i % 2 == 1,
                id: id(i as u64),
            })
            .collect();
        let tuples = || files.iter().map(|f| (f.path.as_path(), f.size, f.exec, f.id));
        let want = store_tree(&s, &files).unwrap();
        assert_eq!(store_in_walk_order(&s, tuples()).unwrap().map(|t| t.0), Some(want));
        // Out of order, a directory met again, a file that is also a
        // directory, a name twice, a path that is not plain: not built here.
        let cases: [&[&str]; 6] = [
            &["b", "a"],
            &["a/b", "c", "a/d"],
            &["a", "a/b"],
            &["a", "a"],
            &["./a"],
            &["a//b"],
        ];
        for case in cases {
            let paths: Vec<PathBuf> = case.iter().map(PathBuf::from).collect();
            let got = store_in_walk_order(&s, paths.iter().map(|p| (p.as_path(), 1, false, id(1)))).unwrap();
            assert_eq!(got, None, "{case:?}");
        }
        // The sorting way takes what is merely out of order.
        let shuffled: Vec<TreeFile> = files.iter().rev().cloned().collect();
        assert_eq!(store_tree(&s, &shuffled).unwrap(), want);
    }
}
