//! `aslctl snapshot …`, `pin`, `unpin`, `pins` and `gc`: parsing and printing
//! only; the work is in the library.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::CliError;
use crate::global::utc_time;
use asl::records::time::parse_duration;
use asl::{ArtifactId, ArtifactInfo, Error, GcOptions, GcReport, Retention, SnapshotMeta};
use clap::Subcommand;
use serde_json::{json, Value};

use super::human;

#[derive(Subcommand)]
pub enum SnapCmd {
    /// Take a named snapshot of CURRENT; prints its identity.
    Create {
        /// Snapshot name (letters, digits, '.', '_', '-').
        name: String,
        /// Snapshot only this tree (id or prefix): the tree, its subtrees and
        /// their files, e.g. the tree `ingest --tree DIR` printed.
        #[arg(long)]
        tree: Option<String>,
        /// Also record, signed, which other domains' manifests its imported
        /// artifacts came under (a federated snapshot; see `snapshot verify`).
        #[arg(long, conflicts_with = "tree")]
        federated: bool,
        /// Also snapshot the ZFS dataset holding the store, as
        /// `<dataset>@asl-NAME`, once the ASL snapshot is durable (so the
        /// image holds it); refused, with nothing made, off ZFS.
        #[cfg(feature = "zfs")]
        #[arg(long, conflicts_with = "federated")]
        zfs: bool,
    },
    /// Roll the ZFS dataset holding the store back to snapshot NAME's ZFS
    /// snapshot (taken with `create --zfs`): the whole store as it was
    /// then, snapshot NAME in it. The store's lock is held throughout.
    #[cfg(feature = "zfs")]
    Restore {
        /// Snapshot name.
        name: String,
        /// Let ZFS destroy the snapshots taken after it (ASL snapshots made
        /// after it are gone from the rolled-back store anyway).
        #[arg(long)]
        destroy_newer: bool,
    },
    /// Check a federated snapshot offline: its signature, the other
    /// domains' manifests, that each import is listed by one, and that every
    /// member reads back whole. Exit 1 when anything is wrong.
    Verify {
        /// Snapshot name.
        name: String,
    },
    /// List snapshots, oldest first.
    List,
    /// Show one snapshot.
    Show {
        /// Snapshot name.
        name: String,
    },
    /// Artifacts added and removed from snapshot A to snapshot B.
    Diff {
        /// Older snapshot.
        a: String,
        /// Newer snapshot.
        b: String,
    },
    /// Delete a snapshot (its artifacts become garbage unless held elsewhere).
    Delete {
        /// Snapshot name.
        name: String,
    },
    /// Delete the snapshots no keep rule keeps.
    Prune {
        /// Keep the newest N snapshots.
        #[arg(long)]
        keep_last: Option<usize>,
        /// Keep snapshots newer than this (e.g. 30d, 12h, 2w, 90m, 45s).
        #[arg(long, value_parser = parse_duration)]
        keep_within: Option<Duration>,
        /// Keep this snapshot by name (repeatable).
        #[arg(long = "keep", value_name = "NAME")]
        keep_names: Vec<String>,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl SnapCmd {
    /// Whether it asks for a ZFS snapshot too (which only a process on the
    /// store's machine can take, not a server on its behalf).
    #[cfg(any(feature = "server", feature = "zfs"))]
    pub(crate) fn wants_zfs(&self) -> bool {
        #[cfg(feature = "zfs")]
        if let SnapCmd::Create { zfs, .. } = self {
            return *zfs;
        }
        false
    }
}

fn meta_json(m: &SnapshotMeta) -> Value {
    Made::from(m.clone()).json()
}

/// A snapshot just made or deleted, in-process or through a server.
pub(crate) struct Made {
    name: String,
    identity: String,
    created: u64,
    artifacts: u64,
    bytes: u64,
}

impl Made {
    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "identity": self.identity,
            "created_at": utc_time(self.created),
            "artifacts": self.artifacts,
            "bytes": self.bytes,
        })
    }
}

impl From<SnapshotMeta> for Made {
    fn from(m: SnapshotMeta) -> Made {
        Made {
            name: m.name,
            identity: m.identity.to_string(),
            created: m.created,
            artifacts: m.artifacts,
            bytes: m.bytes,
        }
    }
}

