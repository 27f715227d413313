//! `GET /api/v1/state`: what the load balancer serves and how it is doing, in one JSON
//! document (the dashboard renders it; the schema is in README, "State API").

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::live::Live;
use super::{AdminState, Health};
use crate::haproxy::stats::state_word;
use crate::status::applies::format_time;
use crate::status::{ApplyRecord, InvalidApp, ServerInfo, ServiceInfo, Status};

/// The whole state.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    /// When this answer was made (RFC 3339).
    pub generated_at: String,
    /// The health rules' verdict.
    pub health: HealthView,
    /// The numbers of the summary cards.
    pub summary: Summary,
    /// The services served, each with its servers' live state.
    pub services: Vec<ServiceState>,
    /// Apps left out of the config, with labels, reason and since when.
    pub left_out: Vec<InvalidApp>,
    /// The recent applies, newest first.
    pub applies: Vec<ApplyRecord>,
    /// The app source.
    pub marathon: MarathonView,
    /// The supervised HAProxy.
    pub haproxy: HaproxyView,
    /// This process.
    pub marathon_lb: SelfView,
}

/// `health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    /// `ok`, `degraded`, `starting` or `failing`.
    pub status: &'static str,
    /// Whether `/healthz` answers 200.
    pub healthy: bool,
    /// Each reason in words.
    pub reasons: Vec<String>,
}

/// `summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Distinct apps served.
    pub apps: usize,
    /// Backends (service ports) served.
    pub backends: usize,
    /// Servers HAProxy reports UP (or unchecked).
    pub servers_up: usize,
    /// Servers HAProxy reports DOWN.
    pub servers_down: usize,
    /// Servers in maintenance or draining.
    pub servers_maint: usize,
    /// Apps left out.
    pub left_out: usize,
    /// Passes run.
    pub passes: u64,
    /// Applies (reloads, command runs, runtime ops).
    pub applies: u64,
    /// Of which through the Runtime API.
    pub runtime_applies: u64,
    /// When what HAProxy serves last changed.
    pub last_apply: Option<String>,
    /// The last apply that changed something or failed.
    pub last_apply_detail: Option<ApplyRecord>,
    /// The last pass's error.
    pub last_error: Option<String>,
}

/// One service and its servers.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    /// The service as configured.
    #[serde(flatten)]
    pub service: ServiceInfo,
    /// HAProxy's status of the backend (`UP`, `DOWN`), when read.
    pub backend_status: Option<String>,
    /// Current sessions of the backend.
    pub sessions: u64,
    /// Its servers.
    pub servers: Vec<ServerState>,
}

/// One server and its live state.
#[derive(Debug, Clone, Serialize)]
pub struct ServerState {
    /// The server as configured.
    #[serde(flatten)]
    pub server: ServerInfo,
    /// `UP`, `DOWN`, `MAINT`, `DRAIN`, `NOLB`, or `UNKNOWN` when HAProxy was not read.
    pub state: String,
    /// HAProxy's status text (`UP 1/3`, `no check`, ...).
    pub status: Option<String>,
    /// The last check's result code (`L4OK`, `L4CON`, `L7STS`...).
    pub check: Option<String>,
    /// The last check's result in words.
    pub check_desc: Option<String>,
    /// Current sessions.
    pub sessions: u64,
    /// Seconds since the state last changed.
    pub last_change_s: Option<u64>,
}

/// `marathon`.
#[derive(Debug, Clone, Serialize)]
pub struct MarathonView {
    /// Where the apps were last fetched from.
    pub endpoint: Option<String>,
    /// Whether the event stream is connected.
    pub connected: bool,
    /// Event stream (re)connections.
    pub stream_connects: u64,
    /// When the last event arrived.
    pub last_event_at: Option<String>,
    /// Its type (`status_update_event`...).
    pub last_event_type: Option<String>,
    /// When the apps were last fetched.
    pub last_fetch_at: Option<String>,
    /// How long that took, ms.
    pub last_fetch_ms: Option<u64>,
    /// The body's size, bytes.
    pub last_fetch_bytes: Option<u64>,
    /// The last fetch error, while fetches fail.
    pub last_fetch_error: Option<String>,
    /// Seconds Marathon has been unreachable, while it is.
    pub unreachable_s: Option<u64>,
}

/// `haproxy`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HaproxyView {
    /// Whether the live state was read (managed mode, HAProxy up).
    pub read: bool,
    /// HAProxy's version.
    pub version: Option<String>,
    /// The master's pid.
    pub master_pid: Option<u32>,
    /// Current workers' pids.
    pub workers: Vec<u32>,
    /// Old workers (left by reloads, finishing connections).
    pub old_workers: Vec<OldWorker>,
    /// Seconds since the master started.
    pub uptime_s: Option<u64>,
    /// The stats page's port and path (`listen stats`).
    pub stats_port: Option<u16>,
    /// The stats page's path.
    pub stats_uri: Option<String>,
    /// Why the live state could not be read.
    pub error: Option<String>,
}

/// An old worker.
#[derive(Debug, Clone, Serialize)]
pub struct OldWorker {
    /// Its pid.
    pub pid: u32,
    /// Seconds since it was forked.
    pub uptime_s: u64,
}

