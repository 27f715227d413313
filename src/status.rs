//! The state the reconcile loop publishes after every pass: what is served, what was left
//! out and why, the recent applies, and what is known about Marathon.
//!
//! Data flow position: written by the loop (one `watch` channel, see
//! [`crate::reconcile::Reconciler`]), read by the admin server (health, `/status`,
//! `/api/v1/state`, the dashboard) and the metrics. It imports neither, so neither imports
//! the other for it.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub mod applies;
pub mod certs;
pub mod services;

pub use applies::{summarize_ops, ApplyHow, ApplyRecord};
pub use services::{Described, Served, ServerInfo, ServiceInfo};

/// How many applies [`Status::recent_applies`] keeps.
pub const RECENT_APPLIES: usize = 25;

/// An app left out of the config, as `GET /status`, the state API and the page list it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvalidApp {
    /// Marathon app id (`/group/app`; `apps[N]` for a list element without an id).
    pub app_id: String,
    /// The labels (or JSON fields) at fault, e.g. `HAPROXY_0_PORT`; may be empty.
    pub labels: Vec<String>,
    /// Why it was left out (serialized as `error`, the key `/status` has always used).
    #[serde(rename = "error")]
    pub reason: String,
    /// When it was first left out for this reason (Unix seconds in JSON).
    #[serde(serialize_with = "unix_seconds")]
    pub since: SystemTime,
}

/// Serializes a time as whole Unix seconds.
pub fn unix_seconds<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(unix(*time))
}

/// Whole seconds since the Unix epoch (0 before it).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The published state of the loop, read by the admin endpoints and metrics.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Passes run so far.
    pub passes: u64,
    /// Passes that changed what HAProxy serves (a reload, a command run or runtime ops).
    pub applies: u64,
    /// When a config was last written (or found unchanged and valid).
    pub last_success: Option<SystemTime>,
    /// When what HAProxy serves last changed.
    pub last_apply: Option<SystemTime>,
    /// The error of the last pass, if it failed.
    pub last_error: Option<String>,
    /// Whether the Marathon event stream is connected.
    pub marathon_connected: bool,
    /// Apps (or service ports) left out of the last config: for invalid labels or JSON,
    /// port conflicts, templates that do not format (live mode), or because HAProxy rejects
    /// them.
    pub invalid_apps: Vec<InvalidApp>,
    /// Server changes applied without a reload (managed mode; also counted in `applies`).
    pub runtime_applies: u64,
    /// When the last pass finished (successful or not).
    pub last_pass: Option<SystemTime>,
    /// What the last successful pass serves: its services (apps HAProxy rejected not
    /// counted), the stats page, the certificates ([`Served::described`]).
    pub served: Arc<Served>,
    /// The most recent applies, newest last (at most [`RECENT_APPLIES`]).
    pub recent_applies: VecDeque<ApplyRecord>,
    /// What is known about the app source.
    pub marathon: MarathonInfo,
    /// When a pass (or a manual reload) last failed.
    pub last_failure: Option<SystemTime>,
}

impl Status {
    /// Appends an apply to [`Status::recent_applies`]. Consecutive "nothing to do" passes
    /// are one entry (its time and count updated), so a quiet cluster does not push the
    /// real applies out.
    pub fn record_apply(&mut self, record: ApplyRecord) {
        if record.how == ApplyHow::Failed {
            self.last_failure = Some(record.at);
        }
        if let Some(last) = self.recent_applies.back_mut() {
            if last.how == ApplyHow::Nothing && record.how == ApplyHow::Nothing {
                last.repeated += 1;
                last.at = record.at;
                last.duration_ms = record.duration_ms;
                return;
            }
        }
        if self.recent_applies.len() == RECENT_APPLIES {
            self.recent_applies.pop_front();
        }
        self.recent_applies.push_back(record);
    }

    /// The last apply that changed something or failed.
    pub fn last_real_apply(&self) -> Option<&ApplyRecord> {
        self.recent_applies
            .iter()
            .rev()
            .find(|a| a.how != ApplyHow::Nothing)
    }
}

