//! Upkeep of a served store through its server: with `--server URL`, or
//! when the store's lock says a server holds it (`aslctl serve` names its
//! address there). The same commands, the same output and exit codes as
//! in-process; only how the work reaches the store differs.

use std::path::Path;
use std::process::ExitCode;

use asl::client::Client;
use asl::{ArtifactId, Error, GcOptions};

use super::snap::SnapCmd;
use super::{Cli, Cmd};
use crate::error::CliError;

/// Runs `cli`'s command through a server when one applies: `Some(exit)`
/// when it did, `None` when the command is to run on the store directly.
pub(crate) fn run(cli: &Cli, dir: &Path) -> Result<Option<ExitCode>, CliError> {
    let Some(writes) = upkeep(&cli.cmd) else {
        if let Some(url) = &cli.server {
            return Err(Error::InvalidArgument(format!(
                "this command does not act through a server (--server {url}); the commands that do: \
                 rm, gc, seal, verify, stat, pin, unpin, pins, snapshot create and snapshot delete"
            ))
            .into());
        }
        return Ok(None);
    };
    let token = cli.token.as_deref();
    let ca = match &cli.server_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| Error::io(format!("read {}", p.display()), e))?),
        None => None,
    };
    let connect = |url: &str| Client::trusting(url, token, ca.as_deref());
    let client = match &cli.server {
        Some(url) => connect(url)?,
        // Reads open the store read-only beside the server; a write would
        // be refused the lock, so it goes to the server the lock names.
        None if writes => match asl::Store::lock_holder(dir) {
            Some(h) if h.url.is_some() => {
                let url = h.url.clone().unwrap_or_default();
                say!("aslctl: {} is served by {h}: acting through the server", dir.display());
                connect(&url)?
            }
            _ => return Ok(None),
        },
        None => return Ok(None),
    };
    through(&client, cli).map(Some)
}

/// Whether the command is one a server can do, and if so whether it
/// writes (and so needs the server while one holds the store).
fn upkeep(cmd: &Cmd) -> Option<bool> {
    match cmd {
        Cmd::Rm { .. } | Cmd::Gc { .. } | Cmd::Seal | Cmd::Pin { .. } | Cmd::Unpin { .. } => Some(true),
        Cmd::Snapshot(
            c @ SnapCmd::Create {
                tree: None,
                federated: false,
                ..
            },
        ) if !c.wants_zfs() => Some(true),
        Cmd::Snapshot(SnapCmd::Delete { .. }) => Some(true),
        Cmd::Verify(_) | Cmd::Stat | Cmd::Pins => Some(false),
        _ => None,
    }
}

/// A full id: a server takes no prefixes (it would have to list the store
/// to resolve one).
fn full_id(client: &Client, text: &str) -> Result<ArtifactId, CliError> {
    if text.len() != 64 {
        return Err(Error::InvalidArgument(format!(
            "{text:?}: give the full id (64 hex digits) when acting through the server at {}",
            client.url()
        ))
        .into());
    }
    Ok(text.parse::<ArtifactId>()?)
}

fn through(c: &Client, cli: &Cli) -> Result<ExitCode, CliError> {
    let json = cli.json;
    Ok(match &cli.cmd {
        Cmd::Rm { ids, force } => {
            let ids = ids.iter().map(|t| full_id(c, t)).collect::<Result<Vec<_>, _>>()?;
            let r = c.remove(&ids, *force)?;
            if let Some(u) = &r.unpublished {
                say!(
                    "aslctl: unpublished {} (manifest {} no longer lists them)",
                    u.artifacts,
                    u.manifest_seq
                );
            }
            super::maint::print_removal(json, &r.removed, &r.not_found)
        }
        Cmd::Gc { dry_run, threshold } => {
            let g = c.gc(&GcOptions {
                threshold: *threshold,
                dry_run: *dry_run,
            })?;
            super::snap::print_gc(
                json,
                &g.report,
                g.physical_after,
                (g.expired as usize, g.expired_held as usize),
            )
        }
        Cmd::Seal => {
            super::maint::print_sealed(json, c.seal()?);
            ExitCode::SUCCESS
        }
        Cmd::Verify(scope) => super::maint::print_verify(json, &c.scrub(&scope.options()?)?),
        Cmd::Stat => {
            super::maint::print_stat(json, &c.stat()?);
            ExitCode::SUCCESS
        }
        Cmd::Pins => {
            super::snap::print_pins(json, &c.pins()?);
            ExitCode::SUCCESS
        }
        Cmd::Pin { name, id, force } => {
            let id = full_id(c, id)?;
            c.pin(name, &id, *force)?;
            super::snap::print_pinned(json, name, &id);
            ExitCode::SUCCESS
        }
        Cmd::Unpin { name } => {
            let id = c.unpin(name)?;
            super::snap::print_unpinned(json, name, &id);
            ExitCode::SUCCESS
        }
        Cmd::Snapshot(SnapCmd::Create { name, .. }) => {
            let m = c.create_snapshot(name)?;
            super::snap::print_created(json, &super::snap::Made::from(m));
            ExitCode::SUCCESS
        }
        Cmd::Snapshot(SnapCmd::Delete { name }) => {
            let m = c.delete_snapshot(name)?;
            super::snap::print_deleted(json, &super::snap::Made::from(m));
            ExitCode::SUCCESS
        }
        _ => unreachable!("upkeep() lists the commands handled here"),
    })
}
