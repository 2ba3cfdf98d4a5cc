//! Who follows the store's history, and so how much of it to keep.
//!
//! The retired log files a checkpoint keeps (see [`super::changes`]) serve
//! only the indexes that follow the store through its change feed. Kept for
//! nobody, they ate what GC freed: a GC that moved 235,929 artifacts logged
//! a record for each, and the retired log held 17 MB of them while the GC
//! had freed 27 MB (docs/benchmarks/gc.md). So a
//! follower says how far it has read (`followers/<name>`: the oldest log file
//! it still needs), and a checkpoint keeps only the files some follower
//! still needs, within the history budget. No follower, no history. A
//! follower that has not said, or whose note is lost, only rescans: the
//! history is never needed to recover the store.

use std::path::PathBuf;

use crate::error::{DecodeError, Error, IoContext, Result};
use crate::fsutil::{check_framed, le_u64, sync_dir, write_atomic, Framing};

use super::changes::LogCursor;
use super::layout::Layout;

/// Magic of a follower's note.
pub const FOLLOWER_MAGIC: [u8; 8] = *b"ASLFOLLW";
const FOLLOWER_VERSION: u32 = 1;
const FOLLOWER_LEN: usize = 32;

/// The history kept is at most this fraction (1/N) of the bytes of the
/// store's segments, and at most `StoreOptions::log_history`: derived data's
/// bookkeeping should not outgrow what it derives from.
const HISTORY_SHARE: u64 = 16;
/// ... but never less than this, so that a small store's followers still
/// catch up across a checkpoint.
const HISTORY_FLOOR: u64 = 1 << 20;

/// The history budget for a store whose segments hold `segment_bytes`.
pub(crate) fn history_budget(option: u64, segment_bytes: u64) -> u64 {
    option.min((segment_bytes / HISTORY_SHARE).max(HISTORY_FLOOR))
}

