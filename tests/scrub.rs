//! Scrubs in budget: repeated budgeted runs read every segment once per
//! rotation, least recently verified first, and report damage exactly as a
//! full scrub does; `--since-last` reads only what no scrub has read; a
//! damaged scrub record only restarts the rotation.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use asl::{ScrubBudget, ScrubOptions, StoreOptions, VerifyReport};

mod common;
use common::{aslctl, noise, stderr_of as err, stdout_of as out};

/// Problems as comparable text: file, artifact, detail.
fn problems(r: &VerifyReport) -> BTreeSet<String> {
    r.problems
        .iter()
        .map(|p| format!("{} {:?} {}", p.file.display(), p.artifact, p.detail))
        .collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn budgeted_scrubs_cover_the_store_in_rotation_and_report_damage_as_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let opts = || StoreOptions::new().segment_target(64 << 10).compression(None);
    let s = opts().create(true).open(&path).unwrap();
    // A commit after each: the open segment is sealed at its target on commit.
    for i in 0..12 {
        s.put(&noise(i, 40_000)).unwrap();
        s.commit().unwrap();
    }
    s.maintenance().seal().unwrap();
    drop(s);
    let segs = segment_files(&path);
    assert!(segs.len() >= 6, "{segs:?}");
    // One flipped byte in the first block of the fourth segment: an
    // artifact's bytes, so both its block and its read-back fail.
    let mut b = fs::read(&segs[3]).unwrap();
    let at = 1000;
    b[at] ^= 0x40;
    fs::write(&segs[3], b).unwrap();

    let s = opts().read_only(true).open(&path).unwrap();
    let m = s.maintenance();
    let full = m.verify().unwrap();
    assert!(!full.partial && !full.is_clean(), "{full:?}");
    assert!(full.problems.iter().any(|p| p.artifact.is_some()), "{full:?}");
    let total = full.segment_bytes;
    assert_eq!(full.scrub.unverified_bytes, 0, "a full scrub counts as a rotation");
    // Start the rotation from nothing.
    fs::remove_file(path.join("SCRUB")).unwrap();
    assert_eq!(m.scrub_status().never_verified_segments, segs.len() as u64);

    let budget = ScrubOptions {
        budget: Some(ScrubBudget::Bytes(total / 4)),
        since_last: false,
    };
    let (mut found, mut read, mut runs) = (BTreeSet::new(), 0, 0);
    while m.scrub_status().never_verified_segments > 0 {
        let r = m.scrub(&budget).unwrap();
        assert!(r.partial && r.notes.is_empty(), "{r:?}");
        assert!(r.segment_bytes <= total / 4 || r.segments == 1, "{r:?}");
        read += r.segment_bytes;
        found.extend(problems(&r));
        runs += 1;
        assert!(runs <= segs.len(), "the rotation does not advance");
    }
    assert_eq!(read, total, "each segment read once per rotation");
    assert_eq!(found, problems(&full), "the same findings as a full scrub");
    let st = m.scrub_status();
    assert_eq!((st.unverified_bytes, st.segments), (0, segs.len() as u64));
    assert!(st.oldest_verified_at.is_some());
    // The next run starts the next rotation with the least recently verified.
    let first_of_next = m.scrub(&budget).unwrap();
    assert!(first_of_next.segments >= 1);
    drop(s);

    // New data: `since_last` reads only its segment.
    let s = opts().open(&path).unwrap();
    s.put(&noise(99, 10_000)).unwrap();
    s.commit().unwrap();
    let since = ScrubOptions {
        budget: None,
        since_last: true,
    };
    let r = s.maintenance().scrub(&since).unwrap();
    assert_eq!(r.segments, 1, "{r:?}");
    assert!(r.segment_bytes < total / 4, "{r:?}");
    assert_eq!(s.maintenance().scrub(&since).unwrap().segments, 0, "nothing new since");
    drop(s);

    // A damaged record is a note, never a failure; the rotation restarts.
    let mut rec = fs::read(path.join("SCRUB")).unwrap();
    rec[3] ^= 1;
    fs::write(path.join("SCRUB"), rec).unwrap();
    let s = opts().read_only(true).open(&path).unwrap();
    let r = s.maintenance().scrub(&budget).unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("SCRUB") && n.contains("starts again")),
        "{r:?}"
    );
    assert!(s.maintenance().scrub_status().never_verified_segments > 0);
}

#[test]
fn verify_takes_a_budget_a_sample_or_since_last_and_stat_shows_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = StoreOptions::new()
        .segment_target(64 << 10)
        .compression(None)
        .create(true)
        .open(&store)
        .unwrap();
    for i in 0..8 {
        s.put(&noise(i, 40_000)).unwrap();
        s.commit().unwrap();
    }
    drop(s);

    let o = aslctl(&store, &["--json", "verify", "--budget", "100K"]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["partial"], true);
    assert!(v["segment_bytes"].as_u64().unwrap() <= 100 << 10, "{v}");
    let o = aslctl(&store, &["verify", "--sample", "30%"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("segments (") && err(&o).contains("scrub: oldest verification"),
        "{}",
        err(&o)
    );
    let st = out(&aslctl(&store, &["stat"]));
    let line = st.lines().find(|l| l.starts_with("scrub")).unwrap();
    assert!(
        line.contains("oldest verification") && line.contains("never read"),
        "{st}"
    );
    let o = aslctl(&store, &["verify", "--since-last"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = aslctl(&store, &["verify"]);
    assert!(o.status.success(), "{}", err(&o));
    let st = out(&aslctl(&store, &["stat"]));
    assert!(st.contains("0 B unverified (0 of"), "{st}");

    for (bad, says) in [
        (&["verify", "--sample", "0%"][..], "0%"),
        (&["verify", "--sample", "lots"], "lots"),
        (&["verify", "--budget", "10X"], "10X"),
        (&["verify", "--budget", "1M", "--sample", "1%"], "cannot be used with"),
    ] {
        let o = aslctl(&store, bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", err(&o));
        assert!(err(&o).lines().next().unwrap().contains(says), "{bad:?}: {}", err(&o));
    }
}
