//! `--longhelp`: every app label and every template with its default text.

use std::fmt::Write;

use crate::model::labels::SETTING_LABELS;
use crate::templates::{default_head, Name, TEMPLATES};

/// What each setting label does.
fn describe(label: &str) -> &'static str {
    match label {
        "AUTH" => "HTTP basic auth, `realm:user:encrypted-password` (adds a userlist).",
        "BACKEND_HEALTHCHECK_PORT_INDEX" => {
            "Health-check the backends on the ports of another service port index."
        }
        "BACKEND_NETWORK_ALLOWED_ACL" => {
            "Space-separated IPs/CIDRs allowed to reach the backend; others are denied."
        }
        "BACKEND_WEIGHT" => {
            "Order of this backend's vhost ACLs (higher first; a PATH makes the default 0 a 1)."
        }
        "BALANCE" => "HAProxy balance algorithm (default roundrobin).",
        "BIND_ADDR" => "Address the service frontend binds (default *).",
        "BIND_OPTIONS" => "Extra options of the frontend's bind line.",
        "ENABLED" => {
            "Whether the service port is load balanced (required true under --strict-mode)."
        }
        "GROUP" => "HAProxy group(s) of this port, comma separated; overrides HAPROXY_GROUP.",
        "HTTP_BACKEND_PROXYPASS_PATH" => {
            "Path prefix stripped from requests (HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE)."
        }
        "HTTP_BACKEND_REDIR" => "Redirect requests for / on the vhost to this path.",
        "HTTP_BACKEND_REVPROXY_PATH" => "Path prepended to Location headers of responses.",
        "MODE" => "tcp or http (default: http with a VHOST or an HTTP health check, else tcp).",
        "PATH" => "Route only requests whose path begins with this (needs a VHOST).",
        "PORT" => "Bind this port instead of the Marathon service port.",
        "REDIRECT_TO_HTTPS" => "Redirect plain HTTP requests for the vhost to HTTPS.",
        "SSL_CERT" => "Certificate (PEM) for TLS on the service frontend.",
        "STICKY" => "Sticky sessions with a cookie.",
        "USE_HSTS" => "Send Strict-Transport-Security on responses.",
        "VHOST" => {
            "Virtual host name(s), comma separated, routed by the shared :80/:443 frontends."
        }
        _ => "",
    }
}

/// The full `--longhelp` text.
pub fn text() -> String {
    let mut out = String::from(
        "# marathon-lb labels and templates\n\n\
         Labels are set on Marathon apps. `{n}` is the service port index (0, 1, ...).\n\n## App labels\n\n",
    );
    let app_labels = [
        (
            "HAPROXY_GROUP",
            "Comma-separated HAProxy groups of the app (matched against --group).",
        ),
        (
            "HAPROXY_DEPLOYMENT_GROUP",
            "Blue/green deployment group: apps of a group share one backend.",
        ),
        (
            "HAPROXY_DEPLOYMENT_ALT_PORT",
            "Alternate service port during a blue/green deployment.",
        ),
        (
            "HAPROXY_DEPLOYMENT_COLOUR",
            "Blue/green colour (informational).",
        ),
        (
            "HAPROXY_DEPLOYMENT_STARTED_AT",
            "When the deployment started; the earlier app is the old one.",
        ),
        (
            "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
            "Target instances of the new app.",
        ),
        (
            "HAPROXY_DEPLOYMENT_NEW_INSTANCES",
            "Present while the new app scales up.",
        ),
    ];
    for (label, doc) in app_labels {
        let _ = writeln!(out, "- `{label}`: {doc}");
    }
    out.push_str("\n## Per service port labels\n\n");
    for label in SETTING_LABELS {
        let _ = writeln!(out, "- `HAPROXY_{{n}}_{label}`: {}", describe(label));
    }
    out.push_str(
        "\n## Templates\n\nEach template is the built-in default, overridden by the file `./templates/HAPROXY_<NAME>`,\n\
         then by a non-empty environment variable `HAPROXY_<NAME>` (literal `\\n` = newline), then, where\n\
         marked per-port, by the app label `HAPROXY_{n}_<NAME>`. `{placeholders}` follow Python str.format.\n\n",
    );
    for (name, spec) in Name::ALL.iter().zip(TEMPLATES) {
        let scope = if spec.per_port {
            "global, or per port with label `HAPROXY_{n}_".to_owned() + spec.name + "`"
        } else {
            "global".into()
        };
        let default = if *name == Name::Head {
            default_head(None)
        } else {
            spec.default.to_owned()
        };
        let _ = write!(
            out,
            "### `HAPROXY_{}` ({scope})\n\n```\n{default}```\n\n",
            spec.name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_every_template_and_label() {
        let text = super::text();
        for spec in crate::templates::TEMPLATES {
            assert!(
                text.contains(&format!("`HAPROXY_{}`", spec.name)),
                "{}",
                spec.name
            );
        }
        assert!(text.contains("HAPROXY_{n}_VHOST"));
    }
}
