//! Which service a line of HAProxy's output is about.
//!
//! HAProxy names the place of a problem in three ways: `[FILE:LINE]` / `(FILE:LINE)`
//! references, and quoted proxy names (`Proxy 'x'`, `backend 'x'`, `frontend 'x'`). A line
//! number is mapped to the config section holding it; a service's own sections (`frontend X`,
//! `backend X`, `listen X`, `userlist user_X`) are named after its backend, and the n-th
//! section of a name belongs to the n-th service of that name (two apps can render the same
//! name). A line inside a shared section (`marathon_http_in`, grouped vhost frontends) belongs
//! to the rule block it is in, which ends with a `use_backend X` line naming the service.

use std::collections::HashMap;

use crate::model::Service;
use crate::render::Rendered;

/// The backend name of a service: the app id without its leading `/`, every `/` replaced by
/// `_`, then `_` and the service port. Per-service frontends carry the same name.
pub(super) fn backend_name(service: &Service) -> String {
    let path = service
        .app_id
        .get(1..)
        .unwrap_or_default()
        .replace('/', "_");
    format!("{path}_{}", service.service_port)
}

/// One service a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit<'a> {
    /// The service, as an index into the services the [`Index`] was built from.
    pub service: usize,
    /// The config (or map) line the message points at, when it gives one.
    pub line: Option<&'a str>,
}

/// A `[kind name]` section of the config, with its 1-based line range.
#[derive(Debug)]
struct Section<'a> {
    /// `frontend`, `backend`, `listen`, `userlist`, `global`, ...
    kind: &'a str,
    /// The section's name (empty for `global`/`defaults`).
    name: &'a str,
    /// The line of the section header.
    first: usize,
    /// The section's last line.
    last: usize,
    /// How many sections of the same kind and name come before this one.
    occurrence: usize,
}

/// A rendered config and its maps, indexed to attribute HAProxy's messages to services.
pub(super) struct Index<'a> {
    /// Config lines; line `n` is `lines[n - 1]`.
    lines: Vec<&'a str>,
    /// Sections in config order.
    sections: Vec<Section<'a>>,
    /// Backend name -> the services rendering it, in config order.
    names: HashMap<String, Vec<usize>>,
    /// `domain2backend.map` lines.
    domain_map: Vec<&'a str>,
    /// `app2backend.map` lines.
    app_map: Vec<&'a str>,
}

