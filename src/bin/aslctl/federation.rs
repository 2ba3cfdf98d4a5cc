//! `aslctl domain|publish|unpublish`: the store as a domain, and what it
//! publishes to other domains (`asl::federation`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::CliError;
use asl::federation::{publish, Domain};
use asl::pel::keys::hex;
use asl::{ArtifactId, Error, Store};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum DomainCmd {
    /// The store's domain: id, name, public key, latest manifest.
    Show,
    /// Give the store its domain identity (a random 128-bit id) and a name;
    /// otherwise made on first publish with the directory's name.
    Init {
        /// 1 to 64 of letters, digits, '-', '_', '.'.
        #[arg(long)]
        name: String,
    },
    /// The latest publication manifest: its sequence number, the published
    /// artifacts (`--ids`), its signature checked.
    Manifest {
        /// List the published ids too.
        #[arg(long)]
        ids: bool,
    },
    /// Co-sign the latest manifest with another key (a release manager's,
    /// an auditor's): the signature is published beside the manifest, for
    /// remotes whose trust policy asks for it. Valid for this manifest only.
    Cosign {
        /// The co-signer's key file (made by `aslctl domain keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Make a new signing key file (mode 0600) for a co-signer; prints its
    /// public key. Needs no store.
    Keygen {
        /// Where to write it (never overwritten).
        file: PathBuf,
    },
}

/// What to publish or unpublish.
#[derive(Args)]
pub(crate) struct Targets {
    /// Ids or unique id prefixes.
    ids: Vec<String>,
    /// Every artifact of this snapshot.
    #[arg(long)]
    snapshot: Option<String>,
    /// This tree and everything under it.
    #[arg(long)]
    tree: Option<String>,
    /// Publish also what the records among them name, recursively (without
    /// it, a record naming an internal artifact is refused: publishing it
    /// would tell other domains that artifact exists).
    #[arg(long)]
    closure: bool,
}

fn targets(s: &Store, t: &Targets) -> Result<Vec<ArtifactId>, CliError> {
    let mut ids = Vec::new();
    for text in &t.ids {
        ids.push(s.resolve(text)?);
    }
    if let Some(name) = &t.snapshot {
        ids.extend(publish::snapshot_members(s, name)?);
    }
    if let Some(tree) = &t.tree {
        ids.extend(publish::tree_members(s, &s.resolve(tree)?)?);
    }
    if ids.is_empty() {
        return Err(Error::InvalidArgument("name ids, --snapshot or --tree".into()).into());
    }
    Ok(ids)
}

pub(crate) fn change(json_out: bool, dir: &Path, t: &Targets, publishing: bool) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let ids = targets(&s, t)?;
    let r = if publishing && t.closure {
        publish::publish_closure(&s, &ids)?
    } else if publishing {
        publish::publish(&s, &ids)?
    } else if t.closure {
        return Err(Error::InvalidArgument("--closure goes with publish".into()).into());
    } else {
        publish::unpublish(&s, &ids)?
    };
    let verb = if publishing { "published" } else { "unpublished" };
    if json_out {
        out!(
            "{}",
            json!({
                "changed": r.changed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                "manifest": r.manifest.map(|m| m.0.to_hex()),
                "signature": r.manifest.map(|m| m.1.to_hex()),
                "seq": r.seq, "published": r.total,
            })
        );
    } else {
        for id in &r.changed {
            out!("{verb} {id}");
        }
        match r.manifest {
            Some((m, _)) => out!("manifest {} ({m}): {} artifacts published", r.seq, r.total),
            None => out!(
                "nothing changed; manifest {} stands ({} artifacts published)",
                r.seq,
                r.total
            ),
        }
    }
    crate::close_committed(s);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn domain(json_out: bool, dir: &Path, cmd: &DomainCmd) -> Result<ExitCode, CliError> {
    match cmd {
        DomainCmd::Keygen { file } => {
            let k = asl::pel::Signer::create_file(file)?;
            if json_out {
                out!(
                    "{}",
                    json!({"file": file.display().to_string(), "key": hex(&k.public())})
                );
            } else {
                out!("{}", hex(&k.public()));
            }
        }
        DomainCmd::Cosign { key } => {
            let signer = asl::pel::Signer::load(key)?;
            let s = crate::opts().open(dir)?;
            let sid = asl::federation::cosign::cosign(&s, &signer)?;
            let (mid, m) = publish::latest(&s)?.ok_or_else(|| Error::InvalidArgument("no manifest".into()))?;
            if json_out {
                out!(
                    "{}",
                    json!({"manifest": mid.to_hex(), "seq": m.seq, "key": hex(&signer.public()), "signature": sid.to_hex()})
                );
            } else {
                out!(
                    "co-signed manifest {} ({mid}) with key {}: signature {sid}",
                    m.seq,
                    hex(&signer.public())
                );
            }
            crate::close_committed(s);
        }
        DomainCmd::Init { name } => {
            // The first thing done in a new project: the store is made too,
            // as a first ingest would make it.
            let s = crate::global::open_creating(crate::opts(), dir)?;
            let d = Domain::init(&s, name)?;
            let key = Domain::public_key(&s)?;
            if json_out {
                out!("{}", json!({"id": d.id_hex(), "name": d.name, "key": hex(&key)}));
            } else {
                out!("domain {} ({}), key {}", d.name, d.id_hex(), hex(&key));
            }
            crate::close_committed(s);
        }
        DomainCmd::Show => {
            let s = crate::opts().read_only(true).open(dir)?;
            let Some(d) = Domain::of_store(&s)? else {
                return Err(Error::InvalidArgument(
                    "the store has no domain yet (aslctl domain init --name NAME)".into(),
                )
                .into());
            };
            let key = Domain::public_key(&s)?;
            let latest = publish::latest(&s)?;
            if json_out {
                out!(
                    "{}",
                    json!({"id": d.id_hex(), "name": d.name, "key": hex(&key),
                           "manifest": latest.as_ref().map(|(id, _)| id.to_hex()),
                           "seq": latest.as_ref().map(|(_, m)| m.seq)})
                );
            } else {
                out!("domain   {}", d.name);
                out!("id       {}", d.id_hex());
                out!("key      {}", hex(&key));
                match latest {
                    Some((id, m)) => out!("manifest {} ({id}), {} artifacts published", m.seq, m.published.len()),
                    None => out!("manifest none (nothing published yet)"),
                }
                for c in asl::federation::cosign::cosignatures(&s) {
                    out!("cosig    {c}");
                }
            }
        }
        DomainCmd::Manifest { ids } => {
            let s = crate::opts().read_only(true).open(dir)?;
            let Some((id, m)) = publish::latest(&s)? else {
                return Err(Error::InvalidArgument("nothing published yet".into()).into());
            };
            let sig = publish::signature_of(&s, &id)?
                .ok_or_else(|| Error::InvalidArgument(format!("manifest {id} has no signature in the store")))?;
            let key = Domain::public_key(&s)?;
            publish::check_manifest(&s.get(&id)?, &s.get(&sig)?, &key, m.seq - 1)
                .map_err(|e| Error::InvalidArgument(format!("manifest {id}: {e}")))?;
            if json_out {
                out!(
                    "{}",
                    json!({"manifest": id.to_hex(), "signature": sig.to_hex(), "seq": m.seq,
                           "domain": hex(&m.domain), "name": m.name, "key": hex(&m.key),
                           "prev": m.prev.map(|p| p.to_hex()), "created_at": m.created_at,
                           "published": m.published.iter().map(|i| i.to_hex()).collect::<Vec<_>>()})
                );
            } else {
                out!("manifest {} {id} (signature {sig}: good)", m.seq);
                out!(
                    "domain {} ({}), {} artifacts published, {}",
                    m.name,
                    hex(&m.domain),
                    m.published.len(),
                    m.created_at
                );
                if *ids {
                    for p in &m.published {
                        out!("{p}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub(crate) enum RemoteCmd {
    /// Add a remote: another store's directory, or an `aslctl serve` URL.
    Add {
        /// Local name.
        name: String,
        /// A directory, or http(s)://host:port.
        url: String,
        /// Bearer token for an HTTP remote.
        #[arg(long)]
        token: Option<String>,
        /// The key its manifests must be signed with (64 hex); else the
        /// key of the first manifest fetched is pinned.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Set a remote's trust policy: which co-signers' keys count, and how
    /// many distinct keys (the domain's counted as one) must have signed a
    /// manifest before it is accepted.
    Trust {
        /// The remote's name.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List remotes: name, location, pinned key, last manifest accepted.
    List,
    /// Forget a remote (what was fetched from it stays).
    Remove {
        /// Its name.
        name: String,
    },
}

/// A remote's trust policy as given on the command line.
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// A co-signer's public key (64 hex); repeat for several.
    #[arg(long = "cosigner")]
    cosigners: Vec<String>,
    /// Distinct keys that must have signed a manifest, the domain's own
    /// counted as one (default 1: the domain's alone).
    #[arg(long, default_value_t = 1)]
    threshold: usize,
}

impl PolicyArgs {
    fn policy(&self) -> Result<asl::federation::cosign::Policy, CliError> {
        let cosigners = self
            .cosigners
            .iter()
            .map(|k| asl::pel::keys::parse_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let p = asl::federation::cosign::Policy {
            cosigners,
            threshold: self.threshold,
        };
        p.check()?;
        Ok(p)
    }
}

pub(crate) fn remote(json_out: bool, dir: &Path, cmd: &RemoteCmd) -> Result<ExitCode, CliError> {
    use asl::federation::remote;
    match cmd {
        RemoteCmd::Trust { name, policy } => {
            let s = crate::opts().open(dir)?;
            let mut r = remote::get(&s, name)?;
            r.policy = policy.policy()?;
            remote::update(&s, &r)?;
            crate::close_committed(s);
            if json_out {
                crate::global::json_line(&remote_json(&r));
            } else {
                out!(
                    "remote {name}: manifests need {} of {} keys (the domain's and {} co-signer(s))",
                    r.policy.threshold,
                    r.policy.cosigners.len() + 1,
                    r.policy.cosigners.len()
                );
            }
        }
        RemoteCmd::Add {
            name,
            url,
            token,
            key,
            policy,
        } => {
            let policy = policy.policy()?;
            // A new store may start by fetching from another.
            let s = crate::global::open_creating(crate::opts(), dir)?;
            let key = key.as_deref().map(asl::pel::keys::parse_key).transpose()?;
            // A directory is kept absolute, so the store can be used from anywhere.
            let url = if url.starts_with("http://") || url.starts_with("https://") {
                url.clone()
            } else {
                std::fs::canonicalize(url)
                    .map_err(|e| Error::InvalidArgument(format!("{url}: {e}")))?
                    .display()
                    .to_string()
            };
            remote::add(
                &s,
                remote::Remote {
                    name: name.clone(),
                    url,
                    key,
                    domain: None,
                    seq: 0,
                    token: token.clone(),
                    policy,
                },
            )?;
            let r = remote::get(&s, name)?;
            crate::close_committed(s);
            if json_out {
                crate::global::json_line(&remote_json(&r));
            } else {
                out!("added remote {name}");
            }
        }
        RemoteCmd::List => {
            let s = crate::opts().read_only(true).open(dir)?;
            let list = remote::remotes(&s)?;
            if json_out {
                crate::global::json_lines(list.iter().map(remote_json));
            } else {
                for r in list {
                    let key = r.key.map_or("-".into(), |k| hex(&k));
                    out!(
                        "{}\t{}\tkey {key}\tmanifest {}\tneeds {} of {} keys",
                        r.name,
                        r.url,
                        r.seq,
                        r.policy.threshold,
                        r.policy.cosigners.len() + 1
                    );
                }
            }
        }
        RemoteCmd::Remove { name } => {
            let s = crate::opts().open(dir)?;
            remote::remove(&s, name)?;
            crate::close_committed(s);
            if json_out {
                crate::global::json_line(&json!({ "removed": name }));
            } else {
                out!("removed remote {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A remote as `remote list --json` shows it (never its token).
fn remote_json(r: &asl::federation::remote::Remote) -> serde_json::Value {
    json!({"name": r.name, "url": r.url, "key": r.key.map(|k| hex(&k)),
           "domain": r.domain.map(|d| hex(&d)), "seq": r.seq,
           "cosigners": r.policy.cosigners.iter().map(|k| hex(k)).collect::<Vec<_>>(),
           "threshold": r.policy.threshold})
}

fn report_json(name: &str, r: &asl::federation::sync::FetchReport) -> serde_json::Value {
    json!({"remote": name, "seq": r.seq, "listed": r.listed, "present": r.present, "fetched": r.fetched,
           "bytes": r.bytes, "refused": r.refused, "resumed": r.resumed, "reused": r.reused, "promised": r.promised,
           "import": r.import.map(|i| i.to_hex()),
           "unavailable": r.unavailable.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
           "manifest_refused": r.manifest_refused})
}

pub(crate) fn fetch(json_out: bool, dir: &Path, names: &[String], lazy: bool) -> Result<ExitCode, CliError> {
    use asl::federation::{remote, sync};
    let s = crate::opts().open(dir)?;
    let mut first = Vec::new();
    for name in names {
        if remote::get(&s, name)?.key.is_none() {
            first.push(name.clone());
        }
    }
    let bar = crate::global::Bar::new(json_out);
    let opts = sync::FetchOptions {
        lazy,
        progress: Some(&|p| bar.step(p)),
    };
    let reports = match names {
        _ if lazy && names.len() > 1 => return Err(Error::InvalidArgument("--lazy takes one remote".into()).into()),
        [one] => vec![(one.clone(), sync::fetch_with(&s, one, &opts)?)],
        many => sync::fetch_many_with(&s, many, &opts)?,
    };
    drop(bar);
    for name in &first {
        let rem = remote::get(&s, name)?;
        say!(
            "aslctl: first fetch from {name}: pinned its key {} (domain {})",
            rem.key.map_or("-".into(), |k| hex(&k)),
            rem.domain.map_or("-".into(), |d| hex(&d))
        );
    }
    if json_out {
        crate::global::json_lines(reports.iter().map(|(n, r)| report_json(n, r)));
    } else {
        for (name, r) in &reports {
            if let Some(why) = &r.manifest_refused {
                out!("not fetched from {name}: its manifest was refused ({why}); the other remotes were used");
                continue;
            }
            out!(
                "fetched from {name} (manifest {}): {} artifacts listed, {} already here, {} fetched ({} bytes){}",
                r.seq,
                r.listed,
                r.present,
                r.fetched,
                r.bytes,
                if r.refused > 0 {
                    format!(", {} sent wrong and taken from another remote", r.refused)
                } else {
                    String::new()
                }
            );
            if r.promised > 0 {
                out!(
                    "  {} promised: fetched when first read (or by a fetch without --lazy)",
                    r.promised
                );
            }
            if r.reused > 0 {
                out!(
                    "  {} bytes of large artifacts were copied from chunks already here, not sent",
                    r.reused
                );
            }
            if r.resumed > 0 {
                out!(
                    "  {} bytes of large artifacts were verified by an earlier fetch and not sent again",
                    r.resumed
                );
            }
        }
    }
    crate::close_committed(s);
    // Listed but not there to send: said once per artifact, and the exit
    // code tells a script the fetch is not complete.
    let mut incomplete = false;
    for (name, r) in &reports {
        for id in &r.unavailable {
            eprintln!("aslctl: remote {name} lists {id} but does not have it (removed there?); not fetched");
            incomplete = true;
        }
    }
    Ok(if incomplete {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn push(json_out: bool, dir: &Path, name: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let bar = crate::global::Bar::new(json_out);
    let r = asl::federation::sync::push_with(&s, name, Some(&|p| bar.step(p)))?;
    drop(bar);
    if json_out {
        out!(
            "{}",
            json!({"published": r.published, "sent": r.sent, "bytes": r.bytes})
        );
    } else {
        out!(
            "pushed to {name}: {} of {} published artifacts sent ({} bytes), the rest already there",
            r.sent,
            r.published,
            r.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn origin(json_out: bool, dir: &Path, text: &str) -> Result<ExitCode, CliError> {
    use asl::federation::origin::{origin, Origin};
    use asl::federation::promise;
    let s = crate::opts().read_only(true).open(dir)?;
    let id = promise::resolve(&s, text)?;
    let o = origin(&s, &id)?;
    let (v, line) = match &o {
        Origin::Local => (
            json!({"id": id.to_hex(), "origin": "local"}),
            format!("{id}  made in this domain"),
        ),
        Origin::Imported {
            domain, name, import, ..
        } => {
            let mut v = json!({"id": id.to_hex(), "origin": "imported", "domain": hex(domain), "domain_name": name});
            let mut line = format!("{id}  from domain {name} ({})", hex(domain));
            if let Some((remote, rec, manifest, seq)) = import {
                v["remote"] = json!(remote);
                v["import"] = json!(rec.to_hex());
                v["manifest"] = json!(manifest.to_hex());
                v["seq"] = json!(seq);
                line +=
                    &format!(", imported from remote {remote} under manifest {seq} ({manifest}), import record {rec}");
            } else {
                line += ", pushed here (no import record lists it)";
            }
            (v, line)
        }
        Origin::Promised(p) => (
            json!({"id": id.to_hex(), "origin": "promised", "domain": hex(&p.domain), "remote": p.remote,
                   "manifest": p.manifest.to_hex(), "import": p.import.to_hex()}),
            format!(
                "{id}  promised by remote {} (domain {}, manifest {}): not fetched yet",
                p.remote,
                hex(&p.domain),
                p.manifest
            ),
        ),
    };
    if json_out {
        out!("{v}");
    } else {
        out!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
