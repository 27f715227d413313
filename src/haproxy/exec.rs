//! How marathon-lb runs the programs it depends on (`haproxy -c`, the reload command, the
//! supervised HAProxy master): with a scrubbed environment, in bounded time, cancellable at
//! shutdown, and tied to our life.
//!
//! - **Environment**: a child gets only an allowlist of harmless variables
//!   ([`allowed`]) plus the names the operator passes with `--haproxy-env`; anything that
//!   looks like a credential is refused even when a pattern would allow it. HAProxy expands
//!   `"${NAME}"` in its config, so an app label could otherwise serve marathon-lb's own
//!   `DCOS_SERVICE_ACCOUNT_CREDENTIAL`.
//! - **Time**: [`run_bounded`] kills the child's whole process group (SIGKILL) when its
//!   step's timeout passes, or when [`cancel_all`] was called (SIGTERM to marathon-lb), and
//!   names the step and the timeout in its error.
//! - **Life**: every child gets `PR_SET_PDEATHSIG` = SIGKILL, so it dies with us even after a
//!   `kill -9` (an experiment on HAProxy 2.6: workers exit within a second of their master's
//!   SIGKILL). Every pid we spawn is registered in [`KNOWN`], so the PID 1 reaper
//!   ([`super::reaper`]) never steals the exit status of a child we wait for.
//!
//! - **Memory**: a one-shot run turns transparent huge pages off for itself
//!   ([`disable_huge_pages`]); its children get the system's setting back.
//!
//! Settings are process-wide ([`configure`], once at start): the same check and reload code
//! serves one-shot mode, the live loop and managed mode.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Whether [`disable_huge_pages`] turned transparent huge pages off for this process.
static HUGE_PAGES_OFF: AtomicBool = AtomicBool::new(false);

/// Turns transparent huge pages off for this process, not for the programs it runs. The
/// allocator asks for huge pages on its arenas, and each one touched counts 2 MiB in the RSS
/// however little of it is used: a one-shot run of 10,000 apps peaked at 55-58 MiB with them
/// and 44 MiB without, in the same time. (The live loop keeps them: it reuses its pages.)
///
/// # Errors
/// The `prctl` failed (a kernel without `PR_SET_THP_DISABLE`); nothing changed.
pub fn disable_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true)?;
    HUGE_PAGES_OFF.store(true, Ordering::SeqCst);
    Ok(())
}

/// Process-wide settings of external steps (`--check-timeout`, `--command-timeout`,
/// `--haproxy-env`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bound on one `haproxy -c`.
    pub check_timeout: Duration,
    /// Bound on one run of the reload command.
    pub command_timeout: Duration,
    /// Extra environment variable names passed to HAProxy and the reload command.
    pub extra_env: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            check_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(60),
            extra_env: Vec::new(),
        }
    }
}

/// How often a bounded wait looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(25);

static LIMITS: OnceLock<Limits> = OnceLock::new();
/// Set once marathon-lb is stopping: every bounded wait then kills its child at once.
static CANCELLED: AtomicBool = AtomicBool::new(false);
/// Pids of the children we spawned and wait for ourselves. Held while spawning, so the PID 1
/// reaper never sees a child of ours before it is registered.
pub(crate) static KNOWN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// Sets the process-wide limits; the first call wins (later calls are ignored).
pub fn configure(limits: Limits) {
    let _ = LIMITS.set(limits);
}

/// The process-wide limits (defaults until [`configure`]).
pub fn limits() -> &'static Limits {
    LIMITS.get_or_init(Limits::default)
}

/// Makes every running and future bounded step fail at once (marathon-lb is stopping).
pub fn cancel_all() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether [`cancel_all`] was called.
pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

