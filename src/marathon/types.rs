//! Serde types for the body of `GET /v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness`.
//!
//! Only the fields marathon-lb reads are declared; unknown fields are ignored. Every field is
//! optional because Marathon versions differ and JSON `null` must behave like an absent key
//! (the original strips nulls recursively before reading anything).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A string borrowed from the response body when it has no escapes (most do not), so
/// parsing 10,000 apps allocates little.
pub type Str<'a> = Cow<'a, str>;

mod body;

pub use body::{decode_one, for_each_app, AppError, AppsBody, Error};

/// One Marathon app definition with its embedded tasks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App<'a> {
    /// Absolute app id, e.g. `/team/web`.
    #[serde(borrow, default, deserialize_with = "str_or_default")]
    pub id: Str<'a>,
    /// Requested instance count (used by deployment-group draining).
    pub instances: Option<i64>,
    /// User labels; `HAPROXY_*` ones configure the load balancer. Null values are dropped.
    #[serde(borrow, default, deserialize_with = "labels")]
    pub labels: BTreeMap<Str<'a>, Str<'a>>,
    /// Marathon health checks; matched to service ports by `portIndex` or `port`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub health_checks: Vec<HealthCheck>,
    /// Running (and other) tasks, embedded by `embed=apps.tasks`.
    #[serde(borrow, default, deserialize_with = "null_as_default")]
    pub tasks: Vec<Task<'a>>,
    /// Legacy service port list (Marathon < 1.0 shape).
    pub ports: Option<Vec<Option<i64>>>,
    /// Service ports of host-networked apps.
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Container settings: Docker network and port mappings.
    pub container: Option<Container>,
    /// IP-per-task settings (Marathon <= 1.4). Any non-empty object marks the app as IP-per-task.
    pub ip_address: Option<IpAddress>,
    /// Marathon 1.5 networks; the last entry's mode wins.
    pub networks: Option<Vec<Network>>,
    /// Version timestamps; `lastScalingAt` decides old/new in deployment groups.
    #[serde(borrow)]
    pub version_info: Option<VersionInfo<'a>>,
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
pub struct VersionInfo<'a> {
    /// Time of the last scale change, ISO 8601.
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub last_scaling_at: Option<Str<'a>>,
}

/// One task of an app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task<'a> {
    /// Task id; old tasks are drained in id order.
    #[serde(borrow, default, deserialize_with = "str_or_default")]
    pub id: Str<'a>,
    /// Agent host name or address.
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub host: Option<Str<'a>>,
    /// Host ports (host and bridge networking).
    pub ports: Option<Vec<i64>>,
    /// Task addresses (IP-per-task).
    #[serde(borrow)]
    pub ip_addresses: Option<Vec<TaskIpAddress<'a>>>,
    /// Mesos task state; absent in some test fixtures.
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub state: Option<Str<'a>>,
    /// Latest health check results.
    pub health_check_results: Option<Vec<HealthCheckResult>>,
}

/// One task address.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIpAddress<'a> {
    /// The address.
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub ip_address: Option<Str<'a>>,
}

/// One health check result of a task.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthCheckResult {
    /// Whether the check passed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alive: bool,
}

/// Marathon <= 1.4 `ipAddress` (IP-per-task). Any non-empty object marks the app as IP-per-task;
/// only the discovery ports are read.
#[derive(Debug, Clone, Default)]
pub struct IpAddress {
    /// Whether the object had any key at all.
    pub non_empty: bool,
    /// `discovery.ports[].number`.
    pub discovery_ports: Vec<i64>,
}

impl<'de> Deserialize<'de> for IpAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        struct Discovery {
            #[serde(default, deserialize_with = "null_as_default")]
            ports: Vec<Option<DiscoveryPort>>,
        }
        #[derive(Deserialize)]
        struct DiscoveryPort {
            number: Option<serde_json::Value>,
        }
        struct IpVisitor;
        impl<'de> Visitor<'de> for IpVisitor {
            type Value = IpAddress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ipAddress object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IpAddress, A::Error> {
                let mut out = IpAddress::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if key == "discovery" {
                        let discovery: Option<Discovery> = map.next_value()?;
                        out.non_empty |= discovery.is_some();
                        let ports = discovery.unwrap_or_default().ports.into_iter().flatten();
                        out.discovery_ports = ports
                            .filter_map(|p| p.number)
                            .filter_map(|n| {
                                n.as_i64()
                                    .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
                            })
                            .collect();
                    } else {
                        let value: serde_json::Value = map.next_value()?;
                        out.non_empty |= !value.is_null();
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(IpVisitor)
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string borrowed from the body when it has no escapes. (serde's own `Cow` impl always
/// copies, and `#[serde(borrow)]` only helps a bare `Cow` field without `deserialize_with`.)
struct BodyStr<'a>(Str<'a>);

impl<'de> Deserialize<'de> for BodyStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = BodyStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BodyStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BodyStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BodyStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Text)
    }
}

fn optional_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Str<'de>>, D::Error> {
    Ok(Option::<BodyStr<'de>>::deserialize(d)?.map(|s| s.0))
}

fn str_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
    Ok(optional_str(d)?.unwrap_or_default())
}

fn labels<'de, D>(d: D) -> Result<BTreeMap<Str<'de>, Str<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Labels;
    impl<'de> Visitor<'de> for Labels {
        type Value = BTreeMap<Str<'de>, Str<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a labels object")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut labels = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<BodyStr<'de>, Option<BodyStr<'de>>>()? {
                match value {
                    Some(value) => labels.insert(key.0, value.0),
                    // A later null removes an earlier value, as in the original's dict.
                    None => labels.remove(&key.0),
                };
            }
            Ok(labels)
        }
    }
    d.deserialize_option(Labels)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
