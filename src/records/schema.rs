//! The schema registry: which record types the store knows, and the check
//! a record's body must pass to be stored under a known type.
//!
//! Schemas are Rust data checked by Rust code rather than CDDL run through
//! the `cddl` crate: the checks records need beyond shapes (hex digests of
//! the right length, RFC 3339 UTC times, label size limits) are a line each
//! here and would be custom controls there, and a crate that validates
//! through another CBOR library's value type would decode our bytes a second
//! way. `spec/records.md` gives each schema in CDDL for readers, and a test
//! keeps that text in step with the table below.
//!
//! A record of a type the registry lacks is stored all the same and
//! reported as unknown; a record of a registered type at a version the
//! registry lacks, or of a known type and version that breaks its schema,
//! is refused.

use super::cbor::Value;
use super::envelope::Record;
use super::RecordError;

/// The type of one field's value.
#[derive(Debug)]
pub enum Kind {
    /// UTF-8 text, at most 4096 bytes.
    Text,
    /// Text that is not empty, at most 256 bytes, no control characters.
    Name,
    /// UTF-8 text of any length (imported data that is not ours to cut).
    LongText,
    /// A non-negative integer.
    Uint,
    /// An integer of either sign.
    Int,
    /// A byte string of exactly this length.
    Bytes(usize),
    /// A float (integers are accepted too).
    Number,
    /// `true` or `false`.
    Bool,
    /// An artifact id: a byte string of 32.
    Id,
    /// A SHA-256 digest as 64 lower-case hex characters.
    Sha256,
    /// A time, RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, optional fraction.
    Time,
    /// One of the given texts.
    OneOf(&'static [&'static str]),
    /// An array of the given kind.
    List(&'static Kind),
    /// Labels: a map of [`Kind::Name`] keys to text of 1 to 4096 bytes.
    Labels,
    /// A map with the given fields.
    Struct(&'static [Field]),
    /// The entries of a tree (see `records::tree`): `[name, kind, size,
    /// id]` each, names valid and in strictly increasing byte order.
    TreeEntries,
    /// Any CBOR value.
    Any,
}

/// One field of a map.
#[derive(Debug)]
pub struct Field {
    /// Its key.
    pub name: &'static str,
    /// Its value's kind.
    pub kind: Kind,
    /// Whether it must be present.
    pub required: bool,
}

/// A registered record type at one schema version.
#[derive(Debug)]
pub struct RecordType {
    /// The type name.
    pub name: &'static str,
    /// The schema version.
    pub version: u64,
    /// What a record of this type states.
    pub doc: &'static str,
    /// The body's fields; no others are allowed.
    pub fields: &'static [Field],
}

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
    opt("storage", Kind::Struct(H5_RANGE)),
    opt("chunks", Kind::List(&Kind::Struct(H5_CHUNK))),
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

/// The registered schema of `name` at `version`.
pub fn lookup(name: &str, version: u64) -> Option<&'static RecordType> {
    REGISTRY.iter().find(|t| t.name == name && t.version == version)
}

/// The newest registered version of `name`.
pub fn newest(name: &str) -> Option<&'static RecordType> {
    REGISTRY.iter().filter(|t| t.name == name).max_by_key(|t| t.version)
}

/// What the registry says of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Its type and version are registered and the body passes.
    Valid,
    /// Its type (or this version of it) is not registered: not checked.
    Unknown,
}

/// Checks `r` against its schema, if the registry has one.
pub fn check(r: &Record) -> Result<Checked, RecordError> {
    let Some(t) = lookup(&r.type_name, r.version) else {
        // A registered type at a version this build lacks cannot be checked
        // and is not what a writer of that type meant: refused. A type the
        // registry lacks altogether is someone else's, stored unchecked.
        let known: Vec<String> = REGISTRY
            .iter()
            .filter(|t| t.name == r.type_name)
            .map(|t| t.version.to_string())
            .collect();
        if !known.is_empty() {
            return Err(RecordError::BadType(format!(
                "type {} has no version {} in this build (registered: {})",
                r.type_name,
                r.version,
                known.join(", ")
            )));
        }
        return Ok(Checked::Unknown);
    };
    check_fields(t.fields, &r.body).map_err(|detail| RecordError::Schema {
        type_name: t.name.to_string(),
        version: t.version,
        detail,
    })?;
    Ok(Checked::Valid)
}

