//! The model's own small types: a service's proxy mode and balance algorithm, and its health
//! check. Marathon's wire types stop here: render sees only these.

use std::fmt;

use serde_json::Number;

use crate::marathon::types;

/// HAProxy's proxy mode of a service (`HAPROXY_{n}_MODE`, an HTTP health check, or a vhost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// `mode tcp`.
    Tcp,
    /// `mode http`.
    Http,
    /// Any other (lower-cased) label value, passed through as the original does.
    Other(String),
}

impl ProxyMode {
    /// From a `HAPROXY_{n}_MODE` label: lower-cased, as the original.
    pub fn from_label(value: &str) -> Self {
        match value.to_lowercase().as_str() {
            "tcp" => ProxyMode::Tcp,
            "http" => ProxyMode::Http,
            _ => ProxyMode::Other(value.to_lowercase()),
        }
    }

    /// The text in the config.
    pub fn as_str(&self) -> &str {
        match self {
            ProxyMode::Tcp => "tcp",
            ProxyMode::Http => "http",
            ProxyMode::Other(other) => other,
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A HAProxy `balance` algorithm (`HAPROXY_{n}_BALANCE`; any text HAProxy accepts, such as
/// `leastconn` or `uri len 32`, passed through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance(String);

impl Balance {
    /// From a label value, as is.
    pub fn new(value: impl Into<String>) -> Self {
        Balance(value.into())
    }

    /// The text in the config.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Balance {
    /// marathon-lb's default.
    fn default() -> Self {
        Balance("roundrobin".into())
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service's health check, as the templates need it. Numbers keep Marathon's JSON form
/// (`5` vs `5.0` renders differently, as in the original).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthCheck {
    /// `HTTP`, `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, ...
    pub protocol: Option<String>,
    /// HTTP path of the check.
    pub path: Option<String>,
    /// Fixed port to check.
    pub port: Option<Number>,
    /// Index of the service port this check belongs to.
    pub port_index: Option<Number>,
    /// Check timeout.
    pub timeout_seconds: Option<Number>,
    /// Interval between checks.
    pub interval_seconds: Option<Number>,
    /// Grace period after task start.
    pub grace_period_seconds: Option<Number>,
    /// Failures before a task is considered unhealthy.
    pub max_consecutive_failures: Option<Number>,
}

impl From<&types::HealthCheck> for HealthCheck {
    fn from(hc: &types::HealthCheck) -> Self {
        HealthCheck {
            protocol: hc.protocol.clone(),
            path: hc.path.clone(),
            port: hc.port.clone(),
            port_index: hc.port_index.clone(),
            timeout_seconds: hc.timeout_seconds.clone(),
            interval_seconds: hc.interval_seconds.clone(),
            grace_period_seconds: hc.grace_period_seconds.clone(),
            max_consecutive_failures: hc.max_consecutive_failures.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_balances_render_their_label_text() {
        assert_eq!(ProxyMode::from_label("TCP"), ProxyMode::Tcp);
        assert_eq!(ProxyMode::from_label("Http").as_str(), "http");
        assert_eq!(ProxyMode::from_label("Health").to_string(), "health");
        assert_eq!(Balance::default().as_str(), "roundrobin");
        assert_eq!(Balance::new("uri len 32").to_string(), "uri len 32");
    }
}
