//! The table behind the vhost rules: for each branch of marathon-lb 1.x (single or multiple
//! vhosts, path, auth, redirect-to-https, map mode) the templates it formats, in order, each
//! with exactly the placeholders the original passes it, so user templates keep working.

use crate::templates::Name;

/// A placeholder the vhost templates are formatted with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
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
    pub(super) fn name(self) -> &'static str {
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
pub(super) const MAX_KEYS: usize = 7;

/// The placeholder values of one service (`host` is the vhost being routed).
#[derive(Debug, Clone, Copy)]
pub(super) struct Values<'a> {
    pub(super) acl: &'a str,
    pub(super) host: &'a str,
    pub(super) path: &'a str,
    pub(super) app_id: &'a str,
    pub(super) realm: &'a str,
    pub(super) backend: &'a str,
    pub(super) bind_addr: &'a str,
}

impl Values<'_> {
    pub(super) fn get(&self, key: Key) -> &str {
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
pub(super) enum Step {
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
pub(super) struct Case {
    /// `HAPROXY_{n}_PATH` is set.
    pub(super) path: bool,
    /// `HAPROXY_{n}_AUTH` has a realm.
    pub(super) realm: bool,
    /// `HAPROXY_{n}_REDIRECT_TO_HTTPS`.
    pub(super) redirect: bool,
    /// `--haproxy-map`.
    pub(super) map: bool,
}

/// The template uses of one service's vhost rules, in the original's order: `prefix_*` once
/// (for the first vhost), `vhost_*` for every vhost, then `suffix_http` once.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) prefix_http: &'static [Step],
    /// Also copied into every vhost's `--group-https-by-vhost` frontend.
    pub(super) prefix_https: &'static [Step],
    pub(super) vhost_http: &'static [Step],
    /// Each step is one block, also added to the vhost's grouped frontend.
    pub(super) vhost_https: &'static [Step],
    pub(super) suffix_http: &'static [Step],
    /// Whether every vhost gets a grouped frontend with the prefix (the multiple-vhost path).
    pub(super) share_prefix: bool,
}

impl Plan {
    /// A comma-separated `HAPROXY_{n}_VHOST`.
    pub(super) fn multiple(c: Case) -> Self {
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
    pub(super) fn single(c: Case) -> Self {
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
