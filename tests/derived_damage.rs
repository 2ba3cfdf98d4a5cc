//! Damage to derived data never aborts a command and never changes an
//! answer: every file of the query index (`derived/`) and the files cache
//! is flipped at several places, truncated and deleted, one at a time, and
//! each time `find` answers exactly as before, with exit 0, rebuilding the
//! index at most once; `reindex` then rebuilds without opening the damaged
//! index; an ingest over a damaged files cache prints what it printed.

use std::path::{Path, PathBuf};

mod common;
use common::{aslctl, aslctl_ok as ok, copy_dir, stderr_of as err, stdout_of as out};

/// Every regular file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// How one trial damages a file.
#[derive(Clone, Copy, Debug)]
enum Harm {
    /// One bit flipped at this fraction of the file.
    Flip(f64),
    /// Cut to this fraction of its length.
    Truncate(f64),
    Delete,
}

fn harm(p: &Path, h: Harm) {
    let mut b = std::fs::read(p).unwrap();
    match h {
        Harm::Flip(at) => {
            if b.is_empty() {
                b.push(1);
            } else {
                let i = ((b.len() as f64 * at) as usize).min(b.len() - 1);
                b[i] ^= 1 << (i % 8);
            }
            std::fs::write(p, b).unwrap();
        }
        Harm::Truncate(to) => {
            b.truncate((b.len() as f64 * to) as usize);
            std::fs::write(p, b).unwrap();
        }
        Harm::Delete => std::fs::remove_file(p).unwrap(),
    }
}

#[test]
fn damaged_derived_data_is_rebuilt_and_never_answers_wrongly() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for i in 0..24 {
        std::fs::write(data.join(format!("f{i:02}")), format!("artifact {i}\n").repeat(i + 1)).unwrap();
    }
    let ingested = ok(&pristine, &["ingest", data.to_str().unwrap()]);
    for (i, line) in ingested.lines().enumerate() {
        let id = line.split_whitespace().next().unwrap();
        let team = if i % 3 == 0 { "a" } else { "b" };
        ok(&pristine, &["label", id, &format!("team={team}"), &format!("n={i}")]);
    }
    let queries: [&[&str]; 3] = [
        &["find", "--label", "team=a"],
        &["find", "--label", "team=b", "--label", "n=4"],
        &["find", "--type", "asl/annotation", "--limit", "5"],
    ];
    let answers: Vec<String> = queries.iter().map(|q| ok(&pristine, q)).collect();
    // Up to date and sealed: asked again, nothing is rebuilt.
    for q in queries {
        let o = aslctl(&pristine, q);
        assert!(o.status.success() && err(&o).is_empty(), "{}", err(&o));
    }
    assert_eq!(answers[0].lines().count(), 8);
    assert_eq!(answers[1].lines().count(), 1);

    let mut targets: Vec<PathBuf> = files(&pristine.join("derived"));
    targets.push(pristine.join("files-cache"));
    assert!(targets.len() >= 10, "{targets:?}");
    let harms = [
        Harm::Flip(0.0),
        Harm::Flip(0.6),
        Harm::Flip(0.999),
        Harm::Truncate(0.5),
        Harm::Delete,
    ];
    let mut trials = 0;
    for target in &targets {
        let rel = target.strip_prefix(&pristine).unwrap();
        for h in harms {
            let store = tmp.path().join(format!("trial-{trials}"));
            copy_dir(&pristine, &store);
            harm(&store.join(rel), h);
            trials += 1;
            let what = format!("{} {h:?}", rel.display());
            if rel.starts_with("files-cache") {
                // The files cache: ignored when damaged, the files read again.
                let o = aslctl(&store, &["ingest", data.to_str().unwrap()]);
                assert!(o.status.success(), "{what}: {}", err(&o));
                assert_eq!(out(&o), ingested, "{what}");
            }
            let mut rebuilds = 0;
            for round in 0..2 {
                for (q, want) in queries.iter().zip(&answers) {
                    let o = aslctl(&store, q);
                    assert_eq!(o.status.code(), Some(0), "{what}, round {round}, {q:?}: {}", err(&o));
                    assert_eq!(&out(&o), want, "{what}, round {round}, {q:?}: {}", err(&o));
                    rebuilds += err(&o).matches("query index rebuilt").count();
                }
            }
            assert!(rebuilds <= 1, "{what}: rebuilt {rebuilds} times");
            // reindex over the same damage, fresh.
            std::fs::remove_dir_all(&store).unwrap();
            copy_dir(&pristine, &store);
            harm(&store.join(rel), h);
            let o = aslctl(&store, &["reindex"]);
            assert!(o.status.success(), "{what}: reindex: {}", err(&o));
            assert_eq!(ok(&store, queries[0]), answers[0], "{what}: after reindex");
            std::fs::remove_dir_all(&store).unwrap();
        }
    }
    assert!(trials >= 50, "{trials} trials");
}
