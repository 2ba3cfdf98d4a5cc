//! Action keys, receipts and run records.
//!
//! An action key is the BLAKE3 (in derive-key mode, so it can never equal
//! an artifact id) of the canonical CBOR of what decides a node's outputs:
//! operation, parameters (but not the timeout), inputs *as resolved* (the
//! ids upstream nodes actually produced, so an upstream change that yields
//! the same bytes changes no key downstream), executor identity and
//! version, and the program's salt. Times, the run and the machine are
//! kept out of it.
//!
//! A receipt (`asl/pel-receipt`) is one executed node: its key, program,
//! node, inputs, outputs with their SHA-256, streams, exit, outcome,
//! executor and times. A run record (`asl/pel-run`) links one execution's
//! receipts, cached or new; its id is the run's identity.

use super::node::Op;
use super::PelError;
use asl_core::ArtifactId;
use asl_records::cbor::{self, Value};
use asl_records::Record;

/// The record type of receipts.
pub const RECEIPT_TYPE: &str = "asl/pel-receipt";
/// The record type of runs.
pub const RUN_TYPE: &str = "asl/pel-run";
/// The record type of signed batches of receipts.
pub const BATCH_TYPE: &str = "asl/pel-batch";
/// The record type of replay reports.
pub const DIVERGENCE_TYPE: &str = "asl/pel-divergence";

/// Who executes nodes.
pub const EXECUTOR: &str = "asl-pel";

/// The version of the builtins' and the sandbox's semantics: bumped when
/// any builtin would produce other bytes for the same inputs, which changes
/// every key (and so retires every cached result) at once.
pub const PEL_VERSION: &str = "1";

/// The executor version that goes into keys and receipts: the semantics
/// version and the zstd library's (zstd frames are deterministic for one
/// version of it, not across versions).
pub fn executor_version() -> String {
    format!("{PEL_VERSION}+zstd.{}", zstd::zstd_safe::version_string())
}

/// One resolved input of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedInput {
    /// The input's name.
    pub name: String,
    /// The artifact (or tree) it resolved to.
    pub id: ArtifactId,
    /// Whether it is a tree.
    pub tree: bool,
    /// The snapshot it was read at; none: CURRENT.
    pub snapshot: Option<String>,
}

/// The action key of `op` with `params` on `inputs` in a program salted `salt`.
pub fn action_key(op: Op, params: &Value, inputs: &[ResolvedInput], salt: &str) -> [u8; 32] {
    let params = match params {
        Value::Map(m) => Value::Map(
            m.iter()
                .filter(|(k, _)| k != &Value::text("timeout"))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    };
    let inputs = inputs
        .iter()
        .map(|i| {
            let mut v = vec![
                Value::text(&i.name),
                Value::Bytes(i.id.as_bytes().to_vec()),
                Value::text(if i.tree { "tree" } else { "artifact" }),
            ];
            // Only when set, so that keys of inputs read from CURRENT are
            // those they always were.
            if let Some(s) = &i.snapshot {
                v.push(Value::text(s));
            }
            Value::Array(v)
        })
        .collect();
    let v = Value::Map(vec![
        (Value::text("op"), Value::text(op.name())),
        (Value::text("params"), params),
        (Value::text("inputs"), Value::Array(inputs)),
        (Value::text("executor"), Value::text(EXECUTOR)),
        (Value::text("executor_version"), Value::text(executor_version())),
        (Value::text("salt"), Value::text(salt)),
    ]);
    // Parameters come from a checked program, whose maps have no key twice.
    let bytes = cbor::encode(&v).expect("a checked program encodes");
    let mut h = blake3::Hasher::new_derive_key("asl pel action key v1");
    h.update(&bytes);
    *h.finalize().as_bytes()
}

/// Outcome of a node or a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Not run: an input it needs failed or was not run.
    Blocked,
    /// Run, and failed.
    Error,
}

