//! A scriptable fake Marathon over real HTTP, for tests, manual runs and benchmarks.
//!
//! Not part of the data flow: it stands in for Marathon on `127.0.0.1`. It serves
//! `GET /v2/apps` (a body set at runtime), `GET /v2/events` as a real
//! `text/event-stream` that the test pushes events and keep-alives into or cuts, can
//! answer every Marathon request with a chosen status ("down"), can require basic
//! auth, and can act as a DC/OS cluster: `POST /acs/api/v1/auth/login` verifies the
//! RS256 login JWT with the service account's public key and issues tokens that
//! Marathon routes then require (and that [`FakeMarathon::revoke_tokens`] invalidates).
//!
//! It also has Marathon's write API (module `write`): `POST /v2/apps`,
//! `GET`/`PUT`/`DELETE /v2/apps/{id}` (`?force=true`), `GET /v2/deployments` and
//! `POST /v2/tasks/delete?scale=true`. Apps written that way run real tasks (HTTP servers
//! on loopback answering their app id, module `task_server`), get health results after a
//! delay, and every change goes out on the event stream as Marathon's events
//! (`api_post_event`, `deployment_info`, `status_update_event`,
//! `health_status_changed_event`, `deployment_success`, `app_terminated_event`).
//! `GET /v2/apps` lists the body set with [`FakeMarathon::set_apps`] followed by them.
//!
//! Used by the integration tests and benches of marathon-lb and by `src/bin/fake-marathon.rs`.

mod diff;
mod store;
pub mod task_server;
mod write;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where DC/OS serves its login endpoint (not under the Marathon prefix).
pub const LOGIN_PATH: &str = "/acs/api/v1/auth/login";

/// How the fake is set up; build with `Default` and the setters.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Path prefix of the Marathon routes, e.g. `/service/marathon` (empty: none).
    pub prefix: String,
    /// Required basic credentials `(user, password)`.
    pub basic_auth: Option<(String, String)>,
    /// DC/OS mode: `(uid, PEM public key)` of the one service account that may log in;
    /// Marathon routes then require `Authorization: token=…`.
    pub dcos: Option<(String, String)>,
}

impl Options {
    /// Serves the Marathon routes under `prefix`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Requires these basic credentials.
    #[must_use]
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Acts as DC/OS for the service account `uid` with this PEM public key.
    #[must_use]
    pub fn dcos(mut self, uid: impl Into<String>, public_key_pem: impl Into<String>) -> Self {
        self.dcos = Some((uid.into(), public_key_pem.into()));
        self
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, e.g. `/v2/apps?embed=apps.tasks&…`.
    pub uri: String,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
}

/// State shared by the handlers and the test's handle.
#[derive(Default)]
struct Shared {
    /// Setup.
    options: Options,
    /// Body of `GET /v2/apps`.
    apps: Mutex<Bytes>,
    /// Number of `/v2/apps` requests that got past "down" and auth.
    apps_requests: AtomicUsize,
    /// Number of `/v2/events` streams opened.
    events_requests: AtomicUsize,
    /// Number of successful DC/OS logins.
    logins: AtomicUsize,
    /// Status forced on every Marathon request ("down"), if any.
    forced_status: Mutex<Option<StatusCode>>,
    /// One sender per open event stream; dropping them ends the streams.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
    /// DC/OS tokens currently valid.
    tokens: Mutex<HashSet<String>>,
    /// Counter for issued token names.
    issued: AtomicUsize,
    /// Every request, in order.
    requests: Mutex<Vec<RecordedRequest>>,
    /// Apps written through the write API, their tasks and deployments.
    store: Mutex<store::Store>,
    /// Held by each step of a deployment (see `write::converge`).
    converging: tokio::sync::Mutex<()>,
    /// Requests and bytes served per endpoint.
    served: Mutex<HashMap<Endpoint, Served>>,
    /// The apps of `apps` by id, when [`FakeMarathon::set_apps_with_events`] set it.
    index: Mutex<Option<Arc<HashMap<String, Value>>>>,
}

pub use diff::{Endpoint, Served};

/// Counts one response of `bytes` on `endpoint`.
fn count(shared: &Shared, endpoint: Endpoint, bytes: usize) {
    let mut served = lock(&shared.served);
    let entry = served.entry(endpoint).or_default();
    entry.requests += 1;
    entry.bytes += bytes as u64;
}

/// Sends a Marathon-shaped event (`eventType`, `timestamp` plus `extra`'s fields) to every
/// open stream.
fn broadcast(shared: &Shared, event_type: &str, extra: Value) {
    broadcast_all(shared, &[(event_type, extra)]);
}

/// Sends Marathon-shaped events in one write to every open stream, as Marathon's stream
/// carries events that happen together (a task's kill and its replacement's start).
fn broadcast_all(shared: &Shared, events: &[(&str, Value)]) {
    let mut text = String::new();
    for (event_type, extra) in events {
        let mut data = serde_json::json!({
            "eventType": event_type,
            "timestamp": "2024-01-01T00:00:00.000Z",
        });
        if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra.clone());
        }
        text.push_str(&format!("event: {event_type}\ndata: {data}\n\n"));
    }
    let bytes = Bytes::from(text);
    lock(&shared.subscribers).retain(|tx| tx.send(bytes.clone()).is_ok());
}

