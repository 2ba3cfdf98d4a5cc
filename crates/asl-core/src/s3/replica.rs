//! Read replicas of a store living in a bucket: directories on other
//! machines that read the store and never write it. A replica holds no
//! segment; it keeps a copy of what the writer last *published* (a
//! checkpoint naming only sealed, uploaded segments: see
//! [`Maintenance::publish`](crate::Maintenance::publish)) — the mirrored
//! `CHECKPOINT`, the index files and snapshot files it names — and reads
//! the segments through its page cache like any tiered store.
//!
//! [`follow`] brings a replica to the writer's latest published state. A
//! checkpoint the writer mirrored mid-write (its open segment holding
//! data, or a sealed segment still uploading) is not taken: the replica
//! stays at the state before, whole, until the next publish. So a replica
//! is at most one publish interval, plus the upload, plus its own follow
//! interval behind the writer; and segments GC drops stay in the bucket
//! for the writer's delete grace, so a replica within that bound never
//! reads through a checkpoint whose segments are gone.

use std::path::Path;
use std::sync::Arc;

use super::bucket::Bucket;
use super::tiered::{writer_url, TierConfig, LEASE, WRITER};
use super::{begin_rebuild, empty_dir, open_bucket, s3err, write_bucket_file};
use crate::block::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::io::{Backend, LocalBackend};
use crate::snapshot::checkpoint::Checkpoint;
use crate::store::{lock_store_waiting, Layout};

/// What a [`follow`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    /// The replica took a newer published state.
    pub changed: bool,
    /// Why the writer's current checkpoint was not taken yet, if it was not
    /// (the replica stays at its state before).
    pub waiting: Option<String>,
    /// Index and snapshot files fetched.
    pub fetched: usize,
    /// The address the writer's server announced in the bucket (`WRITER`,
    /// believed while it names the leaseholder): where writes go.
    pub writer: Option<String>,
}

/// Whether the store directory `dir` is a read replica (its `BUCKET` file
/// says so).
pub fn is_replica(dir: &Path) -> bool {
    std::fs::read(dir.join(crate::io::BUCKET_FILE))
        .ok()
        .and_then(|b| TierConfig::decode(&b).ok())
        .is_some_and(|c| c.replica)
}

/// Sets how long segments GC drops stay in the bucket for the store
/// directory `dir` (a writer's: see [`TierConfig::delete_grace`]); taken
/// at its next open.
pub fn set_delete_grace(dir: &Path, secs: u64) -> Result<()> {
    let p = dir.join(crate::io::BUCKET_FILE);
    let mut cfg = std::fs::read(&p)
        .map_err(|e| Error::io(format!("read {}", p.display()), e))
        .and_then(|b| TierConfig::decode(&b).map_err(|e| Error::corrupt(&p, e)))?;
    cfg.delete_grace = secs;
    write_bucket_file(dir, &cfg)
}

/// Makes `dir` (new or empty) a read replica of the store living at `url`,
/// at the writer's latest published state. Fails, leaving `dir` empty,
/// when the writer has published none yet.
pub fn replica(url: &str, dir: &Path, cache_bytes: u64) -> Result<Followed> {
    let (_, identity, _) = begin_rebuild(url, dir, "make a replica")?;
    let made = (|| {
        for d in ["index", "log"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| Error::io(format!("create {}/{d}", dir.display()), e))?;
        }
        let mut cfg = TierConfig::new(url, cache_bytes);
        cfg.replica = true;
        write_bucket_file(dir, &cfg)?;
        std::fs::write(dir.join("STORE"), &identity)
            .map_err(|e| Error::io(format!("write {}/STORE", dir.display()), e))?;
        let f = follow(dir)?;
        match &f.waiting {
            Some(why) => Err(Error::InvalidArgument(format!(
                "{url} has no published state to copy yet ({why}): publish it from the writer (`aslctl seal`, or its \
                 server's --publish-interval), then try again"
            ))),
            None => Ok(f),
        }
    })();
    if made.is_err() {
        empty_dir(dir);
    }
    made
}

