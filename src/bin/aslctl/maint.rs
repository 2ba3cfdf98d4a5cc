//! `aslctl stat`, `rm`, `seal`, `verify` and `repair`: the store's upkeep,
//! parsing and printing only; the work is in the library.

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;
use serde_json::json;

use super::human;
use crate::global::{json_line, utc_time};

/// `aslctl init`: makes an empty store, or says the one there is kept.
pub fn init(json: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let existed = dir.join("STORE").is_file();
    let s = crate::opts().create(true).open(dir)?;
    let id = s.store_id();
    crate::close_committed(s);
    if json {
        json_line(&json!({"store": dir, "store_id": format!("{id:016x}"), "created": !existed}));
    } else if existed {
        out!("{} already holds a store ({id:016x}); left as it is", dir.display());
    } else {
        out!("created an empty store in {} ({id:016x})", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `aslctl stat`: the store's counts and sizes.
pub fn stat(json: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let st = crate::opts().read_only(true).open(dir)?.maintenance().stat()?;
    print_stat(json, &st);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_stat(json: bool, st: &asl::StoreStat) {
    if json {
        json_line(&with_scrub_time(json!(st)));
    } else {
        out!("artifacts       {}", st.artifacts);
        out!("logical bytes   {} ({})", st.logical_bytes, human(st.logical_bytes));
        out!("physical bytes  {} ({})", st.physical_bytes, human(st.physical_bytes));
        out!("index+log bytes {} ({})", st.index_bytes, human(st.index_bytes));
        out!("segments        {} ({} sealed)", st.segments, st.sealed_segments);
        out!("index files     {}", st.index_files);
        out!("live bytes      {} ({})", st.live_bytes, human(st.live_bytes));
        out!("garbage bytes   {} ({})", st.garbage_bytes, human(st.garbage_bytes));
        out!("snapshots       {}", st.snapshots);
        out!("pins            {}", st.pins);
        out!("scrub           {}", scrub_line(&st.scrub));
        out!("current         {}", st.current_id);
    }
}

/// `aslctl rm`: takes artifacts out of CURRENT. Refuses a published one,
/// or one a run record still needs, unless forced; exit 1 when one was
/// not there.
pub fn rm(json: bool, dir: &Path, ids: &[String], force: bool) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let mut resolved = Vec::new();
    for t in ids {
        resolved.push(s.resolve(t)?);
    }
    let index = super::query::open_index(&s)?;
    let r = asl::federation::removal::remove(&s, &index, &resolved, force).map_err(|e| match e {
        e if e.kind() == asl::ErrorKind::Refused => {
            asl::federation::FederationError::Refused(format!("{e} (--force removes it anyway)"))
        }
        e => e,
    })?;
    if let Some(p) = &r.withdrawn {
        say!(
            "aslctl: unpublished {} (manifest {} no longer lists them)",
            p.changed.len(),
            p.seq
        );
    }
    drop(index);
    super::close_committed(s);
    Ok(print_removal(json, &r.removed, &r.not_found))
}

/// Prints what `rm` did; exit 1 when an id was not there.
pub(crate) fn print_removal(json: bool, removed: &[asl::ArtifactId], missing: &[asl::ArtifactId]) -> ExitCode {
    if json {
        let v = json!({
            "removed": removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "not_found": missing.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        });
        json_line(&v);
    } else {
        for id in removed {
            out!("removed {id}");
        }
        for id in missing {
            eprintln!("aslctl: error: artifact {id} not found");
        }
    }
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `aslctl seal`: seals the open segment.
pub fn seal(json: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let s = crate::opts().open(dir)?;
    let sealed = s.maintenance().seal()?;
    super::close_committed(s);
    print_sealed(json, sealed);
    Ok(ExitCode::SUCCESS)
}

/// Says which segment `seal` sealed, if one was open.
pub(crate) fn print_sealed(json: bool, sealed: Option<asl::Sealed>) {
    match (json, sealed) {
        (true, _) => json_line(&json!({ "sealed": sealed })),
        (false, Some(s)) => say!("sealed segment {} ({})", s.segment, human(s.len)),
        (false, None) => say!("no open segment: nothing written since the last seal"),
    }
}

/// `aslctl verify`: checks every block and artifact, or those of a
/// budget's worth of segments; exit 1 on any problem.
pub fn verify(json: bool, dir: &Path, opts: &asl::ScrubOptions) -> Result<ExitCode, CliError> {
    let s = crate::opts().read_only(true).open(dir)?;
    let bar = crate::global::Bar::new(json);
    let r = s.maintenance().with_progress(&|p| bar.step(p)).scrub(opts)?;
    drop(bar);
    Ok(print_verify(json, &r))
}

/// A report holding the scrub status (`stat`'s, `verify`'s) with its time
/// as `--json` writes times: RFC 3339, not the library's seconds.
fn with_scrub_time(mut v: serde_json::Value) -> serde_json::Value {
    let t = &mut v["scrub"]["oldest_verified_at"];
    if let Some(secs) = t.as_u64() {
        *t = json!(utc_time(secs));
    }
    v
}

/// Where the scrub rotation stands, in one line.
fn scrub_line(s: &asl::ScrubStatus) -> String {
    let oldest = match s.oldest_verified_at {
        Some(t) => format!("oldest verification {}", asl::records::time::format(t)),
        None => "never verified".to_string(),
    };
    format!(
        "{oldest}; {} unverified ({} of {} segments never read)",
        human(s.unverified_bytes),
        s.never_verified_segments,
        s.segments
    )
}

/// Prints a verify report; exit 1 when it found a problem.
pub(crate) fn print_verify(json: bool, r: &asl::VerifyReport) -> ExitCode {
    if json {
        json_line(&with_scrub_time(json!(r)));
    } else {
        for p in &r.problems {
            match &p.artifact {
                Some(a) => out!("CORRUPT {a} in {}: {}", p.file.display(), p.detail),
                None => out!("CORRUPT {}: {}", p.file.display(), p.detail),
            }
        }
        for n in &r.notes {
            say!("aslctl: note: {n}");
        }
        let scope = match r.partial {
            true => format!(
                "{} of {} segments ({})",
                r.segments,
                r.scrub.segments,
                human(r.segment_bytes)
            ),
            false => format!("{} segments", r.segments),
        };
        say!(
            "verified {scope}, {} blocks, {} artifacts ({}): {}",
            r.blocks,
            r.artifacts,
            human(r.bytes),
            if r.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", r.problems.len())
            }
        );
        if r.partial {
            say!("scrub: {}", scrub_line(&r.scrub));
        }
    }
    if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `aslctl repair`: salvages what can be kept; exit 1 when something
/// was lost or set aside.
pub fn repair(json: bool, dir: &Path) -> Result<ExitCode, CliError> {
    let bar = crate::global::Bar::new(json);
    let r = crate::opts().repair_with_progress(dir, Some(&|p| bar.step(p)))?;
    drop(bar);
    if json {
        json_line(&r);
    } else {
        for q in &r.quarantined {
            say!("quarantined {q}");
        }
        for h in &r.rebuilt_headers {
            say!("rebuilt the damaged header of {h}");
        }
        // What was lost is a warning: never silenced by -q.
        for l in &r.lost {
            eprintln!("lost {l}");
        }
        out!(
            "repaired: {} segments, {} blocks ({} bad, {} damaged regions skipped), {} artifacts ({} salvaged, {} lost), {} removals replayed, {} torn bytes cut (kept in quarantine/), {} segments sealed",
            r.segments,
            r.blocks,
            r.bad_blocks,
            r.damaged_regions,
            r.artifacts,
            r.salvaged,
            r.lost.len(),
            r.tombstones,
            r.truncated_bytes,
            r.sealed
        );
    }
    // Exit 1 when repair could not keep everything: the store works,
    // but something in it is gone or set aside.
    Ok(if r.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
