//! What one app may not do to the others: values that would inject config, and ports another
//! app already binds.
//!
//! Label values other than templates (`VHOST`, `BIND_OPTIONS`, `SSL_CERT`, `HAPROXY_GROUP`,
//! ...) and app ids reach `haproxy.cfg` verbatim inside a line; a line break in one would
//! start a new section of the app author's choosing (a `listen` serving anything, a `global`
//! socket). They are refused like any other invalid label. Template labels
//! (`HAPROXY_{n}_<TEMPLATE>`) stay raw config, as the original documents. Task hosts and
//! addresses with whitespace or control characters leave only that task out.
//!
//! In live mode an app with such a value is left out ([`LeftOut`]) and everything else is
//! applied; [`resolve_port_conflicts`] also leaves out a service whose port another app
//! already binds.

use std::collections::HashMap;
use std::sync::Arc;

use super::{labels, Error, Service};
use crate::marathon::types::{App, Task};
use crate::templates::Name;

/// An app (or one of its service ports) left out of the config, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The Marathon app id (`apps[N]` for an element without one).
    pub app_id: String,
    /// The labels (or fields) at fault, e.g. `HAPROXY_0_PORT`; may be empty.
    pub labels: Vec<String>,
    /// The error, naming the app and the label.
    pub reason: String,
}

impl Error {
    /// This error as a report of the app it leaves out.
    pub fn left_out(&self) -> LeftOut {
        let (app_id, labels) = match self {
            Error::InvalidLabel { app_id, label, .. } => (app_id.clone(), vec![label.clone()]),
            Error::InvalidAppId { app_id } => (app_id.clone(), Vec::new()),
            Error::Deployment { group, .. } => {
                (group.clone(), vec!["HAPROXY_DEPLOYMENT_GROUP".to_owned()])
            }
        };
        LeftOut {
            app_id,
            labels,
            reason: self.to_string(),
        }
    }
}

/// Whether `text` has a line break or another control character.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Refuses an app id or value label with a control character. `HTTP_BACKEND_REDIR` is both
/// a value label and a template name, and the original renders a multi-line value of it
/// verbatim (the conformance corpus has five such cases): it is refused only in live mode.
///
/// # Errors
/// [`Error::InvalidAppId`] or [`Error::InvalidLabel`] (the first such label in name order).
pub fn check_app(app: &App, live: bool) -> Result<(), Error> {
    if has_control(&app.id) {
        return Err(Error::InvalidAppId {
            app_id: app.id.to_string(),
        });
    }
    for (key, value) in &app.labels {
        let ambiguous = labels::port_label(key).is_some_and(|(_, n)| n == "HTTP_BACKEND_REDIR");
        let checked = key.starts_with("HAPROXY_") && !is_template_label(key);
        if checked && (live || !ambiguous) && has_control(value) {
            return Err(Error::InvalidLabel {
                app_id: app.id.to_string(),
                label: key.to_string(),
                value: value.to_string(),
                expected: "a value without line breaks or other control characters",
            });
        }
    }
    Ok(())
}

/// `HAPROXY_{n}_<TEMPLATE>` or `HAPROXY_<TEMPLATE>`: raw config text by design.
fn is_template_label(key: &str) -> bool {
    let name = match labels::port_label(key) {
        Some((_, name)) => name,
        None => key.strip_prefix("HAPROXY_").unwrap_or(key),
    };
    !labels::SETTING_LABELS.contains(&name) && Name::from_name(name).is_some()
}

/// Whether a task's host and address can be written into a `server` line; warns when not.
pub fn task_fields_ok(app: &App, task: &Task) -> bool {
    let bad = |s: &str| s.chars().any(|c| c.is_control() || c.is_whitespace());
    let host = task.host.as_deref().filter(|h| bad(h));
    let ip = task
        .ip_addresses
        .iter()
        .flatten()
        .filter_map(|a| a.ip_address.as_deref())
        .find(|ip| bad(ip));
    if host.is_none() && ip.is_none() {
        return true;
    }
    tracing::warn!(
        app_id = %app.id.escape_debug(),
        task_id = %task.id.escape_debug(),
        host = ?host,
        ip_address = ?ip,
        "left out a task whose host or address has whitespace or control characters"
    );
    false
}

