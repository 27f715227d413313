//! The built-in `HAPROXY_HEAD` made usable without root, and the test certificate: the one
//! copy the integration tests (`tests/common/mod.rs`) and the managed-mode harness
//! (`tests/common/managed.rs`, also used by the benches) share.
//!
//! The built-in head needs root-owned paths (`/var/run/haproxy/socket`,
//! `/var/state/haproxy/`, `/marathon-lb/*.lua`), binds `0.0.0.0:9090` and names
//! `/etc/ssl/cert.pem`. The tests run unprivileged on loopback, so the stats socket and
//! server state move into a temp dir, and either the Lua scripts come from the repo and the
//! stats listener binds loopback ([`runnable_head`], for a running HAProxy) or the Lua
//! scripts and the stats routes to their services are left out ([`checkable_head`], for
//! `haproxy -c` and for tests that bring their own stats listener line).

use std::path::{Path, PathBuf};

/// The repository root (the testkit is its `testkit/` member).
fn repo() -> &'static Path {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().unwrap_or(kit)
}

/// A self-signed certificate + key for `localhost` (valid for 100 years), for every `crt`
/// path and `--ssl-certs`.
pub fn cert_pem() -> PathBuf {
    repo().join("tests/fixtures/selfsigned.pem")
}

/// The repo's `lua/` directory (the scripts the built-in head loads from `/marathon-lb/`).
pub fn lua_dir() -> PathBuf {
    repo().join("lua")
}

/// `text` with `from` replaced by `to`; `from` must occur, so a changed head fails loudly.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// The built-in head with the stats socket (at the default `operator` level, as in the
/// built-in head), the server state and the syslog socket in `dir`.
fn relocated_head(dir: &Path) -> String {
    let head = marathon_lb::templates::default_head(None);
    let head = replace(
        &head,
        "stats socket /var/run/haproxy/socket expose-fd listeners",
        &format!(
            "stats socket {}/haproxy.sock mode 600 expose-fd listeners",
            dir.display()
        ),
    );
    let head = replace(
        &head,
        "server-state-base /var/state/haproxy/",
        &format!("server-state-base {}/", dir.display()),
    );
    // Managed mode listens on a `log` socket nobody serves: not on the host's /dev/log.
    replace(
        &head,
        "log /dev/log ",
        &format!("log {}/log.sock ", dir.display()),
    )
}

/// The built-in `HAPROXY_HEAD`, runnable unprivileged from `dir`: the stats socket and
/// server state in `dir`, the Lua scripts from the repo, the stats listener on
/// `127.0.0.1:stats_port`, and `extra_defaults` lines appended to `defaults`.
pub fn runnable_head(dir: &Path, stats_port: u16, extra_defaults: &[&str]) -> String {
    let head = relocated_head(dir);
    let head = replace(&head, "/marathon-lb/", &format!("{}/", lua_dir().display()));
    let mut head = replace(
        &head,
        "bind 0.0.0.0:9090",
        &format!("bind 127.0.0.1:{stats_port}"),
    );
    if !extra_defaults.is_empty() {
        let extra: String = extra_defaults.iter().map(|l| format!("  {l}\n")).collect();
        head = replace(&head, "listen stats\n", &format!("{extra}listen stats\n"));
    }
    head
}

/// The built-in `HAPROXY_HEAD`, made usable by an unprivileged `haproxy -c` in `dir`: the
/// stats socket and server state in `dir`, the Lua scripts and the stats routes to their
/// services left out. Everything else is the real default text (the stats listener still
/// binds `0.0.0.0:9090`: replace it before running HAProxy for real).
pub fn checkable_head(dir: &Path) -> String {
    let mut out = String::new();
    for line in relocated_head(dir).lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("lua-load ") || trimmed.contains("use-service lua.") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out.contains("expose-fd listeners") && !out.contains("lua-load"),
        "the built-in head changed shape:\n{out}"
    );
    out
}
