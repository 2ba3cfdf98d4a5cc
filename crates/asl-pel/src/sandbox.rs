//! The sandbox `exec` commands start in, where the process may create
//! namespaces: the shared empty network namespace, and a mount namespace in
//! which everything is read-only but the command's work directory, inputs
//! are read-only bind mounts and the store is hidden. The child's part runs
//! between fork and exec, so it is system calls only, on paths prepared
//! before the fork.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One empty network namespace, made once and entered by every command:
/// creating a namespace per command cost more than the rest of starting
/// it (the kernel sets up and later tears down a loopback device and its
/// sysctls each time). Held by an open descriptor of its `ns/net` file.
pub(super) fn shared_netns() -> &'static Result<File, String> {
    static NETNS: OnceLock<Result<File, String>> = OnceLock::new();
    NETNS.get_or_init(|| {
        // A thread of its own unshares (network namespaces are per thread),
        // opens its namespace and ends; the descriptor keeps it alive.
        std::thread::spawn(|| {
            // SAFETY: unshare(2) on the calling thread only; no memory.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
            }
            File::open("/proc/thread-self/ns/net").map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the namespace thread panicked".into()))
    })
}

/// The mount calls the child makes, prepared in the parent: after `fork`
/// the child may not allocate (another thread may have held the allocator's
/// lock), so every path is a `CString` made beforehand.
pub(super) struct MountPlan {
    netns: std::os::fd::RawFd,
    work: CString,
    read_only: Vec<CString>,
    inputs: Vec<CString>,
    hide: Vec<CString>,
}

impl MountPlan {
    pub(super) fn new(work: &Path, inputs: &[PathBuf], hide: &[PathBuf]) -> std::io::Result<MountPlan> {
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let info = fs::read_to_string("/proc/self/mountinfo")?;
        let mut read_only = Vec::new();
        for line in info.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                read_only.push(c(Path::new(&unescape(mp)))?);
            }
        }
        use std::os::fd::AsRawFd;
        let netns = shared_netns().as_ref().map_err(|e| std::io::Error::other(e.clone()))?;
        Ok(MountPlan {
            netns: netns.as_raw_fd(),
            work: c(work)?,
            read_only,
            inputs: inputs.iter().map(|p| c(p)).collect::<Result<_, _>>()?,
            hide: hide
                .iter()
                .filter(|p| p.is_dir())
                .map(|p| c(p))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &s[i + 1..i + 4];
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn spawn_isolated(cmd: &mut Command, plan: Option<MountPlan>) -> std::io::Result<std::process::Child> {
    // SAFETY: the closure runs in the child between fork and exec. It only
    // makes system calls (setpgid, prctl, fork, unshare, mount) on memory
    // prepared before the fork (`plan`'s CStrings, moved in), and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // From here on this is the command's process; the one spawned
            // stays behind as its reaper (see `reaper`).
            super::reaper::split()?;
            if let Some(plan) = &plan {
                sandbox(plan)?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// In the child: the shared empty network namespace, a new mount
/// namespace, everything read-only but the work directory, inputs
/// read-only, the store hidden.
fn sandbox(plan: &MountPlan) -> std::io::Result<()> {
    let err = || Err(std::io::Error::last_os_error());
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY (all calls below): plain system calls on NUL-terminated paths
    // owned by `plan`, which outlives them.
    unsafe {
        if libc::setns(plan.netns, libc::CLONE_NEWNET) != 0 || libc::unshare(libc::CLONE_NEWNS) != 0 {
            return err();
        }
        // Mount events must not propagate back to the host's namespace.
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return err();
        }
        // The work directory becomes a mount of its own first, so that
        // making its parent's mount read-only leaves it writable.
        if libc::mount(
            plan.work.as_ptr(),
            plan.work.as_ptr(),
            null,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return err();
        }
        for mp in &plan.read_only {
            // Pseudo file systems may refuse and are let be; the root
            // must not, or the command could write anywhere on it.
            let r = libc::mount(
                null,
                mp.as_ptr(),
                null,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                std::ptr::null(),
            );
            if r != 0 && mp.as_bytes() == b"/" {
                return err();
            }
        }
        for p in &plan.inputs {
            if libc::mount(
                p.as_ptr(),
                p.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
                || libc::mount(
                    null,
                    p.as_ptr(),
                    null,
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ) != 0
            {
                return err();
            }
        }
        for h in &plan.hide {
            if libc::mount(
                c"tmpfs".as_ptr(),
                h.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            ) != 0
            {
                return err();
            }
        }
        // The child changed into the work directory before this ran, so its
        // working directory is still the one under the (now read-only)
        // parent mount: enter the writable bind mount instead.
        if libc::chdir(plan.work.as_ptr()) != 0 {
            return err();
        }
    }
    Ok(())
}
