//! The command line: every marathon-lb 1.x flag, plus `--apps-file`.
//!
//! `Cli` is the raw clap input; [`Cli::validate`] checks what clap cannot (the rules of the
//! original, which exits with status 2 on them) and yields a [`Config`] holding the options of
//! each pipeline stage (see [`options`]); nothing after validation reads `Cli`.

mod flags;
mod options;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use flags::{AuthFlags, LogFlags};
pub use options::{
    Apply, Auth, CredentialsError, Input, LiveOptions, ManagedOptions, MarathonOptions, Output,
    SourceOptions, Validation,
};

use crate::haproxy::{exec, Paths, Retries};
use crate::{model, render};

/// The `--log-level` values the original (Python `logging`) knows, in any case.
const LOG_LEVELS: &[&str] = &[
    "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL",
];

/// Command-line flags, with the original's names, short options and defaults.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "marathon-lb",
    version,
    about = "Marathon HAProxy load balancer: renders haproxy.cfg from Marathon apps and their HAPROXY_* labels",
    after_help = "Run with --longhelp for every label and template."
)]
pub struct Cli {
    /// Print every label and template with its default, then exit.
    #[arg(long)]
    pub longhelp: bool,
    /// Marathon endpoint(s), e.g. -m http://marathon1:8080 http://marathon2:8080.
    #[arg(long, short = 'm', num_args = 1.., default_value = "http://master.mesos:8080")]
    pub marathon: Vec<String>,
    /// Read the body of GET /v2/apps?embed=apps.tasks from FILE instead of Marathon.
    #[arg(long, value_name = "FILE")]
    pub apps_file: Option<PathBuf>,
    /// Location of the HAProxy configuration; the map files are written beside it.
    #[arg(long, default_value = "/etc/haproxy/haproxy.cfg")]
    pub haproxy_config: String,
    /// Only generate config for apps in this HAPROXY_GROUP (repeatable; '*' = every app, grouped or not).
    #[arg(long)]
    pub group: Vec<String>,
    /// Command that reloads HAProxy after a new config is written.
    #[arg(long, short = 'c')]
    pub command: Option<String>,
    /// Max reload retries (0 = none, -1 = infinite). Not used with --apps-file.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub max_reload_retries: i64,
    /// Seconds between reload retries.
    #[arg(long, default_value_t = 10)]
    pub reload_interval: u64,
    /// Only advertise backends whose HAPROXY_<n>_ENABLED is true.
    #[arg(long)]
    pub strict_mode: bool,
    /// Use Marathon's event stream (Server Sent Events) and keep running.
    #[arg(long, short = 's')]
    pub sse: bool,
    /// Poll Marathon every SECS seconds instead of running once (without --sse).
    #[arg(long, value_name = "SECS")]
    pub poll_interval: Option<u64>,
    /// With --apps-file: keep running and re-render whenever the file changes.
    #[arg(long)]
    pub watch: bool,
    /// In live mode, do a full resync at least every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub resync_interval: u64,
    /// Treat the event stream as dead after SECS seconds without a byte (keep-alives included).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub event_stall_timeout: u64,
    /// Largest Marathon apps body (and --apps-file in live mode) read, in bytes; a larger one
    /// fails the pass and the last good config keeps serving (a 10,000-app cluster is ~28 MB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub marathon_max_body_bytes: u64,
    /// Address of the admin HTTP server in live mode (/healthz, /metrics, /status, /signal/*); "off" disables it.
    /// A taken address is a start-up error. POST /signal/* refuses cross-origin browser requests.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9092")]
    pub admin_addr: String,
    /// Live mode: /healthz and the dashboard say degraded once Marathon has been unreachable
    /// (fetches failing, or the event stream down) for longer than SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub marathon_unreachable_after: u64,
    /// HAProxy binary that marathon-lb runs when no --command is given (live mode).
    #[arg(long, value_name = "PATH", default_value = "haproxy")]
    pub haproxy_bin: String,
    /// Old HAProxy workers left by a reload are stopped after SECS seconds (hard-stop-after), so
    /// long tunnels never keep them forever; 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub drain_timeout: u64,
    /// Directory for the HAProxy master socket and the supervisor's extra config (managed mode).
    /// Locked: a second marathon-lb on the same directory exits at start.
    #[arg(long, value_name = "DIR", default_value = "/var/run/marathon-lb")]
    pub run_dir: PathBuf,
    /// Kill `haproxy -c` after SECS seconds (e.g. a certificate path that is a FIFO); the pass
    /// fails and the last good config keeps serving.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub check_timeout: u64,
    /// Kill the reload command (--command, with its process group) after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub command_timeout: u64,
    /// Pass the environment variable NAME to HAProxy and the reload command (repeatable).
    /// Both start with a scrubbed environment: PATH, LANG, LC_*, TZ, TMPDIR, HOME, HOSTNAME,
    /// HOST, PORT, PORTS, PORT<n>, MESOS_* and MARATHON_APP_*, minus any name containing
    /// PASSWORD, PASSWD, TOKEN, SECRET, KEY, CREDENTIAL, AUTH, PRIVATE or COOKIE.
    /// DCOS_SERVICE_ACCOUNT_CREDENTIAL is never passed.
    #[arg(long, value_name = "NAME")]
    pub haproxy_env: Vec<String>,
    /// Number of previous config versions to keep, as hap_cfg.1 (newest) ... hap_cfg.N in the
    /// private directory $TMPDIR/marathon-lb-archive-<uid>/ (0 = none).
    #[arg(long, default_value_t = 5)]
    pub archive_versions: usize,
    /// Only route to tasks whose Marathon health checks pass.
    #[arg(long, short = 'H')]
    pub health_check: bool,
    /// Capacity of the health-result and DNS caches (accepted for compatibility).
    #[arg(long, default_value_t = 1000)]
    pub lru_cache_capacity: usize,
    /// Route vhosts and app ids through HAProxy map files.
    #[arg(long)]
    pub haproxy_map: bool,
    /// Don't bind the shared HTTP (:80) and HTTPS (:443) frontends.
    #[arg(long)]
    pub dont_bind_http_https: bool,
    /// Group the HTTPS frontends by vhost (SNI).
    #[arg(long)]
    pub group_https_by_vhost: bool,
    /// Comma-separated certificates for marathon_https_in.
    #[arg(long, default_value = "/etc/ssl/cert.pem")]
    pub ssl_certs: String,
    /// Managed mode: a missing certificate that an app's HAPROXY_<n>_SSL_CERT names inside DIR
    /// (which must exist) gets a self-signed stand-in. Off by default: only the --ssl-certs
    /// paths are generated; an app naming a missing certificate elsewhere is left out.
    #[arg(long, value_name = "DIR")]
    pub generate_certs_dir: Option<PathBuf>,
    /// Don't run `haproxy -c` on the new config.
    #[arg(long)]
    pub skip_validation: bool,
    /// If the config is invalid, don't try to find and leave out the offending apps.
    #[arg(long)]
    pub skip_config_cleanup: bool,
    /// Only print the configuration to stdout.
    #[arg(long, short = 'd')]
    pub dry: bool,
    /// Lowest service port auto-assigned to IP-per-task apps.
    #[arg(long, default_value_t = 10050)]
    pub min_serv_port_ip_per_task: i64,
    /// Highest service port auto-assigned to IP-per-task apps (0 and 0 disable assignment).
    #[arg(long, default_value_t = 10100)]
    pub max_serv_port_ip_per_task: i64,
    /// Maximum backoff in seconds between event-stream reconnects, and between retries of a
    /// pass whose fetch, write or reload failed.
    #[arg(long, default_value_t = 300)]
    pub max_backoff: u64,
    /// Logging.
    #[command(flatten)]
    pub log: LogFlags,
    /// Marathon's credentials and CA.
    #[command(flatten)]
    pub auth: AuthFlags,
}

