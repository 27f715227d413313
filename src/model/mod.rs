//! Apps -> services: the load balancer's view of Marathon.
//!
//! Data flow position: after `marathon::types`, before `render`. Pure: no I/O except the
//! (cached) host-name resolution of task agents. Each app service port with at least one
//! routable task becomes a [`Service`] carrying its label settings and backends, sorted by
//! `(app id, service port)` as the config lists them. Services are shared ([`Arc`]): the live
//! loop's model cache, render and status hold the same ones, and an unchanged service is
//! recognised by its pointer.

mod cache;
pub mod deployment;
pub mod invalid;
mod kinds;
pub mod labels;
pub mod network;

pub use cache::{ModelCache, Reuse};
pub use kinds::{Balance, HealthCheck, ProxyMode};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::marathon::types::{self, App, Task};
use crate::templates::{Name, Template};
use network::{Mode, PortAssigner, Resolver};

/// Why the apps could not be turned into services (the original aborts the run on these).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A label value the original cannot parse.
    #[error("app {app_id}: label {label}={value:?} is invalid (expected {expected})")]
    InvalidLabel {
        /// The app.
        app_id: String,
        /// The full label name, e.g. `HAPROXY_0_PORT`.
        label: String,
        /// The offending value.
        value: String,
        /// What the label must hold.
        expected: &'static str,
    },
    /// An app id with a line break or another control character (it names sections).
    #[error("app {}: the app id has a line break or another control character", .app_id.escape_debug())]
    InvalidAppId {
        /// The app id, as given.
        app_id: String,
    },
    /// A deployment group whose two apps cannot be merged.
    #[error("deployment group {group}: {reason}")]
    Deployment {
        /// The group id (`/name`).
        group: String,
        /// What is missing or invalid.
        reason: String,
    },
}

/// Model options taken from the command line and environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--strict-mode`: services are off unless `HAPROXY_{n}_ENABLED` is true.
    pub strict_mode: bool,
    /// `--health-check`: only route to tasks Marathon reports alive.
    pub health_check: bool,
    /// `--min/max-serv-port-ip-per-task`; `None` when disabled (`0 0`).
    pub ip_per_task_ports: Option<(i64, i64)>,
    /// `$FRAMEWORK_NAME`: marathon-lb's own app, never load balanced.
    pub framework_name: Option<String>,
    /// Live mode: an app with an invalid label (or deployment group) is left out and reported
    /// ([`invalid::LeftOut`]) while every other app is modeled. Off (one-shot), the first
    /// invalid app fails the run, as the original does.
    pub leave_out_invalid: bool,
}

/// `HAPROXY_{n}_AUTH` basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Realm shown by the browser.
    pub realm: String,
    /// User name.
    pub user: String,
    /// Password (as given: usually an encrypted hash for HAProxy's userlist).
    pub password: String,
}

/// One task address behind a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The agent host name as Marathon reports it.
    pub host: String,
    /// The address HAProxy connects to.
    pub ip: String,
    /// The port HAProxy connects to.
    pub port: i64,
    /// Old task of a blue/green deployment: kept but `disabled`.
    pub draining: bool,
}

