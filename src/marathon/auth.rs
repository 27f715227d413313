//! Credentials for Marathon: HTTP basic (`--auth-credentials user:pass`) and DC/OS
//! service accounts (`--dcos-auth-credentials`), and the [`Authenticator`] that turns
//! them into an `Authorization` header.
//!
//! Data flow position: used by `client` on every request. A DC/OS login signs an RS256
//! JWT `{uid, exp}` with the account's private key, POSTs `{uid, token, exp}` to the
//! account's `login_endpoint` and sends the returned token as `Authorization: token=…`.
//! The token is renewed before it expires and, unlike the original marathon-lb (which
//! renews only on a timer), also as soon as Marathon answers 401.
//!
//! Secrets never reach logs, `Debug` output or error messages: they live in [`Secret`],
//! whose `Debug` is redacted, header values are marked sensitive, and errors built from
//! credential input carry positions and kinds, never the input.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a requested DC/OS token lives (marathon-lb asks for one hour too).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long before its expiry a DC/OS token is renewed.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime of the signed login assertion itself (only used once, right away).
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// Failures while parsing credentials or logging in. No variant holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--auth-credentials` was not of the form `user:password`.
    #[error("basic auth credentials must have the form user:password")]
    InvalidBasic,
    /// `--dcos-auth-credentials` is not valid JSON with `uid`, `private_key` and
    /// `login_endpoint` strings. Only the position is kept: the text holds a key.
    #[error("DC/OS credentials are not valid JSON with uid, private_key and login_endpoint (line {line}, column {column})")]
    InvalidDcosJson {
        /// Line of the JSON error.
        line: usize,
        /// Column of the JSON error.
        column: usize,
    },
    /// The `private_key` is not a PEM RSA private key.
    #[error("DC/OS private_key is not a PEM RSA private key")]
    InvalidPrivateKey(#[source] jsonwebtoken::errors::Error),
    /// The `login_endpoint` is not an absolute http(s) URL.
    #[error("DC/OS login_endpoint is not an absolute http(s) URL")]
    InvalidLoginEndpoint,
    /// Signing the login JWT failed.
    #[error("signing the DC/OS login token failed")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The login request could not be sent or its answer not read.
    #[error("DC/OS login at {endpoint} failed")]
    Login {
        /// The login endpoint.
        endpoint: String,
        /// The transport error (URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// The login endpoint answered with a non-success status.
    #[error("DC/OS login at {endpoint} was refused with status {status}")]
    LoginStatus {
        /// The login endpoint.
        endpoint: String,
        /// The HTTP status.
        status: StatusCode,
    },
    /// The login answer had no usable `token`.
    #[error("DC/OS login at {endpoint} returned no usable token")]
    LoginResponse {
        /// The login endpoint.
        endpoint: String,
    },
}

/// A string that must not be shown: `Debug` prints `<redacted>` and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// HTTP basic credentials from `--auth-credentials user:pass`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicCredentials {
    /// The user name (not secret).
    pub user: String,
    /// The password.
    pub password: Secret,
}

impl BasicCredentials {
    /// Parses `user:password` (the password may itself contain `:`).
    ///
    /// # Errors
    /// [`Error::InvalidBasic`] when there is no `:` or the user is empty.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self {
                user: user.to_owned(),
                password: Secret::new(password),
            }),
            _ => Err(Error::InvalidBasic),
        }
    }

    /// The `Authorization: Basic …` header value, marked sensitive.
    pub fn header(&self) -> HeaderValue {
        let raw = format!("{}:{}", self.user, self.password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        sensitive_header(&format!("Basic {encoded}"))
    }
}

/// A DC/OS service account from `--dcos-auth-credentials`.
#[derive(Clone)]
pub struct DcosCredentials {
    /// The service account id (not secret).
    pub uid: String,
    /// The parsed private key; kept parsed so a bad key fails at startup.
    key: Arc<jsonwebtoken::EncodingKey>,
    /// Where to log in.
    pub login_endpoint: Url,
    /// Lifetime requested for each token.
    pub token_lifetime: Duration,
    /// Renew this long before the token expires.
    pub refresh_margin: Duration,
}

