//! The per-service sections of the config: a service's userlist, its frontend and its backend
//! with health checks and `server` lines. Each depends only on the service (and its app's
//! sibling services), so `render` renders them for many services in parallel.

use std::collections::HashSet;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::{Error, Renderer};
use crate::compat::{number_str, server_id};
use crate::model::HealthCheck;
use crate::model::{Backend, Service};
use crate::templates::{Name, Template};

/// The text one service (or a run of services) contributes to each part of the config.
#[derive(Debug, Default)]
pub(super) struct Sections {
    /// `userlist` sections (`HAPROXY_{n}_AUTH`).
    pub userlists: String,
    /// `frontend` sections.
    pub frontends: String,
    /// `backend` sections.
    pub backends: String,
}

impl Sections {
    /// Bytes of text held.
    pub fn len(&self) -> usize {
        self.userlists.len() + self.frontends.len() + self.backends.len()
    }
}

/// A service selected for the config, with what every part of the render needs.
pub(super) struct Selected<'s> {
    /// Position in the sorted services (for siblings and error order).
    pub index: usize,
    /// The service.
    pub service: &'s Service,
    /// Backend (and frontend) name.
    pub backend: String,
    /// `http`, `tcp`, or whatever `HAPROXY_{n}_MODE` says.
    pub mode: &'s str,
}