pub(crate) fn known() -> MutexGuard<'static, Option<HashSet<u32>>> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an external step did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// It could not start.
    #[error("cannot run {step}: {error}")]
    Spawn {
        /// The step.
        step: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// It ran past its timeout and was killed.
    #[error("{step} timed out after {}s; killed it", timeout.as_secs_f64())]
    TimedOut {
        /// The step.
        step: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// marathon-lb is stopping; the step was killed.
    #[error("{step} cancelled: marathon-lb is stopping")]
    Cancelled {
        /// The step.
        step: String,
    },
}

/// Variables a child may inherit by name.
const PLAIN: [&str; 9] = [
    "PATH", "LANG", "TZ", "TMPDIR", "HOME", "HOSTNAME", "HOST", "PORT", "PORTS",
];
/// Name parts that mark a credential: never passed on, whatever allows them.
const SECRET_WORDS: [&str; 9] = [
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
];
/// marathon-lb's own DC/OS credential: refused even when `--haproxy-env` names it.
const NEVER: &str = "DCOS_SERVICE_ACCOUNT_CREDENTIAL";

/// Whether a name looks like it holds a credential.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Whether a child may inherit `name`: the plain names, `LC_*`, `PORT<n>`/`PORT_<n>`,
/// `MESOS_*` and `MARATHON_APP_*` unless they look like a credential; or a name in `extra`
/// (the operator's explicit choice), except [`NEVER`].
pub fn allowed(name: &str, extra: &[String]) -> bool {
    if name == NEVER {
        return false;
    }
    if extra.iter().any(|e| e == name) {
        return true;
    }
    let port_n = |rest: &str| {
        let digits = rest.strip_prefix('_').unwrap_or(rest);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let by_pattern = PLAIN.contains(&name)
        || name.starts_with("LC_")
        || name.strip_prefix("PORT").is_some_and(port_n)
        || name.starts_with("MESOS_")
        || name.starts_with("MARATHON_APP_");
    by_pattern && !looks_secret(name)
}

/// Our environment, filtered by [`allowed`] with the configured `--haproxy-env` names.
pub fn scrubbed_env() -> Vec<(OsString, OsString)> {
    let extra = &limits().extra_env;
    std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| allowed(k, extra)))
        .collect()
}

/// Makes `command` start with the scrubbed environment, die with us, and (with
/// `own_group`) lead its own process group so a timeout can kill everything it started.
pub fn harden(command: &mut Command, own_group: bool) {
    command.env_clear().envs(scrubbed_env());
    if own_group {
        command.process_group(0);
    }
    die_with_us(command);
}

/// Makes the child of `command` get SIGKILL when the thread that forks it exits (see
/// [`die_with`]). The one place marathon-lb runs code between fork and exec, shared by the
/// bounded steps and the supervised HAProxy master.
pub(crate) fn die_with_us(command: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only reads an atomic and
    // makes raw system calls (prctl, getppid): async-signal-safe, no allocation, no locks.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || die_with(parent));
    }
}

/// In a forked child: ask for SIGKILL when the thread that forked us exits, and fail if our
/// parent is already gone (the signal would never come). Transparent huge pages, if we
/// turned them off for ourselves, are turned back on (the flag survives `exec`).
fn die_with(parent: Pid) -> std::io::Result<()> {
    if HUGE_PAGES_OFF.load(Ordering::SeqCst) {
        rustix::thread::disable_transparent_huge_pages(false)?;
    }
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid() != Some(parent) {
        return Err(std::io::Error::other("parent exited during spawn"));
    }
    Ok(())
}

