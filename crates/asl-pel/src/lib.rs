//! PEL: deterministic DAG execution over artifacts, with receipts, an
//! action cache that is complete and verifiable, replay, lineage and
//! provenance export.
//!
//! A [`Program`] is a DAG of nodes, each an operation ([`ops`]) on inputs
//! (artifacts, trees, other nodes' outputs) with parameters; it is stored
//! as a canonical record, so it has an id. [`run`] executes one: each node
//! gets an action key over what decides its outputs, with inputs resolved
//! to what upstream nodes actually produced ([`receipt::action_key`]); a
//! key already answered by a trusted receipt whose outputs are all present
//! and verify is not executed again, so a change upstream that yields the
//! same bytes stops there. Every executed node leaves a signed receipt,
//! and a run record links one execution's receipts. [`replay`] re-executes
//! a run and reports every output that differs; [`provenance`] answers
//! where an artifact came from and what was made from it; [`attest`]
//! exports in-toto/SLSA and W3C PROV (feature `json`); [`convert`] is the
//! strict graph of conversions between the typed formats, whose allowed
//! edges are builtins here.
//!
//! This layer calls the formats and records layers and the store. The derived
//! query index finds receipts by action key, input and output; it is
//! rebuilt from the receipts alone.

#[cfg(feature = "json")]
pub mod attest;
mod cache;
pub mod convert;
pub mod exec;
mod failure;
pub mod keys;
pub mod node;
pub mod ops;
pub mod program;
pub mod provenance;
mod reaper;
pub mod receipt;
pub mod replay;
mod run;
mod sandbox;

pub use cache::{check_removable, held_by};
pub use keys::{Signer, Trust};
pub use program::{Input, Node, Program, Ref};
pub use receipt::{Outcome, Receipt, Run};
pub use run::{run, InputResolver, NodeReport, OnNode, Pel, RunOptions, RunReport};

use asl_records::RecordError;

/// Why a PEL operation failed (a node's own failure is not one of these:
/// it is recorded in its receipt as ERROR and the run goes on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PelError {
    /// The program is malformed; nothing ran.
    #[error("program: {0}")]
    Program(String),
    /// Inputs the program names are not in the store; nothing ran.
    #[error("missing inputs, nothing ran: {0}")]
    MissingInputs(String),
    /// A key or trust problem.
    #[error("{0}")]
    Trust(String),
    /// A removal refused: a live receipt holds the artifact.
    #[error("{0}")]
    Held(String),
    /// An attestation failed its checks.
    #[error("attestation: {0}")]
    Attestation(String),
    /// A conversion the format graph forbids; the message names the rule.
    #[error("{0}")]
    Forbidden(String),
    /// An input could not be brought into the store by the run's
    /// [`InputResolver`] (a promised artifact whose fetch failed, say);
    /// `kind` is that failure's. Nothing ran.
    #[error("input {id}: {detail}")]
    Resolve {
        /// The input.
        id: asl_core::ArtifactId,
        /// What kind of failure it was.
        kind: asl_core::ErrorKind,
        /// The failure, in one line.
        detail: String,
    },
    /// The records layer failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] asl_core::Error),
}

impl PelError {
    /// What kind of failure this is (see [`asl_core::ErrorKind`]).
    pub fn kind(&self) -> asl_core::ErrorKind {
        use asl_core::ErrorKind;
        match self {
            // A program naming inputs the store lacks is a bad program (exit
            // 2), like any other: nothing ran.
            PelError::Program(_) | PelError::MissingInputs(_) => ErrorKind::Invalid,
            PelError::Trust(_) | PelError::Held(_) | PelError::Attestation(_) | PelError::Forbidden(_) => {
                ErrorKind::Refused
            }
            PelError::Resolve { kind, .. } => *kind,
            PelError::Record(e) => e.kind(),
            PelError::Store(e) => e.kind(),
        }
    }

    /// The message without its category, for wrapping in another.
    pub fn detail(&self) -> String {
        match self {
            PelError::Program(m)
            | PelError::MissingInputs(m)
            | PelError::Trust(m)
            | PelError::Held(m)
            | PelError::Attestation(m)
            | PelError::Forbidden(m) => m.clone(),
            other => other.to_string(),
        }
    }
}
