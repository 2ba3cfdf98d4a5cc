//! `aslctl pel ...` and `aslctl lineage ID`: printing over `asl::pel`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::CliError;
use asl::pel::replay;
use asl::pel::{attest, Outcome, Pel, PelError, Program, Ref, RunOptions, Signer, Trust};
use asl::records::{self, Source};
use asl::{ArtifactId, Error, Store};
use clap::Subcommand;
use serde_json::json;

use crate::close_committed;
use crate::query::open_index;
use crate::record::{parse_document, read_input};

#[derive(Subcommand)]
pub(crate) enum PelCmd {
    /// Run a program (YAML or JSON): nodes answered by the action cache are
    /// not executed again. Inputs may be `file:PATH` or `dir:PATH`, stored
    /// first. Exit 1 when a node failed or was blocked.
    Run {
        /// The program file (`-`: standard input).
        program: String,
        /// Execute every node, whatever the cache holds.
        #[arg(long)]
        no_cache: bool,
        /// Worker threads for independent nodes (default: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
    },
    /// Show a run: its nodes, outcomes and receipts.
    Show {
        /// Run record id, prefix, or run id.
        run: String,
    },
    /// Show a receipt.
    Receipt {
        /// Receipt id or prefix.
        id: String,
    },
    /// Execute a run's nodes again on their recorded inputs and compare
    /// every output; exit 1 on any difference.
    Replay {
        /// Run record id, prefix, or run id.
        run: String,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// Compare (the only mode; accepted for clarity in scripts).
        #[arg(long)]
        check: bool,
    },
    /// Export provenance: a DSSE-signed in-toto statement (SLSA provenance
    /// v1), or W3C PROV-JSON with --prov.
    Attest {
        /// Run record id, prefix, or run id.
        run: Option<String>,
        /// Instead of a run: the receipt that made this artifact.
        #[arg(long)]
        artifact: Option<String>,
        /// PROV-JSON instead of in-toto.
        #[arg(long)]
        prov: bool,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a DSSE attestation: signature by this store or trusted keys,
    /// every subject and dependency present with matching digests.
    VerifyAttestation {
        /// The envelope file.
        file: PathBuf,
    },
    /// Print this store's public signing key.
    Key,
    /// Vouch for a record with this store's key (a receipt from another
    /// domain whose outputs you rebuilt, say): stores an `asl/signature`
    /// over it, which `publish` can then share.
    Sign {
        /// Record id or prefix.
        id: String,
    },
    /// The keys whose receipts this store trusts (k of n).
    #[command(subcommand)]
    Trust(TrustCmd),
}

#[derive(Subcommand)]
pub(crate) enum TrustCmd {
    /// List trusted keys and the threshold.
    Ls,
    /// Trust a key (64 hex characters).
    Add {
        /// The public key.
        key: String,
        /// A name for it.
        #[arg(long)]
        name: String,
    },
    /// Stop trusting a key, by name.
    Rm {
        /// Its name.
        name: String,
    },
    /// How many trusted keys must sign a receipt this store did not make.
    Threshold {
        /// k, at least 1.
        k: usize,
    },
}

/// The store's signing key and trust list, which every engine call needs.
pub(crate) struct Keys {
    signer: Signer,
    trust: Trust,
}

impl Keys {
    pub(crate) fn of(s: &Store) -> Result<Keys, CliError> {
        Ok(Keys {
            signer: Signer::of_store(s)?,
            trust: Trust::of_store(s)?,
        })
    }

    pub(crate) fn pel<'a>(&'a self, store: &'a Store, index: &'a records::query::QueryIndex) -> Pel<'a> {
        Pel {
            store,
            index,
            signer: &self.signer,
            trust: &self.trust,
        }
    }
}

/// A `file:` or `dir:` reference, stored.
fn store_path(s: &Store, text: &str) -> Result<Option<Ref>, PelError> {
    if let Some(p) = text.strip_prefix("file:") {
        let id = s.put_file(p).map_err(PelError::Store)?;
        return Ok(Some(Ref::Artifact(id)));
    }
    if let Some(p) = text.strip_prefix("dir:") {
        let id = records::tree::store_directory(s, Path::new(p))?;
        return Ok(Some(Ref::Tree(id)));
    }
    Ok(None)
}