fn check_fields(fields: &[Field], v: &Value) -> Result<(), String> {
    let Value::Map(entries) = v else {
        return Err("the body is not a map".into());
    };
    for (k, _) in entries {
        let Value::Text(k) = k else {
            return Err(format!("key {k} is not text"));
        };
        if !fields.iter().any(|f| f.name == k) {
            return Err(format!("unknown field {k:?}"));
        }
    }
    for f in fields {
        match v.get(f.name) {
            Some(x) => check_kind(&f.kind, x).map_err(|e| format!("{}: {e}", f.name))?,
            None if f.required => return Err(format!("missing field {:?}", f.name)),
            None => {}
        }
    }
    Ok(())
}

fn check_kind(kind: &Kind, v: &Value) -> Result<(), String> {
    let text = |v: &Value| match v {
        Value::Text(t) => Ok(t.clone()),
        other => Err(format!("{other} is not text")),
    };
    match kind {
        Kind::Text => {
            let t = text(v)?;
            if t.len() > 4096 {
                return Err(format!("text of {} bytes (at most 4096)", t.len()));
            }
        }
        Kind::Name => check_name(&text(v)?)?,
        Kind::LongText => {
            text(v)?;
        }
        Kind::Uint => {
            if !matches!(v, Value::Unsigned(_)) {
                return Err(format!("{v} is not a non-negative integer"));
            }
        }
        Kind::Int => {
            if !matches!(v, Value::Unsigned(_) | Value::Negative(_)) {
                return Err(format!("{v} is not an integer"));
            }
        }
        Kind::Bytes(n) => match v {
            Value::Bytes(b) if b.len() == *n => {}
            other => return Err(format!("{other} is not a byte string of {n}")),
        },
        Kind::Number => {
            if !matches!(v, Value::Unsigned(_) | Value::Negative(_) | Value::Float(_)) {
                return Err(format!("{v} is not a number"));
            }
        }
        Kind::Bool => {
            if !matches!(v, Value::Bool(_)) {
                return Err(format!("{v} is not true or false"));
            }
        }
        Kind::Id => match v {
            Value::Bytes(b) if b.len() == 32 => {}
            other => return Err(format!("{other} is not an artifact id (32 bytes)")),
        },
        Kind::Sha256 => {
            let t = text(v)?;
            if t.len() != 64 || !t.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                return Err(format!("{t:?} is not a SHA-256 digest (64 lower-case hex characters)"));
            }
        }
        Kind::Time => check_time(&text(v)?)?,
        Kind::OneOf(allowed) => {
            let t = text(v)?;
            if !allowed.contains(&t.as_str()) {
                return Err(format!("{t:?} is not one of {}", allowed.join(", ")));
            }
        }
        Kind::List(inner) => {
            let Value::Array(items) = v else {
                return Err(format!("{v} is not an array"));
            };
            for (i, x) in items.iter().enumerate() {
                check_kind(inner, x).map_err(|e| format!("[{i}]: {e}"))?;
            }
        }
        Kind::Labels => {
            let Value::Map(entries) = v else {
                return Err(format!("{v} is not a map of labels"));
            };
            for (k, x) in entries {
                let k = text(k)?;
                check_name(&k).map_err(|e| format!("label key: {e}"))?;
                check_kind(&Kind::Text, x).map_err(|e| format!("label {k:?}: {e}"))?;
                if matches!(x, Value::Text(v) if v.is_empty()) {
                    return Err(format!("label {k:?}: empty value"));
                }
            }
        }
        Kind::Struct(fields) => check_fields(fields, v)?,
        Kind::TreeEntries => super::tree::check_entries(v)?,
        Kind::Any => {}
    }
    Ok(())
}

