//! The bucket's lease: the one directory that may write the store, taken
//! with a conditional put so two directories cannot both hold it.

use std::io;
use std::path::Path;

use super::{Bucket, LEASE, LEASE_MAGIC, WRITER_MAGIC};

pub(super) fn encode_lease(holder: &str, root: &Path) -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    crate::textfile::frame(
        LEASE_MAGIC,
        &[
            format!("holder={holder}"),
            format!("host={}", host.trim()),
            format!("dir={}", root.display()),
        ],
    )
}

/// The `WRITER` object: the address the server of `holder` answers on.
/// Apart from `LEASE` so that naming it never rewrites the lease (a
/// writer that lost the lease between its check and the put would take it
/// back).
pub(super) fn encode_writer(holder: &str, url: &str) -> Vec<u8> {
    crate::textfile::frame(WRITER_MAGIC, &[format!("holder={holder}"), format!("url={url}")])
}

/// The address the leaseholder's server announced: `WRITER`'s, when it
/// names the holder `LEASE` names (a dead writer's is not believed once
/// the store is taken over).
pub fn writer_url(lease: &[u8], writer: &[u8]) -> Option<String> {
    let (holder, _) = decode_lease(lease).ok()?;
    let lines = crate::textfile::unframe(writer, WRITER_MAGIC).ok()?;
    let field = |k| crate::textfile::field(&lines, k);
    (field("holder")? == holder).then(|| field("url").map(String::from))?
}

/// The holder of a lease, and who it is in words (host and directory).
pub(super) fn decode_lease(b: &[u8]) -> Result<(String, String), String> {
    use crate::textfile::field;
    let lines = crate::textfile::unframe(b, LEASE_MAGIC)?;
    let holder = field(&lines, "holder").filter(|h| !h.is_empty()).ok_or("no holder")?;
    Ok((
        holder.to_string(),
        format!(
            "{}:{}",
            field(&lines, "host").unwrap_or(""),
            field(&lines, "dir").unwrap_or("")
        ),
    ))
}

pub(super) fn lease_lost(url: &str, who: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{url} is written from another directory ({who}): open it read-only here, or take it over with \
             `aslctl s3 attach {url} --take-over` once that writer has stopped"
        ),
    )
}

/// Takes the bucket's lease for `holder` when nobody holds it (a
/// conditional put, so two directories cannot both take it); an error
/// naming the other directory when someone else does.
pub(super) fn acquire_lease(b: &Bucket, holder: &str, root: &Path) -> io::Result<()> {
    for _ in 0..3 {
        match b.get(LEASE)? {
            None => {
                if b.put_new(LEASE, encode_lease(holder, root))? {
                    return Ok(());
                }
            }
            Some(bytes) => {
                let (h, who) =
                    decode_lease(&bytes).map_err(|e| io::Error::other(format!("{}/{LEASE}: {e}", b.url())))?;
                return if h == holder {
                    Ok(())
                } else {
                    Err(lease_lost(b.url(), &who))
                };
            }
        }
    }
    Err(io::Error::other(format!("{}/{LEASE}: changing under us", b.url())))
}

/// Makes `holder` (in `root`) the one directory that writes the store at
/// `b`, whoever held it before: for a machine replacing a dead one. A
/// writer still running elsewhere stops changing the bucket at its next
/// upload, when it finds the lease gone.
pub fn take_over(b: &Bucket, holder: &str, root: &Path) -> io::Result<()> {
    b.put(LEASE, encode_lease(holder, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_address_is_believed_only_for_the_leaseholder() {
        let lease = encode_lease("aa", Path::new("/srv/a"));
        let w = encode_writer("aa", "http://10.0.0.1:7878");
        assert_eq!(writer_url(&lease, &w).as_deref(), Some("http://10.0.0.1:7878"));
        // The store was taken over: the old writer's address is stale.
        let taken = encode_lease("bb", Path::new("/srv/b"));
        assert_eq!(writer_url(&taken, &w), None);
        let mut bad = w.clone();
        bad[12] ^= 1;
        assert_eq!(writer_url(&lease, &bad), None);
    }
}
