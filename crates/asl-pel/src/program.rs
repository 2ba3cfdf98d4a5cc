//! Programs: a DAG of nodes, read from what users write (YAML or JSON,
//! decoded to a CBOR value) and stored as a canonical `asl/pel-program`
//! record, so that a program has an id.
//!
//! Everything that can be wrong with a program is found here, before a
//! single node runs: a node declared twice, an unknown operation, bad
//! parameters, a reference to a node or an output that does not exist, an
//! output declared twice, a cycle. Missing input artifacts are checked
//! against the store when a run starts (also before anything runs).

use std::collections::{BTreeMap, HashMap};

use super::node::{names, Op};
pub use super::node::{Input, Node, Ref};
use super::ops;
use super::PelError;
use asl_core::ArtifactId;
use asl_records::cbor::Value;
use asl_records::Record;

/// The record type of programs.
pub const PROGRAM_TYPE: &str = "asl/pel-program";

/// A checked program: nodes in a topological order (a node after every
/// node it reads from; ties in id order, so the order is a function of the
/// program alone).
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Its name, if it was given one (not part of any action key).
    pub name: Option<String>,
    /// Mixed into every action key: change it to invalidate every cached
    /// result of the program.
    pub salt: String,
    /// The nodes, topologically ordered.
    pub nodes: Vec<Node>,
}

/// How [`Program::parse`] reads an input reference that is not `@node`,
/// `b3:HEX`, a bare id or `tree:HEX` (the CLI turns `file:` and `dir:`
/// into artifacts this way).
pub type Resolver<'a> = dyn FnMut(&str) -> Result<Option<Ref>, PelError> + 'a;

fn bad(msg: impl Into<String>) -> PelError {
    PelError::Program(msg.into())
}

impl Program {
    /// Reads a program in the user form (see `spec/pel.md`): `nodes` is a
    /// map from node id to node or a list of nodes with an `id`; each node
    /// has `op`, optional `inputs` (a list of references or `{name, from}`
    /// maps, or a map from name to reference) and optional `params`. The
    /// canonical record form is accepted too.
    pub fn parse(v: &Value, resolve: &mut Resolver<'_>) -> Result<Program, PelError> {
        let Value::Map(top) = v else {
            return Err(bad("a program is a map with `nodes`"));
        };
        for (k, _) in top {
            match k {
                Value::Text(t) if ["name", "salt", "nodes"].contains(&t.as_str()) => {}
                other => return Err(bad(format!("unknown program field {other}"))),
            }
        }
        let name = match v.get("name") {
            None => None,
            Some(Value::Text(t)) => Some(t.clone()),
            Some(other) => return Err(bad(format!("name: {other} is not text"))),
        };
        let salt = match v.get("salt") {
            None => String::new(),
            Some(Value::Text(t)) => t.clone(),
            Some(other) => return Err(bad(format!("salt: {other} is not text"))),
        };
        let mut raw: Vec<(String, &Value)> = Vec::new();
        match v.get("nodes") {
            Some(Value::Map(m)) => {
                for (k, n) in m {
                    let Value::Text(id) = k else {
                        return Err(bad(format!("node id {k} is not text")));
                    };
                    raw.push((id.clone(), n));
                }
            }
            Some(Value::Array(items)) => {
                for (i, n) in items.iter().enumerate() {
                    match n.get("id") {
                        Some(Value::Text(id)) => raw.push((id.clone(), n)),
                        _ => return Err(bad(format!("nodes[{i}] has no text `id`"))),
                    }
                }
            }
            _ => return Err(bad("a program needs `nodes` (a map or a list)")),
        }
        if raw.is_empty() {
            return Err(bad("the program has no nodes"));
        }
        let mut nodes = Vec::with_capacity(raw.len());
        let mut seen = HashMap::new();
        for (id, n) in raw {
            check_node_id(&id)?;
            if seen.insert(id.clone(), ()).is_some() {
                return Err(bad(format!("node {id:?} is declared twice")));
            }
            nodes.push(parse_node(&id, n, resolve)?);
        }
        Program::new(name, salt, nodes)
    }

