//! The async Marathon REST client: host failover, auth, the apps listing and the
//! `/v2/events` stream.
//!
//! Data flow position: first stage. [`Client::apps_json`] returns the raw body of
//! `GET /v2/apps?embed=…` for `marathon::types` to parse; [`Client::events`] opens the
//! SSE stream that `watch` turns into resync triggers.
//!
//! Hosts come from `--marathon URL [URL...]`; each may carry a path prefix (DC/OS:
//! `https://leader.mesos/service/marathon`). A request starts on the host that last
//! worked and moves on to the next on a connect error, a timeout or a 5xx, wrapping
//! around. Userinfo in a host URL is stripped (and used as basic credentials when no
//! others are given), so URLs in errors and logs never carry secrets.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use super::auth::{self, Authenticator, Credentials};
use super::events::EventStream;
use super::hosts::{endpoint, parse_host, APPS_QUERY, EVENTS_QUERY};
use super::sse;

mod one_app;

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Client failures. Every variant names the URL involved; none holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `--marathon` host was given.
    #[error("no Marathon host configured")]
    NoHosts,
    /// A `--marathon` value is not an absolute http(s) URL.
    #[error("invalid Marathon URL {url}")]
    InvalidUrl {
        /// The value, with any userinfo masked.
        url: String,
    },
    /// The `--marathon-ca-cert` file could not be read.
    #[error("cannot read CA certificate {path}")]
    ReadCaCert {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `--marathon-ca-cert` file is not a PEM certificate.
    #[error("invalid CA certificate {path}")]
    InvalidCaCert {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client")]
    BuildHttp(#[source] reqwest::Error),
    /// Logging in or building credentials failed.
    #[error(transparent)]
    Auth(#[from] auth::Error),
    /// The request could not be sent or timed out (connect error, reset, timeout).
    #[error("request to {url} failed")]
    Request {
        /// The request URL.
        url: String,
        /// The transport error (URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// No response headers within the request timeout.
    #[error("request to {url} timed out after {after:?}")]
    Timeout {
        /// The request URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// Marathon answered with a non-success status (401 after any re-login).
    #[error("{url} answered with status {status}")]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
    },
    /// The response body could not be read.
    #[error("reading the response of {url} failed")]
    Body {
        /// The request URL.
        url: String,
        /// The transport error (URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// The apps body is larger than `--marathon-max-body-bytes`.
    #[error("the response of {url} is larger than {max_bytes} bytes (--marathon-max-body-bytes)")]
    TooLarge {
        /// The request URL.
        url: String,
        /// The cap.
        max_bytes: u64,
    },
    /// `/v2/events` answered with something other than `text/event-stream`.
    #[error("{url} is not an event stream (content-type {content_type:?})")]
    NotEventStream {
        /// The request URL.
        url: String,
        /// The content type received.
        content_type: String,
    },
    /// No bytes at all (keep-alives included) arrived on the event stream in time.
    #[error("event stream {url} stalled: no bytes for {after:?}")]
    Stalled {
        /// The stream URL.
        url: String,
        /// The stall timeout.
        after: Duration,
    },
    /// The event stream ended (the server closed it).
    #[error("event stream {url} was closed by the server")]
    StreamEnded {
        /// The stream URL.
        url: String,
    },
    /// Reading the event stream failed.
    #[error("reading event stream {url} failed")]
    StreamRead {
        /// The stream URL.
        url: String,
        /// The transport error (URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// The event stream is not valid SSE.
    #[error("decoding event stream {url} failed")]
    Decode {
        /// The stream URL.
        url: String,
        /// The decoder error.
        #[source]
        source: sse::Error,
    },
    /// Every host failed; the errors are in host order of the attempt.
    #[error("all {} Marathon hosts failed: {}", .0.len(), join(.0))]
    AllHostsFailed(Vec<Error>),
}

impl Error {
    /// Whether another host might do better: transport errors, timeouts and 5xx.
    pub fn is_failover(&self) -> bool {
        match self {
            Error::Request { .. } | Error::Timeout { .. } | Error::Body { .. } => true,
            Error::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// The HTTP status, if the failure was a status answer (the last one for
    /// [`Error::AllHostsFailed`]).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::AllHostsFailed(errors) => errors.last().and_then(Error::status),
            _ => None,
        }
    }

    /// This error and all its sources, joined with `": "` (for logs: a bare
    /// "request failed" says little, "…: tcp connect error: Connection refused" does).
    ///
    /// A certificate Marathon's TLS could not be verified with gets a hint: the original never
    /// verified it, so a DC/OS cluster with its own CA needs `--marathon-ca-cert` here.
    pub fn chain(&self) -> String {
        let shown = self.chain_plain();
        let untrusted = [
            "invalid peer certificate",
            "UnknownIssuer",
            "certificate verify failed",
        ];
        if untrusted.iter().any(|s| shown.contains(s)) {
            format!("{shown} ({TLS_HINT})")
        } else {
            shown
        }
    }

    /// [`Error::chain`] without the hint.
    fn chain_plain(&self) -> String {
        let mut shown = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(error) = source {
            shown.push_str(": ");
            shown.push_str(&error.to_string());
            source = error.source();
        }
        shown
    }
}

/// What to do when Marathon's certificate is not trusted.
pub const TLS_HINT: &str = "hint: Marathon's TLS certificate is not signed by a CA this host \
     trusts; pass the cluster's CA with --marathon-ca-cert, on DC/OS \
     --marathon-ca-cert /run/dcos/pki/CA/ca-bundle.crt";

fn join(errors: &[Error]) -> String {
    let shown: Vec<String> = errors.iter().map(Error::chain_plain).collect();
    shown.join("; ")
}

/// Settings for [`Client::new`]; build with [`ClientConfig::new`] and the `#[must_use]`
/// setters.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The `--marathon` URLs, in failover order.
    pub hosts: Vec<String>,
    /// `--auth-credentials` / `--dcos-auth-credentials`.
    pub credentials: Credentials,
    /// `--marathon-ca-cert`: an extra PEM CA to trust.
    pub ca_cert: Option<PathBuf>,
    /// TCP (+TLS) connect timeout per host.
    pub connect_timeout: Duration,
    /// Timeout of a whole apps request, and of the event stream's response headers.
    pub request_timeout: Duration,
    /// An event stream with no bytes at all for this long is treated as dead.
    pub stall_timeout: Duration,
    /// Largest apps body read (`--marathon-max-body-bytes`); a larger one is an error.
    pub max_body_bytes: u64,
}

impl ClientConfig {
    /// Defaults: no auth, connect 3 s, request 30 s, stall 120 s.
    pub fn new<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            hosts: hosts.into_iter().map(Into::into).collect(),
            credentials: Credentials::None,
            ca_cert: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(120),
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Trusts an extra PEM CA certificate.
    #[must_use]
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the largest apps body read.
    #[must_use]
    pub fn max_body_bytes(mut self, max_bytes: u64) -> Self {
        self.max_body_bytes = max_bytes;
        self
    }

    /// Sets the event stream stall timeout.
    #[must_use]
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}

/// A Marathon client shared by the reconcile loop and the watcher (wrap it in an `Arc`).
pub struct Client {
    /// The HTTP client (connection pool, TLS roots, connect timeout).
    http: reqwest::Client,
    /// Base URLs, each ending in `/`, without userinfo.
    hosts: Vec<Url>,
    /// Index of the host that last worked: where the next request starts.
    current: AtomicUsize,
    /// Produces the `Authorization` header.
    auth: Authenticator,
    /// See [`ClientConfig::request_timeout`].
    request_timeout: Duration,
    /// See [`ClientConfig::stall_timeout`].
    stall_timeout: Duration,
    /// See [`ClientConfig::max_body_bytes`].
    max_body_bytes: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self.hosts.iter().map(Url::as_str).collect();
        f.debug_struct("Client")
            .field("hosts", &hosts)
            .field("current", &self.current.load(Ordering::Relaxed))
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client. Does no network I/O (a DC/OS login happens on first use).
    ///
    /// # Errors
    /// [`Error::NoHosts`], [`Error::InvalidUrl`], [`Error::ReadCaCert`],
    /// [`Error::InvalidCaCert`] or [`Error::BuildHttp`].
    pub fn new(config: ClientConfig) -> Result<Self> {
        let mut credentials = config.credentials;
        let mut hosts = Vec::with_capacity(config.hosts.len());
        for raw in &config.hosts {
            let (url, userinfo) = parse_host(raw)?;
            if let (Credentials::None, Some(basic)) = (&credentials, userinfo) {
                credentials = Credentials::Basic(basic);
            }
            hosts.push(url);
        }
        if hosts.is_empty() {
            return Err(Error::NoHosts);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout);
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|source| Error::ReadCaCert {
                path: path.clone(),
                source,
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|source| Error::InvalidCaCert {
                    path: path.clone(),
                    source,
                })?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            http: builder.build().map_err(Error::BuildHttp)?,
            hosts,
            current: AtomicUsize::new(0),
            auth: Authenticator::new(credentials),
            request_timeout: config.request_timeout,
            stall_timeout: config.stall_timeout,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The configured base URLs (normalised: trailing `/`, no userinfo).
    pub fn hosts(&self) -> &[Url] {
        &self.hosts
    }

    /// The host the next request starts on (the one that last worked).
    pub fn current_host(&self) -> &Url {
        &self.hosts[self.current.load(Ordering::Relaxed) % self.hosts.len()]
    }

    /// `GET /v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness`,
    /// returning the raw JSON body.
    ///
    /// # Errors
    /// The failing host's error, or [`Error::AllHostsFailed`] when several were tried.
    pub async fn apps_json(&self) -> Result<Bytes> {
        let mut failures = Failures::default();
        for index in self.failover_order() {
            match self.apps_from(&self.hosts[index]).await {
                Ok(body) => return Ok(self.worked(index, body)),
                Err(error) => failures.record(&self.hosts[index], error)?,
            }
        }
        Err(failures.into_error())
    }

    /// Opens `GET /v2/events?event_type=…` (`Accept: text/event-stream`) on the current
    /// host, failing over like [`apps_json`](Self::apps_json). The stream yields decoded
    /// events and ends after its first error (stall, close, read or decode error).
    ///
    /// # Errors
    /// As for [`apps_json`](Self::apps_json), plus [`Error::NotEventStream`].
    pub async fn events(&self) -> Result<EventStream> {
        let mut failures = Failures::default();
        for index in self.failover_order() {
            match self.events_from(&self.hosts[index]).await {
                Ok(events) => return Ok(self.worked(index, events)),
                Err(error) => failures.record(&self.hosts[index], error)?,
            }
        }
        Err(failures.into_error())
    }

    /// Host indexes to try, starting with the one that last worked.
    fn failover_order(&self) -> impl Iterator<Item = usize> {
        let start = self.current.load(Ordering::Relaxed);
        let count = self.hosts.len();
        (0..count).map(move |offset| (start + offset) % count)
    }

    /// Makes `index` the host the next request starts on.
    fn worked<T>(&self, index: usize, value: T) -> T {
        if self.current.swap(index, Ordering::Relaxed) != index {
            tracing::info!(host = %self.hosts[index], "switched Marathon host");
        }
        value
    }

    /// One apps request to one host.
    async fn apps_from(&self, base: &Url) -> Result<Bytes> {
        let url = endpoint(base, "v2/apps", APPS_QUERY);
        let response = self
            .send(&url, |r| {
                r.header(ACCEPT, "application/json")
                    .timeout(self.request_timeout)
            })
            .await?;
        self.capped_body(response, &url).await
    }

    /// Reads a body of at most `max_body_bytes`: refused up front when `Content-Length` says
    /// it is larger, and as soon as the bytes read exceed the cap (a chunked body has no length).
    async fn capped_body(&self, mut response: Response, url: &Url) -> Result<Bytes> {
        let max_bytes = self.max_body_bytes;
        let too_large = || Error::TooLarge {
            url: url.to_string(),
            max_bytes,
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > max_bytes {
            return Err(too_large());
        }
        let read_failed = |source: reqwest::Error| Error::Body {
            url: url.to_string(),
            source: source.without_url(),
        };
        let mut body = bytes::BytesMut::with_capacity(announced as usize);
        while let Some(chunk) = response.chunk().await.map_err(read_failed)? {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// One event stream request to one host.
    async fn events_from(&self, base: &Url) -> Result<EventStream> {
        let url = endpoint(base, "v2/events", EVENTS_QUERY);
        let send = self.send(&url, |r| r.header(ACCEPT, "text/event-stream"));
        let response = tokio::time::timeout(self.request_timeout, send)
            .await
            .map_err(|_| Error::Timeout {
                url: url.to_string(),
                after: self.request_timeout,
            })??;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(Error::NotEventStream {
                url: url.to_string(),
                content_type,
            });
        }
        Ok(EventStream::decode(
            response.bytes_stream(),
            self.stall_timeout,
            url.to_string(),
        ))
    }

    /// Sends one authenticated request; on a 401 with renewable credentials, logs in
    /// again and retries once. Non-success statuses become [`Error::Status`].
    async fn send(
        &self,
        url: &Url,
        decorate: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut retried = false;
        loop {
            let auth = self.auth.header(&self.http).await?;
            let mut request = decorate(self.http.get(url.clone()));
            if let Some(header) = &auth {
                request = request.header(AUTHORIZATION, header.clone());
            }
            let response = request.send().await.map_err(|source| Error::Request {
                url: url.to_string(),
                source: source.without_url(),
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && self.auth.can_renew() && !retried {
                tracing::info!(%url, "Marathon answered 401, logging in again");
                if let Some(header) = &auth {
                    self.auth.reject(header).await;
                }
                retried = true;
                continue;
            }
            return Err(Error::Status {
                url: url.to_string(),
                status,
            });
        }
    }
}

/// Errors collected while failing over.
#[derive(Default)]
struct Failures(Vec<Error>);

impl Failures {
    /// Keeps a failover error and logs it; hands any other error back to stop trying.
    fn record(&mut self, host: &Url, error: Error) -> Result<()> {
        if !error.is_failover() {
            return Err(error);
        }
        tracing::warn!(%host, error = %error.chain(), "Marathon host failed, trying the next");
        self.0.push(error);
        Ok(())
    }

    /// The error to report once every host failed.
    fn into_error(mut self) -> Error {
        match self.0.len() {
            1 => self.0.remove(0),
            _ => Error::AllHostsFailed(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth_unless_credentials_given() {
        let client = Client::new(ClientConfig::new(["http://u:topsecret@m:8080"])).unwrap();
        assert_eq!(client.hosts()[0].as_str(), "http://m:8080/");
        let shown = format!("{client:?}");
        assert!(
            shown.contains("Basic") && !shown.contains("topsecret"),
            "{shown}"
        );
    }

    #[test]
    fn failover_classification() {
        let status = |code: u16| Error::Status {
            url: "u".into(),
            status: StatusCode::from_u16(code).unwrap(),
        };
        assert!(status(503).is_failover());
        assert!(!status(404).is_failover());
        assert!(!status(401).is_failover());
        let all = Error::AllHostsFailed(vec![status(502), status(503)]);
        assert_eq!(all.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            all.to_string(),
            "all 2 Marathon hosts failed: u answered with status 502 Bad Gateway; u answered with status 503 Service Unavailable"
        );
    }

    #[test]
    fn bad_ca_cert_path_is_named() {
        let err = Client::new(ClientConfig::new(["http://m"]).ca_cert("/nonexistent/ca.pem"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
