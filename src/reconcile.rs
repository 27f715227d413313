//! The live loop: triggers in, one full reconcile pass at a time out.
//!
//! Level-triggered, like marathon-lb and kube-runtime: an event only says *something changed*;
//! every pass starts from the full `/v2/apps` listing. Triggers (SSE events, reconnects,
//! polls, file changes, signals, the periodic resync) go into one channel; the loop waits a
//! short debounce after the first, drains the rest, and runs one pass, so a burst becomes one
//! pass (plus at most one for events that arrive while it runs). A failed pass is logged, the
//! last good config keeps serving, fetch failures are retried with backoff, and the loop never
//! exits on a pass error. The result of each pass is published on a `watch` channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::deploy::{Deployed, Managed};
use crate::haproxy::ReloadReason;
use crate::marathon::client::Client;
use crate::marathon::watch::Backoff;
use crate::metrics::Metrics;
use crate::run::{self, Memory, Outcome};
use crate::status::services::Served;
use crate::status::{ms, ApplyHow, ApplyRecord};
use crate::templates::Templates;
use retry::retryable;

mod retry;
#[cfg(test)]
mod testing;

mod report;

pub use report::InvalidApp;
use report::Reporter;

/// What a trigger asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Fetch the apps and regenerate (SSE event, reconnect, poll, SIGHUP, file change).
    Resync,
    /// Validate and reload the config already on disk (SIGUSR1).
    ReloadExisting,
}

/// Where the apps come from.
#[derive(Clone)]
pub enum Source {
    /// Marathon's REST API.
    Marathon(Arc<Client>),
    /// A file holding a `/v2/apps` body (`--apps-file`).
    File(PathBuf),
}

impl Source {
    /// Fetches the apps body and names its origin for error messages. A file larger than
    /// `max_bytes` is refused like a Marathon body would be.
    async fn fetch(&self, max_bytes: u64) -> Result<(Bytes, String), String> {
        match self {
            Source::Marathon(client) => {
                let body = client.apps_json().await.map_err(|e| e.chain())?;
                Ok((body, format!("Marathon {}", client.current_host())))
            }
            Source::File(path) => {
                let body = read_capped(path, max_bytes).await?;
                Ok((Bytes::from(body), path.display().to_string()))
            }
        }
    }
}

/// Reads an apps file of at most `max_bytes` (`--marathon-max-body-bytes`).
async fn read_capped(path: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let failed = |e: std::io::Error| format!("cannot read apps file {}: {e}", path.display());
    let too_big = || {
        format!(
            "apps file {} is larger than {max_bytes} bytes (--marathon-max-body-bytes)",
            path.display()
        )
    };
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    let len = file.metadata().await.map_err(failed)?.len();
    if len > max_bytes {
        return Err(too_big());
    }
    // Sized up front (as `fs::read` does): growing a 28 MB buffer by doubling costs memory.
    let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    // The file may grow after the size check: never read more than the cap (+1 to notice).
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .await
        .map_err(failed)?;
    if body.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(body)
}

pub use crate::status::Status;

/// Timing of the loop.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wait after the first trigger of a burst before starting the pass.
    pub debounce: Duration,
    /// Full resync even without triggers.
    pub resync_every: Duration,
    /// Cap of the retry backoff after a failed fetch (`--max-backoff`).
    pub max_backoff: Duration,
}

/// How checked configs reach HAProxy.
pub enum Target {
    /// Write the file and run `--command` (the original's way), or just write without one.
    Command {
        /// The last reload command failed after its config was written: retry it next pass.
        reload_pending: bool,
    },
    /// HAProxy supervised by us, with Runtime API updates.
    Managed(Box<Managed>),
}

/// The reconcile loop and everything a pass needs.
pub struct Reconciler {
    /// Validated command line.
    pub config: Arc<Config>,
    /// Templates after file and environment overrides.
    pub templates: Arc<Templates>,
    /// Where apps come from.
    pub source: Source,
    /// Where configs go.
    pub target: Target,
    /// Published after every pass.
    pub status: watch::Sender<Status>,
    /// Counters and gauges for `/metrics`.
    pub metrics: Metrics,
    /// Debounce, resync and backoff.
    pub timing: Timing,
}

enum PassResult {
    /// The fetch, write, check run or reload failed: a later try may work, so the loop retries
    /// with a bounded backoff without waiting for an event.
    Retry,
    /// Done, or failed in a way only new input fixes (a rejected config, a bad body).
    Done,
}