/// One load-balanced app service port and its settings from labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Marathon app id (a deployment group's id for merged groups).
    pub app_id: String,
    /// The service port HAProxy binds (after `HAPROXY_{n}_PORT`).
    pub service_port: i64,
    /// Routable tasks, sorted by `(host, port)`.
    pub backends: Vec<Backend>,
    /// `HAPROXY_GROUP` of the app.
    pub app_groups: Vec<String>,
    /// `HAPROXY_{n}_GROUP`, which replaces the app's groups for this port.
    pub port_groups: Option<Vec<String>>,
    /// `HAPROXY_{n}_VHOST`, lower-cased (may hold several, comma separated).
    pub hostname: Option<String>,
    /// `HAPROXY_{n}_PATH`.
    pub path: Option<String>,
    /// `HAPROXY_{n}_AUTH` (boxed, as other rarely set fields: 10,000 services are held).
    pub auth: Option<Box<Auth>>,
    /// `HAPROXY_{n}_STICKY`.
    pub sticky: bool,
    /// `HAPROXY_{n}_ENABLED` (default: true unless `--strict-mode`).
    pub enabled: bool,
    /// `HAPROXY_{n}_REDIRECT_TO_HTTPS`.
    pub redirect_http_to_https: bool,
    /// `HAPROXY_{n}_USE_HSTS`.
    pub use_hsts: bool,
    /// `HAPROXY_{n}_SSL_CERT`.
    pub ssl_cert: Option<String>,
    /// `HAPROXY_{n}_BIND_OPTIONS`.
    pub bind_options: Option<String>,
    /// `HAPROXY_{n}_BIND_ADDR` (default `*`).
    pub bind_addr: String,
    /// `http`/`tcp` from `HAPROXY_{n}_MODE` or the health check; `None` = decided by the vhost.
    pub mode: Option<ProxyMode>,
    /// `HAPROXY_{n}_BALANCE` (default `roundrobin`).
    pub balance: Balance,
    /// The Marathon health check of this port (or the borrowed one); boxed, it costs 8 bytes
    /// in a service without one instead of ~190.
    pub health_check: Option<Box<HealthCheck>>,
    /// `HAPROXY_{n}_BACKEND_WEIGHT`: order of vhost ACL blocks, highest first.
    pub backend_weight: i64,
    /// `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`.
    pub network_allowed: Option<String>,
    /// `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX`.
    pub healthcheck_port_index: Option<i64>,
    /// `HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH`.
    pub proxypath: Option<String>,
    /// `HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH`.
    pub revproxypath: Option<String>,
    /// `HAPROXY_{n}_HTTP_BACKEND_REDIR`.
    pub redirpath: Option<String>,
    /// Per-port template overrides from labels, in label order.
    pub templates: Vec<(Name, Template)>,
    /// The app's raw `HAPROXY_*` labels for this port (app-wide and `HAPROXY_{n}_*` of its
    /// port index), in name order; not rendered, only used to explain a rejected config.
    pub labels: Vec<(String, String)>,
}

