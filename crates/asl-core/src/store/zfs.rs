//! Optional ZFS integration: an ASL snapshot can also snapshot the ZFS dataset
//! the store lives on, so the whole directory can be rolled back or sent with
//! `zfs send`. Only the `zfs` command is used (no library binding), the way an
//! administrator would run it.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

fn zfs(args: &[&str]) -> Result<String> {
    let out = Command::new("zfs")
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("run zfs {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("zfs {}", args.join(" ")),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The ZFS dataset holding `path`, or an error saying it is not on ZFS.
pub(crate) fn dataset_of(path: &Path) -> Result<String> {
    let p = path.to_string_lossy();
    let name = zfs(&["list", "-H", "-o", "name", &p])?;
    if name.is_empty() || name.contains('\n') {
        return Err(Error::InvalidArgument(format!("{p} is not on a single ZFS dataset")));
    }
    Ok(name)
}

/// Takes `<dataset>@asl-<name>` and returns its full name.
pub(crate) fn snapshot(path: &Path, name: &str) -> Result<String> {
    let full = format!("{}@asl-{name}", dataset_of(path)?);
    zfs(&["snapshot", &full])?;
    Ok(full)
}