/// Default of `--marathon-max-body-bytes`: 256 MiB, nine times a 10,000-app cluster.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 << 20;

/// The validated configuration of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the apps come from.
    pub source: SourceOptions,
    /// Options of the model stage.
    pub model: model::Options,
    /// Options of the render stage.
    pub render: render::Options,
    /// Where the config is written.
    pub output: Output,
    /// How a new config is checked.
    pub validation: Validation,
    /// How HAProxy picks up a new config.
    pub apply: Apply,
    /// Bounds and environment of `haproxy -c` and the reload command (process-wide).
    pub exec: exec::Limits,
    /// Live mode; `None`: one pass, then exit.
    pub live: Option<LiveOptions>,
    /// `--dry`: print the config of one pass instead of writing it.
    pub dry: bool,
}

/// At least one second: a zero interval or timeout would spin.
fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs.max(1))
}

/// A command line the original would refuse (the binary exits with status 2, as argparse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// One of the two per-task port bounds is zero.
    #[error(
        "either specify both --min-serv-port-ip-per-task and --max-serv-port-ip-per-task or \
         neither (set both to zero to disable auto assignment)"
    )]
    PortRangeHalf,
    /// The per-task port bounds are reversed.
    #[error(
        "cannot set --min-serv-port-ip-per-task to a higher value than \
         --max-serv-port-ip-per-task"
    )]
    PortRangeOrder,
    /// No `--group`.
    #[error("argument --group is required: please specify at least one group name")]
    NoGroup,
    /// `--log-level` is not one of Python's level names.
    #[error("argument --log-level: invalid choice: {0:?} (choose from {levels})", levels = LOG_LEVELS.join(", "))]
    LogLevel(String),
}

