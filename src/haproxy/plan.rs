//! The planner: the config HAProxy runs vs the newly rendered one -> `Unchanged`,
//! `Runtime(ops)` or `Reload(changes)`.
//!
//! Pure (no I/O), like sozu's `ConfigState::diff`: both configs are parsed into sections and
//! compared. A change that only adds, removes or (un)drains `server` lines of existing backends
//! can be applied to the running process through the Runtime API, so task churn never reloads
//! HAProxy. Anything else (a new or removed frontend/backend, any other line, a map file, a
//! server line the Runtime API cannot express) needs a reload.

use std::collections::BTreeMap;
use std::fmt;

/// What to do to make the running HAProxy serve the new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing changed.
    Unchanged,
    /// Only servers changed, and every change can be applied to the running process.
    Runtime(Vec<Op>),
    /// The process must reload; why (never empty).
    Reload(Vec<Change>),
}

/// One Runtime API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `add server <backend>/<name> <addr> <options>`, then `enable health` (when checked) and
    /// `set server ... state ready` unless `disabled`.
    Add {
        /// Backend name.
        backend: String,
        /// The server as its config line gives it.
        server: Server,
    },
    /// `set server <backend>/<name> state maint`, wait for its sessions to end, `del server`.
    Delete {
        /// Backend name.
        backend: String,
        /// Server name.
        name: String,
    },
    /// `set server <backend>/<name> state ready|maint` (a blue/green task (un)drained).
    SetDisabled {
        /// Backend name.
        backend: String,
        /// Server name.
        name: String,
        /// `true`: maint (the config line says `disabled`); `false`: ready.
        disabled: bool,
    },
}

impl Op {
    /// The backend it changes.
    pub fn backend(&self) -> &str {
        match self {
            Op::Add { backend, .. }
            | Op::Delete { backend, .. }
            | Op::SetDisabled { backend, .. } => backend,
        }
    }

    /// Short name for metrics: `add`, `del`, `state`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Delete { .. } => "del",
            Op::SetDisabled { .. } => "state",
        }
    }
}

/// Why a reload is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// HAProxy is not running this config yet (first start, or its state is unknown).
    Initial,
    /// A frontend/backend/listen/userlist section appeared.
    Added(String),
    /// A section disappeared.
    Removed(String),
    /// A section's non-server lines (or the global/defaults sections) changed.
    Modified(String),
    /// A server change the Runtime API cannot express.
    Server {
        /// Backend name.
        backend: String,
        /// Server name.
        name: String,
        /// Why it needs a reload.
        why: &'static str,
    },
    /// A map file changed.
    Map(&'static str),
}

impl Change {
    /// The reload reason category, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Change::Initial => "initial",
            Change::Added(_) => "new-app",
            Change::Removed(_) => "removed-app",
            Change::Modified(_) => "config-change",
            Change::Server { .. } => "server-change",
            Change::Map(_) => "map-change",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Initial => f.write_str("initial config"),
            Change::Added(s) => write!(f, "section {s} added"),
            Change::Removed(s) => write!(f, "section {s} removed"),
            Change::Modified(s) => write!(f, "section {s} changed"),
            Change::Server { backend, name, why } => write!(f, "server {backend}/{name}: {why}"),
            Change::Map(m) => write!(f, "{m} changed"),
        }
    }
}

/// A `server` line: `server <name> <addr>[:<port>] <options...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Server name.
    pub name: String,
    /// `addr:port` as written.
    pub address: String,
    /// The options after the address, without `disabled`.
    pub options: Vec<String>,
    /// Whether the line says `disabled`.
    pub disabled: bool,
}

impl Server {
    fn parse(line: &str) -> Option<Server> {
        let mut words = line.split_whitespace();
        if words.next()? != "server" {
            return None;
        }
        let name = words.next()?.to_owned();
        let address = words.next()?.to_owned();
        let mut disabled = false;
        let options = words
            .filter(|w| {
                let is_disabled = *w == "disabled";
                disabled |= is_disabled;
                !is_disabled
            })
            .map(String::from)
            .collect();
        Some(Server {
            name,
            address,
            options,
            disabled,
        })
    }

    /// Whether the address is an IP literal (the Runtime API is only given IPs).
    fn has_ip_address(&self) -> bool {
        let host = match self.address.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.address.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>().is_ok()
    }