impl Reconciler {
    /// Runs passes until `shutdown` turns true or every trigger sender is dropped, then stops
    /// a managed HAProxy.
    pub async fn run(
        mut self,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut memory = Memory::default();
        let mut reporter = Reporter::default();
        let mut backoff = Backoff::new(
            Duration::from_secs(1),
            self.timing.max_backoff.max(Duration::from_secs(1)),
            7,
        );
        let mut retry_at: Option<Instant> = None;
        let mut next_resync = Instant::now() + self.timing.resync_every;
        // A pass may be blocked in `haproxy -c` or the reload command (`block_in_place`), where
        // no `select!` can interrupt it: on SIGTERM this kills those children at once.
        let mut stopping = shutdown.clone();
        tokio::spawn(async move {
            if stopping.wait_for(|s| *s).await.is_ok() {
                crate::haproxy::exec::cancel_all();
            }
        });
        if let Target::Managed(managed) = &mut self.target {
            tokio::select! {
                _ = managed.start_from_disk(&self.config) => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        }
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => break,
                t = triggers.recv() => match t { Some(t) => t, None => break },
                _ = tokio::time::sleep_until(next_resync) => Trigger::Resync,
                _ = tokio::time::sleep_until(retry_at.unwrap_or(next_resync)), if retry_at.is_some() => Trigger::Resync,
            };
            tokio::time::sleep(self.timing.debounce).await;
            let mut trigger = first;
            while let Ok(t) = triggers.try_recv() {
                if t == Trigger::Resync {
                    trigger = Trigger::Resync;
                }
            }
            match trigger {
                Trigger::Resync => {
                    next_resync = Instant::now() + self.timing.resync_every;
                    // The async steps (master CLI, Runtime API, reload confirmation) end
                    // here on SIGTERM; the blocking ones through `exec::cancel_all`.
                    let result = tokio::select! {
                        result = self.pass(&mut memory, &mut reporter) => result,
                        _ = shutdown.wait_for(|s| *s) => break,
                    };
                    match result {
                        PassResult::Retry => {
                            let delay = backoff.next_delay();
                            tracing::info!(
                                retry_in_ms = delay.as_millis() as u64,
                                "retrying the failed pass"
                            );
                            retry_at = Some(Instant::now() + delay);
                        }
                        PassResult::Done => {
                            retry_at = None;
                            backoff.reset();
                        }
                    }
                }
                Trigger::ReloadExisting => tokio::select! {
                    _ = self.reload_existing() => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                },
            }
        }
        if let Target::Managed(managed) = &mut self.target {
            managed.stop().await;
        }
        tracing::info!("reconcile loop stopped");
    }

    async fn pass(&mut self, memory: &mut Memory, reporter: &mut Reporter) -> PassResult {
        let started = std::time::Instant::now();
        self.status.send_modify(|s| s.passes += 1);
        let max_bytes = self.config.source.max_body_bytes;
        let (body, origin) = match self.source.fetch(max_bytes).await {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::error!(error = %e, "cannot fetch apps; keeping the current config");
                self.metrics.pass(false, started.elapsed());
                self.status.send_modify(|s| {
                    let now = SystemTime::now();
                    s.marathon.fetch_failed(now, &e);
                    s.record_apply(ApplyRecord::failed(now, &e, ms(started.elapsed())));
                    s.last_error = Some(e);
                    s.last_pass = Some(now);
                });
                return PassResult::Retry;
            }
        };
        let fetched = started.elapsed();
        let size = body.len();
        self.status.send_modify(|s| {
            s.marathon
                .fetched(&origin, SystemTime::now(), fetched, size)
        });
        let result = self.build_and_deploy(body, &origin, memory).await;
        let took = started.elapsed();
        self.metrics.pass(result.is_ok(), took);
        let now = SystemTime::now();
        match result {
            Ok(done) => {
                tracing::info!(
                    outcome = ?done.outcome,
                    fetch_ms = fetched.as_millis() as u64,
                    total_ms = took.as_millis() as u64,
                    "pass done"
                );
                let invalid = reporter.update(done.left_out, done.rejected.as_deref(), now);
                self.metrics.set_invalid_apps(invalid.len());
                let record = self.apply_record(done.outcome, now, ms(took));
                let mut served = done.served;
                served
                    .services
                    .retain(|s| !invalid.iter().any(|i| i.app_id == s.app_id));
                self.status.send_modify(|s| {
                    s.last_success = Some(now);
                    s.last_pass = Some(now);
                    s.last_error = None;
                    s.apps = served.services.len();
                    s.services = Arc::new(served.services);
                    s.stats_page = served.stats_page;
                    s.certificates = served.certificates;
                    s.invalid_apps = invalid;
                    s.record_apply(record);
                    if done.outcome == PassOutcome::Runtime {
                        s.runtime_applies += 1;
                    }
                    if done.outcome != PassOutcome::Unchanged {
                        s.applies += 1;
                        s.last_apply = Some(now);
                    }
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "pass failed; keeping the last good config");
                self.status.send_modify(|s| {
                    s.record_apply(ApplyRecord::failed(now, &e.to_string(), ms(took)));
                    s.last_error = Some(e.to_string());
                    s.last_pass = Some(now);
                });
                if retryable(&e) {
                    return PassResult::Retry;
                }
            }
        }
        PassResult::Done
    }

    async fn build_and_deploy(
        &mut self,
        body: Bytes,
        origin: &str,
        memory: &mut Memory,
    ) -> Result<Done, run::Error> {
        let (config, templates) = (&self.config, &self.templates);
        let mut built = tokio::task::block_in_place(|| {
            run::build_body(body, origin, config, templates, memory)
        })?;
        let served = Served::of(&built);
        let left_out = std::mem::take(&mut built.left_out);
        match &mut self.target {
            Target::Command { reload_pending } => {
                let mut rejected = None;
                let mut outcome = tokio::task::block_in_place(|| {
                    run::apply_checked(built, config, templates, &mut rejected)
                });
                if let (Some(command), Ok(Outcome::Unchanged), true) =
                    (config.apply.command(), &outcome, *reload_pending)
                {
                    // The config on disk is new but its reload failed: try the reload again.
                    tracing::info!("retrying the reload command that failed before");
                    outcome = crate::haproxy::reload(command)
                        .map(|()| Outcome::Applied)
                        .map_err(run::Error::from);
                }
                if config.apply.command().is_some() {
                    let failed = matches!(
                        outcome,
                        Err(run::Error::Apply(crate::haproxy::ApplyError::Reload { .. }))
                    );
                    if failed || matches!(outcome, Ok(Outcome::Applied)) {
                        self.metrics
                            .reload(ReloadReason::ConfigChange.as_str(), !failed);
                        *reload_pending = failed;
                    }
                }
                let outcome = match outcome? {
                    Outcome::Unchanged => PassOutcome::Unchanged,
                    Outcome::Applied => PassOutcome::Applied,
                };
                Ok(Done {
                    outcome,
                    served,
                    left_out,
                    rejected,
                })
            }
            Target::Managed(managed) => {
                let allowed = crate::haproxy::certs::Allowed::new(
                    &config.render.ssl_certs,
                    config
                        .apply
                        .managed()
                        .and_then(|m| m.generate_certs_dir.as_deref()),
                );
                for result in crate::haproxy::certs::ensure(&built.rendered.config, &allowed) {
                    match result {
                        Ok(path) => {
                            tracing::warn!(path = %path.display(), "certificate missing: generated a self-signed one")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot generate a missing certificate")
                        }
                    }
                }
                if managed.serves(&built.rendered) {
                    return Ok(Done {
                        outcome: PassOutcome::Unchanged,
                        served,
                        left_out,
                        rejected: None,
                    });
                }
                // Task churn: straight to the Runtime API, no full `haproxy -c`.
                let mut runtime_failed = false;
                if let Some(ops) = managed.runtime_ops(&built.rendered) {
                    match managed
                        .apply_servers(&ops, built.rendered.clone(), config)
                        .await
                    {
                        Ok(_) => {
                            return Ok(Done {
                                outcome: PassOutcome::Runtime,
                                served,
                                left_out,
                                rejected: None,
                            })
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "runtime update failed; checking the config and reloading instead");
                            runtime_failed = true;
                        }
                    }
                }
                let checked = tokio::task::block_in_place(|| run::check(built, config, templates))?;
                let rejected = Some(checked.rejected.clone());
                let outcome = match managed.deploy(checked, config, runtime_failed).await? {
                    Deployed::Unchanged => PassOutcome::Unchanged,
                    Deployed::Runtime(_) => PassOutcome::Runtime,
                    Deployed::Reloaded(_) => PassOutcome::Applied,
                };
                Ok(Done {
                    outcome,
                    served,
                    left_out,
                    rejected,
                })
            }
        }
    }

    /// The pass's outcome as a recent apply; one log line for each change, with its reason.
    fn apply_record(&self, outcome: PassOutcome, at: SystemTime, took_ms: u64) -> ApplyRecord {
        let (how, reason, changes) = match (&self.target, outcome) {
            (_, PassOutcome::Unchanged) => (ApplyHow::Nothing, "", ""),
            (Target::Managed(m), PassOutcome::Runtime) => {
                (ApplyHow::Runtime, m.last_change().0, m.last_change().1)
            }
            (Target::Managed(m), _) => (ApplyHow::Reload, m.last_change().0, m.last_change().1),
            (Target::Command { .. }, _) => {
                (ApplyHow::Command, "config_change", "new config written")
            }
        };
        if how != ApplyHow::Nothing {
            tracing::info!(?how, reason, changes, took_ms, "applied");
        }
        ApplyRecord::new(at, how, reason, changes, took_ms)
    }

    async fn reload_existing(&mut self) {
        let result = match &mut self.target {
            Target::Managed(managed) => managed.reload_existing(&self.config).await,
            Target::Command { .. } => {
                let config = self.config.clone();
                let outcome = tokio::task::block_in_place(|| run::reload_existing(&config));
                self.metrics
                    .reload(ReloadReason::ManualSignal.as_str(), outcome.is_ok());
                outcome
            }
        };
        let now = SystemTime::now();
        let record = match &result {
            Ok(()) => ApplyRecord::new(now, ApplyHow::Reload, "manual_signal", "", 0),
            Err(e) => ApplyRecord::failed(now, &e.to_string(), 0),
        };
        self.status.send_modify(|s| s.record_apply(record));
        match result {
            Ok(()) => tracing::info!("re-applied the existing config"),
            Err(e) => tracing::error!(error = %e, "cannot re-apply the existing config"),
        }
    }
}

