//! The run dir (`--run-dir`) belongs to one marathon-lb and one HAProxy master.
//!
//! - [`lock`]: an exclusive `flock` on `marathon-lb.lock`, held for the life of the process
//!   (the kernel drops it when we die, even by `kill -9`; the descriptor is close-on-exec, so
//!   HAProxy never inherits it). A second instance fails at start naming the holder's pid.
//! - The master's pid file (`haproxy.pid`): written at each (re)start, removed on a clean
//!   stop. A master found through it at start ([`stop_leftover`]) was left by a marathon-lb
//!   that died without stopping it (the death signal covers most cases; a master whose
//!   parent was not marathon-lb, or a kernel without it, does not): it is stopped, so there
//!   is never a second master on the same ports serving a config nobody updates.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::process::Signal;

use super::child::signal;

/// Name of the lock file in the run dir.
pub const LOCK_FILE: &str = "marathon-lb.lock";
/// How long a leftover master gets after SIGTERM before SIGKILL.
const LEFTOVER_TERM_WAIT: Duration = Duration::from_secs(5);
/// How long processes get to vanish after SIGKILL.
const LEFTOVER_KILL_WAIT: Duration = Duration::from_secs(2);

/// Why the run dir cannot be ours.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("--run-dir {dir} is in use by another marathon-lb (pid {holder}); {lock} is locked")]
    Busy {
        /// The run dir.
        dir: String,
        /// The lock file.
        lock: String,
        /// The pid the holder wrote, or "unknown".
        holder: String,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {lock}: {error}")]
    Io {
        /// The lock file.
        lock: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// The held lock on a run dir; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunDirLock {
    /// Keeps the `flock`.
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// Takes the run dir's lock and writes our pid into the lock file.
///
/// # Errors
/// [`LockError::Busy`] naming the holder's pid, or [`LockError::Io`].
pub fn lock(dir: &Path) -> Result<RunDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |error| LockError::Io {
        lock: path.display().to_string(),
        error,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Busy {
                dir: dir.display().to_string(),
                lock: path.display().to_string(),
                holder: if holder.is_empty() { "unknown" } else { holder }.to_owned(),
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(RunDirLock { _file: file, path })
}

/// Records the running master's pid (best effort: without it only the leftover check is
/// lost, which is logged).
pub(super) fn write_pid(pid_file: &Path, pid: u32) {
    if let Err(e) = std::fs::write(pid_file, format!("{pid}\n")) {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot write the haproxy pid file");
    }
}

/// A process as `/proc/PID/stat` shows it: (state, parent pid).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (exists and is not a zombie waiting for its parent).
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X' | 'x'))
}

/// Pids whose parent is `parent` (from `/proc`).
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// Whether `pid`'s command line is a HAProxy master on `master_socket` (our `-S` argument).
fn is_our_master(pid: u32, master_socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let socket = master_socket.as_os_str().as_encoded_bytes();
    let mut args = cmdline.split(|b| *b == 0);
    let first = args.next().unwrap_or_default();
    let is_haproxy = String::from_utf8_lossy(first).contains("haproxy");
    is_haproxy && args.any(|arg| arg.starts_with(socket))
}

/// Stops a master a previous marathon-lb left behind for this run dir (found through
/// `pid_file` and checked to be a HAProxy master on `master_socket`), with its workers:
/// SIGTERM, then SIGKILL after a bounded wait. Returns the master's pid when it stopped one.
pub(super) async fn stop_leftover(pid_file: &Path, master_socket: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if pid == std::process::id() || !alive(pid) || !is_our_master(pid, master_socket) {
        let _ = std::fs::remove_file(pid_file);
        return None;
    }
    let workers = children_of(pid);
    tracing::warn!(pid, ?workers, pid_file = %pid_file.display(),
        "found a haproxy master left running by a previous marathon-lb; stopping it");
    let all: Vec<u32> = std::iter::once(pid)
        .chain(workers.iter().copied())
        .collect();
    let _ = signal(pid, Signal::TERM);
    let mut how = "SIGTERM";
    if !all_gone(&all, LEFTOVER_TERM_WAIT).await {
        how = "SIGKILL";
        for p in &all {
            let _ = signal(*p, Signal::KILL);
        }
        if !all_gone(&all, LEFTOVER_KILL_WAIT).await {
            tracing::error!(pid, "the leftover haproxy master survived SIGKILL");
            return Some(pid);
        }
    }
    tracing::warn!(
        pid,
        ?workers,
        signal = how,
        "stopped the leftover haproxy master"
    );
    let _ = std::fs::remove_file(pid_file);
    Some(pid)
}

/// Polls until none of `pids` runs, at most `wait`; whether they all stopped.
async fn all_gone(pids: &[u32], wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        drop(held);
        lock(dir.path()).unwrap();
    }

    #[test]
    fn proc_stat_reads_our_own_process() {
        let me = std::process::id();
        assert!(alive(me));
        let (_, ppid) = stat(me).unwrap();
        assert!(children_of(ppid).contains(&me));
        assert!(!is_our_master(me, Path::new("/nonexistent/master.sock")));
    }
}