impl fmt::Debug for DcosCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcosCredentials")
            .field("uid", &self.uid)
            .field("private_key", &"<redacted>")
            .field("login_endpoint", &self.login_endpoint.as_str())
            .finish()
    }
}

impl DcosCredentials {
    /// Parses the service-account JSON `{"uid", "private_key", "login_endpoint"}`.
    ///
    /// # Errors
    /// [`Error::InvalidDcosJson`], [`Error::InvalidPrivateKey`] or
    /// [`Error::InvalidLoginEndpoint`]; none of them repeats the input.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            uid: String,
            private_key: String,
            login_endpoint: String,
        }
        let raw: Raw = serde_json::from_str(json).map_err(|e| Error::InvalidDcosJson {
            line: e.line(),
            column: e.column(),
        })?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(raw.private_key.as_bytes())
            .map_err(Error::InvalidPrivateKey)?;
        let login_endpoint = Url::parse(&raw.login_endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or(Error::InvalidLoginEndpoint)?;
        Ok(Self {
            uid: raw.uid,
            key: Arc::new(key),
            login_endpoint,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
        })
    }

    /// Overrides the token lifetime and renewal margin (tests use short ones).
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration, refresh_margin: Duration) -> Self {
        self.token_lifetime = lifetime;
        self.refresh_margin = refresh_margin;
        self
    }

    /// Signs the RS256 login assertion `{uid, exp}` valid until `now_unix + 60`.
    ///
    /// # Errors
    /// [`Error::Sign`] if signing fails.
    pub fn sign_assertion(&self, now_unix: u64) -> Result<String, Error> {
        let claims =
            serde_json::json!({ "uid": self.uid, "exp": now_unix + ASSERTION_LIFETIME_SECS });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(Error::Sign)
    }
}

/// How Marathon requests are authenticated.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic.
    Basic(BasicCredentials),
    /// DC/OS service-account login.
    Dcos(DcosCredentials),
}

/// A DC/OS token in use.
struct Token {
    /// The `Authorization: token=…` value, marked sensitive.
    header: HeaderValue,
    /// When to log in again (expiry minus the refresh margin).
    renew_at: Instant,
}

/// Produces the `Authorization` header for each request, logging in to DC/OS when
/// needed. Shared by all requests of a client; concurrent callers log in only once.
pub struct Authenticator {
    /// What to authenticate with.
    credentials: Credentials,
    /// The current DC/OS token; the mutex also serialises logins.
    token: Mutex<Option<Token>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for these credentials; DC/OS logs in lazily on first use.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            token: Mutex::new(None),
        }
    }

    /// Whether a 401 may be cured by logging in again (DC/OS only).
    pub fn can_renew(&self) -> bool {
        matches!(self.credentials, Credentials::Dcos(_))
    }

    /// The header to send, logging in first if there is no token or it is due for renewal.
    ///
    /// # Errors
    /// Any [`Error`] of the DC/OS login.
    pub async fn header(&self, http: &reqwest::Client) -> Result<Option<HeaderValue>, Error> {
        match &self.credentials {
            Credentials::None => Ok(None),
            Credentials::Basic(basic) => Ok(Some(basic.header())),
            Credentials::Dcos(dcos) => {
                let mut token = self.token.lock().await;
                if let Some(t) = token.as_ref().filter(|t| Instant::now() < t.renew_at) {
                    return Ok(Some(t.header.clone()));
                }
                let fresh = login(http, dcos).await?;
                let header = fresh.header.clone();
                *token = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    /// Forgets `rejected` (a header Marathon answered 401 to) so the next
    /// [`header`](Self::header) logs in again. A newer token is kept.
    pub async fn reject(&self, rejected: &HeaderValue) {
        let mut token = self.token.lock().await;
        if token.as_ref().is_some_and(|t| t.header == *rejected) {
            *token = None;
        }
    }
}

/// Logs in to DC/OS and returns the token with its renewal time.
async fn login(http: &reqwest::Client, dcos: &DcosCredentials) -> Result<Token, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: String,
    }
    let endpoint = dcos.login_endpoint.to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = serde_json::json!({
        "uid": dcos.uid,
        "token": dcos.sign_assertion(now)?,
        "exp": now + dcos.token_lifetime.as_secs(),
    });
    let started = Instant::now();
    let login_error = |source: reqwest::Error| Error::Login {
        endpoint: endpoint.clone(),
        source: source.without_url(),
    };
    let response = http
        .post(dcos.login_endpoint.clone())
        .json(&body)
        .send()
        .await
        .map_err(login_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::LoginStatus { endpoint, status });
    }
    let answer: Answer = response.json().await.map_err(login_error)?;
    let header = HeaderValue::try_from(format!("token={}", answer.token))
        .ok()
        .filter(|_| !answer.token.is_empty())
        .ok_or(Error::LoginResponse {
            endpoint: endpoint.clone(),
        })?;
    tracing::info!(uid = %dcos.uid, %endpoint, "logged in to DC/OS");
    let valid_for = dcos.token_lifetime.saturating_sub(dcos.refresh_margin);
    Ok(Token {
        header: mark_sensitive(header),
        renew_at: started + valid_for,
    })
}

