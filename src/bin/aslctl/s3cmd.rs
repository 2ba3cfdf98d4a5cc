//! `aslctl s3 push|restore`: a store's immutable files on S3-compatible
//! object storage (`asl::s3`).

use std::path::Path;
use std::process::ExitCode;

use asl::s3::Bucket;
use asl::Error;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum S3Cmd {
    /// Mirror the store's STORE file and sealed segments to a bucket
    /// (seals the open segment first; sends only what the bucket lacks,
    /// so a cut-off push resumes; deletes what GC deleted). Credentials and
    /// endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP.
    Push {
        /// `s3://bucket/prefix`.
        url: String,
    },
    /// Rebuild a store in a new directory from a bucket alone (segments
    /// fetched, every block checked, index and log rebuilt).
    Restore {
        /// `s3://bucket/prefix`.
        url: String,
        /// The directory for the rebuilt store (new or empty).
        dir: String,
    },
}

pub(crate) fn s3(json_out: bool, dir: &Path, cmd: &S3Cmd) -> Result<ExitCode, Error> {
    match cmd {
        S3Cmd::Push { url } => {
            let b = Bucket::open(url)?;
            let r = b.push(dir)?;
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
            let b = Bucket::open(url)?;
            let r = b.restore(Path::new(to))?;
            if json_out {
                out!(
                    "{}",
                    json!({"segments": r.segments, "bytes": r.bytes, "artifacts": r.artifacts})
                );
            } else {
                out!(
                    "restored {to} from {url}: {} segments ({} bytes), {} artifacts",
                    r.segments,
                    r.bytes,
                    r.artifacts
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
