//! Pure URL handling for `--marathon` hosts: normalising a host (path prefix kept,
//! userinfo split off as credentials) and building request URLs under it.
//!
//! Data flow position: used by `client` when it is built and for every request.

use reqwest::Url;

use super::auth::{BasicCredentials, Secret};
use super::client::{Error, Result};

/// Query of the apps listing, as marathon-lb sends it.
pub const APPS_QUERY: &[(&str, &str)] = &[
    ("embed", "apps.tasks"),
    ("embed", "apps.deployments"),
    ("embed", "apps.readiness"),
];
/// Query of one app (`/v2/apps/{id}`): the same embeds as the listing, singular.
pub const APP_QUERY: &[(&str, &str)] = &[
    ("embed", "app.tasks"),
    ("embed", "app.deployments"),
    ("embed", "app.readiness"),
];
/// Query of the event stream: only the events that can change the config (the incremental
/// live model also needs app deletions, group changes and deployments, which change apps
/// without an `api_post_event`).
pub const EVENTS_QUERY: &[(&str, &str)] = &[
    ("event_type", "api_post_event"),
    ("event_type", "health_status_changed_event"),
    ("event_type", "status_update_event"),
    ("event_type", "app_terminated_event"),
    ("event_type", "group_change_success"),
    ("event_type", "deployment_info"),
    ("event_type", "deployment_success"),
    ("event_type", "deployment_failed"),
];

/// Parses one `--marathon` value into a base URL ending in `/` with no userinfo,
/// query or fragment; returns the userinfo as basic credentials if present.
///
/// # Errors
/// [`Error::InvalidUrl`] (userinfo masked) unless it is an absolute http(s) URL.
pub fn parse_host(raw: &str) -> Result<(Url, Option<BasicCredentials>)> {
    let invalid = || Error::InvalidUrl {
        url: mask_userinfo(raw),
    };
    let mut url = Url::parse(raw.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    let userinfo = (!url.username().is_empty()).then(|| BasicCredentials {
        user: url.username().to_owned(),
        password: Secret::new(url.password().unwrap_or("")),
    });
    // These setters only fail for URLs without a host, ruled out above.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok((url, userinfo))
}

/// Replaces the userinfo of a URL-ish string with `***` (for unparsable input).
fn mask_userinfo(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => raw.to_owned(),
    }
}

/// `base` + `path` + `query`, keeping the base's path prefix.
pub fn endpoint(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    let full = format!("{}{path}", base.path());
    url.set_path(&full);
    url.query_pairs_mut().extend_pairs(query);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::client::{Client, ClientConfig};

    #[test]
    fn host_keeps_path_prefix_and_drops_userinfo_query_fragment() {
        let (url, creds) =
            parse_host("https://bob:pw@leader.mesos/service/marathon?x=1#f").unwrap();
        assert_eq!(url.as_str(), "https://leader.mesos/service/marathon/");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.expose()),
            ("bob", "pw")
        );
        let apps = endpoint(&url, "v2/apps", APPS_QUERY);
        assert_eq!(
            apps.as_str(),
            "https://leader.mesos/service/marathon/v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness"
        );
        let (plain, none) = parse_host("http://m:8080").unwrap();
        assert!(none.is_none());
        assert_eq!(
            endpoint(&plain, "v2/events", EVENTS_QUERY).as_str(),
            "http://m:8080/v2/events?event_type=api_post_event&event_type=health_status_changed_event&event_type=status_update_event&event_type=app_terminated_event&event_type=group_change_success&event_type=deployment_info&event_type=deployment_success&event_type=deployment_failed"
        );
    }

    #[test]
    fn invalid_hosts_are_rejected_without_showing_passwords() {
        for raw in [
            "ftp://m/",
            "not a url",
            "http://u:topsecret@[bad/",
            "m:8080",
        ] {
            let err = parse_host(raw).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{raw}: {err:?}");
            assert!(!err.to_string().contains("topsecret"), "{err}");
        }
        assert!(matches!(
            Client::new(ClientConfig::new(Vec::<String>::new())),
            Err(Error::NoHosts)
        ));
    }
}
