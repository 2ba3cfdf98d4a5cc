//! The options every command shares (`-q`, `-v`, `--lock-wait`), set once by
//! `main` and read where a command opens its store or prints a summary; and
//! how `--json` output is written (spec/cli/README.md).

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use asl::StoreOptions;

/// What the global flags asked for.
#[derive(Clone, Copy, Debug)]
struct Settings {
    /// -1 with `-q` (errors and warnings only), 0 by default, 1+ with `-v`.
    verbosity: i8,
    /// How long a writer waits for the store's lock.
    lock_wait: Duration,
    /// When the command started, for `-v`'s closing line.
    started: Instant,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Records the global flags; the first call wins.
pub(crate) fn init(verbosity: i8, lock_wait: Duration) {
    let _ = SETTINGS.set(Settings {
        verbosity,
        lock_wait,
        started: Instant::now(),
    });
}

fn settings() -> Settings {
    *SETTINGS.get_or_init(|| Settings {
        verbosity: 0,
        lock_wait: Duration::ZERO,
        started: Instant::now(),
    })
}

/// Whether summaries and notes go to stderr (not under `-q`).
pub(crate) fn chatty() -> bool {
    settings().verbosity >= 0
}

/// Whether `-v` asked for the details.
pub(crate) fn verbose() -> bool {
    settings().verbosity > 0
}

/// The options every command opens its store with: the defaults, and
/// `--lock-wait`.
pub(crate) fn opts() -> StoreOptions {
    StoreOptions::new().lock_wait(settings().lock_wait)
}

/// Opens the store at `dir`, creating it when there is none, and says so
/// on stderr (the commands that store something create a store rather
/// than refuse, as the quick start relies on).
pub(crate) fn open_creating(opts: StoreOptions, dir: &Path) -> asl::Result<asl::Store> {
    let existed = dir.join("STORE").is_file();
    let s = opts.create(true).open(dir)?;
    if !existed {
        let _ = CREATED.set(dir.to_path_buf());
    }
    Ok(s)
}

/// The store a command created, said once the command succeeded (a failure
/// stays one line on stderr).
static CREATED: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Says which store this command created, once (a server says it as it
/// starts, other commands when they succeed).
pub(crate) fn announce_created() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let (true, Some(made)) = (chatty(), CREATED.get()) {
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("aslctl: created a new store in {}", made.display());
        }
    }
}

/// After a command: the store it created, when it succeeded, and `-v`'s
/// closing line (the store it ran on and how long it took).
pub(crate) fn finish(dir: &Path, ok: bool) {
    if ok {
        announce_created();
    }
    if verbose() {
        eprintln!(
            "aslctl: done in {:.3} s (store {})",
            settings().started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
}

/// A progress bar on stderr for a long command, drawn only on a terminal
/// and never under `-q` or `--json`; the library reports to it through
/// [`Bar::step`].
pub(crate) struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    pub(crate) fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        Bar((std::io::stderr().is_terminal() && chatty() && !json).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>10} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        }))
    }

    /// What the library reports as it goes.
    pub(crate) fn step(&self, s: asl::Step<'_>) {
        if let Some(b) = &self.0 {
            if b.message() != s.phase {
                b.set_message(s.phase.to_string());
                b.reset();
            }
            b.set_length(s.total);
            b.set_position(s.done);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Prints one JSON value as one compact line on stdout: what a command
/// that gives one result prints under `--json` (spec/cli/README.md).
pub(crate) fn json_line(v: &impl serde::Serialize) {
    // Serializing our own values to a String cannot fail.
    out!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// Prints a list as NDJSON: one compact JSON value per line, nothing else,
/// so a reader can act on each line as it comes (and an empty list prints
/// nothing).
pub(crate) fn json_lines<T: serde::Serialize>(items: impl IntoIterator<Item = T>) {
    for v in items {
        json_line(&v);
    }
}

/// Seconds since 1970 as RFC 3339 in UTC: the one time format aslctl
/// prints, as text and under `--json`.
pub(crate) fn utc_time(secs: u64) -> String {
    asl::records::time::format(secs)
}

/// Why `--json` means nothing to a command, for those whose output is
/// data of its own kind; such a command refuses the flag rather than
/// ignore it.
pub(crate) fn without_json(cmd: &crate::Cmd) -> Option<&'static str> {
    match cmd {
        crate::Cmd::Cat { .. } | crate::Cmd::Get { .. } => Some("it writes the artifacts' own bytes"),
        crate::Cmd::Completions { .. } => Some("it writes a shell script"),
        crate::Cmd::Man { .. } => Some("it writes man pages"),
        crate::Cmd::Export(_) => Some("it writes an RVLS file (JSON lines already)"),
        #[cfg(feature = "server")]
        crate::Cmd::Serve(_) => Some("a server's log is JSON with --log-format json"),
        _ => None,
    }
}
