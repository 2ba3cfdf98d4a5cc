//! The vocabulary of programs: the operations, a node (an operation on
//! inputs with parameters) and where its inputs come from. Everything else
//! in PEL (checking, running, receipts, conversions) builds on these, and
//! they build on nothing of PEL.

use asl_core::ArtifactId;
use asl_records::cbor::Value;

/// An operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The inputs' bytes one after another.
    Concat,
    /// `length` bytes of the input from `offset` (to its end without `length`).
    Slice,
    /// The input compressed as one zstd frame at `level` (default 3).
    ZstdCompress,
    /// The input, a zstd stream, decompressed.
    ZstdDecompress,
    /// The input's digests: an `asl/digest` record (SHA-256 beside the
    /// BLAKE3 id), or with `format: sha256sum` / `b3sum` a checksum line.
    Hash,
    /// A canonical CBOR input (a record or a bare value) as JSON text.
    CborToJson,
    /// A JSON input as canonical CBOR; as a record with `type`.
    JsonToCbor,
    /// A tree of the inputs, each at the path its name gives.
    TreeBuild,
    /// The entry at `path` in the input tree.
    TreeExtract,
    /// An `asl/annotation` record giving the input `labels` and a `media_type`.
    Label,
    /// A record of `type` with `body`, each input added as a field holding its id.
    Record,
    /// The `asl/template` of the HDF5 file an `asl/hdf5-index` input describes.
    Hdf5Template,
    /// The elements of dataset `path` of an indexed HDF5 file as `format`
    /// (json or yaml), refused above `limit` bytes (see `pel::convert`).
    Hdf5Values,
    /// A record as a YAML overlay, with notes.
    CborToYaml,
    /// A YAML overlay as its canonical CBOR record (`out`) and the
    /// `asl/overlay` record of its comments and changes (`log`).
    YamlToCbor,
    /// A command in a sandbox (see `pel::exec`).
    Exec,
}

const ALL: &[(Op, &str)] = &[
    (Op::Concat, "concat"),
    (Op::Slice, "slice"),
    (Op::ZstdCompress, "zstd.compress"),
    (Op::ZstdDecompress, "zstd.decompress"),
    (Op::Hash, "hash"),
    (Op::CborToJson, "cbor.to_json"),
    (Op::JsonToCbor, "json.to_cbor"),
    (Op::TreeBuild, "tree.build"),
    (Op::TreeExtract, "tree.extract"),
    (Op::Label, "label"),
    (Op::Record, "record"),
    (Op::Hdf5Template, "hdf5.template"),
    (Op::Hdf5Values, "hdf5.values"),
    (Op::CborToYaml, "cbor.to_yaml"),
    (Op::YamlToCbor, "yaml.to_cbor"),
    (Op::Exec, "exec"),
];

impl Op {
    /// The operation called `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        ALL.iter().find(|(_, n)| *n == name).map(|(o, _)| *o)
    }

    /// Its name in programs.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(o, _)| *o == self)
            .map(|(_, n)| *n)
            .expect("every op is named")
    }
}

/// Every operation's name.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|(_, n)| *n).collect()
}

/// The outputs of a node with `op` and `params`.
pub fn outputs(op: &Op, params: &Value) -> Vec<String> {
    match op {
        Op::Exec => {
            let mut v = declared_outputs(params);
            v.push("stdout".into());
            v.push("stderr".into());
            v
        }
        Op::YamlToCbor => vec!["out".into(), "log".into()],
        _ => vec!["out".into()],
    }
}

/// The output a bare `@node` names: `out`, or for `exec` its first declared
/// output, or its stdout when it declares none.
pub fn default_output(op: &Op, params: &Value) -> String {
    match op {
        Op::Exec => declared_outputs(params)
            .into_iter()
            .next()
            .unwrap_or_else(|| "stdout".into()),
        _ => "out".into(),
    }
}

fn declared_outputs(params: &Value) -> Vec<String> {
    match params.get("outputs") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The parameters each operation allows.
/// Where an input comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    /// An artifact in the store, by id.
    Artifact(ArtifactId),
    /// A tree (an `asl/tree` record) in the store: `exec` materialises it
    /// as a directory.
    Tree(ArtifactId),
    /// An output of another node.
    Node {
        /// The node.
        node: String,
        /// Its output's name.
        output: String,
    },
}

/// One input of a node: a name (for `exec`, the path it appears at) and
/// where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Its name.
    pub name: String,
    /// Its source.
    pub from: Ref,
    /// The named snapshot an artifact or tree input is read at (seed 004:
    /// execution deterministic per artifact and snapshot); none: CURRENT.
    pub snapshot: Option<String>,
}

/// One node: an operation applied to inputs with parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Its id, unique in the program.
    pub id: String,
    /// The operation.
    pub op: Op,
    /// Inputs, in order (order matters: `concat`).
    pub inputs: Vec<Input>,
    /// Parameters (a map; what each operation takes is in `ops`).
    pub params: Value,
}

impl Node {
    /// The names of the outputs this node produces.
    pub fn outputs(&self) -> Vec<String> {
        outputs(&self.op, &self.params)
    }

    /// The output a bare `@node` reference means.
    pub fn default_output(&self) -> String {
        default_output(&self.op, &self.params)
    }
}

/// An input as a builtin sees it.
pub struct InputValue<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its artifact (a tree's id for a tree).
    pub id: ArtifactId,
    /// The snapshot it is read at; none: CURRENT.
    pub snapshot: Option<&'a str>,
}

/// Where an input's bytes are read: CURRENT, or a named snapshot (which
/// holds them even once CURRENT no longer does).
pub enum InputSource<'s> {
    /// The store's CURRENT.
    Current(&'s asl_core::Store),
    /// A snapshot of it.
    Snapshot(asl_core::SnapshotView<'s>),
}

impl<'s> InputSource<'s> {
    /// CURRENT, or the snapshot `name` of `store`.
    pub fn of(store: &'s asl_core::Store, snapshot: Option<&str>) -> asl_core::Result<InputSource<'s>> {
        Ok(match snapshot {
            None => InputSource::Current(store),
            Some(name) => InputSource::Snapshot(store.at(name)?),
        })
    }

    /// As a records source, for records and trees.
    pub fn source(&self) -> &dyn asl_records::Source {
        match self {
            InputSource::Current(s) => *s,
            InputSource::Snapshot(v) => v,
        }
    }

    /// Whether it holds `id`.
    pub fn contains(&self, id: &ArtifactId) -> asl_core::Result<bool> {
        match self {
            InputSource::Current(s) => s.contains(id),
            InputSource::Snapshot(v) => v.contains(id),
        }
    }

    /// The domain `id` belongs to, as it holds it.
    pub fn domain_of(&self, id: &ArtifactId) -> asl_core::Result<asl_core::DomainId> {
        match self {
            InputSource::Current(s) => s.domain_of(id),
            InputSource::Snapshot(v) => v.info(id)?.map(|i| i.domain).ok_or(asl_core::Error::NotFound(*id)),
        }
    }
}

impl InputValue<'_> {
    /// A verified reader over the input's bytes where it is read.
    pub fn reader(&self, store: &asl_core::Store) -> asl_core::Result<asl_core::ArtifactReader> {
        InputSource::of(store, self.snapshot)?.source().reader(&self.id)
    }
}

/// What a builtin produced: (output name, artifact) pairs.
pub type Outputs = Vec<(String, ArtifactId)>;
