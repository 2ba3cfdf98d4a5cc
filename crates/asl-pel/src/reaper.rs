//! The reaper between `exec` and its command: nothing a command starts may
//! outlive its node, including processes that leave its process group and
//! session (`setsid`) or double-fork, which a process-group kill misses.
//!
//! The process `exec` spawns makes itself a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`) and forks: the fork runs the command, and
//! every process orphaned below it is re-parented to the reaper, never to
//! init, whatever session or group it moved to. When the command ends the
//! reaper kills every child it has left, and the children those leave,
//! until it has none; asked to stop (SIGTERM, on timeout) it does the same
//! at once. Then it exits as the command did. This needs no privilege, so
//! it holds with and without namespaces; a process can only get away by
//! asking another service to start it (a daemon over a socket), which the
//! mount and network namespaces, where available, cut off.
//!
//! All of this runs between fork and exec of a multi-threaded program, so
//! it is system calls only: no allocation, no locks.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the SIGTERM handler of the reaper process.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// In the spawned child, before exec: becomes the reaper and forks. Returns
/// in the fork, which goes on to exec the command; the reaper itself never
/// returns (it exits as the command did).
pub(super) fn split() -> std::io::Result<()> {
    // SAFETY (all calls below): plain system calls on memory of this
    // function's own frame or statics; nothing allocates.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let reaper = libc::getpid();
        let command = libc::fork();
        if command < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if command == 0 {
            // The command goes with its reaper, should that be killed.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 || libc::getppid() != reaper {
                libc::_exit(127);
            }
            return Ok(());
        }
        reap(command)
    }
}

/// The reaper's life: waits for every process below it, kills what is left
/// once the command has ended (or when told to stop), then exits as the
/// command did.
unsafe fn reap(command: libc::pid_t) -> ! {
    // The parent's descriptors (the pipe through which it learns whether
    // exec succeeded among them) are the command's business, not ours:
    // holding them would keep the parent waiting for this process.
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        for fd in 3..4096 {
            libc::close(fd);
        }
    }
    let mut sa: libc::sigaction = std::mem::zeroed();
    sa.sa_sigaction = on_term as *const () as usize;
    libc::sigemptyset(&mut sa.sa_mask);
    // No SA_RESTART: the wait below must return to look at the flag.
    sa.sa_flags = 0;
    libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    let mut ended: Option<libc::c_int> = None;
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid == command {
            ended = Some(status);
        }
        let stopping = STOP.load(Ordering::SeqCst);
        if stopping && ended.is_none() {
            libc::kill(command, libc::SIGKILL);
        }
        if pid < 0 && *libc::__errno_location() == libc::ECHILD {
            break;
        }
        if ended.is_some() || stopping {
            kill_children();
        }
    }
    match ended {
        Some(s) if libc::WIFSIGNALED(s) => {
            let sig = libc::WTERMSIG(s);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig)
        }
        Some(s) if libc::WIFEXITED(s) => libc::_exit(libc::WEXITSTATUS(s)),
        _ => libc::_exit(127),
    }
}

/// SIGKILL to every child this process has now (read from
/// `/proc/thread-self/children`, a space-separated list of pids).
unsafe fn kill_children() {
    let fd = libc::open(c"/proc/thread-self/children".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
    libc::close(fd);
    if n <= 0 {
        return;
    }
    let mut pid: libc::pid_t = 0;
    for &b in &buf[..n as usize] {
        if b.is_ascii_digit() {
            pid = pid.saturating_mul(10).saturating_add((b - b'0') as libc::pid_t);
        } else {
            if pid > 0 {
                libc::kill(pid, libc::SIGKILL);
            }
            pid = 0;
        }
    }
    // The last number is whole only if the list was read to its end.
    if pid > 0 && (n as usize) < buf.len() {
        libc::kill(pid, libc::SIGKILL);
    }
}
