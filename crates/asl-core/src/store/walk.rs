//! The first step of an ingest: walking its inputs. Every input is checked
//! before anything is written (a missing path, a socket, a directory that
//! cannot be listed stops it with the store untouched); symbolic links and
//! empty directories met inside directories are listed for the trees (a
//! link is never followed), special files are skipped and counted, and the
//! store's own directory is left out wherever the walk meets it. Directories are walked
//! on all cores, results in name order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::files_cache::{now_ns, FileStamp};

/// One input file found by [`IngestPlan::walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestInput {
    /// The path as given or as found under a given directory.
    pub path: PathBuf,
    /// Its size when walked.
    pub size: u64,
    /// Its metadata when walked (what the files cache compares).
    pub stamp: FileStamp,
    /// Whether it was executable (any execute bit) when walked: the one mode
    /// bit a tree records.
    pub exec: bool,
}

/// A symbolic link met inside a walked directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestLink {
    /// The link's path, as found under a given directory.
    pub path: PathBuf,
    /// Its target, as the link holds it (never followed).
    pub target: Vec<u8>,
}

/// The inputs of an ingest, checked and in order (directories walked in
/// name order).
///
/// ```
/// use asl_core::{IngestEvent, IngestOptions, IngestPlan};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path().join("store"))?;
/// let src = dir.path().join("src");
/// std::fs::create_dir_all(src.join("sub")).unwrap();
/// std::fs::write(src.join("a.txt"), b"alpha").unwrap();
/// std::fs::write(src.join("sub/b.txt"), b"beta").unwrap();
/// let plan = IngestPlan::walk(&[src])?;     // every input checked first
/// assert_eq!(plan.inputs.len(), 2);
/// let mut durable = 0;
/// let report = store.ingest_plan(&plan, &IngestOptions::default(), &mut |e| {
///     if let IngestEvent::Committed(done) = e {
///         durable += done.len();              // safe to acknowledge now
///     }
/// })?;
/// assert_eq!((durable, report.new_files), (2, 2));
/// assert_eq!(store.get(&report.files[0].put.id)?, b"alpha");
/// # Ok::<(), asl_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct IngestPlan {
    exclude: Option<PathBuf>,
    /// The excluded directory's (device, inode): a walk that reaches it
    /// from outside meets it as a directory entry, which this tells without
    /// resolving the entry's path.
    exclude_id: Option<(u64, u64)>,
    /// When the walk started (ns since the epoch): no stamp it took is older.
    pub(super) walked_ns: i64,
    /// The files to store.
    pub inputs: Vec<IngestInput>,
    /// Symbolic links met inside directories, in walk order: not stored as
    /// files, but as links in the directories' trees.
    pub links: Vec<IngestLink>,
    /// Directories met inside walked directories that hold nothing a tree
    /// keeps (no file, link or directory), in walk order.
    pub empty_dirs: Vec<PathBuf>,
    /// Special files (sockets, FIFOs, devices) met inside directories and
    /// left out.
    pub skipped: u64,
    /// Inputs left out because they are the store's own directory or inside it.
    pub excluded: Vec<PathBuf>,
}

fn is_exec(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o111 != 0
}

impl IngestPlan {
    /// Walks `paths`: files are taken as they are, directories recursively.
    /// Fails on the first path that is missing, a directory that cannot be
    /// listed, or a path that is neither a regular file nor a directory.
    /// Files are only `stat`ed here: [`Store::ingest_plan`](crate::Store::ingest_plan) refuses an
    /// unreadable one before it stores anything.
    pub fn walk(paths: &[PathBuf]) -> Result<Self> {
        Self::walk_excluding(paths, None)
    }

