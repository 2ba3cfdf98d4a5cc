//! The CLI's error: whichever layer failed, kept as that layer's error, so
//! that the exit code is decided by its kind and never by its message.

use asl::federation::FederationError;
use asl::pel::PelError;
use asl::records::RecordError;
use asl::{Error, ErrorKind};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Store(#[from] Error),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Pel(#[from] PelError),
    #[error(transparent)]
    Federation(#[from] FederationError),
    #[cfg(feature = "server")]
    #[error(transparent)]
    Client(#[from] asl::client::ClientError),
}

impl CliError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            CliError::Store(e) => e.kind(),
            CliError::Record(e) => e.kind(),
            CliError::Pel(e) => e.kind(),
            CliError::Federation(e) => e.kind(),
            #[cfg(feature = "server")]
            CliError::Client(e) => e.kind(),
        }
    }

    /// The store's error this one is or carries (a record read that
    /// missed, say), for a caller that acts on what the store said.
    pub(crate) fn store(&self) -> Option<&Error> {
        match self {
            CliError::Store(e)
            | CliError::Record(RecordError::Store(e))
            | CliError::Pel(PelError::Store(e) | PelError::Record(RecordError::Store(e)))
            | CliError::Federation(FederationError::Store(e)) => Some(e),
            _ => None,
        }
    }

    /// What to do about this error, when the message alone does not say
    /// (appended to it).
    pub(crate) fn hint(&self) -> &'static str {
        match self.store() {
            Some(Error::NotAStore { reason, .. }) if reason == "no such directory" || reason == "no STORE file" => {
                " (make one with `aslctl init`, or name another with --store or $ASL_STORE)"
            }
            Some(Error::Locked { .. }) => " (--lock-wait DURATION waits for it)",
            _ => "",
        }
    }

    /// The exit code: 1 when what was named is missing or its bytes are
    /// damaged, 2 for every other failure (usage, I/O, refusals).
    pub(crate) fn exit_code(&self) -> u8 {
        match self.kind() {
            ErrorKind::NotFound | ErrorKind::Corrupt => 1,
            _ => 2,
        }
    }
}

impl From<asl::IdError> for CliError {
    fn from(e: asl::IdError) -> Self {
        CliError::Store(e.into())
    }
}

impl From<asl::records::cbor::CborError> for CliError {
    fn from(e: asl::records::cbor::CborError) -> Self {
        CliError::Record(e.into())
    }
}

/// Prints a failed command's error on stderr, as one line of text or, under
/// `--json`, as one JSON object (`spec/cli/error.schema.json`), and returns
/// its exit code.
pub(crate) fn report(json: bool, message: &str, kind: ErrorKind, hint: &str, code: u8) -> std::process::ExitCode {
    if json {
        let hint = hint.trim().trim_start_matches('(').trim_end_matches(')');
        let v = serde_json::json!({"error": {
            "message": message,
            "kind": kind_name(kind),
            "hint": (!hint.is_empty()).then_some(hint),
            "exit_code": code,
        }});
        eprintln!("{v}");
    } else {
        eprintln!("aslctl: error: {message}{hint}");
    }
    std::process::ExitCode::from(code)
}

/// A bad command line: clap's own message (help and `--version` are not
/// errors and print as usual), or under `--json` the same as JSON, kind
/// `usage`, exit 2.
pub(crate) fn usage(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind as Clap;
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    if !json
        || matches!(
            e.kind(),
            Clap::DisplayHelp | Clap::DisplayVersion | Clap::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit()
    }
    // clap's first paragraph is the error; then come usage and a pointer
    // to --help.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let v = serde_json::json!({"error": {
        "message": message.join(" ").trim_start_matches("error: "),
        "kind": "usage",
        "hint": "aslctl --help lists the commands; aslctl COMMAND --help their arguments",
        "exit_code": 2,
    }});
    eprintln!("{v}");
    std::process::ExitCode::from(2)
}

/// The name of an error kind in JSON errors.
fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Io => "io",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Invalid => "invalid",
        ErrorKind::Refused => "refused",
        ErrorKind::Remote => "remote",
        // A kind added to the library later than this match.
        _ => "other",
    }
}
