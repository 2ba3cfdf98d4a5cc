//! Power cuts at every operation, through the simulated-crash backend.
//!
//! One deterministic workload (puts small and multi-chunk, removals, commits,
//! snapshots, pins, GC, seals, checkpoints, reopening) runs on a
//! [`SimBackend`]. A first run counts its file-system operations; then it is
//! run again for each crash point `k`, with the power cut after operation `k`
//! (every later operation fails), and the disk image the cut leaves — synced
//! bytes only, or with a torn prefix of the unsynced writes; names only where
//! their directory was synced — is opened. Everything a commit acknowledged
//! before the cut must be there, byte for byte; removals acknowledged must
//! stay removed; snapshots acknowledged must read back; the store must verify
//! clean and take new writes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use asl::io::{Backend, CrashMode, SimBackend};
use asl::{ArtifactId, GcOptions, Store, StoreOptions};
use common::crash_data;

const ROOT: &str = "/store";

fn opts(io: &SimBackend) -> StoreOptions {
    common::crash_opts()
        .segment_target(96 << 10)
        .memtable_limit(40)
        .backend(Arc::new(io.clone()))
}

/// What the workload had acknowledged when it stopped.
#[derive(Default, Clone)]
struct Acked {
    live: BTreeMap<ArtifactId, u64>,
    removed: Vec<ArtifactId>,
    snapshots: BTreeMap<String, Vec<ArtifactId>>,
    pins: BTreeMap<String, ArtifactId>,
    /// Durable state changes acknowledged (commits, snapshots, ...).
    acks: u32,
    /// Removals issued but not yet acknowledged: a cut may or may not keep
    /// them (the batch may have reached the disk before its fsync returned).
    removing: Vec<ArtifactId>,
    /// A snapshot being deleted when the cut came, likewise.
    deleting: Option<String>,
}

/// The workload. Returns at the first error (the cut), with what was acked.
fn workload(io: &SimBackend) -> Acked {
    let mut acked = Acked::default();
    let _ = run(io, &mut acked);
    acked
}

fn run(io: &SimBackend, acked: &mut Acked) -> asl::Result<()> {
    let mut s = opts(io).open(ROOT)?;
    let mut seed = 1u64;
    let mut pending: Vec<(ArtifactId, u64)> = Vec::new();
    for step in 0..36u64 {
        let batch: Vec<Vec<u8>> = (0..1 + step % 5).map(|i| crash_data(seed + i)).collect();
        for (i, p) in s.put_batch(&batch)?.into_iter().enumerate() {
            pending.push((p, seed + i as u64));
        }
        seed += batch.len() as u64;
        if step % 3 == 0 {
            // Multi-chunk large artifacts, streamed and from memory.
            let big = crash_data(seed * 10);
            pending.push((s.put_reader(std::io::Cursor::new(&big))?, seed * 10));
            seed += 1;
        }
        if step % 4 == 3 {
            if let Some((&id, _)) = acked.live.iter().nth(step as usize % acked.live.len().max(1)) {
                acked.removing.push(id);
                s.remove(&id)?;
            }
        }
        s.commit()?;
        acked.acks += 1;
        for (id, sd) in pending.drain(..) {
            // A seed put again (batch seeds and `seed * 10` meet) revives
            // an artifact removed before: that removal no longer holds.
            acked.removed.retain(|r| *r != id);
            acked.live.insert(id, sd);
        }
        for id in std::mem::take(&mut acked.removing) {
            acked.live.remove(&id);
            acked.removed.push(id);
        }
        match step % 12 {
            2 => {
                let name = format!("snap-{step}");
                s.snapshots().create(&name)?;
                acked.snapshots.insert(name, acked.live.keys().copied().collect());
                acked.acks += 1;
            }
            5 => {
                if let Some((&id, _)) = acked.live.iter().next() {
                    s.pins().add(&format!("pin-{step}"), &id)?;
                    acked.pins.insert(format!("pin-{step}"), id);
                    acked.acks += 1;
                }
            }
            7 => {
                s.maintenance().seal()?;
                acked.acks += 1;
            }
            8 => {
                if let Some(name) = acked.snapshots.keys().next().cloned() {
                    acked.deleting = Some(name.clone());
                    s.snapshots().delete(&name)?;
                    acked.snapshots.remove(&name);
                    acked.deleting = None;
                    acked.acks += 1;
                }
                s.maintenance().gc(&GcOptions {
                    threshold: 0.9,
                    dry_run: false,
                })?;
                acked.acks += 1;
            }
            10 => {
                s.maintenance().checkpoint()?;
                acked.acks += 1;
            }
            11 => {
                s.close()?;
                s = opts(io).open(ROOT)?;
            }
            _ => {}
        }
    }
    s.close()
}