/// A header value marked sensitive so hyper and `Debug` never show it.
fn sensitive_header(value: &str) -> HeaderValue {
    // Base64 and "Basic " are always valid header bytes, so this cannot fail.
    mark_sensitive(HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("")))
}

fn mark_sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/dcos-test-key.pem");
    const PUBLIC_KEY: &str = include_str!("../../tests/fixtures/dcos-test-key.pub.pem");

    fn dcos_json() -> String {
        serde_json::json!({
            "uid": "mlb-principal",
            "private_key": KEY,
            "login_endpoint": "https://leader.mesos/acs/api/v1/auth/login",
        })
        .to_string()
    }

    #[test]
    fn basic_parses_user_and_password_with_colons() {
        let creds = BasicCredentials::parse("alice:s3cr:et").unwrap();
        assert_eq!(creds.user, "alice");
        assert_eq!(creds.password.expose(), "s3cr:et");
        assert!(matches!(
            BasicCredentials::parse("nocolon"),
            Err(Error::InvalidBasic)
        ));
        assert!(matches!(
            BasicCredentials::parse(":pw"),
            Err(Error::InvalidBasic)
        ));
    }

    #[test]
    fn basic_header_is_base64_and_sensitive() {
        let header = BasicCredentials::parse("Aladdin:open sesame")
            .unwrap()
            .header();
        assert_eq!(header, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("QWxh"));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let basic = Credentials::Basic(BasicCredentials::parse("alice:hunter2").unwrap());
        let dcos = Credentials::Dcos(DcosCredentials::from_json(&dcos_json()).unwrap());
        let shown = format!(
            "{basic:?} {dcos:?} {:?} {:#?}",
            Authenticator::new(basic.clone()),
            Authenticator::new(dcos.clone())
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains(&KEY[40..80]), "{shown}");
        assert!(shown.contains("alice") && shown.contains("mlb-principal"));
    }

    #[test]
    fn bad_dcos_json_errors_do_not_repeat_the_input() {
        let with_bad_type = r#"{"uid": "u", "private_key": 5, "login_endpoint": "topsecret"}"#;
        let truncated = r#"{"uid": "u", "private_key": "topsecret"#;
        let bad_key =
            serde_json::json!({"uid":"u","private_key":"topsecret","login_endpoint":"https://x/"});
        for input in [with_bad_type, truncated, &bad_key.to_string()] {
            let err = DcosCredentials::from_json(input).unwrap_err();
            let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
            assert!(!shown.contains("topsecret"), "{shown}");
        }
    }

    #[test]
    fn login_endpoint_must_be_http_url() {
        let json = dcos_json().replace("https://leader.mesos", "ftp://leader.mesos");
        assert!(matches!(
            DcosCredentials::from_json(&json),
            Err(Error::InvalidLoginEndpoint)
        ));
    }

    #[test]
    fn assertion_is_rs256_with_uid_and_exp() {
        let creds = DcosCredentials::from_json(&dcos_json()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jwt = creds.sign_assertion(now).unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["uid"], "mlb-principal");
        assert_eq!(claims["exp"], now + ASSERTION_LIFETIME_SECS);
    }
}
