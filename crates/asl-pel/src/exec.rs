//! `exec`: a command run in a fresh temporary directory, its declared
//! inputs materialised there read-only, its environment cleared but for
//! what the node declares, without network, under a timeout; its declared
//! outputs, stdout and stderr collected as artifacts.
//!
//! What is enforced depends on the machine. Where the process may create
//! namespaces (root, as in CI), the command runs in an empty network
//! namespace (no interface but a downed loopback: no network; one such
//! namespace is shared by all commands of the process) and its own mount
//! namespace, in which every mount is read-only except the work
//! directory, each input is a read-only bind mount, and the store's
//! directory is hidden under an empty tmpfs: writes outside the work
//! directory fail with EROFS, and the store cannot be read behind the
//! program's back. Where namespaces are refused, the command runs with
//! none of that: inputs are mode 0444, the environment is still cleared
//! and the timeout still holds, and the receipt says `isolation: none`.
//! Either way nothing the command starts outlives its node: the process
//! spawned stays behind as the command's reaper (`reaper`), which kills
//! whatever is left below it when the command ends or times out, also
//! processes that left its session.
//!
//! Output streams go to files, never to memory, so a command printing
//! gigabytes costs disk, not RAM; they are then stored like any file.

#![allow(unsafe_code)]

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::failure::OpError;
use super::node::{InputSource, InputValue, Node};
use super::sandbox::{shared_netns, spawn_isolated, MountPlan};
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::tree;

/// The `PATH` a command gets when its node declares none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The timeout when a node gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the sandbox could enforce on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Network and mount namespaces (see the module docs).
    Namespaces,
    /// Neither: the reason namespaces were refused.
    None(String),
}

impl Isolation {
    /// How receipts name it.
    pub fn name(&self) -> &'static str {
        match self {
            Isolation::Namespaces => "namespaces",
            Isolation::None(_) => "none",
        }
    }
}

/// What this machine allows, found once by starting `/bin/true` in the
/// sandbox.
pub fn isolation() -> &'static Isolation {
    static PROBE: OnceLock<Isolation> = OnceLock::new();
    PROBE.get_or_init(|| {
        if std::env::var_os("ASL_PEL_NO_NAMESPACES").is_some() {
            return Isolation::None("ASL_PEL_NO_NAMESPACES is set".into());
        }
        let probe = || -> Result<(), String> {
            shared_netns().as_ref().map_err(Clone::clone)?;
            let dir = TempDir::new().map_err(|e| e.to_string())?;
            let plan = MountPlan::new(&dir.work, &[], &[]).map_err(|e| e.to_string())?;
            let mut cmd = Command::new("/bin/true");
            cmd.current_dir(&dir.work).env_clear();
            let st = spawn_isolated(&mut cmd, Some(plan))
                .and_then(|mut c| c.wait())
                .map_err(|e| e.to_string())?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("the probe exited with {st}"))
            }
        };
        match probe() {
            Ok(()) => Isolation::Namespaces,
            Err(e) => Isolation::None(e),
        }
    })
}

/// Checks an `exec` node's parameters and input names.
pub fn check_params(n: &Node) -> Result<(), String> {
    let p = &n.params;
    match (p.get("cmd"), p.get("argv")) {
        (Some(Value::Text(c)), None) if !c.is_empty() => {}
        (None, Some(Value::Array(a)))
            if !a.is_empty() && a.iter().all(|x| matches!(x, Value::Text(t) if !t.is_empty())) => {}
        (Some(_), Some(_)) => return Err("exec takes `cmd` or `argv`, not both".into()),
        (None, None) => return Err("exec needs `cmd` (a shell command) or `argv` (a list of words)".into()),
        _ => return Err("exec: `cmd` is non-empty text, `argv` a non-empty list of non-empty texts".into()),
    }
    if let Some(env) = p.get("env") {
        let Value::Map(m) = env else {
            return Err("env is not a map".into());
        };
        for (k, v) in m {
            match (k, v) {
                (Value::Text(k), Value::Text(_)) if !k.is_empty() && !k.contains('=') && !k.contains('\0') => {}
                _ => return Err(format!("env: {k} = {v} is not NAME = text")),
            }
        }
    }
    match p.get("timeout") {
        None => {}
        Some(Value::Unsigned(s)) if *s >= 1 => {}
        Some(other) => return Err(format!("timeout: {other} is not a number of seconds (1 or more)")),
    }
    let mut outs: Vec<&str> = Vec::new();
    match p.get("outputs") {
        None => {}
        Some(Value::Array(items)) => {
            for o in items {
                let Value::Text(o) = o else {
                    return Err(format!("outputs: {o} is not a path"));
                };
                relative(o).map_err(|e| format!("output {o:?}: {e}"))?;
                if o == "stdout" || o == "stderr" {
                    return Err(format!("output {o:?}: the name is taken by the command's {o} stream"));
                }
                if outs.contains(&o.as_str()) {
                    return Err(format!("output {o:?} is declared twice"));
                }
                outs.push(o);
            }
        }
        Some(other) => return Err(format!("outputs: {other} is not a list of paths")),
    }
    for i in &n.inputs {
        relative(&i.name).map_err(|e| format!("input {:?}: {e}", i.name))?;
        if outs.contains(&i.name.as_str()) {
            return Err(format!("{:?} is both an input and an output", i.name));
        }
    }
    match p.get("stdin") {
        None => {}
        Some(Value::Text(s)) if n.inputs.iter().any(|i| &i.name == s) => {}
        Some(other) => return Err(format!("stdin: {other} names no input")),
    }
    Ok(())
}

