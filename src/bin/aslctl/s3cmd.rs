//! `aslctl s3 create|tier|attach|replica|follow|status|push|restore`: a
//! store living in a bucket, its read replicas, or a local store's mirror
//! there (`asl::s3`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::CliError;
use asl::Error;
use clap::Subcommand;
use serde_json::json;

use crate::args::parse_size;
use crate::{human, Cli, Cmd};

#[derive(Subcommand)]
pub(crate) enum S3Cmd {
    /// Create a new store living in a bucket: sealed segments are uploaded
    /// and leave the local disk, reads fetch ranges through a bounded local
    /// cache. Afterwards use `--store URL` (or the local directory).
    Create {
        /// `s3://bucket/prefix` (must hold no store).
        url: String,
        /// The local part [default: $ASL_S3_CACHE/BUCKET/PREFIX, else
        /// ~/.cache/asl/s3/BUCKET/PREFIX].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Local page cache budget (e.g. 512M, 4G).
        #[arg(long, default_value = "1G")]
        cache: String,
        /// Seconds a segment GC drops stays in the bucket, so read replicas
        /// still reading through an older checkpoint can finish (0: deleted
        /// at once).
        #[arg(long, value_name = "SECS", default_value_t = asl::io::tiered::DEFAULT_DELETE_GRACE)]
        delete_grace: u64,
    },
    /// Move the store (--store) into a bucket: every sealed segment is
    /// uploaded and its local copy dropped; later opens read them back.
    Tier {
        /// `s3://bucket/prefix` (empty, or holding this same store).
        url: String,
        /// Local page cache budget.
        #[arg(long, default_value = "1G")]
        cache: String,
    },
    /// Rebuild the local part of a store living in a bucket on this
    /// machine, from the bucket alone (segments read and checked, not kept).
    Attach {
        /// `s3://bucket/prefix`.
        url: String,
        /// The local part (new or empty) [default as for create].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Local page cache budget.
        #[arg(long, default_value = "1G")]
        cache: String,
        /// Become the one directory that writes the store, taking the
        /// lease from another (a machine that is gone).
        #[arg(long)]
        take_over: bool,
        /// As for create.
        #[arg(long, value_name = "SECS", default_value_t = asl::io::tiered::DEFAULT_DELETE_GRACE)]
        delete_grace: u64,
    },
    /// Make a read replica of a store living in a bucket: a directory that
    /// reads it (no segment kept locally) and never writes it, at what its
    /// writer last published. `aslctl serve` on it serves reads, follows
    /// the writer and sends writes there.
    Replica {
        /// `s3://bucket/prefix`.
        url: String,
        /// The replica's directory (new or empty).
        #[arg(long)]
        dir: PathBuf,
        /// Local page cache budget.
        #[arg(long, default_value = "1G")]
        cache: String,
    },
    /// Bring the read replica (--store) to what its writer last published.
    Follow,
    /// Where a store living in a bucket has its segments; waits for pending
    /// uploads first (exit 2 if they cannot finish now).
    Status,
    /// Mirror the store's STORE file, sealed segments, checkpoint and
    /// snapshot files to a bucket (seals the open segment first; sends only
    /// what the bucket lacks, so a cut-off push resumes; deletes what GC
    /// deleted). Credentials and endpoint from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP.
    Push {
        /// `s3://bucket/prefix`.
        url: String,
    },
    /// Rebuild a whole local store in a new directory from a pushed mirror
    /// (segments fetched, every block checked, index and log rebuilt).
    Restore {
        /// `s3://bucket/prefix`.
        url: String,
        /// The directory for the rebuilt store (new or empty).
        dir: String,
    },
}

