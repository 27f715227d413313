//! The vhost routing rules of one service for the shared `marathon_http_in` and
//! `marathon_https_in` frontends (and the per-vhost frontends of `--group-https-by-vhost`).
//!
//! The branch structure mirrors which template marathon-lb 1.x uses for each combination of
//! single/multiple vhosts, path, auth, redirect-to-https and map mode; each template receives
//! exactly the placeholders the original passes it, so user templates keep working.

use std::collections::BTreeMap;

use super::{Maps, Renderer};
use crate::compat::clean_name;
use crate::model::Service;
use crate::templates::Name;

/// The `--group-https-by-vhost` frontend of one vhost.
#[derive(Debug, Default)]
pub struct GroupedVhost {
    /// `(weight, ACL text)` blocks, ordered by weight when emitted.
    pub blocks: Vec<(i64, String)>,
    /// `HAPROXY_{n}_SSL_CERT`s of services on this vhost, first seen first.
    pub certs: Vec<String>,
    /// `HAPROXY_{n}_BIND_OPTIONS` of services on this vhost, first seen first.
    pub bind_options: Vec<String>,
}

impl GroupedVhost {
    /// Records the service's cert and bind options; like the original, a vhost entry only
    /// comes into being when there is something to record.
    fn note_service(grouped: &mut BTreeMap<String, GroupedVhost>, vhost: &str, service: &Service) {
        if service.ssl_cert.is_none() && service.bind_options.is_none() {
            return;
        }
        let group = grouped.entry(vhost.to_owned()).or_default();
        push_unique(&mut group.certs, service.ssl_cert.as_ref());
        push_unique(&mut group.bind_options, service.bind_options.as_ref());
    }
}

fn push_unique(list: &mut Vec<String>, value: Option<&String>) {
    if let Some(v) = value {
        if !list.contains(v) {
            list.push(v.clone());
        }
    }
}

/// What one service adds to the shared frontends.
#[derive(Debug, Default)]
pub struct VhostRules {
    /// Sort weight of this service's blocks (may drop to -1 in map mode).
    pub weight: i64,
    /// Lines for `marathon_http_in`.
    pub http: String,
    /// Lines for `marathon_https_in`.
    pub https: String,
}

/// What all services' vhost rules build together.
#[derive(Debug, Default)]
pub struct SharedRules {
    /// Which shared map rules are already emitted.
    pub emitted: MapRulesEmitted,
    /// The map files' rows.
    pub maps: Maps,
    /// The `--group-https-by-vhost` frontends, by vhost.
    pub grouped: BTreeMap<String, GroupedVhost>,
}

/// Flags that say a shared map rule was already emitted (it is emitted once per config).
#[derive(Debug, Default)]
pub struct MapRulesEmitted {
    /// The `use_backend ... map(domain2backend.map)` rule of `marathon_http_in`.
    pub http: bool,
    /// The `use_backend ... map(domain2backend.map)` rule of `marathon_https_in`.
    pub https: bool,
    /// The `use_backend ... map(app2backend.map)` rule of `marathon_http_appid_in`.
    pub appid: bool,
}

impl Renderer<'_> {
    /// Builds the vhost rules of `service` (whose `hostname` is set and non-empty).
    pub(super) fn vhost_rules(
        &self,
        service: &Service,
        backend: &str,
        shared: &mut SharedRules,
    ) -> Result<VhostRules, super::Error> {
        let hostname = service.hostname.as_deref().unwrap_or_default();
        let app_path = service
            .app_id
            .get(1..)
            .unwrap_or_default()
            .replace('/', "_");
        let first_vhost = hostname.split(',').next().unwrap_or_default();
        let acl = format!("{}_{app_path}", clean_name(first_vhost));
        let path = service.path.as_deref().filter(|p| !p.is_empty());
        let realm = service
            .auth
            .as_ref()
            .map(|a| a.realm.as_str())
            .filter(|r| !r.is_empty());
        let ctx = Ctx {
            r: self,
            service,
            backend,
            acl: &acl,
            bind_addr: &service.bind_addr,
        };
        let mut out = VhostRules {
            weight: service.backend_weight,
            ..Default::default()
        };

        if hostname.contains(',') {
            ctx.multiple_vhosts(hostname, path, realm, shared, &mut out)?;
        } else {
            ctx.single_vhost(hostname, path, realm, shared, &mut out)?;
        }
        Ok(out)
    }
}

