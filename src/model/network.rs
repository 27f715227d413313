//! How an app is reached: its networking mode, service ports, and each task's address and ports.
//!
//! Follows marathon-lb 1.x across Marathon's three generations of networking JSON
//! (`ports`/`portDefinitions`, `container.docker.portMappings` with `ipAddress`, and
//! Marathon 1.5 `networks` with `container.portMappings`).

use std::collections::HashMap;

use sha1::{Digest, Sha1};

use crate::marathon::types::{App, PortMapping, Task};

/// The networking mode of an app; the last `networks` entry wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Host networking: tasks are reached on their agent's address and host ports.
    Host,
    /// IP-per-task (`ipAddress`, Docker `USER`, or `networks: container`).
    Container,
    /// Docker bridge (`BRIDGE` or `networks: container/bridge`).
    Bridge,
    /// A `networks` mode Marathon does not define; reached like host, ports like container.
    Other,
}

impl Mode {
    /// Determines the networking mode of an app.
    pub fn of(app: &App) -> Mode {
        let mut mode = Mode::Host;
        if app.ip_address.as_ref().is_some_and(|ip| ip.non_empty) {
            mode = Mode::Container;
        }
        let docker_network = app
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .and_then(|d| d.network.as_deref());
        match docker_network {
            Some("USER") => mode = Mode::Container,
            Some("BRIDGE") => mode = Mode::Bridge,
            _ => {}
        }
        if let Some(last) = app.networks.as_ref().and_then(|n| n.last()) {
            mode = match last.mode.as_deref().unwrap_or("container") {
                "host" => Mode::Host,
                "container" => Mode::Container,
                "container/bridge" => Mode::Bridge,
                _ => Mode::Other,
            };
        }
        mode
    }
}

/// Docker port mappings when there are any, else Marathon 1.5 ones.
fn port_mappings<'a>(app: &'a App<'_>) -> &'a [PortMapping] {
    let Some(container) = &app.container else {
        return &[];
    };
    match container
        .docker
        .as_ref()
        .and_then(|d| d.port_mappings.as_deref())
    {
        Some(docker) if !docker.is_empty() => docker,
        _ => container.port_mappings.as_deref().unwrap_or(&[]),
    }
}

fn port_definition_ports(app: &App) -> Vec<i64> {
    app.port_definitions
        .iter()
        .flatten()
        .filter_map(|p| p.port)
        .collect()
}

fn container_ports(app: &App) -> Vec<i64> {
    port_mappings(app)
        .iter()
        .filter_map(|p| p.container_port)
        .collect()
}

fn discovery_ports(app: &App) -> Vec<i64> {
    app.ip_address
        .as_ref()
        .map(|ip| ip.discovery_ports.clone())
        .unwrap_or_default()
}

/// The ports a task serves, in service-port order.
pub fn task_ports(app: &App, task: &Task, mode: Mode) -> Vec<i64> {
    let own = task.ports.clone().unwrap_or_default();
    match mode {
        Mode::Host if !own.is_empty() => own,
        Mode::Host => port_definition_ports(app),
        Mode::Bridge if !own.is_empty() => own,
        Mode::Bridge => {
            let defined = port_definition_ports(app);
            if defined.is_empty() {
                container_ports(app)
            } else {
                defined
            }
        }
        Mode::Container | Mode::Other => {
            let discovered = discovery_ports(app);
            if discovered.is_empty() {
                container_ports(app)
            } else {
                discovered
            }
        }
    }
}

/// The address HAProxy should use for a task: its own IP for IP-per-task, else its host's IPv4.
pub fn task_ip(task: &Task, mode: Mode, resolver: &mut Resolver) -> Option<String> {
    if mode == Mode::Container {
        let first = task.ip_addresses.as_ref()?.first()?;
        return first
            .ip_address
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .map(String::from);
    }
    let host = task.host.as_deref().filter(|h| !h.is_empty())?;
    resolver.resolve(host)
}

/// A host-name lookup to IPv4, given by the caller: DNS in the binary
/// ([`crate::run::dns_ipv4`]), a table in tests. The model does no I/O itself.
pub type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Resolves agent host names to IPv4 addresses through the caller's [`Lookup`], caching
/// answers for the process lifetime. Without a lookup ([`Resolver::default`]) only IPv4
/// literals resolve.
#[derive(Default)]
pub struct Resolver {
    /// Host name -> resolved IPv4 (or `None` when it did not resolve).
    cache: HashMap<String, Option<String>>,
    /// How names are looked up.
    lookup: Option<Lookup>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("cache", &self.cache)
            .field("lookup", &self.lookup.is_some())
            .finish()
    }
}

