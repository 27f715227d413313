//! Log options of the real binary: `--log-format json` writes JSON lines to stderr, and
//! `--syslog-socket` sends every line to the syslog socket (RFC 3164, with its severity)
//! when the socket exists, as the original did.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

const APPS: &str = r#"{"apps":[{"id":"/web","labels":{"HAPROXY_GROUP":"external"},
    "portDefinitions":[{"port":10001}],"tasks":[{"id":"w.1","host":"127.0.0.1","ports":[31001]}]}]}"#;

fn run(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let apps = dir.join("apps.json");
    std::fs::write(&apps, APPS).unwrap();
    Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .arg("--apps-file")
        .arg(&apps)
        .args([
            "--group",
            "external",
            "--skip-validation",
            "--haproxy-config",
        ])
        .arg(dir.join("haproxy.cfg"))
        .args(extra)
        .env_remove("MARATHON_LB_LOG")
        .output()
        .unwrap()
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["--log-format", "json", "--syslog-socket", "/dev/null"],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "wrote new config"),
        "{stderr}"
    );
    // The original's Python format string keeps meaning the human format.
    let out = run(
        dir.path(),
        &[
            "--log-format",
            "%(asctime)s %(message)s",
            "--syslog-socket",
            "/dev/null",
        ],
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(" marathon_lb::run: ") && !stderr.trim_start().starts_with('{'),
        "{stderr}"
    );
}

#[test]
fn syslog_socket_gets_every_line_with_its_severity() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let out = run(dir.path(), &["--syslog-socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = syslog.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if got.iter().any(|l| l.contains("HAProxy was not reloaded")) {
            break;
        }
    }
    // <14> = user.info, <12> = user.warning.
    assert!(
        got.iter().any(|l| l.starts_with("<14>")
            && l.contains("marathon-lb[")
            && l.contains("wrote new config")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("<12>") && l.contains("HAProxy was not reloaded")),
        "{got:#?}"
    );
    // A socket that does not exist: stderr only, no error.
    let out = run(dir.path(), &["--syslog-socket", "/nonexistent/log"]);
    assert!(out.status.success(), "{out:?}");
}
