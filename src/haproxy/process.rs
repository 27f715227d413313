//! Supervises one HAProxy in master-worker mode: start it as a child, reload it through the
//! master CLI and confirm the reload, restart it when it dies, stop it.
//!
//! Data flow position: the last step of **validate -> apply**. The lead writes a validated
//! config to `config_path`, then calls [`Supervisor::reload`] with a [`ReloadReason`]. The
//! file on disk is always the last good config, so a restart after a crash reuses it.
//!
//! The command is `haproxy -W -db -S <socket>,mode,600 -f <extra> -f <config>`: `-W` is
//! master-worker mode, `-db` keeps the master in the foreground even if the config says
//! `daemon` (so it stays our child and `wait` sees it die). The extra file is ours: a second
//! `global` section (HAProxy merges them) with `hard-stop-after`, so workers left behind by
//! reloads, held open by idle tunnels under long `timeout tunnel`, end after the drain
//! timeout. It comes first so a `hard-stop-after` in the user's `HAPROXY_HEAD` wins
//! (HAProxy keeps the last value it parses; checked on 2.6).
//!
//! The master is forked from a thread that lives as long as we do, with `PR_SET_PDEATHSIG`
//! = SIGKILL, and never sees our credentials (see [`super::exec`]); its pid goes to a pid
//! file in the run dir, through which a restarted marathon-lb finds and stops a master left
//! behind ([`rundir`]). A clean stop removes the sockets and the pid file.
//!
//! Every operation that replaces the master's config (reload, restart) holds one tokio
//! mutex, so they run one at a time. Counters go out on a `watch` channel ([`Status`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use super::master::{CliError, MasterCli, ProcList, ReloadReply, Worker};
use child::{alerts, launch, monitor, signal, OutputLog};

mod child;
pub mod rundir;
mod settings;

pub use settings::{ReloadOutcome, ReloadReason, Retries, Status, SupervisorConfig};

/// Bound on one master CLI command.
const CLI_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `show proc` is polled while waiting for a start or a reload.
const POLL: Duration = Duration::from_millis(5);

