//! The services the config serves, as the state API lists them: the model's view (app,
//! ports, vhosts, labels, tasks) under the names HAProxy knows them by.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::compat::clean_name;

use crate::model::Service;

/// One load-balanced service port of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    /// Marathon app id.
    pub app_id: String,
    /// The app's port index (`n` of `HAPROXY_{n}_*`), when its labels name it.
    pub port_index: Option<u32>,
    /// The service port HAProxy binds.
    pub service_port: i64,
    /// The frontend's name (marathon-lb names frontend and backend alike).
    pub frontend: String,
    /// The address the frontend binds (`*:10000`, `127.0.0.1:10000`), from its `bind` line.
    pub bind: String,
    /// `http` or `tcp`.
    pub mode: String,
    /// `HAPROXY_{n}_VHOST` names.
    pub vhosts: Vec<String>,
    /// `HAPROXY_{n}_PATH`.
    pub path: Option<String>,
    /// The backend's name.
    pub backend: String,
    /// The `HAPROXY_*` labels that shaped it.
    pub labels: BTreeMap<String, String>,
    /// Its servers (tasks), in config order (listed by the state API with their live state).
    #[serde(skip)]
    pub servers: Vec<ServerInfo>,
}

/// One server (task) of a backend, as the config names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    /// HAProxy's server name.
    pub name: String,
    /// `ip:port` HAProxy connects to.
    pub address: String,
    /// The agent host.
    pub host: String,
    /// An old task of a blue/green deployment, kept `disabled`.
    pub draining: bool,
}

/// The services of `services` that `config` serves (a `backend` section of their name),
/// with the address their frontend really binds (templates may change it).
pub fn served(services: &[Arc<Service>], config: &str) -> Vec<ServiceInfo> {
    let backends: HashSet<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("backend "))
        .map(str::trim)
        .collect();
    let binds = frontend_binds(config);
    services
        .iter()
        .filter_map(|s| {
            let backend = backend_name(s);
            if !backends.contains(backend.as_str()) {
                return None;
            }
            let mut info = info(s, backend);
            if let Some(bind) = binds.get(info.frontend.as_str()) {
                info.bind = (*bind).to_owned();
            }
            Some(info)
        })
        .collect()
}

/// Frontend name -> the address of its first `bind` line.
fn frontend_binds(config: &str) -> HashMap<&str, &str> {
    let mut binds = HashMap::new();
    let mut current: Option<&str> = None;
    for line in config.lines() {
        if let Some(name) = line.strip_prefix("frontend ") {
            current = Some(name.trim());
        } else if !line.starts_with(char::is_whitespace) && !line.is_empty() {
            current = None;
        } else if let (Some(name), Some(bind)) = (current, line.trim().strip_prefix("bind ")) {
            if let Some(addr) = bind.split_whitespace().next() {
                binds.entry(name).or_insert(addr);
            }
        }
    }
    binds
}

fn info(s: &Service, backend: String) -> ServiceInfo {
    let vhosts: Vec<String> = s
        .hostname
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let mode = match &s.mode {
        Some(mode) => mode.to_string(),
        None if vhosts.is_empty() => "tcp".to_owned(),
        None => "http".to_owned(),
    };
    ServiceInfo {
        app_id: s.app_id.clone(),
        port_index: port_index(&s.labels),
        service_port: s.service_port,
        frontend: backend.clone(),
        bind: format!("{}:{}", s.bind_addr, s.service_port),
        mode,
        vhosts,
        path: s.path.clone(),
        backend,
        labels: s.labels.iter().cloned().collect(),
        servers: s
            .backends
            .iter()
            .map(|b| ServerInfo {
                name: server_name(&b.host, &b.ip, b.port),
                address: format!("{}:{}", b.ip, b.port),
                host: b.host.clone(),
                draining: b.draining,
            })
            .collect(),
    }
}

