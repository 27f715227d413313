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

/// A placeholder the vhost templates are formatted with.
#[derive(Debug, Clone, Copy)]
enum Key {
    Acl,
    Host,
    Path,
    AppId,
    Realm,
    Backend,
    BindAddr,
}

impl Key {
    /// The placeholder's name in the templates.
    fn name(self) -> &'static str {
        match self {
            Key::Acl => "cleanedUpHostname",
            Key::Host => "hostname",
            Key::Path => "path",
            Key::AppId => "appId",
            Key::Realm => "realm",
            Key::Backend => "backend",
            Key::BindAddr => "bindAddr",
        }
    }
}

/// Placeholders of one template use at most: every [`Key`] once.
const MAX_KEYS: usize = 7;

/// The placeholder values of one service (`host` is the vhost being routed).
#[derive(Debug, Clone, Copy)]
struct Values<'a> {
    acl: &'a str,
    host: &'a str,
    path: &'a str,
    app_id: &'a str,
    realm: &'a str,
    backend: &'a str,
    bind_addr: &'a str,
}

impl Values<'_> {
    fn get(&self, key: Key) -> &str {
        match key {
            Key::Acl => self.acl,
            Key::Host => self.host,
            Key::Path => self.path,
            Key::AppId => self.app_id,
            Key::Realm => self.realm,
            Key::Backend => self.backend,
            Key::BindAddr => self.bind_addr,
        }
    }
}

/// One template use: a template with exactly the placeholders the original passes it (user
/// templates that name any other placeholder fail as they do in marathon-lb 1.x), or one of
/// the shared map rules.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Template `.0` formatted with placeholders `.1`.
    Put(Name, &'static [Key]),
    /// The shared `marathon_http_in` map rule: global `global`, overridden by label `label`.
    HttpMap { label: Name, global: Name },
    /// The shared `marathon_https_in` map rule.
    HttpsMap,
}

use Key::{Acl, AppId, Backend, BindAddr, Host, Path, Realm};

const HTTP_ACL_ONLY: Step = Step::Put(Name::HttpFrontendAclOnly, &[Acl, Host]);
const REDIRECT: Step = Step::Put(Name::BackendRedirectHttpToHttps, &[BindAddr, Acl]);
const REDIRECT_WITH_PATH: Step = Step::Put(
    Name::BackendRedirectHttpToHttpsWithPath,
    &[BindAddr, Acl, Backend],
);
const HTTPS_ACL_ONLY_WITH_PATH: Step =
    Step::Put(Name::HttpsFrontendAclOnlyWithPath, &[Path, Backend]);
const HTTPS_ACL: Step = Step::Put(Name::HttpsFrontendAcl, &[Acl, Host, AppId, Backend]);
const HTTPS_ACL_WITH_PATH: Step =
    Step::Put(Name::HttpsFrontendAclWithPath, &[Acl, Host, AppId, Backend]);
const HTTPS_ACL_WITH_AUTH: Step = Step::Put(
    Name::HttpsFrontendAclWithAuth,
    &[Acl, Host, AppId, Realm, Backend],
);

/// Which of the original's branches a service takes.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// `HAPROXY_{n}_PATH` is set.
    path: bool,
    /// `HAPROXY_{n}_AUTH` has a realm.
    realm: bool,
    /// `HAPROXY_{n}_REDIRECT_TO_HTTPS`.
    redirect: bool,
    /// `--haproxy-map`.
    map: bool,
}

/// The template uses of one service's vhost rules, in the original's order: `prefix_*` once
/// (for the first vhost), `vhost_*` for every vhost, then `suffix_http` once.
#[derive(Debug)]
struct Plan {
    prefix_http: &'static [Step],
    /// Also copied into every vhost's `--group-https-by-vhost` frontend.
    prefix_https: &'static [Step],
    vhost_http: &'static [Step],
    /// Each step is one block, also added to the vhost's grouped frontend.
    vhost_https: &'static [Step],
    suffix_http: &'static [Step],
    /// Whether every vhost gets a grouped frontend with the prefix (the multiple-vhost path).
    share_prefix: bool,
}

impl Plan {
    /// A comma-separated `HAPROXY_{n}_VHOST`.
    fn multiple(c: Case) -> Self {
        let (prefix_http, prefix_https): (&[Step], &[Step]) = match (c.path, c.realm) {
            (true, true) => {
                const ARGS: &[Key] = &[Path, Acl, Host, Realm, Backend];
                (
                    &[Step::Put(Name::HttpFrontendAclOnlyWithPathAndAuth, ARGS)],
                    &[Step::Put(Name::HttpsFrontendAclOnlyWithPath, ARGS)],
                )
            }
            (true, false) => (
                &[Step::Put(
                    Name::HttpFrontendAclOnlyWithPath,
                    &[Path, Backend],
                )],
                &[HTTPS_ACL_ONLY_WITH_PATH],
            ),
            (false, _) => (&[], &[]),
        };
        let vhost_http: &[Step] = if c.map && !c.path && !c.realm && !c.redirect {
            &[Step::HttpMap {
                label: Name::HttpFrontendAclOnly,
                global: Name::MapHttpFrontendAclOnly,
            }]
        } else {
            &[HTTP_ACL_ONLY]
        };
        let vhost_https: &[Step] = match (c.path, c.realm) {
            (true, true) => &[Step::Put(
                Name::HttpsFrontendAclWithAuthAndPath,
                &[Acl, Host, AppId, Realm, Backend],
            )],
            (true, false) => &[HTTPS_ACL_WITH_PATH],
            (false, true) => &[HTTPS_ACL_WITH_AUTH],
            (false, false) if c.map => &[Step::HttpsMap],
            (false, false) => &[HTTPS_ACL],
        };
        let suffix_http: &[Step] = match (c.redirect, c.path, c.realm) {
            (true, true, _) => &[REDIRECT_WITH_PATH],
            (true, false, _) => &[REDIRECT],
            (false, true, true) => &[Step::Put(
                Name::HttpFrontendRoutingOnlyWithPathAndAuth,
                &[Acl, Realm, Backend],
            )],
            (false, true, false) => &[Step::Put(
                Name::HttpFrontendRoutingOnlyWithPath,
                &[Acl, Backend],
            )],
            (false, false, true) => &[Step::Put(
                Name::HttpFrontendRoutingOnlyWithAuth,
                &[Acl, Realm, Backend],
            )],
            (false, false, false) if c.map => &[],
            (false, false, false) => &[Step::Put(Name::HttpFrontendRoutingOnly, &[Acl, Backend])],
        };
        Plan {
            prefix_http,
            prefix_https,
            vhost_http,
            vhost_https,
            suffix_http,
            share_prefix: true,
        }
    }

