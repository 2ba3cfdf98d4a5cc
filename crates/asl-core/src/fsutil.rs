//! Small file-system helpers that carry the store's durability rules: files are
//! created as temp + fsync + rename + directory fsync, so a crash leaves either the
//! old file or the new one, never a half-written one under the real name.

use std::path::Path;

use crate::error::{IoContext, IoFailure};
use crate::io::{Backend, OpenMode};

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(io: &dyn Backend, dir: &Path) -> Result<(), IoFailure> {
    io.sync_dir(dir).ctx(|| format!("fsync directory {}", dir.display()))
}

/// Writes `bytes` to `path` atomically and durably.
pub(crate) fn write_atomic(io: &dyn Backend, path: &Path, bytes: &[u8]) -> Result<(), IoFailure> {
    write_atomic_as(io, path, bytes, OpenMode::CreateTruncate)
}

/// [`write_atomic`], the file created with `mode` (`CreatePrivate` for one
/// only the owner may read).
pub(crate) fn write_atomic_as(io: &dyn Backend, path: &Path, bytes: &[u8], mode: OpenMode) -> Result<(), IoFailure> {
    let tmp = path.with_extension("tmp");
    let f = io.open(&tmp, mode).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all_at(bytes, 0)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("write {}", tmp.display()))?;
    drop(f);
    io.rename(&tmp, path)
        .ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    sync_dir(io, path.parent().unwrap_or(Path::new(".")))
}

/// Reads a whole small file.
pub(crate) fn read(io: &dyn Backend, path: &Path) -> Result<Vec<u8>, IoFailure> {
    io.read(path).ctx(|| format!("read {}", path.display()))
}

/// How a fixed-size structure is framed: a magic at offset 0, optionally a
/// format version (u32) at offset 8, and a CRC-32C at `crc_at` of every byte
/// before it. Most ASL headers and footers share this shape.
pub(crate) struct Framing {
    pub(crate) what: &'static str,
    pub(crate) magic: &'static [u8],
    pub(crate) magic_name: &'static str,
    pub(crate) crc_at: usize,
    /// Checks the version number at offset 8 (accepting every version known).
    pub(crate) version: Option<fn(u32) -> Result<(), crate::error::DecodeError>>,
}

/// Checks length, magic, CRC and version, in that order.
pub(crate) fn check_framed(b: &[u8], f: &Framing) -> Result<(), crate::error::DecodeError> {
    use crate::error::DecodeError;
    let len = f.crc_at + 4;
    if b.len() < len {
        return Err(DecodeError::Truncated {
            what: f.what,
            need: len as u64,
            have: b.len() as u64,
        });
    }
    if &b[..f.magic.len()] != f.magic {
        return Err(DecodeError::BadMagic { expected: f.magic_name });
    }
    let stored = le_u32(b, f.crc_at);
    let computed = crc32c::crc32c(&b[..f.crc_at]);
    if stored != computed {
        return Err(DecodeError::Checksum {
            what: f.what,
            stored,
            computed,
        });
    }
    if let Some(known) = f.version {
        known(le_u32(b, 8))?;
    }
    Ok(())
}

/// Little-endian field readers over a byte slice whose length the caller has
/// already checked; they keep decoding code short and free of `unwrap`.
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The little-endian u32 at `at` (panics past the end: callers check lengths first).
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian u64 at `at` (panics past the end: callers check lengths first).
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads a 40-bit little-endian integer.
pub(crate) fn le_u40(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a[..5].copy_from_slice(&b[at..at + 5]);
    u64::from_le_bytes(a)
}

/// Writes the low 40 bits of `v` little-endian.
pub(crate) fn put_u40(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 5].copy_from_slice(&v.to_le_bytes()[..5]);
}
