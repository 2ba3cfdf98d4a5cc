//! The registry's table: every record type this build knows, with its
//! fields. `spec/records.md` gives each in CDDL; a test keeps the two in
//! step.

use super::{Field, Kind, RecordType};

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// Status of a run: done, refused by a check, or failed.
pub const RUN_STATUS: &[&str] = &["OK", "BLOCKED", "ERROR"];

const DECISION: &[Field] = &[
    opt("risk_level", Kind::Name),
    opt("score", Kind::Number),
    opt("block_reason", Kind::Text),
    opt("warnings", Kind::List(&Kind::Text)),
];

/// Seed 003's `RunDecision`, as pydantic writes it (unset fields null).
const RUN_DECISION: &[Field] = &[
    req("risk_level", Kind::Text),
    opt("score", Kind::OrNull(&Kind::Number)),
    opt("block_reason", Kind::OrNull(&Kind::LongText)),
    opt("warnings", Kind::List(&Kind::LongText)),
    opt("details", Kind::Any),
];

/// Seed 003's `Hashes`: SHA-256 hex of the parts, the feasibility's always.
const RUN_HASHES: &[Field] = &[
    req("feasibility_sha256", Kind::Sha256),
    opt("toolpaths_sha256", Kind::OrNull(&Kind::Sha256)),
    opt("gcode_sha256", Kind::OrNull(&Kind::Sha256)),
    opt("opplan_sha256", Kind::OrNull(&Kind::Sha256)),
];

/// Seed 003's `RunOutputs`: small outputs embedded, large ones by path.
const RUN_OUTPUTS: &[Field] = &[
    opt("gcode_text", Kind::OrNull(&Kind::LongText)),
    opt("opplan_json", Kind::Any),
    opt("gcode_path", Kind::OrNull(&Kind::LongText)),
    opt("opplan_path", Kind::OrNull(&Kind::LongText)),
    opt("preview_svg_path", Kind::OrNull(&Kind::LongText)),
];

const CHANGES: &[Field] = &[
    opt("added", Kind::List(&Kind::Id)),
    opt("removed", Kind::List(&Kind::Id)),
    opt("annotations", Kind::List(&Kind::Id)),
];

const PEL_INPUT: &[Field] = &[
    req("name", Kind::Text),
    opt("artifact", Kind::Id),
    opt("tree", Kind::Id),
    opt("node", Kind::Name),
    opt("output", Kind::Text),
    opt("snapshot", Kind::Name),
];

const PEL_NODE: &[Field] = &[
    req("id", Kind::Name),
    req("op", Kind::Name),
    req("inputs", Kind::List(&Kind::Struct(PEL_INPUT))),
    opt("params", Kind::Any),
];

const RECEIPT_INPUT: &[Field] = &[
    req("name", Kind::Text),
    req("id", Kind::Id),
    req("kind", Kind::OneOf(&["artifact", "tree"])),
    req("domain", Kind::Uint),
    opt("snapshot", Kind::Name),
];

const RECEIPT_OUTPUT: &[Field] = &[
    req("name", Kind::Text),
    req("id", Kind::Id),
    req("size", Kind::Uint),
    req("sha256", Kind::Sha256),
];

const RUN_NODE: &[Field] = &[
    req("node", Kind::Name),
    req("outcome", Kind::OneOf(RUN_STATUS)),
    req("cached", Kind::Bool),
    opt("receipt", Kind::Id),
    opt("error", Kind::Text),
];

const DIFFERENCE: &[Field] = &[
    req("node", Kind::Name),
    req("output", Kind::Text),
    req("expected", Kind::Id),
    req("expected_size", Kind::Uint),
    opt("got", Kind::Id),
    opt("got_size", Kind::Uint),
    opt("first_difference", Kind::Uint),
    opt("note", Kind::Text),
    opt("diffoscope", Kind::Id),
];

const H5_RANGE: &[Field] = &[
    req("addr", Kind::Uint),
    req("size", Kind::Uint),
    req("blake3", Kind::Id),
];

const H5_CHUNK: &[Field] = &[
    req("offset", Kind::List(&Kind::Uint)),
    req("addr", Kind::Uint),
    req("size", Kind::Uint),
    req("blake3", Kind::Id),
    req("filter_mask", Kind::Uint),
];