/// Brings the replica at `dir` to the writer's latest published state (see
/// the module docs). Holds the replica's own lock while it changes files,
/// so two follows never interleave; a server reading the replica picks the
/// new state up with [`Maintenance::refresh`](crate::Maintenance::refresh).
pub fn follow(dir: &Path) -> Result<Followed> {
    let cfg_path = dir.join(crate::io::BUCKET_FILE);
    let cfg = std::fs::read(&cfg_path)
        .map_err(|e| Error::io(format!("read {}", cfg_path.display()), e))
        .and_then(|b| TierConfig::decode(&b).map_err(|e| Error::corrupt(&cfg_path, e)))?;
    if !cfg.replica {
        return Err(Error::InvalidArgument(format!(
            "{} is not a read replica (make one with `aslctl s3 replica`)",
            dir.display()
        )));
    }
    let b = open_bucket(&cfg.url)?;
    let layout = Layout::new(dir, Arc::new(LocalBackend));
    let _lock = lock_store_waiting(&layout, std::time::Duration::ZERO)?;
    let get = |key: &str| b.get(key).map_err(s3err(format!("get {}/{key}", cfg.url)));
    let mut out = Followed {
        writer: match (get(LEASE)?, get(WRITER)?) {
            (Some(lease), Some(writer)) => writer_url(&lease, &writer),
            _ => None,
        },
        ..Followed::default()
    };
    let Some(bytes) = b
        .get("CHECKPOINT")
        .map_err(s3err(format!("get {}/CHECKPOINT", cfg.url)))?
    else {
        out.waiting = Some("the bucket holds no checkpoint".into());
        return Ok(out);
    };
    let ckpt =
        Checkpoint::decode(&bytes).map_err(|e| Error::corrupt(Path::new(&format!("{}/CHECKPOINT", cfg.url)), e))?;
    let store_id = std::fs::read(layout.store_file())
        .ok()
        .and_then(|s| crate::store::decode_store_file(&s).ok());
    if store_id != Some(ckpt.store_id) {
        return Err(Error::corrupt(
            layout.store_file(),
            format!(
                "the bucket's checkpoint belongs to another store than {}",
                dir.display()
            ),
        ));
    }
    if let Some(why) = unpublished(&b, &ckpt)? {
        out.waiting = Some(why);
        return Ok(out);
    }
    let mut mine = ckpt.clone();
    mine.segments.retain(|s| s.sealed);
    let encoded = mine.encode();
    if std::fs::read(layout.checkpoint()).ok().as_deref() == Some(&encoded[..]) {
        return Ok(out);
    }
    let io: &dyn Backend = &*layout.io;
    // Immutable files, fetched once: a name present locally is whole
    // (written under a temporary name, checked, then renamed).
    let mut wanted: Vec<(String, std::path::PathBuf)> = ckpt
        .index_files
        .iter()
        .map(|n| {
            let p = layout.index(*n);
            (format!("index/{}", file_name(&p)), p)
        })
        .collect();
    wanted.extend(ckpt.snapshots.iter().map(|m| {
        let p = layout.snapshot(&m.identity);
        (format!("snapshots/{}", file_name(&p)), p)
    }));
    for (key, path) in &wanted {
        if path.exists() {
            continue;
        }
        let Some(body) = b.get(key).map_err(s3err(format!("get {}/{key}", cfg.url)))? else {
            out.waiting = Some(format!("{key} is not in the bucket yet"));
            return Ok(out);
        };
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &body).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        if let Err(e) = crate::index::file::IndexFile::open(io, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::corrupt(
                Path::new(&format!("{}/{key}", cfg.url)),
                Error::from(e).to_string(),
            ));
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;
        out.fetched += 1;
    }
    let log = layout.log(ckpt.log_file);
    if !log.exists() {
        crate::snapshot::log::LogWriter::create(io, &log, ckpt.next_seq, ckpt.store_id)?;
    }
    write_atomic(io, &layout.checkpoint(), &encoded)?;
    // What the new state does not name goes; a handle still reading the
    // old state keeps its open files (mapped files outlive their names).
    let keep: Vec<String> = wanted
        .iter()
        .map(|(_, p)| file_name(p))
        .chain([file_name(&log)])
        .collect();
    for d in [layout.index_dir(), layout.snapshot_dir(), layout.log_dir()] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    out.changed = true;
    Ok(out)
}

/// Why `ckpt` is not a whole published state yet, if it is not: its open
/// segment holds data (a checkpoint the writer took between publishes), or
/// a sealed segment it names is not in the bucket yet.
fn unpublished(b: &Bucket, ckpt: &Checkpoint) -> Result<Option<String>> {
    let listed = b.list("segments").map_err(s3err(format!("list {}", b.url())))?;
    for s in &ckpt.segments {
        let name = segment_file_name(s.id);
        if !s.sealed && s.len > SEGMENT_HEADER_LEN {
            return Ok(Some(format!(
                "the writer's open segment {name} holds writes not sealed yet"
            )));
        }
        if s.sealed && listed.get(&name) != Some(&s.len) {
            return Ok(Some(format!("segment {name} is not uploaded yet")));
        }
    }
    Ok(None)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
