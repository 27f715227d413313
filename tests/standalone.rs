//! The binary alone: managed mode with the built-in `HAPROXY_HEAD` on a machine where nothing
//! but `haproxy` is installed. The head's Lua scripts and its state directories do not exist
//! until marathon-lb provides them (src/provision.rs); HAProxy then starts with no `[ALERT]` and
//! the Lua services answer.
//!
//! The head is the built-in text with only what a test cannot use moved: its paths under a
//! fresh temp dir (`/marathon-lb/`, `/var/run/haproxy/`, `/var/state/haproxy/`, `/dev/log`) and
//! the stats listener on a loopback port. (The container smoke test, `scripts/image`, runs the
//! unmodified head at its real paths.)

#[path = "common/managed.rs"]
mod managed;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use managed::{free_port, haproxy_missing, haproxy_pids_in, signal};

/// The built-in head with its paths under `fresh` and the stats listener on `stats`.
fn relocated_default_head(fresh: &Path, stats: u16) -> String {
    let head = marathon_lb::templates::default_head(None);
    let f = fresh.display();
    let moves = [
        ("/marathon-lb/", format!("{f}/lua/")),
        ("/var/run/haproxy/", format!("{f}/run-haproxy/")),
        ("/var/state/haproxy/", format!("{f}/state-haproxy/")),
        ("bind 0.0.0.0:9090", format!("bind 127.0.0.1:{stats}")),
        ("log /dev/log ", format!("log {f}/dev-log ")),
    ];
    moves.iter().fold(head, |head, (from, to)| {
        assert!(head.contains(from), "the built-in head changed: {from}");
        head.replace(from, to)
    })
}

/// Starts the binary in managed mode on an apps file with no apps, with `head`.
fn start(dir: &Path, head: &str, admin: u16, appid: u16) -> Child {
    let apps = dir.join("apps.json");
    std::fs::write(&apps, r#"{"apps": []}"#).unwrap();
    let log = std::fs::File::create(dir.join("marathon-lb.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
    cmd.current_dir(dir)
        .arg("--apps-file")
        .arg(&apps)
        .args(["--watch", "--group", "external", "--dont-bind-http-https"])
        .arg("--haproxy-config")
        .arg(dir.join("haproxy.cfg"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .arg("--ssl-certs")
        .arg(managed::cert_pem())
        // DEBUG: HAProxy's per-request log lines (the proof that they reach stderr) are DEBUG.
        .args(["--archive-versions", "0", "--log-level", "debug"])
        .env("NO_COLOR", "1")
        .env("HAPROXY_HEAD", head)
        .env(
            "HAPROXY_HTTP_FRONTEND_APPID_HEAD",
            format!("\nfrontend marathon_http_appid_in\n  bind 127.0.0.1:{appid}\n  mode http\n"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd.spawn().unwrap()
}

/// Stops marathon-lb (SIGTERM, bounded) and anything left in its run dir.
fn stop(mut child: Child, run_dir: &Path) {
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    for pid in haproxy_pids_in(run_dir) {
        signal(pid, libc::SIGKILL);
    }
}

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

#[tokio::test]
async fn managed_mode_provides_the_default_heads_lua_and_directories() {
    if haproxy_missing("managed_mode_provides_the_default_heads_lua_and_directories") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let (stats, admin, appid) = (free_port(), free_port(), free_port());
    let child = start(
        tmp.path(),
        &relocated_default_head(&fresh, stats),
        admin,
        appid,
    );
    let log = || std::fs::read_to_string(tmp.path().join("marathon-lb.log")).unwrap_or_default();
    let stats_url = format!("http://127.0.0.1:{stats}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // getpids is a Lua service: it answers only when the scripts were loaded.
    let pids = loop {
        if let Some((200, body)) = get(&format!("{stats_url}/_haproxy_getpids")).await {
            break body;
        }
        assert!(Instant::now() < deadline, "not serving; log:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let health = get(&format!("{stats_url}/_haproxy_health_check")).await;
    let config = get(&format!("{stats_url}/_haproxy_getconfig")).await;
    let log_text = log();
    stop(child, &tmp.path().join("run"));

    assert!(
        pids.split_whitespace().all(|p| p.parse::<u32>().is_ok()),
        "{pids:?}"
    );
    assert_eq!(health.map(|(c, _)| c), Some(200));
    let (code, config) = config.unwrap();
    assert_eq!(code, 200);
    assert!(config.contains(&format!("lua-load {}/lua/getpids.lua", fresh.display())));
    for (name, text) in marathon_lb::provision::LUA_SCRIPTS {
        let written = std::fs::read_to_string(fresh.join("lua").join(name)).unwrap();
        assert_eq!(written, text, "{name}");
    }
    assert!(fresh.join("run-haproxy/socket").exists() || fresh.join("run-haproxy").is_dir());
    assert!(fresh.join("state-haproxy").is_dir());
    assert!(
        !log_text.contains("[ALERT]"),
        "HAProxy alerted:\n{log_text}"
    );
    assert!(
        log_text.contains("wrote a Lua script the HAProxy head loads"),
        "{log_text}"
    );
    // No syslog daemon there: marathon-lb listened and HAProxy's lines reached its stderr.
    assert!(
        log_text.contains("log lines go to stderr") && log_text.contains("haproxy["),
        "{log_text}"
    );
}

#[test]
fn an_unwritable_lua_path_is_a_start_up_error_naming_it_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory that cannot be made: its parent is a regular file.
    std::fs::write(tmp.path().join("not-a-dir"), "").unwrap();
    let head = relocated_default_head(&tmp.path().join("not-a-dir"), free_port());
    let mut child = start(tmp.path(), &head, free_port(), free_port());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            stop(child, &tmp.path().join("run"));
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(tmp.path().join("marathon-lb.log")).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    let path = tmp.path().join("not-a-dir");
    assert!(
        log.contains(&format!(
            "cannot create {}",
            path.join("run-haproxy").display()
        )) || log.contains(&format!("cannot write {}", path.join("lua").display())),
        "{log}"
    );
    assert!(log.contains("mkdir -p"), "{log}");
    assert!(haproxy_pids_in(&tmp.path().join("run")).is_empty());
}
