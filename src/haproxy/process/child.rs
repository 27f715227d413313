//! The master as a child process: spawn and wait for readiness, forward its output, restart
//! it when it dies, stop it by signal. Used by [`super::Supervisor`].

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{rundir, Error, ReloadReason, Result, Shared, Stop, SupervisorConfig, POLL};
use crate::haproxy::exec;

/// Lines of HAProxy output kept for error messages.
const OUTPUT_LINES: usize = 512;
/// A master that ran this long resets the restart backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Cap of the restart backoff when HAProxy keeps dying.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// Wait after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The last lines HAProxy printed, numbered so a caller can take those after a mark.
#[derive(Debug, Default)]
pub(super) struct OutputLog {
    /// (number of the next line, the last [`OUTPUT_LINES`] lines).
    lines: StdMutex<(u64, VecDeque<String>)>,
}

impl OutputLog {
    pub(super) fn push(&self, line: String) {
        let mut guard = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 += 1;
        if guard.1.len() == OUTPUT_LINES {
            guard.1.pop_front();
        }
        guard.1.push_back(line);
    }

    pub(super) fn mark(&self) -> u64 {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    pub(super) fn since(&self, mark: u64) -> Vec<String> {
        let guard = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (next, lines) = &*guard;
        let wanted = usize::try_from(next.saturating_sub(mark)).unwrap_or(usize::MAX);
        lines
            .iter()
            .skip(lines.len().saturating_sub(wanted))
            .cloned()
            .collect()
    }
}

/// `[ALERT]` lines, or everything when there are none.
pub(super) fn alerts(lines: &[String]) -> String {
    let alerts: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("[ALERT]"))
        .collect();
    if alerts.is_empty() {
        lines.join("\n")
    } else {
        alerts.join("\n")
    }
}

/// Writes the extra config and starts the master; returns once it lists a worker.
pub(super) async fn launch(shared: &Shared) -> Result<Child> {
    let config = &shared.config;
    write_extra_config(config)?;
    let mark = shared.output.mark();
    let mut child = spawn_master(config).await?;
    let readers = [
        child
            .stdout
            .take()
            .map(|out| forward(out, shared.output.clone())),
        child
            .stderr
            .take()
            .map(|err| forward(err, shared.output.clone())),
    ];
    let pid = child.id();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // No worker holds the pipes: they reach EOF once the output is read.
            for reader in readers.into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
            }
            return Err(Error::ExitedAtStart {
                status: status.to_string(),
                output: alerts(&shared.output.since(mark)),
            });
        }
        if let Ok(list) = shared.cli.show_proc().await {
            if Some(list.master.pid) == pid && !list.workers.is_empty() {
                tracing::info!(
                    master = list.master.pid,
                    worker = list.workers[0].pid,
                    "haproxy started"
                );
                return Ok(child);
            }
        }
        if started.elapsed() >= config.start_timeout {
            let _ = child.kill().await;
            return Err(Error::StartTimeout {
                waited: started.elapsed(),
                output: alerts(&shared.output.since(mark)),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts `haproxy -W -db -S <socket> -f <extra> -f <config>` with the scrubbed environment,
/// tied to our life, and records its pid.
async fn spawn_master(config: &SupervisorConfig) -> Result<Child> {
    let mut socket = config.master_socket.clone().into_os_string();
    socket.push(",mode,600");
    let mut command = Command::new(&config.haproxy_bin);
    command
        .arg("-W")
        .arg("-db")
        .arg("-S")
        .arg(socket)
        .arg("-f")
        .arg(&config.extra_config_path)
        .arg("-f")
        .arg(&config.config_path)
        .args(&config.extra_args)
        // Only harmless variables and our own: HAProxy expands "${NAME}" in its config.
        .env_clear()
        .envs(exec::scrubbed_env())
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SIGKILL on our death: the workers exit when their master dies (checked on HAProxy
    // 2.6), so nothing keeps the ports.
    exec::die_with_us(command.as_std_mut());
    let runtime = tokio::runtime::Handle::current();
    // Forked from the spawner thread, which lives as long as we do: the death signal
    // follows the forking thread (see `exec::on_spawner_thread`).
    let spawned = exec::on_spawner_thread(move || {
        let _in_runtime = runtime.enter();
        let mut known = exec::known();
        let child = command.spawn()?;
        if let Some(pid) = child.id() {
            known.get_or_insert_with(Default::default).insert(pid);
        }
        Ok::<_, std::io::Error>(child)
    })
    .await
    .and_then(|spawned| spawned);
    let child = spawned.map_err(|error| Error::Spawn {
        binary: config.haproxy_bin.display().to_string(),
        error,
    })?;
    if let (Some(pid_file), Some(pid)) = (&config.pid_file, child.id()) {
        rundir::write_pid(pid_file, pid);
    }
    Ok(child)
}

fn write_extra_config(config: &SupervisorConfig) -> Result<()> {
    let path = &config.extra_config_path;
    let err = |error| Error::WriteExtraConfig {
        path: path.display().to_string(),
        error,
    };
    let mut temp = path.clone().into_os_string();
    temp.push(".tmp");
    std::fs::write(&temp, config.extra_config()).map_err(err)?;
    std::fs::rename(&temp, path).map_err(err)
}

/// Copies HAProxy's output lines into the log and to `tracing` (target `haproxy`).
fn forward(pipe: impl AsyncRead + Unpin + Send + 'static, log: Arc<OutputLog>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("[ALERT]") {
                tracing::error!(target: "haproxy", "{line}");
            } else if line.contains("[WARNING]") {
                tracing::warn!(target: "haproxy", "{line}");
            } else {
                tracing::info!(target: "haproxy", "{line}");
            }
            log.push(line);
        }
    })
}

