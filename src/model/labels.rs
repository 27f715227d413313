//! `HAPROXY_{n}_*` labels: parsed per service port and applied to a [`Service`].
//!
//! Labels are applied in alphabetical order of their name (as the original does), which matters
//! for one interaction: `PATH` raises a still-default weight 0 to 1, after `BACKEND_WEIGHT`.

use std::collections::BTreeMap;

use super::{Auth, Balance, Error, ProxyMode, Service};
use crate::compat::{parse_bool, parse_int};
use crate::marathon::types::Str;
use crate::templates::{Name, Template};

/// Per-port labels that set a property of the service (everything else per-port is a template).
pub const SETTING_LABELS: &[&str] = &[
    "AUTH",
    "BACKEND_HEALTHCHECK_PORT_INDEX",
    "BACKEND_NETWORK_ALLOWED_ACL",
    "BACKEND_WEIGHT",
    "BALANCE",
    "BIND_ADDR",
    "BIND_OPTIONS",
    "ENABLED",
    "GROUP",
    "HTTP_BACKEND_PROXYPASS_PATH",
    "HTTP_BACKEND_REDIR",
    "HTTP_BACKEND_REVPROXY_PATH",
    "MODE",
    "PATH",
    "PORT",
    "REDIRECT_TO_HTTPS",
    "SSL_CERT",
    "STICKY",
    "USE_HSTS",
    "VHOST",
];

/// Splits an app's labels into `index -> [(NAME, value)]` for `HAPROXY_{index}_NAME` keys,
/// each list sorted by `NAME`.
pub fn per_port<'l>(
    labels: &'l BTreeMap<Str<'_>, Str<'_>>,
) -> BTreeMap<usize, Vec<(&'l str, &'l str)>> {
    let mut by_index: BTreeMap<usize, Vec<(&str, &str)>> = BTreeMap::new();
    for (key, value) in labels {
        if let Some((index, name)) = port_label(key) {
            by_index
                .entry(index)
                .or_default()
                .push((name, value.as_ref()));
        }
    }
    for list in by_index.values_mut() {
        list.sort_by(|a, b| a.0.cmp(b.0));
    }
    by_index
}