impl<'a> Index<'a> {
    /// Indexes `rendered`, the config of `services` (`(index, service)` in render order; the
    /// index is what [`Hit::service`] reports).
    pub fn new<'s>(
        services: impl IntoIterator<Item = (usize, &'s Service)>,
        rendered: &'a Rendered,
    ) -> Self {
        let mut names: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, service) in services {
            names.entry(backend_name(service)).or_default().push(index);
        }
        let lines: Vec<&str> = rendered.config.lines().collect();
        Self {
            sections: sections(&lines),
            lines,
            names,
            domain_map: rendered.domain_map.lines().collect(),
            app_map: rendered.app_map.lines().collect(),
        }
    }

    /// The services `message` (one line of HAProxy's output) is about; empty when it names
    /// none (a problem in the global part of the config, or a summary line).
    pub fn attribute(&self, message: &str) -> Vec<Hit<'a>> {
        let mut hits = Vec::new();
        for (file, line) in references(message) {
            if let Some(hit) = self.at(file, line) {
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
            }
        }
        if hits.is_empty() {
            for name in quoted(message) {
                if let Some(&service) = self.names.get(name).and_then(|s| s.last()) {
                    let hit = Hit {
                        service,
                        line: None,
                    };
                    if !hits.contains(&hit) {
                        hits.push(hit);
                    }
                }
            }
        }
        hits
    }

    /// The rule blocks of `service` in the shared sections `message` points at (the `acl`
    /// lines and the `use_backend` line routing to it): the vhost, path and mode of a service
    /// show there, not in its own sections.
    pub fn rules_of(&self, message: &str, service: usize) -> Vec<&'a str> {
        let mut rules = Vec::new();
        for (_, line) in references(message) {
            let Some(section) = self
                .sections
                .iter()
                .find(|s| s.first <= line && line <= s.last)
            else {
                continue;
            };
            if self.owner(section).is_some() {
                continue;
            }
            let mut block_start = section.first + 1;
            for n in section.first + 1..=section.last {
                let text = self.lines[n - 1];
                if !text.trim_start().starts_with("use_backend") {
                    continue;
                }
                if self.named_in(text) == Some(service) {
                    rules.extend(&self.lines[block_start - 1..n]);
                }
                block_start = n + 1;
            }
        }
        rules
    }

    /// The service owning line `line` of `file` (the config or one of the maps).
    fn at(&self, file: &str, line: usize) -> Option<Hit<'a>> {
        let map = if file.ends_with("domain2backend.map") {
            Some(&self.domain_map)
        } else if file.ends_with("app2backend.map") {
            Some(&self.app_map)
        } else {
            None
        };
        if let Some(map) = map {
            let text = *map.get(line.checked_sub(1)?)?;
            let backend = text.split_whitespace().last()?;
            let service = *self.names.get(backend)?.last()?;
            return Some(Hit {
                service,
                line: Some(text),
            });
        }
        let text = *self.lines.get(line.checked_sub(1)?)?;
        let section = self
            .sections
            .iter()
            .find(|s| s.first <= line && line <= s.last)?;
        if let Some(own) = self.owner(section) {
            return Some(Hit {
                service: own,
                line: Some(text),
            });
        }
        if line == section.first {
            // The header of a shared section says nothing about which of its rules failed.
            return None;
        }
        // Inside a shared section: the rule block ends with `use_backend X`.
        let after = (line..=section.last).filter_map(|n| self.named_in(self.lines[n - 1]));
        let before = (section.first + 1..line)
            .rev()
            .filter_map(|n| self.named_in(self.lines[n - 1]));
        let service = after.chain(before).next()?;
        Some(Hit {
            service,
            line: Some(text),
        })
    }

    /// The service whose own section this is, if any.
    fn owner(&self, section: &Section<'_>) -> Option<usize> {
        let name = match section.kind {
            "frontend" | "backend" | "listen" => section.name,
            "userlist" => section.name.strip_prefix("user_")?,
            _ => return None,
        };
        let services = self.names.get(name)?;
        services
            .get(section.occurrence)
            .or_else(|| services.last())
            .copied()
    }

    /// The service a config line names as a whole word (`use_backend X if ...`).
    fn named_in(&self, line: &str) -> Option<usize> {
        line.split_whitespace()
            .find_map(|word| self.names.get(word).and_then(|s| s.last()).copied())
    }
}

/// The sections of a config: a line starting without indentation opens one.
fn sections<'a>(lines: &[&'a str]) -> Vec<Section<'a>> {
    let mut sections: Vec<Section<'a>> = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let starts_section = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#');
        if !starts_section {
            continue;
        }
        if let Some(open) = sections.last_mut() {
            open.last = i;
        }
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let name = words.next().unwrap_or_default();
        let count = seen.entry((kind, name)).or_default();
        sections.push(Section {
            kind,
            name,
            first: i + 1,
            last: lines.len(),
            occurrence: *count,
        });
        *count += 1;
    }
    sections
}

/// `(file, line)` of every `[FILE:LINE]` and `(FILE:LINE)` in a message, in order.
fn references(message: &str) -> Vec<(&str, usize)> {
    let mut refs = Vec::new();
    for (open, close) in [('[', ']'), ('(', ')')] {
        let mut rest = message;
        while let Some(start) = rest.find(open) {
            rest = &rest[start + 1..];
            let Some(end) = rest.find(close) else { break };
            let inner = &rest[..end];
            if let Some((file, line)) = inner.rsplit_once(':') {
                if let (false, Ok(line)) = (file.is_empty(), line.trim().parse::<usize>()) {
                    refs.push((file.trim(), line));
                }
            }
        }
    }
    refs
}

