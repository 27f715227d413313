//! Services + templates -> `haproxy.cfg` text and the two map files.
//!
//! Data flow position: after `model`, before `haproxy` (validate and apply). Pure and
//! deterministic: the same services and templates always give the same bytes, identical to
//! what marathon-lb 1.x writes. Runs in time linear in the number of services and tasks.

mod vhost;

use std::collections::{BTreeMap, HashSet};

use sha1::{Digest, Sha1};

use crate::compat::{clean_name, number_str, server_id};
use crate::model::{sibling_ranges, Service};
use crate::templates::{FormatError, Name, Template, Templates};
use vhost::{GroupedVhost, MapRulesEmitted};

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

/// Render options from the command line.
#[derive(Debug, Clone)]
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
    /// `haproxy.cfg`.
    pub config: String,
    /// `domain2backend.map` content.
    pub domain_map: String,
    /// `app2backend.map` content.
    pub app_map: String,
}

/// Renders the HAProxy configuration of `services` (sorted as `model::build` returns them).
///
/// # Errors
/// [`Error`] when a template cannot be formatted, the head is outdated, or a health-check
/// port index is out of range.
pub fn render(
    services: &[Service],
    templates: &Templates,
    options: &Options,
) -> Result<Rendered, Error> {
    Renderer { templates, options }.render(services)
}

