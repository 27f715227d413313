//! The Marathon calls zdd makes, with marathon-lb's URL parsing and auth (basic, DC/OS
//! service account with re-login on 401, CA certificate).

use std::path::Path;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use crate::marathon::auth::{Authenticator, Credentials};
use crate::marathon::hosts::{endpoint, parse_host};

/// A failed Marathon call: which URL and why (never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct ApiError {
    /// The request URL.
    pub url: String,
    /// What went wrong (transport error, or the status and Marathon's message).
    pub reason: String,
}

/// A Marathon endpoint.
pub struct Marathon {
    http: reqwest::Client,
    base: Url,
    auth: Authenticator,
}

impl Marathon {
    /// A client for `url` (userinfo in it is used as basic credentials when `credentials`
    /// gives none).
    ///
    /// # Errors
    /// An invalid URL or CA certificate.
    pub fn new(
        url: &str,
        credentials: Credentials,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ApiError> {
        let fail = |reason: String| ApiError {
            url: url.to_owned(),
            reason,
        };
        let (base, userinfo) = parse_host(url).map_err(|e| fail(e.to_string()))?;
        let credentials = match (credentials, userinfo) {
            (Credentials::None, Some(basic)) => Credentials::Basic(basic),
            (credentials, _) => credentials,
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // Idle connections are dropped before a server's keep-alive timer can close them
            // under a request (writes are not retried).
            .pool_idle_timeout(Duration::from_secs(2));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Marathon {
            http: builder.build().map_err(|e| fail(e.to_string()))?,
            base,
            auth: Authenticator::new(credentials),
        })
    }

    /// `GET /v2/apps`: every app.
    pub async fn apps(&self) -> Result<Vec<Value>, ApiError> {
        let body = self.call(Method::GET, "v2/apps", &[], None).await?;
        Ok(match body.get("apps") {
            Some(Value::Array(apps)) => apps.clone(),
            _ => Vec::new(),
        })
    }

    /// `GET /v2/apps/{id}`: one app with its tasks and deployments.
    pub async fn app(&self, id: &str) -> Result<Value, ApiError> {
        let mut body = self.call(Method::GET, &app_path(id), &[], None).await?;
        Ok(body.get_mut("app").map(Value::take).unwrap_or_default())
    }

    /// `POST /v2/apps`.
    pub async fn create(&self, app: &Value) -> Result<Value, ApiError> {
        self.call(Method::POST, "v2/apps", &[], Some(app)).await
    }

    /// `PUT /v2/apps/{id}` with `{"instances": n}` (`force`: even while a deployment runs).
    pub async fn scale(&self, id: &str, instances: u64, force: bool) -> Result<Value, ApiError> {
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        let body = json!({ "instances": instances });
        self.call(Method::PUT, &app_path(id), query, Some(&body))
            .await
    }

    /// `POST /v2/tasks/delete?scale=true`: kills tasks and lowers their apps' instances.
    pub async fn kill_and_scale(&self, ids: &[String]) -> Result<Value, ApiError> {
        let body = json!({ "ids": ids });
        self.call(
            Method::POST,
            "v2/tasks/delete",
            &[("scale", "true")],
            Some(&body),
        )
        .await
    }

    /// `DELETE /v2/apps/{id}` (`force`: even while a deployment runs).
    pub async fn delete(&self, id: &str, force: bool) -> Result<Value, ApiError> {
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        self.call(Method::DELETE, &app_path(id), query, None).await
    }

    /// One authenticated JSON call; a 401 with renewable credentials logs in again once, and
    /// a GET is retried once on a transport error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = endpoint(&self.base, path, query);
        let fail = |reason: String| ApiError {
            url: url.to_string(),
            reason,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self
                .auth
                .header(&self.http)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json");
            if let Some(header) = &auth {
                request = request.header(AUTHORIZATION, header.clone());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if method == Method::GET && attempt < 3 => {
                    tracing::debug!(error = %e.without_url(), "retrying Marathon request");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(fail(e.without_url().to_string())),
            };
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && self.auth.can_renew() && attempt < 2 {
                if let Some(header) = &auth {
                    self.auth.reject(header).await;
                }
                continue;
            }
            let text = response
                .text()
                .await
                .map_err(|e| fail(e.without_url().to_string()))?;
            if !status.is_success() {
                return Err(fail(format!("{status}: {}", text.trim())));
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")));
        }
    }
}

/// `v2/apps/a/b` for `/a/b`.
fn app_path(id: &str) -> String {
    format!("v2/apps/{}", id.trim_start_matches('/'))
}
