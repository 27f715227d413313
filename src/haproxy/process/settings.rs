//! The plain data of the supervisor: what to run ([`SupervisorConfig`]), why a reload
//! happens ([`ReloadReason`]), how often to retry ([`Retries`]) and what came out
//! ([`ReloadOutcome`], [`Status`]). No I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why HAProxy was (re)loaded. `Display` gives a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReloadReason {
    /// The first start.
    Initial,
    /// An app appeared.
    NewApp,
    /// An app went away.
    RemovedApp,
    /// An app's `HAPROXY_*` labels changed.
    LabelChange,
    /// A template changed.
    TemplateChange,
    /// Servers changed in a way the Runtime API cannot apply.
    ServersChanged,
    /// The config changed and no finer reason is known.
    ConfigChange,
    /// A Runtime API update failed, so the config is reloaded instead.
    RuntimeFallback,
    /// SIGUSR1 or the admin endpoint asked for it.
    ManualSignal,
    /// The master died and was started again.
    Restart,
}

impl ReloadReason {
    /// Every reason, to pre-register metric labels.
    pub const ALL: [ReloadReason; 10] = [
        Self::Initial,
        Self::NewApp,
        Self::RemovedApp,
        Self::LabelChange,
        Self::TemplateChange,
        Self::ServersChanged,
        Self::ConfigChange,
        Self::RuntimeFallback,
        Self::ManualSignal,
        Self::Restart,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::NewApp => "new-app",
            Self::RemovedApp => "removed-app",
            Self::LabelChange => "label-change",
            Self::TemplateChange => "template-change",
            Self::ServersChanged => "servers-changed",
            Self::ConfigChange => "config-change",
            Self::RuntimeFallback => "runtime-fallback",
            Self::ManualSignal => "manual-signal",
            Self::Restart => "restart",
        }
    }
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often a reload that did not take is sent again (`--max-reload-retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// One attempt only (`0`).
    None,
    /// Up to this many attempts after the first.
    Limited(u32),
    /// Until it works or the master dies (`-1`, or any negative value).
    Infinite,
}

impl Retries {
    /// marathon-lb's flag: 0 = none, negative = infinite.
    pub fn from_flag(flag: i64) -> Self {
        match flag {
            0 => Self::None,
            n if n < 0 => Self::Infinite,
            n => Self::Limited(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    /// Whether another attempt may follow `done` retries.
    pub(super) fn allow(self, done: u32) -> bool {
        match self {
            Self::None => false,
            Self::Limited(max) => done < max,
            Self::Infinite => true,
        }
    }
}

/// What to run and how patiently.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The HAProxy binary (a path, or a name looked up in `PATH`).
    pub haproxy_bin: PathBuf,
    /// The main config (`--haproxy-config`); always the last good one.
    pub config_path: PathBuf,
    /// The master CLI socket (`-S`), created with mode 600.
    pub master_socket: PathBuf,
    /// Our extra config file (a `global` section), written at each (re)start.
    pub extra_config_path: PathBuf,
    /// `hard-stop-after` for old workers; `None` lets them drain forever.
    pub drain_timeout: Option<Duration>,
    /// `mworker-max-reloads`: an old worker that survived this many reloads gets SIGTERM.
    pub max_worker_reloads: Option<u32>,
    /// How long one reload attempt may take, and the time between retries
    /// (`--reload-interval`).
    pub reload_interval: Duration,
    /// Retries after a reload that failed or timed out (`--max-reload-retries`).
    pub max_reload_retries: Retries,
    /// How long a (re)start may take until `show proc` lists a worker.
    pub start_timeout: Duration,
    /// How long [`Supervisor::stop`](super::Supervisor::stop) waits after SIGUSR1 before SIGTERM.
    pub stop_timeout: Duration,
    /// Delay before the first restart of a dead master (doubled while it keeps dying).
    pub restart_delay: Duration,
    /// An admin-level stats socket added for marathon-lb's Runtime API updates (`None`: none).
    pub runtime_socket: Option<PathBuf>,
    /// Extra command-line arguments for HAProxy (e.g. `-n <maxconn>` where the fd limit is low).
    pub extra_args: Vec<String>,
    /// Extra environment for HAProxy (e.g. `MARATHON_LB_ADMIN_ADDR` for the Lua signal service),
    /// on top of the scrubbed environment (see [`crate::haproxy::exec`]).
    pub env: Vec<(String, String)>,
    /// The master's pid file: written at each (re)start, removed on a clean stop; a master
    /// found through it at start was left by a previous run and is stopped (`None`: none).
    pub pid_file: Option<PathBuf>,
}

impl SupervisorConfig {
    /// Defaults for `config_path`, with the socket and extra config in `state_dir`:
    /// drain timeout 300 s, reload interval 10 s with 10 retries (marathon-lb's defaults),
    /// start timeout 10 s, stop timeout = drain timeout + 5 s, restart delay 100 ms.
    pub fn new(config_path: impl Into<PathBuf>, state_dir: &Path) -> Self {
        let drain = Duration::from_secs(300);
        Self {
            haproxy_bin: PathBuf::from("haproxy"),
            config_path: config_path.into(),
            master_socket: state_dir.join("master.sock"),
            extra_config_path: state_dir.join("supervisor.cfg"),
            drain_timeout: Some(drain),
            max_worker_reloads: None,
            reload_interval: Duration::from_secs(10),
            max_reload_retries: Retries::Limited(10),
            start_timeout: Duration::from_secs(10),
            stop_timeout: drain + Duration::from_secs(5),
            restart_delay: Duration::from_millis(100),
            runtime_socket: Some(state_dir.join("runtime.sock")),
            extra_args: Vec::new(),
            env: Vec::new(),
            pid_file: Some(state_dir.join("haproxy.pid")),
        }
    }

    /// The text of the extra config file.
    pub fn extra_config(&self) -> String {
        let mut text = String::from(
            "# Written by marathon-lb's HAProxy supervisor; merged into `global`.\nglobal\n",
        );
        if let Some(drain) = self.drain_timeout {
            text.push_str(&format!(
                "  hard-stop-after {}ms\n",
                drain.as_millis().max(1)
            ));
        }
        if let Some(max) = self.max_worker_reloads {
            text.push_str(&format!("  mworker-max-reloads {max}\n"));
        }
        if let Some(socket) = &self.runtime_socket {
            // Our own Runtime API socket: the default head's `stats socket` has the default
            // level `operator`, which may not `add server`.
            text.push_str(&format!(
                "  stats socket {} mode 600 level admin\n",
                socket.display()
            ));
        }
        text
    }
}

/// A confirmed reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Why it was asked for.
    pub reason: ReloadReason,
    /// Workers that served the previous config; now old workers (or gone).
    pub old_workers: Vec<u32>,
    /// The worker serving the new config.
    pub new_worker: u32,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
    /// From the call to the confirmation, lock wait included.
    pub elapsed: Duration,
}

/// Counters for the admin endpoints and metrics, published on a `watch` channel.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The running master, `None` while it is down.
    pub master_pid: Option<u32>,
    /// Restarts after the master died.
    pub restarts: u64,
    /// Configs loaded, by reason (the initial start and restarts included).
    pub loads: BTreeMap<ReloadReason, u64>,
    /// Failed reloads (after retries), by reason.
    pub failures: BTreeMap<ReloadReason, u64>,
    /// The last successful reload.
    pub last_reload: Option<ReloadOutcome>,
    /// The last failure (reload or restart), cleared by a success.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_marathon_lb_flags() {
        assert_eq!(Retries::from_flag(0), Retries::None);
        assert_eq!(Retries::from_flag(-1), Retries::Infinite);
        assert_eq!(Retries::from_flag(3), Retries::Limited(3));
        assert!(!Retries::None.allow(0));
        assert!(Retries::Limited(2).allow(1) && !Retries::Limited(2).allow(2));
        assert!(Retries::Infinite.allow(u32::MAX));
    }

    #[test]
    fn reason_labels_are_distinct_kebab_case() {
        let labels: std::collections::BTreeSet<_> =
            ReloadReason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(labels.len(), ReloadReason::ALL.len());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
        assert_eq!(
            ReloadReason::RuntimeFallback.to_string(),
            "runtime-fallback"
        );
    }

    #[test]
    fn extra_config_is_a_global_section() {
        let mut config = SupervisorConfig::new("/x/haproxy.cfg", Path::new("/run/mlb"));
        config.drain_timeout = Some(Duration::from_millis(2500));
        config.max_worker_reloads = Some(50);
        let text = config.extra_config();
        assert!(text.contains(
            "\nglobal\n  hard-stop-after 2500ms\n  mworker-max-reloads 50\n  stats socket /run/mlb/runtime.sock mode 600 level admin\n"
        ));
        config.drain_timeout = None;
        config.max_worker_reloads = None;
        config.runtime_socket = None;
        assert!(config.extra_config().ends_with("\nglobal\n"));
        assert_eq!(config.master_socket, Path::new("/run/mlb/master.sock"));
    }
}
