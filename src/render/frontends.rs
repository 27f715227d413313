//! The shared frontends every service adds rules to: `marathon_http_in`, `marathon_https_in`
//! (or the per-vhost frontends of `--group-https-by-vhost`) and `marathon_http_appid_in`.
//! Built on one thread, in service order, while the per-service sections render in parallel.

use std::collections::{BTreeMap, HashSet};

use super::service::Selected;
use super::vhost::{GroupedVhost, MapRulesEmitted, SharedRules};
use super::{Error, Maps, Renderer};
use crate::compat::clean_name;
use crate::templates::Name;

/// `marathon_http_in` and `marathon_https_in` as they are built.
#[derive(Debug, Default)]
pub(super) struct Frontends {
    /// `marathon_http_in`.
    pub(super) http: String,
    /// `marathon_https_in`.
    pub(super) https: String,
}

/// What the selected services add to the shared frontends.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// `marathon_http_appid_in`, head included.
    pub(super) appid_frontends: String,
    /// `(weight, text)` of each vhost service for `marathon_http_in`.
    pub(super) http_rules: Vec<(i64, String)>,
    /// `(weight, text)` of each vhost service for `marathon_https_in`.
    pub(super) https_rules: Vec<(i64, String)>,
    /// Map rows, emitted map rules and grouped vhosts.
    pub(super) rules: SharedRules,
}

/// `crt` options of `certs`, space separated.
pub(super) fn crt_list(certs: &[&str]) -> String {
    certs
        .iter()
        .map(|c| format!("crt {c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends the texts of `(weight, text)` rules, in order, growing `out` once.
pub(super) fn push_texts(out: &mut String, rules: &[(i64, String)]) {
    out.reserve(rules.iter().map(|rule| rule.1.len()).sum());
    rules.iter().for_each(|(_, text)| out.push_str(text));
}

impl Renderer<'_> {
    /// The heads of `marathon_http_in` and `marathon_https_in` (empty without them).
    pub(super) fn frontend_heads(&self, ssl_certs: &[&str]) -> Result<Frontends, Error> {
        let mut frontends = Frontends::default();
        if self.options.bind_http_https {
            frontends
                .http
                .push_str(self.templates.global(Name::HttpFrontendHead));
            if self.options.group_https_by_vhost {
                frontends
                    .https
                    .push_str(self.templates.global(Name::HttpsGroupedFrontendHead));
            } else {
                self.format_global(
                    &mut frontends.https,
                    Name::HttpsFrontendHead,
                    &[("sslCerts", &crt_list(ssl_certs))],
                )?;
            }
        }
        Ok(frontends)
    }

    /// The vhost and app-id rules every selected service adds to the shared frontends.
    pub(super) fn shared_rules(&self, selected: &[Selected<'_>]) -> Result<Shared, (usize, Error)> {
        let mut shared = Shared {
            appid_frontends: String::from(self.templates.global(Name::HttpFrontendAppidHead)),
            ..Shared::default()
        };
        let mut appids_seen: HashSet<&str> = HashSet::new();
        for s in selected {
            let fail = |e| (s.index, e);
            let service = s.service;
            if self.options.bind_http_https
                && service.hostname.as_deref().is_some_and(|h| !h.is_empty())
            {
                let rules = self
                    .vhost_rules(service, &s.backend, &mut shared.rules)
                    .map_err(fail)?;
                shared.http_rules.push((rules.weight, rules.http));
                shared.https_rules.push((rules.weight, rules.https));
            }
            if s.mode == "http" && appids_seen.insert(&service.app_id) {
                let rules = &mut shared.rules;
                self.appid_rule(
                    &mut shared.appid_frontends,
                    &mut rules.emitted,
                    &mut rules.maps,
                    s,
                )
                .map_err(fail)?;
            }
        }
        Ok(shared)
    }

    /// Appends the services' vhost rules, heaviest first, to the shared frontends.
    pub(super) fn push_vhost_rules(
        &self,
        frontends: &mut Frontends,
        shared: &mut Shared,
    ) -> Result<(), Error> {
        // Stable sorts: equal weights keep (app id, service port) order.
        shared
            .http_rules
            .sort_by_key(|rule| std::cmp::Reverse(rule.0));
        shared
            .https_rules
            .sort_by_key(|rule| std::cmp::Reverse(rule.0));
        push_texts(&mut frontends.http, &shared.http_rules);
        if self.options.group_https_by_vhost {
            for vhost in shared.rules.grouped.keys() {
                let name = clean_name(vhost);
                self.format_global(
                    &mut frontends.https,
                    Name::HttpsGroupedVhostFrontendAcl,
                    &[("backend", &name), ("host", vhost)],
                )?;
            }
        } else {
            push_texts(&mut frontends.https, &shared.https_rules);
        }
        Ok(())
    }

    /// The backend and frontend of every vhost under `--group-https-by-vhost`.
    pub(super) fn grouped_vhost_frontends(
        &self,
        config: &mut String,
        grouped: &mut BTreeMap<String, GroupedVhost>,
        ssl_certs: &[&str],
    ) -> Result<(), Error> {
        for (vhost, group) in grouped {
            let name = clean_name(vhost);
            self.format_global(
                config,
                Name::HttpsGroupedVhostBackendHead,
                &[("name", &name)],
            )?;
            let certs: Vec<&str> = if group.certs.is_empty() {
                ssl_certs.to_vec()
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
            self.format_global(config, Name::HttpsGroupedVhostFrontendHead, &args)?;
            group.blocks.sort_by_key(|block| std::cmp::Reverse(block.0));
            push_texts(config, &group.blocks);
        }
        Ok(())
    }

    /// The `marathon_http_appid_in` rule of an app's first http service (or its map row).
    fn appid_rule(
        &self,
        appid_frontends: &mut String,
        emitted: &mut MapRulesEmitted,
        maps: &mut Maps,
        s: &Selected<'_>,
    ) -> Result<(), Error> {
        let service = s.service;
        if self.options.haproxy_map {
            if !emitted.appid {
                let args = [("haproxy_dir", self.options.haproxy_dir.as_str())];
                let label = Name::HttpFrontendAppidAcl;
                self.format_service(
                    appid_frontends,
                    service,
                    label,
                    Name::MapHttpFrontendAppidAcl,
                    &args,
                )?;
                emitted.appid = true;
            }
            maps.app.add(&service.app_id, &s.backend);
            return Ok(());
        }
        let cleaned = clean_name(&service.app_id);
        let args = [
            ("cleanedUpAppId", cleaned.as_str()),
            ("hostname", service.hostname.as_deref().unwrap_or("None")),
            ("appId", &service.app_id),
            ("backend", &s.backend),
        ];
        let name = Name::HttpFrontendAppidAcl;
        self.format_service(appid_frontends, service, name, name, &args)
    }
}