/// Every `'quoted'` word of a message.
fn quoted(message: &str) -> Vec<&str> {
    message.split('\'').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn service(app_id: &str, port: i64) -> Arc<Service> {
        Arc::new(Service::new(app_id.into(), port, None, false))
    }

    fn rendered(config: &str) -> Rendered {
        Rendered {
            config: Arc::new(config.into()),
            domain_map: "a.example.com a_1\nb.example.com b_2\n".into(),
            app_map: String::new(),
            incremental: None,
        }
    }

    const CONFIG: &str = "\
global
  daemon
frontend marathon_http_in
  bind *:80
  acl host_a hdr(host) -i a.example.com
  use_backend a_1 if host_a
  acl host_b hdr(host) -i b.example.com
  use_backend b_2 if host_b
frontend a_1
  bind *:1
backend a_1
  server x 1.1.1.1:1
backend a_1
  server y 1.1.1.1:1
userlist user_b_2
  user u password p
";

    fn services() -> Vec<Arc<Service>> {
        vec![service("/a", 1), service("/a", 1), service("/b", 2)]
    }

    fn hits(message: &str) -> Vec<usize> {
        let services = services();
        let rendered = rendered(CONFIG);
        let index = Index::new(services.iter().map(|s| &**s).enumerate(), &rendered);
        index
            .attribute(message)
            .into_iter()
            .map(|h| h.service)
            .collect()
    }

    #[test]
    fn backend_names_follow_the_renderer() {
        assert_eq!(backend_name(&service("/grp/web", 80)), "grp_web_80");
    }

    #[test]
    fn a_line_in_a_service_section_names_the_nth_service_of_that_name() {
        assert_eq!(
            hits("[ALERT] : config : parsing [haproxy.cfg:12] : unknown keyword 'x'"),
            [0]
        );
        assert_eq!(
            hits("[ALERT] : config : Parsing [haproxy.cfg:13]: backend 'a_1' has the same name as backend 'a_1' declared at haproxy.cfg:11."),
            [1]
        );
        assert_eq!(hits("parsing [haproxy.cfg:16] : bad user"), [2]);
    }

    #[test]
    fn a_line_in_a_shared_frontend_belongs_to_its_rule_block() {
        assert_eq!(hits("parsing [haproxy.cfg:7] : error detected"), [2]);
        assert_eq!(hits("parsing [haproxy.cfg:6] : error detected"), [1]);
        assert_eq!(
            hits("parsing [haproxy.cfg:3] : header"),
            Vec::<usize>::new()
        );
        assert_eq!(
            hits("parsing [haproxy.cfg:2] : global"),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn quoted_names_are_used_when_no_line_points_at_a_service() {
        assert_eq!(
            hits("config : http frontend 'marathon_http_in' (haproxy.cfg:3) tries to use incompatible tcp backend 'b_2' (haproxy.cfg:99)"),
            [2]
        );
        assert_eq!(
            hits("config : Proxy 'a_1': unable to find required use_backend: 'a_1'."),
            [1]
        );
        assert_eq!(
            hits("config : Fatal errors found in configuration."),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn rule_blocks_of_a_service_in_the_shared_sections_a_message_names() {
        let services = services();
        let rendered = rendered(CONFIG);
        let index = Index::new(services.iter().map(|s| &**s).enumerate(), &rendered);
        let message =
            "frontend 'marathon_http_in' (haproxy.cfg:3) uses backend 'b_2' (haproxy.cfg:16)";
        assert_eq!(
            index.rules_of(message, 2),
            [
                "  acl host_b hdr(host) -i b.example.com",
                "  use_backend b_2 if host_b"
            ]
        );
        assert!(index.rules_of(message, 0).is_empty());
    }

    #[test]
    fn map_lines_name_their_backend() {
        assert_eq!(hits("parsing [/tmp/x/domain2backend.map:2] : bad"), [2]);
    }
}