impl Outcome {
    /// As records spell it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Blocked => "BLOCKED",
            Outcome::Error => "ERROR",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        match s {
            "OK" => Some(Outcome::Ok),
            "BLOCKED" => Some(Outcome::Blocked),
            "ERROR" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// One output in a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRef {
    /// The output's name.
    pub name: String,
    /// Its artifact.
    pub id: ArtifactId,
    /// Its length.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// A receipt: one executed node.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    /// The action key.
    pub action_key: [u8; 32],
    /// The program record.
    pub program: ArtifactId,
    /// The node's id.
    pub node: String,
    /// The operation.
    pub op: String,
    /// The run that executed it.
    pub run_id: String,
    /// Inputs as resolved (each with the snapshot it was read at), with
    /// the domain of each (0: this store's).
    pub inputs: Vec<(ResolvedInput, u32)>,
    /// Outputs.
    pub outputs: Vec<OutputRef>,
    /// `exec`'s standard output and error.
    pub stdout: Option<ArtifactId>,
    /// See `stdout`.
    pub stderr: Option<ArtifactId>,
    /// `exec`'s exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended an `exec`.
    pub signal: Option<i32>,
    /// Whether the timeout ended it.
    pub timed_out: bool,
    /// OK or ERROR.
    pub outcome: Outcome,
    /// Why it failed.
    pub error: Option<String>,
    /// Executor and version.
    pub executor: String,
    /// See `executor`.
    pub executor_version: String,
    /// What the sandbox enforced (`exec` only).
    pub isolation: Option<String>,
    /// RFC 3339 times.
    pub started_at: String,
    /// See `started_at`.
    pub finished_at: String,
}

fn id_v(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

fn put(m: &mut Vec<(Value, Value)>, k: &str, v: Value) {
    m.push((Value::text(k), v));
}

impl Receipt {
    /// As a record.
    pub fn to_record(&self) -> Record {
        let mut m = Vec::new();
        put(&mut m, "action_key", Value::Bytes(self.action_key.to_vec()));
        put(&mut m, "program", id_v(&self.program));
        put(&mut m, "node", Value::text(&self.node));
        put(&mut m, "op", Value::text(&self.op));
        put(&mut m, "run_id", Value::text(&self.run_id));
        let inputs = self
            .inputs
            .iter()
            .map(|(i, domain)| {
                let mut x = vec![
                    (Value::text("name"), Value::text(&i.name)),
                    (Value::text("id"), id_v(&i.id)),
                    (
                        Value::text("kind"),
                        Value::text(if i.tree { "tree" } else { "artifact" }),
                    ),
                    (Value::text("domain"), Value::Unsigned(u64::from(*domain))),
                ];
                if let Some(s) = &i.snapshot {
                    x.push((Value::text("snapshot"), Value::text(s)));
                }
                Value::Map(x)
            })
            .collect();
        put(&mut m, "inputs", Value::Array(inputs));
        let outputs = self
            .outputs
            .iter()
            .map(|o| {
                Value::Map(vec![
                    (Value::text("name"), Value::text(&o.name)),
                    (Value::text("id"), id_v(&o.id)),
                    (Value::text("size"), Value::Unsigned(o.size)),
                    (Value::text("sha256"), Value::text(asl_records::digests::hex(&o.sha256))),
                ])
            })
            .collect();
        put(&mut m, "outputs", Value::Array(outputs));
        if let Some(s) = &self.stdout {
            put(&mut m, "stdout", id_v(s));
        }
        if let Some(s) = &self.stderr {
            put(&mut m, "stderr", id_v(s));
        }
        if let Some(c) = self.exit_code {
            put(&mut m, "exit_code", Value::int(i64::from(c)));
        }
        if let Some(s) = self.signal {
            put(&mut m, "signal", Value::Unsigned(s.max(0) as u64));
        }
        if self.timed_out {
            put(&mut m, "timed_out", Value::Bool(true));
        }
        put(&mut m, "outcome", Value::text(self.outcome.name()));
        if let Some(e) = &self.error {
            put(&mut m, "error", Value::text(truncate(e, 4096)));
        }
        put(&mut m, "executor", Value::text(&self.executor));
        put(&mut m, "executor_version", Value::text(&self.executor_version));
        if let Some(i) = &self.isolation {
            put(&mut m, "isolation", Value::text(i));
        }
        put(&mut m, "started_at", Value::text(&self.started_at));
        put(&mut m, "finished_at", Value::text(&self.finished_at));
        Record::new(RECEIPT_TYPE, 1, Value::Map(m))
    }

    /// From a record (checked against the schema first).
    pub fn from_record(r: &Record) -> Result<Receipt, PelError> {
        expect(r, RECEIPT_TYPE)?;
        let b = &r.body;
        let bad = |k: &str| PelError::Program(format!("receipt field {k} is malformed"));
        let inputs = list(b, "inputs")
            .iter()
            .map(|x| {
                Ok((
                    ResolvedInput {
                        name: text(x, "name").ok_or_else(|| bad("inputs.name"))?,
                        id: id(x, "id").ok_or_else(|| bad("inputs.id"))?,
                        tree: text(x, "kind").as_deref() == Some("tree"),
                        snapshot: text(x, "snapshot"),
                    },
                    uint(x, "domain").unwrap_or(0) as u32,
                ))
            })
            .collect::<Result<_, PelError>>()?;
        let outputs = list(b, "outputs")
            .iter()
            .map(|x| {
                Ok(OutputRef {
                    name: text(x, "name").ok_or_else(|| bad("outputs.name"))?,
                    id: id(x, "id").ok_or_else(|| bad("outputs.id"))?,
                    size: uint(x, "size").ok_or_else(|| bad("outputs.size"))?,
                    sha256: text(x, "sha256")
                        .and_then(|s| asl_records::digests::parse_sha256(&s))
                        .ok_or_else(|| bad("outputs.sha256"))?,
                })
            })
            .collect::<Result<_, PelError>>()?;
        Ok(Receipt {
            action_key: match b.get("action_key") {
                Some(Value::Bytes(k)) if k.len() == 32 => k.as_slice().try_into().unwrap(),
                _ => return Err(bad("action_key")),
            },
            program: id(b, "program").ok_or_else(|| bad("program"))?,
            node: text(b, "node").ok_or_else(|| bad("node"))?,
            op: text(b, "op").ok_or_else(|| bad("op"))?,
            run_id: text(b, "run_id").ok_or_else(|| bad("run_id"))?,
            inputs,
            outputs,
            stdout: id(b, "stdout"),
            stderr: id(b, "stderr"),
            exit_code: int(b, "exit_code").map(|c| c as i32),
            signal: uint(b, "signal").map(|s| s as i32),
            timed_out: matches!(b.get("timed_out"), Some(Value::Bool(true))),
            outcome: text(b, "outcome")
                .and_then(|o| Outcome::parse(&o))
                .ok_or_else(|| bad("outcome"))?,
            error: text(b, "error"),
            executor: text(b, "executor").ok_or_else(|| bad("executor"))?,
            executor_version: text(b, "executor_version").ok_or_else(|| bad("executor_version"))?,
            isolation: text(b, "isolation"),
            started_at: text(b, "started_at").ok_or_else(|| bad("started_at"))?,
            finished_at: text(b, "finished_at").ok_or_else(|| bad("finished_at"))?,
        })
    }

    /// Every artifact the receipt says the node produced: outputs, then
    /// the streams.
    pub fn produced(&self) -> Vec<(String, ArtifactId)> {
        let mut v: Vec<(String, ArtifactId)> = self.outputs.iter().map(|o| (o.name.clone(), o.id)).collect();
        if let Some(s) = self.stdout {
            v.push(("stdout".into(), s));
        }
        if let Some(s) = self.stderr {
            v.push(("stderr".into(), s));
        }
        v
    }
}

/// One node's line in a run record.
#[derive(Clone, Debug, PartialEq)]
pub struct RunNode {
    /// The node.
    pub node: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its receipt (new or from the cache); none when blocked.
    pub receipt: Option<ArtifactId>,
    /// Whether the receipt came from the action cache.
    pub cached: bool,
    /// Why it failed or was blocked.
    pub error: Option<String>,
}

/// A run: one execution of a program.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Its run id (also in every receipt it made).
    pub run_id: String,
    /// The program record.
    pub program: ArtifactId,
    /// Times.
    pub created_at: String,
    /// See `created_at`.
    pub finished_at: String,
    /// OK when every node is; ERROR when any failed; else BLOCKED.
    pub outcome: Outcome,
    /// Every node, in the program's order.
    pub nodes: Vec<RunNode>,
    /// The run this one replayed, for `pel replay`.
    pub replay_of: Option<ArtifactId>,
}

impl Run {
    /// As a record.
    pub fn to_record(&self) -> Record {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let mut x = vec![
                    (Value::text("node"), Value::text(&n.node)),
                    (Value::text("outcome"), Value::text(n.outcome.name())),
                    (Value::text("cached"), Value::Bool(n.cached)),
                ];
                if let Some(r) = &n.receipt {
                    x.push((Value::text("receipt"), id_v(r)));
                }
                if let Some(e) = &n.error {
                    x.push((Value::text("error"), Value::text(truncate(e, 4096))));
                }
                Value::Map(x)
            })
            .collect();
        let mut m = Vec::new();
        put(&mut m, "run_id", Value::text(&self.run_id));
        put(&mut m, "program", id_v(&self.program));
        put(&mut m, "created_at", Value::text(&self.created_at));
        put(&mut m, "finished_at", Value::text(&self.finished_at));
        put(&mut m, "outcome", Value::text(self.outcome.name()));
        put(&mut m, "nodes", Value::Array(nodes));
        if let Some(r) = &self.replay_of {
            put(&mut m, "replay_of", id_v(r));
        }
        Record::new(RUN_TYPE, 1, Value::Map(m))
    }

    /// From a record.
    pub fn from_record(r: &Record) -> Result<Run, PelError> {
        expect(r, RUN_TYPE)?;
        let b = &r.body;
        let bad = |k: &str| PelError::Program(format!("run field {k} is malformed"));
        let nodes = list(b, "nodes")
            .iter()
            .map(|x| {
                Ok(RunNode {
                    node: text(x, "node").ok_or_else(|| bad("nodes.node"))?,
                    outcome: text(x, "outcome")
                        .and_then(|o| Outcome::parse(&o))
                        .ok_or_else(|| bad("nodes.outcome"))?,
                    receipt: id(x, "receipt"),
                    cached: matches!(x.get("cached"), Some(Value::Bool(true))),
                    error: text(x, "error"),
                })
            })
            .collect::<Result<_, PelError>>()?;
        Ok(Run {
            run_id: text(b, "run_id").ok_or_else(|| bad("run_id"))?,
            program: id(b, "program").ok_or_else(|| bad("program"))?,
            created_at: text(b, "created_at").ok_or_else(|| bad("created_at"))?,
            finished_at: text(b, "finished_at").ok_or_else(|| bad("finished_at"))?,
            outcome: text(b, "outcome")
                .and_then(|o| Outcome::parse(&o))
                .ok_or_else(|| bad("outcome"))?,
            nodes,
            replay_of: id(b, "replay_of"),
        })
    }
}

