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

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::haproxy::target::{Applied, Target};
use crate::marathon::watch::Backoff;
use crate::metrics::Metrics;
use crate::pass::{self, Memory};
use crate::status::{ms, ApplyHow, ApplyRecord};
use crate::templates::Templates;
use retry::retryable;

mod feed;
pub mod incremental;
mod retry;
#[cfg(test)]
pub(crate) mod testing;

mod report;

pub use crate::pass::Source;
pub use report::InvalidApp;
use report::Reporter;

/// What a trigger asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Fetch all apps and regenerate (start, reconnect, poll, resync timer, SIGHUP, file
    /// change).
    Resync,
    /// A Marathon event's JSON data: applied to the incremental live model (which fetches
    /// one app, or all of them, when the event does not settle the config).
    Event(Arc<str>),
    /// Validate and reload the config already on disk (SIGUSR1).
    ReloadExisting,
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

/// The reconcile loop and everything a pass needs.
pub struct Reconciler<T> {
    /// Validated command line.
    pub config: Arc<Config>,
    /// Templates after file and environment overrides.
    pub templates: Arc<Templates>,
    /// Where apps come from.
    pub source: Source,
    /// Where configs go: the reload command or our managed HAProxy.
    pub target: T,
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

impl<T: Target> Reconciler<T> {
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
        let mut store = incremental::AppStore::default();
        let mut last_pass: Option<Instant> = None;
        // A pass may be blocked in `haproxy -c` or the reload command (`block_in_place`), where
        // no `select!` can interrupt it: on SIGTERM this kills those children at once.
        let mut stopping = shutdown.clone();
        tokio::spawn(async move {
            if stopping.wait_for(|s| *s).await.is_ok() {
                crate::haproxy::exec::cancel_all();
            }
        });
        tokio::select! {
            _ = self.target.start(&self.config) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => break,
                t = triggers.recv() => match t { Some(t) => t, None => break },
                _ = tokio::time::sleep_until(next_resync) => Trigger::Resync,
                _ = tokio::time::sleep_until(retry_at.unwrap_or(next_resync)), if retry_at.is_some() => Trigger::Resync,
            };
            let work = feed::gather(first, &mut triggers, self.timing.debounce, last_pass).await;
            match work.needs_pass() {
                true => {
                    if work.full {
                        next_resync = Instant::now() + self.timing.resync_every;
                    }
                    // The async steps (master CLI, Runtime API, reload confirmation) end
                    // here on SIGTERM; the blocking ones through `exec::cancel_all`.
                    let result = tokio::select! {
                        result = self.pass(&mut memory, &mut reporter, &mut store, &work) => result,
                        _ = shutdown.wait_for(|s| *s) => break,
                    };
                    last_pass = Some(Instant::now());
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
                false => tokio::select! {
                    _ = self.reload_existing() => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                },
            }
        }
        self.target.stop().await;
        tracing::info!("reconcile loop stopped");
    }

    /// Runs one [`pass::run_fetched`] over the body for `work` and publishes its result.
    async fn pass(
        &mut self,
        memory: &mut Memory,
        reporter: &mut Reporter,
        store: &mut incremental::AppStore,
        work: &feed::Work,
    ) -> PassResult {
        let started = std::time::Instant::now();
        self.status.send_modify(|s| s.passes += 1);
        let inputs = pass::Inputs {
            config: &self.config,
            templates: &self.templates,
            source: &self.source,
            describe_services: true,
        };
        let max = self.config.source.max_body_bytes;
        let result = match feed::fetch(&self.source, store, work, max).await {
            Ok(fetched) => pass::run_fetched(inputs, fetched, memory, &mut self.target).await,
            Err(e) => Err(e.into()),
        };
        let took = started.elapsed();
        self.metrics.pass(result.is_ok(), took);
        let now = SystemTime::now();
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                match &e {
                    pass::Error::Fetch(e) => {
                        tracing::error!(error = %e, "cannot fetch apps; keeping the current config")
                    }
                    e => tracing::error!(error = %e, "pass failed; keeping the last good config"),
                }
                self.status.send_modify(|s| {
                    if let pass::Error::Fetch(e) = &e {
                        s.marathon.fetch_failed(now, &e.to_string());
                    }
                    s.record_apply(ApplyRecord::failed(now, &e.to_string(), ms(took)));
                    s.last_error = Some(e.to_string());
                    s.last_pass = Some(now);
                });
                return match retryable(&e) {
                    true => PassResult::Retry,
                    false => PassResult::Done,
                };
            }
        };
        tracing::info!(
            outcome = ?done.applied,
            fetch_ms = done.fetch.as_millis() as u64,
            total_ms = took.as_millis() as u64,
            "pass done"
        );
        let invalid = reporter.update(done.left_out, done.rejected.as_deref(), now);
        self.metrics.set_invalid_apps(invalid.len());
        let command = matches!(self.config.apply, crate::config::Apply::Command(_));
        let record = apply_record(&done.applied, &done.changes, command, now, ms(took));
        let served = (done.served).without(invalid.iter().map(|i| i.app_id.as_str()));
        self.status.send_modify(|s| {
            s.marathon
                .fetched(&done.origin, now, done.fetch, done.fetched_bytes);
            s.last_success = Some(now);
            s.last_pass = Some(now);
            s.last_error = None;
            let old = std::mem::replace(&mut s.served, Arc::new(served));
            crate::run::drop_in_background(old);
            s.invalid_apps = invalid;
            s.record_apply(record);
            match done.applied {
                Applied::Unchanged | Applied::Printed => {}
                Applied::Runtime { .. } => {
                    s.runtime_applies += 1;
                    s.applies += 1;
                    s.last_apply = Some(now);
                }
                Applied::Reloaded { .. } | Applied::Written => {
                    s.applies += 1;
                    s.last_apply = Some(now);
                }
            }
        });
        PassResult::Done
    }

    async fn reload_existing(&mut self) {
        let result = self.target.reload_existing(&self.config).await;
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

/// A pass's outcome as a recent apply; one log line for each change, with its reason.
/// `command`: HAProxy is reloaded by `--command` (the original's way), not by us.
fn apply_record(
    applied: &Applied,
    changes: &str,
    command: bool,
    at: SystemTime,
    took_ms: u64,
) -> ApplyRecord {
    let (how, reason, changes) = match applied {
        Applied::Unchanged | Applied::Printed => (ApplyHow::Nothing, "", ""),
        Applied::Runtime { .. } => (ApplyHow::Runtime, "servers_changed", changes),
        Applied::Reloaded { reason } if !command => (ApplyHow::Reload, reason.as_str(), changes),
        Applied::Reloaded { reason } => (ApplyHow::Command, reason.as_str(), changes),
        Applied::Written => (ApplyHow::Command, "config_change", changes),
    };
    if how != ApplyHow::Nothing {
        tracing::info!(?how, reason, changes, took_ms, "applied");
    }
    ApplyRecord::new(at, how, reason, changes, took_ms)
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
        let services = running.status.borrow().served.described().services.clone();
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
