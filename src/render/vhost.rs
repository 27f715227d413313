//! The vhost routing rules of one service for the shared `marathon_http_in` and
//! `marathon_https_in` frontends (and the per-vhost frontends of `--group-https-by-vhost`).
//!
//! One path serves single and multiple vhosts: [`plan::Plan`] says which templates (with which
//! placeholders) marathon-lb 1.x formats for the service's branch, and `Ctx::apply` runs
//! them for each vhost, adding blocks to the grouped frontends and rows to the maps.

mod plan;

use std::collections::BTreeMap;

use plan::{Case, Key, Plan, Step, Values, MAX_KEYS};

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
        let case = Case {
            path: path.is_some(),
            realm: realm.is_some(),
            redirect: service.redirect_http_to_https,
            map: self.options.haproxy_map,
        };
        let plan = if hostname.contains(',') {
            Plan::multiple(case)
        } else {
            Plan::single(case)
        };
        let ctx = Ctx {
            r: self,
            service,
            backend,
            values: Values {
                acl: &acl,
                host: first_vhost,
                path: path.unwrap_or_default(),
                app_id: &service.app_id,
                realm: realm.unwrap_or_default(),
                backend,
                bind_addr: &service.bind_addr,
            },
        };
        let mut out = VhostRules {
            weight: service.backend_weight,
            ..Default::default()
        };
        ctx.apply(&plan, hostname, shared, &mut out)?;
        Ok(out)
    }
}

/// Values shared by every template call for one service.
struct Ctx<'a> {
    r: &'a Renderer<'a>,
    service: &'a Service,
    backend: &'a str,
    values: Values<'a>,
}

impl Ctx<'_> {
    /// Runs `plan` for every vhost of the comma-separated `hostname`.
    fn apply(
        &self,
        plan: &Plan,
        hostname: &str,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<(), super::Error> {
        for step in plan.prefix_http {
            self.http_step(*step, &self.values, shared, out)?;
        }
        for step in plan.prefix_https {
            self.https_step(*step, &self.values, shared, out)?;
        }
        let prefix_len = out.https.len();
        for vhost in hostname.split(',') {
            if plan.share_prefix {
                let path_acls = out.https[..prefix_len].to_owned();
                let group = shared.grouped.entry(vhost.to_owned()).or_default();
                group.blocks.push((out.weight, path_acls));
            }
            GroupedVhost::note_service(&mut shared.grouped, vhost, self.service);
            let values = Values {
                host: vhost,
                ..self.values
            };
            for step in plan.vhost_http {
                self.http_step(*step, &values, shared, out)?;
            }
            for step in plan.vhost_https {
                let start = out.https.len();
                if self.https_step(*step, &values, shared, out)? {
                    let block = out.https[start..].to_owned();
                    let group = shared.grouped.entry(vhost.to_owned()).or_default();
                    group.blocks.push((out.weight, block));
                }
            }
        }
        for step in plan.suffix_http {
            self.http_step(*step, &self.values, shared, out)?;
        }
        Ok(())
    }

    /// Formats template `name` with the placeholders `keys` into `out`.
    fn put(
        &self,
        out: &mut String,
        name: Name,
        keys: &[Key],
        values: &Values<'_>,
    ) -> Result<(), super::Error> {
        let mut args = [("", ""); MAX_KEYS];
        for (slot, key) in args.iter_mut().zip(keys) {
            *slot = (key.name(), values.get(*key));
        }
        let args = &args[..keys.len().min(MAX_KEYS)];
        self.r.format_service(out, self.service, name, name, args)
    }

    /// A step of `marathon_http_in`.
    fn http_step(
        &self,
        step: Step,
        values: &Values<'_>,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<(), super::Error> {
        self.step(Frontend::Http, step, values, shared, out)
            .map(|_| ())
    }

    /// A step of `marathon_https_in`; whether it added a block (a map rule adds one only
    /// for the first service that needs it).
    fn https_step(
        &self,
        step: Step,
        values: &Values<'_>,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<bool, super::Error> {
        self.step(Frontend::Https, step, values, shared, out)
    }

    /// One step of either shared frontend: a template put into that frontend's rules (a
    /// block), or a map rule; whether it added a block.
    fn step(
        &self,
        frontend: Frontend,
        step: Step,
        values: &Values<'_>,
        shared: &mut SharedRules,
        out: &mut VhostRules,
    ) -> Result<bool, super::Error> {
        match step {
            Step::Put(name, keys) => {
                let rules = match frontend {
                    Frontend::Http => &mut out.http,
                    Frontend::Https => &mut out.https,
                };
                self.put(rules, name, keys, values).map(|()| true)
            }
            Step::HttpMap { label, global } => self
                .http_map_rule(
                    out,
                    label,
                    global,
                    &mut shared.emitted,
                    &mut shared.maps,
                    values.host,
                )
                .map(|()| false),
            Step::HttpsMap => self.https_map_rule(out, shared, values.host),
        }
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
            self.r
                .format_service(&mut out.http, self.service, label, global, &args)?;
            emitted.http = true;
        }
        maps.domain.add(vhost, self.backend);
        Ok(())
    }

    /// The same for `marathon_https_in`, into `out.https`; whether this service emitted it.
    fn https_map_rule(
        &self,
        out: &mut VhostRules,
        shared: &mut SharedRules,
        vhost: &str,
    ) -> Result<bool, super::Error> {
        let emit = !shared.emitted.https;
        if emit {
            out.weight = -1;
            shared.emitted.https = true;
            let args = [
                ("hostname", vhost),
                ("haproxy_dir", self.r.options.haproxy_dir.as_str()),
            ];
            self.r.format_service(
                &mut out.https,
                self.service,
                Name::HttpsFrontendAcl,
                Name::MapHttpsFrontendAcl,
                &args,
            )?;
        }
        shared.maps.domain.add(vhost, self.backend);
        Ok(emit)
    }
}

/// Which shared frontend a vhost step writes into.
#[derive(Debug, Clone, Copy)]
enum Frontend {
    /// `marathon_http_in`.
    Http,
    /// `marathon_https_in`.
    Https,
}