/// `marathon_lb`.
#[derive(Debug, Clone, Serialize)]
pub struct SelfView {
    /// Our version.
    pub version: &'static str,
    /// When we started.
    pub started_at: String,
    /// Seconds since.
    pub uptime_s: u64,
}

/// `GET /api/v1/state`.
pub async fn get(State(state): State<AdminState>) -> Json<StateView> {
    Json(view(&state).await)
}

/// The state now.
pub async fn view(state: &AdminState) -> StateView {
    let status = state.status.borrow().clone();
    let live = state.live().await;
    let now = SystemTime::now();
    let health = Health::judge(&status, live.as_ref(), now, &state.rules());
    build(&status, live.as_ref(), &health, now)
}

/// The state of `status` and `live` at `now`. Pure.
pub fn build(status: &Status, live: Option<&Live>, health: &Health, now: SystemTime) -> StateView {
    let services: Vec<ServiceState> = status
        .served
        .described()
        .services
        .iter()
        .map(|s| service_state(s, live))
        .collect();
    let servers = services.iter().flat_map(|s| &s.servers);
    let count = |states: &[&str]| {
        servers
            .clone()
            .filter(|s| states.contains(&s.state.as_str()))
            .count()
    };
    let mut apps: Vec<&str> = services.iter().map(|s| s.service.app_id.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    let summary = Summary {
        apps: apps.len(),
        backends: services.len(),
        servers_up: count(&["UP", "NOLB"]),
        servers_down: count(&["DOWN"]),
        servers_maint: count(&["MAINT", "DRAIN"]),
        left_out: status.invalid_apps.len(),
        passes: status.passes,
        applies: status.applies,
        runtime_applies: status.runtime_applies,
        last_apply: status.last_apply.map(format_time),
        last_apply_detail: status.last_real_apply().cloned(),
        last_error: status.last_error.clone(),
    };
    StateView {
        generated_at: format_time(now),
        health: HealthView {
            status: health.word(),
            healthy: health.is_healthy(),
            reasons: health.reasons(),
        },
        summary,
        services,
        left_out: status.invalid_apps.clone(),
        applies: status.recent_applies.iter().rev().cloned().collect(),
        marathon: marathon_view(status, now),
        haproxy: haproxy_view(status, live),
        marathon_lb: SelfView {
            version: env!("CARGO_PKG_VERSION"),
            started_at: format_time(crate::status::started()),
            uptime_s: secs(
                now.duration_since(crate::status::started())
                    .unwrap_or_default(),
            ),
        },
    }
}

fn service_state(s: &ServiceInfo, live: Option<&Live>) -> ServiceState {
    let backend = live.and_then(|l| l.backend(&s.backend));
    ServiceState {
        service: s.clone(),
        backend_status: backend.map(|b| b.status.clone()),
        sessions: backend.map_or(0, |b| b.sessions),
        servers: s
            .servers
            .iter()
            .map(|server| {
                let row = live.and_then(|l| l.server(&s.backend, &server.name));
                ServerState {
                    server: server.clone(),
                    state: row.map_or("UNKNOWN", |r| state_word(&r.status)).to_owned(),
                    status: row.map(|r| r.status.clone()),
                    check: row.and_then(|r| r.check_status.clone()),
                    check_desc: row.and_then(|r| r.check_desc.clone()),
                    sessions: row.map_or(0, |r| r.sessions),
                    last_change_s: row.and_then(|r| r.last_change_s),
                }
            })
            .collect(),
    }
}

fn marathon_view(status: &Status, now: SystemTime) -> MarathonView {
    let m = &status.marathon;
    MarathonView {
        endpoint: m.endpoint.clone(),
        connected: status.marathon_connected,
        stream_connects: m.stream_connects,
        last_event_at: m.last_event.as_ref().map(|(at, _)| format_time(*at)),
        last_event_type: m.last_event.as_ref().map(|(_, kind)| kind.clone()),
        last_fetch_at: m.last_fetch.map(format_time),
        last_fetch_ms: m.last_fetch_ms,
        last_fetch_bytes: m.last_fetch_bytes,
        last_fetch_error: m.last_fetch_error.clone(),
        unreachable_s: m.unreachable_for(now).map(secs),
    }
}

fn haproxy_view(status: &Status, live: Option<&Live>) -> HaproxyView {
    let mut view = HaproxyView {
        stats_port: status.served.described().stats_page.as_ref().map(|p| p.0),
        stats_uri: (status.served.described().stats_page.as_ref()).map(|p| p.1.clone()),
        ..HaproxyView::default()
    };
    let Some(live) = live else {
        return view;
    };
    view.read = live.stats.is_some();
    view.error = live.error.clone();
    if let Some(proc) = &live.proc {
        view.version = Some(proc.master.version.clone());
        view.master_pid = Some(proc.master.pid);
        view.uptime_s = Some(secs(proc.master.uptime));
        view.workers = proc.workers.iter().map(|w| w.pid).collect();
        view.old_workers = proc
            .old_workers
            .iter()
            .map(|w| OldWorker {
                pid: w.pid,
                uptime_s: secs(w.uptime),
            })
            .collect();
    }
    view
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}
