//! The query index against a model: random annotations, removals,
//! checkpoints and reopenings, and after each step every query answers what
//! a plain list of the live annotation records says it should.

use std::collections::{BTreeMap, BTreeSet};

use asl::records::labels::{annotate, Annotation};
use asl::records::query::{Query, QueryIndex};
use asl::records::time;
use asl::{ArtifactId, Store, StoreOptions};
use proptest::prelude::*;

const BASE: u64 = 1_790_000_000;
const KEYS: [&str; 2] = ["tool", "status"];
const VALUES: [&str; 3] = ["mill", "OK", "BLOCKED"];

#[derive(Clone, Debug)]
enum Op {
    Annotate {
        subject: u8,
        labels: Vec<(u8, u8)>,
        media: Option<u8>,
        day: u8,
    },
    RemoveRecord(u8),
    RemoveSubject(u8),
    Checkpoint,
    Reopen,
    Query {
        labels: Vec<(u8, u8)>,
        media: Option<u8>,
        since: Option<u8>,
        until: Option<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let labels = prop::collection::vec((0u8..2, 0u8..3), 0..3);
    prop_oneof![
        4 => (0u8..6, labels.clone(), prop::option::of(0u8..2), 0u8..10)
            .prop_map(|(subject, labels, media, day)| Op::Annotate { subject, labels, media, day }),
        1 => any::<u8>().prop_map(Op::RemoveRecord),
        1 => (0u8..6).prop_map(Op::RemoveSubject),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        4 => (labels, prop::option::of(0u8..2), prop::option::of(0u8..10), prop::option::of(0u8..11))
            .prop_map(|(labels, media, since, until)| Op::Query { labels, media, since, until }),
    ]
}

/// One condition of a query, as the model evaluates it.
type Cond = Box<dyn Fn(&Ann) -> bool>;

/// One live annotation as the model knows it.
#[derive(Clone, Debug)]
struct Ann {
    subject: ArtifactId,
    labels: BTreeMap<String, String>,
    media: Option<String>,
    t: u64,
}

fn open(dir: &std::path::Path) -> Store {
    // A small history budget, so that reopening after many checkpoints
    // also exercises the rescan.
    StoreOptions::new().create(true).log_history(4 << 10).open(dir).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn queries_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let subjects: Vec<ArtifactId> = (0..6u8).map(|i| store.put(&[b's', i]).unwrap()).collect();
        store.commit().unwrap();
        let mut live_subjects: BTreeSet<ArtifactId> = subjects.iter().copied().collect();
        let mut model: BTreeMap<ArtifactId, Ann> = BTreeMap::new();
        let (mut index, _) = QueryIndex::open(&store).unwrap();
        for op in ops {
            match op {
                Op::Annotate { subject, labels, media, day } => {
                    let s = subjects[subject as usize];
                    if !live_subjects.contains(&s) {
                        prop_assert!(annotate(&store, &Annotation::new(s).label("k", "v")).is_err());
                        continue;
                    }
                    let mut a = Annotation::new(s);
                    for (k, v) in labels {
                        a = a.label(KEYS[k as usize], VALUES[v as usize]);
                    }
                    if let Some(m) = media {
                        a = a.media_type(["text/plain", "text/csv"][m as usize]);
                    }
                    let t = BASE + day as u64 * 86_400;
                    a.created_at = Some(time::format(t));
                    let id = annotate(&store, &a).unwrap().id;
                    store.commit().unwrap();
                    model.insert(id, Ann { subject: s, labels: a.labels.clone(), media: a.media_type.clone(), t });
                }
                Op::RemoveRecord(n) => {
                    if model.is_empty() { continue; }
                    let id = *model.keys().nth(n as usize % model.len()).unwrap();
                    store.remove(&id).unwrap();
                    store.commit().unwrap();
                    model.remove(&id);
                }
                Op::RemoveSubject(i) => {
                    let s = subjects[i as usize];
                    store.remove(&s).unwrap();
                    store.commit().unwrap();
                    live_subjects.remove(&s);
                }
                Op::Checkpoint => {
                    store.maintenance().checkpoint().unwrap();
                    // A rebuild that spills many tiny runs and merges them
                    // must index exactly what the feed does.
                    index.rebuild_with(&store, 2048).unwrap();
                }
                Op::Reopen => {
                    drop(index);
                    drop(store);
                    store = open(dir.path());
                    index = QueryIndex::open(&store).unwrap().0;
                }
                Op::Query { labels, media, since, until } => {
                    index.refresh(&store).unwrap();
                    let q = Query {
                        labels: labels.iter().map(|(k, v)| (KEYS[*k as usize].to_string(), VALUES[*v as usize].to_string())).collect(),
                        media_type: media.map(|m| ["text/plain", "text/csv"][m as usize].to_string()),
                        type_name: None,
                        since: since.map(|d| BASE + d as u64 * 86_400),
                        until: until.map(|d| BASE + d as u64 * 86_400),
                        ..Query::default()
                    };
                    let in_range = |a: &Ann| q.since.is_none_or(|s| a.t >= s) && q.until.is_none_or(|u| a.t < u);
                    let mut want: BTreeMap<ArtifactId, (u64, BTreeSet<ArtifactId>)> = BTreeMap::new();
                    for s in &subjects {
                        let mine: Vec<(&ArtifactId, &Ann)> = model.iter().filter(|(_, a)| a.subject == *s && in_range(a)).collect();
                        let mut hit = (0u64, BTreeSet::new());
                        let mut ok = true;
                        let mut conds: Vec<Cond> = Vec::new();
                        for (k, v) in &q.labels {
                            let (k, v) = (k.clone(), v.clone());
                            conds.push(Box::new(move |a: &Ann| a.labels.get(&k) == Some(&v)));
                        }
                        if let Some(m) = &q.media_type {
                            let m = m.clone();
                            conds.push(Box::new(move |a: &Ann| a.media.as_ref() == Some(&m)));
                        }
                        if conds.is_empty() {
                            conds.push(Box::new(|_| true));
                        }
                        for c in &conds {
                            let matching: Vec<_> = mine.iter().filter(|(_, a)| c(a)).collect();
                            if matching.is_empty() { ok = false; break; }
                            for (id, a) in matching {
                                hit.0 = hit.0.max(a.t);
                                hit.1.insert(**id);
                            }
                        }
                        if ok {
                            want.insert(*s, hit);
                        }
                    }
                    let got = index.find(&q).unwrap();
                    let got_map: BTreeMap<ArtifactId, (u64, BTreeSet<ArtifactId>)> = got
                        .iter()
                        .map(|h| (h.subject, (h.time, h.records.iter().copied().collect())))
                        .collect();
                    prop_assert_eq!(&got_map, &want, "query {:?}", q);
                    prop_assert!(got.windows(2).all(|w| (w[0].time, w[0].subject) <= (w[1].time, w[1].subject)));
                    let live: Vec<ArtifactId> = index.find_live(&store, &q).unwrap().iter().map(|h| h.subject).collect();
                    let want_live: Vec<ArtifactId> = got.iter().map(|h| h.subject).filter(|s| live_subjects.contains(s)).collect();
                    prop_assert_eq!(live, want_live);
                    // A limit keeps the newest; newest first is the same
                    // hits reversed, ties included.
                    for n in [0, 1, 3] {
                        let cut = Query { limit: Some(n), ..q.clone() };
                        let tail = &got[got.len().saturating_sub(n)..];
                        prop_assert_eq!(&index.find(&cut).unwrap()[..], tail);
                        let back = Query { newest_first: true, ..cut };
                        let want_back: Vec<_> = tail.iter().rev().cloned().collect();
                        prop_assert_eq!(index.find(&back).unwrap(), want_back);
                    }
                    for s in &subjects {
                        let mut want_anns: Vec<ArtifactId> = model.iter().filter(|(_, a)| a.subject == *s).map(|(id, _)| *id).collect();
                        want_anns.sort();
                        prop_assert_eq!(index.annotations_of(s).unwrap(), want_anns);
                    }
                }
            }
        }
    }
}

