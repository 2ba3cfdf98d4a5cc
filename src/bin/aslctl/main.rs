//! `aslctl`: the command-line shell over the `asl` library.
//!
//! Data goes to stdout, progress and summaries to stderr. Exit codes: 0 ok,
//! 1 a failed check (corruption found, an id not in the store), 2 bad usage or
//! input (and environment failures such as a locked store or a full disk).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use asl::Store;
use clap::{Parser, Subcommand};
use error::CliError;
pub(crate) use global::opts;

/// Prints a line to stdout like `println!`, without its panic: see [`emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

/// Prints a summary or note on stderr like `eprintln!`, unless `-q`.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::global::chatty() {
            eprintln!($($arg)*)
        }
    };
}

mod args;
mod batch;
#[cfg(feature = "bench")]
mod bench;
mod convert;
mod error;
mod federation;
mod formats;
mod global;
mod h5;
mod ingest;
#[cfg(feature = "jemalloc")]
mod jemalloc;
mod maint;
mod pel;
mod query;
mod read;
mod record;
mod run_artifacts;
#[cfg(feature = "s3")]
mod s3cmd;
mod schema_cmd;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod served;
mod shell;
mod snap;
mod worktree;

#[derive(Parser)]
#[command(name = "aslctl", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ASLCTL_BUILD"), ")"), about = "Content-addressed artifact store")]
struct Cli {
    /// Store directory, or s3://bucket/prefix for a store living in a bucket
    /// (its local part under $ASL_S3_CACHE or ~/.cache/asl/s3) [default:
    /// $ASL_STORE when set and not empty, else ./.asl]
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Print machine-readable JSON on stdout: one compact object, or for
    /// lists one object per line (NDJSON); errors become a JSON object on
    /// stderr. Shapes: spec/cli/.
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors and warnings on stderr: no summaries, notes,
    /// progress, or a server's access log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more on stderr: the store a command ran on and how long it took.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Wait this long (`30s`, `5m`) for a store another process is writing
    /// to, rather than fail at once; readers never wait.
    #[arg(long, global = true, value_name = "DURATION", env = "ASL_LOCK_WAIT",
          value_parser = asl::records::time::parse_duration)]
    lock_wait: Option<std::time::Duration>,
    /// Act through the server at this URL (`aslctl serve`) rather than on
    /// a store directory: rm, gc, seal, verify, stat, pin, unpin, pins,
    /// snapshot create and delete. Without it those that write still go
    /// through the server that holds the store, found through its lock.
    #[cfg(feature = "server")]
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// The bearer token to send the server (an admin token for upkeep).
    #[cfg(feature = "server")]
    #[arg(long, global = true, env = "ASL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Trust the CA certificates in this PEM file for an HTTPS server (one
    /// whose certificate a private CA signed).
    #[cfg(feature = "server")]
    #[arg(long, global = true, env = "ASL_SERVER_CA", value_name = "FILE")]
    server_ca: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an empty store (in ./.asl, or where --store or $ASL_STORE
    /// says). Commands that store something create one too, and say so.
    Init,
    /// Print the completion script of a shell (bash, zsh, fish, elvish,
    /// powershell) for aslctl, e.g. `aslctl completions bash >
    /// ~/.local/share/bash-completion/completions/aslctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of aslctl and each of its commands
    /// (`aslctl.1`, `aslctl-ingest.1`, ...) into a directory.
    Man {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// Store files (directories recursively); prints `<id>  <path>` like b3sum.
    Ingest {
        /// Files or directories, or `-` alone for standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Block compression for what this command writes: off, or a zstd
        /// level 1-22 [default: 3]
        #[arg(long, value_name = "LEVEL")]
        zstd: Option<String>,
        /// Read every file, even those the files cache says are unchanged
        /// since an earlier ingest (the cache is still updated).
        #[arg(long)]
        no_cache: bool,
        /// Write large files as fixed chunk blocks of their own, deduplicated
        /// only whole, instead of content-defined chunks shared across files
        /// and versions: faster for data that is never stored twice in part.
        #[arg(long)]
        fixed_chunks: bool,
        /// After the b3sum lines, print each directory's tree id as
        /// `<tree-id>  DIR/` (the trees are written either way; without this
        /// flag stdout stays what `b3sum -c` checks).
        #[arg(long)]
        tree: bool,
        /// Also compute each file's SHA-256 in the same pass over its bytes
        /// and record it (an asl/digest record), so `get sha256:HEX` finds it.
        #[arg(long)]
        sha256: bool,
    },
    /// Write artifacts to a file, a directory or stdout.
    Get {
        /// Ids, unique id prefixes, or `sha256:HEX` (recorded by `ingest --sha256`).
        #[arg(required_unless_present = "stdin")]
        ids: Vec<String>,
        /// Also read ids from standard input, one per line.
        #[arg(long)]
        stdin: bool,
        /// Output file (`-` for stdout); with several ids, a directory that
        /// each is written into under its full id. A regular file is written
        /// beside the target and renamed over it once complete; a device or
        /// pipe is written in place. Never a path inside the store.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Read from this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
    },
    /// Write artifacts to stdout, one after another.
    Cat {
        /// Ids or unique id prefixes.
        #[arg(required_unless_present = "stdin")]
        ids: Vec<String>,
        /// Also read ids from standard input, one per line.
        #[arg(long)]
        stdin: bool,
        /// Read from this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
        /// Only these bytes of the one artifact named, as in HTTP: `A-B`
        /// (both included), `A-` (from A to the end) or `-N` (the last N);
        /// only the chunks they cover are read.
        #[arg(long, value_name = "A-B", allow_hyphen_values = true)]
        range: Option<String>,
    },
    /// List live artifacts: `<id> <size>`.
    Ls {
        /// List this snapshot instead of CURRENT.
        #[arg(long, value_name = "SNAPSHOT")]
        at: Option<String>,
        #[command(flatten)]
        only: args::Only,
    },
    /// Named snapshots: create, list, show, diff, delete, prune.
    #[command(subcommand)]
    Snapshot(snap::SnapCmd),
    /// Typed records (canonical CBOR): put from JSON, show as JSON.
    #[command(subcommand)]
    Record(record::RecordCmd),
    /// List the record types this build registers, with their fields
    /// (`?` marks an optional one).
    Types,
    /// The store's schema registry: record types users define (extending
    /// others), checked on `record put`.
    #[command(subcommand)]
    Schema(schema_cmd::SchemaCmd),
    /// List a tree: `<file|exec|tree> <id> <size>\t<name>` per entry.
    LsTree {
        /// Tree id or unique prefix (`ingest DIR` prints it last).
        id: String,
        /// Every entry below, with its path.
        #[arg(short, long)]
        recursive: bool,
        /// Read it from this snapshot instead of CURRENT.
        #[arg(long)]
        at: Option<String>,
    },
    /// Restore a tree into a directory, every file verified as it is read.
    Checkout {
        /// Tree id or unique prefix.
        id: String,
        /// Where to write it: must not exist or be empty, unless --force.
        dir: PathBuf,
        /// Write into a non-empty directory, replacing files of the same name.
        #[arg(long)]
        force: bool,
        /// Restore it from this snapshot instead of CURRENT.
        #[arg(long)]
        at: Option<String>,
    },
    /// The files that differ between two trees: `A|D|M<tab>path`.
    DiffTree {
        /// The tree before.
        a: String,
        /// The tree after.
        b: String,
    },
    /// Attach labels (and a media type) to an artifact without changing its
    /// id: stores an annotation record and prints its id.
    Label {
        /// Id or unique id prefix of the artifact.
        id: String,
        /// Labels as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// The artifact's media type, e.g. text/csv.
        #[arg(long)]
        media_type: Option<String>,
    },
    /// Make artifacts ephemeral: once the time given passes, `gc` (and a
    /// server's upkeep) removes them, unless a pin, a snapshot,
    /// publication or a live PEL receipt holds them. Prints each expiry
    /// record's id.
    Ephemeral {
        /// Ids or unique id prefixes.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Expire this long from now (`2h`, `30m`, `7d`).
        #[arg(long, value_parser = asl::records::time::parse_duration, conflicts_with = "until", required_unless_present = "until")]
        ttl: Option<std::time::Duration>,
        /// Expire at this time (`YYYY-MM-DD` or RFC 3339 UTC).
        #[arg(long)]
        until: Option<String>,
    },
    /// An artifact's annotations: `<record-id>  <created_at>  k=v...`.
    Labels {
        /// Id or unique id prefix.
        id: String,
    },
    /// Find artifacts by label, media type, record type and time:
    /// `<id>  <time>`, oldest first.
    Find(query::Filter),
    /// Rebuild the derived query index from the records in the store.
    Reindex,
    /// Run records: list and prune.
    #[command(subcommand)]
    Runs(query::RunsCmd),
    /// Apply a command block atomically: a JSON or YAML file holding
    /// `{"ops": [...], "lineage": {...}}` (or just the list of ops); every
    /// op is checked before anything is written, and after a crash the
    /// store holds all of it or none. Ops: `{"op": "put", "file"|"text"|"hex":
    /// ..., "as": NAME}`, `{"op": "remove", "id": ID}`, `{"op": "label",
    /// "target": ID|NAME, "labels": {...}, "media_type": M}`.
    Batch {
        /// The block (`-`: stdin).
        file: String,
    },
    /// Working copies of trees: add, status, commit, discard.
    #[command(subcommand)]
    Worktree(worktree::WorktreeCmd),
    /// Where an artifact came from (`lineage ID`, through PEL receipts;
    /// `--descendants` for what was made from it), or lineage chains
    /// (`lineage show|revert`).
    Lineage(batch::LineageArgs),
    /// HDF5 files: store with a chunk index, list datasets, read slices.
    #[command(subcommand)]
    H5(h5::H5Cmd),
    /// Import data in another format as typed records (RVLS).
    #[command(subcommand)]
    Import(formats::ImportCmd),
    /// Export typed records in another format (RVLS).
    #[command(subcommand)]
    Export(formats::ExportCmd),
    /// Programs over artifacts: run, show, replay, attest, trust.
    #[command(subcommand)]
    Pel(pel::PelCmd),
    /// Convert between typed formats along the strict graph (hdf5, dataset,
    /// cbor, yaml, json): allowed edges run as PEL builtins with receipts,
    /// forbidden ones are refused naming their rule; `--list`, `--dot`.
    Convert(convert::ConvertArgs),
    /// Pin an artifact under a name, as a GC root.
    Pin {
        /// Pin name.
        name: String,
        /// Id or unique id prefix.
        id: String,
        /// Move the pin if the name holds another artifact (which loses this root).
        #[arg(long)]
        force: bool,
    },
    /// Remove a pin.
    Unpin {
        /// Pin name.
        name: String,
    },
    /// List pins: `<id> <name>`.
    Pins,
    /// Reclaim space: delete dead segments, repack mostly-dead ones.
    Gc {
        /// Report what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack segments whose live fraction is below this (0 to 1); the
        /// default rewrites a segment once 5 % of it is garbage.
        #[arg(long, default_value_t = asl::DEFAULT_GC_THRESHOLD)]
        threshold: f64,
    },
    /// Show counts, sizes and CURRENT's identity.
    Stat,
    /// Remove artifacts from CURRENT. An output of a kept PEL receipt is
    /// refused (the receipt holds it) unless --force.
    Rm {
        /// Ids or unique id prefixes.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Remove outputs that receipts hold too (their lineage then shows
        /// "content removed", and the action cache re-executes them).
        #[arg(long)]
        force: bool,
    },
    /// Seal the open segment.
    Seal,
    /// Check every block and every artifact, or a budget's worth in
    /// rotation; exit 1 when anything is corrupt.
    Verify(args::Scrub),
    /// Rebuild the index and log from the segment files.
    Repair,
    /// Measure packing options on generated workloads or a real directory,
    /// next to the machine's own limits (no store needed).
    #[cfg(feature = "bench")]
    Bench(Box<bench::BenchArgs>),
    /// Serve the store over HTTP (see spec/openapi.yaml): artifacts in and
    /// out with ranges, listings, the missing check; bearer tokens.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// The store as a federation domain: its id, name and key, and its
    /// signed publication manifest.
    #[command(subcommand)]
    Domain(federation::DomainCmd),
    /// Publish artifacts to other domains (published artifacts are GC
    /// roots); writes a new signed publication manifest.
    Publish(federation::Targets),
    /// Make published artifacts internal again; writes a new manifest.
    Unpublish(federation::Targets),
    /// Other domains to fetch from: add, list, remove.
    #[command(subcommand)]
    Remote(federation::RemoteCmd),
    /// Fetch what a remote publishes: its signed manifest checked, only the
    /// missing artifacts sent, each verified against its id; resumable.
    /// Several remotes of one domain (mirrors) are fetched from at once, and
    /// what one sends wrong is asked of another.
    Fetch {
        /// The remotes' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Fetch nothing but the checked manifest: what it lists and this
        /// store lacks is promised, and fetched (verified) when first read
        /// by cat, get, ls-tree, checkout or a PEL run. One remote.
        #[arg(long)]
        lazy: bool,
    },
    /// Send a remote what this domain publishes and it lacks (with the
    /// signed manifest); a directory, or a server with a write token.
    Push {
        /// The remote's name.
        name: String,
    },
    /// Where an artifact came from: this domain, another domain (the
    /// remote and signed manifest it was imported under), or a promise.
    Origin {
        /// Id or prefix (of a promised id too).
        id: String,
    },
    /// A store on S3-compatible object storage: create one living in a
    /// bucket, move a local one there, attach to one from another machine;
    /// or push a local store's mirror and restore from it (feature s3).
    #[cfg(feature = "s3")]
    #[command(subcommand)]
    S3(s3cmd::S3Cmd),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return error::usage(e),
    };
    let store = cli
        .store
        .clone()
        .or_else(|| {
            std::env::var_os("ASL_STORE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(".asl"));
    #[cfg(feature = "s3")]
    let store = match s3cmd::resolve_store(&cli, store) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aslctl: error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let verbosity = if cli.quiet { -1 } else { cli.verbose.min(9) as i8 };
    global::init(verbosity, cli.lock_wait.unwrap_or_default());
    let result = run(&cli, &store);
    global::finish(&store, result.is_ok());
    match result {
        Ok(code) => match CLOSE_FAILED.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => error::report(
                cli.json,
                &format!("the command's changes are committed, but closing the store failed: {e}"),
                asl::ErrorKind::Io,
                "",
                2,
            ),
            None => code,
        },
        Err(e) => error::report(cli.json, &e.to_string(), e.kind(), e.hint(), e.exit_code()),
    }
}

fn run(cli: &Cli, dir: &Path) -> Result<ExitCode, CliError> {
    if let (true, Some(why)) = (cli.json, global::without_json(&cli.cmd)) {
        return Err(asl::Error::InvalidArgument(format!("--json does not apply to this command: {why}")).into());
    }
    #[cfg(feature = "server")]
    if let Some(code) = served::run(cli, dir)? {
        return Ok(code);
    }
    match &cli.cmd {
        Cmd::Init => maint::init(cli.json, dir),
        Cmd::Completions { shell } => Ok(shell::completions::<Cli>(*shell)),
        Cmd::Man { dir: to } => shell::man::<Cli>(to),
        Cmd::Ingest {
            paths,
            zstd,
            no_cache,
            fixed_chunks,
            tree,
            sha256,
        } => ingest::ingest(
            cli,
            dir,
            paths,
            &ingest::Flags {
                zstd: zstd.clone(),
                cache: !no_cache,
                cdc: !fixed_chunks,
                print_trees: *tree,
                sha256: *sha256,
            },
        ),
        Cmd::Get { ids, stdin, output, at } => {
            read::get(dir, &read::ids_given(ids, *stdin)?, output.as_deref(), at.as_deref())
        }
        Cmd::Cat { ids, stdin, at, range } => {
            read::cat(dir, &read::ids_given(ids, *stdin)?, at.as_deref(), range.as_deref())
        }
        Cmd::Ls { at, only } => read::ls(cli.json, crate::opts().read_only(true).open(dir)?, at.as_deref(), only),
        Cmd::Snapshot(cmd) => snap::snapshot(cli.json, dir, cmd),
        Cmd::Record(cmd) => record::record(cli.json, dir, cmd),
        Cmd::Types => record::types(cli.json),
        Cmd::Schema(cmd) => schema_cmd::schema(cli.json, dir, cmd),
        Cmd::LsTree { id, recursive, at } => record::ls_tree(cli.json, dir, id, *recursive, at.as_deref()),
        Cmd::Checkout { id, dir: to, force, at } => record::checkout(cli.json, dir, id, to, *force, at.as_deref()),
        Cmd::DiffTree { a, b } => record::diff_tree(cli.json, dir, a, b),
        #[cfg(feature = "bench")]
        Cmd::Bench(args) => bench::bench(cli.json, args),
        #[cfg(feature = "server")]
        Cmd::Serve(a) => serve::serve(dir, a),
        Cmd::Domain(c) => federation::domain(cli.json, dir, c),
        Cmd::Publish(t) => federation::change(cli.json, dir, t, true),
        Cmd::Unpublish(t) => federation::change(cli.json, dir, t, false),
        Cmd::Remote(c) => federation::remote(cli.json, dir, c),
        Cmd::Fetch { names, lazy } => federation::fetch(cli.json, dir, names, *lazy),
        Cmd::Push { name } => federation::push(cli.json, dir, name),
        Cmd::Origin { id } => federation::origin(cli.json, dir, id),
        #[cfg(feature = "s3")]
        Cmd::S3(c) => s3cmd::s3(cli.json, dir, c),
        Cmd::Label { id, labels, media_type } => query::label(cli.json, dir, id, labels, media_type.as_deref()),
        Cmd::Labels { id } => query::show_labels(cli.json, dir, id),
        Cmd::Ephemeral { ids, ttl, until } => snap::ephemeral(cli.json, dir, ids, *ttl, until.as_deref()),
        Cmd::Find(f) => query::find(cli.json, dir, f),
        Cmd::Reindex => query::reindex(cli.json, dir),
        Cmd::Runs(cmd) => query::runs(cli.json, dir, cmd),
        Cmd::Batch { file } => batch::batch(cli.json, dir, file),
        Cmd::Lineage(a) => batch::lineage_args(cli.json, dir, a),
        Cmd::Pel(cmd) => pel::pel(cli.json, dir, cmd),
        Cmd::Export(cmd) => formats::export(dir, cmd),
        Cmd::Convert(a) => convert::convert(cli.json, dir, a),
        Cmd::Import(cmd) => formats::import(cli.json, dir, cmd),
        Cmd::H5(cmd) => h5::h5(cli.json, dir, cmd),
        Cmd::Worktree(cmd) => worktree::worktree(cli.json, dir, cmd),
        Cmd::Pin { name, id, force } => snap::pin(cli.json, dir, name, id, *force),
        Cmd::Unpin { name } => snap::unpin(cli.json, dir, name),
        Cmd::Pins => snap::pins(cli.json, dir),
        Cmd::Gc { dry_run, threshold } => snap::gc(cli.json, dir, *threshold, *dry_run),
        Cmd::Stat => maint::stat(cli.json, dir),
        Cmd::Rm { ids, force } => maint::rm(cli.json, dir, ids, *force),
        Cmd::Seal => maint::seal(cli.json, dir),
        Cmd::Verify(scope) => maint::verify(cli.json, dir, &scope.options()?),
        Cmd::Repair => maint::repair(cli.json, dir),
    }
}

/// Writes one line to stdout. A closed pipe ends the program quietly (exit 0,
/// as `cat` does into `head`); any other write error is one line on stderr and
/// exit 2. Commands print after their work is done, so the message says the
/// command itself completed.
pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    let mut o = io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush());
    if let Err(e) = r {
        output_failed(&e);
    }
}

/// Set when a command's work was committed but closing the store failed.
static CLOSE_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Closes a store after the command's work is committed. A failing
/// close-time checkpoint does not unsay the commit (the next open replays
/// the log), so every command treats it alike: it still prints its result,
/// and `main` then reports the failure, saying the work is committed, and
/// exits 2.
pub(crate) fn close_committed(s: Store) {
    if let Err(e) = s.close() {
        if let Ok(mut f) = CLOSE_FAILED.lock() {
            *f = Some(e.to_string());
        }
    }
}

/// Ends the program after stdout failed (see [`emit`]).
pub(crate) fn output_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("aslctl: error: write stdout: {e} (the command itself completed)");
    std::process::exit(2);
}

/// A byte count for people, in binary units (`1.5 MiB`).
pub(crate) fn human(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