    /// Checks `nodes` (references, outputs, cycles) and orders them.
    pub fn new(name: Option<String>, salt: String, mut nodes: Vec<Node>) -> Result<Program, PelError> {
        let defaults: HashMap<String, String> = nodes.iter().map(|n| (n.id.clone(), n.default_output())).collect();
        for n in &mut nodes {
            for i in &mut n.inputs {
                if let Ref::Node { node, output } = &mut i.from {
                    if output.is_empty() {
                        if let Some(d) = defaults.get(node.as_str()) {
                            output.clone_from(d);
                        }
                    }
                }
            }
        }
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        if by_id.len() != nodes.len() {
            let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            ids.sort_unstable();
            let twice = ids.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]).unwrap_or("?");
            return Err(bad(format!("node {twice:?} is declared twice")));
        }
        for n in &nodes {
            ops::check(n).map_err(|e| bad(format!("node {:?}: {e}", n.id)))?;
            let mut names = HashMap::new();
            for i in &n.inputs {
                if names.insert(i.name.as_str(), ()).is_some() {
                    return Err(bad(format!("node {:?}: input {:?} is declared twice", n.id, i.name)));
                }
                if let Ref::Node { node, output } = &i.from {
                    let Some(up) = by_id.get(node.as_str()) else {
                        return Err(bad(format!(
                            "node {:?}: input {:?} reads node {node:?}, which the program does not have",
                            n.id, i.name
                        )));
                    };
                    if !up.outputs().contains(output) {
                        return Err(bad(format!(
                            "node {:?}: input {:?} reads output {output:?} of node {node:?}, which has only {}",
                            n.id,
                            i.name,
                            up.outputs().join(", ")
                        )));
                    }
                }
            }
        }
        let order = topo_order(&nodes)?;
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        let nodes = order.into_iter().map(|i| slots[i].take().expect("each once")).collect();
        Ok(Program { name, salt, nodes })
    }

    /// The canonical record: nodes in id order, every reference spelled
    /// out, so that two spellings of one program have one id.
    pub fn to_record(&self) -> Record {
        let mut nodes: Vec<&Node> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let nodes = nodes
            .into_iter()
            .map(|n| {
                let inputs = n
                    .inputs
                    .iter()
                    .map(|i| {
                        let mut m = vec![(Value::text("name"), Value::text(&i.name))];
                        match &i.from {
                            Ref::Artifact(id) => m.push((Value::text("artifact"), id_value(id))),
                            Ref::Tree(id) => m.push((Value::text("tree"), id_value(id))),
                            Ref::Node { node, output } => {
                                m.push((Value::text("node"), Value::text(node)));
                                m.push((Value::text("output"), Value::text(output)));
                            }
                        }
                        if let Some(s) = &i.snapshot {
                            m.push((Value::text("snapshot"), Value::text(s)));
                        }
                        Value::Map(m)
                    })
                    .collect();
                let mut m = vec![
                    (Value::text("id"), Value::text(&n.id)),
                    (Value::text("op"), Value::text(n.op.name())),
                    (Value::text("inputs"), Value::Array(inputs)),
                ];
                if !matches!(&n.params, Value::Map(p) if p.is_empty()) {
                    m.push((Value::text("params"), n.params.clone()));
                }
                Value::Map(m)
            })
            .collect();
        let mut body = vec![(Value::text("nodes"), Value::Array(nodes))];
        if let Some(name) = &self.name {
            body.push((Value::text("name"), Value::text(name)));
        }
        if !self.salt.is_empty() {
            body.push((Value::text("salt"), Value::text(&self.salt)));
        }
        Record::new(PROGRAM_TYPE, 1, Value::Map(body))
    }

    /// Reads a stored program record.
    pub fn from_record(r: &Record) -> Result<Program, PelError> {
        if r.type_name != PROGRAM_TYPE || r.version != 1 {
            return Err(bad(format!(
                "a {} v{} record is not a program ({PROGRAM_TYPE} v1)",
                r.type_name, r.version
            )));
        }
        Program::parse(&r.body, &mut |s| {
            Err(bad(format!("unknown reference {s:?} in a stored program")))
        })
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Every artifact (and tree) the program reads from the store.
    pub fn artifacts(&self) -> Vec<ArtifactId> {
        let mut out: Vec<ArtifactId> = self
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter_map(|i| match &i.from {
                Ref::Artifact(id) | Ref::Tree(id) => Some(*id),
                Ref::Node { .. } => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn id_value(id: &ArtifactId) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

fn check_node_id(id: &str) -> Result<(), PelError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "node id {id:?}: use 1 to 128 letters, digits, `_`, `-` or `.`"
        )))
    }
}