/// A batch record listing `receipts` (signed as one).
pub fn batch_record(run_id: &str, receipts: &[ArtifactId]) -> Record {
    Record::new(
        BATCH_TYPE,
        1,
        Value::Map(vec![
            (Value::text("run_id"), Value::text(run_id)),
            (
                Value::text("receipts"),
                Value::Array(receipts.iter().map(id_v).collect()),
            ),
        ]),
    )
}

/// The receipts a batch record lists, if it is one.
pub fn batch_members(r: &Record) -> Option<Vec<ArtifactId>> {
    if r.type_name != BATCH_TYPE || r.version != 1 {
        return None;
    }
    list(&r.body, "receipts")
        .iter()
        .map(|v| match v {
            Value::Bytes(b) if b.len() == 32 => Some(ArtifactId::from_bytes(b.as_slice().try_into().unwrap())),
            _ => None,
        })
        .collect()
}

fn expect(r: &Record, t: &str) -> Result<(), PelError> {
    if r.type_name == t && r.version == 1 {
        Ok(())
    } else {
        Err(PelError::Program(format!(
            "a {} v{} record is not a {t} v1",
            r.type_name, r.version
        )))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn list<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    match v.get(k) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

fn uint(v: &Value, k: &str) -> Option<u64> {
    match v.get(k) {
        Some(Value::Unsigned(n)) => Some(*n),
        _ => None,
    }
}

fn int(v: &Value, k: &str) -> Option<i64> {
    match v.get(k) {
        Some(Value::Unsigned(n)) => i64::try_from(*n).ok(),
        Some(Value::Negative(n)) => i64::try_from(*n).ok().map(|n| -1 - n),
        _ => None,
    }
}

fn id(v: &Value, k: &str) -> Option<ArtifactId> {
    match v.get(k) {
        Some(Value::Bytes(b)) if b.len() == 32 => Some(ArtifactId::from_bytes(b.as_slice().try_into().unwrap())),
        _ => None,
    }
}
