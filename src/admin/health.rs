//! The health rules of `/healthz`, the state API and the dashboard.
//!
//! - **starting** (`503`): no pass has succeeded yet.
//! - **failing** (`503`): passes have failed for longer than the failure grace.
//! - **degraded** (`200`, body `ok (degraded): <reasons>`), for each of:
//!   the last pass (fetch, render, check, apply) failed, within the grace;
//!   apps are left out of the config (each named with its labels and reason);
//!   Marathon is unreachable (fetches failing, or the event stream down) for longer than
//!   `--marathon-unreachable-after`;
//!   a served backend has no server up (HAProxy's own `BACKEND` status is not UP).
//! - **ok** (`200`, body `ok`): none of these.
//!
//! Degraded stays `200`: the load balancer still serves every other app, and a health check
//! pulling it out of rotation for one app's dead task would hurt the others.

use std::time::{Duration, SystemTime};

use super::live::Live;
use crate::haproxy::stats::state_word;
use crate::status::Status;

/// The default `--marathon-unreachable-after`.
pub const DEFAULT_MARATHON_UNREACHABLE_AFTER: Duration = Duration::from_secs(60);

/// The thresholds of the rules.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How long after the last successful pass failing passes are degraded, not failing.
    pub failure_grace: Duration,
    /// How long Marathon may be unreachable before health says so.
    pub marathon_unreachable_after: Duration,
}

/// The health of the controller, as `GET /healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Nothing to report.
    Ok,
    /// Serving, with problems: each reason in words.
    Degraded {
        /// Why.
        reasons: Vec<String>,
    },
    /// No pass has succeeded yet.
    Starting {
        /// The last pass's error, if a pass has run.
        error: Option<String>,
    },
    /// Passes have been failing for longer than the grace.
    Failing {
        /// The last pass's error.
        error: String,
        /// Time since the last successful pass.
        since_success: Duration,
    },
}

impl Health {
    /// Judges `status` at `now` with a failure grace of `grace` and no live HAProxy state.
    pub fn of(status: &Status, now: SystemTime, grace: Duration) -> Health {
        let rules = Rules {
            failure_grace: grace,
            marathon_unreachable_after: DEFAULT_MARATHON_UNREACHABLE_AFTER,
        };
        Self::judge(status, None, now, &rules)
    }

    /// Judges `status` and HAProxy's `live` state at `now`. Pure: the caller passes the clock.
    pub fn judge(status: &Status, live: Option<&Live>, now: SystemTime, rules: &Rules) -> Health {
        let Some(success) = status.last_success else {
            return Health::Starting {
                error: status.last_error.clone(),
            };
        };
        // A clock stepped backwards makes the success look "in the future": treat it as now.
        let since_success = now.duration_since(success).unwrap_or_default();
        let mut reasons = Vec::new();
        if let Some(error) = &status.last_error {
            if since_success > rules.failure_grace {
                return Health::Failing {
                    error: error.clone(),
                    since_success,
                };
            }
            reasons.push(format!(
                "last pass failed, last success {}s ago: {error}",
                since_success.as_secs()
            ));
        }
        if !status.invalid_apps.is_empty() {
            let named: Vec<String> = status
                .invalid_apps
                .iter()
                .take(3)
                .map(|a| match a.labels.is_empty() {
                    true => format!("{} ({})", a.app_id, a.reason),
                    false => format!("{} [{}] ({})", a.app_id, a.labels.join(", "), a.reason),
                })
                .collect();
            let more = status.invalid_apps.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            reasons.push(format!(
                "{} app(s) left out: {}{more}",
                status.invalid_apps.len(),
                named.join(", ")
            ));
        }
        reasons.extend(marathon_reasons(
            status,
            now,
            rules.marathon_unreachable_after,
        ));
        if let Some(live) = live.filter(|l| l.stats.is_some()) {
            let served = &status.served.described().services;
            for s in served.iter().filter(|s| !s.servers.is_empty()) {
                if let Some(row) = live.backend(&s.backend) {
                    if state_word(&row.status) != "UP" {
                        reasons.push(format!(
                            "backend {} ({}) has no server up",
                            s.backend, s.app_id
                        ));
                    }
                }
            }
        }
        if reasons.is_empty() {
            Health::Ok
        } else {
            Health::Degraded { reasons }
        }
    }

    /// Whether `/healthz` answers `200`.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Ok | Health::Degraded { .. })
    }

    /// `ok`, `degraded`, `starting` or `failing`.
    pub fn word(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded { .. } => "degraded",
            Health::Starting { .. } => "starting",
            Health::Failing { .. } => "failing",
        }
    }

    /// Each reason in words (none when ok).
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Health::Ok => Vec::new(),
            Health::Degraded { reasons } => reasons.clone(),
            Health::Starting { .. } | Health::Failing { .. } => vec![self.describe()],
        }
    }

    /// A one-line description; starts with `ok` exactly when healthy.
    pub fn describe(&self) -> String {
        match self {
            Health::Ok => "ok".to_owned(),
            Health::Degraded { reasons } => format!("ok (degraded): {}", reasons.join("; ")),
            Health::Starting { error: None } => "starting: no pass has succeeded yet".to_owned(),
            Health::Starting { error: Some(e) } => {
                format!("starting: no pass has succeeded yet; last error: {e}")
            }
            Health::Failing {
                error,
                since_success,
            } => format!(
                "failing: last success {}s ago; last error: {error}",
                since_success.as_secs()
            ),
        }
    }
}

/// Marathon unreachable beyond `after`: fetches failing, or the event stream down.
fn marathon_reasons(status: &Status, now: SystemTime, after: Duration) -> Vec<String> {
    let m = &status.marathon;
    let mut reasons = Vec::new();
    if let Some(down) = m.unreachable_for(now).filter(|d| *d > after) {
        reasons.push(format!(
            "Marathon unreachable for {}s: {}",
            down.as_secs(),
            m.last_fetch_error.as_deref().unwrap_or("fetch failed")
        ));
    }
    if let Some(down) = m.stream_down_for(now).filter(|d| *d > after) {
        reasons.push(format!(
            "Marathon event stream down for {}s",
            down.as_secs()
        ));
    }
    reasons
}
