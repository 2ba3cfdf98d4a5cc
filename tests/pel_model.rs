//! The action cache against a model: random DAGs of `concat` and `slice`
//! over a few inputs, run again and again while the inputs change at
//! random. In every round the nodes executed are exactly those whose
//! action (operation, parameters, inputs as resolved to bytes) no earlier
//! round had executed, and every output equals the model's bytes.
//!
//! Inputs are drawn from a two-letter alphabet and slices are short, so
//! that an upstream change often yields the same bytes again and early
//! cutoff is exercised, not just invalidation.

use std::collections::{HashMap, HashSet};

use asl::pel::{self, Input, Node, Pel, Program, Ref, RunOptions, Signer, Trust};
use asl::records::cbor::Value;
use asl::records::query::QueryIndex;
use asl::{ArtifactId, StoreOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Concat(Vec<usize>),
    Slice(usize, u64, u64),
}

/// Node i reads sources < inputs + i: the first `inputs` are artifacts.
#[derive(Clone, Debug)]
struct Dag {
    inputs: usize,
    nodes: Vec<Op>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..4, 1usize..10).prop_flat_map(|(inputs, n)| {
        let nodes: Vec<_> = (0..n)
            .map(|i| {
                let src = inputs + i;
                prop_oneof![
                    prop::collection::vec(0..src, 1..4).prop_map(Op::Concat),
                    (0..src, 0u64..3, 0u64..4).prop_map(|(s, o, l)| Op::Slice(s, o, l)),
                ]
            })
            .collect();
        nodes.prop_map(move |nodes| Dag { inputs, nodes })
    })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..6)
}

/// The program, with inputs as the given artifacts.
fn program(d: &Dag, ids: &[ArtifactId]) -> Program {
    let src = |s: usize| {
        if s < d.inputs {
            Ref::Artifact(ids[s])
        } else {
            Ref::Node {
                node: format!("n{}", s - d.inputs),
                output: "out".into(),
            }
        }
    };
    let nodes = d
        .nodes
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let (op, inputs, params) = match op {
                Op::Concat(srcs) => (
                    pel::ops::Op::Concat,
                    srcs.iter()
                        .enumerate()
                        .map(|(k, s)| Input {
                            name: format!("in{k}"),
                            from: src(*s),
                            snapshot: None,
                        })
                        .collect(),
                    Value::Map(Vec::new()),
                ),
                Op::Slice(s, off, len) => (
                    pel::ops::Op::Slice,
                    vec![Input {
                        name: "in0".into(),
                        from: src(*s),
                        snapshot: None,
                    }],
                    Value::Map(vec![
                        (Value::text("offset"), Value::Unsigned(*off)),
                        (Value::text("length"), Value::Unsigned(*len)),
                    ]),
                ),
            };
            Node {
                id: format!("n{i}"),
                op,
                inputs,
                params,
            }
        })
        .collect();
    Program::new(None, String::new(), nodes).unwrap()
}

/// The model: each node's bytes, and its action as the cache sees it.
fn model(d: &Dag, inputs: &[Vec<u8>]) -> Vec<(Vec<u8>, String)> {
    let mut vals: Vec<Vec<u8>> = inputs.to_vec();
    let mut out = Vec::new();
    for op in &d.nodes {
        let (v, action) = match op {
            Op::Concat(srcs) => {
                let v: Vec<u8> = srcs.iter().flat_map(|s| vals[*s].clone()).collect();
                (
                    v,
                    format!("concat {:?}", srcs.iter().map(|s| &vals[*s]).collect::<Vec<_>>()),
                )
            }
            Op::Slice(s, off, len) => {
                let b = &vals[*s];
                let o = (*off as usize).min(b.len());
                let e = (o + *len as usize).min(b.len());
                (b[o..e].to_vec(), format!("slice {off} {len} {b:?}"))
            }
        };
        vals.push(v.clone());
        out.push((v, action));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn executed_nodes_are_exactly_those_with_new_actions(
        d in dag(),
        rounds in prop::collection::vec(prop::collection::vec(bytes(), 3), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let (mut index, _) = QueryIndex::open(&store).unwrap();
        let signer = Signer::from_seed([3; 32]);
        let trust = Trust::default();
        let mut seen: HashSet<String> = HashSet::new();
        for inputs in rounds {
            let inputs = &inputs[..d.inputs];
            let ids: Vec<ArtifactId> = inputs.iter().map(|b| store.put(b).unwrap()).collect();
            store.commit().unwrap();
            index.refresh(&store).unwrap();
            let pel = Pel { store: &store, index: &index, signer: &signer, trust: &trust };
            let rep = pel::run(&pel, &program(&d, &ids), &RunOptions::default()).unwrap();
            let want = model(&d, inputs);
            // Nodes with one new action: at least one of them executes (two
            // running at once may both), the rest of a program never does.
            let mut groups: HashMap<&str, Vec<bool>> = HashMap::new();
            for (i, (bytes, action)) in want.iter().enumerate() {
                let n = rep.node(&format!("n{i}")).unwrap();
                prop_assert_eq!(&store.get(&n.outputs[0].1).unwrap(), bytes, "node n{}", i);
                let executed = !n.cached;
                if seen.contains(action) {
                    prop_assert!(!executed, "n{} re-executed {} ", i, action);
                }
                groups.entry(action.as_str()).or_default().push(executed);
            }
            for (action, ex) in &groups {
                if !seen.contains(*action) {
                    prop_assert!(ex.iter().any(|e| *e), "new action {} was not executed", action);
                }
            }
            seen.extend(want.into_iter().map(|(_, a)| a));
        }
    }
}