/// The app source as the loop last saw it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MarathonInfo {
    /// Where the last fetch came from (`Marathon http://host:8080` or the apps file).
    pub endpoint: Option<String>,
    /// When the event stream last delivered an event, and its type.
    #[serde(skip)]
    pub last_event: Option<(SystemTime, String)>,
    /// When the apps were last fetched successfully.
    #[serde(skip)]
    pub last_fetch: Option<SystemTime>,
    /// How long that fetch took, in milliseconds.
    pub last_fetch_ms: Option<u64>,
    /// How big the apps body was, in bytes.
    pub last_fetch_bytes: Option<u64>,
    /// Since when fetches fail (`None` while the last one worked).
    #[serde(skip)]
    pub failing_since: Option<SystemTime>,
    /// The last fetch error.
    pub last_fetch_error: Option<String>,
    /// Event stream (re)connections so far.
    pub stream_connects: u64,
    /// Since when the event stream is down (`None` while connected or not followed).
    #[serde(skip)]
    pub stream_down_since: Option<SystemTime>,
    /// Failed fetches so far.
    pub fetch_errors: u64,
    /// Events received so far, by type.
    pub events: std::collections::BTreeMap<String, u64>,
}

impl MarathonInfo {
    /// A successful fetch of `bytes` from `endpoint` that took `took`.
    pub fn fetched(&mut self, endpoint: &str, at: SystemTime, took: Duration, bytes: usize) {
        self.endpoint = Some(endpoint.to_owned());
        self.last_fetch = Some(at);
        self.last_fetch_ms = Some(took.as_millis() as u64);
        self.last_fetch_bytes = Some(bytes as u64);
        self.failing_since = None;
        self.last_fetch_error = None;
    }

    /// A failed fetch.
    pub fn fetch_failed(&mut self, at: SystemTime, error: &str) {
        self.failing_since.get_or_insert(at);
        self.fetch_errors += 1;
        self.last_fetch_error = Some(error.to_owned());
    }

    /// The event stream connected (`true`) or went down.
    pub fn stream(&mut self, connected: bool, at: SystemTime) {
        if connected {
            self.stream_connects += 1;
            self.stream_down_since = None;
        } else {
            self.stream_down_since.get_or_insert(at);
        }
    }

    /// An event of type `kind` arrived.
    pub fn event(&mut self, kind: &str, at: SystemTime) {
        self.last_event = Some((at, kind.to_owned()));
        *self.events.entry(kind.to_owned()).or_default() += 1;
    }

    /// How long the event stream has been down at `now`.
    pub fn stream_down_for(&self, now: SystemTime) -> Option<Duration> {
        self.stream_down_since
            .map(|since| now.duration_since(since).unwrap_or_default())
    }

    /// How long Marathon has been unreachable at `now` (`None` while reachable).
    pub fn unreachable_for(&self, now: SystemTime) -> Option<Duration> {
        self.failing_since
            .map(|since| now.duration_since(since).unwrap_or_default())
    }
}

/// A duration in whole milliseconds.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When this process started (first call wins; the binary calls it at start).
pub fn started() -> SystemTime {
    static STARTED: OnceLock<SystemTime> = OnceLock::new();
    *STARTED.get_or_init(SystemTime::now)
}

/// The `listen stats` section's port and stats URI (HAProxy's default `/haproxy?stats`
/// unless `stats uri` says otherwise) in `config`, for a link to HAProxy's own stats page.
pub fn stats_page(config: &str) -> Option<(u16, String)> {
    let mut lines = config
        .lines()
        .skip_while(|l| l.trim_end() != "listen stats");
    lines.next()?;
    let (mut port, mut uri, mut enabled) = (None, None, false);
    for line in lines.take_while(|l| l.is_empty() || l.starts_with(char::is_whitespace)) {
        let line = line.trim();
        if let Some(bind) = line.strip_prefix("bind ") {
            let addr = bind.split_whitespace().next().unwrap_or_default();
            port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
        } else if let Some(u) = line.strip_prefix("stats uri ") {
            uri = Some(u.trim().to_owned());
        } else if line == "stats enable" {
            enabled = true;
        }
    }
    let uri = uri.or_else(|| enabled.then(|| "/haproxy?stats".to_owned()))?;
    Some((port?, uri))
}

#[cfg(test)]
mod tests;
