//! Executing a program: levels of the DAG in order, the nodes of a level in
//! parallel, each answered from the action cache when a trusted receipt
//! with every output present and verified exists, executed otherwise.
//!
//! Crash safety rests on write order, not on a transaction per node: a
//! node's outputs are put before its receipt, and a commit makes durable
//! everything put before it, so no commit can hold a receipt without its
//! outputs. The engine commits at the end of a level once `commit_every`
//! has passed, and at the end of the run; a run killed in between loses
//! only uncommitted work, and running it again executes only that.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rayon::prelude::*;

use super::keys::{PublicKey, Signer, Trust};
use super::node::{InputSource, InputValue, Node, Op, Ref};
use super::ops::{self, OpError};
use super::program::Program;
use super::receipt::{self, Outcome, OutputRef, Receipt, ResolvedInput, Run, RunNode};
use super::{exec, PelError};
use asl_core::{ArtifactId, Store};
use asl_records::query::QueryIndex;
use asl_records::{self as records, tree};

/// What the engine works with: the store, its query index (refreshed by
/// the caller), the store's key and the keys it trusts.
///
/// A second run of the same program over the same inputs executes
/// nothing: every node's signed receipt is found by its action key.
///
/// ```
/// use asl_pel::{run, Pel, Program, RunOptions, Signer, Trust};
/// use asl_records::{cbor::Value, query::QueryIndex};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = asl_core::StoreOptions::new().create(true).open(dir.path())?;
/// let x = store.put(b"ab")?;
/// let node = Value::Map(vec![
///     (Value::text("op"), Value::text("concat")),
///     (Value::text("inputs"), Value::Array(vec![Value::text(x.to_hex()), Value::text(x.to_hex())])),
/// ]);
/// let doc = Value::Map(vec![(Value::text("nodes"), Value::Map(vec![(Value::text("twice"), node)]))]);
/// let program = Program::parse(&doc, &mut |_| Ok(None))?;
/// let (mut index, _) = QueryIndex::open(&store)?;
/// let (signer, trust) = (Signer::of_store(&store)?, Trust::of_store(&store)?);
/// for pass in 0..2 {
///     index.refresh(&store)?;
///     let pel = Pel { store: &store, index: &index, signer: &signer, trust: &trust };
///     let report = run(&pel, &program, &RunOptions::default())?;
///     let out = report.nodes[0].outputs[0].1;
///     assert_eq!(store.get(&out)?, b"abab");
///     assert_eq!(report.executed().len(), if pass == 0 { 1 } else { 0 });
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pel<'a> {
    /// The store.
    pub store: &'a Store,
    /// Its query index, caught up before the run.
    pub index: &'a QueryIndex,
    /// Signs new receipts.
    pub signer: &'a Signer,
    /// Decides which other receipts count.
    pub trust: &'a Trust,
}

/// A callback told of each finished node.
pub type OnNode = Box<dyn Fn(&NodeReport) + Sync + 'static>;

/// Brings one of a program's input artifacts (or trees) into the store
/// before the run checks its inputs: for an id the store does not hold but
/// can get — another domain's promise, fetched and verified, a tree with
/// everything under it. A layer above PEL provides it (federation's
/// `promise::input_resolver`); an error stops the run before anything ran.
pub type InputResolver = Box<dyn Fn(&Store, &ArtifactId) -> Result<(), PelError> + Sync + 'static>;

/// How to run.
pub struct RunOptions {
    /// Use the action cache (off: execute every node, as replay does).
    pub use_cache: bool,
    /// The run id; a fresh one when `None`.
    pub run_id: Option<String>,
    /// Commit at the end of a level once this long has passed since the
    /// last commit.
    pub commit_every: Duration,
    /// The run this one replays.
    pub replay_of: Option<ArtifactId>,
    /// Told of each node as it finishes (from the thread that ran it).
    pub on_node: Option<OnNode>,
    /// Worker threads for the nodes of one level (0: one per core).
    pub jobs: usize,
    /// Run on every input artifact of the program before its inputs are
    /// checked (none: inputs must be in the store already).
    pub resolve_inputs: Option<InputResolver>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            use_cache: true,
            run_id: None,
            commit_every: Duration::from_secs(1),
            replay_of: None,
            on_node: None,
            jobs: 0,
            resolve_inputs: None,
        }
    }
}