const H5_DATASET: &[Field] = &[
    req("path", Kind::LongText),
    req("dtype", Kind::Text),
    req("element_size", Kind::Uint),
    req("shape", Kind::List(&Kind::Uint)),
    req("layout", Kind::OneOf(&["contiguous", "chunked", "compact", "virtual"])),
    req("filters", Kind::List(&Kind::Text)),
    opt("chunk_shape", Kind::List(&Kind::Uint)),
    req("attributes", Kind::Any),
    opt("digest", Kind::Id),
    opt("element", Kind::Text),
    opt("fill", Kind::Blob),
    opt("data", Kind::Blob),
    opt("storage", Kind::Struct(H5_RANGE)),
    opt("chunks", Kind::List(&Kind::Struct(H5_CHUNK))),
];

const TEMPLATE_DATASET: &[Field] = &[
    req("path", Kind::LongText),
    req("artifact", Kind::Id),
    req("dtype", Kind::Text),
    req("shape", Kind::List(&Kind::Uint)),
    req("attributes", Kind::Any),
    opt("digest", Kind::Id),
];

const ANNOTATION: &[Field] = &[
    req("line", Kind::Uint),
    req("at", Kind::LongText),
    req("text", Kind::LongText),
];

/// Every type this build knows.
pub static REGISTRY: &[RecordType] = &[
    RecordType {
        name: "asl/tree",
        version: 1,
        doc: "a directory: its entries sorted by name, each a file, executable file or directory with size and id",
        fields: &[req("entries", Kind::TreeEntries)],
    },
    RecordType {
        name: "asl/tree",
        version: 2,
        doc: "a directory holding symbolic links: as version 1, and entries of kind l (a link: its target's artifact and length)",
        fields: &[req("entries", Kind::TreeEntriesWithLinks)],
    },
    RecordType {
        name: "asl/annotation",
        version: 1,
        doc: "labels and a media type attached to an artifact (its subject) without changing its id",
        fields: &[
            req("subject", Kind::Id),
            opt("labels", Kind::Labels),
            opt("media_type", Kind::Name),
            opt("created_at", Kind::Time),
        ],
    },
    RecordType {
        name: "asl/digest",
        version: 1,
        doc: "the SHA-256 of an artifact's bytes, so that SHA-256 digests resolve to it",
        fields: &[
            req("subject", Kind::Id),
            req("sha256", Kind::Sha256),
            req("size", Kind::Uint),
        ],
    },
    RecordType {
        name: "asl/expiry",
        version: 1,
        doc: "the time after which an artifact (its subject) is ephemeral garbage: removed by the sweep before GC unless something holds it",
        fields: &[req("subject", Kind::Id), req("expires_at", Kind::Time)],
    },
    RecordType {
        name: "asl/lineage",
        version: 1,
        doc: "one step of a history: what changed, by whom and why, linked to the step before",
        fields: &[
            req("created_at", Kind::Time),
            opt("parent", Kind::Id),
            opt("seq", Kind::Uint),
            opt("run_id", Kind::Name),
            opt("actor", Kind::Name),
            opt("summary", Kind::Text),
            opt("intent", Kind::Text),
            opt("outcome", Kind::Text),
            opt("provenance", Kind::Any),
            opt("impact", Kind::Any),
            opt("tests", Kind::Any),
            opt("diff", Kind::Id),
            opt("git_sha", Kind::Name),
            opt("tree", Kind::Id),
            opt("reverts", Kind::Id),
            opt("changes", Kind::Struct(CHANGES)),
        ],
    },
    RecordType {
        name: "asl/run",
        version: 1,
        doc: "one attempt of a tool: what was asked, what was decided, what came out",
        fields: &[
            req("run_id", Kind::Name),
            req("created_at", Kind::Time),
            req("mode", Kind::Name),
            req("tool", Kind::Name),
            req("status", Kind::OneOf(RUN_STATUS)),
            opt("request", Kind::Any),
            opt("decision", Kind::Struct(DECISION)),
            opt("input_sha256", Kind::List(&Kind::Sha256)),
            opt("output_sha256", Kind::List(&Kind::Sha256)),
            opt("outputs", Kind::List(&Kind::Id)),
            opt("meta", Kind::Any),
        ],
    },
    RecordType {
        name: "asl/run-artifact",
        version: 1,
        doc: "a run artifact as seed 003's service writes it: identity, status, request summary, server-computed feasibility, decision, the hashes it declares, outputs",
        fields: &[
            req("run_id", Kind::Name),
            req("created_at_utc", Kind::Text),
            req("mode", Kind::Text),
            req("tool_id", Kind::Text),
            req("status", Kind::OneOf(RUN_STATUS)),
            opt("request_summary", Kind::Any),
            req("feasibility", Kind::Any),
            req("decision", Kind::Struct(RUN_DECISION)),
            req("hashes", Kind::Struct(RUN_HASHES)),
            opt("outputs", Kind::Struct(RUN_OUTPUTS)),
            opt("meta", Kind::Any),
        ],
    },
    RecordType {
        name: "asl/pel-program",
        version: 1,
        doc: "a PEL program: a DAG of nodes, each an operation on inputs (artifacts, trees or other nodes' outputs) with parameters",
        fields: &[
            opt("name", Kind::Text),
            opt("salt", Kind::Text),
            req("nodes", Kind::List(&Kind::Struct(PEL_NODE))),
        ],
    },
    RecordType {
        name: "asl/pel-receipt",
        version: 1,
        doc: "one executed PEL node: its action key, resolved inputs, outputs, streams, exit and outcome; it holds its outputs",
        fields: &[
            req("action_key", Kind::Bytes(32)),
            req("program", Kind::Id),
            req("node", Kind::Name),
            req("op", Kind::Name),
            req("run_id", Kind::Name),
            req("inputs", Kind::List(&Kind::Struct(RECEIPT_INPUT))),
            req("outputs", Kind::List(&Kind::Struct(RECEIPT_OUTPUT))),
            opt("stdout", Kind::Id),
            opt("stderr", Kind::Id),
            opt("exit_code", Kind::Int),
            opt("signal", Kind::Uint),
            opt("timed_out", Kind::Bool),
            req("outcome", Kind::OneOf(&["OK", "ERROR"])),
            opt("error", Kind::Text),
            req("executor", Kind::Name),
            req("executor_version", Kind::Name),
            opt("isolation", Kind::Name),
            req("started_at", Kind::Time),
            req("finished_at", Kind::Time),
        ],
    },
    RecordType {
        name: "asl/pel-run",
        version: 1,
        doc: "one execution of a PEL program: every node's outcome and receipt, new or from the action cache",
        fields: &[
            req("run_id", Kind::Name),
            req("program", Kind::Id),
            req("created_at", Kind::Time),
            req("finished_at", Kind::Time),
            req("outcome", Kind::OneOf(RUN_STATUS)),
            req("nodes", Kind::List(&Kind::Struct(RUN_NODE))),
            opt("replay_of", Kind::Id),
        ],
    },
    RecordType {
        name: "asl/pel-batch",
        version: 1,
        doc: "receipts of one run signed as one: a signature over this record vouches for each receipt it lists",
        fields: &[req("run_id", Kind::Name), req("receipts", Kind::List(&Kind::Id))],
    },
    RecordType {
        name: "asl/pel-divergence",
        version: 1,
        doc: "what a replay of a run found: every output that came out different, with a byte-level summary",
        fields: &[
            req("subject", Kind::Id),
            opt("replay", Kind::Id),
            req("created_at", Kind::Time),
            req("checked", Kind::Uint),
            req("matched", Kind::Uint),
            req("differences", Kind::List(&Kind::Struct(DIFFERENCE))),
        ],
    },
    RecordType {
        name: "asl/hdf5-index",
        version: 1,
        doc: "what an HDF5 file (its subject) holds: groups, and each dataset's type, shape, layout, filters, attributes and byte ranges (contiguous storage or every chunk) with their BLAKE3",
        fields: &[
            req("subject", Kind::Id),
            req("size", Kind::Uint),
            req("digest", Kind::Id),
            req("undigested", Kind::List(&Kind::LongText)),
            req("groups", Kind::List(&Kind::LongText)),
            req("datasets", Kind::List(&Kind::Struct(H5_DATASET))),
            opt("group_attributes", Kind::Any),
        ],
    },
    RecordType {
        name: "asl/template",
        version: 1,
        doc: "the runtime object of an HDF5 file: name, kind, parameters and attributes, and each dataset's type, shape and digest with a reference (artifact, path) to its elements, never the elements",
        fields: &[
            req("name", Kind::LongText),
            req("kind", Kind::Text),
            req("source", Kind::Id),
            req("index", Kind::Id),
            opt("digest", Kind::Id),
            req("parameters", Kind::Any),
            req("groups", Kind::Any),
            req("datasets", Kind::List(&Kind::Struct(TEMPLATE_DATASET))),
            opt("metadata", Kind::Any),
        ],
    },
    RecordType {
        name: "asl/overlay",
        version: 1,
        doc: "a YAML overlay turned into canonical CBOR: the YAML artifact, the record it became, the fields changed from the object it mirrored, and its comments (stripped from the CBOR) with their lines",
        fields: &[
            req("overlay", Kind::Id),
            req("result", Kind::Id),
            req("type", Kind::Text),
            opt("base", Kind::Id),
            req("changed", Kind::List(&Kind::LongText)),
            req("annotations", Kind::List(&Kind::Struct(ANNOTATION))),
        ],
    },
    RecordType {
        name: "asl/cache-entry",
        version: 1,
        doc: "a build cache's key pointing at an artifact (a Bazel action result, a ccache entry): the newest entry for a key answers it",
        fields: &[
            req("cache_key", Kind::Name),
            req("value", Kind::Id),
            req("created_at", Kind::Time),
        ],
    },
    RecordType {
        name: "asl/cache-entry",
        version: 2,
        doc: "a build cache's key pointing at an artifact, as version 1, and whether the cache may remove the artifact when it evicts the entry (not when `shared`), and the content-addressed entries an action result holds",
        fields: &[
            req("cache_key", Kind::Name),
            req("value", Kind::Id),
            req("created_at", Kind::Time),
            opt("shared", Kind::Bool),
            opt("holds", Kind::List(&Kind::Sha256)),
        ],
    },
    RecordType {
        name: "rvls/pattern",
        version: 1,
        doc: "a guidance pattern imported from an RVLS learning store, labelled rvls.kind, rvls.domain, rvls.id",
        fields: &[
            req("id", Kind::LongText),
            req("strategy", Kind::LongText),
            req("embedding_weights", Kind::Any),
            req("success_rate", Kind::Number),
            req("use_count", Kind::Uint),
            req("domain", Kind::LongText),
            req("quality", Kind::Number),
            req("is_long_term", Kind::Bool),
            req("last_used", Kind::Time),
            req("labels", Kind::Labels),
        ],
    },
    RecordType {
        name: "rvls/trajectory",
        version: 1,
        doc: "a trajectory (steps and outcome) imported from an RVLS learning store",
        fields: &[
            req("id", Kind::LongText),
            req("steps", Kind::Any),
            req("outcome", Kind::LongText),
            req("duration_ms", Kind::Uint),
            req("domain", Kind::LongText),
            req("created_at", Kind::Time),
            req("labels", Kind::Labels),
        ],
    },
    RecordType {
        name: "rvls/ewc",
        version: 1,
        doc: "an EWC state (importance weights per task) imported from an RVLS learning store",
        fields: &[
            req("tasks_learned", Kind::Uint),
            req("protection_strength", Kind::Number),
            req("task_weights", Kind::Any),
            req("labels", Kind::Labels),
        ],
    },
    RecordType {
        name: "rvls/import",
        version: 1,
        doc: "one RVLS file imported: its bytes, and the records made from its lines in file order",
        fields: &[
            req("source", Kind::Id),
            req("source_name", Kind::Text),
            req("created_at", Kind::Time),
            req("patterns", Kind::Uint),
            req("trajectories", Kind::Uint),
            req("ewc", Kind::Uint),
            req("records", Kind::List(&Kind::Id)),
        ],
    },
    RecordType {
        name: "asl/schema",
        version: 1,
        doc: "a record type users register: its name, version, the type it extends, and its fields, each with a kind and whether it is required",
        fields: &[
            req("name", Kind::Name),
            req("version", Kind::Uint),
            opt("extends", Kind::OrNull(&Kind::Text)),
            opt("doc", Kind::LongText),
            opt("fields", Kind::Any),
        ],
    },
    RecordType {
        name: "asl/signature",
        version: 1,
        doc: "an ed25519 signature by `key` over the context string and the subject's id",
        fields: &[
            req("subject", Kind::Id),
            req("key", Kind::Bytes(32)),
            req("signature", Kind::Bytes(64)),
        ],
    },
];