impl Renderer<'_> {
    /// Renders the sections of `selected` services in order, stopping at the first error
    /// (returned with the service's index).
    pub(super) fn sections(
        &self,
        selected: &[Selected<'_>],
        services: &[Arc<Service>],
        siblings: &[std::ops::Range<usize>],
    ) -> Result<Sections, (usize, Error)> {
        let servers: usize = selected.iter().map(|s| s.service.backends.len()).sum();
        let mut out = Sections {
            userlists: String::new(),
            frontends: String::with_capacity(selected.len() * 160),
            backends: String::with_capacity(selected.len() * 320 + servers * 110),
        };
        for s in selected {
            self.service_sections(&mut out, s, &services[siblings[s.index].clone()])
                .map_err(|e| (s.index, e))?;
        }
        Ok(out)
    }

    fn service_sections(
        &self,
        out: &mut Sections,
        s: &Selected<'_>,
        siblings: &[Arc<Service>],
    ) -> Result<(), Error> {
        let (service, backend, mode) = (s.service, s.backend.as_str(), s.mode);
        if let Some(auth) = &service.auth {
            if !auth.user.is_empty() {
                let args = [
                    ("backend", backend),
                    ("user", &auth.user),
                    ("passwd", &auth.password),
                ];
                self.format_service(
                    &mut out.userlists,
                    service,
                    Name::UserlistHead,
                    Name::UserlistHead,
                    &args,
                )?;
            }
        }
        self.frontend_head(&mut out.frontends, s)?;
        let args = [
            ("backend", backend),
            ("balance", service.balance.as_str()),
            ("mode", mode),
        ];
        self.format_service(
            &mut out.backends,
            service,
            Name::BackendHead,
            Name::BackendHead,
            &args,
        )?;
        if mode == "http" {
            self.http_backend_options(&mut out.backends, service)?;
        }
        self.network_allowed(&mut out.backends, service, mode)?;
        if service.sticky {
            out.backends
                .push_str(self.verbatim(service, Name::BackendStickyOptions));
        }
        let glue = Name::FrontendBackendGlue;
        self.format_service(
            &mut out.frontends,
            service,
            glue,
            glue,
            &[("backend", backend)],
        )?;
        self.servers(&mut out.backends, service, mode, siblings)
    }

    /// The head of the service's own frontend.
    fn frontend_head(&self, frontends: &mut String, s: &Selected<'_>) -> Result<(), Error> {
        let service = s.service;
        let port = service.service_port.to_string();
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
            ("backend", s.backend.as_str()),
            ("servicePort", &port),
            ("mode", s.mode),
            ("sslCert", ssl_cert.as_deref().unwrap_or("")),
            ("bindOptions", bind_options.as_deref().unwrap_or("")),
        ];
        let name = Name::FrontendHead;
        self.format_service(frontends, service, name, name, &args)
    }

    /// The `HAPROXY_{n}_NETWORK_ALLOWED` ACLs of an http or tcp backend.
    fn network_allowed(
        &self,
        backends: &mut String,
        service: &Service,
        mode: &str,
    ) -> Result<(), Error> {
        let Some(networks) = service.network_allowed.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        let (acl, allow_deny) = match mode {
            "http" => (
                Name::HttpBackendNetworkAllowedAcl,
                Name::HttpBackendAclAllowDeny,
            ),
            "tcp" => (
                Name::TcpBackendNetworkAllowedAcl,
                Name::TcpBackendAclAllowDeny,
            ),
            _ => return Ok(()),
        };
        for network in networks.split_whitespace() {
            let args = [("network_allowed", network)];
            self.format_service(backends, service, acl, acl, &args)?;
        }
        backends.push_str(self.templates.global(allow_deny));
        Ok(())
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
        siblings: &[Arc<Service>],
    ) -> Result<(), Error> {
        let check = service.health_check.as_deref().map(|hc| {
            let protocol = hc.protocol.as_deref().unwrap_or_default();
            let tcp = mode == "tcp" || protocol == "TCP" || protocol == "MESOS_TCP";
            (hc, tcp)
        });
        if let Some((hc, tcp)) = check {
            self.backend_check_options(backends, service, mode, siblings, hc, tcp)?;
        }
        let server_check = self.server_check(service, mode, check);
        let fixed_port = match (&server_check, service.healthcheck_port_index) {
            (Some(sc), None) => Some(HealthCheckArgs::new(
                service,
                sc.hc,
                sc.hc.port.as_ref().and_then(|p| p.as_i64()),
            )?),
            _ => None,
        };
        let fixed_args = fixed_port.as_ref().map(HealthCheckArgs::as_slice);
        let server_template = service
            .template(Name::BackendServerOptions)
            .unwrap_or_else(|| self.templates.get(Name::BackendServerOptions));
        // Reused across servers: a service can have thousands of them.
        let mut line = ServerLine::default();
        let mut taken = HashSet::new();
        for (index, server) in service.backends.iter().enumerate() {
            line.name_server(server, &mut taken);
            line.check_options.clear();
            if let Some(sc) = &server_check {
                let (per_server, per_server_args);
                let args: &[(&str, &str)] = match &fixed_args {
                    Some(args) => args,
                    None => {
                        let port = self.health_check_port(service, siblings, index)?;
                        per_server = HealthCheckArgs::new(service, sc.hc, Some(port))?;
                        per_server_args = per_server.as_slice();
                        &per_server_args
                    }
                };
                sc.format_into(&mut line.check_options, service, args)?;
            }
            line.cookie.clear();
            if service.sticky {
                let digest = hex::encode(Sha1::digest(line.name.as_bytes()));
                line.cookie.push_str(" check cookie ");
                line.cookie.push_str(&digest[..10]);
            }
            let args = [
                ("host", server.host.as_str()),
                ("host_ipv4", &server.ip),
                ("port", &line.port),
                ("serverName", &line.name),
                ("serverId", &line.id),
                ("cookieOptions", &line.cookie),
                ("healthCheckOptions", &line.check_options),
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

    /// The backend-level health-check options (`option httpchk` and the like).
    fn backend_check_options(
        &self,
        backends: &mut String,
        service: &Service,
        mode: &str,
        siblings: &[Arc<Service>],
        hc: &HealthCheck,
        tcp: bool,
    ) -> Result<(), Error> {
        let name = if tcp {
            Name::BackendTcpHealthcheckOptions
        } else if mode == "http" {
            Name::BackendHttpHealthcheckOptions
        } else {
            return Ok(());
        };
        if self.verbatim(service, name).is_empty() {
            return Ok(());
        }
        let port = self.health_check_port(service, siblings, 0)?;
        let args = HealthCheckArgs::new(service, hc, Some(port))?;
        self.format_service(backends, service, name, name, &args.as_slice())
    }

    /// The server-level check options template, stripped and prefixed with one space once;
    /// `None` when the service has no check for its mode or the template is empty.
    fn server_check<'h>(
        &self,
        service: &Service,
        mode: &str,
        check: Option<(&'h HealthCheck, bool)>,
    ) -> Option<ServerCheck<'h>> {
        let (hc, name) = match check {
            Some((hc, true)) => (hc, Name::BackendServerTcpHealthcheckOptions),
            Some((hc, false)) if mode == "http" => (hc, Name::BackendServerHttpHealthcheckOptions),
            _ => return None,
        };
        let text = self.verbatim(service, name).trim();
        (!text.is_empty()).then(|| ServerCheck {
            hc,
            name,
            template: Template::new(format!(" {text}")),
        })
    }

    /// The port to health-check backend `index` on: the same-index backend of the service
    /// named by `HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX` (Python indexing), else its own.
    fn health_check_port(
        &self,
        service: &Service,
        siblings: &[Arc<Service>],
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

/// A service's server-level health-check options template.
struct ServerCheck<'h> {
    /// The service's health check.
    hc: &'h HealthCheck,
    /// Which template it is (for errors).
    name: Name,
    /// The prepared template.
    template: Template,
}

impl ServerCheck<'_> {
    fn format_into(
        &self,
        out: &mut String,
        service: &Service,
        args: &[(&str, &str)],
    ) -> Result<(), Error> {
        self.template
            .format_into(out, args)
            .map_err(|source| Error::Template {
                app_id: Some(service.app_id.clone()),
                template: self.name.full_name(),
                label: service
                    .template(self.name)
                    .map(|_| format!("HAPROXY_{{n}}_{}", self.name.spec().name)),
                source,
            })
    }
}

/// The per-server placeholder values, reused from server to server.
#[derive(Debug, Default)]
struct ServerLine {
    name: String,
    id: String,
    port: String,
    cookie: String,
    check_options: String,
}

impl ServerLine {
    /// Sets the server's name, unique id and port.
    fn name_server(&mut self, server: &Backend, taken: &mut HashSet<u32>) {
        self.name.clear();
        if server.host != server.ip {
            push_clean(&mut self.name, &server.host);
            self.name.push('_');
        }
        push_clean(&mut self.name, &server.ip);
        self.name.push('_');
        push_int(&mut self.name, server.port);
        self.id.clear();
        push_int(&mut self.id, i64::from(server_id(&self.name, taken)));
        self.port.clear();
        push_int(&mut self.port, server.port);
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
    fn new(service: &Service, hc: &HealthCheck, port: Option<i64>) -> Result<Self, Error> {
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
