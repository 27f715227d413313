//! Managed mode: marathon-lb runs HAProxy itself (no `--command`) and gets each checked config
//! served with as little disruption as possible.
//!
//! Data flow position: the last stage, after `run::check`. Per pass the planner compares the
//! config HAProxy runs with the new one: server-only changes (task churn, health flips,
//! draining) go through the Runtime API with no reload; anything else is written and
//! reloaded through the master CLI, with a typed reason. A failed runtime op falls back to a
//! reload. The file on disk always equals what HAProxy serves (or is about to).

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::haproxy::plan::{self, Change, Plan, Snapshot};
use crate::haproxy::runtime::RuntimeApi;
use crate::haproxy::{self, ReloadReason, Supervisor, SupervisorConfig};
use crate::metrics::Metrics;
use crate::render::Rendered;
use crate::run::{self, Checked};

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    /// HAProxy already serves this config.
    Unchanged,
    /// Applied through the Runtime API: this many operations, no reload.
    Runtime(usize),
    /// Written and (re)loaded for this reason.
    Reloaded(ReloadReason),
}

/// The supervised HAProxy and what it serves.
pub struct Managed {
    /// How to start HAProxy.
    settings: SupervisorConfig,
    /// The running master, once a valid config exists.
    supervisor: Option<Supervisor>,
    /// The config and maps HAProxy serves; `None` when unknown (then the next deploy reloads).
    running: Option<Rendered>,
    /// Counters for reloads and runtime updates.
    metrics: Metrics,
    /// How long a removed server may keep its sessions before they are shut down.
    drain_wait: Duration,
    /// The last change served: its reason and a summary (for the recent applies).
    last_change: (String, String),
}

impl Managed {
    /// A manager that starts HAProxy with `settings` on the first valid config.
    pub fn new(settings: SupervisorConfig, metrics: Metrics, drain_wait: Duration) -> Self {
        Self {
            settings,
            supervisor: None,
            running: None,
            metrics,
            drain_wait,
            last_change: Default::default(),
        }
    }

    /// The reason and summary of the last change served (runtime ops name their servers).
    pub fn last_change(&self) -> (&str, &str) {
        (&self.last_change.0, &self.last_change.1)
    }

    /// Whether HAProxy runs.
    pub fn is_running(&self) -> bool {
        self.supervisor
            .as_ref()
            .is_some_and(|s| s.master_pid().is_some())
    }

    /// Whether HAProxy already serves exactly `rendered` (nothing to check or write).
    pub fn serves(&self, rendered: &Rendered) -> bool {
        self.is_running()
            && self.running.as_ref().is_some_and(|r| {
                r.config == rendered.config
                    && r.domain_map == rendered.domain_map
                    && r.app_map == rendered.app_map
            })
    }

