//! `marathon-lb zdd`'s command line: zdd.py's flags with their meanings and defaults, the
//! Marathon auth and log flags of the main command, and our additions (`--steps`,
//! `--max-5xx-rate`, `--no-rollback`).

use std::path::PathBuf;

use clap::Parser;

use crate::config::{AuthFlags, LogFlags};

/// Zero-downtime blue/green deployment of a Marathon app behind marathon-lb.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "marathon-lb zdd",
    bin_name = "marathon-lb zdd",
    about = "Zero-downtime deployment orchestrator for marathon-lb",
    disable_version_flag = true
)]
pub struct ZddArgs {
    /// [required] App JSON (the app's definition, with HAPROXY_DEPLOYMENT_GROUP and
    /// HAPROXY_DEPLOYMENT_ALT_PORT labels).
    #[arg(short = 'j', long = "json")]
    pub json: Option<PathBuf>,
    /// [required] Marathon endpoint, eg. -m http://marathon1:8080.
    #[arg(short = 'm', long = "marathon")]
    pub marathon: Option<String>,
    /// [required] Marathon-lb stats endpoint, eg. -l http://marathon-lb.marathon.mesos:9090.
    /// Repeat for several load balancers; every address a name resolves to is one too.
    #[arg(short = 'l', long = "marathon-lb")]
    pub marathon_lb: Vec<String>,
    /// Perform deployment un-prompted.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Perform a dry run: print the new app definition and the plan, change nothing.
    #[arg(short = 'd', long)]
    pub dry_run: bool,
    /// Delay (in seconds) between each successive deployment step.
    #[arg(short = 's', long, default_value_t = 5)]
    pub step_delay: u64,
    /// Maximum amount of time (in seconds) to wait for HAProxy to drain connections, and for
    /// each deployment or gate.
    #[arg(short = 'w', long, default_value_t = 300)]
    pub max_wait: u64,
    /// Initial number of app instances to launch. If this number is greater than total
    /// number of existing instances, then this will be overridden by the latter number.
    #[arg(short = 'i', long, default_value_t = 1)]
    pub initial_instances: u64,
    /// Grow the new app by --initial-instances per step instead of by half its size.
    #[arg(long)]
    pub linear_increase: bool,
    /// Resume from a previous deployment.
    #[arg(short = 'r', long)]
    pub resume: bool,
    /// Number of new instances to replace the existing instances. This is for having
    /// instances of both blue and green at the same time (a traffic split).
    #[arg(short = 'n', long, default_value_t = 0)]
    pub new_instances: u64,
    /// Change hybrid app entirely to current (new) app's instances.
    #[arg(short = 'c', long)]
    pub complete_cur: bool,
    /// Change hybrid app entirely to previous (old) app's instances.
    #[arg(short = 'p', long)]
    pub complete_prev: bool,
    /// An executable called before killing any tasks marked for draining at each step,
    /// with 3 arguments (in JSON): the old app definition, the list of tasks which will be
    /// killed, and the new app definition. Exit code 0 lets the deploy continue; any other
    /// stops it, and an operator must intervene.
    #[arg(long)]
    pub pre_kill_hook: Option<PathBuf>,
    /// Traffic split in hops, as percentages of the target instances, e.g. 10,50,100: the new
    /// app grows to each share in turn, each hop gated on the new tasks' health (and
    /// --max-5xx-rate) for --step-delay seconds before the next.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u8>,
    /// Gate: the highest share (0.0-1.0) of 5xx answers from the new servers (HAProxy's
    /// `hrsp_5xx` / `hrsp_*` per server, summed over the load balancers) a hop may show.
    #[arg(long)]
    pub max_5xx_rate: Option<f64>,
    /// Do not roll back automatically when a gate fails or --max-wait passes.
    #[arg(long)]
    pub no_rollback: bool,
    /// Logging (as the main command).
    #[command(flatten)]
    pub log: LogFlags,
    /// Marathon's credentials and CA (as the main command).
    #[command(flatten)]
    pub auth: AuthFlags,
}
