//! The controller's admin HTTP server (`--admin-addr`, default `127.0.0.1:9092`): health,
//! status, metrics and the signal endpoints HAProxy's Lua forwards `:9090/_mlb_signal/*` to.
//!
//! Data flow position: beside the reconcile loop. It only *reads* the loop's published
//! [`Status`] (a `watch` receiver) and the [`Metrics`], and only *writes* [`Trigger`]s into
//! the loop's channel, exactly as SIGHUP/SIGUSR1 do; it holds no state of its own.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | an HTML status page (plain table, no script) |
//! | `GET /healthz` | `200 ok` or `503` with the reason, see [`Health`] |
//! | `GET /status` | the [`Status`] as JSON, see [`StatusView`] |
//! | `GET /metrics` | [`Metrics::encode`] (OpenMetrics text) |
//! | `POST /signal/hup` | queues [`Trigger::Resync`] (like SIGHUP) |
//! | `POST /signal/usr1` | queues [`Trigger::ReloadExisting`] (like SIGUSR1) |
//!
//! The signal endpoints refuse cross-origin requests (a web page in a browser on the host,
//! a DNS name rebound to loopback): see [`guard`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::metrics::{self, Metrics};
use crate::reconcile::{Status, Trigger};

mod guard;

/// The default `--admin-addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9092";

/// How long after the last successful pass failing passes still count as healthy, by default.
/// The last good config keeps serving meanwhile; a Marathon blip should not fail health checks.
pub const DEFAULT_FAILURE_GRACE: Duration = Duration::from_secs(300);

/// Why the admin server stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound (in use, bad interface, no permission).
    #[error(
        "cannot bind the admin server to {addr} (--admin-addr): {error}; is another \
         marathon-lb using it? Give each instance its own --admin-addr, or --admin-addr off \
         to run without the admin server"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Accepting or serving connections failed.
    #[error("admin server failed: {0}")]
    Serve(std::io::Error),
}

/// An app left out of the config, as listed by `GET /status` and `/`.
pub use crate::reconcile::InvalidApp;

/// What the handlers share. Cheap to clone: receivers, an `Arc` and a sender.
#[derive(Clone)]
pub struct AdminState {
    /// The reconcile loop's published status: the source of `/healthz`, `/status` and `/`.
    pub status: watch::Receiver<Status>,
    /// The controller's metrics, encoded by `/metrics`.
    pub metrics: Metrics,
    /// The reconcile loop's trigger channel: the signal endpoints send into it.
    pub triggers: mpsc::UnboundedSender<Trigger>,
    /// Apps left out of the last config, when the loop publishes them (else not listed).
    pub invalid_apps: Option<watch::Receiver<Vec<InvalidApp>>>,
    /// See [`DEFAULT_FAILURE_GRACE`].
    pub failure_grace: Duration,
}

impl AdminState {
    /// State over the loop's status channel, the metrics and the loop's trigger sender.
    pub fn new(
        status: watch::Receiver<Status>,
        metrics: Metrics,
        triggers: mpsc::UnboundedSender<Trigger>,
    ) -> Self {
        Self {
            status,
            metrics,
            triggers,
            invalid_apps: None,
            failure_grace: DEFAULT_FAILURE_GRACE,
        }
    }

    /// Also lists (and counts, in `marathon_lb_invalid_apps`) the apps left out of the config.
    #[must_use]
    pub fn with_invalid_apps(mut self, invalid_apps: watch::Receiver<Vec<InvalidApp>>) -> Self {
        self.invalid_apps = Some(invalid_apps);
        self
    }

    /// Sets how long failing passes stay healthy after the last success.
    #[must_use]
    pub fn with_failure_grace(mut self, grace: Duration) -> Self {
        self.failure_grace = grace;
        self
    }

    fn invalid_apps(&self) -> Option<Vec<InvalidApp>> {
        if let Some(rx) = &self.invalid_apps {
            return Some(rx.borrow().clone());
        }
        // Otherwise the reconcile loop's own list, when it left any app out.
        let status = self.status.borrow();
        let listed: Vec<InvalidApp> = status.invalid_apps.clone();
        (!listed.is_empty()).then_some(listed)
    }
}

