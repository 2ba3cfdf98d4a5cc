//! A real `aslctl serve` process for the server tests, and a curl helper.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Server {
    child: Child,
    /// `http://ADDR`.
    pub url: String,
    /// `ADDR`.
    pub addr: String,
    /// The store it serves.
    pub store: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Sends SIGTERM (as a service manager would) and waits for the exit.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        (status, self.dir.take().unwrap())
    }

    /// Kills the server (as a crash would) and keeps its store.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(extra: &[&str], tokens: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    start_on(dir, store, extra, tokens)
}

pub fn start_on(dir: tempfile::TempDir, store: PathBuf, extra: &[&str], tokens: Option<&str>) -> Server {
    let mut cmd = Command::new(super::aslctl_bin());
    cmd.arg("--store")
        .arg(&store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra);
    if let Some(t) = tokens {
        let p = dir.path().join("tokens.json");
        std::fs::write(&p, t).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        cmd.arg("--tokens").arg(&p);
    }
    let (child, url) = listening(cmd.stderr(Stdio::null()));
    let addr = url.trim_start_matches("http://").to_string();
    Server {
        child,
        url,
        addr,
        store,
        dir: Some(dir),
    }
}

/// Spawns an `aslctl serve` command and waits for its first line,
/// `listening on URL`; returns the process and the URL.
pub fn listening(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address line, got {line:?}"))
        .to_string();
    (child, url)
}

/// curl with `args`, printing the status code after the body.
pub fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let o: Output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (see .ci/run)");
    let mut body = o.stdout;
    let at = body.iter().rposition(|b| *b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&body[at + 1..]).parse().unwrap();
    body.truncate(at);
    (code, body)
}

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

pub fn put_file(s: &Server, p: &Path) -> serde_json::Value {
    put_at(&s.url, p)
}

/// `PUT /v1/artifacts` of the file `p` to the server at `url`: its answer,
/// asserted a success.
pub fn put_at(url: &str, p: &Path) -> serde_json::Value {
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", p.display()),
        &format!("{url}/v1/artifacts"),
    ]);
    assert!(code == 201 || code == 200, "{code}: {}", String::from_utf8_lossy(&body));
    json(&body)
}

pub fn list_ids(s: &Server) -> Vec<String> {
    let (_, b) = curl(&[&format!("{}/v1/artifacts", s.url)]);
    json(&b)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