/// Borrowed inputs of one render.
pub(crate) struct Renderer<'a> {
    templates: &'a Templates,
    options: &'a Options,
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

    fn render(&self, services: &[Service]) -> Result<Rendered, Error> {
        let opts = self.options;
        let head = self.templates.global(Name::Head);
        if head.split_whitespace().any(|w| w == "daemon") || !head.contains("expose-fd listeners") {
            return Err(Error::OutdatedHead);
        }
        let ssl_certs: Vec<&str> = if opts.ssl_certs.is_empty() {
            vec!["/etc/ssl/cert.pem"]
        } else {
            opts.ssl_certs.split(',').collect()
        };
        let crt_list = |certs: &[&str]| {
            certs
                .iter()
                .map(|c| format!("crt {c}"))
                .collect::<Vec<_>>()
                .join(" ")
        };

        let mut http_frontends = String::new();
        let mut https_frontends = String::new();
        if opts.bind_http_https {
            http_frontends.push_str(self.templates.global(Name::HttpFrontendHead));
            if opts.group_https_by_vhost {
                https_frontends.push_str(self.templates.global(Name::HttpsGroupedFrontendHead));
            } else {
                self.format_global(
                    &mut https_frontends,
                    Name::HttpsFrontendHead,
                    &[("sslCerts", &crt_list(&ssl_certs))],
                )?;
            }
        }

        let mut userlists = String::new();
        let mut frontends = String::with_capacity(services.len() * 128);
        let mut backends = String::with_capacity(services.len() * 512);
        let mut appid_frontends = String::from(self.templates.global(Name::HttpFrontendAppidHead));
        let mut appids_seen: HashSet<&str> = HashSet::new();
        let mut http_rules: Vec<(i64, String)> = Vec::new();
        let mut https_rules: Vec<(i64, String)> = Vec::new();
        let mut grouped: BTreeMap<String, GroupedVhost> = BTreeMap::new();
        let mut emitted = MapRulesEmitted::default();
        let mut maps = Maps::default();
        let siblings = sibling_ranges(services);

        for (index, service) in services.iter().enumerate() {
            if !service.in_groups(&opts.groups) || !service.enabled || service.backends.is_empty() {
                continue;
            }
            let app_path = service
                .app_id
                .get(1..)
                .unwrap_or_default()
                .replace('/', "_");
            let backend = format!("{app_path}_{}", service.service_port);
            let hostname = service.hostname.as_deref().filter(|h| !h.is_empty());
            let mode =
                service
                    .mode
                    .as_deref()
                    .unwrap_or(if hostname.is_some() { "http" } else { "tcp" });
            let port = service.service_port.to_string();

            if let Some(auth) = &service.auth {
                if !auth.user.is_empty() {
                    let args = [
                        ("backend", backend.as_str()),
                        ("user", &auth.user),
                        ("passwd", &auth.password),
                    ];
                    self.format_service(
                        &mut userlists,
                        service,
                        Name::UserlistHead,
                        Name::UserlistHead,
                        &args,
                    )?;
                }
            }
            let ssl_cert = service
                .ssl_cert
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(|c| format!(" ssl crt {c}"));
            let bind_options = service
                .bind_options
                .as_deref()
                .filter(|o| !o.is_empty())
                .map(|o| format!(" {o}"));
            let args = [
                ("bindAddr", service.bind_addr.as_str()),
                ("backend", &backend),
                ("servicePort", &port),
                ("mode", mode),
                ("sslCert", ssl_cert.as_deref().unwrap_or("")),
                ("bindOptions", bind_options.as_deref().unwrap_or("")),
            ];
            self.format_service(
                &mut frontends,
                service,
                Name::FrontendHead,
                Name::FrontendHead,
                &args,
            )?;
            let args = [
                ("backend", backend.as_str()),
                ("balance", &service.balance),
                ("mode", mode),
            ];
            self.format_service(
                &mut backends,
                service,
                Name::BackendHead,
                Name::BackendHead,
                &args,
            )?;

            if opts.bind_http_https && hostname.is_some() {
                let rules =
                    self.vhost_rules(service, &backend, &mut emitted, &mut maps, &mut grouped)?;
                http_rules.push((rules.weight, rules.http));
                https_rules.push((rules.weight, rules.https));
            }

            if mode == "http" && appids_seen.insert(&service.app_id) {
                if opts.haproxy_map {
                    if !emitted.appid {
                        let args = [("haproxy_dir", opts.haproxy_dir.as_str())];
                        let label = Name::HttpFrontendAppidAcl;
                        self.format_service(
                            &mut appid_frontends,
                            service,
                            label,
                            Name::MapHttpFrontendAppidAcl,
                            &args,
                        )?;
                        emitted.appid = true;
                    }
                    maps.app.add(&service.app_id, &backend);
                } else {
                    let args = [
                        ("cleanedUpAppId", clean_name(&service.app_id)),
                        (
                            "hostname",
                            service.hostname.clone().unwrap_or_else(|| "None".into()),
                        ),
                        ("appId", service.app_id.clone()),
                        ("backend", backend.clone()),
                    ];
                    let args: Vec<(&str, &str)> =
                        args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let name = Name::HttpFrontendAppidAcl;
                    self.format_service(&mut appid_frontends, service, name, name, &args)?;
                }
            }

            if mode == "http" {
                self.http_backend_options(&mut backends, service)?;
            }
            if let Some(networks) = service.network_allowed.as_deref().filter(|n| !n.is_empty()) {
                let names = match mode {
                    "http" => Some((
                        Name::HttpBackendNetworkAllowedAcl,
                        Name::HttpBackendAclAllowDeny,
                    )),
                    "tcp" => Some((
                        Name::TcpBackendNetworkAllowedAcl,
                        Name::TcpBackendAclAllowDeny,
                    )),
                    _ => None,
                };
                if let Some((acl, allow_deny)) = names {
                    for network in networks.split_whitespace() {
                        self.format_service(
                            &mut backends,
                            service,
                            acl,
                            acl,
                            &[("network_allowed", network)],
                        )?;
                    }
                    backends.push_str(self.templates.global(allow_deny));
                }
            }
            if service.sticky {
                backends.push_str(self.verbatim(service, Name::BackendStickyOptions));
            }
            let glue = Name::FrontendBackendGlue;
            self.format_service(
                &mut frontends,
                service,
                glue,
                glue,
                &[("backend", &backend)],
            )?;

            let siblings = &services[siblings[index].clone()];
            self.servers(&mut backends, service, mode, siblings)?;
        }

        // Stable sorts: equal weights keep (app id, service port) order.
        http_rules.sort_by_key(|rule| std::cmp::Reverse(rule.0));
        https_rules.sort_by_key(|rule| std::cmp::Reverse(rule.0));
        http_rules
            .iter()
            .for_each(|(_, text)| http_frontends.push_str(text));
        if opts.group_https_by_vhost {
            for vhost in grouped.keys() {
                let name = clean_name(vhost);
                self.format_global(
                    &mut https_frontends,
                    Name::HttpsGroupedVhostFrontendAcl,
                    &[("backend", &name), ("host", vhost)],
                )?;
            }
        } else {
            https_rules
                .iter()
                .for_each(|(_, text)| https_frontends.push_str(text));
        }

        let mut config =
            String::with_capacity(head.len() + frontends.len() + backends.len() + 4096);
        config.push_str(head);
        config.push_str(&userlists);
        if opts.bind_http_https {
            config.push_str(&http_frontends);
        }
        config.push_str(&appid_frontends);
        if opts.bind_http_https {
            config.push_str(&https_frontends);
            if opts.group_https_by_vhost {
                for (vhost, group) in &mut grouped {
                    let name = clean_name(vhost);
                    self.format_global(
                        &mut config,
                        Name::HttpsGroupedVhostBackendHead,
                        &[("name", &name)],
                    )?;
                    let certs: Vec<&str> = if group.certs.is_empty() {
                        ssl_certs.clone()
                    } else {
                        group.certs.iter().map(String::as_str).collect()
                    };
                    let bind_opts: Vec<String> =
                        group.bind_options.iter().map(|o| format!(" {o}")).collect();
                    let args = [
                        ("name", name.as_str()),
                        ("sslCerts", &crt_list(&certs)),
                        ("bindOpts", &bind_opts.join(" ")),
                    ];
                    self.format_global(&mut config, Name::HttpsGroupedVhostFrontendHead, &args)?;
                    group.blocks.sort_by_key(|block| std::cmp::Reverse(block.0));
                    group
                        .blocks
                        .iter()
                        .for_each(|(_, text)| config.push_str(text));
                }
            }
        }
        config.push_str(&frontends);
        config.push_str(&backends);
        Ok(Rendered {
            config,
            domain_map: maps.domain.text(),
            app_map: maps.app.text(),
        })
    }

    /// HSTS, forwarding headers, and the proxy-pass / reverse-proxy / redirect glue of http backends.
    fn http_backend_options(&self, backends: &mut String, service: &Service) -> Result<(), Error> {
        if service.use_hsts {
            backends.push_str(self.verbatim(service, Name::BackendHstsOptions));
        }
        backends.push_str(self.verbatim(service, Name::BackendHttpOptions));
        let hostname = service.hostname.as_deref().unwrap_or("None");
        if let Some(proxypath) = service.proxypath.as_deref().filter(|p| !p.is_empty()) {
            let name = Name::HttpBackendProxypassGlue;
            self.format_service(
                backends,
                service,
                name,
                name,
                &[("hostname", hostname), ("proxypath", proxypath)],
            )?;
        }
        if let Some(rootpath) = service.revproxypath.as_deref().filter(|p| !p.is_empty()) {
            let name = Name::HttpBackendRevproxyGlue;
            self.format_service(
                backends,
                service,
                name,
                name,
                &[("hostname", hostname), ("rootpath", rootpath)],
            )?;
        }
        if let Some(redirpath) = service.redirpath.as_deref().filter(|p| !p.is_empty()) {
            // Never overridden per app: the label of this name is the redirect path itself.
            let args = [("hostname", hostname), ("redirpath", redirpath)];
            self.templates
                .get(Name::HttpBackendRedir)
                .format_into(backends, &args)
                .map_err(|source| Error::Template {
                    app_id: Some(service.app_id.clone()),
                    template: Name::HttpBackendRedir.full_name(),
                    label: None,
                    source,
                })?;
        }
        Ok(())
    }

    /// The health-check options and `server` lines of one backend.
    fn servers(
        &self,
        backends: &mut String,
        service: &Service,
        mode: &str,
        siblings: &[Service],
    ) -> Result<(), Error> {
        let check = service.health_check.as_ref().map(|hc| {
            let protocol = hc.protocol.as_deref().unwrap_or_default();
            let tcp = mode == "tcp" || protocol == "TCP" || protocol == "MESOS_TCP";
            (hc, tcp)
        });
        if let Some((hc, tcp)) = check {
            let name = if tcp {
                Some(Name::BackendTcpHealthcheckOptions)
            } else if mode == "http" {
                Some(Name::BackendHttpHealthcheckOptions)
            } else {
                None
            };
            if let Some(name) = name {
                let text = self.verbatim(service, name);
                if !text.is_empty() {
                    let port = self.health_check_port(service, siblings, 0)?;
                    let args = HealthCheckArgs::new(service, hc, Some(port))?;
                    self.format_service(backends, service, name, name, &args.as_slice())?;
                }
            }
        }

        // The server-level check options are stripped and prefixed with one space, once.
        let server_check = match check {
            Some((hc, true)) => Some((hc, Name::BackendServerTcpHealthcheckOptions)),
            Some((hc, false)) if mode == "http" => {
                Some((hc, Name::BackendServerHttpHealthcheckOptions))
            }
            _ => None,
        }
        .and_then(|(hc, name)| {
            let text = self.verbatim(service, name).trim();
            (!text.is_empty()).then(|| (hc, name, Template::new(format!(" {text}"))))
        });
        let fixed_port = match (&server_check, service.healthcheck_port_index) {
            (Some((hc, _, _)), None) => Some(HealthCheckArgs::new(
                service,
                hc,
                hc.port.as_ref().and_then(|p| p.as_i64()),
            )?),
            _ => None,
        };

        let fixed_args = fixed_port.as_ref().map(HealthCheckArgs::as_slice);
        let server_template = service
            .template(Name::BackendServerOptions)
            .unwrap_or_else(|| self.templates.get(Name::BackendServerOptions));
        // Reused across servers: a service can have thousands of them.
        let (mut name, mut id, mut port, mut cookie, mut check_options) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        let mut taken = HashSet::new();
        for (index, server) in service.backends.iter().enumerate() {
            name.clear();
            if server.host != server.ip {
                push_clean(&mut name, &server.host);
                name.push('_');
            }
            push_clean(&mut name, &server.ip);
            name.push('_');
            push_int(&mut name, server.port);
            id.clear();
            push_int(&mut id, i64::from(server_id(&name, &mut taken)));
            port.clear();
            push_int(&mut port, server.port);

            check_options.clear();
            if let Some((hc, template_name, template)) = &server_check {
                let (per_server, per_server_args);
                let args: &[(&str, &str)] = match &fixed_args {
                    Some(args) => args,
                    None => {
                        let port = self.health_check_port(service, siblings, index)?;
                        per_server = HealthCheckArgs::new(service, hc, Some(port))?;
                        per_server_args = per_server.as_slice();
                        &per_server_args
                    }
                };
                template
                    .format_into(&mut check_options, args)
                    .map_err(|source| Error::Template {
                        app_id: Some(service.app_id.clone()),
                        template: template_name.full_name(),
                        label: service
                            .template(*template_name)
                            .map(|_| format!("HAPROXY_{{n}}_{}", template_name.spec().name)),
                        source,
                    })?;
            }
            cookie.clear();
            if service.sticky {
                let digest = hex::encode(Sha1::digest(name.as_bytes()));
                cookie.push_str(" check cookie ");
                cookie.push_str(&digest[..10]);
            }
            let args = [
                ("host", server.host.as_str()),
                ("host_ipv4", &server.ip),
                ("port", &port),
                ("serverName", &name),
                ("serverId", &id),
                ("cookieOptions", &cookie),
                ("healthCheckOptions", &check_options),
                (
                    "otherOptions",
                    if server.draining { " disabled" } else { "" },
                ),
            ];
            server_template
                .format_into(backends, &args)
                .map_err(|source| Error::Template {
                    app_id: Some(service.app_id.clone()),
                    template: Name::BackendServerOptions.full_name(),
                    label: service
                        .template(Name::BackendServerOptions)
                        .map(|_| "HAPROXY_{n}_BACKEND_SERVER_OPTIONS".into()),
                    source,
                })?;
        }
        Ok(())
    }

    /// The port to health-check backend `index` on: the same-index backend of the service
    /// named by `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX` (Python indexing), else its own.
    fn health_check_port(
        &self,
        service: &Service,
        siblings: &[Service],
        index: usize,
    ) -> Result<i64, Error> {
        let out_of_range = || Error::HealthCheckPortIndex {
            app_id: service.app_id.clone(),
            index: service.healthcheck_port_index.unwrap_or_default(),
        };
        let target = match service.healthcheck_port_index {
            Some(i) if i.unsigned_abs() as usize <= siblings.len() => {
                let n = siblings.len() as i64;
                let resolved = if i < 0 { i + n } else { i };
                if resolved < 0 || resolved >= n {
                    return Err(out_of_range());
                }
                &siblings[resolved as usize]
            }
            _ => service,
        };
        target
            .backends
            .get(index)
            .map(|b| b.port)
            .ok_or_else(out_of_range)
    }
}

