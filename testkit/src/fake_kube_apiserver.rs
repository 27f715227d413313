//! A stand-in Kubernetes API server over real TLS, for the end-to-end test of the
//! `kubeapi-proxy` scenario (kubectl -> HAProxy -> API server) and for manual runs.
//!
//! Not part of the data flow: it plays the API server behind the `kubeapi-proxy` app's
//! `server kube-apiserver ... ssl verify none` line. It speaks HTTP/1.1 over TLS (rustls,
//! a self-signed certificate for `localhost` and `127.0.0.1` made at start) on `127.0.0.1`
//! and serves just what the kubectl calls of the test need:
//!
//! - `GET /version`: the version object `kubectl version` reads;
//! - `GET /api`, `/apis`, `/api/v1`: minimal discovery;
//! - `GET /api/v1/namespaces/default/pods?watch=true` (and `/api/v1/watch/namespaces/default/pods`):
//!   a chunked stream of watch events, one `{"type":...,"object":...}` line each, that the
//!   test pushes with [`FakeKubeApiServer::push_event`]; it sends nothing while idle, the way
//!   a quiet watch does, so idle timeouts on the way are exercised;
//! - any request with `Connection: Upgrade` and an `Upgrade` header (what `kubectl exec` and
//!   `port-forward` send): `101 Switching Protocols`, then every byte is echoed back.
//!
//! Everything stops when the [`FakeKubeApiServer`] is dropped, open streams included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// What can fail while starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The self-signed certificate could not be generated.
    #[error("generating a self-signed certificate")]
    GenerateCertificate(#[source] rcgen::Error),
    /// rustls refused the certificate or the protocol set.
    #[error("setting up TLS")]
    ConfigureTls(#[source] rustls::Error),
    /// A PEM certificate could not be read.
    #[error("reading a PEM certificate")]
    ReadPem(#[source] rustls::pki_types::pem::Error),
    /// Binding the listening socket failed.
    #[error("binding {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The version object served at `/version` (what `kubectl version` prints as the server's).
pub const VERSION_JSON: &str = r#"{
  "major": "1",
  "minor": "32",
  "gitVersion": "v1.32.0-marathon-lb-standin",
  "gitCommit": "0000000000000000000000000000000000000000",
  "gitTreeState": "clean",
  "buildDate": "2026-01-01T00:00:00Z",
  "goVersion": "go1.23.0",
  "compiler": "gc",
  "platform": "linux/amd64"
}"#;

/// A self-signed certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate (`BEGIN CERTIFICATE`).
    pub cert_pem: String,
    /// The PKCS#8 private key (`BEGIN PRIVATE KEY`).
    pub key_pem: String,
}

impl SelfSigned {
    /// Generates a certificate valid for `names` (DNS names, or IP addresses as text).
    ///
    /// # Errors
    /// [`Error::GenerateCertificate`] when rcgen fails (e.g. an invalid name).
    pub fn generate(names: &[&str]) -> Result<Self> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified =
            rcgen::generate_simple_self_signed(names).map_err(Error::GenerateCertificate)?;
        Ok(Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.key_pair.serialize_pem(),
        })
    }

    /// Certificate and key in one PEM, the form HAProxy's `crt` takes.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// A request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, ...
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/default/pods?watch=true`.
    pub uri: String,
    /// Every header, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the handle and every connection.
struct Shared {
    /// Watch events as wire lines; every open watch stream holds a receiver.
    events: broadcast::Sender<Bytes>,
    /// Watch streams currently open.
    watchers: AtomicUsize,
    /// Upgraded (echoing) connections currently open.
    upgraded: AtomicUsize,
    /// Every request, in order.
    requests: Mutex<Vec<RecordedRequest>>,
    /// Changes (with an error) when the handle is dropped; upgraded connections, which
    /// outlive their HTTP connection task, stop on it.
    stopped: watch::Receiver<()>,
}

/// Locks a mutex, ignoring poisoning (a panicking test must not hide its real failure).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running stand-in API server; everything it serves stops when it is dropped.
pub struct FakeKubeApiServer {
    /// The bound address.
    addr: SocketAddr,
    /// Its certificate, for clients that want to verify it.
    tls: SelfSigned,
    /// State shared with the connections.
    shared: Arc<Shared>,
    /// Dropping it ends every connection task (they wait on `changed()`).
    _shutdown: watch::Sender<()>,
    /// The accept loop.
    server: JoinHandle<()>,
}

impl Drop for FakeKubeApiServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKubeApiServer {
    /// Starts the stand-in on `127.0.0.1:0`.
    ///
    /// # Errors
    /// If the certificate, TLS setup or bind fails.
    pub async fn start() -> Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the stand-in on `addr`.
    ///
    /// # Errors
    /// If the certificate, TLS setup or bind fails.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let tls = SelfSigned::generate(&["localhost", "127.0.0.1"])?;
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&tls)?));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let (shutdown, stopped) = watch::channel(());
        let shared = Arc::new(Shared {
            events: broadcast::channel(1024).0,
            watchers: AtomicUsize::new(0),
            upgraded: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            stopped: stopped.clone(),
        });
        let server = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), stopped));
        Ok(Self {
            addr,
            tls,
            shared,
            _shutdown: shutdown,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `https://127.0.0.1:4711`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The server certificate (PEM), to trust in clients.
    pub fn cert_pem(&self) -> &str {
        &self.tls.cert_pem
    }

    /// Sends one watch event (`{"type": kind, "object": object}` and a newline) to every
    /// open watch stream. Streams opened later don't see it.
    pub fn push_event(&self, kind: &str, object: serde_json::Value) {
        let mut line = serde_json::json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        // No receiver (no open watch) is not an error: the event just goes nowhere.
        let _ = self.shared.events.send(Bytes::from(line));
    }

    /// Pushes a `kind` event for a pod `name` at `resource_version`.
    pub fn push_pod(&self, kind: &str, name: &str, resource_version: u64) {
        self.push_event(kind, pod(name, resource_version));
    }

    /// Watch streams currently open.
    pub fn watchers(&self) -> usize {
        self.shared.watchers.load(Ordering::SeqCst)
    }

    /// Upgraded (echoing) connections currently open.
    pub fn upgraded(&self) -> usize {
        self.shared.upgraded.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits (up to 10 s) until at least `count` watch streams are open.
    ///
    /// # Panics
    /// When they don't open in time (a test helper).
    pub async fn wait_for_watchers(&self, count: usize) {
        for _ in 0..1000 {
            if self.watchers() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{count} watch stream(s) never opened ({} open)",
            self.watchers()
        );
    }
}