    /// A single `HAPROXY_{n}_VHOST`.
    fn single(c: Case) -> Self {
        let vhost_http: &[Step] = match (c.path, c.redirect, c.realm) {
            (true, true, _) => &[
                HTTP_ACL_ONLY,
                Step::Put(
                    Name::HttpFrontendAclOnlyWithPath,
                    &[Acl, Host, Path, Backend],
                ),
                REDIRECT_WITH_PATH,
            ],
            (true, false, true) => &[Step::Put(
                Name::HttpFrontendAclWithAuthAndPath,
                &[Acl, Host, Path, AppId, Realm, Backend],
            )],
            (true, false, false) => &[Step::Put(
                Name::HttpFrontendAclWithPath,
                &[Acl, Host, Path, AppId, Backend],
            )],
            (false, true, _) => &[
                Step::Put(Name::HttpFrontendAcl, &[Acl, Host, Backend]),
                REDIRECT,
            ],
            (false, false, true) => &[Step::Put(
                Name::HttpFrontendAclWithAuth,
                &[Acl, Host, AppId, Realm, Backend],
            )],
            (false, false, false) if c.map => &[Step::HttpMap {
                label: Name::HttpFrontendAcl,
                global: Name::MapHttpFrontendAcl,
            }],
            (false, false, false) => &[Step::Put(
                Name::HttpFrontendAcl,
                &[Acl, Host, AppId, Backend],
            )],
        };
        let vhost_https: &[Step] = match (c.path, c.realm) {
            (true, true) => &[
                HTTPS_ACL_ONLY_WITH_PATH,
                Step::Put(
                    Name::HttpsFrontendAclWithAuthAndPath,
                    &[Acl, Host, Path, AppId, Realm, Backend],
                ),
            ],
            (true, false) => &[HTTPS_ACL_ONLY_WITH_PATH, HTTPS_ACL_WITH_PATH],
            (false, true) => &[HTTPS_ACL_WITH_AUTH],
            (false, false) if c.map => &[Step::HttpsMap],
            (false, false) => &[HTTPS_ACL],
        };
        Plan {
            prefix_http: &[],
            prefix_https: &[],
            vhost_http,
            vhost_https,
            suffix_http: &[],
            share_prefix: false,
        }
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
        match step {
            Step::Put(name, keys) => self.put(&mut out.http, name, keys, values),
            Step::HttpMap { label, global } => self.http_map_rule(
                out,
                label,
                global,
                &mut shared.emitted,
                &mut shared.maps,
                values.host,
            ),
            Step::HttpsMap => self.https_map_rule(out, shared, values.host).map(|_| ()),
        }
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
        match step {
            Step::Put(name, keys) => self.put(&mut out.https, name, keys, values).map(|()| true),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every branch combination of both vhost paths.
    fn plans() -> impl Iterator<Item = Plan> {
        (0..16u8).flat_map(|bits| {
            let case = Case {
                path: bits & 1 != 0,
                realm: bits & 2 != 0,
                redirect: bits & 4 != 0,
                map: bits & 8 != 0,
            };
            [Plan::single(case), Plan::multiple(case)]
        })
    }

    #[test]
    fn every_step_names_distinct_placeholders_that_fit_the_argument_buffer() {
        for plan in plans() {
            let steps = [
                plan.prefix_http,
                plan.prefix_https,
                plan.vhost_http,
                plan.vhost_https,
                plan.suffix_http,
            ];
            for step in steps.concat() {
                if let Step::Put(name, keys) = step {
                    let mut names: Vec<&str> = keys.iter().map(|k| k.name()).collect();
                    assert!(names.len() <= MAX_KEYS, "{name:?}");
                    names.sort_unstable();
                    names.dedup();
                    assert_eq!(names.len(), keys.len(), "{name:?} repeats a placeholder");
                }
            }
        }
    }

    #[test]
    fn map_rules_appear_only_in_map_mode_on_the_plain_vhost_path() {
        for plan in plans() {
            let has_map = [plan.vhost_http, plan.vhost_https]
                .concat()
                .iter()
                .any(|s| !matches!(s, Step::Put(..)));
            let plain = plan.prefix_http.is_empty() && plan.vhost_https.len() == 1;
            if has_map {
                assert!(plain, "{plan:?}");
            }
        }
    }
}
