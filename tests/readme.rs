//! The walkthroughs in the README and the manual run as written: every
//! fenced block whose info string is `sh tested` is run by bash
//! (`set -euo pipefail`) in a fresh directory holding a copy of
//! `examples/`, with this build's `aslctl` first on `PATH` and the
//! walkthroughs' fixed port 7878 moved to a free one. A block that fails
//! names its file, its first line and what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// `(file, line, text)` of every tested block in `file`.
fn tested_blocks(file: &Path) -> Vec<(PathBuf, usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None if line.trim_end() == "```sh tested" => open = Some((i + 2, String::new())),
            None => {}
            Some(_) if line.starts_with("```") => {
                let (at, body) = open.take().expect("matched Some");
                out.push((file.to_path_buf(), at, body));
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{}: a tested block is not closed", file.display());
    out
}

#[test]
fn the_walkthroughs_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    if let Ok(rd) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
    }
    let blocks: Vec<_> = files.iter().flat_map(|f| tested_blocks(f)).collect();
    assert!(
        blocks.len() >= 3,
        "the serve, HDF5 and federation walkthroughs at least"
    );
    let bin_dir = Path::new(common::aslctl_bin()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for (file, line, body) in blocks {
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(&root.join("examples"), &dir.path().join("examples"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = body.replace("7878", &port.to_string());
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env_remove("ASL_STORE")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}:{line}: the block failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            file.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