impl Service {
    /// A service with marathon-lb's defaults.
    pub fn new(
        app_id: String,
        service_port: i64,
        health_check: Option<HealthCheck>,
        strict: bool,
    ) -> Self {
        let mode = health_check
            .as_ref()
            .filter(|hc| hc.protocol.as_deref() == Some("HTTP"))
            .map(|_| ProxyMode::Http);
        Self {
            app_id,
            service_port,
            backends: Vec::new(),
            app_groups: Vec::new(),
            port_groups: None,
            hostname: None,
            path: None,
            auth: None,
            sticky: false,
            enabled: !strict,
            redirect_http_to_https: false,
            use_hsts: false,
            ssl_cert: None,
            bind_options: None,
            bind_addr: "*".into(),
            mode,
            balance: Balance::default(),
            health_check: health_check.map(Box::new),
            backend_weight: 0,
            network_allowed: None,
            healthcheck_port_index: None,
            proxypath: None,
            revproxypath: None,
            redirpath: None,
            templates: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// The label override of a per-port template, if the app set one.
    pub fn template(&self, name: Name) -> Option<&Template> {
        self.templates
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
    }

    /// Whether this service belongs in a load balancer serving `groups` (`*` = all).
    pub fn in_groups(&self, groups: &[String]) -> bool {
        if groups.iter().any(|g| g == "*") {
            return true;
        }
        let own = self.port_groups.as_ref().unwrap_or(&self.app_groups);
        own.iter().any(|g| groups.contains(g))
    }
}

/// Remembers health results across passes: a task whose results are momentarily absent keeps
/// its last known state (as the original's LRU cache does).
#[derive(Debug, Default)]
pub struct HealthMemory {
    /// Task id -> last seen alive.
    alive: HashMap<String, bool>,
}

/// Turns Marathon apps into sorted services.
///
/// # Errors
/// [`Error`] for invalid labels or deployment groups; the original aborts the whole run on these.
pub fn build(
    apps: Vec<App>,
    options: &Options,
    resolver: &mut Resolver,
    health: &mut HealthMemory,
) -> Result<Vec<Arc<Service>>, Error> {
    let mut builder = Builder::new(options, resolver, health);
    for app in apps {
        builder.push(app);
    }
    builder.finish()
}

/// Builds services one app at a time, so modeling can run while the rest of the body is
/// still being parsed. Gives the same services, errors included, as [`build`].
pub struct Builder<'r, 'a> {
    options: &'r Options,
    resolver: &'r mut Resolver,
    health: &'r mut HealthMemory,
    assigner: PortAssigner,
    groups: deployment::Groups<'a>,
    services: Vec<Arc<Service>>,
    /// The first invalid label; apps after it are not modeled (the run fails anyway).
    label_error: Option<Error>,
    /// Apps left out (only with [`Options::leave_out_invalid`]).
    left_out: Vec<invalid::LeftOut>,
}

impl<'r, 'a> Builder<'r, 'a> {
    /// An empty builder.
    pub fn new(
        options: &'r Options,
        resolver: &'r mut Resolver,
        health: &'r mut HealthMemory,
    ) -> Self {
        Self {
            options,
            resolver,
            health,
            assigner: PortAssigner::new(options.ip_per_task_ports),
            groups: deployment::Groups::default(),
            services: Vec::new(),
            label_error: None,
            left_out: Vec::new(),
        }
    }

    /// Models the next app in Marathon's order. Apps of deployment groups wait for
    /// [`Builder::finish`], which models them after all other apps (as the original does).
    pub fn push(&mut self, app: App<'a>) {
        if let Some(app) = self.groups.take(app) {
            self.model(&deployment::Prepared::new(app));
        }
    }

    /// Records an app that was left out before it reached the builder (an element of the
    /// apps list that could not be decoded, in live mode).
    pub fn leave_out(&mut self, left_out: invalid::LeftOut) {
        self.left_out.push(left_out);
    }

    /// Models the deployment groups and returns every service, sorted.
    ///
    /// # Errors
    /// A failed deployment group merge first, else the first invalid label.
    pub fn finish(self) -> Result<Vec<Arc<Service>>, Error> {
        self.finish_all().map(|(services, _)| services)
    }

    /// [`Builder::finish`], also returning the apps left out (live mode).
    ///
    /// # Errors
    /// As [`Builder::finish`]; never with [`Options::leave_out_invalid`].
    pub fn finish_all(self) -> Result<(Vec<Arc<Service>>, Vec<invalid::LeftOut>), Error> {
        let (services, left_out) = self.finish_unsorted()?;
        // Stable: equal keys keep Marathon's order, as the original's sort does.
        Ok((sorted_by_app_and_port(services), left_out))
    }

    /// [`Builder::finish_all`], sorting through `order`, which remembers the last pass's
    /// order: when the services come in the same order as then, it is reused, not sorted again.
    ///
    /// # Errors
    /// As [`Builder::finish`]; never with [`Options::leave_out_invalid`].
    pub fn finish_ordered(
        self,
        order: &mut Order,
    ) -> Result<(Vec<Arc<Service>>, Vec<invalid::LeftOut>), Error> {
        let (services, left_out) = self.finish_unsorted()?;
        Ok((order.sort(services), left_out))
    }

    fn finish_unsorted(mut self) -> Result<(Vec<Arc<Service>>, Vec<invalid::LeftOut>), Error> {
        let groups = std::mem::take(&mut self.groups);
        let prepared = if self.options.leave_out_invalid {
            let (prepared, failed) = groups.finish_each();
            self.left_out.extend(failed.iter().map(Error::left_out));
            prepared
        } else {
            groups.finish()?
        };
        for prepared in prepared {
            self.model(&prepared);
        }
        if let Some(e) = self.label_error {
            return Err(e);
        }
        Ok((self.services, self.left_out))
    }

    fn model(&mut self, prepared: &deployment::Prepared) {
        let app = &prepared.app;
        let is_framework = self
            .options
            .framework_name
            .as_deref()
            .is_some_and(|f| app.id.get(1..) == Some(f));
        if is_framework || self.label_error.is_some() {
            return;
        }
        match app_services(
            app,
            &prepared.draining,
            self.options,
            &mut self.assigner,
            self.resolver,
            self.health,
        ) {
            Ok(services) => self.services.extend(services.into_iter().map(Arc::new)),
            Err(e) if self.options.leave_out_invalid => self.left_out.push(e.left_out()),
            Err(e) => self.label_error = Some(e),
        }
    }
}

/// Sorts services by `(app id, service port)`, stably (only pointers move).
fn sorted_by_app_and_port(mut services: Vec<Arc<Service>>) -> Vec<Arc<Service>> {
    services.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    services
}

fn sort_key(service: &Service) -> (&str, i64) {
    (service.app_id.as_str(), service.service_port)
}

/// The last pass's service order (live mode): a pass whose services arrive with the same
/// keys in the same order as last time (the usual case: one app's tasks changed) takes the
/// same permutation instead of sorting 10,000 app ids again.
#[derive(Debug, Default)]
pub struct Order {
    /// The unsorted services of the last pass.
    last: Vec<Arc<Service>>,
    /// `last[permutation[i]]` is the i-th service in sorted order.
    permutation: Vec<usize>,
}

impl Order {
    /// `services` sorted as [`Builder::finish_all`] sorts them.
    pub fn sort(&mut self, services: Vec<Arc<Service>>) -> Vec<Arc<Service>> {
        let same_keys = self.last.len() == services.len()
            && self
                .last
                .iter()
                .zip(&services)
                .all(|(a, b)| Arc::ptr_eq(a, b) || sort_key(a) == sort_key(b));
        if !same_keys {
            let mut permutation: Vec<usize> = (0..services.len()).collect();
            permutation.sort_by(|&a, &b| sort_key(&services[a]).cmp(&sort_key(&services[b])));
            self.permutation = permutation;
        }
        let sorted = self
            .permutation
            .iter()
            .map(|&i| services[i].clone())
            .collect();
        self.last = services;
        sorted
    }
}

fn app_services(
    app: &App,
    draining: &[bool],
    options: &Options,
    assigner: &mut PortAssigner,
    resolver: &mut Resolver,
    health: &mut HealthMemory,
) -> Result<Vec<Service>, Error> {
    invalid::check_app(app, options.leave_out_invalid)?;
    let mode = Mode::of(app);
    let app_groups: Vec<String> = app
        .labels
        .get("HAPROXY_GROUP")
        .map(|g| g.split(',').map(String::from).collect())
        .unwrap_or_default();
    let port_labels = labels::per_port(&app.labels);
    let service_ports = assigner.service_ports(app, mode);

    // Keyed by the Marathon service port; a repeated port keeps the last service but the
    // first one's position (Python dict semantics).
    let mut by_port: Vec<(i64, Service)> = Vec::new();
    for (index, port) in service_ports.iter().enumerate() {
        let Some(port) = *port else {
            tracing::warn!(app_id = %app.id, index, "skipping a port without a service port");
            continue;
        };
        let mut service = Service::new(
            app.id.to_string(),
            port,
            health_check_for(app, index as i64).map(HealthCheck::from),
            options.strict_mode,
        );
        service.app_groups = app_groups.clone();
        service.labels = labels::of_port(&app.labels, index);
        if let Some(list) = port_labels.get(&index) {
            labels::apply(&mut service, index, list)?;
        }
        borrow_health_check(&mut service, app);
        match by_port.iter_mut().find(|(p, _)| *p == port) {
            Some(slot) => slot.1 = service,
            None => by_port.push((port, service)),
        }
    }

    let checks_matter = options.health_check && !app.health_checks.is_empty();
    for (task, &drain) in app.tasks.iter().zip(draining) {
        if !routable(task) || (checks_matter && !health.is_alive(task)) {
            continue;
        }
        if !invalid::task_fields_ok(app, task) {
            continue;
        }
        let Some(ip) = network::task_ip(task, mode, resolver) else {
            continue;
        };
        let ports = network::task_ports(app, task, mode);
        let host = task.host.clone().unwrap_or_default();
        for (task_port, service_port) in ports.iter().zip(&service_ports) {
            let Some(service_port) = service_port else {
                continue;
            };
            if let Some((_, service)) = by_port.iter_mut().find(|(p, _)| p == service_port) {
                service.backends.push(Backend {
                    host: host.to_string(),
                    ip: ip.clone(),
                    port: *task_port,
                    draining: drain,
                });
            }
        }
    }

    Ok(with_backends(by_port))
}

/// A port without its own health check borrows the one `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX`
/// names (an HTTP one makes the service HTTP).
fn borrow_health_check(service: &mut Service, app: &App) {
    if service.health_check.is_some() {
        return;
    }
    let Some(borrowed) = service
        .healthcheck_port_index
        .and_then(|i| health_check_for(app, i))
    else {
        return;
    };
    if let Some("HTTP" | "HTTPS" | "MESOS_HTTP" | "MESOS_HTTPS") = borrowed.protocol.as_deref() {
        service.mode = Some(ProxyMode::Http);
    }
    service.health_check = Some(Box::new(HealthCheck::from(borrowed)));
}

/// The services that got at least one backend, their backends in (host, port) order.
fn with_backends(by_port: Vec<(i64, Service)>) -> Vec<Service> {
    let mut services: Vec<Service> = by_port
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| !s.backends.is_empty())
        .collect();
    for service in &mut services {
        service
            .backends
            .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    }
    services
}

/// The health check of port `index`: the first check with a port, or with that `portIndex`.
/// Negative indexes count from the end, as Python list indexing does for the borrowed check.
fn health_check_for<'a>(app: &'a App<'_>, index: i64) -> Option<&'a types::HealthCheck> {
    app.health_checks.iter().find(|check| {
        let has_port = check
            .port
            .as_ref()
            .is_some_and(|p| p.as_f64().is_some_and(|v| v != 0.0));
        has_port || check.port_index.as_ref().and_then(|p| p.as_f64()) == Some(index as f64)
    })
}

/// Task states marathon-lb routes to: running, and lost/unreachable ones (they may still serve).
fn routable(task: &Task) -> bool {
    let has_host = task.host.as_deref().is_some_and(|h| !h.is_empty());
    let state_ok = !matches!(
        task.state.as_deref(),
        Some(
            "TASK_STAGING"
                | "TASK_STARTING"
                | "TASK_KILLING"
                | "TASK_FINISHED"
                | "TASK_FAILED"
                | "TASK_KILLED"
                | "TASK_ERROR"
                | "TASK_DROPPED"
                | "TASK_GONE"
                | "TASK_GONE_BY_OPERATOR"
                | "TASK_UNKNOWN"
        )
    );
    has_host && state_ok
}

impl HealthMemory {
    /// Whether the task passes `--health-check`, updating the memory from its results.
    fn is_alive(&mut self, task: &Task) -> bool {
        match &task.health_check_results {
            None => self.alive.get(task.id.as_ref()).copied().unwrap_or(false),
            Some(results) => {
                let alive = results.iter().any(|r| r.alive);
                if self.alive.len() > 100_000 {
                    self.alive.clear();
                }
                self.alive.insert(task.id.to_string(), alive);
                alive
            }
        }
    }
}

/// Services grouped by app id: `siblings(i)` are the services of `services[i]`'s app, in
/// service-port order (used by `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX`).
pub fn sibling_ranges(services: &[Arc<Service>]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::with_capacity(services.len());
    let mut start = 0;
    for i in 1..=services.len() {
        if i == services.len() || services[i].app_id != services[start].app_id {
            ranges.extend(std::iter::repeat_n(start..i, i - start));
            start = i;
        }
    }
    ranges
}

/// Distinct app ids among services (for counting).
pub fn app_count(services: &[Arc<Service>]) -> usize {
    services
        .iter()
        .map(|s| s.app_id.as_str())
        .collect::<HashSet<_>>()
        .len()
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
