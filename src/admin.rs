//! The controller's admin HTTP server (`--admin-addr`, default `127.0.0.1:9092`): health,
//! status, metrics and the signal endpoints HAProxy's Lua forwards `:9090/_mlb_signal/*` to.
//!
//! Data flow position: beside the reconcile loop. It only *reads* the loop's published
//! [`Status`] (a `watch` receiver) and the [`Metrics`], and only *writes* [`Trigger`]s into
//! the loop's channel, exactly as SIGHUP/SIGUSR1 do; it holds no state of its own.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the dashboard (see [`dashboard`]), updated in place from `/api/v1/state` |
//! | `GET /api/v1/state` | everything the dashboard shows, as JSON, see [`state::StateView`] |
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

mod dashboard;
mod guard;
mod health;
pub mod live;

use std::sync::Arc;
mod ops_metrics;
pub mod state;

pub use health::{Health, Rules, DEFAULT_MARATHON_UNREACHABLE_AFTER};
pub use live::{HaproxyLink, Live, LiveSource};

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
    /// See [`DEFAULT_FAILURE_GRACE`].
    pub failure_grace: Duration,
    /// See [`DEFAULT_MARATHON_UNREACHABLE_AFTER`] (`--marathon-unreachable-after`).
    pub marathon_unreachable_after: Duration,
    /// HAProxy's live state (managed mode), read when asked.
    pub live: Option<Arc<LiveSource>>,
    /// List the loop's left-out apps even when there are none (every live mode does).
    pub list_invalid_apps: bool,
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
            failure_grace: DEFAULT_FAILURE_GRACE,
            marathon_unreachable_after: DEFAULT_MARATHON_UNREACHABLE_AFTER,
            live: None,
            list_invalid_apps: false,
        }
    }

    /// Lists the loop's own left-out apps, an empty list included (live mode).
    #[must_use]
    pub fn listing_invalid_apps(mut self) -> Self {
        self.list_invalid_apps = true;
        self
    }

    /// Reads HAProxy's live state (server states, pids) from `link` when asked, each reading
    /// reused for `max_age`.
    #[must_use]
    pub fn with_haproxy(mut self, link: HaproxyLink, max_age: Duration) -> Self {
        self.live = Some(Arc::new(LiveSource::new(&link, max_age)));
        self
    }

    /// Sets how long Marathon may be unreachable before health says degraded.
    #[must_use]
    pub fn with_marathon_unreachable_after(mut self, after: Duration) -> Self {
        self.marathon_unreachable_after = after;
        self
    }

    /// The health rules' thresholds.
    pub fn rules(&self) -> Rules {
        Rules {
            failure_grace: self.failure_grace,
            marathon_unreachable_after: self.marathon_unreachable_after,
        }
    }

    /// HAProxy's live state, when it is read (managed mode).
    pub async fn live(&self) -> Option<Live> {
        match &self.live {
            Some(source) => Some(source.get().await),
            None => None,
        }
    }

    /// Sets how long failing passes stay healthy after the last success.
    #[must_use]
    pub fn with_failure_grace(mut self, grace: Duration) -> Self {
        self.failure_grace = grace;
        self
    }

    fn invalid_apps(&self) -> Option<Vec<InvalidApp>> {
        // The loop's list: always in live mode, else only when it left an app out.
        let status = self.status.borrow();
        let listed: Vec<InvalidApp> = status.invalid_apps.clone();
        (self.list_invalid_apps || !listed.is_empty()).then_some(listed)
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
            apps: status.served.described().services.len(),
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
        .route("/api/v1/state", get(state::get))
        .route("/assets/dashboard.js", get(dashboard::script))
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

async fn snapshot(state: &AdminState) -> (Status, Health) {
    let status = state.status.borrow().clone();
    let live = state.live().await;
    let health = Health::judge(&status, live.as_ref(), SystemTime::now(), &state.rules());
    (status, health)
}

async fn healthz(State(state): State<AdminState>) -> Response {
    let (_, health) = snapshot(&state).await;
    let code = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", health.describe())).into_response()
}

async fn status(State(state): State<AdminState>) -> Json<StatusView> {
    let (status, health) = snapshot(&state).await;
    Json(StatusView::new(&status, &health, state.invalid_apps()))
}

async fn metrics(State(state): State<AdminState>) -> Response {
    state.metrics.observe_status(&state.status.borrow().clone());
    if let Some(invalid) = state.invalid_apps() {
        state.metrics.set_invalid_apps(invalid.len());
    }
    let extra = ops_metrics::encode(&state.status.borrow().clone());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        ops_metrics::append(state.metrics.encode(), &extra),
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
    Html(dashboard::page(&state::view(&state).await))
}

#[cfg(test)]
mod tests;