/// Owns the master's `Child`: restarts it when it dies, stops it when asked.
pub(super) async fn monitor(
    shared: Arc<Shared>,
    mut child: Child,
    mut stop: watch::Receiver<Stop>,
) {
    let mut delay = shared.config.restart_delay;
    let mut up_since = Instant::now();
    loop {
        let exited = tokio::select! {
            exited = child.wait() => exited,
            changed = stop.changed() => {
                // A dropped handle means stop now.
                let how = if changed.is_ok() { *stop.borrow() } else { Stop::Terminate };
                shut_down(&shared, &mut child, how).await;
                return;
            }
        };
        forget(&child);
        shared.status.send_modify(|s| s.master_pid = None);
        if *stop.borrow() != Stop::Run {
            return;
        }
        let exited = exited.map_or_else(|e| e.to_string(), |s| s.to_string());
        let output = alerts(&shared.output.since(shared.output.mark().saturating_sub(5)));
        tracing::error!(status = %exited, %output, "haproxy master exited; restarting it");
        if up_since.elapsed() >= HEALTHY_AFTER {
            delay = shared.config.restart_delay;
        }
        child = loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            delay = (delay * 2).min(MAX_RESTART_DELAY);
            let _one_at_a_time = shared.op.lock().await;
            if *stop.borrow() != Stop::Run {
                return;
            }
            match launch(&shared).await {
                Ok(child) => {
                    shared.status.send_modify(|s| {
                        s.master_pid = child.id();
                        s.restarts += 1;
                        *s.loads.entry(ReloadReason::Restart).or_default() += 1;
                        s.last_error = None;
                    });
                    break child;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?delay, "cannot restart haproxy");
                    shared
                        .status
                        .send_modify(|s| s.last_error = Some(e.to_string()));
                }
            }
        };
        up_since = Instant::now();
    }
}

/// Stops the master we started, by its pid, and reaps it.
async fn shut_down(shared: &Shared, child: &mut Child, how: Stop) {
    let Some(pid) = child.id() else { return };
    let mut waits = Vec::new();
    if how == Stop::Graceful {
        waits.push((Signal::USR1, shared.config.stop_timeout));
    }
    waits.push((Signal::TERM, TERM_GRACE));
    for (sig, wait) in waits {
        if let Err(e) = signal(pid, sig) {
            tracing::warn!(pid, error = %e, "cannot signal the haproxy master");
        }
        if tokio::time::timeout(wait, child.wait()).await.is_ok() {
            shared.status.send_modify(|s| s.master_pid = None);
            tracing::info!(pid, "haproxy stopped");
            return;
        }
    }
    tracing::warn!(pid, "haproxy master ignored SIGTERM; killing it");
    let _ = child.kill().await;
    shared.status.send_modify(|s| s.master_pid = None);
}

/// Drops a reaped master from the children the PID 1 reaper leaves alone.
fn forget(child: &Child) {
    if let Some(pid) = child.id() {
        if let Some(known) = exec::known().as_mut() {
            known.remove(&pid);
        }
    }
}

pub(super) fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(pid, sig).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_log_returns_lines_after_a_mark() {
        let log = OutputLog::default();
        log.push("a".into());
        let mark = log.mark();
        log.push("b [ALERT] x".into());
        log.push("c".into());
        assert_eq!(log.since(mark), ["b [ALERT] x", "c"]);
        assert_eq!(alerts(&log.since(mark)), "b [ALERT] x");
        assert_eq!(alerts(&log.since(0)[..1]), "a");
        for i in 0..OUTPUT_LINES {
            log.push(i.to_string());
        }
        assert_eq!(log.since(0).len(), OUTPUT_LINES);
        assert_eq!(log.since(log.mark() - 1), [(OUTPUT_LINES - 1).to_string()]);
    }
}
