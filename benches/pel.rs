//! PEL overheads, printed as a table:
//!
//! 1. a 10,000-node DAG of cheap builtins (`hash` and `concat` of ~100-byte
//!    artifacts), run once (every node executed: key, builtin, outputs,
//!    SHA-256, receipt, signature) and again (every node a verified cache
//!    hit); per node, and against the builtins' own work done directly;
//! 2. `exec` against the same command started directly: 200 nodes of
//!    `true` (each its own action) against a loop of 200 `sh -c true`,
//!    measured first, while the process is small (starting a command
//!    forks this process, and a fork copies its page tables).
//!
//! `cargo bench --bench pel` (ASL_PEL_NODES sets the DAG size). Timings on a
//! shared machine are noisy: compare the ratios within one run.

use std::time::Instant;

use asl::pel::ops::{self, InputValue, Op};
use asl::pel::{self, Input, Node, Pel, Program, Ref, RunOptions, Signer, Trust};
use asl::records::cbor::Value;
use asl::records::query::QueryIndex;
use asl::{ArtifactId, StoreOptions};

fn params(kv: &[(&str, Value)]) -> Value {
    Value::Map(kv.iter().map(|(k, v)| (Value::text(*k), v.clone())).collect())
}

/// Node i: even = hash (b3sum line) of an earlier node or input, odd =
/// concat of two earlier hash nodes; sources picked by a fixed xorshift.
fn dag(n: usize, inputs: &[ArtifactId]) -> Program {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut hashes: Vec<usize> = Vec::new();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let node_ref = |j: usize| Ref::Node {
            node: format!("n{j}"),
            output: "out".into(),
        };
        let (op, ins, p) = if i % 2 == 0 || hashes.len() < 2 {
            let from = if hashes.is_empty() || next() % 4 == 0 {
                Ref::Artifact(inputs[next() as usize % inputs.len()])
            } else {
                let k = hashes.len();
                node_ref(hashes[k - 1 - (next() as usize % k.min(64))])
            };
            hashes.push(i);
            (
                Op::Hash,
                vec![Input {
                    name: "in0".into(),
                    from,
                    snapshot: None,
                }],
                params(&[("format", Value::text("b3sum")), ("name", Value::text(format!("n{i}")))]),
            )
        } else {
            let k = hashes.len();
            let a = hashes[k - 1 - (next() as usize % k.min(64))];
            let b = hashes[k - 1 - (next() as usize % k.min(64))];
            (
                Op::Concat,
                vec![
                    Input {
                        name: "in0".into(),
                        from: node_ref(a),
                        snapshot: None,
                    },
                    Input {
                        name: "in1".into(),
                        from: node_ref(b),
                        snapshot: None,
                    },
                ],
                params(&[]),
            )
        };
        nodes.push(Node {
            id: format!("n{i}"),
            op,
            inputs: ins,
            params: p,
        });
    }
    Program::new(Some("bench".into()), String::new(), nodes).unwrap()
}

