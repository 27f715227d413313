//! Managed mode: marathon-lb runs HAProxy itself (no `--command`) and gets each checked config
//! served with as little disruption as possible.
//!
//! Data flow position: the [`Target`] of a live pass without `--command`. [`Served`] plans
//! against the config HAProxy runs: server-only changes (task churn, health flips, draining)
//! go through the Runtime API with no reload; anything else is written and reloaded through
//! the master CLI, with a typed reason. The file on disk always equals what HAProxy serves
//! (or is about to).

use std::path::Path;
use std::time::Duration;

use super::plan;
use super::runtime::RuntimeApi;
use super::target::{Applied, Error, RuntimeFailed, RuntimeFailure, Served, Step, Target};
use super::{ReloadReason, Supervisor, SupervisorConfig, Validated};
use crate::config::{Config, Output};
use crate::metrics::Metrics;
use crate::render::Rendered;

/// The supervised HAProxy and what it serves.
pub struct Managed {
    /// How to start HAProxy.
    settings: SupervisorConfig,
    /// Where the config and maps are written.
    output: Output,
    /// The running master, once a valid config exists.
    supervisor: Option<Supervisor>,
    /// The config and maps HAProxy serves, when known.
    served: Served,
    /// Counters for reloads and runtime updates.
    metrics: Metrics,
    /// How long a removed server may keep its sessions before they are shut down.
    drain_wait: Duration,
    /// The certificates the last incremental render references, by its generation.
    certs_seen: Option<(u64, Vec<std::path::PathBuf>)>,
}

impl Managed {
    /// A manager that starts HAProxy with `settings` on the first valid config, writing the
    /// files where `output` says.
    pub fn new(
        settings: SupervisorConfig,
        output: Output,
        metrics: Metrics,
        drain_wait: Duration,
    ) -> Self {
        Self {
            settings,
            output,
            supervisor: None,
            served: Served::default(),
            metrics,
            drain_wait,
            certs_seen: None,
        }
    }

    /// How HAProxy is started (its sockets, for the admin server's live view).
    pub fn settings(&self) -> &SupervisorConfig {
        &self.settings
    }

    /// The certificate files `rendered` references. After a change to some apps' tasks only,
    /// those of the last render plus what the changed sections reference: nothing else can
    /// have changed, and a full scan took ~60 ms of each pass at 10,000 apps.
    fn certificates(&mut self, rendered: &Rendered) -> Vec<std::path::PathBuf> {
        let delta = rendered.incremental.as_deref();
        let seen = self.certs_seen.take();
        let paths = match (delta, seen) {
            (Some(d), Some((generation, mut paths)))
                if d.servers_only && !d.shared_changed && d.base == Some(generation) =>
            {
                for path in super::certs::referenced_in(&rendered.config, &d.after) {
                    if !paths.contains(&path) {
                        paths.push(path);
                    }
                }
                paths
            }
            _ => super::certs::referenced(&rendered.config),
        };
        self.certs_seen = delta.map(|d| (d.generation, paths.clone()));
        paths
    }

    /// Whether HAProxy runs.
    pub fn is_running(&self) -> bool {
        self.supervisor
            .as_ref()
            .is_some_and(|s| s.master_pid().is_some())
    }

