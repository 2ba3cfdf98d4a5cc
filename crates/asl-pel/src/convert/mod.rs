//! The strict conversion graph between the typed formats, and the PEL
//! builtins that walk its allowed edges.
//!
//! Five kinds: `hdf5` (a stored HDF5 file with its index: the immutable
//! canonical store of deep data), `dataset` (one dataset of one), `cbor` (a
//! canonical CBOR record: the runtime object), `yaml` (a human overlay of
//! one) and `json` (the lineage and audit view). Every ordered pair of
//! kinds is either an allowed edge, run as a one- or two-node PEL program
//! so it leaves signed receipts (and lineage follows conversions back to
//! the HDF5 file), or forbidden by a named rule, refused before anything
//! runs. [`edges`] is the whole table; `aslctl convert --list|--dot`
//! prints it.

use std::fmt;

use super::node::{Input, Node, Op, Ref};
use super::program::Program;

pub(crate) mod builtin;
use super::{run, Pel, PelError, RunOptions, RunReport};
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Source};
pub use builtin::LARGE_DATASET_LIMIT;

/// A kind of typed object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A stored HDF5 file with its `asl/hdf5-index`.
    Hdf5,
    /// One dataset of an indexed HDF5 file.
    Dataset,
    /// A canonical CBOR record.
    Cbor,
    /// A YAML overlay.
    Yaml,
    /// JSON text.
    Json,
}

/// Every kind, in table order.
pub const KINDS: [Kind; 5] = [Kind::Hdf5, Kind::Dataset, Kind::Cbor, Kind::Yaml, Kind::Json];