    /// [`IngestPlan::walk`], leaving out the directory `store` (a store never
    /// ingests its own files) and anything inside it.
    pub fn walk_excluding(paths: &[PathBuf], store: Option<&Path>) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let mut plan = Self {
            exclude: store.and_then(|s| fs::canonicalize(s).ok()),
            exclude_id: store.and_then(|s| fs::metadata(s).ok()).map(|m| (m.dev(), m.ino())),
            walked_ns: now_ns(),
            ..Self::default()
        };
        for p in paths {
            let md = fs::metadata(p).map_err(|e| refuse(p, e))?;
            if plan.is_excluded(p) {
                plan.excluded.push(p.clone());
            } else if md.is_dir() {
                plan.walk_dir(p)?;
            } else if md.is_file() {
                plan.inputs.push(IngestInput {
                    path: p.clone(),
                    size: md.len(),
                    stamp: FileStamp::of(&md),
                    exec: is_exec(&md),
                });
            } else {
                let why = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file or directory");
                return Err(refuse(p, why));
            }
        }
        Ok(plan)
    }

    fn walk_dir(&mut self, dir: &Path) -> Result<()> {
        let found = self.walk_tree(dir)?;
        // Room for every file at once: growing the list by doubling copied
        // it again and again (a few MiB for 56 000 files).
        fn files(found: &[Found]) -> usize {
            found
                .iter()
                .map(|f| match f {
                    Found::File(_) => 1,
                    Found::Dir(_, sub) => files(sub),
                    _ => 0,
                })
                .sum()
        }
        self.inputs.reserve(files(&found));
        self.take(found);
        Ok(())
    }

    /// Adds what a walk found, in its order.
    fn take(&mut self, found: Vec<Found>) {
        for f in found {
            match f {
                Found::File(input) => self.inputs.push(input),
                Found::Link(link) => self.links.push(link),
                Found::Dir(path, sub) => {
                    let holds = sub
                        .iter()
                        .any(|f| matches!(f, Found::File(_) | Found::Link(_) | Found::Dir(..)));
                    if !holds {
                        self.empty_dirs.push(path);
                    }
                    self.take(sub)
                }
                Found::Excluded(p) => self.excluded.push(p),
                Found::Skipped => self.skipped += 1,
            }
        }
    }

    /// Walks one directory, its entries on all cores (a re-ingest that the
    /// files cache answers is mostly `stat` calls), results in name order.
    /// Subdirectories stay nested until [`IngestPlan::take`] lays them out:
    /// collecting each into its parent's list would move every file once per
    /// level above it.
    fn walk_tree(&self, dir: &Path) -> Result<Vec<Found>> {
        use rayon::prelude::*;
        // Sorted by path, made once per entry (every path here is this
        // directory's joined with a name, so the order is the names'): a
        // sort by `DirEntry::file_name` allocates names at every comparison,
        // and taking each name once first was still an allocation per file.
        let mut entries: Vec<(PathBuf, fs::DirEntry)> = fs::read_dir(dir)
            .map_err(|e| refuse(dir, e))?
            .map(|e| e.map(|e| (e.path(), e)))
            .collect::<io::Result<_>>()
            .map_err(|e| refuse(dir, e))?;
        entries.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
        let found: Vec<Result<Found>> = entries
            .into_par_iter()
            .map(|(p, e)| {
                let ft = e.file_type().map_err(|x| refuse(&p, x))?;
                Ok(if ft.is_dir() && self.is_store_dir(&e) {
                    Found::Excluded(p)
                } else if ft.is_dir() {
                    let sub = self.walk_tree(&p)?;
                    Found::Dir(p, sub)
                } else if ft.is_symlink() {
                    use std::os::unix::ffi::OsStrExt;
                    let target = fs::read_link(&p).map_err(|x| refuse(&p, x))?;
                    Found::Link(IngestLink {
                        target: target.as_os_str().as_bytes().to_vec(),
                        path: p,
                    })
                } else if ft.is_file() {
                    let md = e.metadata().map_err(|x| refuse(&p, x))?;
                    Found::File(IngestInput {
                        path: p,
                        size: md.len(),
                        stamp: FileStamp::of(&md),
                        exec: is_exec(&md),
                    })
                } else {
                    // Special files inside a directory are not artifacts.
                    Found::Skipped
                })
            })
            .collect();
        // The first failure in name order, as a walk in order would meet it.
        found.into_iter().collect()
    }

    /// Whether the directory entry `e` is the excluded store directory (a
    /// walk that starts outside it can only get inside through it).
    fn is_store_dir(&self, e: &fs::DirEntry) -> bool {
        use std::os::unix::fs::{DirEntryExt, MetadataExt};
        let Some(id) = self.exclude_id else { return false };
        // The entry's inode and name come with the directory listing; only
        // a match is worth a `stat` (one per directory was a tenth of a
        // re-ingest's system calls). Either may match: a bind mount shows the
        // store under another name, and overlayfs may list a directory with
        // an inode number that is not its `stat`'s.
        let named = self.exclude.as_deref().and_then(Path::file_name) == Some(&*e.file_name());
        (e.ino() == id.1 || named) && e.metadata().is_ok_and(|m| (m.dev(), m.ino()) == id)
    }

    /// Whether `p` is the excluded store directory or lies inside it.
    fn is_excluded(&self, p: &Path) -> bool {
        let Some(ex) = &self.exclude else { return false };
        fs::canonicalize(p).is_ok_and(|c| c.starts_with(ex))
    }

    /// Total bytes of the inputs, as walked.
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().map(|i| i.size).sum()
    }
}

/// One entry of a directory, as a walk found it.
enum Found {
    File(IngestInput),
    /// A symbolic link, not followed.
    Link(IngestLink),
    /// A subdirectory and its entries, in name order.
    Dir(PathBuf, Vec<Found>),
    /// The store's own directory.
    Excluded(PathBuf),
    /// A special file.
    Skipped,
}

pub(super) fn refuse(p: &Path, source: io::Error) -> Error {
    Error::Io {
        context: format!("cannot ingest {}", p.display()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    #[test]
    fn a_walk_leaves_out_the_store_wherever_it_meets_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        for f in ["a/x", "b/store/y", "b/z"] {
            fs::create_dir_all(top.join(f).parent().unwrap()).unwrap();
            fs::write(top.join(f), f).unwrap();
        }
        let store = top.join("a/store");
        drop(StoreOptions::new().create(true).open(&store).unwrap());
        // The store spelt another way than the walk meets it; a directory
        // elsewhere with the store's name is an ordinary one.
        let spelt = top.join("b/../a/./store");
        let plan = IngestPlan::walk_excluding(std::slice::from_ref(&top), Some(&spelt)).unwrap();
        assert_eq!(plan.excluded, vec![store.clone()]);
        let got: Vec<&Path> = plan.inputs.iter().map(|i| i.path.as_path()).collect();
        assert_eq!(got, [top.join("a/x"), top.join("b/store/y"), top.join("b/z")]);
        // Given as an input itself, or inside it, it is left out as well.
        let plan = IngestPlan::walk_excluding(&[store.clone(), store.join("STORE")], Some(&store)).unwrap();
        assert!(plan.inputs.is_empty());
        assert_eq!(plan.excluded.len(), 2);
    }
}
