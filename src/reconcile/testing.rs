//! The loop under test, shared by the reconcile tests: a command-mode [`Reconciler`] over an
//! apps file, without validation, so a test drives it with triggers and watches its status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Cli, Config};
use crate::haproxy::CommandReload;
use crate::metrics::Metrics;
use crate::reconcile::{Reconciler, Source, Status, Timing, Trigger};
use crate::templates::Templates;

/// One app with one task: renders `backend a_10000` with server `127.0.0.1:31000`.
pub(crate) const APPS: &str = r#"{"apps":[{"id":"/a","portDefinitions":[{"port":10000}],
        "tasks":[{"id":"a.1","host":"127.0.0.1","ports":[31000]}]}]}"#;

/// All groups, no validation, no archive, the config written to `dir/haproxy.cfg`.
pub(crate) fn config(dir: &Path) -> Arc<Config> {
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

/// A running loop; [`Running::stop`] ends it and waits for it.
pub(super) struct Running {
    /// Triggers for the loop.
    pub tx: mpsc::UnboundedSender<Trigger>,
    /// The status it publishes.
    pub status: watch::Receiver<Status>,
    /// Kept so the loop is not told to stop.
    _stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Running {
    /// Closes the trigger channel, which ends the loop, and waits for it.
    pub async fn stop(self) {
        drop(self.tx);
        self.handle.await.unwrap();
    }
}

/// Starts the loop on the apps file `apps`, writing into `config_dir`, with `debounce`.
pub(super) fn start(apps: PathBuf, config_dir: &Path, debounce: Duration) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(Status::default());
    let (stop, stop_rx) = watch::channel(false);
    let timing = Timing {
        debounce,
        resync_every: Duration::from_secs(300),
        max_backoff: Duration::from_secs(1),
    };
    let config = config(config_dir);
    let metrics = Metrics::new();
    let handle = tokio::spawn(
        Reconciler {
            target: CommandReload::new(&config, metrics.clone()),
            config,
            templates: Arc::new(Templates::builtin()),
            source: Source::File(apps),
            status: status_tx,
            metrics,
            timing,
        }
        .run(rx, stop_rx),
    );
    Running {
        tx,
        status,
        _stop: stop,
        handle,
    }
}
