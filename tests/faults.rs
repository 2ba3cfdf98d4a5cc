//! Fault injection through the simulated backend: one workload (puts small
//! and large, removals, commits, snapshots, seals, checkpoints, GC, reopen)
//! run once per file operation it performs, with that one operation failing
//! with EIO, then with ENOSPC, and once per read it performs with that read
//! failing with EIO; `repair` is run the same way over a finished store.
//! After each: the error stops the workload and is not called corruption; the
//! store reopens; every acknowledged artifact reads back; nothing of the step
//! whose commit failed is there (a failed fsync is final for its batch); and a
//! power cut right after leaves a store that opens with everything
//! acknowledged.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use asl::io::{Backend, CrashMode, SimBackend, EIO, ENOSPC};
use asl::{ArtifactId, GcOptions, Store, StoreOptions};
use common::crash_data;

const ROOT: &str = "/store";

fn opts(io: &SimBackend) -> StoreOptions {
    common::crash_opts()
        .segment_target(64 << 10)
        .memtable_limit(30)
        .backend(Arc::new(io.clone()))
}

#[derive(Default)]
struct Outcome {
    acked: BTreeMap<ArtifactId, u64>,
    /// Put in the step that failed, never acknowledged.
    unacked: Vec<(ArtifactId, u64)>,
    /// Removals acknowledged.
    removed: Vec<ArtifactId>,
    /// A removal in flight when it failed (may or may not have happened).
    removing: Option<ArtifactId>,
}