/// A run record by id, prefix or run id.
fn find_run(s: &Store, index: &records::query::QueryIndex, text: &str) -> Result<ArtifactId, CliError> {
    if let Ok(id) = s.resolve(text) {
        return Ok(id);
    }
    let mut hits = index.records_with("run_id", text.as_bytes())?;
    hits.reverse();
    for (_, id) in hits {
        if records::get(s as &dyn Source, &id).is_ok_and(|r| r.type_name == asl::pel::receipt::RUN_TYPE) {
            return Ok(id);
        }
    }
    Err(Error::InvalidArgument(format!("{text:?} names no run (give a run record id or run id)")).into())
}

fn outcome_code(o: Outcome) -> ExitCode {
    if o == Outcome::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(crate) fn pel(json_out: bool, dir: &Path, cmd: &PelCmd) -> Result<ExitCode, CliError> {
    match cmd {
        PelCmd::Run {
            program,
            no_cache,
            jobs,
        } => run_program(json_out, dir, program, *no_cache, *jobs),
        PelCmd::Show { run } => {
            let s = crate::opts().open(dir)?;
            let index = open_index(&s)?;
            let id = find_run(&s, &index, run)?;
            let r = asl::pel::Run::from_record(&records::get(&s as &dyn Source, &id)?)?;
            if json_out {
                out!("{}", records::json::record_to_json(&r.to_record())["body"]);
            } else {
                out!(
                    "run {} {}  program {}  {}  {} .. {}",
                    r.run_id,
                    id,
                    r.program,
                    r.outcome.name(),
                    r.created_at,
                    r.finished_at
                );
                if let Some(o) = r.replay_of {
                    out!("replay of {o}");
                }
                for n in &r.nodes {
                    out!(
                        "{:<7} {:<6} {}  {}{}",
                        n.outcome.name(),
                        if n.cached { "cached" } else { "" },
                        n.node,
                        n.receipt.map_or("-".into(), |r| r.to_string()),
                        n.error.as_ref().map_or(String::new(), |e| format!("  ({e})"))
                    );
                }
            }
            Ok(outcome_code(r.outcome))
        }
        PelCmd::Receipt { id } => {
            let s = crate::opts().read_only(true).open(dir)?;
            let id = s.resolve(id)?;
            let r = records::get(&s as &dyn Source, &id)?;
            asl::pel::Receipt::from_record(&r)?;
            let body = &records::json::record_to_json(&r)["body"];
            if json_out {
                crate::global::json_line(body);
            } else {
                out!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        PelCmd::Replay { run, node, check: _ } => replay(json_out, dir, run, node.as_deref()),
        PelCmd::Attest {
            run,
            artifact,
            prov,
            output,
        } => attest(
            json_out,
            dir,
            run.as_deref(),
            artifact.as_deref(),
            *prov,
            output.as_deref(),
        ),
        PelCmd::VerifyAttestation { file } => verify_attestation(json_out, dir, file),
        PelCmd::Key => {
            let s = crate::opts().open(dir)?;
            let key = asl::pel::keys::hex(&Signer::of_store(&s)?.public());
            crate::close_committed(s);
            if json_out {
                crate::global::json_line(&serde_json::json!({ "key": key }));
            } else {
                out!("{key}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PelCmd::Sign { id } => {
            let s = crate::opts().open(dir)?;
            let id = s.resolve(id)?;
            asl::records::get(&s as &dyn asl::records::Source, &id)?;
            let sid = Signer::of_store(&s)?.sign(&s, &id)?;
            s.commit()?;
            crate::close_committed(s);
            if json_out {
                crate::global::json_line(&serde_json::json!({"signature": sid.to_hex(), "subject": id.to_hex()}));
            } else {
                out!("{sid}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PelCmd::Trust(t) => {
            let s = crate::opts().open(dir)?;
            let mut trust = Trust::of_store(&s)?;
            match t {
                TrustCmd::Ls => {}
                TrustCmd::Add { key, name } => {
                    let k = asl::pel::keys::parse_key(key)?;
                    trust.keys.retain(|(n, x)| n != name && *x != k);
                    trust.keys.push((name.clone(), k));
                    trust.save(&s)?;
                }
                TrustCmd::Rm { name } => {
                    let before = trust.keys.len();
                    trust.keys.retain(|(n, _)| n != name);
                    if trust.keys.len() == before {
                        return Err(Error::InvalidArgument(format!("no trusted key is named {name:?}")).into());
                    }
                    trust.save(&s)?;
                }
                TrustCmd::Threshold { k } => {
                    trust.threshold = *k;
                    trust.save(&s)?;
                }
            }
            crate::close_committed(s);
            if json_out {
                let keys = trust
                    .keys
                    .iter()
                    .map(|(n, k)| serde_json::json!({"name": n, "key": asl::pel::keys::hex(k)}));
                crate::global::json_line(
                    &serde_json::json!({"threshold": trust.threshold, "keys": keys.collect::<Vec<_>>()}),
                );
            } else {
                out!("threshold {}", trust.threshold);
                for (n, k) in &trust.keys {
                    out!("{}  {n}", asl::pel::keys::hex(k));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `aslctl pel run`: parses and checks the program, stores its `file:`/`dir:` inputs, runs it (fetching promised ones).
fn run_program(json_out: bool, dir: &Path, program: &str, no_cache: bool, jobs: usize) -> Result<ExitCode, CliError> {
    let doc = parse_document(program, &read_input(program)?)?;
    let value = records::json::from_json(&doc)?;
    // Everything the program says is checked before the store is
    // touched; `file:` and `dir:` inputs are stored only then.
    Program::parse(&value, &mut |t| {
        let found = match (t.strip_prefix("file:"), t.strip_prefix("dir:")) {
            (Some(p), _) => Path::new(p).is_file(),
            (_, Some(p)) => Path::new(p).is_dir(),
            _ => return Ok(None),
        };
        if !found {
            return Err(PelError::Program(format!(
                "{t}: no such {}",
                if t.starts_with("file:") { "file" } else { "directory" }
            )));
        }
        Ok(Some(Ref::Artifact(ArtifactId::from_bytes([0; 32]))))
    })?;
    // Like `ingest`, a run makes the store when there is none yet.
    let s = crate::global::open_creating(crate::opts(), dir)?;
    let prog = Program::parse(&value, &mut |t| store_path(&s, t))?;
    s.commit()?;
    let index = open_index(&s)?;
    let keys = Keys::of(&s)?;
    let pel = keys.pel(&s, &index);
    let opts = RunOptions {
        use_cache: !no_cache,
        jobs,
        // Inputs promised by another domain are fetched (verified) first.
        resolve_inputs: Some(asl::federation::promise::input_resolver()),
        ..RunOptions::default()
    };
    let rep = asl::pel::run(&pel, &prog, &opts)?;
    for n in &rep.nodes {
        for r in &n.rejected {
            say!("aslctl: node {}: cache entry not used: {r}", n.node);
        }
    }
    if json_out {
        let nodes: Vec<_> = rep
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "node": n.node,
                    "outcome": n.outcome.name(),
                    "cached": n.cached,
                    "receipt": n.receipt.map(|r| r.to_hex()),
                    "outputs": n.outputs.iter().map(|(k, v)| (k.clone(), json!(v.to_hex()))).collect::<serde_json::Map<_, _>>(),
                    "error": n.error,
                    "rejected": n.rejected,
                })
            })
            .collect();
        out!(
            "{}",
            json!({
                "run": rep.run.to_hex(),
                "run_id": rep.run_id,
                "program": rep.program.to_hex(),
                "outcome": rep.outcome.name(),
                "executed": rep.executed(),
                "nodes": nodes,
            })
        );
    } else {
        let width = rep.nodes.iter().map(|n| n.node.len()).max().unwrap_or(0);
        for n in &rep.nodes {
            let how = if n.outcome == Outcome::Blocked {
                "blocked"
            } else if n.cached {
                "cached"
            } else {
                "executed"
            };
            let outs: Vec<String> = n.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out!(
                "{:<7} {:<8} {:<width$}  {}{}",
                n.outcome.name(),
                how,
                n.node,
                outs.join(" "),
                n.error.as_ref().map_or(String::new(), |e| format!("  ({e})"))
            );
        }
        out!(
            "run {} {}: {} nodes, {} executed, {} cached, {}",
            rep.run_id,
            rep.run,
            rep.nodes.len(),
            rep.executed().len(),
            rep.nodes.iter().filter(|n| n.cached).count(),
            rep.outcome.name()
        );
    }
    close_committed(s);
    Ok(outcome_code(rep.outcome))
}

/// `aslctl pel replay`: runs a recorded run again and reports every output that differs.
fn replay(json_out: bool, dir: &Path, run: &str, node: Option<&str>) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let index = open_index(&s)?;
    let id = find_run(&s, &index, run)?;
    let keys = Keys::of(&s)?;
    let rep = replay::replay(&keys.pel(&s, &index), &id, node)?;
    if json_out {
        let diffs: Vec<_> = rep
            .differences
            .iter()
            .map(|d| {
                json!({
                    "node": d.node, "output": d.output,
                    "expected": d.expected.to_hex(), "expected_size": d.expected_size,
                    "got": d.got.map(|g| g.to_hex()), "got_size": d.got_size,
                    "first_difference": d.first_difference, "note": d.note,
                    "diffoscope": d.diffoscope.map(|x| x.to_hex()),
                })
            })
            .collect();
        out!(
            "{}",
            json!({"run": id.to_hex(), "replay": rep.replay.run.to_hex(), "report": rep.report.to_hex(),
                   "checked": rep.checked, "matched": rep.matched, "differences": diffs})
        );
    } else {
        for d in &rep.differences {
            out!(
                "DIFFERS {} {}: expected {} ({} bytes), got {}{}{}{}",
                d.node,
                d.output,
                d.expected,
                d.expected_size,
                d.got
                    .map_or("nothing".into(), |g| format!("{g} ({} bytes)", d.got_size.unwrap_or(0))),
                d.first_difference
                    .map_or(String::new(), |f| format!(", first difference at byte {f}")),
                d.note.as_ref().map_or(String::new(), |n| format!(" ({n})")),
                d.diffoscope
                    .map_or(String::new(), |x| format!(", diffoscope report {x}"))
            );
        }
        out!(
            "replayed {} node(s): {} matched, {} output(s) differ; report {}",
            rep.checked,
            rep.matched,
            rep.differences.len(),
            rep.report
        );
    }
    close_committed(s);
    Ok(if rep.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `aslctl pel attest`: the in-toto/SLSA (or W3C PROV) document of a run or of what made an artifact.
fn attest(
    json_out: bool,
    dir: &Path,
    run: Option<&str>,
    artifact: Option<&str>,
    prov: bool,
    output: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let index = open_index(&s)?;
    let signer = Signer::of_store(&s)?;
    let scope = match (run, artifact) {
        (Some(r), None) => attest::of_run(&s, &find_run(&s, &index, r)?),
        (None, Some(a)) => attest::of_artifact(&s, &index, &s.resolve(a)?),
        _ => return Err(Error::InvalidArgument("give a run or --artifact ID (one of them)".into()).into()),
    }?;
    let doc = if prov {
        attest::prov(&s, &scope, &signer.public())?
    } else {
        attest::envelope(&attest::statement(&s, &scope, &signer.public())?, &signer)
    };
    // The document is JSON either way: one line under --json.
    let text = if json_out {
        doc.to_string()
    } else {
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    };
    match output {
        Some(p) => std::fs::write(p, format!("{text}\n")).map_err(|e| Error::Io {
            context: format!("write {}", p.display()),
            source: e,
        })?,
        None => out!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl pel verify-attestation`: checks a DSSE envelope against the store's trusted keys.
fn verify_attestation(json_out: bool, dir: &Path, file: &Path) -> Result<ExitCode, CliError> {
    let bytes = std::fs::read(file).map_err(|e| Error::Io {
        context: format!("read {}", file.display()),
        source: e,
    })?;
    let s = crate::opts().read_only(true).open(dir)?;
    let own = Signer::of_store(&s)?.public();
    let trust = Trust::of_store(&s)?;
    let v = attest::verify(&s, &own, &trust, &bytes)?;
    if json_out {
        out!(
            "{}",
            json!({"ok": v.problems.is_empty(), "subjects": v.subjects, "dependencies": v.dependencies,
                   "signers": v.signers.iter().map(|k| asl::pel::keys::hex(k)).collect::<Vec<_>>(),
                   "problems": v.problems})
        );
    } else {
        for p in &v.problems {
            out!("FAIL {p}");
        }
        if v.problems.is_empty() {
            out!(
                "ok: signed by {}; {} subject(s) and {} dependencies present and matching",
                v.signers
                    .iter()
                    .map(|k| asl::pel::keys::hex(k))
                    .collect::<Vec<_>>()
                    .join(", "),
                v.subjects,
                v.dependencies
            );
        }
    }
    Ok(if v.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
