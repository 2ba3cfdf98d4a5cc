//! Optional ZFS integration: an ASL snapshot can also snapshot the ZFS
//! dataset the store lives on (`<dataset>@asl-<name>`), so the whole
//! directory can be rolled back, cloned or sent with `zfs send`. Only the
//! `zfs` command is used (no library binding), the way an administrator
//! would run it.
//!
//! The ZFS snapshot is taken once the ASL snapshot is durable, so the
//! image holds it: rolled back to or cloned, the store has the snapshot,
//! and what it held. Any ZFS snapshot is a crash-consistent image, which
//! the store opens like one left by a power cut.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The prefix of the ZFS snapshots that mirror ASL snapshots.
const PREFIX: &str = "asl-";

fn zfs(args: &[&str]) -> Result<String> {
    let what = format!("zfs {}", args.join(" "));
    let out = Command::new("zfs").args(args).output().map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            std::io::Error::other("the zfs command is not installed")
        } else {
            e
        };
        Error::io(what.clone(), why)
    })?;
    if !out.status.success() {
        // One line, as every error the store reports.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let said = if said.is_empty() {
            format!("exited with {}", out.status)
        } else {
            said
        };
        return Err(Error::io(what, std::io::Error::other(said)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The ZFS dataset holding `path`, or an error saying it is not on ZFS.
pub(crate) fn dataset_of(path: &Path) -> Result<String> {
    let p = path.to_string_lossy();
    let name = zfs(&["list", "-H", "-o", "name", &p]).map_err(|e| {
        Error::InvalidArgument(format!(
            "the store at {p} is not on a ZFS dataset this machine can snapshot ({e})"
        ))
    })?;
    if name.is_empty() || name.contains('\n') {
        return Err(Error::InvalidArgument(format!("{p} is not on a single ZFS dataset")));
    }
    Ok(name)
}

/// Takes `<dataset>@asl-<name>` and returns its full name.
pub(crate) fn snapshot(dataset: &str, name: &str) -> Result<String> {
    let full = format!("{dataset}@{PREFIX}{name}");
    zfs(&["snapshot", &full])?;
    Ok(full)
}

/// The ZFS snapshots of the dataset holding `path` that mirror ASL
/// snapshots, by ASL name; empty when the store is not on ZFS.
pub(crate) fn list(path: &Path) -> Result<BTreeMap<String, String>> {
    let Ok(dataset) = dataset_of(path) else {
        return Ok(BTreeMap::new());
    };
    let names = zfs(&["list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", &dataset])?;
    let at = format!("{dataset}@{PREFIX}");
    Ok(names
        .lines()
        .filter_map(|l| l.strip_prefix(&at).map(|n| (n.to_string(), l.to_string())))
        .collect())
}

/// Destroys the ZFS snapshot mirroring ASL snapshot `name`, when the
/// store is on ZFS and there is one.
pub(crate) fn destroy(path: &Path, name: &str) -> Result<()> {
    if let Some(full) = list(path)?.remove(name) {
        zfs(&["destroy", &full])?;
    }
    Ok(())
}

/// Rolls the dataset holding the store at `path` back to the ZFS snapshot
/// of ASL snapshot `name`; `destroy_newer` lets ZFS destroy the snapshots
/// taken after it (it refuses otherwise). The store's lock is held
/// throughout, so no writer has it open.
pub fn rollback(path: &Path, name: &str, destroy_newer: bool) -> Result<String> {
    let layout = super::Layout::new(path, std::sync::Arc::new(crate::io::LocalBackend));
    let _lock = super::lock_store_waiting(&layout, std::time::Duration::ZERO)?;
    let Some(full) = list(path)?.remove(name) else {
        dataset_of(path)?;
        return Err(Error::SnapshotNotFound(format!(
            "{name} (no ZFS snapshot {PREFIX}{name} of this store)"
        )));
    };
    if destroy_newer {
        zfs(&["rollback", "-r", &full])?;
    } else {
        zfs(&["rollback", &full]).map_err(|e| match e.to_string().contains("more recent") {
            true => Error::InvalidArgument(format!(
                "ZFS snapshots newer than {full} would be destroyed by the rollback (allow it with --destroy-newer)"
            )),
            false => e,
        })?;
    }
    Ok(full)
}