    /// Starts HAProxy on the config already on disk, if it is valid, so the last good config
    /// serves even while Marathon is unreachable.
    pub async fn start_from_disk(&mut self, config: &Config) {
        let (output, paths) = (&config.output, &config.output.paths);
        let Ok(text) = std::fs::read_to_string(&paths.config) else {
            return;
        };
        if !config.validation.skip {
            if let Err(e) =
                haproxy::validate_file(&paths.config, &self.settings.haproxy_bin.to_string_lossy())
            {
                tracing::warn!(error = %e, "the config on disk is not valid; waiting for the first pass");
                return;
            }
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (domain_map, app_map) = if output.map {
            (read(&paths.domain_map()), read(&paths.app_map()))
        } else {
            Default::default()
        };
        match self.start(&text).await {
            Ok(()) => {
                self.running = Some(Rendered {
                    config: text,
                    domain_map,
                    app_map,
                })
            }
            Err(e) => tracing::error!(error = %e, "cannot start HAProxy on the config on disk"),
        }
    }

    async fn start(&mut self, config_text: &str) -> Result<(), haproxy::process::Error> {
        let mut settings = self.settings.clone();
        if let Some(cap) = maxconn_cap(config_text) {
            tracing::warn!(
                maxconn = cap,
                "the open-files limit is too low for the config's maxconn; capping it with -n"
            );
            settings
                .extra_args
                .extend(["-n".to_owned(), cap.to_string()]);
        }
        let supervisor = Supervisor::start(settings).await?;
        self.watch_restarts(&supervisor);
        self.supervisor = Some(supervisor);
        self.metrics.reload(ReloadReason::Initial.as_str(), true);
        Ok(())
    }

    /// Counts HAProxy restarts and old workers into the metrics.
    fn watch_restarts(&self, supervisor: &Supervisor) {
        let mut status = supervisor.subscribe();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut restarts = status.borrow().restarts;
            while status.changed().await.is_ok() {
                let now = status.borrow().restarts;
                for _ in restarts..now {
                    metrics.haproxy_restart();
                    metrics.reload(ReloadReason::Restart.as_str(), true);
                }
                restarts = now;
            }
        });
    }

    /// The Runtime API operations that take HAProxy from what it runs to `rendered`, when only
    /// servers differ. Such a config needs no full `haproxy -c`: every other line is one HAProxy
    /// already runs, and `add server` parses each new server line itself (a refused one falls
    /// back to the checked path). This keeps task churn fast at any cluster size.
    pub fn runtime_ops(&self, rendered: &Rendered) -> Option<Vec<plan::Op>> {
        let running = self.running.as_ref().filter(|_| self.is_running())?;
        match plan::plan(Some(snapshot(running)), snapshot(rendered)) {
            Plan::Runtime(ops) => Some(ops),
            _ => None,
        }
    }

    /// Applies server-only changes (from [`Managed::runtime_ops`]): runs the operations,
    /// verifies the running servers, then writes the config.
    ///
    /// # Errors
    /// Why it did not work; the caller then checks the config and reloads.
    pub async fn apply_servers(
        &mut self,
        ops: &[plan::Op],
        rendered: Rendered,
        config: &Config,
    ) -> Result<Deployed, String> {
        let output = &config.output;
        // Traffic first: the running process changes before the file is written (and synced),
        // so the write is off the event-to-traffic path. A failure here leaves the file as it
        // was; the caller's checked path then writes and reloads.
        let started = std::time::Instant::now();
        self.runtime(ops, &rendered.config).await?;
        let applied = started.elapsed();
        let validated = haproxy::Validated::unchecked(rendered);
        haproxy::apply(
            &validated,
            &output.paths,
            output.map,
            output.archive_versions,
        )
        .map_err(|e| e.to_string())?;
        let next = validated.rendered().clone();
        tracing::info!(
            ops = ops.len(),
            runtime_ms = applied.as_millis() as u64,
            write_ms = (started.elapsed() - applied).as_millis() as u64,
            "applied server changes through the Runtime API"
        );
        self.running = Some(next);
        self.last_change = ("runtime_ops".into(), crate::status::summarize_ops(ops));
        Ok(Deployed::Runtime(ops.len()))
    }

    /// Serves a checked config: runtime ops when only servers changed, else write + reload.
    /// `runtime_failed`: the Runtime API already failed for this change, so reload.
    ///
    /// # Errors
    /// [`run::Error::Apply`] when files cannot be written; [`run::Error::Reload`] when HAProxy
    /// cannot start or reload (the last good config keeps serving).
    pub async fn deploy(
        &mut self,
        checked: Checked,
        config: &Config,
        runtime_failed: bool,
    ) -> Result<Deployed, run::Error> {
        let output = &config.output;
        let next = checked.validated.rendered().clone();
        let plan = match (&self.running, self.is_running()) {
            (Some(running), true) => plan::plan(Some(snapshot(running)), snapshot(&next)),
            _ => Plan::Reload(vec![Change::Initial]),
        };
        if matches!(plan, Plan::Unchanged) {
            return Ok(Deployed::Unchanged);
        }
        haproxy::apply(
            &checked.validated,
            &output.paths,
            output.map,
            output.archive_versions,
        )?;
        match plan {
            Plan::Runtime(ops) if !runtime_failed => match self.runtime(&ops, &next.config).await {
                Ok(()) => {
                    tracing::info!(
                        ops = ops.len(),
                        "applied server changes through the Runtime API"
                    );
                    self.running = Some(next);
                    self.last_change = ("runtime_ops".into(), crate::status::summarize_ops(&ops));
                    Ok(Deployed::Runtime(ops.len()))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "runtime update failed; reloading instead");
                    self.last_change.1 = format!("runtime update failed: {e}");
                    self.reload(ReloadReason::RuntimeFallback, next).await
                }
            },
            Plan::Reload(changes) => {
                let reason = reason_of(&changes);
                self.last_change.1 = changes
                    .iter()
                    .take(3)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::info!(%reason, changes = %self.last_change.1, "reloading HAProxy");
                self.reload(reason, next).await
            }
            // Server-only changes the Runtime API already failed to apply.
            _ => {
                self.last_change.1 = "runtime update failed".to_owned();
                self.reload(ReloadReason::RuntimeFallback, next).await
            }
        }
    }

    async fn runtime(&self, ops: &[plan::Op], config: &str) -> Result<(), String> {
        // Our admin-level socket, else the config's own (which must then be `level admin`).
        let socket = match &self.settings.runtime_socket {
            Some(socket) => socket.clone(),
            None => plan::stats_socket(config)
                .ok_or("the config has no `stats socket` in its global section")?
                .into(),
        };
        let api = RuntimeApi::new(socket, self.drain_wait);
        let (results, outcome) = api.apply(ops).await;
        for (op, ok) in results {
            self.metrics.runtime_update(op, ok);
        }
        outcome.map_err(|e| e.to_string())?;
        let mut touched: Vec<&str> = ops.iter().map(plan::Op::backend).collect();
        touched.sort_unstable();
        touched.dedup();
        api.verify_backends(config, Some(&touched))
            .await
            .map_err(|e| e.to_string())
    }

    async fn reload(
        &mut self,
        reason: ReloadReason,
        next: Rendered,
    ) -> Result<Deployed, run::Error> {
        self.last_change.0 = reason.as_str().to_owned();
        if !self.is_running() {
            self.last_change.0 = ReloadReason::Initial.as_str().to_owned();
            self.supervisor = None;
            self.running = None;
            return match self.start(&next.config).await {
                Ok(()) => {
                    self.running = Some(next);
                    Ok(Deployed::Reloaded(ReloadReason::Initial))
                }
                Err(e) => Err(run::Error::Reload(e.to_string())),
            };
        }
        self.save_server_state(&next.config).await;
        let Some(supervisor) = &self.supervisor else {
            unreachable!("is_running checked it")
        };
        match supervisor.reload(reason).await {
            Ok(outcome) => {
                self.metrics.reload(reason.as_str(), true);
                tracing::info!(%reason, elapsed_ms = outcome.elapsed.as_millis() as u64, new_worker = outcome.new_worker, "HAProxy reloaded");
                self.running = Some(next);
                Ok(Deployed::Reloaded(reason))
            }
            Err(e) => {
                self.metrics.reload(reason.as_str(), false);
                // HAProxy kept its old config; plan the next pass against "unknown".
                self.running = None;
                Err(run::Error::Reload(e.to_string()))
            }
        }
    }

    /// Before a reload, writes `show servers state` to the file the config's global section
    /// loads (`server-state-file` under `server-state-base`, as the built-in head has), so the
    /// new worker starts with the servers' current health and admin state instead of all up.
    /// Best effort: without it the new worker only loses that state.
    async fn save_server_state(&self, config: &str) {
        let Some(path) = server_state_path(config) else {
            return;
        };
        let Some(socket) = &self.settings.runtime_socket else {
            return;
        };
        let api = RuntimeApi::new(socket, self.drain_wait);
        match api.command("show servers state").await {
            Ok(state) => {
                if let Err(e) = std::fs::write(&path, state) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save the server state before a reload");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the server state before a reload"),
        }
    }

    /// SIGUSR1: validate the config on disk and reload HAProxy with it.
    ///
    /// # Errors
    /// [`run::Error::Validate`] or [`run::Error::Reload`].
    pub async fn reload_existing(&mut self, config: &Config) -> Result<(), run::Error> {
        let paths = &config.output.paths;
        if !config.validation.skip {
            haproxy::validate_file(&paths.config, &self.settings.haproxy_bin.to_string_lossy())?;
        }
        let text = std::fs::read_to_string(&paths.config).unwrap_or_default();
        let next = Rendered {
            config: text,
            domain_map: String::new(),
            app_map: String::new(),
        };
        self.reload(ReloadReason::ManualSignal, next)
            .await
            .map(|_| ())
    }

    /// Stops HAProxy (soft stop, then hard after the stop timeout).
    pub async fn stop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop().await;
        }
    }

    /// How HAProxy is started (its sockets, for the admin server's live view).
    pub fn settings(&self) -> &SupervisorConfig {
        &self.settings
    }

    /// The supervisor, once started.
    pub fn supervisor(&self) -> Option<&Supervisor> {
        self.supervisor.as_ref()
    }
}