fn check_name(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty".into());
    }
    if t.len() > 256 {
        return Err(format!("{} bytes long (at most 256)", t.len()));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{t:?} holds a control character"));
    }
    Ok(())
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with the fields in range, so
/// that times compare correctly as text.
fn check_time(t: &str) -> Result<(), String> {
    let bad = || format!("{t:?} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    let b = t.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let s = &t[r];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d == 0 || d > days[mo as usize - 1] || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let frac = &t[19..t.len() - 1];
    if !frac.is_empty() && (!frac.starts_with('.') || frac.len() < 2 || !frac[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(extra: Vec<(&str, Value)>) -> Record {
        let mut m = vec![
            (Value::text("run_id"), Value::text("r-1")),
            (Value::text("created_at"), Value::text("2026-11-30T23:59:60Z")),
            (Value::text("mode"), Value::text("fast")),
            (Value::text("tool"), Value::text("mill")),
            (Value::text("status"), Value::text("BLOCKED")),
        ];
        for (k, v) in extra {
            m.retain(|(x, _)| x != &Value::text(k));
            m.push((Value::text(k), v));
        }
        Record::new("asl/run", 1, Value::Map(m))
    }

    #[test]
    fn a_valid_run_passes_and_each_broken_rule_is_named() {
        assert_eq!(check(&run(vec![])).unwrap(), Checked::Valid);
        let decision = Value::Map(vec![
            (Value::text("score"), Value::Float(0.5)),
            (Value::text("warnings"), Value::Array(vec![Value::text("w")])),
        ]);
        assert_eq!(check(&run(vec![("decision", decision)])).unwrap(), Checked::Valid);
        let cases: Vec<(Record, &str)> = vec![
            (run(vec![("status", Value::text("MAYBE"))]), "status"),
            (
                run(vec![("created_at", Value::text("2026-02-29T00:00:00Z"))]),
                "created_at",
            ),
            (
                run(vec![("created_at", Value::text("2026-11-30 10:00:00"))]),
                "created_at",
            ),
            (run(vec![("tool", Value::text(""))]), "tool: empty"),
            (run(vec![("surprise", Value::Null)]), "unknown field"),
            (
                run(vec![("outputs", Value::Array(vec![Value::Bytes(vec![0; 31])]))]),
                "outputs: [0]",
            ),
            (
                run(vec![("input_sha256", Value::Array(vec![Value::text("AB")]))]),
                "input_sha256",
            ),
            (
                run(vec![(
                    "decision",
                    Value::Map(vec![(Value::text("score"), Value::text("high"))]),
                )]),
                "decision: score",
            ),
            (Record::new("asl/run", 1, Value::Array(vec![])), "not a map"),
        ];
        for (r, want) in cases {
            let e = check(&r).expect_err(want).to_string();
            assert!(e.contains(want), "{e} (expected {want})");
        }
        let mut missing = run(vec![]);
        if let Value::Map(m) = &mut missing.body {
            m.retain(|(k, _)| k != &Value::text("mode"));
        }
        assert!(check(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing field \"mode\""));
    }

    #[test]
    fn labels_have_limits() {
        let ann = |labels: Vec<(Value, Value)>| {
            Record::new(
                "asl/annotation",
                1,
                Value::Map(vec![
                    (Value::text("subject"), Value::Bytes(vec![7; 32])),
                    (Value::text("labels"), Value::Map(labels)),
                ]),
            )
        };
        assert_eq!(
            check(&ann(vec![(Value::text("tool"), Value::text("mill"))])).unwrap(),
            Checked::Valid
        );
        for bad in [
            vec![(Value::text(""), Value::text("x"))],
            vec![(Value::text("k".repeat(257)), Value::text("x"))],
            vec![(Value::text("k"), Value::text("v".repeat(4097)))],
            vec![(Value::text("k"), Value::Unsigned(1))],
            vec![(Value::text("k"), Value::text(""))],
        ] {
            assert!(check(&ann(bad)).is_err());
        }
    }

    #[test]
    fn unknown_types_are_not_checked_and_unknown_versions_refused() {
        assert_eq!(
            check(&Record::new("x/other", 1, Value::Null)).unwrap(),
            Checked::Unknown
        );
        let e = check(&Record::new("asl/run", 2, Value::Null)).unwrap_err().to_string();
        assert!(e.contains("has no version 2") && e.contains("registered: 1"), "{e}");
    }

    #[test]
    fn the_spec_lists_every_registered_type() {
        let spec = include_str!("../../spec/records.md");
        for t in REGISTRY {
            let head = format!("### `{}` version {}", t.name, t.version);
            assert!(spec.contains(&head), "spec/records.md lacks {head}");
            for f in t.fields {
                assert!(
                    spec.contains(&format!("{}: ", f.name)),
                    "spec lacks field {} of {}",
                    f.name,
                    t.name
                );
            }
        }
    }
}