/// Checks a store recovered from a crash image against what was acked.
fn check(s: &Store, acked: &Acked, k: u64) {
    for (id, sd) in &acked.live {
        if acked.removing.contains(id) && !s.contains(id).unwrap() {
            continue;
        }
        let got = s
            .get(id)
            .unwrap_or_else(|e| panic!("cut at op {k}: acknowledged {id} (seed {sd}) lost: {e}"));
        assert_eq!(got, crash_data(*sd), "cut at op {k}: {id} differs");
    }
    for id in &acked.removed {
        assert!(!s.contains(id).unwrap(), "cut at op {k}: removal of {id} undone");
    }
    for (name, ids) in &acked.snapshots {
        if acked.deleting.as_ref() == Some(name) && s.at(name).is_err() {
            continue;
        }
        let view = s
            .at(name)
            .unwrap_or_else(|e| panic!("cut at op {k}: snapshot {name} lost: {e}"));
        for id in ids {
            let got = view
                .get(id)
                .unwrap_or_else(|e| panic!("cut at op {k}: {id} of snapshot {name} lost: {e}"));
            assert_eq!(ArtifactId::of(&got), *id);
        }
    }
    let pins: BTreeMap<String, ArtifactId> = s.pins().list().into_iter().collect();
    for (name, id) in &acked.pins {
        assert_eq!(pins.get(name), Some(id), "cut at op {k}: pin {name} lost");
    }
}

#[test]
fn power_cut_at_every_operation_keeps_every_acknowledged_write() {
    let full = SimBackend::new();
    if std::env::var_os("ASL_POWERCUT_TRACE").is_some() {
        full.start_trace();
    }
    let all = workload(&full);
    for (i, line) in full.trace().iter().enumerate() {
        eprintln!("op {}: {line}", i + 1);
    }
    let total = full.ops();
    assert!(all.acks > 40 && all.live.len() > 50, "the workload did too little");
    // Every crash point when the run is short; otherwise a stride through all
    // of them plus the neighbourhood of the start.
    let limit: u64 = std::env::var("ASL_POWERCUT_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let stride = total.div_ceil(limit).max(1);
    let mut points: Vec<u64> = (0..total).step_by(stride as usize).collect();
    points.extend(0..40.min(total));
    points.sort_unstable();
    points.dedup();
    let (mut lost_bytes, mut torn) = (0u64, 0u32);
    for (n, &k) in points.iter().enumerate() {
        let io = SimBackend::new();
        io.cut_after(Some(k));
        let acked = workload(&io);
        lost_bytes += io.unsynced_bytes();
        let mode = if n % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            torn += 1;
            CrashMode::Torn { seed: k }
        };
        let image = io.crash_image(mode);
        if !image.is_file(&Path::new(ROOT).join("STORE")) {
            // Cut before creation finished: nothing was acknowledged, and
            // `create` finishes the layout.
            assert_eq!(acked.acks, 0, "cut at op {k}: store lost after acks");
            continue;
        }
        let s = opts(&image)
            .create(false)
            .open(ROOT)
            .unwrap_or_else(|e| panic!("cut at op {k} ({mode:?}): store does not open: {e}"));
        check(&s, &acked, k);
        if n % 10 == 0 {
            let rep = s.maintenance().verify().unwrap();
            assert!(rep.is_clean(), "cut at op {k}: {:?}", rep.problems);
        }
        // The recovered store takes new writes and keeps them.
        let id = s.put(b"after the power came back").unwrap();
        s.close().unwrap();
        let s = opts(&image).open(ROOT).unwrap();
        assert_eq!(s.get(&id).unwrap(), b"after the power came back");
        check(&s, &acked, k);
    }
    assert!(lost_bytes > 0, "no crash point left unsynced bytes to lose");
    eprintln!(
        "{} crash points of {total} operations ({torn} with torn tails), {} artifacts acknowledged by the full run, {lost_bytes} unsynced bytes dropped in all",
        points.len(),
        all.live.len()
    );
}