/// What happened to one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// OK, BLOCKED or ERROR.
    pub outcome: Outcome,
    /// Answered from the action cache (nothing executed).
    pub cached: bool,
    /// Its receipt (none when blocked).
    pub receipt: Option<ArtifactId>,
    /// What it produced, by output name (streams included for `exec`).
    pub outputs: Vec<(String, ArtifactId)>,
    /// Why it failed or was blocked.
    pub error: Option<String>,
    /// Why receipts for its action key were not used (untrusted, an output
    /// missing or damaged, ...).
    pub rejected: Vec<String>,
    /// Its action key (none when blocked).
    pub action_key: Option<[u8; 32]>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// The run record's id: the run's identity.
    pub run: ArtifactId,
    /// The program record.
    pub program: ArtifactId,
    /// The run's outcome.
    pub outcome: Outcome,
    /// Every node, in the program's order.
    pub nodes: Vec<NodeReport>,
}

impl RunReport {
    /// The nodes that executed (not cached, not blocked).
    pub fn executed(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| !n.cached && n.outcome != Outcome::Blocked)
            .map(|n| n.node.as_str())
            .collect()
    }

    /// The node `id`'s report.
    pub fn node(&self, id: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.node == id)
    }
}

/// A fresh run id: the time and 64 random bits.
fn new_run_id() -> String {
    let mut r = [0u8; 8];
    // Without the random source the time alone still names the run.
    let _ = asl_core::io::random_bytes(&mut r);
    let now = records::time::now();
    format!("pel-{}-{}", now.replace([':', '-'], ""), super::keys::hex(&r))
}