fn parse_node(id: &str, n: &Value, resolve: &mut Resolver<'_>) -> Result<Node, PelError> {
    let Value::Map(fields) = n else {
        return Err(bad(format!("node {id:?} is not a map")));
    };
    for (k, _) in fields {
        match k {
            Value::Text(t) if ["id", "op", "inputs", "params"].contains(&t.as_str()) => {}
            other => return Err(bad(format!("node {id:?}: unknown field {other}"))),
        }
    }
    let op = match n.get("op") {
        Some(Value::Text(t)) => Op::from_name(t).ok_or_else(|| {
            bad(format!(
                "node {id:?}: unknown operation {t:?} (known: {})",
                names().join(", ")
            ))
        })?,
        _ => return Err(bad(format!("node {id:?} has no `op`"))),
    };
    let params = match n.get("params") {
        None => Value::Map(Vec::new()),
        Some(p @ Value::Map(_)) => p.clone(),
        Some(other) => return Err(bad(format!("node {id:?}: params {other} is not a map"))),
    };
    let mut inputs = Vec::new();
    let ctx = |i: &dyn std::fmt::Display, e: PelError| bad(format!("node {id:?}: input {i}: {}", e.detail()));
    match n.get("inputs") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let input = match item {
                    Value::Text(s) => parse_source(format!("in{i}"), s, resolve).map_err(|e| ctx(&i, e))?,
                    Value::Map(_) => parse_input_map(item, resolve).map_err(|e| ctx(&i, e))?,
                    other => return Err(bad(format!("node {id:?}: input {i}: {other} is not a reference"))),
                };
                inputs.push(input);
            }
        }
        Some(Value::Map(m)) => {
            for (k, r) in m {
                let Value::Text(name) = k else {
                    return Err(bad(format!("node {id:?}: input name {k} is not text")));
                };
                let Value::Text(s) = r else {
                    return Err(bad(format!("node {id:?}: input {name:?}: {r} is not a reference")));
                };
                inputs.push(parse_source(name.clone(), s, resolve).map_err(|e| ctx(name, e))?);
            }
        }
        Some(other) => return Err(bad(format!("node {id:?}: inputs {other} is neither a list nor a map"))),
    }
    for i in &inputs {
        if i.name.is_empty() || i.name.len() > 256 || i.name.chars().any(char::is_control) {
            return Err(bad(format!("node {id:?}: input name {:?} is not a name", i.name)));
        }
    }
    // A bare `@up` leaves the output empty: it names the upstream node's
    // default output, which `Program::new` fills in once every node is read.
    Ok(Node {
        id: id.to_string(),
        op,
        inputs,
        params,
    })
}

