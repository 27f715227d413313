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
use crate::marathon::client::Client;
use crate::marathon::watch::Backoff;
use crate::run::{self, Memory, Outcome};
use crate::templates::Templates;

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
    /// Fetches the apps body and names its origin for error messages.
    async fn fetch(&self) -> Result<(Bytes, String), String> {
        match self {
            Source::Marathon(client) => {
                let body = client.apps_json().await.map_err(|e| e.chain())?;
                Ok((body, format!("Marathon {}", client.current_host())))
            }
            Source::File(path) => {
                let body = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read apps file {}: {e}", path.display()))?;
                Ok((Bytes::from(body), path.display().to_string()))
            }
        }
    }
}

/// The published state of the loop, read by the admin endpoints and metrics.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Passes run so far.
    pub passes: u64,
    /// Passes that wrote a new config.
    pub applies: u64,
    /// When a config was last written (or found unchanged and valid).
    pub last_success: Option<SystemTime>,
    /// When a new config was last written.
    pub last_apply: Option<SystemTime>,
    /// The error of the last pass, if it failed.
    pub last_error: Option<String>,
    /// Whether the Marathon event stream is connected.
    pub marathon_connected: bool,
    /// Apps with at least one load-balanced service in the last rendered config.
    pub apps: usize,
}

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

/// Runs passes until `shutdown` turns true or every trigger sender is dropped.
pub async fn run_loop(
    config: Arc<Config>,
    templates: Arc<Templates>,
    source: Source,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    status: watch::Sender<Status>,
    mut shutdown: watch::Receiver<bool>,
    timing: Timing,
) {
    let mut memory = Memory::default();
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        timing.max_backoff.max(Duration::from_secs(1)),
        7,
    );
    let mut retry_at: Option<Instant> = None;
    let mut next_resync = Instant::now() + timing.resync_every;
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            t = triggers.recv() => match t { Some(t) => t, None => break },
            _ = tokio::time::sleep_until(next_resync) => Trigger::Resync,
            _ = tokio::time::sleep_until(retry_at.unwrap_or(next_resync)), if retry_at.is_some() => Trigger::Resync,
        };
        tokio::time::sleep(timing.debounce).await;
        let mut trigger = first;
        while let Ok(t) = triggers.try_recv() {
            if t == Trigger::Resync {
                trigger = Trigger::Resync;
            }
        }
        match trigger {
            Trigger::Resync => {
                next_resync = Instant::now() + timing.resync_every;
                match pass(&config, &templates, &source, &mut memory, &status).await {
                    PassResult::FetchFailed => {
                        retry_at = Some(Instant::now() + backoff.next_delay())
                    }
                    PassResult::Done => {
                        retry_at = None;
                        backoff.reset();
                    }
                }
            }
            Trigger::ReloadExisting => reload_existing(&config).await,
        }
    }
    tracing::info!("reconcile loop stopped");
}

enum PassResult {
    FetchFailed,
    Done,
}

async fn pass(
    config: &Arc<Config>,
    templates: &Arc<Templates>,
    source: &Source,
    memory: &mut Memory,
    status: &watch::Sender<Status>,
) -> PassResult {
    status.send_modify(|s| s.passes += 1);
    let (body, origin) = match source.fetch().await {
        Ok(fetched) => fetched,
        Err(e) => {
            tracing::error!(error = %e, "cannot fetch apps; keeping the current config");
            status.send_modify(|s| s.last_error = Some(e));
            return PassResult::FetchFailed;
        }
    };
    let started = std::time::Instant::now();
    let result = tokio::task::block_in_place(|| {
        let built = run::build_body(body, &origin, config, templates, memory)?;
        let apps = count_apps(&built.rendered.config);
        run::apply(built, config, templates).map(|outcome| (outcome, apps))
    });
    match result {
        Ok((outcome, apps)) => {
            tracing::info!(
                ?outcome,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pass done"
            );
            status.send_modify(|s| {
                let now = SystemTime::now();
                s.last_success = Some(now);
                s.last_error = None;
                s.apps = apps;
                if outcome == Outcome::Applied {
                    s.applies += 1;
                    s.last_apply = Some(now);
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "pass failed; keeping the last good config");
            status.send_modify(|s| s.last_error = Some(e.to_string()));
        }
    }
    PassResult::Done
}

/// Backends in a config text, as a cheap count of load-balanced services for status.
fn count_apps(config: &str) -> usize {
    config.lines().filter(|l| l.starts_with("backend ")).count()
}

async fn reload_existing(config: &Arc<Config>) {
    let config = config.clone();
    let result = tokio::task::spawn_blocking(move || run::reload_existing(&config)).await;
    match result {
        Ok(Ok(())) => tracing::info!("re-applied the existing config"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot re-apply the existing config"),
        Err(e) => tracing::error!(error = %e, "re-apply task failed"),
    }
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
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    fn config(dir: &std::path::Path) -> Arc<Config> {
        let cfg = dir.join("haproxy.cfg");
        let cli = Cli::try_parse_from([
            "marathon-lb",
            "--group",
            "*",
            "--skip-validation",
            "--haproxy-config",
            cfg.to_str().unwrap(),
            "--archive-versions",
            "0",
        ])
        .unwrap();
        Arc::new(cli.validate(|_| None).unwrap())
    }

    const APPS: &str = r#"{"apps":[{"id":"/a","portDefinitions":[{"port":10000}],
        "tasks":[{"id":"a.1","host":"127.0.0.1","ports":[31000]}]}]}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_triggers_makes_at_most_two_passes() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps.json");
        std::fs::write(&apps, APPS).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, mut status_rx) = watch::channel(Status::default());
        let (_stop_tx, stop_rx) = watch::channel(false);
        let timing = Timing {
            debounce: Duration::from_millis(20),
            resync_every: Duration::from_secs(300),
            max_backoff: Duration::from_secs(1),
        };
        let handle = tokio::spawn(run_loop(
            config(dir.path()),
            Arc::new(Templates::builtin()),
            Source::File(apps),
            rx,
            status_tx,
            stop_rx,
            timing,
        ));
        for _ in 0..50 {
            tx.send(Trigger::Resync).unwrap();
        }
        status_rx
            .wait_for(|s| s.passes >= 1 && s.last_success.is_some())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let passes = status_rx.borrow().passes;
        assert!((1..=2).contains(&passes), "{passes} passes for one burst");
        assert!(std::fs::read_to_string(dir.path().join("haproxy.cfg"))
            .unwrap()
            .contains("backend a_10000"));
        drop(tx);
        handle.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_label_keeps_the_last_good_config_and_the_loop_running() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps.json");
        std::fs::write(&apps, APPS).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, mut status_rx) = watch::channel(Status::default());
        let (_stop_tx, stop_rx) = watch::channel(false);
        let timing = Timing {
            debounce: Duration::ZERO,
            resync_every: Duration::from_secs(300),
            max_backoff: Duration::from_secs(1),
        };
        let handle = tokio::spawn(run_loop(
            config(dir.path()),
            Arc::new(Templates::builtin()),
            Source::File(apps.clone()),
            rx,
            status_tx,
            stop_rx,
            timing,
        ));
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
        drop(tx);
        handle.await.unwrap();
    }
}