/// The index notes how far it has read the store's history, so that
/// checkpoints keep what it still needs (and nothing for nobody): it
/// catches up across several checkpoints without rescanning; once its note
/// is gone, the history goes and it rescans.
#[test]
fn the_index_keeps_the_history_it_needs_across_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
    let subject = store.put(b"subject").unwrap();
    store.commit().unwrap();
    let (index, r) = QueryIndex::open(&store).unwrap();
    assert!(r.rebuilt);
    drop(index);
    let m = store.maintenance();
    assert_eq!(
        m.followers().unwrap(),
        vec![("query".to_string(), m.log_cursor().log_file)]
    );
    let note = |i: u32| {
        let a = Annotation::new(subject).label("n", i.to_string());
        annotate(&store, &a).unwrap();
        store.maintenance().checkpoint().unwrap();
    };
    (0..3).for_each(note);
    let (mut index, r) = QueryIndex::open(&store).unwrap();
    assert!(!r.rebuilt, "caught up from the history: {r:?}");
    assert_eq!((r.examined, r.indexed), (3, 3));
    // Without a note, the history is not kept: the next catch-up rescans.
    m.forget_follower("query").unwrap();
    (3..6).for_each(note);
    assert!(index.refresh(&store).unwrap().rebuilt);
    assert_eq!(index.len().unwrap(), 6);
}