    /// The options without `id <n>`.
    fn without_id(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.options.len());
        let mut words = self.options.iter();
        while let Some(word) = words.next() {
            if word == "id" {
                words.next();
            } else {
                out.push(word.as_str());
            }
        }
        out
    }

    /// Whether it has a health check (so `enable health` is needed after `add server`).
    pub fn checked(&self) -> bool {
        self.options.iter().any(|o| o == "check")
    }

    /// Why `add server` cannot create this server, if it cannot.
    fn unsupported(&self) -> Option<&'static str> {
        if !self.has_ip_address() {
            return Some("address is not an IP address");
        }
        if self.options.iter().any(|o| o == "cookie") {
            return Some("HAProxy 2.6 does not accept 'cookie' on dynamic servers");
        }
        None
    }

    /// The arguments of `add server` after the address (the line's own options).
    pub fn add_args(&self) -> String {
        let mut args = self.options.join(" ");
        if self.disabled {
            args.push_str(" disabled");
        }
        args.trim().to_owned()
    }
}

/// A config split into sections.
#[derive(Debug, Default)]
struct Sections<'a> {
    /// Section header (e.g. `backend web_80`) -> (lines without servers, servers).
    by_header: BTreeMap<&'a str, (Vec<&'a str>, Vec<&'a str>)>,
    /// Header order of appearance.
    order: Vec<&'a str>,
}

fn sections(config: &str) -> Sections<'_> {
    let mut out = Sections::default();
    let mut current = "";
    for line in config.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            current = line.trim_end();
            out.order.push(current);
            out.by_header.entry(current).or_default();
            continue;
        }
        let entry = out.by_header.entry(current).or_default();
        if line.trim_start().starts_with("server ") && current.starts_with("backend ") {
            entry.1.push(line.trim());
        } else {
            entry.0.push(line.trim_end());
        }
    }
    out
}

/// Dynamic servers need a balance algorithm that supports them.
fn balance_is_dynamic(lines: &[&str]) -> bool {
    let balance = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("balance "))
        .map(str::trim);
    match balance {
        None => true, // roundrobin
        Some(b) => ["roundrobin", "leastconn", "first", "random"]
            .iter()
            .any(|d| b == *d || b.starts_with(&format!("{d}("))),
    }
}

/// The configs and maps HAProxy runs or would run.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// `haproxy.cfg`.
    pub config: &'a str,
    /// `domain2backend.map`.
    pub domain_map: &'a str,
    /// `app2backend.map`.
    pub app_map: &'a str,
}

/// Plans how to get from `running` (None: unknown) to `next`.
pub fn plan(running: Option<Snapshot<'_>>, next: Snapshot<'_>) -> Plan {
    let Some(running) = running else {
        return Plan::Reload(vec![Change::Initial]);
    };
    if running.config == next.config
        && running.domain_map == next.domain_map
        && running.app_map == next.app_map
    {
        return Plan::Unchanged;
    }
    let mut changes = Vec::new();
    if running.domain_map != next.domain_map {
        changes.push(Change::Map("domain2backend.map"));
    }
    if running.app_map != next.app_map {
        changes.push(Change::Map("app2backend.map"));
    }
    let (old, new) = (sections(running.config), sections(next.config));
    if old.order != new.order {
        for header in &new.order {
            if !old.by_header.contains_key(header) {
                changes.push(Change::Added(header.to_string()));
            }
        }
        for header in &old.order {
            if !new.by_header.contains_key(header) {
                changes.push(Change::Removed(header.to_string()));
            }
        }
        if changes.is_empty() {
            changes.push(Change::Modified("section order".into()));
        }
    }
    let mut ops = Vec::new();
    for (header, (new_lines, new_servers)) in &new.by_header {
        let Some((old_lines, old_servers)) = old.by_header.get(header) else {
            continue;
        };
        if old_lines != new_lines {
            changes.push(Change::Modified(header.to_string()));
            continue;
        }
        if old_servers == new_servers {
            continue;
        }
        let backend = header.trim_start_matches("backend ").trim();
        server_ops(
            backend,
            old_servers,
            new_servers,
            balance_is_dynamic(new_lines),
            &mut ops,
            &mut changes,
        );
    }
    if changes.is_empty() {
        Plan::Runtime(ops)
    } else {
        Plan::Reload(changes)
    }
}

