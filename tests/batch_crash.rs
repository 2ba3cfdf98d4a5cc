//! Command blocks survive SIGKILL whole or not at all: a child process
//! applies batches (puts, a removal, a label, a lineage step) in a loop and
//! is killed at a random moment; after each reopen every batch is either
//! entirely there or entirely absent, and every acknowledged one is there.

use std::collections::HashSet;

use asl::records::batch::Batch;
use asl::records::lineage::{self, Lineage};
use asl::records::query::{Query, QueryIndex};
use asl::{ArtifactId, Store};

mod common;
use common::{crash_opts, noise, run_and_kill, Rng};

/// The bytes of put `k` of batch `n`: 0 and 1 stay, 2 is scratch that the
/// next batch removes. Every fifth batch's put 1 is large (streamed).
fn data(n: u64, k: u64) -> Vec<u8> {
    let len = if k == 1 && n.is_multiple_of(5) {
        40_000
    } else {
        100 + (n % 50) as usize
    };
    let mut v = format!("batch {n} put {k} ").into_bytes();
    v.extend_from_slice(&noise(n * 3 + k, len));
    v
}

fn id(n: u64, k: u64) -> ArtifactId {
    ArtifactId::of(&data(n, k))
}

/// The newest lineage step and its batch number, found through the index.
fn tip(store: &Store) -> Option<(ArtifactId, u64)> {
    let (index, _) = QueryIndex::open(store).unwrap();
    let q = Query {
        type_name: Some(lineage::LINEAGE.into()),
        ..Query::default()
    };
    index
        .find(&q)
        .unwrap()
        .into_iter()
        .map(|h| (h.subject, lineage::read(store, &h.subject).unwrap().seq.unwrap()))
        .max_by_key(|(_, seq)| *seq)
}

#[test]
fn batch_child() {
    let Ok(dir) = std::env::var("ASL_BATCH_CHILD") else {
        return;
    };
    let base: u64 = std::env::var("ASL_BATCH_BASE").unwrap().parse().unwrap();
    let store = crash_opts().open(&dir).unwrap();
    let mut parent = tip(&store).map(|(id, _)| id);
    let mut n = base;
    loop {
        let mut b = Batch::new(&store);
        let first = b.put(data(n, 0));
        b.put(data(n, 1));
        b.put(data(n, 2));
        if n > 0 && store.contains(&id(n - 1, 2)).unwrap() {
            b.remove(id(n - 1, 2));
        }
        b.label(first, [("batch", n.to_string())], Some("application/octet-stream"));
        b.lineage(Lineage {
            parent,
            summary: Some(format!("batch {n}")),
            ..Lineage::default()
        });
        let done = b.commit().unwrap();
        parent = done.lineage;
        println!("{n} {}", id(n, 0));
        n += 1;
    }
}

/// Whether batch `n` is entirely there (true), entirely absent (false), or
/// split (a panic naming what is wrong).
fn applied(store: &Store, index: &QueryIndex, steps: &[(ArtifactId, Lineage)], n: u64, round: u32) -> bool {
    let has = |k| store.contains(&id(n, k)).unwrap();
    let labelled = !index
        .find(&Query {
            labels: vec![("batch".into(), n.to_string())],
            ..Query::default()
        })
        .unwrap()
        .is_empty();
    let step = steps
        .iter()
        .any(|(_, l)| l.changes.as_ref().is_some_and(|c| c.added.contains(&id(n, 0))));
    let parts = [has(0), has(1), labelled, step];
    assert!(
        parts.iter().all(|p| *p) || parts.iter().all(|p| !*p),
        "round {round}: batch {n} is split: puts {:?}, label {labelled}, lineage {step}",
        &parts[..2]
    );
    parts[0]
}

#[test]
fn batches_are_whole_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut rng = Rng(0x0BA7_C4ED ^ std::process::id() as u64);
    let mut acked: HashSet<u64> = HashSet::new();
    let mut next = 0u64;
    let rounds = 6;
    for round in 0..rounds {
        let ms = 300 + rng.next() % 900;
        let got = run_and_kill(
            "batch_child",
            &[
                ("ASL_BATCH_CHILD", dir.display().to_string()),
                ("ASL_BATCH_BASE", next.to_string()),
            ],
            ms,
        );
        acked.extend(got.iter().map(|(n, _)| *n));
        let store = crash_opts().open(&dir).unwrap();
        let (index, _) = QueryIndex::open(&store).unwrap();
        let steps: Vec<(ArtifactId, Lineage)> = index
            .find(&Query {
                type_name: Some(lineage::LINEAGE.into()),
                ..Query::default()
            })
            .unwrap()
            .into_iter()
            .map(|h| (h.subject, lineage::read(&store, &h.subject).unwrap()))
            .collect();
        // Batches are applied in order: a prefix of them, then none.
        let top = next + got.len() as u64 + 1;
        let mut last = None;
        for n in 0..=top {
            let here = applied(&store, &index, &steps, n, round);
            if here {
                assert_eq!(last, n.checked_sub(1), "round {round}: batch {n} applied after a gap");
                last = Some(n);
            }
            if acked.contains(&n) {
                assert!(here, "round {round}: acknowledged batch {n} is gone");
            }
        }
        let Some(last) = last else {
            // Killed before its first batch (opening the query index, say):
            // nothing of any batch may be there, and the next round retries.
            assert!(got.is_empty(), "round {round}: acknowledged batches are gone");
            continue;
        };
        // Each applied batch removed its predecessor's scratch, and only those.
        for n in 0..=last {
            assert_eq!(
                store.contains(&id(n, 2)).unwrap(),
                n == last,
                "round {round}: scratch of batch {n}"
            );
        }
        // One lineage step per batch, one chain from the newest to the first.
        assert_eq!(steps.len() as u64, last + 1, "round {round}: lineage steps");
        let (tip_id, seq) = steps
            .iter()
            .map(|(id, l)| (*id, l.seq.unwrap()))
            .max_by_key(|(_, seq)| *seq)
            .unwrap();
        assert_eq!(seq, last);
        assert_eq!(lineage::chain(&store, &tip_id).unwrap().len() as u64, last + 1);
        drop(index);
        drop(store);
        next = last + 1;
    }
    assert!(next > u64::from(rounds), "too few batches ran to mean anything: {next}");
}