/// Why starting or reloading HAProxy failed. Variants carrying `output` hold HAProxy's
/// `[ALERT]` lines (or its whole recent output when it printed none).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The extra config file could not be written.
    #[error("cannot write {path}: {error}")]
    WriteExtraConfig {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The binary could not be run.
    #[error("cannot run {binary}: {error}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// HAProxy exited while starting.
    #[error("haproxy exited at start ({status}):\n{output}")]
    ExitedAtStart {
        /// Its exit status.
        status: String,
        /// Its output.
        output: String,
    },
    /// The master CLI did not list a worker in time.
    #[error("haproxy did not start within {waited:?}:\n{output}")]
    StartTimeout {
        /// How long we waited.
        waited: Duration,
        /// Its output.
        output: String,
    },
    /// No master is running: it died and a restart (which loads the config on disk) is
    /// pending, or it was stopped.
    #[error("haproxy is not running")]
    NotRunning,
    /// `show proc` failed.
    #[error("cannot list haproxy processes: {0}")]
    ShowProc(CliError),
    /// The master rejected the new config (the old workers keep serving).
    #[error("{reason} reload failed after {attempts} attempt(s); the old config keeps serving:\n{output}")]
    ReloadRejected {
        /// Why it was asked for.
        reason: ReloadReason,
        /// Attempts made.
        attempts: u32,
        /// Its output.
        output: String,
    },
    /// No new worker appeared in time, or the CLI kept failing.
    #[error("{reason} reload not confirmed after {attempts} attempt(s): {last}")]
    ReloadTimedOut {
        /// Why it was asked for.
        reason: ReloadReason,
        /// Attempts made.
        attempts: u32,
        /// What the last attempt saw.
        last: String,
    },
    /// The master died during the reload; the restart will load the config on disk.
    #[error("haproxy master exited during a {reason} reload; it is being restarted")]
    MasterExited {
        /// Why it was asked for.
        reason: ReloadReason,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the monitor task should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Keep HAProxy running; restart it when it dies.
    Run,
    /// SIGUSR1, then SIGTERM after `stop_timeout`.
    Graceful,
    /// SIGTERM now.
    Terminate,
}

/// State shared by the handle and the monitor task.
struct Shared {
    /// What to run.
    config: SupervisorConfig,
    /// The master CLI.
    cli: MasterCli,
    /// Held by every reload and restart: one config change at a time.
    op: Mutex<()>,
    /// Published counters; `master_pid` is also how a reload notices the master died.
    status: watch::Sender<Status>,
    /// HAProxy's recent output, for error messages (shared with the pipe readers).
    output: Arc<OutputLog>,
}

/// A running HAProxy master and the task that restarts it. Dropping it without
/// [`Supervisor::stop`] sends SIGTERM to the master (SIGKILL if the runtime is gone).
pub struct Supervisor {
    /// State shared with the monitor task.
    shared: Arc<Shared>,
    /// Tells the monitor task to stop HAProxy.
    stop: watch::Sender<Stop>,
    /// The monitor task; `None` once stopped.
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Supervisor {
    /// Writes the extra config, starts HAProxy and waits until `show proc` lists a worker.
    ///
    /// # Errors
    /// [`Error::WriteExtraConfig`], [`Error::Spawn`], [`Error::ExitedAtStart`] (a bad config,
    /// a port in use) or [`Error::StartTimeout`].
    pub async fn start(config: SupervisorConfig) -> Result<Self> {
        let cli = MasterCli::new(&config.master_socket, CLI_TIMEOUT);
        let shared = Arc::new(Shared {
            config,
            cli,
            op: Mutex::new(()),
            status: watch::Sender::new(Status::default()),
            output: Arc::default(),
        });
        if let Some(pid_file) = &shared.config.pid_file {
            rundir::stop_leftover(pid_file, &shared.config.master_socket).await;
        }
        let child = launch(&shared).await?;
        shared.status.send_modify(|s| {
            s.master_pid = child.id();
            *s.loads.entry(ReloadReason::Initial).or_default() += 1;
        });
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let monitor = tokio::spawn(monitor(shared.clone(), child, stop_rx));
        Ok(Self {
            shared,
            stop,
            monitor: Mutex::new(Some(monitor)),
        })
    }

    /// Reloads HAProxy with the config on disk and waits for a new worker. One reload runs
    /// at a time. An attempt that fails or sees no new worker within `reload_interval` is
    /// retried per `max_reload_retries`, starting `reload_interval` after the previous one.
    ///
    /// # Errors
    /// [`Error::ReloadRejected`] (with HAProxy's alerts), [`Error::ReloadTimedOut`],
    /// [`Error::MasterExited`] or [`Error::NotRunning`]. In every case the workers that
    /// served before keep serving.
    pub async fn reload(&self, reason: ReloadReason) -> Result<ReloadOutcome> {
        let started = Instant::now();
        let _one_at_a_time = self.shared.op.lock().await;
        let config = &self.shared.config;
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let deadline = Instant::now() + config.reload_interval;
            let failure = match self.reload_once(deadline).await {
                Ok((old_workers, new_worker)) => {
                    break Ok(ReloadOutcome {
                        reason,
                        old_workers,
                        new_worker,
                        attempts,
                        elapsed: started.elapsed(),
                    })
                }
                Err(Attempt::MasterGone) => break Err(Error::MasterExited { reason }),
                Err(Attempt::NotRunning) => break Err(Error::NotRunning),
                Err(failure) => failure,
            };
            if !config.max_reload_retries.allow(attempts - 1) {
                break Err(match failure {
                    Attempt::Rejected(output) => Error::ReloadRejected {
                        reason,
                        attempts,
                        output,
                    },
                    other => Error::ReloadTimedOut {
                        reason,
                        attempts,
                        last: other.to_string(),
                    },
                });
            }
            tracing::warn!(%reason, attempt = attempts, error = %failure, "reload did not take; retrying");
            tokio::time::sleep_until(deadline.into()).await;
        };
        self.shared.status.send_modify(|s| match &result {
            Ok(outcome) => {
                *s.loads.entry(reason).or_default() += 1;
                s.last_reload = Some(outcome.clone());
                s.last_error = None;
            }
            Err(e) => {
                *s.failures.entry(reason).or_default() += 1;
                s.last_error = Some(e.to_string());
            }
        });
        match &result {
            Ok(o) => {
                tracing::info!(%reason, new_worker = o.new_worker, old_workers = ?o.old_workers,
                elapsed_ms = o.elapsed.as_secs_f64() * 1e3, "haproxy reloaded")
            }
            Err(e) => tracing::error!(%reason, error = %e, "haproxy reload failed"),
        }
        result
    }

    /// One `reload` on the master CLI, then `show proc` until the result shows.
    async fn reload_once(&self, deadline: Instant) -> Result<(Vec<u32>, u32), Attempt> {
        let shared = &self.shared;
        let pid = self.master_pid().ok_or(Attempt::NotRunning)?;
        let before = shared.cli.show_proc().await.map_err(Attempt::Cli)?;
        let mark = shared.output.mark();
        match shared.cli.reload().await.map_err(Attempt::Cli)? {
            ReloadReply::Status {
                success: false,
                log,
            } => {
                let lines: Vec<String> = log.lines().map(str::to_owned).collect();
                return Err(Attempt::Rejected(alerts(&lines)));
            }
            ReloadReply::Status { success: true, .. } | ReloadReply::Silent => {}
        }
        loop {
            if self.master_pid() != Some(pid) {
                return Err(Attempt::MasterGone);
            }
            if Instant::now() >= deadline {
                return Err(Attempt::NoNewWorker);
            }
            tokio::time::sleep(POLL).await;
            // Refused for a moment while the master re-executes itself.
            let Ok(now) = shared.cli.show_proc().await else {
                continue;
            };
            if now.master.pid != pid {
                return Err(Attempt::MasterGone);
            }
            if now.master.reloads <= before.master.reloads {
                continue;
            }
            if now.master.failed_reloads > 0 {
                return Err(Attempt::Rejected(self.failure_output(mark).await));
            }
            let old: Vec<u32> = before.workers.iter().map(|w| w.pid).collect();
            if let Some(new) = now.workers.iter().find(|w| !old.contains(&w.pid)) {
                return Ok((old, new.pid));
            }
        }
    }

    /// HAProxy's alerts since `mark`, once its "Loading failure!" line is in (or 500 ms).
    async fn failure_output(&self, mark: u64) -> String {
        let until = Instant::now() + Duration::from_millis(500);
        loop {
            let lines = self.shared.output.since(mark);
            if lines.iter().any(|l| l.contains("Loading failure")) || Instant::now() >= until {
                return alerts(&lines);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The processes as the master lists them.
    ///
    /// # Errors
    /// [`Error::ShowProc`].
    pub async fn show_proc(&self) -> Result<ProcList> {
        self.shared.cli.show_proc().await.map_err(Error::ShowProc)
    }

    /// Workers left by reloads that still have connections to finish.
    ///
    /// # Errors
    /// [`Error::ShowProc`].
    pub async fn old_workers(&self) -> Result<Vec<Worker>> {
        Ok(self.show_proc().await?.old_workers)
    }

    /// The running master's pid, `None` while it is down.
    pub fn master_pid(&self) -> Option<u32> {
        self.shared.status.borrow().master_pid
    }

    /// Counters and the master pid, updated on every reload, restart and stop.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// The configuration this supervisor runs with.
    pub fn config(&self) -> &SupervisorConfig {
        &self.shared.config
    }

    /// HAProxy's last lines of output (up to 512).
    pub fn recent_output(&self) -> Vec<String> {
        self.shared.output.since(0)
    }

    /// Stops HAProxy gracefully: SIGUSR1 (workers finish their connections, bounded by the
    /// drain timeout), then SIGTERM after `stop_timeout`, then SIGKILL. Waits until the
    /// master has exited and will not restart it. Later reloads return
    /// [`Error::NotRunning`]; a second call returns at once.
    pub async fn stop(&self) {
        let mut monitor = self.monitor.lock().await;
        self.stop.send_if_modified(|stop| {
            let run = *stop == Stop::Run;
            if run {
                *stop = Stop::Graceful;
            }
            run
        });
        if let Some(monitor) = monitor.take() {
            if let Err(e) = monitor.await {
                tracing::error!(error = %e, "haproxy monitor task failed");
            }
            self.remove_run_files();
        }
    }

    /// After a clean stop: the sockets and the pid file would only mislead the next run
    /// (or another tool) into talking to a dead master.
    fn remove_run_files(&self) {
        let config = &self.shared.config;
        let files = [
            Some(&config.master_socket),
            config.runtime_socket.as_ref(),
            config.pid_file.as_ref(),
        ];
        for file in files.into_iter().flatten() {
            match std::fs::remove_file(file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %file.display(), error = %e, "cannot remove"),
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.monitor.get_mut().is_none() {
            return;
        }
        // The monitor task sees this and reaps the master. If the runtime is shutting down
        // it never runs, so signal by pid too; and the child's `kill_on_drop` sends SIGKILL
        // when the task is dropped (the workers exit when their master's pipe closes).
        self.stop.send_replace(Stop::Terminate);
        if let Some(pid) = self.master_pid() {
            let _ = signal(pid, Signal::TERM);
        }
    }
}

/// Why one reload attempt did not confirm.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error("the master rejected the config:\n{0}")]
    Rejected(String),
    #[error("no new worker appeared")]
    NoNewWorker,
    #[error("{0}")]
    Cli(CliError),
    #[error("the master exited")]
    MasterGone,
    #[error("no master is running")]
    NotRunning,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Supervisor>();
        shareable::<Arc<Supervisor>>();
    }
}
