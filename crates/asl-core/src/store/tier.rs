//! A store whose directory has a `BUCKET` file lives in a bucket: opening
//! or repairing it picks the tiered backend (`crate::io::tiered`), unless
//! the caller chose a backend of its own.

use std::path::Path;

use crate::error::{Error, Result};
use crate::StoreOptions;

use crate::io::BUCKET_FILE;
/// The options to open `path` with: the caller's, or with the tiered
/// backend when the directory names a bucket (a `writer` takes the
/// bucket's lease).
pub(crate) fn resolve(path: &Path, opts: &StoreOptions, writer: bool) -> Result<Option<StoreOptions>> {
    if opts.backend_chosen {
        return Ok(None);
    }
    let file = path.join(BUCKET_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
    };
    open_tiered(path, &file, &bytes, opts, writer)
}

#[cfg(feature = "s3")]
fn open_tiered(
    path: &Path,
    file: &Path,
    bytes: &[u8],
    opts: &StoreOptions,
    writer: bool,
) -> Result<Option<StoreOptions>> {
    let cfg = crate::io::TierConfig::decode(bytes).map_err(|e| Error::corrupt(file, e))?;
    let backend =
        crate::io::TieredBackend::open(path, &cfg, writer).map_err(|e| Error::io(format!("open {}", cfg.url), e))?;
    let mut o = opts.clone();
    o.backend = std::sync::Arc::new(backend);
    Ok(Some(o))
}

#[cfg(not(feature = "s3"))]
fn open_tiered(path: &Path, _: &Path, _: &[u8], _: &StoreOptions, _: bool) -> Result<Option<StoreOptions>> {
    Err(Error::NotAStore {
        path: path.to_path_buf(),
        reason: "it keeps its sealed segments in a bucket (BUCKET file), and this build lacks feature s3".into(),
    })
}