impl Cli {
    /// Whether the binary keeps running (SSE, polling or a watched file) instead of one pass.
    fn is_live(&self) -> bool {
        self.sse || self.poll_interval.is_some() || (self.watch && self.apps_file.is_some())
    }

    /// Checks the rules of the original and splits the flags into stage options.
    ///
    /// # Errors
    /// A usage message (the binary exits with status 2 on it, as argparse does).
    pub fn validate(self, env: impl Fn(&str) -> Option<String>) -> Result<Config, UsageError> {
        let (min, max) = (
            self.min_serv_port_ip_per_task,
            self.max_serv_port_ip_per_task,
        );
        if (min != 0) != (max != 0) {
            return Err(UsageError::PortRangeHalf);
        }
        if min > max {
            return Err(UsageError::PortRangeOrder);
        }
        if self.group.is_empty() {
            return Err(UsageError::NoGroup);
        }
        if !LOG_LEVELS.contains(&self.log.log_level.to_ascii_uppercase().as_str()) {
            return Err(UsageError::LogLevel(self.log.log_level));
        }
        let paths = Paths::new(&self.haproxy_config);
        let model = model::Options {
            strict_mode: self.strict_mode,
            health_check: self.health_check,
            ip_per_task_ports: (min != 0 && max != 0).then_some((min, max)),
            framework_name: env("FRAMEWORK_NAME"),
            leave_out_invalid: self.is_live(),
        };
        let render = render::Options {
            groups: self.group.clone(),
            bind_http_https: !self.dont_bind_http_https,
            ssl_certs: self.ssl_certs.clone(),
            haproxy_map: self.haproxy_map,
            haproxy_dir: paths.haproxy_dir.clone(),
            group_https_by_vhost: self.group_https_by_vhost,
        };
        Ok(Config {
            source: self.source(),
            model,
            render,
            output: Output {
                paths,
                map: self.haproxy_map,
                archive_versions: self.archive_versions,
            },
            validation: Validation {
                skip: self.skip_validation,
                cleanup: !self.skip_config_cleanup,
            },
            apply: self.apply(),
            exec: exec::Limits {
                check_timeout: secs(self.check_timeout),
                command_timeout: secs(self.command_timeout),
                extra_env: self.haproxy_env.clone(),
            },
            live: self.live(),
            dry: self.dry,
        })
    }

    fn source(&self) -> SourceOptions {
        let input = match &self.apps_file {
            Some(path) => Input::File(path.clone()),
            None => Input::Marathon(MarathonOptions {
                urls: self.marathon.clone(),
                auth: self.auth.auth(),
                ca_cert: self.auth.marathon_ca_cert.clone(),
                stall_timeout: secs(self.event_stall_timeout),
            }),
        };
        SourceOptions {
            input,
            max_body_bytes: self.marathon_max_body_bytes,
        }
    }

    /// `--command`, else managed HAProxy in live mode, else write only.
    fn apply(&self) -> Apply {
        match &self.command {
            Some(command) => Apply::Command(command.clone()),
            None if self.is_live() => Apply::Managed(Box::new(ManagedOptions {
                haproxy_bin: PathBuf::from(&self.haproxy_bin),
                run_dir: self.run_dir.clone(),
                drain_timeout: (self.drain_timeout > 0)
                    .then(|| Duration::from_secs(self.drain_timeout)),
                reload_interval: secs(self.reload_interval),
                max_reload_retries: Retries::from_flag(self.max_reload_retries),
                generate_certs_dir: self.generate_certs_dir.clone(),
            })),
            None => Apply::WriteOnly,
        }
    }