/// Runs `command` ([`harden`]ed here) for at most `timeout`. `step` names it in errors, e.g.
/// "`haproxy -c`". With `capture` its stdout and stderr are collected; without, they are
/// ours (a reload command that starts a daemon keeping them open must not hold us).
///
/// The wait runs on the calling thread: that thread forked the child, so the death signal
/// cannot fire early while we wait (`PR_SET_PDEATHSIG` follows the forking *thread*).
///
/// # Errors
/// [`ExecError::Spawn`], [`ExecError::TimedOut`] or [`ExecError::Cancelled`]; in the last two
/// cases the child's process group was killed and the child reaped.
pub fn run_bounded(
    mut command: Command,
    step: &str,
    timeout: Duration,
    capture: bool,
) -> Result<Output, ExecError> {
    if cancelled() {
        return Err(ExecError::Cancelled { step: step.into() });
    }
    harden(&mut command, true);
    command.stdin(Stdio::null());
    if capture {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = {
        let mut known = known();
        let child = command.spawn().map_err(|error| ExecError::Spawn {
            step: step.into(),
            error,
        })?;
        known.get_or_insert_with(HashSet::new).insert(child.id());
        child
    };
    let pid = child.id();
    let readers = [
        child.stdout.take().map(read_all),
        child.stderr.take().map(read_all),
    ];
    // A waiter thread reports the exit at once (no polling delay on every check); this thread
    // keeps the deadline and the cancel flag, and stays blocked, so the child's death signal
    // (tied to this, the forking thread) cannot fire early.
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let started = Instant::now();
    let result = loop {
        let left = timeout.saturating_sub(started.elapsed());
        let failure = match exit.recv_timeout(CANCEL_POLL.min(left)) {
            Ok(Ok(status)) => break Ok(status),
            Ok(Err(error)) => {
                break Err(ExecError::Spawn {
                    step: step.into(),
                    error,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                break Err(ExecError::Spawn {
                    step: step.into(),
                    error: std::io::Error::other("lost the child's exit status"),
                })
            }
            Err(RecvTimeoutError::Timeout) if cancelled() => {
                ExecError::Cancelled { step: step.into() }
            }
            Err(RecvTimeoutError::Timeout) if started.elapsed() >= timeout => ExecError::TimedOut {
                step: step.into(),
                timeout,
            },
            Err(RecvTimeoutError::Timeout) => continue,
        };
        kill_group(pid);
        // Reaped by the waiter thread once the kill lands.
        let _ = exit.recv_timeout(Duration::from_secs(2));
        break Err(failure);
    };
    known().get_or_insert_with(HashSet::new).remove(&pid);
    let status = result?;
    let [stdout, stderr] = readers.map(|r| {
        r.and_then(|rx| rx.recv_timeout(Duration::from_millis(500)).ok())
            .unwrap_or_default()
    });
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// SIGKILL to the process group `pid` leads (best effort: it may be gone already).
fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// Reads a pipe to its end on a thread; the result arrives on the channel. A grandchild
/// holding the pipe open only delays (bounded by the caller's `recv_timeout`), never blocks.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// A job for the spawner thread.
type Job = Box<dyn FnOnce() + Send>;
/// The spawner thread's queue; the sender lives in a static, so the thread never ends.
static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();

/// Runs `job` on a dedicated thread that lives as long as the process, and returns its result.
///
/// Why: `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
/// process. Tokio's worker and blocking-pool threads come and go (`block_in_place` hands a
/// worker's core to a new thread; idle blocking threads exit after 10 s), so a long-lived
/// child (the HAProxy master) forked from one of them would be killed at a random moment.
/// Forking it here keeps the signal for the one event it is meant for: our death.
///
/// # Errors
/// When the thread cannot be started or is gone.
pub async fn on_spawner_thread<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let queue = match SPAWNER.get() {
        Some(queue) => queue,
        None => {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("mlb-spawner".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })?;
            // A racing first call may have set it first: its thread serves, ours ends (its
            // sender is dropped here).
            SPAWNER.get_or_init(|| Mutex::new(tx))
        }
    };
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(job());
    });
    queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    result
        .await
        .map_err(|_| std::io::Error::other("the spawner thread dropped a job"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_turned_off_here_are_back_on_in_the_programs_we_run() {
        let thp = |status: &[u8]| {
            let status = String::from_utf8_lossy(status).into_owned();
            let line = status.lines().find(|l| l.starts_with("THP_enabled:"));
            line.and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        let ours = std::fs::read("/proc/self/status").unwrap();
        if thp(&ours).is_none() {
            eprintln!("SKIP: this kernel's /proc/self/status has no THP_enabled line");
            return;
        }
        disable_huge_pages().unwrap();
        let ours = std::fs::read("/proc/self/status").unwrap();
        assert_eq!(thp(&ours).as_deref(), Some("0"));
        let mut sh = Command::new("sh");
        sh.args(["-c", "cat /proc/self/status"]);
        let child = run_bounded(sh, "a test", Duration::from_secs(10), true).unwrap();
        assert_eq!(thp(&child.stdout).as_deref(), Some("1"));
    }

    #[test]
    fn credentials_never_pass_plain_names_do() {
        let none: &[String] = &[];
        for ok in [
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "HOST",
            "PORT",
            "PORT0",
            "PORT_10000",
            "PORTS",
            "MESOS_TASK_ID",
            "MARATHON_APP_ID",
        ] {
            assert!(allowed(ok, none), "{ok}");
        }
        for no in [
            "DCOS_SERVICE_ACCOUNT_CREDENTIAL",
            "SOME_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "MESOS_AUTHENTICATE_PASSWORD",
            "MARATHON_APP_LABEL_DB_PASSWORD",
            "MARATHON_APP_LABEL_HAPROXY_0_AUTH",
            "MESOS_SECRET",
            "PORTX",
            "PORT_",
            "LD_PRELOAD",
            "HAPROXY_HEAD",
        ] {
            assert!(!allowed(no, none), "{no}");
        }
        let extra = vec!["STATS_PASSWORD".to_owned(), NEVER.to_owned()];
        assert!(allowed("STATS_PASSWORD", &extra));
        assert!(!allowed(NEVER, &extra));
    }

    #[test]
    fn a_step_past_its_timeout_is_killed_and_named() {
        let mut sleep = Command::new("sh");
        sleep.arg("-c").arg("sleep 30 & sleep 30");
        let started = Instant::now();
        let err = run_bounded(sleep, "`test step`", Duration::from_millis(200), true).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            "`test step` timed out after 0.2s; killed it"
        );
        let mut echo = Command::new("sh");
        echo.arg("-c").arg("echo out; echo err >&2; exit 3");
        let output = run_bounded(echo, "echo", Duration::from_secs(10), true).unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(
            (&output.stdout[..], &output.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
    }
}
