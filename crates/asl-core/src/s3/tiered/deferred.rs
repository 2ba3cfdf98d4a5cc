//! Segments GC dropped that stay in the bucket for a grace period before
//! they are deleted: a read replica follows the writer's checkpoints some
//! seconds late, and until it has, the older checkpoint it reads through
//! may still name them. The list is kept in the store directory's
//! `DELETES` file (magic, version, CRC32C like `BUCKET`), so a restart
//! neither forgets them nor deletes them early.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The file, in the store directory.
pub const DELETES_FILE: &str = "DELETES";
const MAGIC: &str = "ASLDELETES";

/// Segment name → Unix second from which it may be deleted.
#[derive(Default)]
pub(super) struct Deferred {
    path: PathBuf,
    pub(super) due: BTreeMap<String, u64>,
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Deferred {
    /// The list in `root`; empty when there is none. A damaged one is
    /// reported and dropped: what it named is no segment of the store, so
    /// the next writing open finds it again and defers it anew.
    pub(super) fn load(root: &Path) -> Self {
        let path = root.join(DELETES_FILE);
        let due = match std::fs::read(&path) {
            Ok(b) => decode(&b).unwrap_or_else(|e| {
                eprintln!(
                    "aslctl: warning: {} is unreadable ({e}); the segments it named are deleted when next found",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Deferred { path, due }
    }

    /// The file's bytes (also mirrored to the bucket, where a directory
    /// attached later learns which segments are no longer the store's).
    pub(super) fn encode(&self) -> Vec<u8> {
        let lines: Vec<String> = self.due.iter().map(|(n, t)| format!("segments/{n}={t}")).collect();
        crate::textfile::frame(MAGIC, &lines)
    }

    pub(super) fn save(&self) -> io::Result<()> {
        if self.due.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        crate::fsutil::write_atomic(&crate::io::LocalBackend, &self.path, &self.encode())
            .map_err(|f| io::Error::new(f.source.kind(), format!("{}: {}", f.context, f.source)))
    }

    /// The names due by `at`, and how long until the next one is due.
    pub(super) fn due_by(&self, at: u64) -> (Vec<String>, Option<u64>) {
        let ready = self
            .due
            .iter()
            .filter(|(_, t)| **t <= at)
            .map(|(n, _)| n.clone())
            .collect();
        let next = self.due.values().filter(|t| **t > at).min().map(|t| t - at);
        (ready, next)
    }
}

/// The segment names a `DELETES` file lists, with their due times.
pub fn decode(b: &[u8]) -> Result<BTreeMap<String, u64>, String> {
    Ok(crate::textfile::unframe(b, MAGIC)?
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.strip_prefix("segments/")?.to_string(), v.parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_survives_a_restart_and_a_damaged_one_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Deferred::load(d.path());
        assert!(l.due.is_empty());
        l.due.insert("00000003.seg".into(), 100);
        l.due.insert("00000004.seg".into(), 200);
        l.save().unwrap();
        let l = Deferred::load(d.path());
        assert_eq!(l.due_by(150), (vec!["00000003.seg".to_string()], Some(50)));
        let p = d.path().join(DELETES_FILE);
        let mut b = std::fs::read(&p).unwrap();
        b[14] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(Deferred::load(d.path()).due.is_empty());
    }
}