    async fn start_process(&mut self, config_text: &str) -> Result<(), super::process::Error> {
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
        self.metrics.reload(ReloadReason::Initial, true);
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
                    metrics.reload(ReloadReason::Restart, true);
                }
                restarts = now;
            }
        });
    }

    /// Sends `ops` to the running HAProxy and verifies the backends they touched.
    async fn runtime_ops(&self, ops: &[plan::Op], config: &str) -> Result<(), RuntimeFailure> {
        // Our admin-level socket, else the config's own (which must then be `level admin`).
        let socket = match &self.settings.runtime_socket {
            Some(socket) => socket.clone(),
            None => plan::stats_socket(config)
                .ok_or(RuntimeFailure::NoSocket)?
                .into(),
        };
        let api = RuntimeApi::new(socket, self.drain_wait);
        let (results, outcome) = api.apply(ops).await;
        for (op, ok) in results {
            self.metrics.runtime_update(op, ok);
        }
        outcome?;
        let mut touched: Vec<&str> = ops.iter().map(plan::Op::backend).collect();
        touched.sort_unstable();
        touched.dedup();
        api.verify_backends(config, Some(&touched)).await?;
        Ok(())
    }

    /// Starts HAProxy on `next` when it does not run, else reloads it for `reason`.
    async fn serve(&mut self, reason: ReloadReason, next: Rendered) -> Result<Applied, Error> {
        if !self.is_running() {
            self.supervisor = None;
            self.served.forget();
            self.start_process(&next.config)
                .await
                .map_err(Error::Reload)?;
            self.served.serves(next);
            return Ok(Applied::Reloaded {
                reason: ReloadReason::Initial,
            });
        }
        self.save_server_state(&next.config).await;
        let Some(supervisor) = &self.supervisor else {
            unreachable!("is_running checked it")
        };
        match supervisor.reload(reason).await {
            Ok(outcome) => {
                self.metrics.reload(reason, true);
                tracing::info!(%reason, elapsed_ms = outcome.elapsed.as_millis() as u64, new_worker = outcome.new_worker, "HAProxy reloaded");
                self.served.serves(next);
                Ok(Applied::Reloaded { reason })
            }
            Err(e) => {
                self.metrics.reload(reason, false);
                // HAProxy kept its old config; plan the next pass against "unknown".
                self.served.forget();
                Err(Error::Reload(e))
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

    /// The supervisor, once started.
    pub fn supervisor(&self) -> Option<&Supervisor> {
        self.supervisor.as_ref()
    }
}

impl Target for Managed {
    fn prepare(&mut self, rendered: &Rendered, config: &Config) {
        let generate = config
            .apply
            .managed()
            .and_then(|m| m.generate_certs_dir.as_deref());
        let allowed = super::certs::Allowed::new(&config.render.ssl_certs, generate);
        let paths = self.certificates(rendered);
        for result in super::certs::ensure_paths(&rendered.config, &paths, &allowed) {
            match result {
                Ok(path) => {
                    tracing::warn!(path = %path.display(), "certificate missing: generated a self-signed one")
                }
                Err(e) => tracing::error!(error = %e, "cannot generate a missing certificate"),
            }
        }
    }

    /// Server-only changes need no full `haproxy -c`: every other line is one HAProxy already
    /// runs, and `add server` parses each new server line itself (a refused one falls back to
    /// the checked path). This keeps task churn fast at any cluster size.
    fn plan(&self, next: &Rendered) -> Step {
        self.served.plan(self.is_running(), next)
    }

    /// Traffic first: the running process changes before the file is written (and synced), so
    /// the write is off the event-to-traffic path. A failure leaves the file as it was.
    async fn runtime(&mut self, ops: &[plan::Op], next: Rendered) -> Result<(), RuntimeFailed> {
        let started = std::time::Instant::now();
        if let Err(error) = self.runtime_ops(ops, &next.config).await {
            // The caller checks the config and reloads, which also undoes partial operations.
            return Err(RuntimeFailed { error, next });
        }
        let applied = started.elapsed();
        let validated = Validated::unchecked(next);
        let written = super::target::write(&self.output, &validated);
        let next = validated.into_rendered();
        if let Err(e) = written {
            return Err(RuntimeFailed {
                error: e.into(),
                next,
            });
        }
        tracing::info!(
            ops = ops.len(),
            runtime_ms = applied.as_millis() as u64,
            write_ms = (started.elapsed() - applied).as_millis() as u64,
            "applied server changes through the Runtime API"
        );
        self.served.serves(next);
        Ok(())
    }

    async fn reload(
        &mut self,
        validated: Validated,
        reason: ReloadReason,
    ) -> Result<Applied, Error> {
        super::target::write(&self.output, &validated)?;
        self.serve(reason, validated.into_rendered()).await
    }

    async fn reload_existing(&mut self, config: &Config) -> Result<(), Error> {
        let paths = &config.output.paths;
        if !config.validation.skip {
            let binary = self.settings.haproxy_bin.to_string_lossy().into_owned();
            super::validate_file(&paths.config, &binary)?;
        }
        let text = std::fs::read_to_string(&paths.config).unwrap_or_default();
        let next = Rendered {
            config: text.into(),
            domain_map: String::new(),
            app_map: String::new(),
            incremental: None,
        };
        self.serve(ReloadReason::ManualSignal, next)
            .await
            .map(|_| ())
    }

    /// Starts HAProxy on the config already on disk, if it is valid, so the last good config
    /// serves even while Marathon is unreachable.
    async fn start(&mut self, config: &Config) {
        let (output, paths) = (&config.output, &config.output.paths);
        let Ok(text) = std::fs::read_to_string(&paths.config) else {
            return;
        };
        if !recorded_whole(&paths.config, &text) {
            return;
        }
        if !config.validation.skip {
            let binary = self.settings.haproxy_bin.to_string_lossy().into_owned();
            if let Err(e) = super::validate_file(&paths.config, &binary) {
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
        let maps = [
            (paths.domain_map(), &domain_map),
            (paths.app_map(), &app_map),
        ];
        if output.map && !maps.iter().all(|(path, text)| recorded_whole(path, text)) {
            return;
        }
        match self.start_process(&text).await {
            Ok(()) => self.served.serves(Rendered {
                config: text.into(),
                domain_map,
                app_map,
                incremental: None,
            }),
            Err(e) => tracing::error!(error = %e, "cannot start HAProxy on the config on disk"),
        }
    }

    /// Stops HAProxy (soft stop, then hard after the stop timeout).
    async fn stop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop().await;
        }
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
    // When the doubled reserve leaves nothing (10k apps: ~14k listeners and checks under a
    // 20000 limit), what this config needs is reserved: starting beats refusing to.
    let cap = |reserve: u64| Some(limit.saturating_sub(reserve) / 2).filter(|cap| *cap > 0);
    (needed > limit)
        .then(|| cap(reserve).or_else(|| cap(eaters + 256)))
        .flatten()
}

/// Whether `text`, read from `path`, may be served at start: not a write cut short by a power
/// loss ([`super::record`]). A file without a record (written by an older version, or by
/// hand) may: `haproxy -c` is then its only check, as before records were kept.
fn recorded_whole(path: &Path, text: &str) -> bool {
    match super::record::check(path, text.as_bytes()) {
        super::record::Check::Whole | super::record::Check::NoRecord => true,
        super::record::Check::Differs { recorded, found } => {
            tracing::error!(
                file = %path.display(),
                recorded = ?recorded,
                found = ?found,
                "the file on disk is not the last one written whole (a power loss during a write?); not serving it, waiting for the first pass"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_config_whose_doubled_reserve_exceeds_the_limit_still_gets_a_cap() {
        // 10k apps x 10 tasks: ~12,700 frontends and ~1,500 checked servers under a 20000
        // hard limit. Twice that is more than the limit; without a cap HAProxy refuses to
        // start ("Cannot raise FD limit to 114248, limit is 20000") and every retry fails.
        let mut config = String::from("global\n  maxconn 50000\ndefaults\n");
        for i in 0..12_700 {
            config.push_str(&format!("frontend f{i}\n  bind 127.0.0.1:{}\n", 10000 + i));
            let check = if i % 9 == 0 { " check" } else { "" };
            config.push_str(&format!("backend f{i}\n  server a 10.0.0.1:1{check}\n"));
        }
        let cap = cap_for(&config, 20_000).expect("capped");
        assert!(cap * 2 + 12_700 + 1_412 + 100 <= 20_000, "cap {cap}");
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