/// The raw `HAPROXY_*` labels that concern service port `index`, in name order: the app-wide
/// ones (`HAPROXY_GROUP`, `HAPROXY_DEPLOYMENT_*`, ...) and that port's `HAPROXY_{index}_*`.
/// Kept on the service so a config HAProxy rejects can be traced back to the labels behind it.
pub fn of_port(labels: &BTreeMap<Str<'_>, Str<'_>>, index: usize) -> Vec<(String, String)> {
    labels
        .iter()
        .filter(|(key, _)| {
            key.starts_with("HAPROXY_") && port_label(key).is_none_or(|(i, _)| i == index)
        })
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// `(index, NAME)` of a canonical `HAPROXY_{index}_NAME` key (no leading zeros).
pub fn port_label(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("HAPROXY_")?;
    let (index, name) = rest.split_once('_')?;
    let canonical = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    if !canonical {
        return None;
    }
    index.parse().ok().map(|index| (index, name))
}

/// Applies the sorted labels of port `index` to `service`.
///
/// # Errors
/// [`Error::InvalidLabel`] for a value the original rejects (non-integer `PORT`, `BACKEND_WEIGHT`
/// or `BACKEND_HEALTHCHECK_PORT_INDEX`; an `AUTH` that is not `realm:user:password`).
pub fn apply(service: &mut Service, index: usize, labels: &[(&str, &str)]) -> Result<(), Error> {
    for &(name, value) in labels {
        let invalid = |expected: &'static str| Error::InvalidLabel {
            app_id: service.app_id.clone(),
            label: format!("HAPROXY_{index}_{name}"),
            value: value.to_owned(),
            expected,
        };
        let int = |expected| parse_int(value).ok_or_else(|| invalid(expected));
        match name {
            "AUTH" => {
                let parts: Vec<&str> = value.split(':').collect();
                let [realm, user, password] = parts[..] else {
                    return Err(invalid("realm:user:password"));
                };
                service.auth = Some(Box::new(Auth {
                    realm: realm.into(),
                    user: user.into(),
                    password: password.into(),
                }));
            }
            "BACKEND_HEALTHCHECK_PORT_INDEX" => {
                service.healthcheck_port_index = Some(int("an integer")?)
            }
            "BACKEND_NETWORK_ALLOWED_ACL" => service.network_allowed = Some(value.into()),
            "BACKEND_WEIGHT" => service.backend_weight = int("an integer")?,
            "BALANCE" => service.balance = Balance::new(value),
            "BIND_ADDR" => service.bind_addr = value.into(),
            "BIND_OPTIONS" => service.bind_options = Some(value.into()),
            "ENABLED" => service.enabled = parse_bool(value),
            "GROUP" => service.port_groups = Some(value.split(',').map(String::from).collect()),
            "HTTP_BACKEND_PROXYPASS_PATH" => service.proxypath = Some(value.into()),
            "HTTP_BACKEND_REDIR" => service.redirpath = Some(value.into()),
            "HTTP_BACKEND_REVPROXY_PATH" => service.revproxypath = Some(value.into()),
            "MODE" => service.mode = Some(ProxyMode::from_label(value)),
            "PATH" => {
                service.path = Some(value.into());
                if service.backend_weight == 0 {
                    service.backend_weight = 1;
                }
            }
            "PORT" => service.service_port = int("an integer port")?,
            "REDIRECT_TO_HTTPS" => service.redirect_http_to_https = parse_bool(value),
            "SSL_CERT" => service.ssl_cert = Some(value.into()),
            "STICKY" => service.sticky = parse_bool(value),
            "USE_HSTS" => service.use_hsts = parse_bool(value),
            "VHOST" => service.hostname = Some(value.to_lowercase()),
            _ => {
                if let Some(template) = Name::from_name(name).filter(|t| t.spec().per_port) {
                    service
                        .templates
                        .push((template, Template::new(value.replace("\r\n", "\n"))));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<Str<'static>, Str<'static>> {
        pairs
            .iter()
            .map(|(k, v)| (Str::from(k.to_string()), Str::from(v.to_string())))
            .collect()
    }

    fn service_with(pairs: &[(&str, &str)]) -> Result<Service, Error> {
        let map = labels(pairs);
        let mut s = Service::new("/app".into(), 10000, None, false);
        if let Some(list) = per_port(&map).get(&0) {
            apply(&mut s, 0, list)?;
        }
        Ok(s)
    }

    #[test]
    fn only_canonical_indexes_are_per_port() {
        let map = labels(&[
            ("HAPROXY_0_VHOST", "a"),
            ("HAPROXY_00_VHOST", "b"),
            ("HAPROXY_GROUP", "x"),
        ]);
        let split = per_port(&map);
        assert_eq!(split.len(), 1);
        assert_eq!(split[&0], vec![("VHOST", "a")]);
    }

    #[test]
    fn settings_are_parsed() {
        let s = service_with(&[
            ("HAPROXY_0_VHOST", "A.example.com, B"),
            ("HAPROXY_0_MODE", "HTTP"),
            ("HAPROXY_0_STICKY", "yes"),
            ("HAPROXY_0_PORT", " 8080 "),
            ("HAPROXY_0_AUTH", "realm:user:pw"),
            ("HAPROXY_0_GROUP", "a, b"),
            ("HAPROXY_0_ENABLED", "1"),
        ])
        .unwrap();
        assert_eq!(s.hostname.as_deref(), Some("a.example.com, b"));
        assert_eq!(s.mode.as_ref().map(ProxyMode::as_str), Some("http"));
        assert!(s.sticky);
        assert!(!s.enabled);
        assert_eq!(s.service_port, 8080);
        assert_eq!(s.auth.as_ref().unwrap().user, "user");
        assert_eq!(s.port_groups, Some(vec!["a".to_string(), " b".to_string()]));
    }

    #[test]
    fn path_lifts_only_the_default_weight() {
        assert_eq!(
            service_with(&[("HAPROXY_0_PATH", "/x")])
                .unwrap()
                .backend_weight,
            1
        );
        let s =
            service_with(&[("HAPROXY_0_PATH", "/x"), ("HAPROXY_0_BACKEND_WEIGHT", "-1")]).unwrap();
        assert_eq!(s.backend_weight, -1);
    }

    #[test]
    fn bad_values_name_the_app_and_label() {
        let err = service_with(&[("HAPROXY_0_PORT", "80a")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/app") && err.contains("HAPROXY_0_PORT") && err.contains("80a"),
            "{err}"
        );
        assert!(service_with(&[("HAPROXY_0_AUTH", "user:pw")]).is_err());
    }

    #[test]
    fn template_labels_are_kept_with_lf_line_endings() {
        let s = service_with(&[
            ("HAPROXY_0_BACKEND_HEAD", "a\r\nb\r\n"),
            ("HAPROXY_0_HEAD", "x"),
        ])
        .unwrap();
        assert_eq!(
            s.templates,
            vec![(Name::BackendHead, Template::new("a\nb\n"))]
        );
    }
    /// One row per setting label: a value and what it must do to the service.
    type Check = fn(&Service) -> bool;

    const SETTINGS: &[(&str, &str, Check)] = &[
        ("AUTH", "my realm:bob:$6$x", |s| {
            s.auth.as_deref()
                == Some(&Auth {
                    realm: "my realm".into(),
                    user: "bob".into(),
                    password: "$6$x".into(),
                })
        }),
        ("BACKEND_HEALTHCHECK_PORT_INDEX", "-1", |s| {
            s.healthcheck_port_index == Some(-1)
        }),
        ("BACKEND_NETWORK_ALLOWED_ACL", "10.0.0.0/8 1.2.3.4", |s| {
            s.network_allowed.as_deref() == Some("10.0.0.0/8 1.2.3.4")
        }),
        ("BACKEND_WEIGHT", "+7", |s| s.backend_weight == 7),
        ("BALANCE", "leastconn", |s| {
            s.balance.as_str() == "leastconn"
        }),
        ("BIND_ADDR", "10.0.0.1", |s| s.bind_addr == "10.0.0.1"),
        ("BIND_OPTIONS", "accept-proxy", |s| {
            s.bind_options.as_deref() == Some("accept-proxy")
        }),
        ("ENABLED", "T", |s| s.enabled),
        ("GROUP", "internal,external", |s| {
            s.port_groups == Some(vec!["internal".into(), "external".into()])
        }),
        ("HTTP_BACKEND_PROXYPASS_PATH", "/proxy", |s| {
            s.proxypath.as_deref() == Some("/proxy")
        }),
        ("HTTP_BACKEND_REDIR", "/landing", |s| {
            s.redirpath.as_deref() == Some("/landing")
        }),
        ("HTTP_BACKEND_REVPROXY_PATH", "/rev", |s| {
            s.revproxypath.as_deref() == Some("/rev")
        }),
        ("MODE", "TCP", |s| {
            s.mode.as_ref().map(ProxyMode::as_str) == Some("tcp")
        }),
        ("PATH", "/api", |s| {
            s.path.as_deref() == Some("/api") && s.backend_weight == 1
        }),
        ("PORT", "8443", |s| s.service_port == 8443),
        ("REDIRECT_TO_HTTPS", "y", |s| s.redirect_http_to_https),
        ("SSL_CERT", "/etc/ssl/a.pem", |s| {
            s.ssl_cert.as_deref() == Some("/etc/ssl/a.pem")
        }),
        ("STICKY", "TRUE", |s| s.sticky),
        ("USE_HSTS", "Yes", |s| s.use_hsts),
        ("VHOST", "API.Example.COM", |s| {
            s.hostname.as_deref() == Some("api.example.com")
        }),
    ];

    #[test]
    fn every_setting_label_sets_its_field() {
        let tested: Vec<&str> = SETTINGS.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(
            tested, SETTING_LABELS,
            "every setting label needs a row in SETTINGS (in SETTING_LABELS order)"
        );
        for (name, value, check) in SETTINGS {
            let defaults = Service::new("/app".into(), 10000, None, true);
            assert!(
                !check(&defaults),
                "HAPROXY_0_{name}: the check holds without the label"
            );
            let label = format!("HAPROXY_0_{name}");
            let s = service_with(&[(label.as_str(), value)]).unwrap();
            assert!(check(&s), "HAPROXY_0_{name}={value:?} did not apply: {s:?}");
        }
    }

    #[test]
    fn booleans_follow_python_truthiness_of_the_original() {
        for (value, expected) in [
            ("true", true),
            ("True", true),
            ("t", true),
            ("YES", true),
            ("y", true),
            ("1", false),
            ("on", false),
            ("", false),
            (" true", false),
        ] {
            let s = service_with(&[("HAPROXY_0_STICKY", value)]).unwrap();
            assert_eq!(s.sticky, expected, "STICKY={value:?}");
        }
    }

    #[test]
    fn integer_labels_reject_what_python_int_rejects() {
        for label in ["PORT", "BACKEND_WEIGHT", "BACKEND_HEALTHCHECK_PORT_INDEX"] {
            let key = format!("HAPROXY_0_{label}");
            for bad in ["", "abc", "1.5", "0x10", "1 2"] {
                let err = service_with(&[(key.as_str(), bad)]).unwrap_err();
                assert!(
                    matches!(&err, Error::InvalidLabel { label: l, value, .. } if *l == key && value == bad),
                    "{key}={bad:?}: {err}"
                );
            }
            assert!(service_with(&[(key.as_str(), " 12 ")]).is_ok(), "{key}");
        }
    }

    #[test]
    fn labels_of_other_ports_and_app_labels_are_not_per_port() {
        let map = labels(&[
            ("HAPROXY_1_VHOST", "one"),
            ("HAPROXY_10_MODE", "tcp"),
            ("HAPROXY_GROUP", "external"),
            ("HAPROXY_DEPLOYMENT_GROUP", "g"),
            ("HAPROXY__VHOST", "x"),
            ("HAPROXY_-1_VHOST", "x"),
            ("OTHER_0_VHOST", "x"),
        ]);
        let split = per_port(&map);
        assert_eq!(split.keys().copied().collect::<Vec<_>>(), [1, 10]);
        assert_eq!(split[&1], vec![("VHOST", "one")]);
        assert_eq!(split[&10], vec![("MODE", "tcp")]);
    }

    #[test]
    fn labels_apply_in_name_order_so_path_sees_the_weight() {
        // BACKEND_WEIGHT sorts before PATH: an explicit 0 is still lifted to 1, 5 is kept.
        let s =
            service_with(&[("HAPROXY_0_PATH", "/x"), ("HAPROXY_0_BACKEND_WEIGHT", "0")]).unwrap();
        assert_eq!(s.backend_weight, 1);
        let s =
            service_with(&[("HAPROXY_0_PATH", "/x"), ("HAPROXY_0_BACKEND_WEIGHT", "5")]).unwrap();
        assert_eq!(s.backend_weight, 5);
    }

    #[test]
    fn every_per_port_template_label_is_collected() {
        for name in crate::templates::Name::ALL {
            let spec = name.spec();
            let key = format!("HAPROXY_0_{}", spec.name);
            let s = service_with(&[(key.as_str(), "custom\r\n")]).unwrap();
            if SETTING_LABELS.contains(&spec.name) {
                continue;
            }
            if spec.per_port {
                assert_eq!(
                    s.template(name).map(Template::text),
                    Some("custom\n"),
                    "{key}"
                );
            } else {
                assert!(s.templates.is_empty(), "{key} is global only");
            }
        }
    }
}
