//! Services + templates -> `haproxy.cfg` text and the two map files.
//!
//! Data flow position: after `model`, before `haproxy` (validate and apply). Pure and
//! deterministic: the same services and templates always give the same bytes, identical to
//! what marathon-lb 1.x writes. Runs in time linear in the number of services and tasks.

mod frontends;
mod incremental;
mod service;
mod vhost;

pub use incremental::{Delta, Incremental};

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{sibling_ranges, Service};
use crate::templates::{FormatError, Name, Template, Templates};
use frontends::{Frontends, Shared};
use service::{Sections, Selected};

/// Why a config could not be rendered. The original aborts the run on all of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template (global, or from an app label) could not be formatted.
    #[error("{}: template {template}{}: {source}", app_id.as_deref().map_or("global".to_string(), |a| format!("app {a}")), label.as_deref().map_or(String::new(), |l| format!(" (from label {l})")))]
    Template {
        /// The app whose service was being rendered, if any.
        app_id: Option<String>,
        /// The template's full name, e.g. `HAPROXY_BACKEND_HEAD`.
        template: String,
        /// The app label that supplied the template text, if it came from a label.
        label: Option<String>,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// A custom `HAPROXY_HEAD` from before marathon-lb 1.12.
    #[error("custom HAPROXY_HEAD must not contain 'daemon' and must contain 'expose-fd listeners' (e.g. 'stats socket /var/run/haproxy/socket expose-fd listeners')")]
    OutdatedHead,
    /// `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX` points outside the app's services or backends.
    #[error("app {app_id}: HAPROXY_{{n}}_BACKEND_HEALTHCHECK_PORT_INDEX={index} does not name a service port with enough tasks")]
    HealthCheckPortIndex {
        /// The app.
        app_id: String,
        /// The index from the label.
        index: i64,
    },
    /// The service's health check lacks a field its templates are formatted with.
    #[error("app {app_id}: health check has no {field}")]
    HealthCheckField {
        /// The app.
        app_id: String,
        /// The missing Marathon field.
        field: &'static str,
    },
}

impl Error {
    /// The app whose label or definition caused this error; `None` for a global problem.
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Error::Template { app_id, .. } => app_id.as_deref(),
            Error::OutdatedHead => None,
            Error::HealthCheckPortIndex { app_id, .. } | Error::HealthCheckField { app_id, .. } => {
                Some(app_id)
            }
        }
    }

    /// The app label behind this error, when one is known.
    pub fn label(&self) -> Option<&str> {
        match self {
            Error::Template { label, .. } => label.as_deref(),
            _ => None,
        }
    }
}

/// Below this many services per thread, rendering in parallel costs more than it saves.
const PARALLEL_CHUNK: usize = 2000;

/// Render options from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--group` values; `*` selects every app.
    pub groups: Vec<String>,
    /// Not `--dont-bind-http-https`: emit `marathon_http_in` and `marathon_https_in`.
    pub bind_http_https: bool,
    /// `--ssl-certs`, comma separated.
    pub ssl_certs: String,
    /// `--haproxy-map`: route vhosts and app ids through map files.
    pub haproxy_map: bool,
    /// Directory of `--haproxy-config`, exactly as given (the maps live there).
    pub haproxy_dir: String,
    /// `--group-https-by-vhost`.
    pub group_https_by_vhost: bool,
}

/// A map file's rows, first seen first, without duplicate pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MapFile {
    rows: Vec<(String, String)>,
    seen: HashSet<(String, String)>,
}

impl MapFile {
    fn add(&mut self, key: &str, value: &str) {
        let row = (key.to_owned(), value.to_owned());
        if self.seen.insert(row.clone()) {
            self.rows.push(row);
        }
    }

    /// The file content: one `key value` line per row.
    pub fn text(&self) -> String {
        self.rows
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
}

/// The two map files of `--haproxy-map`.
#[derive(Debug, Default, Clone)]
pub struct Maps {
    /// `domain2backend.map`: vhost -> backend.
    pub domain: MapFile,
    /// `app2backend.map`: app id -> backend.
    pub app: MapFile,
}

/// A rendered configuration.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `haproxy.cfg`, shared (the status keeps it without a copy of 10 MB).
    pub config: Arc<String>,
    /// `domain2backend.map` content.
    pub domain_map: String,
    /// `app2backend.map` content.
    pub app_map: String,
    /// What changed since the previous render, when [`Incremental`] made this one (the
    /// Runtime API plan then looks only at what changed).
    pub incremental: Option<std::sync::Arc<Delta>>,
}

/// Renders the HAProxy configuration of `services` (sorted as `model::build` returns them).
///
/// # Errors
/// [`Error`] when a template cannot be formatted, the head is outdated, or a health-check
/// port index is out of range.
pub fn render(
    services: &[Arc<Service>],
    templates: &Templates,
    options: &Options,
) -> Result<Rendered, Error> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    Renderer {
        templates,
        options,
        workers,
        min_chunk: PARALLEL_CHUNK,
    }
    .render(services)
}