/// A minimal pod object for watch events.
pub fn pod(name: &str, resource_version: u64) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": resource_version.to_string(),
        },
        "status": {"phase": "Running"},
    })
}

/// A rustls client config that trusts exactly the certificates in `ca_pems` (PEM text).
///
/// # Errors
/// [`Error::ReadPem`] for unreadable PEM, [`Error::ConfigureTls`] when rustls refuses one.
pub fn client_config(ca_pems: &[&str]) -> Result<ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.map_err(Error::ReadPem)?)
                .map_err(Error::ConfigureTls)?;
        }
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(Error::ConfigureTls)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The server side: HTTP/1.1 only (ALPN), as the API server behind HAProxy sees it.
fn server_config(tls: &SelfSigned) -> Result<ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).map_err(Error::ReadPem)?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(Error::ReadPem)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(Error::ConfigureTls)?
            .with_no_client_auth()
            .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))
            .map_err(Error::ConfigureTls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until the listener fails or the handle is dropped.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stopped: watch::Receiver<()>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::warn!(%error, "stand-in API server: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut stopped = stopped.clone();
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = serve_connection(tcp, acceptor, shared) => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

/// TLS handshake, then HTTP/1.1 with upgrades on one connection.
async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "stand-in API server: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "stand-in API server: connection ended");
    }
}

/// The body type of every response.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Routes one request.
fn handle(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    lock(&shared.requests).push(RecordedRequest {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
    });
    if let Some(protocol) = upgrade_protocol(&req) {
        return upgrade(req, protocol, shared.clone());
    }
    let path = req.uri().path();
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match path {
        "/version" => json(StatusCode::OK, VERSION_JSON.to_owned()),
        "/api" => json(
            StatusCode::OK,
            r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#.into(),
        ),
        "/apis" => json(
            StatusCode::OK,
            r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#.into(),
        ),
        "/api/v1" => json(StatusCode::OK, API_V1.to_owned()),
        "/api/v1/watch/namespaces/default/pods" => watch_stream(shared.clone()),
        "/api/v1/namespaces/default/pods" if watch => watch_stream(shared.clone()),
        "/api/v1/namespaces/default/pods" => json(
            StatusCode::OK,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#
                .into(),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#
                .into(),
        ),
    }
}

/// The `v1` resources: only pods.
const API_V1: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list","watch"],"shortNames":["po"]}]}"#;

/// A complete JSON response.
fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Decrements a counter when dropped: tracks how many streams are open.
struct Open(Arc<Shared>, fn(&Shared) -> &AtomicUsize);

impl Open {
    fn new(shared: Arc<Shared>, counter: fn(&Shared) -> &AtomicUsize) -> Self {
        counter(&shared).fetch_add(1, Ordering::SeqCst);
        Self(shared, counter)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::SeqCst);
    }
}

/// A chunked response that carries every event pushed from now on, and nothing else.
fn watch_stream(shared: Arc<Shared>) -> Response<Body> {
    let events = shared.events.subscribe();
    let open = Open::new(shared, |s| &s.watchers);
    let stream = futures::stream::unfold((events, open), |(mut events, open)| async move {
        loop {
            match events.recv().await {
                Ok(line) => return Some((Ok::<_, Infallible>(Frame::data(line)), (events, open))),
                // A slow reader missed events; a real watch would end with "410 Gone".
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The protocol asked for when `req` is an upgrade request (`Connection: upgrade` and
/// an `Upgrade` header).
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// Answers `101 Switching Protocols` and echoes the upgraded connection.
fn upgrade(req: Request<Incoming>, protocol: HeaderValue, shared: Arc<Shared>) -> Response<Body> {
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "stand-in API server: upgrade failed");
                return;
            }
        };
        let mut stopped = shared.stopped.clone();
        let _open = Open::new(shared, |s| &s.upgraded);
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        // Ends when the client closes (an error just means it went away) or on shutdown.
        tokio::select! {
            _ = tokio::io::copy(&mut reader, &mut writer) => {}
            _ = stopped.changed() => {}
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, protocol);
    response
}

#[cfg(test)]
mod tests;