fn main() {
    let n: usize = std::env::var("ASL_PEL_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
    let inputs: Vec<ArtifactId> = (0..100)
        .map(|i| store.put(format!("input {i}\n").as_bytes()).unwrap())
        .collect();
    store.commit().unwrap();
    let (mut index, _) = QueryIndex::open(&store).unwrap();
    let signer = Signer::of_store(&store).unwrap();
    let trust = Trust::default();
    let program = dag(n, &inputs);

    // exec against the command run directly.
    let m = 200;
    let nodes: Vec<Node> = (0..m)
        .map(|i| Node {
            id: format!("e{i}"),
            op: Op::Exec,
            inputs: Vec::new(),
            params: params(&[("cmd", Value::text(format!("true {i}")))]),
        })
        .collect();
    let prog = Program::new(None, String::new(), nodes).unwrap();
    let pel = Pel {
        store: &store,
        index: &index,
        signer: &signer,
        trust: &trust,
    };
    let opts = RunOptions {
        jobs: 1,
        ..RunOptions::default()
    };
    let t = Instant::now();
    let rep = pel::run(&pel, &prog, &opts).unwrap();
    let pel_exec = t.elapsed();
    assert_eq!(rep.executed().len(), m);
    let t = Instant::now();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {m} ]; do sh -c \"true $i\"; i=$((i+1)); done"
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let shell = t.elapsed();
    let per_m = |d: std::time::Duration| d.as_secs_f64() * 1e3 / m as f64;
    println!(
        "exec, {m} nodes of `true` one at a time (isolation: {})",
        pel::exec::isolation().name()
    );
    println!("| | total | per command |");
    println!("|---|---:|---:|");
    println!(
        "| aslctl pel (sandbox, streams stored, receipt) | {:.2} s | {:.2} ms |",
        pel_exec.as_secs_f64(),
        per_m(pel_exec)
    );
    println!(
        "| shell loop of `sh -c true` | {:.2} s | {:.2} ms |",
        shell.as_secs_f64(),
        per_m(shell)
    );
    println!(
        "| overhead | | {:.2} ms ({:.1}×) |",
        per_m(pel_exec) - per_m(shell),
        pel_exec.as_secs_f64() / shell.as_secs_f64()
    );
    println!();
    index.refresh(&store).unwrap();

    let run = |index: &QueryIndex| {
        let pel = Pel {
            store: &store,
            index,
            signer: &signer,
            trust: &trust,
        };
        let t = Instant::now();
        let rep = pel::run(&pel, &program, &RunOptions::default()).unwrap();
        (t.elapsed(), rep)
    };
    let (first, rep) = run(&index);
    // A few concat nodes repeat an earlier pair: the same action, run once.
    let executed = rep.executed().len();
    assert!(executed > n * 99 / 100);
    let t = Instant::now();
    index.refresh(&store).unwrap();
    let catch_up = t.elapsed();
    let (second, rep2) = run(&index);
    assert!(rep2.executed().is_empty());

    // The same builtins, called directly on the same inputs: the work a
    // node does whatever runs it.
    let outputs: std::collections::HashMap<&str, ArtifactId> =
        rep.nodes.iter().map(|r| (r.node.as_str(), r.outputs[0].1)).collect();
    let t = Instant::now();
    for node in &program.nodes {
        let ins: Vec<InputValue<'_>> = node
            .inputs
            .iter()
            .map(|i| InputValue {
                name: &i.name,
                id: match &i.from {
                    Ref::Artifact(id) => *id,
                    Ref::Node { node, .. } => outputs[node.as_str()],
                    Ref::Tree(id) => *id,
                },
                snapshot: i.snapshot.as_deref(),
            })
            .collect();
        ops::run_builtin(&store, node, &ins).unwrap();
    }
    let direct = t.elapsed();

    // Writing the receipts alone (checked, encoded, stored, committed) into
    // a fresh store: what every executed node costs beside scheduling.
    let receipts: Vec<asl::records::Record> = rep
        .nodes
        .iter()
        .filter_map(|r| r.receipt)
        .map(|id| asl::records::get(&store as &dyn asl::records::Source, &id).unwrap())
        .collect();
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = StoreOptions::new().create(true).open(dir2.path()).unwrap();
    let t = Instant::now();
    for r in &receipts {
        asl::records::put(&store2, r).unwrap();
    }
    store2.commit().unwrap();
    let writing = t.elapsed();

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("PEL, {n}-node DAG of hash/concat builtins ({executed} distinct actions)");
    println!("| | total | per node |");
    println!("|---|---:|---:|");
    println!(
        "| first run (all executed) | {:.2} s | {:.1} µs |",
        first.as_secs_f64(),
        per(first)
    );
    println!(
        "| builtins called directly (the work) | {:.2} s | {:.1} µs |",
        direct.as_secs_f64(),
        per(direct)
    );
    println!(
        "| receipts written alone (check, encode, put, commit) | {:.2} s | {:.1} µs |",
        writing.as_secs_f64(),
        per(writing)
    );
    println!(
        "| scheduling (first − work − receipts) | | {:.1} µs |",
        per(first) - per(direct) - per(writing)
    );
    println!(
        "| query index catch-up with {n} receipts | {:.2} s | {:.1} µs |",
        catch_up.as_secs_f64(),
        per(catch_up)
    );
    println!(
        "| cached re-run (every node verified) | {:.2} s | {:.1} µs |",
        second.as_secs_f64(),
        per(second)
    );
}