impl Resolver {
    /// A resolver asking `lookup` for names it has not cached.
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            cache: HashMap::new(),
            lookup: Some(Box::new(lookup)),
        }
    }

    /// The IPv4 address of `host` (an IPv4 literal is returned as is), like `gethostbyname`.
    pub fn resolve(&mut self, host: &str) -> Option<String> {
        if host.parse::<std::net::Ipv4Addr>().is_ok() {
            return Some(host.to_owned());
        }
        if let Some(cached) = self.cache.get(host) {
            return cached.clone();
        }
        let found = self.lookup.as_ref().and_then(|lookup| lookup(host));
        if found.is_none() {
            tracing::warn!(host, "could not resolve task host, ignoring its tasks");
        }
        self.cache.insert(host.to_owned(), found.clone());
        found
    }
}

/// Assigns deterministic service ports to IP-per-task apps that have none (Marathon issue 3636),
/// from the range `--min-serv-port-ip-per-task..=--max-serv-port-ip-per-task`.
#[derive(Debug)]
pub struct PortAssigner {
    /// Inclusive range; `None` disables assignment (`0 0`).
    range: Option<(i64, i64)>,
    /// (app id, task port) -> assigned port (or `None` once the range was exhausted).
    assigned: HashMap<(String, i64), Option<i64>>,
    /// Ports already handed out in this pass, for clash checks.
    used: std::collections::HashSet<i64>,
}

/// How many hashed candidates are tried before scanning the range for a free port.
const MAX_CLASHES: u32 = 50;

impl PortAssigner {
    /// A fresh assigner for one pass over all apps.
    pub fn new(range: Option<(i64, i64)>) -> Self {
        Self {
            range,
            assigned: HashMap::new(),
            used: Default::default(),
        }
    }

    /// How many (app, task port) pairs this pass was given service ports from the range.
    pub fn assigned(&self) -> usize {
        self.assigned.len()
    }

    /// The service ports of an app, in port-index order; `None` where the range is exhausted.
    pub fn service_ports(&mut self, app: &App, mode: Mode) -> Vec<Option<i64>> {
        if matches!(mode, Mode::Container | Mode::Bridge) {
            let ports: Vec<i64> = port_mappings(app)
                .iter()
                .filter_map(|p| p.service_port)
                .collect();
            if !ports.is_empty() {
                return ports.into_iter().map(Some).collect();
            }
        }
        let ports: Vec<i64> = match &app.port_definitions {
            Some(defs) => defs.iter().filter_map(|p| p.port).collect(),
            None => app.ports.iter().flatten().flatten().copied().collect(),
        };
        if ports.is_empty() && mode == Mode::Container && self.range.is_some() {
            if let Some(first) = app.tasks.first() {
                let wanted = task_ports(app, first, mode);
                return wanted
                    .into_iter()
                    .map(|p| self.port_for(&app.id, p))
                    .collect();
            }
        }
        ports.into_iter().map(Some).collect()
    }

    fn port_for(&mut self, app_id: &str, task_port: i64) -> Option<i64> {
        let key = (app_id.to_owned(), task_port);
        if let Some(Some(port)) = self.assigned.get(&key) {
            return Some(*port);
        }
        let port = self.assign(app_id, task_port);
        self.assigned.insert(key, port);
        if let Some(p) = port {
            self.used.insert(p);
        }
        port
    }

