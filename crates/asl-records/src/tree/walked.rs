//! Trees of an ingest: its files come in walk order, which is the order
//! trees list them in, so each directory's tree is stored as the walk
//! leaves it, without a map of the whole tree; the files below each root
//! are one run of the inputs, and directories of many files are built on
//! all cores. Anything not in a walk's order goes to the sorting builder.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::build::{file_kind, put_entries, Item, TreeFile};
use super::EntryKind;
use crate::RecordError;
use asl_core::{ArtifactId, Store};

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
fn run_below(plan: &asl_core::IngestPlan, r: &[u8]) -> Option<Range<usize>> {
    let below = |i: &asl_core::IngestInput| matches!(i.path.as_os_str().as_bytes().strip_prefix(r), Some([b'/', ..]));
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
    plan: &'a asl_core::IngestPlan,
    report: &asl_core::IngestReport,
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

/// After `store.ingest_plan(plan)` returned `report`: stores the tree of
/// each directory in `roots` (the paths the plan was walked from; files
/// among them get no tree) and returns `(directory, tree id)` in order.
/// Uncommitted: the caller commits.
pub fn trees_of_ingest(
    store: &Store,
    roots: &[PathBuf],
    plan: &asl_core::IngestPlan,
    report: &asl_core::IngestReport,
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
        // Links and empty directories below the root: the general way,
        // which places them beside the files.
        let mut extras = super::TreeExtras::default();
        for l in &plan.links {
            if let Ok(rel) = l.path.strip_prefix(root) {
                extras.links.push(super::TreeLink {
                    path: rel.to_path_buf(),
                    target: l.target.clone(),
                });
            }
        }
        for d in &plan.empty_dirs {
            if let Ok(rel) = d.strip_prefix(root) {
                extras.empty_dirs.push(rel.to_path_buf());
            }
        }
        let r = root.as_os_str().as_bytes();
        let plain_root = plain(r.strip_prefix(b"/").unwrap_or(r));
        let below = || {
            plan.inputs.iter().zip(&report.files).filter_map(|(input, done)| {
                let rel = input.path.strip_prefix(root).ok()?;
                Some((rel, done.put.len, input.exec, done.put.id))
            })
        };
        let ordered = if !extras.is_empty() {
            None
        } else {
            match run_below(plan, r).filter(|_| plain_root) {
                Some(run) => store_run(store, plan, report, run, r.len() + 1)?,
                None => store_in_walk_order(store, below())?,
            }
        };
        // A walk lists a directory's files in the order its trees hold
        // them; anything else (never seen from a walk) takes the general way.
        let id = match ordered {
            Some((id, _)) => id,
            None => {
                let files: Vec<TreeFile> = below()
                    .map(|(rel, size, exec, id)| TreeFile {
                        path: rel.to_path_buf(),
                        size,
                        exec,
                        id,
                    })
                    .collect();
                super::store_tree_with(store, &files, &extras)?
            }
        };
        out.push((root.clone(), id));
    }
    Ok(out)
}

/// Whether `name` cannot be a tree entry's name as a path component gives
/// it: empty (a doubled `/`), `.` or `..`.
fn odd(name: &[u8]) -> bool {
    name.is_empty() || name == b"." || name == b".."
}

/// Whether `p` is one or more names joined by single `/`s, none of them `.`.
fn plain(p: &[u8]) -> bool {
    !p.is_empty() && p.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::store_tree;

    fn id(n: u64) -> ArtifactId {
        ArtifactId::of(&n.to_le_bytes())
    }

    /// A store and a directory holding `files` (each holding its own
    /// path), in a temporary directory.
    fn store_and_files(files: impl IntoIterator<Item = String>) -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = asl_core::StoreOptions::new()
            .create(true)
            .open(dir.path().join("s"))
            .unwrap();
        let top = dir.path().join("t");
        for f in files {
            let p = top.join(&f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        (dir, store, top)
    }

    #[test]
    fn trees_of_an_ingest_are_those_of_its_paths_under_any_root_spelling() {
        let files = ["a/x", "a/b/y", "a/b/c/z", "a/b.txt", "a/bc"];
        let (_dir, store, top) = store_and_files(files.map(String::from));
        let spell = |s: &str| PathBuf::from(format!("{}/{s}", top.display()));
        let want = {
            let plan = asl_core::IngestPlan::walk(&[spell("a")]).unwrap();
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
            let plan = asl_core::IngestPlan::walk(&[spell(walked)]).unwrap();
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
        // 10 000 files: directories above and below the parallel threshold,
        // files beside directories at every level, a name that sorts
        // between a directory and its files (`d1.txt` after `d1/`).
        let (_dir, store, top) = store_and_files((0..10_000).map(|i| match i % 4 {
            0 => format!("d{}/e{}/f{i}", i % 3, i % 5),
            1 => format!("d{}/g{i}", i % 3),
            2 => format!("d1.txt{i}"),
            _ => format!("d{}/e{}/h/{i}", i % 3, i % 2),
        }));
        let plan = asl_core::IngestPlan::walk(std::slice::from_ref(&top)).unwrap();
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
    fn walk_order_builds_the_same_trees_and_anything_else_is_left_to_the_sorting_way() {
        let dir = tempfile::tempdir().unwrap();
        let s = asl_core::StoreOptions::new().create(true).open(dir.path()).unwrap();
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