impl Kind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hdf5 => "hdf5",
            Kind::Dataset => "dataset",
            Kind::Cbor => "cbor",
            Kind::Yaml => "yaml",
            Kind::Json => "json",
        }
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Result<Kind, PelError> {
        KINDS.iter().copied().find(|k| k.name() == name).ok_or_else(|| {
            PelError::Program(format!(
                "unknown kind {name:?} (kinds: {})",
                KINDS.map(Kind::name).join(", ")
            ))
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the graph says of one ordered pair of kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: these builtins, in a chain.
    Allowed {
        /// The PEL operations run, first to last.
        ops: &'static [&'static str],
        /// What the conversion does.
        what: &'static str,
    },
    /// Forbidden by `rule`.
    Forbidden {
        /// The rule's name.
        rule: &'static str,
        /// Why.
        why: &'static str,
    },
}

const CANONICAL: Verdict = Verdict::Forbidden {
    rule: "hdf5-is-canonical",
    why: "HDF5 is the immutable canonical store of deep data; nothing is converted into it",
};
const AUDIT: Verdict = Verdict::Forbidden {
    rule: "json-is-audit-trail",
    why: "JSON is the lineage and audit trail, never a source",
};
const BY_REFERENCE: Verdict = Verdict::Forbidden {
    rule: "deep-data-by-reference",
    why: "runtime objects and lineage reference deep data by (artifact, path), never hold it: extract a template (hdf5 -> cbor)",
};

/// The verdict for `from -> to` (`None` when they are the same kind, or
/// hdf5 and dataset, which is not a conversion).
pub fn verdict(from: Kind, to: Kind) -> Option<Verdict> {
    use Kind::*;
    Some(match (from, to) {
        (a, b) if a == b => return None,
        (Hdf5, Dataset) | (Dataset, Hdf5) | (Cbor, Cbor) | (Yaml, Yaml) => return None,
        (_, Hdf5 | Dataset) => {
            if from == Json {
                AUDIT
            } else {
                CANONICAL
            }
        }
        (Json, _) => AUDIT,
        (Hdf5, Cbor) => Verdict::Allowed {
            ops: &["hdf5.template"],
            what: "template extraction: metadata and parameters, datasets referenced by (artifact, path)",
        },
        (Hdf5, Yaml) => Verdict::Allowed {
            ops: &["hdf5.template", "cbor.to_yaml"],
            what: "an overlay of the template: datasets referenced, never embedded",
        },
        (Hdf5, Json) | (Dataset, Cbor) => BY_REFERENCE,
        (Dataset, Json) => Verdict::Allowed {
            ops: &["hdf5.values"],
            what: "the elements of one dataset of at most 65536 bytes as JSON (rule large-dataset above that)",
        },
        (Dataset, Yaml) => Verdict::Allowed {
            ops: &["hdf5.values"],
            what: "the elements of one dataset of at most 65536 bytes as YAML (rule large-dataset above that)",
        },
        (Cbor, Yaml) => Verdict::Allowed {
            ops: &["cbor.to_yaml"],
            what: "an overlay: the record as commented YAML",
        },
        (Cbor, Json) => Verdict::Allowed {
            ops: &["cbor.to_json"],
            what: "the lineage view: ids stay ids, nothing referenced is copied in",
        },
        (Yaml, Cbor) => Verdict::Allowed {
            ops: &["yaml.to_cbor"],
            what: "validate against the schema, strip comments, log them and the changes in asl/overlay",
        },
        (Yaml, Json) => Verdict::Forbidden {
            rule: "yaml-through-cbor",
            why: "an overlay is validated into CBOR first; convert that CBOR to JSON",
        },
    })
}

/// Every edge of the graph: (from, to, verdict).
pub fn edges() -> Vec<(Kind, Kind, Verdict)> {
    let mut v = Vec::new();
    for a in KINDS {
        for b in KINDS {
            if let Some(x) = verdict(a, b) {
                v.push((a, b, x));
            }
        }
    }
    v
}

/// The graph in Graphviz's language: allowed edges solid and labelled with
/// their operations, forbidden ones dashed red and labelled with the rule.
pub fn dot() -> String {
    let mut s = String::from(
        "digraph conversions {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
    );
    for (a, b, v) in edges() {
        match v {
            Verdict::Allowed { ops, .. } => {
                s.push_str(&format!("  {a} -> {b} [label=\"{}\"];\n", ops.join(" + ")));
            }
            Verdict::Forbidden { rule, .. } => {
                s.push_str(&format!(
                    "  {a} -> {b} [label=\"{rule}\", style=dashed, color=red, fontcolor=red];\n"
                ));
            }
        }
    }
    s.push_str("}\n");
    s
}

/// What a conversion is asked to do.
#[derive(Clone, Debug)]
pub struct Request {
    /// The source kind.
    pub from: Kind,
    /// The target kind.
    pub to: Kind,
    /// The input: for `hdf5` and `dataset`, the file's `asl/hdf5-index`
    /// record; otherwise the object itself.
    pub input: ArtifactId,
    /// For `dataset`: its path.
    pub dataset: Option<String>,
}

/// The dataset's decoded size from its index entry, for the large-dataset rule.
fn dataset_bytes(store: &Store, index: &ArtifactId, path: &str) -> Result<u64, PelError> {
    let rec = records::get(store as &dyn Source, index)?;
    let want = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let d = match rec.body.get("datasets") {
        Some(Value::Array(a)) => a.iter().find(|d| d.get("path") == Some(&Value::text(&want))).cloned(),
        _ => None,
    }
    .ok_or_else(|| PelError::Program(format!("{want} is not a dataset of {index}")))?;
    let es = match d.get("element_size") {
        Some(Value::Unsigned(n)) => *n,
        _ => 0,
    };
    let n = match d.get("shape") {
        Some(Value::Array(s)) => s.iter().fold(1u64, |a, x| match x {
            Value::Unsigned(n) => a.saturating_mul(*n),
            _ => a,
        }),
        _ => 1,
    };
    Ok(es.saturating_mul(n))
}

/// The program that performs `req` (checked against the graph first: a
/// forbidden edge is [`PelError::Forbidden`] naming its rule).
pub fn program(store: &Store, req: &Request) -> Result<Program, PelError> {
    let ops = match verdict(req.from, req.to) {
        None => {
            return Err(PelError::Program(format!(
                "{} -> {} is not a conversion",
                req.from, req.to
            )))
        }
        Some(Verdict::Forbidden { rule, why }) => {
            return Err(PelError::Forbidden(format!(
                "{} -> {} is forbidden by rule {rule}: {why}",
                req.from, req.to
            )))
        }
        Some(Verdict::Allowed { ops, .. }) => ops,
    };
    let mut params = Value::Map(vec![]);
    if req.from == Kind::Dataset {
        let path = req
            .dataset
            .as_deref()
            .ok_or_else(|| PelError::Program("a dataset conversion needs the dataset's path".into()))?;
        let size = dataset_bytes(store, &req.input, path)?;
        if size > LARGE_DATASET_LIMIT {
            return Err(PelError::Forbidden(format!(
                "dataset -> {} is forbidden by rule large-dataset: {path} is {size} bytes, over the {LARGE_DATASET_LIMIT}-byte limit for YAML/JSON; it stays in HDF5 (read slices with `aslctl h5 cat`)",
                req.to
            )));
        }
        params = Value::Map(vec![
            (Value::text("path"), Value::text(path)),
            (Value::text("format"), Value::text(req.to.name())),
        ]);
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let from = match nodes.last() {
            None => Ref::Artifact(req.input),
            Some(prev) => Ref::Node {
                node: prev.id.clone(),
                output: "out".into(),
            },
        };
        nodes.push(Node {
            id: format!(
                "{}{}",
                op.replace('.', "_"),
                if i == 0 { String::new() } else { format!("_{i}") }
            ),
            op: Op::from_name(op).expect("the graph names known ops"),
            inputs: vec![Input {
                name: "in".into(),
                from,
                snapshot: None,
            }],
            params: if i == 0 { params.clone() } else { Value::Map(vec![]) },
        });
    }
    Program::new(
        Some(format!("convert {} -> {}", req.from, req.to)),
        String::new(),
        nodes,
    )
}

/// Runs the conversion `req`; the result is the last node's `out`.
pub fn convert(pel: &Pel<'_>, req: &Request, opts: &RunOptions) -> Result<(Option<ArtifactId>, RunReport), PelError> {
    let p = program(pel.store, req)?;
    let report = run(pel, &p, opts)?;
    let out = report
        .nodes
        .last()
        .and_then(|n| n.outputs.iter().find(|(k, _)| k == "out").map(|(_, id)| *id));
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_has_one_verdict_and_the_issue_s_rules_hold() {
        let all = edges();
        assert_eq!(all.len(), 5 * 4 - 2, "every ordered pair but hdf5<->dataset");
        let forbidden = |a, b| match verdict(a, b) {
            Some(Verdict::Forbidden { rule, .. }) => rule,
            other => panic!("{a} -> {b}: {other:?}"),
        };
        assert_eq!(forbidden(Kind::Cbor, Kind::Hdf5), "hdf5-is-canonical");
        assert_eq!(forbidden(Kind::Json, Kind::Hdf5), "json-is-audit-trail");
        assert_eq!(forbidden(Kind::Yaml, Kind::Json), "yaml-through-cbor");
        for (a, b) in [
            (Kind::Hdf5, Kind::Cbor),
            (Kind::Hdf5, Kind::Yaml),
            (Kind::Yaml, Kind::Cbor),
            (Kind::Cbor, Kind::Json),
        ] {
            assert!(matches!(verdict(a, b), Some(Verdict::Allowed { .. })), "{a} -> {b}");
        }
        let d = dot();
        assert!(
            d.contains("cbor -> hdf5 [label=\"hdf5-is-canonical\", style=dashed"),
            "{d}"
        );
        assert!(
            d.contains("hdf5 -> yaml [label=\"hdf5.template + cbor.to_yaml\"]"),
            "{d}"
        );
    }
}