/// The local directory for `--store s3://bucket/prefix`: attached first
/// (rebuilt from the bucket) when this machine has no local part yet.
pub(crate) fn resolve_store(cli: &Cli, store: PathBuf) -> Result<PathBuf, CliError> {
    let Some(url) = store.to_str().filter(|s| s.starts_with("s3://")).map(str::to_string) else {
        return Ok(store);
    };
    let dir = asl::s3::local_dir_for(&url)?;
    if matches!(
        cli.cmd,
        Cmd::S3(S3Cmd::Create { .. } | S3Cmd::Attach { .. } | S3Cmd::Replica { .. })
    ) {
        return Ok(dir);
    }
    if dir.join("STORE").exists() {
        // Only a directory that lives in this very bucket stands for it.
        asl::s3::attached_to(&dir, &url)?;
        return Ok(dir);
    }
    say!(
        "aslctl: attaching to {url} in {} (the index is rebuilt from the bucket)",
        dir.display()
    );
    match asl::s3::attach(&url, &dir, asl::io::tiered::DEFAULT_CACHE_BYTES, false) {
        Ok(_) => Ok(dir),
        Err(Error::InvalidArgument(m)) if m.contains("holds no store") => Err(Error::InvalidArgument(format!(
            "{url} holds no store: create one with `aslctl s3 create {url}`"
        ))
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn print_restore(json_out: bool, what: &str, r: &asl::s3::RestoreReport) {
    if json_out {
        out!(
            "{}",
            json!({"segments": r.segments, "bytes": r.bytes, "artifacts": r.artifacts, "snapshots": r.snapshots})
        );
    } else {
        out!(
            "{what}: {} segments ({} bytes) read, {} artifacts, {} snapshots",
            r.segments,
            r.bytes,
            r.artifacts,
            r.snapshots
        );
    }
}

pub(crate) fn s3(json_out: bool, dir: &Path, cmd: &S3Cmd) -> Result<ExitCode, CliError> {
    let local = |url: &str, d: &Option<PathBuf>| match d {
        Some(d) => Ok(d.clone()),
        None => asl::s3::local_dir_for(url),
    };
    match cmd {
        S3Cmd::Create {
            url,
            dir: d,
            cache,
            delete_grace,
        } => {
            let d = local(url, d)?;
            let s = asl::s3::create(url, &d, crate::opts(), parse_size(cache)?)?;
            s.close()?;
            asl::s3::set_delete_grace(&d, *delete_grace)?;
            if json_out {
                out!("{}", json!({"url": url, "dir": d}));
            } else {
                out!("created a store living in {url} (local part {})", d.display());
            }
        }
        S3Cmd::Tier { url, cache } => {
            asl::s3::tier(dir, url, parse_size(cache)?)?;
            status(json_out, dir)?;
        }
        S3Cmd::Attach {
            url,
            dir: d,
            cache,
            take_over,
            delete_grace,
        } => {
            let d = local(url, d)?;
            let bar = crate::global::Bar::new(json_out);
            let r = asl::s3::attach_with(url, &d, parse_size(cache)?, *take_over, Some(&|p| bar.step(p)))?;
            drop(bar);
            asl::s3::set_delete_grace(&d, *delete_grace)?;
            print_restore(json_out, &format!("attached {url} in {}", d.display()), &r);
        }
        S3Cmd::Replica { url, dir: d, cache } => {
            let f = asl::s3::replica(url, d, parse_size(cache)?)?;
            print_followed(json_out, &format!("made {} a read replica of {url}", d.display()), &f);
        }
        S3Cmd::Follow => {
            let f = asl::s3::follow(dir)?;
            print_followed(json_out, &format!("followed into {}", dir.display()), &f);
        }
        S3Cmd::Status => status(json_out, dir)?,
        S3Cmd::Push { url } => {
            let bar = crate::global::Bar::new(json_out);
            let r = asl::s3::push_with(url, dir, Some(&|p| bar.step(p)))?;
            drop(bar);
            if json_out {
                out!(
                    "{}",
                    json!({"uploaded": r.uploaded, "bytes": r.bytes, "kept": r.kept, "deleted": r.deleted})
                );
            } else {
                out!(
                    "pushed to {url}: {} segments sent ({} bytes), {} already there, {} deleted",
                    r.uploaded,
                    r.bytes,
                    r.kept,
                    r.deleted
                );
            }
        }
        S3Cmd::Restore { url, dir: to } => {
            let bar = crate::global::Bar::new(json_out);
            let r = asl::s3::restore_with(url, Path::new(to), Some(&|p| bar.step(p)))?;
            drop(bar);
            print_restore(json_out, &format!("restored {to} from {url}"), &r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_followed(json_out: bool, what: &str, f: &asl::s3::Followed) {
    if json_out {
        out!(
            "{}",
            json!({"changed": f.changed, "waiting": f.waiting, "fetched": f.fetched, "writer": f.writer})
        );
        return;
    }
    match &f.waiting {
        Some(why) => out!("{what}: kept the state it had; the writer's newest is not whole yet ({why})"),
        None if f.changed => out!(
            "{what}: took the writer's newest published state ({} files fetched)",
            f.fetched
        ),
        None => out!("{what}: already at the writer's newest published state"),
    }
}

fn status(json_out: bool, dir: &Path) -> Result<(), CliError> {
    // The writer sends what waits; a directory that does not hold the
    // lease still reports, read-only.
    let (s, not_writer) = match crate::opts().open(dir) {
        Ok(s) => (s, None),
        Err(e) => (crate::opts().read_only(true).open(dir)?, Some(e.to_string())),
    };
    let settled = s.maintenance().settle();
    let Some(t) = s.maintenance().tier_status() else {
        return Err(
            Error::InvalidArgument(format!("{} is a local store (see `aslctl s3 tier`)", dir.display())).into(),
        );
    };
    if json_out {
        out!(
            "{}",
            json!({"url": t.url, "remote_segments": t.remote_segments, "local_segments": t.local_segments,
                   "queued": t.queued, "last_error": t.last_error, "cache_bytes": t.cache_bytes,
                   "cache_budget": t.cache_budget, "writer": not_writer.is_none(), "not_writer": not_writer})
        );
    } else {
        out!("bucket        {}", t.url);
        out!("in the bucket {} segments", t.remote_segments);
        out!(
            "on local disk {} segments (the open one, and any not yet uploaded)",
            t.local_segments
        );
        out!("upload queue  {}", t.queued);
        out!("page cache    {} of {}", human(t.cache_bytes), human(t.cache_budget));
        match &not_writer {
            None => out!("writer        yes (this directory holds the lease)"),
            Some(e) => out!("writer        no: {e}"),
        }
    }
    s.close()?;
    Ok(settled?)
}