fn parse_input_map(v: &Value, resolve: &mut Resolver<'_>) -> Result<Input, PelError> {
    let name = match v.get("name") {
        Some(Value::Text(t)) => t.clone(),
        _ => return Err(bad("an input map needs a text `name`")),
    };
    let id_of = |k: &str| -> Result<Option<ArtifactId>, PelError> {
        match v.get(k) {
            None => Ok(None),
            Some(Value::Bytes(b)) if b.len() == 32 => {
                Ok(Some(ArtifactId::from_bytes(b.as_slice().try_into().unwrap())))
            }
            Some(Value::Text(t)) => t
                .parse::<ArtifactId>()
                .map(Some)
                .map_err(|_| bad(format!("{k}: {t:?} is not an artifact id"))),
            Some(other) => Err(bad(format!("{k}: {other} is not an artifact id"))),
        }
    };
    let text = |k: &str| match v.get(k) {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    if let Some(s) = text("from") {
        let mut input = parse_source(name, &s, resolve)?;
        if let Some(snap) = text("snapshot") {
            input.snapshot = Some(snap);
            check_snapshot_input(&input)?;
        }
        return Ok(input);
    }
    let from = if let Some(id) = id_of("artifact")? {
        Ref::Artifact(id)
    } else if let Some(id) = id_of("tree")? {
        Ref::Tree(id)
    } else if let Some(node) = text("node") {
        Ref::Node {
            node,
            output: text("output").unwrap_or_default(),
        }
    } else {
        return Err(bad(format!("input {name:?} has no `from`")));
    };
    let input = Input {
        name,
        from,
        snapshot: text("snapshot"),
    };
    check_snapshot_input(&input)?;
    Ok(input)
}

/// Reads an input's source: a reference ([`parse_ref`]), or
/// `snap:NAME:REF`, an artifact or tree reference read at snapshot NAME.
fn parse_source(name: String, s: &str, resolve: &mut Resolver<'_>) -> Result<Input, PelError> {
    let Some(rest) = s.strip_prefix("snap:") else {
        return Ok(Input {
            name,
            from: parse_ref(s, resolve)?,
            snapshot: None,
        });
    };
    let Some((snap, r)) = rest.split_once(':') else {
        return Err(bad(format!("{s:?} is not snap:NAME:REF")));
    };
    let input = Input {
        name,
        from: parse_ref(r, resolve)?,
        snapshot: Some(snap.to_string()),
    };
    check_snapshot_input(&input)?;
    Ok(input)
}

/// A snapshot holds stored artifacts and trees, not another node's output.
fn check_snapshot_input(i: &Input) -> Result<(), PelError> {
    match (&i.snapshot, &i.from) {
        (Some(s), _) if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) => {
            Err(bad(format!("input {:?}: {s:?} is not a snapshot name", i.name)))
        }
        (Some(s), Ref::Node { node, .. }) => Err(bad(format!(
            "input {:?}: snapshot {s:?} cannot hold the output of node {node:?}: only stored artifacts and trees are read at a snapshot",
            i.name
        ))),
        _ => Ok(()),
    }
}

/// Reads one reference: `@node`, `@node:output`, `b3:HEX` or a bare
/// 64-character id, `tree:HEX`; anything else goes to `resolve`.
pub fn parse_ref(s: &str, resolve: &mut Resolver<'_>) -> Result<Ref, PelError> {
    if let Some(rest) = s.strip_prefix('@') {
        let (node, output) = match rest.split_once(':') {
            Some((n, o)) => (n, o),
            None => (rest, ""),
        };
        if node.is_empty() {
            return Err(bad(format!("{s:?} names no node")));
        }
        return Ok(Ref::Node {
            node: node.to_string(),
            output: output.to_string(),
        });
    }
    let id = |h: &str| {
        h.parse::<ArtifactId>()
            .map_err(|_| bad(format!("{s:?}: {h:?} is not an artifact id")))
    };
    if let Some(h) = s.strip_prefix("tree:") {
        return Ok(Ref::Tree(id(h)?));
    }
    if let Some(h) = s.strip_prefix("b3:") {
        return Ok(Ref::Artifact(id(h)?));
    }
    if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Ref::Artifact(id(s)?));
    }
    match resolve(s)? {
        Some(r) => Ok(r),
        None => Err(bad(format!(
            "{s:?} is not a reference (`@node`, `@node:output`, `b3:ID`, `tree:ID`)"
        ))),
    }
}

/// Kahn's algorithm over the node references; on a cycle, names the nodes
/// in it.
fn topo_order(nodes: &[Node]) -> Result<Vec<usize>, PelError> {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut indegree = vec![0usize; nodes.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut ups: Vec<usize> = n
            .inputs
            .iter()
            .filter_map(|inp| match &inp.from {
                Ref::Node { node, .. } => index.get(node.as_str()).copied(),
                _ => None,
            })
            .collect();
        ups.sort_unstable();
        ups.dedup();
        indegree[i] = ups.len();
        for u in ups {
            readers[u].push(i);
        }
    }
    // Ready nodes come out in id order: the order depends on the program only.
    let mut ready: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in indegree.iter().enumerate() {
        if *d == 0 {
            ready.insert(&nodes[i].id, i);
        }
    }
    let mut order = Vec::with_capacity(nodes.len());
    while let Some((_, i)) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                ready.insert(&nodes[r].id, r);
            }
        }
    }
    if order.len() < nodes.len() {
        let mut stuck: Vec<&str> = (0..nodes.len())
            .filter(|i| indegree[*i] > 0)
            .map(|i| nodes[i].id.as_str())
            .collect();
        stuck.sort_unstable();
        return Err(bad(format!(
            "the program has a cycle through nodes {}",
            stuck.join(", ")
        )));
    }
    Ok(order)
}