/// The backend (and frontend) name the render gives a service: the app id without its
/// leading `/`, `/` as `_`, then `_` and the service port.
pub fn backend_name(s: &Service) -> String {
    let app_path = s.app_id.get(1..).unwrap_or_default().replace('/', "_");
    format!("{app_path}_{}", s.service_port)
}

/// The server name the render gives a task: `host_ip_port` (or `ip_port` when the host is
/// the address), every character outside `[a-zA-Z0-9-]` as `_`.
pub fn server_name(host: &str, ip: &str, port: i64) -> String {
    if host == ip {
        format!("{}_{port}", clean_name(ip))
    } else {
        format!("{}_{}_{port}", clean_name(host), clean_name(ip))
    }
}

/// The `n` of the first `HAPROXY_{n}_*` label.
fn port_index(labels: &[(String, String)]) -> Option<u32> {
    labels.iter().find_map(|(k, _)| {
        let rest = k.strip_prefix("HAPROXY_")?;
        let (n, _) = rest.split_once('_')?;
        n.parse().ok()
    })
}

/// What the last successful pass serves: its services, HAProxy's stats page and the
/// certificates its config loads. A pass only hands over its services and config (cheap:
/// shared, not copied row by row); they are described on first read (the state API, the
/// dashboard, health, the metrics), so 10,000 services cost nothing per pass.
#[derive(Debug, Default)]
pub struct Served {
    source: Option<Source>,
    described: OnceLock<Described>,
}

#[derive(Debug)]
struct Source {
    services: Arc<Vec<Arc<Service>>>,
    config: Arc<String>,
    /// Apps left out after the build (HAProxy rejected them): not described.
    left_out: HashSet<String>,
}

/// [`Served`], described.
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// [`served`] services.
    pub services: Vec<ServiceInfo>,
    /// [`super::stats_page`] of the config.
    pub stats_page: Option<(u16, String)>,
    /// [`super::certs::served`] by the config.
    pub certificates: Vec<std::path::PathBuf>,
}

impl Served {
    /// What `built` serves, described when first read.
    pub fn of(built: &crate::run::Built) -> Self {
        Self {
            source: Some(Source {
                services: built.services.clone(),
                config: built.rendered.config.clone(),
                left_out: HashSet::new(),
            }),
            described: OnceLock::new(),
        }
    }

    /// Already described (tests, and passes that describe nothing).
    pub fn described_as(described: Described) -> Self {
        Self {
            source: None,
            described: OnceLock::from(described),
        }
    }

    /// Leaves the services of `app_ids` out of the description.
    pub fn without<'a>(mut self, app_ids: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(source) = &mut self.source {
            source
                .left_out
                .extend(app_ids.into_iter().map(str::to_owned));
        }
        self
    }

    /// The description (made on the first call).
    pub fn described(&self) -> &Described {
        self.described.get_or_init(|| match &self.source {
            None => Described::default(),
            Some(source) => {
                let mut services = served(&source.services, &source.config);
                services.retain(|s| !source.left_out.contains(&s.app_id));
                Described {
                    services,
                    stats_page: super::stats_page(&source.config),
                    certificates: super::certs::served(&source.config),
                }
            }
        })
    }
}

/// What `n` served services of one app describe to (unit tests of the status readers).
#[cfg(test)]
pub(crate) fn served_n(n: usize) -> Arc<Served> {
    let row = |i: usize| ServiceInfo {
        app_id: "/web".into(),
        port_index: Some(0),
        service_port: 10_000 + i as i64,
        frontend: format!("web_{}", 10_000 + i),
        bind: format!("*:{}", 10_000 + i),
        mode: "tcp".into(),
        vhosts: Vec::new(),
        path: None,
        backend: format!("web_{}", 10_000 + i),
        labels: BTreeMap::new(),
        servers: Vec::new(),
    };
    Arc::new(Served::described_as(Described {
        services: (0..n).map(row).collect(),
        ..Described::default()
    }))
}