fn server_ops(
    backend: &str,
    old: &[&str],
    new: &[&str],
    dynamic: bool,
    ops: &mut Vec<Op>,
    changes: &mut Vec<Change>,
) {
    let parse = |lines: &[&str]| -> Option<BTreeMap<String, Server>> {
        lines
            .iter()
            .map(|l| Server::parse(l).map(|s| (s.name.clone(), s)))
            .collect()
    };
    let (Some(old), Some(new)) = (parse(old), parse(new)) else {
        changes.push(Change::Modified(format!("backend {backend}")));
        return;
    };
    let change = |name: &str, why| Change::Server {
        backend: backend.into(),
        name: name.into(),
        why,
    };
    // Servers whose id moved (a new server took it: ids are a hash with collisions resolved
    // in name order) are deleted first, so their id is free, and added again.
    let (mut readd, mut adds, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for (name, server) in &new {
        let add = || Op::Add {
            backend: backend.into(),
            server: server.clone(),
        };
        match old.get(name) {
            None if !dynamic => changes.push(change(
                name,
                "balance algorithm does not allow dynamic servers",
            )),
            None => match server.unsupported() {
                Some(why) => changes.push(change(name, why)),
                None => adds.push(add()),
            },
            Some(was)
                if was.address == server.address
                    && was.without_id() == server.without_id()
                    && was.options != server.options =>
            {
                match server
                    .unsupported()
                    .or((!dynamic).then_some("balance algorithm does not allow dynamic servers"))
                {
                    Some(why) => changes.push(change(name, why)),
                    None => {
                        readd.push(Op::Delete {
                            backend: backend.into(),
                            name: name.clone(),
                        });
                        adds.push(add());
                    }
                }
            }
            Some(was) if was.address != server.address || was.options != server.options => {
                changes.push(change(name, "server line changed"))
            }
            Some(was) if was.disabled != server.disabled => rest.push(Op::SetDisabled {
                backend: backend.into(),
                name: name.clone(),
                disabled: server.disabled,
            }),
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            rest.push(Op::Delete {
                backend: backend.into(),
                name: name.clone(),
            });
        }
    }
    ops.extend(readd.into_iter().chain(adds).chain(rest));
}

/// The `stats socket` path of the global section (the Runtime API), if any.
pub fn stats_socket(config: &str) -> Option<&str> {
    let mut in_global = false;
    for line in config.lines() {
        if !line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            in_global = line.trim() == "global";
            continue;
        }
        if in_global {
            if let Some(rest) = line.trim().strip_prefix("stats socket ") {
                return rest.split_whitespace().next();
            }
        }
    }
    None
}

/// The servers each backend of a config should have: backend -> [(server, disabled)].
pub fn expected_servers(config: &str) -> BTreeMap<String, Vec<(String, String, bool)>> {
    sections(config)
        .by_header
        .into_iter()
        .filter_map(|(header, (_, servers))| {
            let backend = header.strip_prefix("backend ")?.trim().to_owned();
            let list = servers
                .iter()
                .filter_map(|l| Server::parse(l))
                .map(|s| (s.name, s.address, s.disabled))
                .collect();
            Some((backend, list))
        })
        .collect()
}

/// [`expected_servers`] of only `backends`, found by their header lines: checking the few
/// backends a Runtime API update touched reads their sections, not a 12 MB config (whose full
/// parse took ~140 ms at 10,000 apps x 10 tasks). Falls back to the full parse when a header
/// is not written as `backend <name>` on a line of its own.
pub fn expected_servers_of(
    config: &str,
    backends: &[&str],
) -> BTreeMap<String, Vec<(String, String, bool)>> {
    let mut out = BTreeMap::new();
    for backend in backends {
        let Some(servers) = servers_of(config, backend) else {
            let mut all = expected_servers(config);
            all.retain(|name, _| backends.contains(&name.as_str()));
            return all;
        };
        out.insert((*backend).to_owned(), servers);
    }
    out
}

/// The servers of every `backend <name>` section of `config` (`None`: no such header line).
fn servers_of(config: &str, backend: &str) -> Option<Vec<(String, String, bool)>> {
    let header = format!("\nbackend {backend}");
    let mut found = None;
    for (at, _) in config.match_indices(&header) {
        let rest = &config[at + header.len()..];
        let (header_end, body) = rest.split_once('\n').unwrap_or((rest, ""));
        if !header_end.trim().is_empty() {
            continue; // another backend whose name starts with this one
        }
        let servers: &mut Vec<_> = found.get_or_insert_with(Vec::new);
        let lines = body.lines().filter(|l| !l.trim().is_empty());
        for line in lines.take_while(|l| l.starts_with(char::is_whitespace)) {
            if let Some(s) = Server::parse(line.trim()) {
                servers.push((s.name, s.address, s.disabled));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