#[cfg(feature = "server")]
impl From<asl::client::Snapshot> for Made {
    fn from(m: asl::client::Snapshot) -> Made {
        Made {
            name: m.name,
            identity: m.identity,
            created: m.created,
            artifacts: m.artifacts,
            bytes: m.bytes,
        }
    }
}

pub(crate) fn print_created(json_out: bool, m: &Made) {
    if json_out {
        out!("{}", m.json());
    } else {
        out!("{} {}", m.identity, m.name);
        say!("snapshot {}: {} artifacts, {}", m.name, m.artifacts, human(m.bytes));
    }
}

pub(crate) fn print_deleted(json_out: bool, m: &Made) {
    if json_out {
        out!("{}", json!({"deleted": m.json()}));
    } else {
        out!("deleted {}", m.name);
    }
}

fn info_json(a: &ArtifactInfo) -> Value {
    json!({"id": a.id.to_hex(), "len": a.len})
}

/// `snapshot create --federated`: a snapshot that names and signs the other domains it draws on.
fn create_federated(json_out: bool, dir: &Path, name: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let c = asl::federation::fsnap::create(&s, name)?;
    crate::close_committed(s);
    if json_out {
        out!(
            "{}",
            serde_json::json!({"id": c.id.to_hex(), "signature": c.signature.to_hex(),
                "snapshot": meta_json(&c.meta), "sources": c.sources.len()})
        );
    } else {
        out!("{} {}", c.id, c.meta.name);
        say!(
            "federated snapshot {}: {} artifacts, {}, drawing on {} other domains",
            c.meta.name,
            c.meta.artifacts,
            human(c.meta.bytes),
            c.sources.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `snapshot verify`: reads back every member of a federated snapshot and its sources; exit 1 on a problem.
fn verify_federated(json_out: bool, dir: &Path, name: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let v = asl::federation::fsnap::verify(&s, name)?;
    if json_out {
        out!(
            "{}",
            serde_json::json!({"id": v.id.map(|i| i.to_hex()), "members": v.members,
                "imported": v.imported, "sources": v.sources, "promised": v.promised,
                "problems": v.problems})
        );
    } else {
        for p in &v.problems {
            out!("problem: {p}");
        }
        out!(
            "federated snapshot {name}: {} members read back ({} imported), {} promised and fetchable, {} source manifests: {}",
            v.members,
            v.imported,
            v.promised,
            v.sources,
            if v.problems.is_empty() { "good" } else { "BAD" }
        );
    }
    if !v.problems.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn snapshot(json_out: bool, dir: &Path, cmd: &SnapCmd) -> Result<ExitCode, CliError> {
    let read_only = || crate::opts().read_only(true).open(dir);
    match cmd {
        SnapCmd::Create {
            name, federated: true, ..
        } => return create_federated(json_out, dir, name),
        SnapCmd::Verify { name } => return verify_federated(json_out, dir, name),
        #[cfg(feature = "zfs")]
        SnapCmd::Restore { name, destroy_newer } => {
            let full = asl::zfs_rollback(dir, name, *destroy_newer)?;
            // The store as the image holds it, opened (and recovered) now.
            let s = crate::opts().open(dir)?;
            let m = s.snapshots().get(name)?;
            crate::close_committed(s);
            if json_out {
                out!("{}", json!({"restored": full, "snapshot": meta_json(&m)}));
            } else {
                out!("restored {full}: the store as snapshot {name} was taken");
            }
        }
        SnapCmd::Create { name, tree, .. } => {
            #[cfg(feature = "zfs")]
            let s = crate::opts().zfs(cmd.wants_zfs()).open(dir)?;
            #[cfg(not(feature = "zfs"))]
            let s = crate::opts().open(dir)?;
            let m = match tree {
                Some(t) => {
                    let id = s.resolve(t)?;
                    asl::records::tree::snapshot_tree(&s, name, &id)?
                }
                None => s.snapshots().create(name)?,
            };
            crate::close_committed(s);
            print_created(json_out, &Made::from(m));
        }
        SnapCmd::List => {
            let s = read_only()?;
            let mut all = s.snapshots().list();
            all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
            #[cfg(feature = "zfs")]
            let zfs = s.snapshots().zfs_list()?;
            #[cfg(not(feature = "zfs"))]
            let zfs = std::collections::BTreeMap::<String, String>::new();
            if json_out {
                let v = all.iter().map(|m| {
                    let mut v = meta_json(m);
                    if let Some(z) = zfs.get(&m.name) {
                        v["zfs"] = json!(z);
                    }
                    v
                });
                crate::global::json_lines(v);
            } else {
                for m in &all {
                    let z = zfs.get(&m.name).map(|z| format!("  {z}")).unwrap_or_default();
                    out!(
                        "{}  {}  {:>10} artifacts  {:>10}  {}{z}",
                        utc_time(m.created),
                        &m.identity.to_string()[..16],
                        m.artifacts,
                        human(m.bytes),
                        m.name
                    );
                }
            }
        }
        SnapCmd::Show { name } => {
            let m = read_only()?.snapshots().get(name)?;
            if json_out {
                out!("{}", meta_json(&m));
            } else {
                out!("name       {}", m.name);
                out!("identity   {}", m.identity);
                out!("created    {} ({})", utc_time(m.created), m.created);
                out!("artifacts  {}", m.artifacts);
                out!("bytes      {} ({})", m.bytes, human(m.bytes));
            }
        }
        SnapCmd::Diff { a, b } => {
            let d = read_only()?.snapshots().diff(a, b)?;
            if json_out {
                out!(
                    "{}",
                    json!({
                        "added": d.added.iter().map(info_json).collect::<Vec<_>>(),
                        "removed": d.removed.iter().map(info_json).collect::<Vec<_>>(),
                    })
                );
            } else {
                for x in &d.added {
                    out!("+ {} {}", x.id, x.len);
                }
                for x in &d.removed {
                    out!("- {} {}", x.id, x.len);
                }
                say!("{} added, {} removed", d.added.len(), d.removed.len());
            }
        }
        SnapCmd::Delete { name } => {
            let s = crate::opts().open(dir)?;
            let m = s.snapshots().delete(name)?;
            crate::close_committed(s);
            print_deleted(json_out, &Made::from(m));
        }
        SnapCmd::Prune {
            keep_last,
            keep_within,
            keep_names,
            dry_run,
        } => {
            let policy = Retention {
                keep_last: *keep_last,
                keep_within: *keep_within,
                keep_names: keep_names.clone(),
            };
            let s = crate::opts().open(dir)?;
            let doomed = s.snapshots().prune(&policy, *dry_run)?;
            crate::close_committed(s);
            if json_out {
                out!(
                    "{}",
                    json!({"dry_run": dry_run, "deleted": doomed.iter().map(meta_json).collect::<Vec<_>>()})
                );
            } else {
                let verb = if *dry_run { "would delete" } else { "deleted" };
                for m in &doomed {
                    out!("{verb} {} ({})", m.name, utc_time(m.created));
                }
                say!("{} snapshots {verb}", doomed.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pin(json_out: bool, dir: &Path, name: &str, id: &str, force: bool) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    // A prefix may name an artifact removed from CURRENT that a snapshot holds.
    let id = match s.resolve(id) {
        Err(Error::PrefixNotFound(p)) => s
            .snapshots()
            .list()
            .iter()
            .find_map(|m| s.at(m).ok()?.resolve(id).ok())
            .ok_or(Error::PrefixNotFound(p))?,
        r => r?,
    };
    if force {
        s.pins().set(name, &id)?;
    } else {
        s.pins().add(name, &id)?;
    }
    crate::close_committed(s);
    print_pinned(json_out, name, &id);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_pinned(json_out: bool, name: &str, id: &ArtifactId) {
    if json_out {
        out!("{}", json!({"pinned": name, "id": id.to_hex()}));
    } else {
        out!("pinned {id} as {name}");
    }
}

pub fn unpin(json_out: bool, dir: &Path, name: &str) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let id = s.pins().remove(name)?;
    crate::close_committed(s);
    print_unpinned(json_out, name, &id);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_unpinned(json_out: bool, name: &str, id: &ArtifactId) {
    if json_out {
        out!("{}", json!({"unpinned": name, "id": id.to_hex()}));
    } else {
        out!("unpinned {name} ({id})");
    }
}

pub fn pins(json_out: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let p = crate::opts().read_only(true).open(dir)?.pins().list();
    print_pins(json_out, &p);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_pins(json_out: bool, p: &[(String, ArtifactId)]) {
    if json_out {
        crate::global::json_lines(p.iter().map(|(n, id)| json!({"name": n, "id": id.to_hex()})));
    } else {
        for (n, id) in p {
            out!("{id} {n}");
        }
    }
}

pub fn gc(json_out: bool, dir: &Path, threshold: f64, dry_run: bool) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let mut index = crate::query::open_index(&s)?;
    let x = asl::federation::removal::expire(&s, &mut index, now_secs(), dry_run)?;
    drop(index);
    let bar = crate::global::Bar::new(json_out);
    let r = s
        .maintenance()
        .with_progress(&|p| bar.step(p))
        .gc(&GcOptions { threshold, dry_run })?;
    drop(bar);
    let after = s.maintenance().stat()?;
    crate::close_committed(s);
    Ok(print_gc(
        json_out,
        &r,
        after.physical_bytes,
        (x.removed.len(), x.held.len()),
    ))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `aslctl ephemeral IDS (--ttl D | --until T)`: gives each artifact an
/// expiry time; prints each expiry record's id.
pub fn ephemeral(
    json_out: bool,
    dir: &Path,
    ids: &[String],
    ttl: Option<Duration>,
    until: Option<&str>,
) -> Result<ExitCode, CliError> {
    let at = match (ttl, until) {
        (Some(d), _) => now_secs().saturating_add(d.as_secs()),
        (None, Some(t)) => asl::records::time::parse(t).ok_or_else(|| {
            asl::Error::InvalidArgument(format!(
                "--until {t:?} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
            ))
        })?,
        (None, None) => return Err(asl::Error::InvalidArgument("give --ttl or --until".into()).into()),
    };
    let s = crate::opts().open(dir)?;
    let mut subjects = Vec::new();
    for t in ids {
        subjects.push(s.resolve(t)?);
    }
    let mut records = Vec::new();
    for id in &subjects {
        records.push(asl::records::expiry::set(&s, id, at)?);
    }
    crate::close_committed(s);
    let when = asl::records::time::format(at);
    for (id, r) in subjects.iter().zip(&records) {
        if json_out {
            out!(
                "{}",
                json!({"id": id.to_hex(), "record": r.to_hex(), "expires_at": when})
            );
        } else {
            out!("{r}  {id}  expires {when}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a GC report, and what the expiry sweep before it removed and
/// left held; exit 1 when GC left damaged segments alone.
pub(crate) fn print_gc(json_out: bool, r: &GcReport, physical_after: u64, expired: (usize, usize)) -> ExitCode {
    let dry_run = r.dry_run;
    if json_out {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["physical_after"] = json!(physical_after);
        v["expired"] = json!(expired.0);
        v["expired_held"] = json!(expired.1);
        out!("{v}");
    } else {
        if expired != (0, 0) {
            let verb = if dry_run { "would remove" } else { "removed" };
            out!(
                "expired: {verb} {} ephemeral artifacts ({} held by a pin, a snapshot, publication or a live receipt)",
                expired.0,
                expired.1
            );
        }
        let verb = if dry_run { "would reclaim" } else { "reclaimed" };
        out!(
            "{verb} {} in {} segments ({} repacked: {} artifacts, {} copied) in {:.3} s",
            human(r.reclaimed_bytes),
            r.segments_deleted,
            r.segments_repacked,
            r.artifacts_copied,
            human(r.repacked_bytes),
            r.elapsed.as_secs_f64()
        );
        out!(
            "live {} -> {}, garbage {} -> {}; GC buffers peak {}, process peak RSS {} (heap {}, the rest \
             mapped files)",
            human(r.live_before),
            human(r.live_after),
            human(r.garbage_before),
            human(r.garbage_after),
            human(r.peak_memory_bytes),
            r.peak_rss_bytes.map_or("not measured".to_string(), human),
            r.peak_heap_bytes.map_or("not measured".to_string(), human)
        );
        if r.chunks_swept > 0 {
            out!(
                "chunk sweep: {} chunks ({}) no retained artifact names any more",
                r.chunks_swept,
                human(r.chunk_bytes_swept)
            );
        }
        for s in &r.skipped {
            eprintln!("aslctl: warning: skipped {s}");
        }
    }
    if r.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        // A bare number has no unit: refused, where it once meant seconds.
        assert!(parse_duration("45").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("d").is_err());
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(1_763_769_600), "2025-11-22T00:00:00Z");
    }
}