/// Runs `program` (see the module docs). Program errors and missing
/// inputs are refused before anything runs; a node's failure is an ERROR
/// receipt, and the nodes that need its outputs are BLOCKED.
pub fn run(pel: &Pel<'_>, program: &Program, opts: &RunOptions) -> Result<RunReport, PelError> {
    let store = pel.store;
    if let Some(resolve) = &opts.resolve_inputs {
        for id in program.artifacts() {
            resolve(store, &id)?;
        }
    }
    let mut missing = Vec::new();
    for n in &program.nodes {
        for i in &n.inputs {
            let (id, tree) = match &i.from {
                Ref::Artifact(id) => (*id, false),
                Ref::Tree(id) => (*id, true),
                Ref::Node { .. } => continue,
            };
            let from = InputSource::of(store, i.snapshot.as_deref()).map_err(|e| match e {
                asl_core::Error::SnapshotNotFound(s) => PelError::Program(format!(
                    "node {:?}: input {:?} is read at snapshot {s:?}, which does not exist",
                    n.id, i.name
                )),
                e => e.into(),
            })?;
            if !from.contains(&id)? {
                missing.push(match &i.snapshot {
                    Some(s) => format!("{id} (not in snapshot {s:?})"),
                    None => id.to_string(),
                });
            } else if tree && !is_tree(from.source(), &id) {
                return Err(PelError::Program(format!(
                    "node {:?}: input {:?}: {id} is not a tree",
                    n.id, i.name
                )));
            }
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        return Err(PelError::MissingInputs(missing.join(", ")));
    }
    let program_id = records::put(store, &program.to_record())?.id;
    let run_id = opts.run_id.clone().unwrap_or_else(new_run_id);
    let created_at = records::time::now_millis();
    let hide: Vec<PathBuf> = vec![store
        .path()
        .canonicalize()
        .unwrap_or_else(|_| store.path().to_path_buf())];

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .build()
        .map_err(|e| PelError::Program(format!("start worker threads: {e}")))?;
    let levels = levels(program);
    let results: Mutex<HashMap<String, NodeReport>> = Mutex::new(HashMap::new());
    let memo: Mutex<HashMap<[u8; 32], NodeReport>> = Mutex::new(HashMap::new());
    let mut last_commit = Instant::now();
    let ctx = NodeCtx {
        pel,
        program_id,
        run_id: &run_id,
        unsigned: Mutex::new(Vec::new()),
        batches: Mutex::new(HashMap::new()),
        salt: &program.salt,
        hide: &hide,
        use_cache: opts.use_cache,
    };
    for level in levels {
        let done: Vec<Result<NodeReport, PelError>> = pool.install(|| {
            level
                .par_iter()
                .map(|n| {
                    let upstream = {
                        let r = results.lock();
                        n.inputs
                            .iter()
                            .filter_map(|i| match &i.from {
                                Ref::Node { node, .. } => r.get(node).map(|x| (node.clone(), x.clone())),
                                _ => None,
                            })
                            .collect::<HashMap<_, _>>()
                    };
                    let rep = ctx.node(n, &upstream, &memo)?;
                    if let Some(f) = &opts.on_node {
                        f(&rep);
                    }
                    Ok(rep)
                })
                .collect()
        });
        let mut r = results.lock();
        for d in done {
            let d = d?;
            r.insert(d.node.clone(), d);
        }
        drop(r);
        if last_commit.elapsed() >= opts.commit_every {
            ctx.sign_batch()?;
            store.commit()?;
            last_commit = Instant::now();
        }
    }
    let mut results = results.into_inner();
    let nodes: Vec<NodeReport> = program
        .nodes
        .iter()
        .map(|n| results.remove(&n.id).expect("every node ran"))
        .collect();
    let outcome = if nodes.iter().all(|n| n.outcome == Outcome::Ok) {
        Outcome::Ok
    } else if nodes.iter().any(|n| n.outcome == Outcome::Error) {
        Outcome::Error
    } else {
        Outcome::Blocked
    };
    let run = Run {
        run_id: run_id.clone(),
        program: program_id,
        created_at,
        finished_at: records::time::now_millis(),
        outcome,
        nodes: nodes
            .iter()
            .map(|n| RunNode {
                node: n.node.clone(),
                outcome: n.outcome,
                receipt: n.receipt,
                cached: n.cached,
                error: n.error.clone(),
            })
            .collect(),
        replay_of: opts.replay_of,
    };
    ctx.sign_batch()?;
    let run_rec = records::put(store, &run.to_record())?.id;
    pel.signer.sign(store, &run_rec)?;
    store.commit()?;
    Ok(RunReport {
        run_id,
        run: run_rec,
        program: program_id,
        outcome,
        nodes,
    })
}

/// The program's nodes grouped by depth: a node's level is one more than
/// the deepest node it reads from, so a level's nodes are independent.
fn levels(program: &Program) -> Vec<Vec<&Node>> {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<&Node>> = Vec::new();
    for n in &program.nodes {
        let d = n
            .inputs
            .iter()
            .filter_map(|i| match &i.from {
                Ref::Node { node, .. } => depth.get(node.as_str()).map(|d| d + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        depth.insert(&n.id, d);
        if out.len() <= d {
            out.resize_with(d + 1, Vec::new);
        }
        out[d].push(n);
    }
    out
}

fn is_tree(from: &dyn records::Source, id: &ArtifactId) -> bool {
    tree::is_tree(from, id).unwrap_or(false)
}

/// A checked batch: who signed it, and the receipts it lists.
pub(super) type Batch = (Vec<PublicKey>, HashSet<ArtifactId>);

pub(super) struct NodeCtx<'a> {
    pub(super) pel: &'a Pel<'a>,
    pub(super) program_id: ArtifactId,
    pub(super) run_id: &'a str,
    /// Receipts written since the last batch was signed.
    pub(super) unsigned: Mutex<Vec<ArtifactId>>,
    /// Batches whose signatures were checked in this run: who signed, and
    /// which receipts they list.
    pub(super) batches: Mutex<HashMap<ArtifactId, Option<Batch>>>,
    pub(super) salt: &'a str,
    pub(super) hide: &'a [PathBuf],
    pub(super) use_cache: bool,
}

impl NodeCtx<'_> {
    fn node(
        &self,
        n: &Node,
        upstream: &HashMap<String, NodeReport>,
        memo: &Mutex<HashMap<[u8; 32], NodeReport>>,
    ) -> Result<NodeReport, PelError> {
        let blocked = |why: String| NodeReport {
            node: n.id.clone(),
            outcome: Outcome::Blocked,
            cached: false,
            receipt: None,
            outputs: Vec::new(),
            error: Some(why),
            rejected: Vec::new(),
            action_key: None,
        };
        let mut resolved = Vec::with_capacity(n.inputs.len());
        for i in &n.inputs {
            let (id, tree) = match &i.from {
                Ref::Artifact(id) => (*id, false),
                Ref::Tree(id) => (*id, true),
                Ref::Node { node, output } => {
                    let up = &upstream[node];
                    if up.outcome != Outcome::Ok {
                        return Ok(blocked(format!(
                            "input {:?} needs node {node:?}, which did not succeed",
                            i.name
                        )));
                    }
                    match up.outputs.iter().find(|(name, _)| name == output) {
                        Some((_, id)) => (*id, false),
                        None => return Ok(blocked(format!("node {node:?} produced no output {output:?}"))),
                    }
                }
            };
            resolved.push(ResolvedInput {
                name: i.name.clone(),
                id,
                tree,
                snapshot: i.snapshot.clone(),
            });
        }
        let key = receipt::action_key(n.op, &n.params, &resolved, self.salt);
        if let Some(prev) = memo.lock().get(&key) {
            // The same action twice in one program: executed once.
            return Ok(NodeReport {
                node: n.id.clone(),
                cached: true,
                ..prev.clone()
            });
        }
        let mut rejected = Vec::new();
        let mut damaged = Vec::new();
        if self.use_cache {
            if let Some(hit) = self.lookup(&key, &mut rejected, &mut damaged)? {
                let rep = NodeReport {
                    node: n.id.clone(),
                    outcome: Outcome::Ok,
                    cached: true,
                    receipt: Some(hit.0),
                    outputs: hit.1.produced(),
                    error: None,
                    rejected,
                    action_key: Some(key),
                };
                memo.lock().insert(key, rep.clone());
                return Ok(rep);
            }
        }
        // A damaged copy would be kept by deduplication when the node
        // produces the same bytes again: take it out of CURRENT first, so
        // that the fresh bytes are written.
        for id in damaged {
            self.pel.store.remove(&id)?;
        }
        let rep = self.execute(n, &resolved, key, rejected)?;
        if rep.outcome == Outcome::Ok {
            memo.lock().insert(key, rep.clone());
        }
        Ok(rep)
    }

    fn execute(
        &self,
        n: &Node,
        resolved: &[ResolvedInput],
        key: [u8; 32],
        rejected: Vec<String>,
    ) -> Result<NodeReport, PelError> {
        let store = self.pel.store;
        let started_at = records::time::now_millis();
        let inputs: Vec<InputValue<'_>> = resolved
            .iter()
            .map(|r| InputValue {
                name: &r.name,
                id: r.id,
                snapshot: r.snapshot.as_deref(),
            })
            .collect();
        let mut rec = Receipt {
            action_key: key,
            program: self.program_id,
            node: n.id.clone(),
            op: n.op.name().to_string(),
            run_id: self.run_id.to_string(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            stdout: None,
            stderr: None,
            exit_code: None,
            signal: None,
            timed_out: false,
            outcome: Outcome::Ok,
            error: None,
            executor: receipt::EXECUTOR.to_string(),
            executor_version: receipt::executor_version(),
            isolation: None,
            started_at,
            finished_at: String::new(),
        };
        for r in resolved {
            let domain = InputSource::of(store, r.snapshot.as_deref())?.domain_of(&r.id)?;
            rec.inputs.push((r.clone(), u32::from(domain.0)));
        }
        let outputs: Vec<(String, ArtifactId)> = if n.op == Op::Exec {
            match exec::run(store, n, &inputs, self.hide) {
                Ok(x) => {
                    rec.stdout = Some(x.stdout);
                    rec.stderr = Some(x.stderr);
                    rec.exit_code = x.ended.code;
                    rec.signal = x.ended.signal;
                    rec.timed_out = x.ended.timed_out;
                    rec.isolation = Some(x.isolation.to_string());
                    rec.error = x.error;
                    x.outputs
                }
                Err(OpError::Node(e)) => {
                    rec.error = Some(e);
                    Vec::new()
                }
                Err(OpError::Environment(e)) => return Err(e),
            }
        } else {
            match ops::run_builtin(store, n, &inputs) {
                Ok(o) => o,
                Err(OpError::Node(e)) => {
                    rec.error = Some(e);
                    Vec::new()
                }
                // Not the node's failure: no receipt says it failed, and
                // the run stops (a rerun finds the node not yet done).
                Err(OpError::Environment(e)) => return Err(e),
            }
        };
        if rec.error.is_some() {
            rec.outcome = Outcome::Error;
        }
        for (name, id) in &outputs {
            rec.outputs.push(OutputRef {
                name: name.clone(),
                id: *id,
                size: store.len_of(id)?,
                sha256: records::digests::sha256_of_stored(store, id)?,
            });
        }
        rec.finished_at = records::time::now_millis();
        // Outputs first, then the receipt: a commit holding the receipt
        // holds them too.
        let rid = records::put(store, &rec.to_record())?.id;
        // Signed with the others of its batch before the next commit.
        self.unsigned.lock().push(rid);
        Ok(NodeReport {
            node: n.id.clone(),
            outcome: rec.outcome,
            cached: false,
            receipt: Some(rid),
            outputs: rec.produced(),
            error: rec.error.clone(),
            rejected,
            action_key: Some(key),
        })
    }
}
