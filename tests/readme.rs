//! The docs run as written. Every shell block of the README, the manual
//! (`docs/manual/`) and the other pages of `docs/` carries one of these
//! info strings, and a block with none of them fails the test:
//!
//! - `sh tested`: run by bash (`set -euo pipefail`) in a fresh directory
//!   holding a copy of `examples/`, with this build's `aslctl` first on
//!   `PATH` and the fixed ports 7878 and 7879 moved to free ones;
//! - `sh tested s3`: the same, with an s3s-fs server holding buckets
//!   `artifacts` and `backups` and its `AWS_*` environment;
//! - `sh setup` (README only): set-up commands CI itself runs, each of
//!   which must appear word for word in `.ci/run`;
//! - `sh bench` (benchmark reports): commands too long to run here, each
//!   checked to name a script that exists and parses, a bench target of
//!   `Cargo.toml`, or `aslctl` flags its `--help` lists.
//!
//! A block that fails names its file, its first line and what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

struct Block {
    file: PathBuf,
    line: usize,
    info: String,
    body: String,
}

/// Every fenced block of `file`.
fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        file: file.to_path_buf(),
                        line: i + 2,
                        info: info.trim().to_string(),
                        body: String::new(),
                    });
                }
            }
            Some(_) if line.starts_with("```") => out.push(open.take().expect("matched Some")),
            Some(b) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{}: a block is not closed", file.display());
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn md_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The documents and the shell info strings each may use.
fn documents() -> Vec<(PathBuf, &'static [&'static str])> {
    const README: &[&str] = &["sh tested", "sh setup"];
    const DOCS: &[&str] = &["sh tested", "sh tested s3"];
    const BENCH: &[&str] = &["sh bench"];
    let mut v = vec![
        (root().join("README.md"), README),
        (root().join("DEVELOPMENT.md"), DOCS),
    ];
    for dir in ["docs", "docs/manual"] {
        v.extend(md_files(&root().join(dir)).into_iter().map(|p| {
            let bench = p.file_name().is_some_and(|n| n == "packing.md");
            (p, if bench { BENCH } else { DOCS })
        }));
    }
    v.extend(
        md_files(&root().join("docs/benchmarks"))
            .into_iter()
            .map(|p| (p, BENCH)),
    );
    v
}

fn is_shell(info: &str) -> bool {
    let lang = info.split([' ', ',']).next().unwrap_or("");
    matches!(lang, "sh" | "bash" | "shell" | "console" | "zsh")
}

#[test]
fn every_shell_block_is_run_or_checked() {
    let mut runs = Vec::new();
    let mut bad = Vec::new();
    for (file, allowed) in documents() {
        for b in blocks(&file) {
            if !is_shell(&b.info) {
                continue;
            }
            if !allowed.contains(&b.info.as_str()) {
                bad.push(format!(
                    "{}:{}: ```{} (use one of {allowed:?})",
                    b.file.display(),
                    b.line,
                    b.info
                ));
                continue;
            }
            match b.info.as_str() {
                "sh setup" => check_setup(&b),
                "sh bench" => check_bench(&b),
                _ => runs.push(b),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "shell blocks neither run nor checked:\n{}",
        bad.join("\n")
    );
    assert!(runs.len() >= 8, "the walkthroughs at least");
    let s3 = runs.iter().any(|b| b.info.ends_with("s3")).then(s3_server);
    for b in &runs {
        run(b, s3.as_ref());
    }
}

/// An s3s-fs server with the docs' two buckets, and its data directory.
fn s3_server() -> (common::s3::S3, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    for bucket in ["artifacts", "backups"] {
        std::fs::create_dir_all(data.path().join(bucket)).unwrap();
    }
    (common::s3::s3s_fs(data.path(), 0), data)
}

fn run(b: &Block, s3: Option<&(common::s3::S3, tempfile::TempDir)>) {
    let bin_dir = Path::new(common::aslctl_bin()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("examples"), &dir.path().join("examples"));
    let mut script = b.body.clone();
    for fixed in ["7878", "7879"] {
        script = script.replace(fixed, &common::s3::free_port().to_string());
    }
    // Output into files, not pipes: a server a failed block left running
    // must not keep the test waiting for the pipe to close; and a block
    // gets five minutes.
    let (out, err) = (dir.path().join(".stdout"), dir.path().join(".stderr"));
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "300", "bash", "-euo", "pipefail", "-c", &script])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .current_dir(dir.path())
        .env("PATH", &path)
        .env("HOME", dir.path())
        .env_remove("ASL_STORE")
        .env_remove("ASL_TOKEN");
    if b.info.ends_with("s3") {
        let (server, _) = s3.expect("started when a block needs it");
        cmd.envs(server.env());
    }
    let status = cmd.status().unwrap();
    assert!(
        status.success(),
        "{}:{}: the block failed ({status:?})\n--- stdout\n{}\n--- stderr\n{}",
        b.file.display(),
        b.line,
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
}

/// The commands of a block: `\`-continued lines joined, comments and
/// blank lines dropped.
fn commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in body.lines() {
        let code = line.find(" #").map_or(line, |i| &line[..i]);
        if code.trim_start().starts_with('#') {
            continue;
        }
        let (part, more) = match code.trim_end().strip_suffix('\\') {
            Some(p) => (p, true),
            None => (code, false),
        };
        cur.push_str(part);
        cur.push(' ');
        if !more {
            let c = cur.split_whitespace().collect::<Vec<_>>().join(" ");
            if !c.is_empty() {
                out.push(c);
            }
            cur.clear();
        }
    }
    out
}