/// Where the global section's `server-state-file` lives (joined to `server-state-base`).
fn server_state_path(config: &str) -> Option<std::path::PathBuf> {
    let global = config.split("\ndefaults").next()?;
    let value = |key: &str| {
        global
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    let file = value("server-state-file ")?;
    let file = std::path::PathBuf::from(file);
    if file.is_absolute() {
        return Some(file);
    }
    Some(std::path::PathBuf::from(value("server-state-base ")?).join(file))
}

fn snapshot(r: &Rendered) -> Snapshot<'_> {
    Snapshot {
        config: &r.config,
        domain_map: &r.domain_map,
        app_map: &r.app_map,
    }
}

/// The reload reason that best names a set of changes.
fn reason_of(changes: &[Change]) -> ReloadReason {
    let first = changes.first();
    match first {
        Some(Change::Initial) | None => ReloadReason::Initial,
        Some(Change::Added(_)) => ReloadReason::NewApp,
        Some(Change::Removed(_)) => ReloadReason::RemovedApp,
        Some(Change::Modified(section))
            if section.starts_with("frontend ") || section.starts_with("backend ") =>
        {
            ReloadReason::LabelChange
        }
        Some(Change::Modified(_)) => ReloadReason::ConfigChange,
        Some(Change::Server { .. }) => ReloadReason::ServersChanged,
        Some(Change::Map(_)) => ReloadReason::LabelChange,
    }
}