fn relative(p: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(p);
    if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("not a relative path of plain names".into());
    }
    Ok(path)
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

/// What a command produced.
#[derive(Clone, Debug)]
pub struct ExecResult {
    /// Declared outputs that exist, by name.
    pub outputs: Vec<(String, ArtifactId)>,
    /// Its standard output and error.
    pub stdout: ArtifactId,
    /// See `stdout`.
    pub stderr: ArtifactId,
    /// How it ended.
    pub ended: Ended,
    /// Why the node failed, if it did (non-zero exit, a signal, the
    /// timeout, a declared output missing).
    pub error: Option<String>,
    /// What the sandbox enforced.
    pub isolation: &'static str,
}

/// Runs `exec` node `n` on `inputs`. `hide` are directories the command
/// must not see (the store's). An `Err` is a failure to run at all: the
/// node's ([`OpError::Node`]: no such command, a bad parameter) or the
/// environment's (the store, or the work directory, failed).
pub fn run(store: &Store, n: &Node, inputs: &[InputValue<'_>], hide: &[PathBuf]) -> Result<ExecResult, OpError> {
    let dir = TempDir::new().map_err(|e| OpError::io("make a work directory", e))?;
    let mut input_paths = Vec::new();
    for i in inputs {
        let path = dir.work.join(relative(i.name)?);
        let from = InputSource::of(store, i.snapshot)?;
        materialise(from.source(), &i.id, &path).map_err(|e| match e {
            OpError::Node(m) => OpError::Node(format!("materialise input {:?}: {m}", i.name)),
            env => env,
        })?;
        input_paths.push(path);
    }
    let p = &n.params;
    let mut cmd = match (p.get("cmd"), p.get("argv")) {
        (Some(Value::Text(c)), _) => {
            let mut c2 = Command::new("/bin/sh");
            c2.arg("-c").arg(c);
            c2
        }
        (_, Some(Value::Array(a))) => {
            let words: Vec<&str> = a
                .iter()
                .filter_map(|w| match w {
                    Value::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            let mut c2 = Command::new(words[0]);
            c2.args(&words[1..]);
            c2
        }
        _ => return Err(OpError::Node("exec needs cmd or argv".into())),
    };
    cmd.current_dir(&dir.work).env_clear().env("PATH", DEFAULT_PATH);
    if let Some(Value::Map(env)) = p.get("env") {
        for (k, v) in env {
            if let (Value::Text(k), Value::Text(v)) = (k, v) {
                cmd.env(k, v);
            }
        }
    }
    let out_path = dir.root.join("stdout");
    let err_path = dir.root.join("stderr");
    let create = |p: &Path| File::create(p).map_err(|e| OpError::io(format!("create {}", p.display()), e));
    let (stdout, stderr) = (create(&out_path)?, create(&err_path)?);
    cmd.stdout(stdout).stderr(stderr);
    match p.get("stdin") {
        Some(Value::Text(name)) => {
            let f = File::open(dir.work.join(name)).map_err(|e| format!("open stdin {name:?}: {e}"))?;
            cmd.stdin(f);
        }
        _ => {
            cmd.stdin(Stdio::null());
        }
    }
    let iso = isolation();
    let plan = match iso {
        Isolation::Namespaces => Some(
            MountPlan::new(&dir.work, &input_paths, hide).map_err(|e| OpError::io("plan the sandbox's mounts", e))?,
        ),
        Isolation::None(_) => None,
    };
    let timeout = match p.get("timeout") {
        Some(Value::Unsigned(s)) => Duration::from_secs(*s),
        _ => DEFAULT_TIMEOUT,
    };
    let child = spawn_isolated(&mut cmd, plan).map_err(|e| format!("start the command: {e}"))?;
    let ended = wait_with_timeout(child, timeout)?;
    let mut error = match (&ended.code, &ended.signal) {
        _ if ended.timed_out => Some(format!("timed out after {} s", timeout.as_secs())),
        (Some(0), _) => None,
        (Some(c), _) => Some(format!("exited with status {c}")),
        (None, Some(s)) => Some(format!("killed by signal {s}")),
        (None, None) => Some("ended without a status".into()),
    };
    let put = |path: &Path| -> Result<ArtifactId, OpError> {
        Ok(store.put_file_with(path, &asl_core::PutOptions::default())?.id)
    };
    let stdout = put(&out_path)?;
    let stderr = put(&err_path)?;
    let mut outputs = Vec::new();
    if let Some(Value::Array(declared)) = p.get("outputs") {
        for o in declared {
            let Value::Text(o) = o else { continue };
            let path = dir.work.join(o);
            match fs::symlink_metadata(&path) {
                Ok(md) if md.is_file() => outputs.push((o.clone(), put(&path)?)),
                Ok(md) if md.is_dir() => outputs.push((o.clone(), tree::store_directory(store, &path)?)),
                Ok(_) => {
                    error.get_or_insert_with(|| format!("output {o:?} is neither a file nor a directory"));
                }
                Err(_) => {
                    error.get_or_insert_with(|| format!("declared output {o:?} was not produced"));
                }
            }
        }
    }
    Ok(ExecResult {
        outputs,
        stdout,
        stderr,
        ended,
        error,
        isolation: iso.name(),
    })
}

/// Writes artifact (or tree) `id` at `path`, read-only.
fn materialise(store: &dyn asl_records::Source, id: &ArtifactId, path: &Path) -> Result<(), OpError> {
    let at = |what: &str| format!("{what} {}", path.display());
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| OpError::io(at("create"), e))?;
    }
    if tree::is_tree(store, id)? {
        fs::create_dir(path).map_err(|e| OpError::io(at("create"), e))?;
        tree::checkout(store, id, path, false)?;
        set_read_only(path).map_err(|e| OpError::io(at("make read-only"), e))?;
    } else {
        let mut f = File::create(path).map_err(|e| OpError::io(at("create"), e))?;
        let mut r = store.reader(id)?;
        // A failing read here is the store's (its reader proves every byte
        // and reports damage as an I/O error of kind InvalidData).
        std::io::copy(&mut r, &mut f).map_err(|e| OpError::io(at("write"), e))?;
        f.flush().map_err(|e| OpError::io(at("write"), e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o444))
            .map_err(|e| OpError::io(at("make read-only"), e))?;
    }
    Ok(())
}

fn set_read_only(path: &Path) -> std::io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.is_dir() {
        for e in fs::read_dir(path)? {
            set_read_only(&e?.path())?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o555))
    } else if md.is_file() {
        let mode = if md.permissions().mode() & 0o111 != 0 {
            0o555
        } else {
            0o444
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    } else {
        Ok(())
    }
}

fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> Result<Ended, String> {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = child.wait();
        let _ = tx.send(());
        r
    });
    let timed_out = rx.recv_timeout(timeout).is_err();
    // The child is the command's reaper (see `reaper`): after the command
    // it kills whatever the command left, wherever it moved; on timeout it
    // is told to do so now. The group kill after it is a backstop, should
    // the reaper not end in time.
    // SAFETY: kill(2) signals a process or (negative pid) a process group;
    // no memory is involved.
    unsafe {
        if timed_out {
            libc::kill(pid, libc::SIGTERM);
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
        libc::kill(-pid, libc::SIGKILL);
    }
    let status = waiter
        .join()
        .map_err(|_| "the waiting thread panicked".to_string())?
        .map_err(|e| format!("wait for the command: {e}"))?;
    Ok(Ended {
        code: status.code(),
        signal: status.signal(),
        timed_out,
    })
}

/// A private temporary directory: `root/work` is the command's.
struct TempDir {
    root: PathBuf,
    work: PathBuf,
}

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "asl-pel-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        let work = root.join("work");
        fs::create_dir(&work)?;
        Ok(TempDir { root, work })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Inputs were made read-only: give directories their write bit back
        // so that an unprivileged user can remove their entries.
        fn writable(p: &Path) {
            if let Ok(md) = fs::symlink_metadata(p) {
                if md.is_dir() {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                    if let Ok(rd) = fs::read_dir(p) {
                        for e in rd.flatten() {
                            writable(&e.path());
                        }
                    }
                }
            }
        }
        writable(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}