/// Locks a mutex, ignoring poisoning (a panicking test must not hide its real failure).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Marathon; stops accepting connections when dropped.
pub struct FakeMarathon {
    /// The bound address.
    addr: SocketAddr,
    /// State shared with the handlers.
    shared: Arc<Shared>,
    /// The accept loop.
    server: JoinHandle<()>,
}

impl Drop for FakeMarathon {
    fn drop(&mut self) {
        self.server.abort();
        self.cut_streams();
    }
}

impl FakeMarathon {
    /// Starts a fake with these options on `127.0.0.1:0`.
    ///
    /// # Errors
    /// If binding fails.
    pub async fn start(options: Options) -> std::io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts a fake on `addr`.
    ///
    /// # Errors
    /// If binding fails.
    pub async fn bind(addr: SocketAddr, options: Options) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            apps: Mutex::new(Bytes::from_static(b"{\"apps\":[]}")),
            ..Shared::default()
        });
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake Marathon stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Marathon base URL, prefix included, e.g. `http://127.0.0.1:4711/service/marathon`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.options.prefix)
    }

    /// The DC/OS login endpoint URL.
    pub fn login_url(&self) -> String {
        format!("http://{}{LOGIN_PATH}", self.addr)
    }

    /// Sets the body of `GET /v2/apps`.
    pub fn set_apps(&self, body: impl Into<Bytes>) {
        *lock(&self.shared.apps) = body.into();
        *lock(&self.shared.index) = None;
    }

    /// Sets the body of `GET /v2/apps` and then sends the events Marathon would for the
    /// change (tasks started, changed or gone, health changed, apps created, changed or
    /// deleted). Returns how many events went out.
    pub fn set_apps_with_events(&self, body: impl Into<Bytes>) -> usize {
        diff::set_with_events(&self.shared, body.into())
    }

    /// [`FakeMarathon::set_apps_with_events`] for a big listing whose change the caller knows:
    /// `old` and `new` are `/v2/apps` bodies holding only the apps that changed, as they were
    /// and as they are now (an app only in `new` is new, one only in `old` is gone),
    /// and `body` is the whole new listing, the same apps changed. The events and the
    /// `GET /v2/apps/{id}` answers come from the small bodies, so a step costs what the change
    /// costs: diffing the whole listing parses it three times (seconds at 10k apps x 10 tasks).
    /// Returns how many events went out.
    pub fn change_apps_with_events(&self, body: impl Into<Bytes>, old: &[u8], new: &[u8]) -> usize {
        diff::change_with_events(&self.shared, body.into(), old, new)
    }

    /// Requests and response bytes served on `endpoint` so far.
    pub fn served(&self, endpoint: Endpoint) -> Served {
        lock(&self.shared.served)
            .get(&endpoint)
            .copied()
            .unwrap_or_default()
    }

    /// Answers every Marathon request with `status` (e.g. 503), or normally with `None`.
    pub fn force_status(&self, status: Option<StatusCode>) {
        *lock(&self.shared.forced_status) = status;
    }

    /// Sends `event: <event_type>` with `data` (one line of JSON) to every open stream.
    pub fn push_event(&self, event_type: &str, data: &str) {
        self.push_raw(format!("event: {event_type}\ndata: {data}\n\n"));
    }

    /// Sends a Marathon-shaped event `{"eventType": …, "timestamp": …}` plus `extra`
    /// fields (a JSON object) to every open stream.
    pub fn push_marathon_event(&self, event_type: &str, extra: serde_json::Value) {
        broadcast(&self.shared, event_type, extra);
    }

    /// Time from a written app's task start to its first health result (default 300 ms).
    pub fn set_health_delay(&self, delay: Duration) {
        lock(&self.shared.store).health_delay = delay;
    }

    /// How long tasks started from now on take to answer a request (default: no delay).
    pub fn set_task_delay(&self, delay: Duration) {
        lock(&self.shared.store).task_delay = delay;
    }

    /// Makes the tasks of written app `app_id` report failing (`true`) or passing health
    /// from their next result on; an app failing health keeps its deployment open.
    pub fn fail_health(&self, app_id: &str, failing: bool) {
        let id = store::normalise_id(app_id);
        let mut store = lock(&self.shared.store);
        if failing {
            store.unhealthy.insert(id);
        } else {
            store.unhealthy.remove(&id);
        }
    }

    /// Makes the tasks of written app `app_id` started from now on answer every second
    /// request with a `500` (they still pass health checks).
    pub fn fail_requests(&self, app_id: &str) {
        lock(&self.shared.store)
            .flaky
            .insert(store::normalise_id(app_id));
    }

    /// A written app as `GET /v2/apps/{id}` gives it (with `tasks` and `deployments`).
    pub fn app(&self, app_id: &str) -> Option<serde_json::Value> {
        lock(&self.shared.store).app_json(&store::normalise_id(app_id))
    }

    /// Ids of the written apps.
    pub fn app_ids(&self) -> Vec<String> {
        lock(&self.shared.store).apps.keys().cloned().collect()
    }

    /// Number of deployments in progress.
    pub fn deployments(&self) -> usize {
        lock(&self.shared.store).deployments.len()
    }

    /// Requests answered by the tasks of written app `app_id` (tasks still running).
    pub fn task_hits(&self, app_id: &str) -> u64 {
        let store = lock(&self.shared.store);
        store
            .apps
            .get(&store::normalise_id(app_id))
            .map_or(0, |a| a.tasks.iter().map(|t| t.server.hits()).sum())
    }

    /// Sends a keep-alive comment line to every open stream.
    pub fn keep_alive(&self) {
        self.push_raw(":\n");
    }

    /// Sends raw bytes to every open stream; forgets streams whose client went away.
    pub fn push_raw(&self, bytes: impl Into<Bytes>) {
        let bytes = bytes.into();
        lock(&self.shared.subscribers).retain(|tx| tx.send(bytes.clone()).is_ok());
    }

    /// Ends every open event stream (the client sees the server close it).
    pub fn cut_streams(&self) {
        lock(&self.shared.subscribers).clear();
    }

    /// Invalidates every DC/OS token issued so far.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Number of open event streams.
    pub fn subscribers(&self) -> usize {
        lock(&self.shared.subscribers)
            .iter()
            .filter(|tx| !tx.is_closed())
            .count()
    }

    /// Number of `/v2/apps` requests served (past "down" and auth).
    pub fn apps_requests(&self) -> usize {
        self.shared.apps_requests.load(Ordering::SeqCst)
    }

    /// Number of event streams opened.
    pub fn events_requests(&self) -> usize {
        self.shared.events_requests.load(Ordering::SeqCst)
    }

    /// Number of successful DC/OS logins.
    pub fn logins(&self) -> usize {
        self.shared.logins.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until `count` event streams are open.
    ///
    /// # Panics
    /// After 5 s, so a test whose client never connects fails fast and says why.
    pub async fn wait_for_subscribers(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.subscribers() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fake Marathon: expected {count} event streams, have {}",
                self.subscribers()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The routes: Marathon's under the prefix, the DC/OS login at the root.
fn router(shared: Arc<Shared>) -> Router {
    let marathon = Router::new()
        .route("/v2/apps", get(apps).post(write::post_app))
        .route(
            "/v2/apps/{*id}",
            get(write::get_app)
                .put(write::put_app)
                .delete(write::delete_app),
        )
        .route("/v2/deployments", get(write::deployments))
        .route("/v2/tasks/delete", post(write::delete_tasks))
        .route("/v2/events", get(events))
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate));
    let prefix = shared.options.prefix.trim_end_matches('/');
    let marathon = if prefix.is_empty() {
        marathon
    } else {
        Router::new().nest(prefix, marathon)
    };
    marathon
        .route(LOGIN_PATH, post(login))
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// Records every request.
async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let uri = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), |pq| pq.to_string());
    lock(&shared.requests).push(RecordedRequest {
        method: request.method().to_string(),
        uri,
        accept,
    });
    next.run(request).await
}

