//! Helpers shared by the integration tests that run the real `haproxy`.
//!
//! The built-in `HAPROXY_HEAD` needs root-owned paths (`/var/run/haproxy/socket`,
//! `/var/state/haproxy/`, `/marathon-lb/*.lua`) and `/etc/ssl/cert.pem`. The tests run without
//! root, so they use [`checkable_head`] (from the testkit): the built-in head with the stats
//! socket and server state moved into a temp dir and the Lua scripts (and the stats routes to
//! their services) left out. Everything else is the real default text.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Command;

pub use marathon_lb_testkit::haproxy::{cert_pem, checkable_head};

/// `text` with the path after every `crt ` replaced by the fixture certificate.
pub fn with_fixture_certs(text: &str) -> String {
    let cert = cert_pem().display().to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("crt ") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let end = rest.find([' ', '\n']).unwrap_or(rest.len());
        out.push_str(&cert);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Templates whose `HAPROXY_HEAD` is [`checkable_head`], from a `templates/` folder
/// written into `dir` (the way a user overrides a template).
pub fn unprivileged_templates(dir: &Path) -> marathon_lb::templates::Templates {
    let templates_dir = dir.join("templates");
    std::fs::create_dir(&templates_dir).unwrap();
    std::fs::write(templates_dir.join("HAPROXY_HEAD"), checkable_head(dir)).unwrap();
    marathon_lb::templates::Templates::load(Some(&templates_dir), |_| None).unwrap()
}

/// Whether `haproxy` is on PATH. When it is not, prints a loud SKIP line for `test`.
pub fn haproxy_available(test: &str) -> bool {
    let found = Command::new("haproxy").arg("-v").output().is_ok();
    if !found {
        eprintln!(
            "\n!!!!! SKIP {test}: `haproxy` is not on PATH; install it (apt-get install -y haproxy) \
             to run the real `haproxy -c` checks !!!!!\n"
        );
    }
    found
}