    fn live(&self) -> Option<LiveOptions> {
        let follow = match self.apps_file {
            Some(_) => self.watch || self.sse,
            None => self.sse,
        };
        self.is_live().then(|| LiveOptions {
            follow,
            poll_every: self.poll_interval.map(secs),
            resync_every: secs(self.resync_interval),
            max_backoff: secs(self.max_backoff),
            admin_addr: self.admin_addr.clone(),
            marathon_unreachable_after: Duration::from_secs(self.marathon_unreachable_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["marathon-lb"];
        argv.extend_from_slice(args);
        Ok(Cli::try_parse_from(argv)?.validate(|_| None)?)
    }

    #[test]
    fn original_flags_parse() {
        let c = parse(&[
            "-m",
            "http://a:8080",
            "http://b:8080",
            "--group",
            "external",
            "--group",
            "*",
            "-H",
            "--haproxy-config",
            "out/haproxy.cfg",
            "--max-reload-retries",
            "-1",
            "--log-level",
            "info",
        ])
        .unwrap();
        let Input::Marathon(marathon) = &c.source.input else {
            panic!("no apps file: Marathon")
        };
        assert_eq!(marathon.urls.len(), 2);
        assert!(c.live.is_none());
        assert!(matches!(c.apply, Apply::WriteOnly));
        assert_eq!(c.render.groups, ["external", "*"]);
        assert!(c.model.health_check);
        assert_eq!(c.render.haproxy_dir, "out");
        assert_eq!(c.model.ip_per_task_ports, Some((10050, 10100)));
    }

    #[test]
    fn usage_rules_of_the_original() {
        assert!(parse(&[]).unwrap_err().to_string().contains("--group"));
        assert!(parse(&["--group", "x", "--min-serv-port-ip-per-task", "0"]).is_err());
        assert!(parse(&[
            "--group",
            "x",
            "--min-serv-port-ip-per-task",
            "9",
            "--max-serv-port-ip-per-task",
            "8"
        ])
        .is_err());
        let off = parse(&[
            "--group",
            "x",
            "--min-serv-port-ip-per-task",
            "0",
            "--max-serv-port-ip-per-task",
            "0",
        ])
        .unwrap();
        assert_eq!(off.model.ip_per_task_ports, None);
    }

    #[test]
    fn apply_mode_follows_command_and_live_mode() {
        let command = parse(&["--group", "x", "--sse", "-c", "reload it"]).unwrap();
        assert_eq!(command.apply.command(), Some("reload it"));
        let managed = parse(&["--group", "x", "--sse", "--drain-timeout", "0"]).unwrap();
        let options = managed.apply.managed().unwrap();
        assert_eq!(options.drain_timeout, None);
        assert_eq!(options.max_reload_retries, Retries::Limited(10));
        assert_eq!(options.run_dir, PathBuf::from("/var/run/marathon-lb"));
        let once = parse(&["--group", "x", "--apps-file", "a.json"]).unwrap();
        assert!(matches!(once.apply, Apply::WriteOnly));
        assert!(once.live.is_none());
    }

    #[test]
    fn live_options_follow_the_source() {
        let file = parse(&["--group", "x", "--apps-file", "a.json", "--watch"]).unwrap();
        let live = file.live.unwrap();
        assert!(live.follow);
        assert_eq!(live.poll_every, None);
        // --watch needs an apps file; polling Marathon does not follow its event stream.
        let poll = parse(&["--group", "x", "--watch", "--poll-interval", "0"]).unwrap();
        let live = poll.live.unwrap();
        assert!(!live.follow);
        assert_eq!(live.poll_every, Some(Duration::from_secs(1)));
        assert!(parse(&["--group", "x", "--watch"]).unwrap().live.is_none());
    }

    #[test]
    fn output_paths_are_built_once_from_the_config_path() {
        let c = parse(&[
            "--group",
            "x",
            "--haproxy-config",
            "out/h.cfg",
            "--haproxy-map",
        ])
        .unwrap();
        assert_eq!(c.output.paths.config, PathBuf::from("out/h.cfg"));
        assert_eq!(c.output.paths.haproxy_dir, c.render.haproxy_dir);
        assert!(c.output.map && c.render.haproxy_map);
        assert!(c.validation.cleanup && !c.validation.skip);
    }
}