/// Appends `text` with every character outside `[a-zA-Z0-9-]` replaced by `_`.
fn push_clean(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

/// Appends an integer in decimal.
fn push_int(out: &mut String, value: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{value}"); // writing to a String cannot fail
}

/// The placeholders of the health-check templates.
struct HealthCheckArgs {
    values: Vec<(&'static str, String)>,
}

impl HealthCheckArgs {
    fn new(
        service: &Service,
        hc: &crate::marathon::types::HealthCheck,
        port: Option<i64>,
    ) -> Result<Self, Error> {
        fn need<'n>(
            value: &'n Option<serde_json::Number>,
            field: &'static str,
            app: &str,
        ) -> Result<&'n serde_json::Number, Error> {
            value.as_ref().ok_or_else(|| Error::HealthCheckField {
                app_id: app.to_owned(),
                field,
            })
        }
        let app = service.app_id.as_str();
        let protocol = hc.protocol.clone().ok_or_else(|| Error::HealthCheckField {
            app_id: service.app_id.clone(),
            field: "protocol",
        })?;
        let timeout = number_str(need(&hc.timeout_seconds, "timeoutSeconds", app)?);
        let interval = number_str(need(&hc.interval_seconds, "intervalSeconds", app)?);
        let grace = number_str(need(&hc.grace_period_seconds, "gracePeriodSeconds", app)?);
        let failures = need(&hc.max_consecutive_failures, "maxConsecutiveFailures", app)?;
        let falls = match failures.as_i64() {
            Some(n) if !failures.is_f64() => (n + 1).to_string(),
            _ => crate::compat::float_str(failures.as_f64().unwrap_or_default() + 1.0),
        };
        let port_str = port.map_or_else(|| "None".to_string(), |p| p.to_string());
        let port_options = match port {
            Some(p) if p != 0 => format!(" port {p}"),
            _ => String::new(),
        };
        Ok(Self {
            values: vec![
                (
                    "healthCheckPortIndex",
                    hc.port_index
                        .as_ref()
                        .map_or_else(|| "None".into(), number_str),
                ),
                ("healthCheckPort", port_str),
                ("healthCheckProtocol", protocol),
                (
                    "healthCheckPath",
                    hc.path.clone().unwrap_or_else(|| "/".into()),
                ),
                ("healthCheckTimeoutSeconds", timeout),
                ("healthCheckIntervalSeconds", interval),
                ("healthCheckGracePeriodSeconds", grace),
                ("healthCheckMaxConsecutiveFailures", number_str(failures)),
                ("healthCheckFalls", falls),
                ("healthCheckPortOptions", port_options),
            ],
        })
    }

    fn as_slice(&self) -> Vec<(&str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}