    fn assign(&self, app_id: &str, task_port: i64) -> Option<i64> {
        let (min, max) = self.range?;
        let size = max - min + 1;
        if size <= self.assigned.len() as i64 {
            tracing::warn!(app_id, "service ports for IP-per-task apps are exhausted");
            return None;
        }
        for i in 0..MAX_CLASHES {
            let digest = Sha1::digest(format!("{app_id}-{task_port}-{i}").as_bytes());
            let hash = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
            let trial = min + i64::from(hash) % size;
            if !self.used.contains(&trial) {
                return Some(trial);
            }
        }
        (min..=max).find(|p| !self.used.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::types::AppsBody;

    fn app(json: &str) -> App<'static> {
        // Apps borrow from their body; leaking it in a test keeps the helper simple.
        let body: &'static str = Box::leak(format!(r#"{{"apps":[{json}]}}"#).into_boxed_str());
        AppsBody::parse(body.as_bytes()).unwrap().apps.remove(0)
    }

    #[test]
    fn networking_mode_of_every_marathon_shape() {
        let cases = [
            (r#"{"id":"/a"}"#, Mode::Host),
            (r#"{"id":"/a","portDefinitions":[{"port":1}]}"#, Mode::Host),
            (
                r#"{"id":"/a","ipAddress":{"networkName":"dcos"}}"#,
                Mode::Container,
            ),
            (r#"{"id":"/a","ipAddress":{}}"#, Mode::Host),
            (
                r#"{"id":"/a","container":{"docker":{"network":"USER"}}}"#,
                Mode::Container,
            ),
            (
                r#"{"id":"/a","container":{"docker":{"network":"BRIDGE"}}}"#,
                Mode::Bridge,
            ),
            (
                r#"{"id":"/a","container":{"docker":{"network":"HOST"}}}"#,
                Mode::Host,
            ),
            (r#"{"id":"/a","networks":[{"mode":"host"}]}"#, Mode::Host),
            (
                r#"{"id":"/a","networks":[{"name":"dcos"}]}"#,
                Mode::Container,
            ),
            (
                r#"{"id":"/a","networks":[{"mode":"container/bridge"}]}"#,
                Mode::Bridge,
            ),
            (
                r#"{"id":"/a","networks":[{"mode":"container/bridge"},{"mode":"container","name":"x"}]}"#,
                Mode::Container,
            ),
            (
                r#"{"id":"/a","container":{"docker":{"network":"BRIDGE"}},"networks":[{"mode":"host"}]}"#,
                Mode::Host,
            ),
            (r#"{"id":"/a","networks":[{"mode":"weird"}]}"#, Mode::Other),
        ];
        for (json, mode) in cases {
            assert_eq!(Mode::of(&app(json)), mode, "{json}");
        }
    }

    #[test]
    fn service_ports_come_from_mappings_definitions_or_ports() {
        let cases: [(&str, Vec<Option<i64>>); 6] = [
            (
                r#"{"id":"/a","portDefinitions":[{"port":10},{"port":11}],"ports":[99]}"#,
                vec![Some(10), Some(11)],
            ),
            (r#"{"id":"/a","ports":[12,13]}"#, vec![Some(12), Some(13)]),
            (r#"{"id":"/a","portDefinitions":[],"ports":[99]}"#, vec![]),
            (
                r#"{"id":"/a","networks":[{"mode":"container/bridge"}],
                   "container":{"portMappings":[{"containerPort":80,"servicePort":14},{"containerPort":81}]}}"#,
                vec![Some(14)],
            ),
            (
                r#"{"id":"/a","container":{"docker":{"network":"BRIDGE",
                   "portMappings":[{"containerPort":80,"servicePort":15}]},
                   "portMappings":[{"containerPort":80,"servicePort":16}]}}"#,
                vec![Some(15)],
            ),
            (
                // Host networking ignores port mappings.
                r#"{"id":"/a","container":{"portMappings":[{"servicePort":17}]},"portDefinitions":[{"port":18}]}"#,
                vec![Some(18)],
            ),
        ];
        for (json, ports) in cases {
            let app = app(json);
            let mut assigner = PortAssigner::new(Some((10050, 10100)));
            assert_eq!(
                assigner.service_ports(&app, Mode::of(&app)),
                ports,
                "{json}"
            );
        }
    }

    #[test]
    fn ip_per_task_apps_without_service_ports_get_hashed_ports() {
        let json = r#"{"id":"/overlay/api","networks":[{"mode":"container"}],
            "container":{"portMappings":[{"containerPort":8080},{"containerPort":8081}]},
            "tasks":[{"id":"t.1","host":"agent","ipAddresses":[{"ipAddress":"9.0.0.1"}]}]}"#;
        let app = app(json);
        let mut assigner = PortAssigner::new(Some((10050, 10100)));
        let ports = assigner.service_ports(&app, Mode::Container);
        // 10050 + int(sha1("/overlay/api-8080-0")[:8], 16) % 51, as in the original.
        let expected = |key: &str| {
            let d = Sha1::digest(key.as_bytes());
            10050 + i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])) % 51
        };
        assert_eq!(ports[0], Some(expected("/overlay/api-8080-0")));
        assert_eq!(ports[0], Some(10093));
        assert_eq!(ports.len(), 2);
        assert_ne!(ports[0], ports[1]);
        // Stable within a pass, and off when disabled.
        assert_eq!(assigner.service_ports(&app, Mode::Container), ports);
        let mut off = PortAssigner::new(None);
        assert!(off.service_ports(&app, Mode::Container).is_empty());
    }

