//! The CLI's `--help` texts as a snapshot (`tests/snapshots/help.txt`), so
//! a change to any of them shows in review, and the manual's command
//! table (`docs/manual/01-cli.md`) checked to name every command, so the
//! manual cannot fall behind the parser. `ASL_BLESS=1` rewrites the
//! snapshot after an intended change.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::aslctl_bin;

/// `aslctl WORDS... --help`, with no environment variable that clap would
/// show as a default.
fn help(words: &[String]) -> String {
    let o = Command::new(aslctl_bin())
        .args(words)
        .arg("--help")
        .env_remove("ASL_STORE")
        .env_remove("ASL_LOCK_WAIT")
        .env_remove("ASL_TOKEN")
        .env_remove("ASL_SERVER_CA")
        .env_remove("ASL_S3_CACHE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{words:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every command path with its help text, depth first in the parser's
/// order; `leaf` is true for a path with no subcommand.
fn walk(words: Vec<String>, out: &mut Vec<(Vec<String>, String, bool)>) {
    let text = help(&words);
    let subs: Vec<String> = text
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect();
    out.push((words.clone(), text, subs.is_empty()));
    for c in subs {
        let mut w = words.clone();
        w.push(c);
        walk(w, out);
    }
}

fn commands() -> Vec<(Vec<String>, String, bool)> {
    let mut all = Vec::new();
    walk(Vec::new(), &mut all);
    all
}

#[test]
fn help_texts_match_the_snapshot() {
    let mut text = String::new();
    for (words, help, _) in commands() {
        text.push_str(&format!("## aslctl {}\n{help}\n", words.join(" ")));
    }
    // The build line names the commit and features, which change.
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("aslctl ") && l.contains("(commit") {
                "aslctl VERSION"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
    if std::env::var_os("ASL_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{text}\n")).unwrap();
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_default();
    if want.trim_end() != text.trim_end() {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(text.lines().count()));
        panic!(
            "--help texts differ from tests/snapshots/help.txt from line {}:\n  snapshot: {:?}\n  now:      {:?}\n\
             (an intended change: ASL_BLESS=1 cargo test --test cli_help, and review the diff)",
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first)
        );
    }
}

#[test]
fn the_manual_names_every_command() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/manual");
    let mut manual = String::new();
    for e in fs::read_dir(&dir).unwrap() {
        manual.push_str(&fs::read_to_string(e.unwrap().path()).unwrap());
    }
    let rows: Vec<&str> = manual.lines().filter(|l| l.starts_with("| `")).collect();
    let mut missing = Vec::new();
    for (words, _, leaf) in commands() {
        let Some(first) = words.first() else { continue };
        if !leaf {
            continue;
        }
        // Written out in a chapter (`aslctl s3 follow`), or a table row
        // whose first cell has the command and its words (`snapshot
        // list` / `show NAME`).
        let named = manual.contains(&words.join(" ")) && (words.len() > 1 || manual.contains(&format!("`{first}")))
            || rows.iter().any(|r| {
                let cell = r.split(" | ").next().unwrap_or("");
                cell.contains(&format!("`{first}")) && words.iter().all(|w| cell.contains(w.as_str()))
            });
        if !named {
            missing.push(words.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "commands the manual (docs/manual) does not describe: {missing:?}"
    );
}
