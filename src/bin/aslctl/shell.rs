//! `aslctl completions` and `aslctl man`: what aslctl tells a shell and
//! `man` about itself, generated from the parser's own definition so that
//! neither can drift from the commands.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;

/// Prints the completion script of `shell`.
pub(crate) fn completions<C: clap::CommandFactory>(shell: clap_complete::Shell) -> ExitCode {
    // Generated whole first: clap_complete panics on a write error, and a
    // closed pipe must end the program quietly (see `emit`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut C::command(), "aslctl", &mut script);
    if let Err(e) = std::io::stdout().lock().write_all(&script) {
        crate::output_failed(&e);
    }
    ExitCode::SUCCESS
}

/// Writes a manual page per command into `to`.
pub(crate) fn man<C: clap::CommandFactory>(to: &Path) -> Result<ExitCode, CliError> {
    std::fs::create_dir_all(to)
        .and_then(|()| clap_mangen::generate_to(C::command(), to))
        .map_err(|e| asl::Error::io(format!("write manual pages into {}", to.display()), e))?;
    say!("wrote the manual pages into {}", to.display());
    Ok(ExitCode::SUCCESS)
}