/// The health of the controller, as `GET /healthz` reports it.
///
/// Healthy (`200`, body starting `ok`) when the last pass succeeded, or when it failed but a
/// pass succeeded less than the failure grace ago (the config it applied is still serving).
/// Unhealthy (`503`) before any pass has succeeded, and when passes have been failing for
/// longer than the grace; the body then names the last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The last pass succeeded.
    Ok,
    /// The last pass failed, within the grace after the last success.
    Degraded {
        /// The last pass's error.
        error: String,
        /// Time since the last successful pass.
        since_success: Duration,
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
    /// Judges `status` at `now`. Pure: the caller passes the clock.
    pub fn of(status: &Status, now: SystemTime, grace: Duration) -> Health {
        let Some(success) = status.last_success else {
            return Health::Starting {
                error: status.last_error.clone(),
            };
        };
        let Some(error) = status.last_error.clone() else {
            return Health::Ok;
        };
        // A clock stepped backwards makes the success look "in the future": treat it as now.
        let since_success = now.duration_since(success).unwrap_or_default();
        if since_success <= grace {
            Health::Degraded {
                error,
                since_success,
            }
        } else {
            Health::Failing {
                error,
                since_success,
            }
        }
    }

    /// Whether `/healthz` answers `200`.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Ok | Health::Degraded { .. })
    }

    /// A one-line description; starts with `ok` exactly when healthy.
    pub fn describe(&self) -> String {
        match self {
            Health::Ok => "ok".to_owned(),
            Health::Degraded {
                error,
                since_success,
            } => format!(
                "ok (degraded): last pass failed, last success {}s ago: {error}",
                since_success.as_secs()
            ),
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

/// `GET /status`: the reconcile [`Status`] plus its health, times as RFC 3339 (UTC).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// [`Health::is_healthy`].
    pub healthy: bool,
    /// [`Health::describe`].
    pub health: String,
    /// Passes run so far.
    pub passes: u64,
    /// Passes that wrote a new config.
    pub applies: u64,
    /// When a pass last succeeded.
    pub last_success: Option<String>,
    /// When a new config was last written.
    pub last_apply: Option<String>,
    /// The last pass's error, `null` when it succeeded.
    pub last_error: Option<String>,
    /// Whether the Marathon event stream is connected.
    pub marathon_connected: bool,
    /// Load-balanced services in the last rendered config.
    pub apps: usize,
    /// Apps left out of the config; absent when the loop does not publish them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_apps: Option<Vec<InvalidApp>>,
}

impl StatusView {
    fn new(status: &Status, health: &Health, invalid_apps: Option<Vec<InvalidApp>>) -> Self {
        Self {
            healthy: health.is_healthy(),
            health: health.describe(),
            passes: status.passes,
            applies: status.applies,
            last_success: status.last_success.map(rfc3339),
            last_apply: status.last_apply.map(rfc3339),
            last_error: status.last_error.clone(),
            marathon_connected: status.marathon_connected,
            apps: status.apps,
            invalid_apps,
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The admin routes over `state`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .merge(
            Router::new()
                .route("/signal/hup", post(signal_hup))
                .route("/signal/usr1", post(signal_usr1))
                .route_layer(axum::middleware::from_fn(guard::same_origin_only)),
        )
        .with_state(state)
}

/// Binds `addr` for [`serve_on`]. The binary does this before anything else starts, so an
/// address taken (by another instance, say) is a start-up error, not a silent run without
/// an admin server whose signals would reach the other instance.
///
/// # Errors
/// [`Error::Bind`] when `addr` cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| Error::Bind { addr, error })
}

/// Binds `addr` and serves [`router`] until `shutdown` completes.
///
/// # Errors
/// [`Error::Bind`] when `addr` cannot be bound, [`Error::Serve`] when serving fails.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_on(bind(addr).await?, state, shutdown).await
}

/// Serves [`router`] on an already bound listener until `shutdown` completes (tests bind
/// `127.0.0.1:0` and read the port first).
///
/// # Errors
/// [`Error::Serve`] when serving fails.
pub async fn serve_on(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin server listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

fn snapshot(state: &AdminState) -> (Status, Health) {
    let status = state.status.borrow().clone();
    let health = Health::of(&status, SystemTime::now(), state.failure_grace);
    (status, health)
}

async fn healthz(State(state): State<AdminState>) -> Response {
    let (_, health) = snapshot(&state);
    let code = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", health.describe())).into_response()
}

async fn status(State(state): State<AdminState>) -> Json<StatusView> {
    let (status, health) = snapshot(&state);
    Json(StatusView::new(&status, &health, state.invalid_apps()))
}

async fn metrics(State(state): State<AdminState>) -> Response {
    state.metrics.observe_status(&state.status.borrow().clone());
    if let Some(invalid) = state.invalid_apps() {
        state.metrics.set_invalid_apps(invalid.len());
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn signal_hup(State(state): State<AdminState>) -> Response {
    signal(&state, Trigger::Resync, "SIGHUP", "resync")
}

async fn signal_usr1(State(state): State<AdminState>) -> Response {
    signal(
        &state,
        Trigger::ReloadExisting,
        "SIGUSR1",
        "reload of the existing config",
    )
}

fn signal(state: &AdminState, trigger: Trigger, name: &str, what: &str) -> Response {
    match state.triggers.send(trigger.clone()) {
        Ok(()) => {
            tracing::info!(?trigger, "{name} requested over the admin API");
            (StatusCode::OK, format!("queued a {what} ({name})\n")).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is not running\n",
        )
            .into_response(),
    }
}

async fn page(State(state): State<AdminState>) -> Html<String> {
    let (status, health) = snapshot(&state);
    Html(render_page(
        &StatusView::new(&status, &health, state.invalid_apps()),
        status.last_apply,
        SystemTime::now(),
    ))
}

/// The HTML status page: one table of the status, the invalid apps, links and two buttons.
fn render_page(view: &StatusView, last_apply: Option<SystemTime>, now: SystemTime) -> String {
    let or_never = |t: &Option<String>| t.clone().unwrap_or_else(|| "never".to_owned());
    let age = last_apply
        .and_then(|t| now.duration_since(t).ok())
        .map(|d| format!(" ({}s ago)", d.as_secs()))
        .unwrap_or_default();
    let rows = [
        ("health", view.health.clone()),
        ("passes", view.passes.to_string()),
        ("applies", view.applies.to_string()),
        ("last success", or_never(&view.last_success)),
        ("last apply", format!("{}{age}", or_never(&view.last_apply))),
        (
            "last error",
            view.last_error.clone().unwrap_or_else(|| "none".to_owned()),
        ),
        (
            "marathon connected",
            if view.marathon_connected { "yes" } else { "no" }.to_owned(),
        ),
        ("apps", view.apps.to_string()),
    ];
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>marathon-lb</title>\
         <style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:2px 8px;\
         text-align:left}table{border-collapse:collapse}</style></head><body>\n\
         <h1>marathon-lb</h1>\n<table>\n",
    );
    for (name, value) in rows {
        html.push_str(&format!(
            "<tr><th>{name}</th><td>{}</td></tr>\n",
            escape(&value)
        ));
    }
    html.push_str("</table>\n");
    if let Some(invalid) = &view.invalid_apps {
        html.push_str(&format!(
            "<h2>Invalid apps ({})</h2>\n<table>\n<tr><th>app</th><th>error</th></tr>\n",
            invalid.len()
        ));
        for app in invalid {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                escape(&app.app_id),
                escape(&app.reason)
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str(
        "<p><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/healthz\">/healthz</a></p>\n\
         <form method=\"post\" action=\"/signal/hup\"><button>Resync (SIGHUP)</button></form>\n\
         <form method=\"post\" action=\"/signal/usr1\">\
         <button>Reload existing config (SIGUSR1)</button></form>\n</body></html>\n",
    );
    html
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