/// Borrowed inputs of one render.
pub(crate) struct Renderer<'a> {
    templates: &'a Templates,
    options: &'a Options,
    /// Threads for the per-service sections.
    workers: usize,
    /// Fewest services a thread is given.
    min_chunk: usize,
}

impl Renderer<'_> {
    /// Formats template `name` for `service` into `out`: the label override of `label`
    /// (usually the same name) or else the global text of `name`.
    fn format_service(
        &self,
        out: &mut String,
        service: &Service,
        label: Name,
        name: Name,
        args: &[(&str, &str)],
    ) -> Result<(), Error> {
        let (template, from_label) = match service.template(label) {
            Some(template) => (template, true),
            None => (self.templates.get(name), false),
        };
        template
            .format_into(out, args)
            .map_err(|source| Error::Template {
                app_id: Some(service.app_id.clone()),
                template: name.full_name(),
                label: from_label.then(|| format!("HAPROXY_{{n}}_{}", label.spec().name)),
                source,
            })
    }

    /// The label override or global text of a template used verbatim.
    fn verbatim<'s>(&'s self, service: &'s Service, name: Name) -> &'s str {
        service
            .template(name)
            .map_or_else(|| self.templates.global(name), Template::text)
    }

    fn format_global(
        &self,
        out: &mut String,
        name: Name,
        args: &[(&str, &str)],
    ) -> Result<(), Error> {
        self.templates
            .get(name)
            .format_into(out, args)
            .map_err(|source| Error::Template {
                app_id: None,
                template: name.full_name(),
                label: None,
                source,
            })
    }

    /// `HAPROXY_HEAD`, unless it is one from before marathon-lb 1.12.
    fn head(&self) -> Result<&str, Error> {
        let head = self.templates.global(Name::Head);
        if head.split_whitespace().any(|w| w == "daemon") || !head.contains("expose-fd listeners") {
            return Err(Error::OutdatedHead);
        }
        Ok(head)
    }

    /// The certificates of `--ssl-certs` (or the default one).
    fn ssl_certs(&self) -> Vec<&str> {
        if self.options.ssl_certs.is_empty() {
            vec!["/etc/ssl/cert.pem"]
        } else {
            self.options.ssl_certs.split(',').collect()
        }
    }

    fn render(&self, services: &[Arc<Service>]) -> Result<Rendered, Error> {
        let head = self.head()?;
        let ssl_certs = self.ssl_certs();
        let mut frontends = self.frontend_heads(&ssl_certs)?;
        let selected = self.select(services);
        let (parts, mut shared) = self.render_services(services, &selected)?;
        self.push_vhost_rules(&mut frontends, &mut shared)?;
        let config = self.assemble(head, parts, &frontends, &mut shared, &ssl_certs)?;
        Ok(Rendered {
            config: Arc::new(config),
            domain_map: shared.rules.maps.domain.text(),
            app_map: shared.rules.maps.app.text(),
            incremental: None,
        })
    }

    /// The services that go into the config, with their backend names and modes.
    fn select<'s>(&self, services: &'s [Arc<Service>]) -> Vec<Selected<'s>> {
        self.select_in(services, 0..services.len())
    }

    /// [`Renderer::select`] of the services in `range` (indexes stay those of `services`).
    fn select_in<'s>(
        &self,
        services: &'s [Arc<Service>],
        range: std::ops::Range<usize>,
    ) -> Vec<Selected<'s>> {
        let groups = &self.options.groups;
        let start = range.start;
        services[range]
            .iter()
            .enumerate()
            .map(|(i, s)| (start + i, &**s))
            .filter(|(_, s)| s.in_groups(groups) && s.enabled && !s.backends.is_empty())
            .map(|(index, service)| {
                let app_path = service
                    .app_id
                    .get(1..)
                    .unwrap_or_default()
                    .replace('/', "_");
                let has_vhost = service.hostname.as_deref().is_some_and(|h| !h.is_empty());
                let mode = match &service.mode {
                    Some(mode) => mode.as_str(),
                    None if has_vhost => "http",
                    None => "tcp",
                };
                Selected {
                    index,
                    service,
                    backend: format!("{app_path}_{}", service.service_port),
                    mode,
                }
            })
            .collect()
    }

    /// Renders the per-service sections and the shared rules of `selected`; the first error
    /// in service order wins, as in the original's single loop.
    fn render_services(
        &self,
        services: &[Arc<Service>],
        selected: &[Selected<'_>],
    ) -> Result<(Vec<Sections>, Shared), Error> {
        let siblings = sibling_ranges(services);
        let siblings = &siblings;
        // The per-service sections are independent: render them in parallel chunks while
        // this thread builds the rules every service contributes to.
        let (sections, shared) = std::thread::scope(|scope| {
            let chunk = selected
                .len()
                .div_ceil(self.workers.max(1))
                .max(self.min_chunk.max(1));
            let handles: Vec<_> = selected
                .chunks(chunk)
                .map(|part| scope.spawn(move || self.sections(part, services, siblings)))
                .collect();
            let shared = self.shared_rules(selected);
            let sections = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Vec<_>>();
            (sections, shared)
        });
        let mut first: Option<(usize, Error)> = None;
        let mut parts: Vec<Sections> = Vec::with_capacity(sections.len());
        for part in sections {
            match part {
                Ok(part) => parts.push(part),
                Err(e) if first.as_ref().is_none_or(|f| e.0 < f.0) => first = Some(e),
                Err(_) => {}
            }
        }
        match (first, shared) {
            (Some(section), Err(rule)) if rule.0 < section.0 => Err(rule.1),
            (Some(section), _) => Err(section.1),
            (None, Err(rule)) => Err(rule.1),
            (None, Ok(shared)) => Ok((parts, shared)),
        }
    }

    /// The config text, in the original's order of sections.
    fn assemble(
        &self,
        head: &str,
        mut parts: Vec<Sections>,
        frontends: &Frontends,
        shared: &mut Shared,
        ssl_certs: &[&str],
    ) -> Result<String, Error> {
        // Sized once: the config of 10,000 apps is several MB, and every regrowth copies it.
        let sections_len: usize = parts.iter().map(Sections::len).sum();
        let mut config = String::with_capacity(
            head.len()
                + sections_len
                + frontends.http.len()
                + frontends.https.len()
                + shared.appid_frontends.len()
                + 4096,
        );
        config.push_str(head);
        parts
            .iter()
            .for_each(|part| config.push_str(&part.userlists));
        if self.options.bind_http_https {
            config.push_str(&frontends.http);
        }
        config.push_str(&shared.appid_frontends);
        if self.options.bind_http_https {
            config.push_str(&frontends.https);
            if self.options.group_https_by_vhost {
                self.grouped_vhost_frontends(&mut config, &mut shared.rules.grouped, ssl_certs)?;
            }
        }
        // Each part is freed once copied: the config grows while the parts shrink.
        for part in &mut parts {
            config.push_str(&std::mem::take(&mut part.frontends));
        }
        for part in parts {
            config.push_str(&part.backends);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::types::AppsBody;
    use crate::model::{self, network::Resolver, HealthMemory};

    /// Many apps with vhosts, auth, sticky sessions and checks, as one apps body.
    fn apps_body(n: usize) -> String {
        let apps: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"id":"/team{t}/app{i}","labels":{{"HAPROXY_GROUP":"external","HAPROXY_0_VHOST":"app{i}.example.com","HAPROXY_0_STICKY":"{sticky}","HAPROXY_0_AUTH":"realm:u{i}:p"}},
                      "portDefinitions":[{{"port":{port}}}],"healthChecks":[{{"protocol":"HTTP","portIndex":0,"path":"/h","timeoutSeconds":5,"intervalSeconds":10,"gracePeriodSeconds":300,"maxConsecutiveFailures":3}}],
                      "tasks":[{{"id":"t{i}a","host":"10.0.{a}.{b}","ports":[31000]}},{{"id":"t{i}b","host":"10.1.{a}.{b}","ports":[31001]}}]}}"#,
                    t = i % 7,
                    sticky = i % 3 == 0,
                    port = 10000 + i,
                    a = i / 250,
                    b = i % 250,
                )
            })
            .collect();
        format!(r#"{{"apps":[{}]}}"#, apps.join(","))
    }

    #[test]
    fn parallel_sections_equal_a_single_thread_render() {
        let body = apps_body(900);
        let apps = AppsBody::parse(body.as_bytes()).unwrap().apps;
        let services = model::build(
            apps,
            &model::Options::default(),
            &mut Resolver::default(),
            &mut HealthMemory::default(),
        )
        .unwrap();
        let templates = Templates::builtin();
        for haproxy_map in [false, true] {
            let options = Options {
                groups: vec!["external".into()],
                bind_http_https: true,
                ssl_certs: "/etc/ssl/cert.pem".into(),
                haproxy_map,
                haproxy_dir: "/etc/haproxy".into(),
                group_https_by_vhost: false,
            };
            let render_with = |workers, min_chunk| {
                Renderer {
                    templates: &templates,
                    options: &options,
                    workers,
                    min_chunk,
                }
                .render(&services)
                .unwrap()
            };
            let single = render_with(1, usize::MAX);
            let parallel = render_with(4, 100);
            assert!(single.config.contains("backend team0_app0_10000"));
            assert_eq!(single.config, parallel.config);
            assert_eq!(single.domain_map, parallel.domain_map);
        }
    }
}