/// Which app binds each service port: kept between live passes so the holder keeps its port.
pub type PortHolders = HashMap<i64, String>;

/// Leaves out every service whose port another app's service already binds (same address, or
/// either on all addresses). The previous holder of a port keeps it; with none, the lowest
/// app id does. `selected` tells which services the config binds at all (group, enabled);
/// `reserved` are ports of the shared frontends (`marathon_http_in` on 80, ...).
/// Returns the kept services (in their order), what was left out, and the new holders.
pub fn resolve_port_conflicts(
    services: Vec<Arc<Service>>,
    previous: &PortHolders,
    selected: impl Fn(&Service) -> bool,
    reserved: &[(i64, &str)],
) -> (Vec<Arc<Service>>, Vec<LeftOut>, PortHolders) {
    let (dropped, clashes, holders) = conflicts(&services, previous, selected, reserved);
    let left_out = clashes
        .iter()
        .map(|(i, by)| conflict(&services[*i], by))
        .collect();
    let kept = services
        .into_iter()
        .zip(dropped)
        .filter_map(|(s, d)| (!d).then_some(s))
        .collect();
    (kept, left_out, holders)
}

/// Who left a service out: its index and what binds its port (`app /a`, `the shared
/// frontend marathon_http_in`), in report order (by app id).
pub(crate) type Clashes = Vec<(usize, String)>;

/// [`resolve_port_conflicts`]: which services are left out (by index), by what, and the new
/// holders.
pub(crate) fn conflicts(
    services: &[Arc<Service>],
    previous: &PortHolders,
    selected: impl Fn(&Service) -> bool,
    reserved: &[(i64, &str)],
) -> (Vec<bool>, Clashes, PortHolders) {
    // Claims by port, the previous holder's services first, then by app id (the services
    // arrive sorted by app id): one sort instead of a list per port.
    let mut claims: Vec<(i64, bool, usize)> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| selected(s))
        .map(|(i, s)| {
            let port = s.service_port;
            (port, previous.get(&port) != Some(&s.app_id), i)
        })
        .collect();
    claims.sort_unstable();
    let mut dropped = vec![false; services.len()];
    let mut clashes = Vec::new();
    let mut holders = PortHolders::with_capacity(previous.len().max(claims.len() / 2));
    for claimants in claims.chunk_by(|a, b| a.0 == b.0) {
        let port = claimants[0].0;
        let shared = reserved.iter().find(|(p, _)| *p == port).map(|(_, f)| *f);
        let mut kept: Vec<usize> = Vec::new();
        for &(_, _, i) in claimants {
            let service = &services[i];
            let clash = kept.iter().find(|&&k| {
                services[k].app_id != service.app_id
                    && overlaps(&services[k].bind_addr, &service.bind_addr)
            });
            let by = match (shared, clash) {
                (Some(frontend), _) => format!("the shared frontend {frontend}"),
                (None, Some(&k)) => format!("app {}", services[k].app_id),
                (None, None) => {
                    holders
                        .entry(port)
                        .or_insert_with(|| service.app_id.clone());
                    kept.push(i);
                    continue;
                }
            };
            dropped[i] = true;
            clashes.push((i, by));
        }
    }
    clashes.sort_by(|a, b| services[a.0].app_id.cmp(&services[b.0].app_id));
    (dropped, clashes, holders)
}

/// The report of a service left out because `by` binds its port.
pub(crate) fn conflict(service: &Service, by: &str) -> LeftOut {
    let label = service
        .labels
        .iter()
        .map(|(k, _)| k)
        .find(|k| labels::port_label(k).is_some_and(|(_, name)| name == "PORT"))
        .cloned();
    let from = label
        .as_ref()
        .map_or(String::new(), |l| format!(" (from label {l})"));
    LeftOut {
        app_id: service.app_id.clone(),
        labels: label.into_iter().collect(),
        reason: format!(
            "app {}: service port {}{from} is already bound by {by}; left out that port",
            service.app_id, service.service_port
        ),
    }
}

/// Whether two bind addresses take the same socket (`*` and empty are every address).
fn overlaps(a: &str, b: &str) -> bool {
    let any = |s: &str| matches!(s, "*" | "" | "0.0.0.0" | "::" | "[::]");
    a == b || any(a) || any(b)
}

mod claims;
#[cfg(test)]
mod tests;

pub use claims::PortClaims;