    #[test]
    fn a_one_port_range_is_exhausted_after_one_app() {
        let mut assigner = PortAssigner::new(Some((10050, 10050)));
        let a = app(
            r#"{"id":"/a","ipAddress":{"discovery":{"ports":[{"number":80}]}},
               "tasks":[{"id":"a.1","host":"h","ipAddresses":[{"ipAddress":"9.0.0.1"}]}]}"#,
        );
        let b = app(
            r#"{"id":"/b","ipAddress":{"discovery":{"ports":[{"number":80}]}},
               "tasks":[{"id":"b.1","host":"h","ipAddresses":[{"ipAddress":"9.0.0.2"}]}]}"#,
        );
        assert_eq!(assigner.service_ports(&a, Mode::Container), [Some(10050)]);
        assert_eq!(assigner.service_ports(&b, Mode::Container), [None]);
    }

    #[test]
    fn task_ports_per_mode() {
        let bridge = app(r#"{"id":"/a","networks":[{"mode":"container/bridge"}],
               "container":{"portMappings":[{"containerPort":80,"servicePort":1}]}}"#);
        let task = |json: &'static str| -> Task<'static> { serde_json::from_str(json).unwrap() };
        let with_ports = task(r#"{"id":"t","host":"h","ports":[31000]}"#);
        let without = task(r#"{"id":"t","host":"h"}"#);
        assert_eq!(task_ports(&bridge, &with_ports, Mode::Bridge), [31000]);
        assert_eq!(task_ports(&bridge, &without, Mode::Bridge), [80]);

        let host = app(r#"{"id":"/a","portDefinitions":[{"port":10}]}"#);
        assert_eq!(task_ports(&host, &with_ports, Mode::Host), [31000]);
        assert_eq!(task_ports(&host, &without, Mode::Host), [10]);

        let legacy = app(
            r#"{"id":"/a","ipAddress":{"discovery":{"ports":[{"number":9000},{"number":"9001"}]}}}"#,
        );
        assert_eq!(
            task_ports(&legacy, &with_ports, Mode::Container),
            [9000, 9001]
        );
        let modern = app(r#"{"id":"/a","networks":[{"mode":"container"}],
               "container":{"portMappings":[{"containerPort":8080}]}}"#);
        assert_eq!(task_ports(&modern, &with_ports, Mode::Container), [8080]);
    }

    #[test]
    fn task_address_is_its_own_ip_for_ip_per_task_else_the_host() {
        let task = |json: &'static str| -> Task<'static> { serde_json::from_str(json).unwrap() };
        let mut resolver = Resolver::default();
        let t = task(
            r#"{"id":"t","host":"10.0.0.1","ipAddresses":[{"ipAddress":"9.0.0.1"},{"ipAddress":"9.0.0.2"}]}"#,
        );
        assert_eq!(
            task_ip(&t, Mode::Container, &mut resolver).as_deref(),
            Some("9.0.0.1")
        );
        assert_eq!(
            task_ip(&t, Mode::Host, &mut resolver).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            task_ip(&t, Mode::Bridge, &mut resolver).as_deref(),
            Some("10.0.0.1")
        );
        let no_ip = task(r#"{"id":"t","host":"10.0.0.1"}"#);
        assert_eq!(task_ip(&no_ip, Mode::Container, &mut resolver), None);
        let named = task(r#"{"id":"t","host":"agent-1"}"#);
        assert_eq!(
            task_ip(&named, Mode::Host, &mut resolver),
            None,
            "no lookup"
        );
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let mut resolver = Resolver::new(move |host| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (host == "agent-1").then(|| "10.1.2.3".to_owned())
        });
        for _ in 0..2 {
            assert_eq!(
                task_ip(&named, Mode::Host, &mut resolver).as_deref(),
                Some("10.1.2.3")
            );
        }
        let unknown = task(r#"{"id":"t","host":"agent-2"}"#);
        assert_eq!(task_ip(&unknown, Mode::Host, &mut resolver), None);
        assert_eq!(task_ip(&unknown, Mode::Host, &mut resolver), None);
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "answers (found or not) are cached"
        );
    }
}