/// Applies "down" and authentication to the Marathon routes.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(status) = *lock(&shared.forced_status) {
        return (status, "fake Marathon is down").into_response();
    }
    if !authorized(&shared, request.headers()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"Mesosphere Marathon\"",
            )],
            "unauthorized",
        )
            .into_response();
    }
    next.run(request).await
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some((user, password)) = &shared.options.basic_auth {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if given != Some(format!("Basic {encoded}").as_str()) {
            return false;
        }
    }
    if shared.options.dcos.is_some() {
        let token = given.and_then(|v| v.strip_prefix("token="));
        if !token.is_some_and(|t| lock(&shared.tokens).contains(t)) {
            return false;
        }
    }
    true
}

async fn apps(State(shared): State<Arc<Shared>>) -> Response {
    shared.apps_requests.fetch_add(1, Ordering::SeqCst);
    let body = lock(&shared.apps).clone();
    let written = lock(&shared.store).apps_json();
    if written.is_empty() {
        count(&shared, Endpoint::Apps, body.len());
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    // The body set by the test first, then the written apps.
    let mut listed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|mut v| v.get_mut("apps").map(Value::take))
        .and_then(|v| match v {
            Value::Array(apps) => Some(apps),
            _ => None,
        })
        .unwrap_or_default();
    listed.extend(written);
    let body = serde_json::json!({ "apps": listed }).to_string();
    count(&shared, Endpoint::Apps, body.len());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn events(State(shared): State<Arc<Shared>>) -> Response {
    shared.events_requests.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = mpsc::unbounded_channel();
    // Marathon greets each subscriber like this; clients must ignore it.
    let attached = "event: event_stream_attached\ndata: {\"remoteAddress\":\"127.0.0.1\",\
        \"eventType\":\"event_stream_attached\",\"timestamp\":\"2024-01-01T00:00:00.000Z\"}\n\n";
    // The receiver is alive right here, so this send cannot fail.
    let _ = tx.send(Bytes::from_static(attached.as_bytes()));
    lock(&shared.subscribers).push(tx);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The body DC/OS expects at its login endpoint.
#[derive(serde::Deserialize)]
struct LoginRequest {
    uid: String,
    token: String,
}

/// The claims of the login assertion.
#[derive(serde::Deserialize)]
struct LoginClaims {
    uid: String,
}

async fn login(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some((uid, public_key)) = &shared.options.dcos else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(request) = serde_json::from_slice::<LoginRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad login body").into_response();
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad public key").into_response();
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<LoginClaims>(&request.token, &key, &validation);
    match claims {
        Ok(data) if data.claims.uid == *uid && request.uid == *uid => {
            let n = shared.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("fake-dcos-token-{n}");
            lock(&shared.tokens).insert(token.clone());
            shared.logins.fetch_add(1, Ordering::SeqCst);
            Json(serde_json::json!({ "token": token })).into_response()
        }
        _ => (StatusCode::UNAUTHORIZED, "invalid login token").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/dcos-test-key.pub.pem");

    #[tokio::test]
    async fn login_rejects_unsigned_tokens_and_marathon_requires_a_token() {
        let fake = FakeMarathon::start(Options::default().dcos("u", PUBLIC_KEY))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        // A well-formed JWT with claims {uid, exp} but an HS256 signature, not RS256.
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"uid": "u", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let login = http
            .post(fake.login_url())
            .json(&serde_json::json!({"uid": "u", "token": forged}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
        let apps = http
            .get(format!("{}/v2/apps", fake.url()))
            .header(header::AUTHORIZATION, "token=made-up")
            .send()
            .await
            .unwrap();
        assert_eq!(apps.status(), StatusCode::UNAUTHORIZED);
        assert_eq!((fake.logins(), fake.apps_requests()), (0, 0));
        assert_eq!(fake.requests().len(), 2);
    }
}
