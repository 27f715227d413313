//! `GET /v2/apps/{id}?embed=app.tasks&…`: one app, for the incremental live model, which asks
//! for the one app an event names instead of the whole cluster.

use reqwest::header::ACCEPT;
use reqwest::{StatusCode, Url};

use super::{Client, Error, Failures, Result};
use crate::marathon::hosts::{endpoint, APP_QUERY};

impl Client {
    /// `GET /v2/apps/{id}?embed=app.tasks&embed=app.deployments&embed=app.readiness`: the
    /// body `{"app": {…}}`, with the same fields as the app's element of the `/v2/apps`
    /// listing. `Ok(None)` when Marathon answers 404 (the app is gone). Fails over like
    /// [`Client::apps_json`].
    ///
    /// # Errors
    /// The failing host's error, or [`Error::AllHostsFailed`] when several were tried.
    pub async fn app_json(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let mut failures = Failures::default();
        for index in self.failover_order() {
            match self.app_from(&self.hosts[index], id).await {
                Ok(body) => return Ok(self.worked(index, body)),
                Err(Error::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                    return Ok(self.worked(index, None))
                }
                Err(error) => failures.record(&self.hosts[index], error)?,
            }
        }
        Err(failures.into_error())
    }

    /// One app request to one host.
    async fn app_from(&self, base: &Url, id: &str) -> Result<Option<bytes::Bytes>> {
        let mut url = endpoint(base, "v2/apps", APP_QUERY);
        // App ids are `/`-separated path segments: each one is percent-encoded on its own.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(id.split('/').filter(|s| !s.is_empty()));
        }
        let response = self
            .send(&url, |r| {
                r.header(ACCEPT, "application/json")
                    .timeout(self.request_timeout)
            })
            .await?;
        Ok(Some(self.capped_body(response, &url).await?))
    }
}