/// The workload, as a careful caller writes it: on an error it abandons the
/// store (dropping it would commit what the failed step had buffered).
fn run(io: &SimBackend, out: &mut Outcome) -> asl::Result<()> {
    let mut s = Some(opts(io).open(ROOT)?);
    let r = steps(io, &mut s, out);
    match (r, s.take()) {
        (Ok(()), Some(st)) => st.close(),
        (Ok(()), None) => Ok(()),
        (Err(e), Some(st)) => {
            st.abandon();
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

fn steps(io: &SimBackend, slot: &mut Option<Store>, out: &mut Outcome) -> asl::Result<()> {
    let mut seed = 1u64;
    for step in 0..16u64 {
        let s = slot.as_ref().expect("open");
        let mut step_items = Vec::new();
        for _ in 0..1 + step % 4 {
            step_items.push((ArtifactId::of(&crash_data(seed)), seed));
            seed += 1;
        }
        if step % 3 == 1 {
            // A multiple of ten: a multi-chunk artifact (see `crash_data`),
            // from seeds no small put uses, so nothing is put twice.
            let big = 1_000_000 + seed * 10;
            step_items.push((ArtifactId::of(&crash_data(big)), big));
        }
        out.unacked = step_items.clone();
        for (_, sd) in &step_items {
            let bytes = crash_data(*sd);
            if bytes.len() > 8 << 10 {
                s.put_reader(std::io::Cursor::new(bytes))?;
            } else {
                s.put(&bytes)?;
            }
        }
        if step % 4 == 3 {
            let id = *out.acked.keys().next().unwrap();
            out.removing = Some(id);
            s.remove(&id)?;
        }
        s.commit()?;
        out.acked.extend(std::mem::take(&mut out.unacked));
        if let Some(id) = out.removing.take() {
            out.acked.remove(&id);
            out.removed.push(id);
        }
        // Reads along the way, so their failures are injected too: the newest
        // artifacts (open segment) and the oldest (sealed, maybe moved by GC).
        for (id, sd) in out.acked.iter().rev().take(2).chain(out.acked.iter().take(1)) {
            assert_eq!(s.get(id)?, crash_data(*sd));
        }
        match step % 8 {
            2 => {
                s.snapshots().create(&format!("s{step}"))?;
            }
            4 => {
                s.maintenance().seal()?;
            }
            5 => {
                s.maintenance().gc(&GcOptions {
                    threshold: 1.0,
                    dry_run: false,
                })?;
            }
            6 => s.maintenance().checkpoint()?,
            7 => {
                if let Some(old) = slot.take() {
                    old.close()?;
                }
                *slot = Some(opts(io).open(ROOT)?);
            }
            _ => {}
        }
    }
    Ok(())
}

fn check(io: &SimBackend, out: &Outcome, k: u64, what: &str) {
    if !io.is_file(&Path::new(ROOT).join("STORE")) {
        // The fault hit the store's creation: nothing can have been acknowledged.
        assert!(
            out.acked.is_empty(),
            "EIO at op {k}, {what}: store gone after acknowledgements"
        );
        return;
    }
    let s = opts(io)
        .create(false)
        .open(ROOT)
        .unwrap_or_else(|e| panic!("EIO at op {k}, {what}: store does not open: {e}"));
    for (id, sd) in &out.acked {
        if out.removing == Some(*id) && !s.contains(id).unwrap() {
            continue;
        }
        let got = s
            .get(id)
            .unwrap_or_else(|e| panic!("EIO at op {k}, {what}: acknowledged {id} lost: {e}"));
        assert_eq!(got, crash_data(*sd), "EIO at op {k}, {what}");
    }
    for id in &out.removed {
        assert!(
            !s.contains(id).unwrap(),
            "EIO at op {k}, {what}: removal of {id} undone"
        );
    }
    for (id, _) in &out.unacked {
        assert!(
            !s.contains(id).unwrap(),
            "EIO at op {k}, {what}: {id} of the failed step is visible"
        );
    }
}

/// Runs the workload with one fault set up by `inject`; returns whether it
/// failed (after checking what it left).
fn faulted(inject: impl FnOnce(&SimBackend), what: &str) -> bool {
    let io = SimBackend::new();
    inject(&io);
    let mut out = Outcome::default();
    match run(&io, &mut out) {
        // An operation whose failure the store may shrug off (a best-effort
        // removal of an old file).
        Ok(()) => false,
        Err(e) => {
            assert!(!e.is_corruption(), "{what}: an I/O failure reported as corruption: {e}");
            check(&io, &out, 0, what);
            check(
                &io.crash_image(CrashMode::DropUnsynced),
                &out,
                0,
                &format!("{what}, then a power cut"),
            );
            true
        }
    }
}

#[test]
fn eio_and_enospc_at_every_operation_lose_nothing_acknowledged_and_keep_no_failed_batch() {
    let full = SimBackend::new();
    let mut all = Outcome::default();
    run(&full, &mut all).unwrap();
    let total = full.ops();
    assert!(all.acked.len() > 30);
    for (errno, name) in [(EIO, "EIO"), (ENOSPC, "ENOSPC")] {
        let mut failed_runs = 0;
        for k in 0..total {
            if faulted(|io| io.fail_at_with(k, errno), &format!("{name} at op {k}")) {
                failed_runs += 1;
            }
        }
        assert!(failed_runs as u64 > total / 2, "most injected faults went unnoticed");
        eprintln!("{total} operations, {name} injected at each; {failed_runs} stopped the workload with an error");
    }
}

#[test]
fn eio_on_every_read_is_an_io_error_and_loses_nothing() {
    let full = SimBackend::new();
    run(&full, &mut Outcome::default()).unwrap();
    let total = full.reads();
    let mut failed_runs = 0;
    for k in 0..total {
        if faulted(|io| io.fail_read_at(k, EIO), &format!("EIO at read {k}")) {
            failed_runs += 1;
        }
    }
    assert!(failed_runs > 0);
    eprintln!("{total} reads, EIO injected at each; {failed_runs} stopped the workload with an error");
}

/// Repair of a finished store, with each of its writes (EIO, ENOSPC) and
/// reads (EIO) failing in turn: a clear error, never "corruption"; then a
/// repair without faults brings back everything acknowledged.
#[test]
fn faults_during_repair_lose_nothing() {
    let base = SimBackend::new();
    let mut out = Outcome::default();
    run(&base, &mut out).unwrap();
    let image = || base.crash_image(CrashMode::DropUnsynced);
    let probe = image();
    let (ops0, reads0) = (probe.ops(), probe.reads());
    opts(&probe).repair(ROOT).unwrap();
    let (ops, reads) = (probe.ops() - ops0, probe.reads() - reads0);
    let mut failed = 0;
    let cases = (0..ops)
        .flat_map(|k| [(k, EIO, false), (k, ENOSPC, false)])
        .chain((0..reads).map(|k| (k, EIO, true)));
    for (k, errno, read) in cases {
        let io = image();
        if read {
            io.fail_read_at(io.reads() + k, errno);
        } else {
            io.fail_at_with(io.ops() + k, errno);
        }
        let what = format!("errno {errno} at repair's {} {k}", if read { "read" } else { "op" });
        if let Err(e) = opts(&io).repair(ROOT) {
            failed += 1;
            assert!(!e.is_corruption(), "{what}: reported as corruption: {e}");
            opts(&io)
                .repair(ROOT)
                .unwrap_or_else(|e| panic!("{what}: a second repair fails: {e}"));
            check(&io, &out, 0, &what);
        }
    }
    assert!(failed > 0);
    eprintln!("repair: {ops} operations and {reads} reads, a fault injected at each; {failed} failed cleanly");
}

/// A failed step inside a commit (each of its file operations failing in
/// turn) leaves the writer refusing every later write and commit, which
/// could otherwise make durable half of what the failed step did; reopening
/// brings back everything committed before it.
#[test]
fn a_failed_commit_poisons_the_writer_until_reopened() {
    let before = crash_data(1);
    let during = crash_data(2);
    let probe = SimBackend::new();
    let ops_of_commit = {
        let s = opts(&probe).open(ROOT).unwrap();
        s.put(&before).unwrap();
        s.commit().unwrap();
        s.put(&during).unwrap();
        let n = probe.ops();
        s.commit().unwrap();
        probe.ops() - n
    };
    assert!(ops_of_commit >= 2, "a commit writes a block and the log");
    let mut failed = 0;
    for k in 0..ops_of_commit {
        let io = SimBackend::new();
        let s = opts(&io).open(ROOT).unwrap();
        s.put(&before).unwrap();
        s.commit().unwrap();
        s.put(&during).unwrap();
        io.fail_at(io.ops() + k);
        let Err(e) = s.commit() else {
            continue;
        };
        failed += 1;
        assert!(
            !matches!(e, asl::Error::Poisoned),
            "op {k}: the failure itself is reported: {e}"
        );
        for (what, r) in [("put", s.put(&crash_data(3)).map(|_| ())), ("commit", s.commit())] {
            assert!(
                matches!(r, Err(asl::Error::Poisoned)),
                "op {k}: a {what} after a failed commit is refused as poisoned, got {r:?}"
            );
        }
        s.abandon();
        let s = opts(&io).open(ROOT).unwrap();
        assert_eq!(s.get(&ArtifactId::of(&before)).unwrap(), before, "op {k}");
    }
    assert_eq!(failed, ops_of_commit, "every operation of a commit matters");
}