/// A `-n` cap when the config's global `maxconn` needs more file descriptors than the hard
/// open-files limit allows (HAProxy would refuse to start: "Cannot raise FD limit").
fn maxconn_cap(config: &str) -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum?;
    cap_for(config, limit)
}

/// [`maxconn_cap`] for a hard limit of `limit` descriptors.
fn cap_for(config: &str, limit: u64) -> Option<u64> {
    let maxconn: u64 = config
        .lines()
        .take_while(|l| !l.starts_with("defaults"))
        .find_map(|l| l.trim().strip_prefix("maxconn "))
        .and_then(|v| v.trim().parse().ok())?;
    // HAProxy needs two descriptors per connection plus one per listener and per health
    // check. The `-n` given at start also applies to every later reload, so the reserve is
    // twice what this config needs: the cluster may grow before the next restart.
    let eaters = config
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            l.starts_with("bind ")
                || (l.starts_with("server ") && l.split_whitespace().any(|w| w == "check"))
        })
        .count() as u64;
    let reserve = 2 * eaters + 256;
    let needed = maxconn * 2 + reserve;
    (needed > limit)
        .then(|| limit.saturating_sub(reserve) / 2)
        .filter(|cap| *cap > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_reasons_name_the_change() {
        assert_eq!(
            reason_of(&[Change::Added("backend a_1".into())]),
            ReloadReason::NewApp
        );
        assert_eq!(
            reason_of(&[Change::Removed("frontend a_1".into())]),
            ReloadReason::RemovedApp
        );
        assert_eq!(
            reason_of(&[Change::Modified("backend a_1".into())]),
            ReloadReason::LabelChange
        );
        assert_eq!(
            reason_of(&[Change::Modified("global".into())]),
            ReloadReason::ConfigChange
        );
        assert_eq!(reason_of(&[Change::Initial]), ReloadReason::Initial);
    }

    #[test]
    fn the_cap_leaves_descriptors_for_every_listener_and_check() {
        // 1500 frontends (1000 apps) and 3000 checked servers under a 20000 hard limit: HAProxy
        // wants 2 * maxconn plus one descriptor per listener and per check (and a few more);
        // with the old `(limit - 200) / 2` it refused to start ("Cannot raise FD limit").
        let mut config = String::from("global\n  maxconn 50000\ndefaults\n");
        for i in 0..1500 {
            config.push_str(&format!("frontend f{i}\n  bind 127.0.0.1:{}\n", 10000 + i));
            config.push_str(&format!("backend f{i}\n  server a 10.0.0.1:1 check\n"));
            config.push_str("  server b 10.0.0.2:1 check\n");
        }
        let cap = cap_for(&config, 20_000).expect("capped");
        assert!(cap * 2 + 1500 + 3000 + 100 <= 20_000, "cap {cap}");
        assert!(cap >= 1000, "cap {cap}");
    }

    #[test]
    fn the_server_state_file_is_found_in_the_global_section() {
        let head = crate::templates::default_head(None);
        assert_eq!(
            server_state_path(&head),
            Some("/var/state/haproxy/global".into())
        );
        assert_eq!(
            server_state_path("global\n  server-state-file /s/f\ndefaults\n"),
            Some("/s/f".into())
        );
        assert_eq!(
            server_state_path("global\n  maxconn 1\ndefaults\n  server-state-file x\n"),
            None
        );
    }

    #[test]
    fn maxconn_is_capped_only_beyond_the_fd_limit() {
        assert_eq!(maxconn_cap("global\n  maxconn 10\ndefaults\n"), None);
        let huge = maxconn_cap("global\n  maxconn 100000000\ndefaults\n  maxconn 1\n");
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(huge.is_some(), limit.is_some());
    }
}