/// What a successful pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassOutcome {
    Unchanged,
    Runtime,
    Applied,
}

struct Done {
    outcome: PassOutcome,
    served: Served,
    /// Apps left out for invalid input (every pass, live mode).
    left_out: Vec<crate::model::invalid::LeftOut>,
    /// Apps HAProxy rejected, when the config was checked in this pass.
    rejected: Option<Vec<crate::haproxy::isolate::RejectedApp>>,
}

/// Sends a `Resync` whenever the file's size, modification time or content changes
/// (checked every `every`). Ends when the loop is gone.
pub async fn watch_file(path: PathBuf, every: Duration, triggers: mpsc::UnboundedSender<Trigger>) {
    let fingerprint = |path: &PathBuf| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()))
    };
    let mut last = fingerprint(&path);
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let now = fingerprint(&path);
        if now != last {
            last = now;
            if triggers.send(Trigger::Resync).is_err() {
                return;
            }
        }
    }
}

/// Sends a `Resync` every `every`. Ends when the loop is gone.
pub async fn poll(every: Duration, triggers: mpsc::UnboundedSender<Trigger>) {
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        ticker.tick().await;
        if triggers.send(Trigger::Resync).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{start, APPS};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_triggers_makes_at_most_two_passes() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps.json");
        std::fs::write(&apps, APPS).unwrap();
        let mut running = start(apps, dir.path(), Duration::from_millis(20));
        for _ in 0..50 {
            running.tx.send(Trigger::Resync).unwrap();
        }
        running
            .status
            .wait_for(|s| s.passes >= 1 && s.last_success.is_some())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let passes = running.status.borrow().passes;
        assert!((1..=2).contains(&passes), "{passes} passes for one burst");
        let services = running.status.borrow().services.clone();
        assert_eq!(services.len(), 1, "the served service is published");
        assert_eq!(services[0].backend, "a_10000");
        assert!(std::fs::read_to_string(dir.path().join("haproxy.cfg"))
            .unwrap()
            .contains("backend a_10000"));
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_label_keeps_the_last_good_config_and_the_loop_running() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps.json");
        std::fs::write(&apps, APPS).unwrap();
        let mut running = start(apps.clone(), dir.path(), Duration::ZERO);
        let (tx, status_rx) = (&running.tx, &mut running.status);
        tx.send(Trigger::Resync).unwrap();
        status_rx.wait_for(|s| s.applies == 1).await.unwrap();
        let good = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();

        std::fs::write(
            &apps,
            APPS.replace(
                r#""id":"/a","#,
                r#""id":"/a","labels":{"HAPROXY_0_PORT":"x"},"#,
            ),
        )
        .unwrap();
        tx.send(Trigger::Resync).unwrap();
        status_rx
            .wait_for(|s| s.last_error.is_some())
            .await
            .unwrap();
        let error = status_rx.borrow().last_error.clone().unwrap();
        assert!(
            error.contains("/a") && error.contains("HAPROXY_0_PORT"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap(),
            good
        );

        std::fs::write(&apps, APPS.replace("31000", "31001")).unwrap();
        tx.send(Trigger::Resync).unwrap();
        status_rx.wait_for(|s| s.applies == 2).await.unwrap();
        assert!(std::fs::read_to_string(dir.path().join("haproxy.cfg"))
            .unwrap()
            .contains(":31001"));
        running.stop().await;
    }
}
