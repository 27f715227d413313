//! Serde types for the body of `GET /v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness`.
//!
//! Only the fields marathon-lb reads are declared; unknown fields are ignored. Every field is
//! optional because Marathon versions differ and JSON `null` must behave like an absent key
//! (the original strips nulls recursively before reading anything).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Why an apps body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not the JSON shape of a Marathon apps listing.
    #[error("malformed Marathon apps JSON: {0}")]
    Parse(#[from] serde_json::Error),
}

/// The whole `/v2/apps` response.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppsBody {
    /// Every app Marathon knows, in Marathon's order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: Vec<App>,
}

impl AppsBody {
    /// Parses a `/v2/apps` body.
    ///
    /// # Errors
    /// [`Error::Parse`] when the text is not JSON of the expected shape.
    pub fn parse(text: &[u8]) -> Result<Self, Error> {
        Ok(serde_json::from_slice(text)?)
    }
}

/// One Marathon app definition with its embedded tasks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Absolute app id, e.g. `/team/web`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Requested instance count (used by deployment-group draining).
    pub instances: Option<i64>,
    /// User labels; `HAPROXY_*` ones configure the load balancer. Null values are dropped.
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    /// Marathon health checks; matched to service ports by `portIndex` or `port`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub health_checks: Vec<HealthCheck>,
    /// Running (and other) tasks, embedded by `embed=apps.tasks`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tasks: Vec<Task>,
    /// Legacy service port list (Marathon < 1.0 shape).
    pub ports: Option<Vec<Option<i64>>>,
    /// Service ports of host-networked apps.
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Container settings: Docker network and port mappings.
    pub container: Option<Container>,
    /// IP-per-task settings (Marathon <= 1.4). Any non-empty object marks the app as IP-per-task.
    pub ip_address: Option<serde_json::Map<String, serde_json::Value>>,
    /// Marathon 1.5 networks; the last entry's mode wins.
    pub networks: Option<Vec<Network>>,
    /// Version timestamps; `lastScalingAt` decides old/new in deployment groups.
    pub version_info: Option<VersionInfo>,
}

/// A Marathon health check definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `HTTP`, `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, ...
    pub protocol: Option<String>,
    /// HTTP path of the check.
    pub path: Option<String>,
    /// Fixed port to check (applies to every service port when set).
    pub port: Option<serde_json::Number>,
    /// Index of the service port this check belongs to.
    pub port_index: Option<serde_json::Number>,
    /// Check timeout.
    pub timeout_seconds: Option<serde_json::Number>,
    /// Interval between checks.
    pub interval_seconds: Option<serde_json::Number>,
    /// Grace period after task start.
    pub grace_period_seconds: Option<serde_json::Number>,
    /// Failures before a task is considered unhealthy.
    pub max_consecutive_failures: Option<serde_json::Number>,
}

/// One port definition of a host-networked app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortDefinition {
    /// The service port.
    pub port: Option<i64>,
}

/// The `container` object of an app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Docker specifics (Marathon <= 1.4 keeps network and port mappings here).
    pub docker: Option<Docker>,
    /// Marathon 1.5 port mappings.
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// The `container.docker` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    /// `HOST`, `BRIDGE` or `USER`.
    pub network: Option<String>,
    /// Port mappings of Marathon <= 1.4.
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// One container port mapping.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: Option<i64>,
    /// Service port assigned by Marathon.
    pub service_port: Option<i64>,
}

/// One entry of Marathon 1.5 `networks`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    /// `host`, `container` or `container/bridge`; absent means `container`.
    pub mode: Option<String>,
}

/// The `versionInfo` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Time of the last scale change, ISO 8601.
    pub last_scaling_at: Option<String>,
}

/// One task of an app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Task id; old tasks are drained in id order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Agent host name or address.
    pub host: Option<String>,
    /// Host ports (host and bridge networking).
    pub ports: Option<Vec<i64>>,
    /// Task addresses (IP-per-task).
    pub ip_addresses: Option<Vec<TaskIpAddress>>,
    /// Mesos task state; absent in some test fixtures.
    pub state: Option<String>,
    /// Latest health check results.
    pub health_check_results: Option<Vec<HealthCheckResult>>,
}

/// One task address.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIpAddress {
    /// The address.
    pub ip_address: Option<String>,
}

/// One health check result of a task.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthCheckResult {
    /// Whether the check passed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alive: bool,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn labels<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_behave_like_absent_keys() {
        let body = br#"{"apps":[{"id":"/a","labels":{"HAPROXY_GROUP":null,"X":"y"},
            "tasks":null,"healthChecks":null,"container":null,"unknown":{"deep":1}}]}"#;
        let apps = AppsBody::parse(body).unwrap().apps;
        assert_eq!(apps[0].labels.len(), 1);
        assert!(apps[0].tasks.is_empty());
        assert!(apps[0].container.is_none());
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(AppsBody::parse(b"{\"apps\": [").is_err());
    }
}