/// Encodes a follower's note: it still needs log file `log_file` and after.
pub fn encode_follower(log_file: u64) -> [u8; FOLLOWER_LEN] {
    let mut b = [0u8; FOLLOWER_LEN];
    b[0..8].copy_from_slice(&FOLLOWER_MAGIC);
    b[8..12].copy_from_slice(&FOLLOWER_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&log_file.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a follower's note into the oldest log file it needs.
pub fn decode_follower(b: &[u8]) -> Result<u64, DecodeError> {
    if b.len() != FOLLOWER_LEN {
        return Err(DecodeError::Truncated {
            what: "follower note",
            need: FOLLOWER_LEN as u64,
            have: b.len() as u64,
        });
    }
    check_framed(
        b,
        &Framing {
            what: "follower note",
            magic: &FOLLOWER_MAGIC,
            magic_name: "ASLFOLLW",
            crc_at: 28,
            version: Some(|n| match n {
                FOLLOWER_VERSION => Ok(()),
                version => Err(DecodeError::UnsupportedVersion {
                    what: "follower note",
                    version,
                }),
            }),
        },
    )?;
    if b[12..16] != [0; 4] || b[24..28] != [0; 4] {
        return Err(DecodeError::Invalid("follower note reserved bytes are not zero".into()));
    }
    Ok(le_u64(b, 16))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    match ok {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "follower name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        ))),
    }
}

impl Layout {
    pub(crate) fn followers_dir(&self) -> PathBuf {
        self.root.join(super::layout::FOLLOWERS_DIR)
    }

    /// Records that follower `name` has read the history up to `cursor`
    /// (and made that durable on its side): the log files before the
    /// cursor's are no longer kept for it. Rewritten only when the cursor
    /// reaches a newer log file, so a follower that notes after every
    /// refresh writes once per checkpoint.
    pub(crate) fn note_follower(&self, name: &str, cursor: LogCursor) -> Result<()> {
        check_name(name)?;
        let io = &*self.io;
        let dir = self.followers_dir();
        let path = dir.join(name);
        if io.read(&path).ok().and_then(|b| decode_follower(&b).ok()) == Some(cursor.log_file) {
            return Ok(());
        }
        io.create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        write_atomic(io, &path, &encode_follower(cursor.log_file))?;
        Ok(())
    }

    /// Removes follower `name`'s note: its history goes at the next checkpoint.
    pub(crate) fn forget_follower(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.followers_dir().join(name);
        match self.io.remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// The followers and the oldest log file each needs (0 for a note
    /// that does not read: keep what the budget allows for it).
    pub(crate) fn followers(&self) -> Result<Vec<(String, u64)>> {
        let io = &*self.io;
        let dir = self.followers_dir();
        if !io.is_dir(&dir) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for name in io.list(&dir).ctx(|| format!("list {}", dir.display()))? {
            if check_name(&name).is_err() {
                continue; // a temp file of a note being written
            }
            let needs = io.read(&dir.join(&name)).ok().and_then(|b| decode_follower(&b).ok());
            out.push((name, needs.unwrap_or(0)));
        }
        out.sort();
        Ok(out)
    }

    /// The oldest log file each follower still needs, for a store whose
    /// current log file is `current` (a note from before a repair,
    /// numbered past `current`, needs none).
    pub(crate) fn followed(&self, current: u64) -> Result<Vec<u64>> {
        Ok(self
            .followers()?
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| *n <= current)
            .collect())
    }
}

/// Deletes retired log files (numbered below `current`) beyond the history
/// kept: those some follower still needs (see the module docs), the
/// newest first while they fit in the budget (the option, bounded by the
/// store's size: [`history_budget`]); anything numbered above `current`
/// (from a checkpoint that never happened) goes too.
pub(crate) fn prune_log_history(layout: &Layout, current: u64, option: u64, segment_bytes: u64) -> Result<()> {
    let budget = history_budget(option, segment_bytes);
    // An unreadable followers directory keeps what the budget allows.
    let needs = layout.followed(current).unwrap_or_else(|_| vec![0]);
    let Some(&oldest_need) = needs.iter().min() else {
        return prune_log_files(layout, current, |_| false);
    };
    let io = &*layout.io;
    // Newest first, an unbroken run of files ending at the current one,
    // back to the oldest file a follower needs, while it fits the budget.
    let mut kept = 0u64;
    let mut run_start = current;
    for n in (oldest_need..current).rev() {
        let len = io.file_len(&layout.log(n)).unwrap_or(u64::MAX);
        if kept.saturating_add(len) > budget {
            break;
        }
        kept += len;
        run_start = n;
    }
    // The run serves only the followers whose place is in it: cut it back
    // to the oldest of those (the others rescan whatever is kept).
    let keep_from = needs
        .iter()
        .copied()
        .filter(|f| *f >= run_start)
        .min()
        .unwrap_or(current);
    prune_log_files(layout, current, |n| n >= keep_from)
}

/// Deletes every log file but the current one and the retired ones `keep`
/// names (anything numbered above `current`, from a checkpoint that never
/// happened, goes too).
fn prune_log_files(layout: &Layout, current: u64, keep: impl Fn(u64) -> bool) -> Result<()> {
    let io = &*layout.io;
    let dir = layout.log_dir();
    let mut doomed = Vec::new();
    for name in io.list(&dir).ctx(|| format!("list {}", dir.display()))? {
        match name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n == current || (n < current && keep(n)) => {}
            _ => doomed.push(name),
        }
    }
    for name in &doomed {
        let p = dir.join(name);
        io.remove(&p).ctx(|| format!("remove {}", p.display()))?;
    }
    if !doomed.is_empty() {
        sync_dir(io, &dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_damage_is_refused() {
        let b = encode_follower(77);
        assert_eq!(decode_follower(&b).unwrap(), 77);
        let mut bad = b;
        bad[17] ^= 1;
        assert!(decode_follower(&bad).is_err());
        assert!(decode_follower(&b[..31]).is_err());
        let mut reserved = b;
        reserved[13] = 1;
        let crc = crc32c::crc32c(&reserved[..28]);
        reserved[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_follower(&reserved).is_err());
        let mut v2 = b;
        v2[8] = 2;
        let crc = crc32c::crc32c(&v2[..28]);
        v2[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_follower(&v2).is_err());
        assert_eq!(history_budget(64 << 20, 1 << 30), 64 << 20);
        assert_eq!(history_budget(64 << 20, 160 << 20), 10 << 20);
        assert_eq!(history_budget(64 << 20, 0), 1 << 20);
        assert!(check_name("query").is_ok() && check_name("../x").is_err() && check_name("").is_err());
    }
}