/// Values shared by every template call for one service.
struct Ctx<'a> {
    r: &'a Renderer<'a>,
    service: &'a Service,
    backend: &'a str,
    acl: &'a str,
    bind_addr: &'a str,
}

impl Ctx<'_> {
    fn put(&self, out: &mut String, name: Name, args: &[(&str, &str)]) -> Result<(), super::Error> {
        self.r.format_service(out, self.service, name, name, args)
    }

    /// A map template, overridden per app by the *non-map* label (as in the original).
    fn put_map(
        &self,
        out: &mut String,
        label: Name,
        global: Name,
        args: &[(&str, &str)],
    ) -> Result<(), super::Error> {
        self.r
            .format_service(out, self.service, label, global, args)
    }

    fn text(&self, name: Name, args: &[(&str, &str)]) -> Result<String, super::Error> {
        let mut s = String::new();
        self.put(&mut s, name, args)?;
        Ok(s)
    }

    fn multiple_vhosts(
        &self,
        hostname: &str,
        path: Option<&str>,
        realm: Option<&str>,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<(), super::Error> {
        let SharedRules {
            emitted,
            maps,
            grouped,
        } = shared;
        let (backend, acl, app_id) = (self.backend, self.acl, self.service.app_id.as_str());
        let vhosts: Vec<&str> = hostname.split(',').collect();
        let map_mode = self.r.options.haproxy_map;
        if let Some(path) = path {
            if let Some(realm) = realm {
                let args = [
                    ("path", path),
                    ("cleanedUpHostname", acl),
                    ("hostname", vhosts[0]),
                    ("realm", realm),
                    ("backend", backend),
                ];
                self.put(
                    &mut out.http,
                    Name::HttpFrontendAclOnlyWithPathAndAuth,
                    &args,
                )?;
                self.put(&mut out.https, Name::HttpsFrontendAclOnlyWithPath, &args)?;
            } else {
                let args = [("path", path), ("backend", backend)];
                self.put(&mut out.http, Name::HttpFrontendAclOnlyWithPath, &args)?;
                self.put(&mut out.https, Name::HttpsFrontendAclOnlyWithPath, &args)?;
            }
        }
        let path_acls = out.https.clone();
        for &vhost in &vhosts {
            grouped
                .entry(vhost.to_owned())
                .or_default()
                .blocks
                .push((out.weight, path_acls.clone()));
            GroupedVhost::note_service(grouped, vhost, self.service);

            if map_mode && path.is_none() && realm.is_none() && !self.service.redirect_http_to_https
            {
                self.http_map_rule(
                    out,
                    Name::HttpFrontendAclOnly,
                    Name::MapHttpFrontendAclOnly,
                    emitted,
                    maps,
                    vhost,
                )?;
            } else {
                self.put(
                    &mut out.http,
                    Name::HttpFrontendAclOnly,
                    &[("cleanedUpHostname", acl), ("hostname", vhost)],
                )?;
            }

            let block = match (path, realm) {
                (Some(_), Some(realm)) => Some(self.text(
                    Name::HttpsFrontendAclWithAuthAndPath,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", vhost),
                        ("appId", app_id),
                        ("realm", realm),
                        ("backend", backend),
                    ],
                )?),
                (Some(_), None) => Some(self.text(
                    Name::HttpsFrontendAclWithPath,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", vhost),
                        ("appId", app_id),
                        ("backend", backend),
                    ],
                )?),
                (None, Some(realm)) => Some(self.text(
                    Name::HttpsFrontendAclWithAuth,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", vhost),
                        ("appId", app_id),
                        ("realm", realm),
                        ("backend", backend),
                    ],
                )?),
                (None, None) if map_mode => self.https_map_rule(out, emitted, maps, vhost)?,
                (None, None) => Some(self.text(
                    Name::HttpsFrontendAcl,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", vhost),
                        ("appId", app_id),
                        ("backend", backend),
                    ],
                )?),
            };
            if let Some(block) = block {
                out.https.push_str(&block);
                grouped
                    .entry(vhost.to_owned())
                    .or_default()
                    .blocks
                    .push((out.weight, block));
            }
        }

        if self.service.redirect_http_to_https {
            if path.is_some() {
                let args = [
                    ("bindAddr", self.bind_addr),
                    ("cleanedUpHostname", acl),
                    ("backend", backend),
                ];
                self.put(
                    &mut out.http,
                    Name::BackendRedirectHttpToHttpsWithPath,
                    &args,
                )?;
            } else {
                let args = [("bindAddr", self.bind_addr), ("cleanedUpHostname", acl)];
                self.put(&mut out.http, Name::BackendRedirectHttpToHttps, &args)?;
            }
        } else {
            match (path, realm) {
                (Some(_), Some(realm)) => self.put(
                    &mut out.http,
                    Name::HttpFrontendRoutingOnlyWithPathAndAuth,
                    &[
                        ("cleanedUpHostname", acl),
                        ("realm", realm),
                        ("backend", backend),
                    ],
                )?,
                (Some(_), None) => self.put(
                    &mut out.http,
                    Name::HttpFrontendRoutingOnlyWithPath,
                    &[("cleanedUpHostname", acl), ("backend", backend)],
                )?,
                (None, Some(realm)) => self.put(
                    &mut out.http,
                    Name::HttpFrontendRoutingOnlyWithAuth,
                    &[
                        ("cleanedUpHostname", acl),
                        ("realm", realm),
                        ("backend", backend),
                    ],
                )?,
                (None, None) if map_mode => {}
                (None, None) => self.put(
                    &mut out.http,
                    Name::HttpFrontendRoutingOnly,
                    &[("cleanedUpHostname", acl), ("backend", backend)],
                )?,
            }
        }
        Ok(())
    }

    fn single_vhost(
        &self,
        hostname: &str,
        path: Option<&str>,
        realm: Option<&str>,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<(), super::Error> {
        let SharedRules {
            emitted,
            maps,
            grouped,
        } = shared;
        let (backend, acl, app_id) = (self.backend, self.acl, self.service.app_id.as_str());
        let map_mode = self.r.options.haproxy_map;
        GroupedVhost::note_service(grouped, hostname, self.service);
        let mut https_blocks: Vec<String> = Vec::new();

        if let Some(path) = path {
            if self.service.redirect_http_to_https {
                self.put(
                    &mut out.http,
                    Name::HttpFrontendAclOnly,
                    &[("cleanedUpHostname", acl), ("hostname", hostname)],
                )?;
                self.put(
                    &mut out.http,
                    Name::HttpFrontendAclOnlyWithPath,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", hostname),
                        ("path", path),
                        ("backend", backend),
                    ],
                )?;
                let args = [
                    ("bindAddr", self.bind_addr),
                    ("cleanedUpHostname", acl),
                    ("backend", backend),
                ];
                self.put(
                    &mut out.http,
                    Name::BackendRedirectHttpToHttpsWithPath,
                    &args,
                )?;
            } else if let Some(realm) = realm {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("path", path),
                    ("appId", app_id),
                    ("realm", realm),
                    ("backend", backend),
                ];
                self.put(&mut out.http, Name::HttpFrontendAclWithAuthAndPath, &args)?;
            } else {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("path", path),
                    ("appId", app_id),
                    ("backend", backend),
                ];
                self.put(&mut out.http, Name::HttpFrontendAclWithPath, &args)?;
            }
            https_blocks.push(self.text(
                Name::HttpsFrontendAclOnlyWithPath,
                &[("path", path), ("backend", backend)],
            )?);
            https_blocks.push(match realm {
                Some(realm) => self.text(
                    Name::HttpsFrontendAclWithAuthAndPath,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", hostname),
                        ("path", path),
                        ("appId", app_id),
                        ("realm", realm),
                        ("backend", backend),
                    ],
                )?,
                None => self.text(
                    Name::HttpsFrontendAclWithPath,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", hostname),
                        ("appId", app_id),
                        ("backend", backend),
                    ],
                )?,
            });
        } else {
            if self.service.redirect_http_to_https {
                self.put(
                    &mut out.http,
                    Name::HttpFrontendAcl,
                    &[
                        ("cleanedUpHostname", acl),
                        ("hostname", hostname),
                        ("backend", backend),
                    ],
                )?;
                let args = [("bindAddr", self.bind_addr), ("cleanedUpHostname", acl)];
                self.put(&mut out.http, Name::BackendRedirectHttpToHttps, &args)?;
            } else if let Some(realm) = realm {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("appId", app_id),
                    ("realm", realm),
                    ("backend", backend),
                ];
                self.put(&mut out.http, Name::HttpFrontendAclWithAuth, &args)?;
            } else if map_mode {
                self.http_map_rule(
                    out,
                    Name::HttpFrontendAcl,
                    Name::MapHttpFrontendAcl,
                    emitted,
                    maps,
                    hostname,
                )?;
            } else {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("appId", app_id),
                    ("backend", backend),
                ];
                self.put(&mut out.http, Name::HttpFrontendAcl, &args)?;
            }

            if let Some(realm) = realm {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("appId", app_id),
                    ("realm", realm),
                    ("backend", backend),
                ];
                https_blocks.push(self.text(Name::HttpsFrontendAclWithAuth, &args)?);
            } else if map_mode {
                https_blocks.extend(self.https_map_rule(out, emitted, maps, hostname)?);
            } else {
                let args = [
                    ("cleanedUpHostname", acl),
                    ("hostname", hostname),
                    ("appId", app_id),
                    ("backend", backend),
                ];
                https_blocks.push(self.text(Name::HttpsFrontendAcl, &args)?);
            }
        }
        for block in https_blocks {
            out.https.push_str(&block);
            grouped
                .entry(hostname.to_owned())
                .or_default()
                .blocks
                .push((out.weight, block));
        }
        Ok(())
    }

    /// The shared `use_backend ... map(domain2backend.map)` rule of `marathon_http_in`: the
    /// first service that needs it emits it (and then sorts first, with weight -1); every
    /// vhost gets its map row.
    fn http_map_rule(
        &self,
        out: &mut VhostRules,
        label: Name,
        global: Name,
        emitted: &mut MapRulesEmitted,
        maps: &mut Maps,
        vhost: &str,
    ) -> Result<(), super::Error> {
        if !emitted.http {
            out.weight = -1;
            let args = [("haproxy_dir", self.r.options.haproxy_dir.as_str())];
            self.put_map(&mut out.http, label, global, &args)?;
            emitted.http = true;
        }
        maps.domain.add(vhost, self.backend);
        Ok(())
    }

    /// The same for `marathon_https_in`; returns the rule block when this service emits it.
    fn https_map_rule(
        &self,
        out: &mut VhostRules,
        emitted: &mut MapRulesEmitted,
        maps: &mut Maps,
        vhost: &str,
    ) -> Result<Option<String>, super::Error> {
        let mut block = None;
        if !emitted.https {
            out.weight = -1;
            emitted.https = true;
            let mut s = String::new();
            let args = [
                ("hostname", vhost),
                ("haproxy_dir", self.r.options.haproxy_dir.as_str()),
            ];
            self.put_map(
                &mut s,
                Name::HttpsFrontendAcl,
                Name::MapHttpsFrontendAcl,
                &args,
            )?;
            block = Some(s);
        }
        maps.domain.add(vhost, self.backend);
        Ok(block)
    }
}