/// A README set-up command is one CI runs as written.
fn check_setup(b: &Block) {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let ci: Vec<String> = commands(&ci);
    for c in commands(&b.body) {
        assert!(
            ci.contains(&c),
            "{}:{}: `{c}` is not run by .ci/run",
            b.file.display(),
            b.line
        );
    }
}

/// A benchmark command names what exists: a script that parses, a bench
/// target, or aslctl flags its help lists.
fn check_bench(b: &Block) {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for c in commands(&b.body) {
        let words: Vec<&str> = c.split_whitespace().collect();
        // Leading `VAR=value` settings and a `(cd DIR &&` prefix set the scene.
        let mut w = words
            .iter()
            .copied()
            .skip_while(|w| w.contains('=') && !w.starts_with('-'))
            .peekable();
        let mut here = root().to_path_buf();
        if w.peek() == Some(&"(cd") {
            w.next();
            here = here.join(w.next().unwrap_or_default());
            assert_eq!(w.next(), Some("&&"), "{c}");
        }
        let rest: Vec<&str> = w.collect();
        let where_ = format!("{}:{}: `{c}`", b.file.display(), b.line);
        match rest.as_slice() {
            ["cargo", "bench", "--bench", name, ..] => {
                assert!(
                    manifest.contains(&format!("name = \"{name}\"")),
                    "{where_}: no bench {name}"
                )
            }
            ["cargo", "build", ..] | ["cargo", "run", ..] => assert!(here.join("Cargo.toml").is_file(), "{where_}"),
            [bin, sub, args @ ..] if bin.ends_with("aslctl") => {
                let help = Command::new(common::aslctl_bin())
                    .args([sub, "--help"])
                    .output()
                    .unwrap();
                let help = String::from_utf8_lossy(&help.stdout);
                for flag in args.iter().filter(|a| a.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    assert!(help.contains(flag), "{where_}: aslctl {sub} has no {flag}");
                }
            }
            [script, ..] => {
                let p = here.join(script);
                assert!(p.is_file(), "{where_}: no script {script}");
                let check = if script.ends_with(".py") {
                    Command::new("python3").args(["-m", "py_compile"]).arg(&p).status()
                } else {
                    Command::new("bash").arg("-n").arg(&p).status()
                };
                assert!(check.unwrap().success(), "{where_}: {script} does not parse");
            }
            [] => panic!("{where_}: no command"),
        }
    }
}

/// Every relative link of the README and the docs points at a file that
/// exists (anchors are not checked).
#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for (file, _) in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let base = file.parent().unwrap();
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let target = &rest[..rest.find(')').unwrap_or(rest.len())];
                let path = target.split('#').next().unwrap_or("");
                if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                    continue;
                }
                if !base.join(path).exists() {
                    broken.push(format!("{}:{}: {target}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing:\n{}", broken.join("\n"));
}
