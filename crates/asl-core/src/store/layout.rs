//! Where things live in a store directory, and the STORE identity file.
//!
//! ```text
//! STORE        identity: magic, version, store id (written last at creation)
//! LOCK         held with an exclusive lock by the one writer process
//! CHECKPOINT   latest checkpoint
//! log/         NNNNNNNNNNNN.log
//! index/       NNNNNNNNNNNN.idx
//! segments/    NNNNNNNN.seg
//! snapshots/   <identity>.idx (one index file per distinct snapshot content)
//! SCRUB        when each segment was last verified (scrub.rs)
//! followers/   <name>: the oldest log file a follower of the history needs
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::Backend;

use crate::error::DecodeError;
use crate::fsutil::{check_framed, le_u64, Framing};
use crate::version::{FormatVersion, StoreVersion};

/// Magic of the STORE file.
pub const STORE_MAGIC: [u8; 8] = *b"ASLSTORE";

pub(crate) const STORE_FILE: &str = "STORE";
pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const CHECKPOINT_FILE: &str = "CHECKPOINT";
pub(crate) const LOG_DIR: &str = "log";
pub(crate) const INDEX_DIR: &str = "index";
pub(crate) const SEGMENT_DIR: &str = "segments";
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
pub(crate) const QUARANTINE_DIR: &str = "quarantine";
pub(crate) const FOLLOWERS_DIR: &str = "followers";

/// Encodes the 32-byte STORE file.
pub fn encode_store_file(store_id: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..8].copy_from_slice(&STORE_MAGIC);
    b[8..12].copy_from_slice(&StoreVersion::CURRENT.number().to_le_bytes());
    b[16..24].copy_from_slice(&store_id.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes the STORE file into the store id.
pub fn decode_store_file(b: &[u8]) -> Result<u64, DecodeError> {
    if b.len() != 32 {
        return Err(DecodeError::Truncated {
            what: "STORE file",
            need: 32,
            have: b.len() as u64,
        });
    }
    check_framed(
        b,
        &Framing {
            what: "STORE file",
            magic: &STORE_MAGIC,
            magic_name: "ASLSTORE",
            crc_at: 28,
            version: Some(|n| StoreVersion::from_number(n).map(drop)),
        },
    )?;
    Ok(le_u64(b, 16))
}

/// The store directory's paths, and the backend every file under it is
/// reached through.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) io: Arc<dyn Backend>,
}

impl Layout {
    pub(crate) fn new(root: &Path, io: Arc<dyn Backend>) -> Self {
        Self {
            root: root.to_path_buf(),
            io,
        }
    }
    pub(crate) fn store_file(&self) -> PathBuf {
        self.root.join(STORE_FILE)
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
    pub(crate) fn checkpoint(&self) -> PathBuf {
        self.root.join(CHECKPOINT_FILE)
    }
    pub(crate) fn log_dir(&self) -> PathBuf {
        self.root.join(LOG_DIR)
    }
    pub(crate) fn index_dir(&self) -> PathBuf {
        self.root.join(INDEX_DIR)
    }
    pub(crate) fn segment_dir(&self) -> PathBuf {
        self.root.join(SEGMENT_DIR)
    }
    /// Where repair keeps what it could not parse (never deleted by the store).
    pub(crate) fn quarantine_dir(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }
    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOT_DIR)
    }
    pub(crate) fn snapshot(&self, identity: &crate::snapshot::CurrentId) -> PathBuf {
        self.snapshot_dir()
            .join(crate::snapshot::catalog::snapshot_file_name(identity))
    }
    pub(crate) fn log(&self, n: u64) -> PathBuf {
        self.log_dir().join(crate::snapshot::log::log_file_name(n))
    }
    pub(crate) fn index(&self, n: u64) -> PathBuf {
        self.index_dir().join(crate::index::file::index_file_name(n))
    }
    pub(crate) fn segment(&self, n: u32) -> PathBuf {
        self.segment_dir().join(crate::block::segment::segment_file_name(n))
    }
}
