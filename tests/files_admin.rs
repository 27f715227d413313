//! Files marathon-lb writes and the admin server it binds, end to end with the real binary
//! (and, in managed mode, a real HAProxy and the fake Marathon):
//!
//! - certificates are generated only where the operator said so: an app label naming a
//!   missing certificate elsewhere creates nothing and leaves that app out, naming the label;
//!   a missing `--ssl-certs` path is still generated;
//! - the archive lives in a private directory and never writes through a planted symlink;
//! - the admin signal endpoints refuse cross-origin and rebound-host requests;
//! - an admin address already taken is a start-up error that starts no HAProxy.

#[path = "common/managed.rs"]
mod managed;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use managed::{free_port, haproxy_missing, App, ManagedLb, Options, TaskServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_marathon-lb");
const SETTLE: Duration = Duration::from_secs(10);

/// One raw `POST path` to `127.0.0.1:port` with these extra header lines (`Host` included
/// when given; else `Host: 127.0.0.1:port`): status code and body.
async fn post(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut head = format!("POST {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        sock.write_all(head.as_bytes()).await?;
        let mut out = String::new();
        sock.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("admin answer in time")
        .expect("admin exchange");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

async fn passes(lb: &ManagedLb) -> u64 {
    lb.status().await["passes"].as_u64().unwrap()
}

/// The pass count once it has not changed for 500 ms (bounded by `SETTLE`).
async fn quiet_passes(lb: &ManagedLb) -> u64 {
    let deadline = Instant::now() + SETTLE;
    let mut last = passes(lb).await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = passes(lb).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("passes kept running for {SETTLE:?}");
}

/// The HTTPS answer's body (any status) of `https://127.0.0.1:port/`, retried until `SETTLE`.
async fn https_body(lb: &ManagedLb, port: u16) -> Option<String> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(resp) = client
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
        {
            return resp.text().await.ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("no TLS answer on {port}; log:\n{}", lb.log());
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_certificate_outside_the_generate_dir_is_never_written_and_its_app_left_out() {
    if haproxy_missing("a_label_certificate_outside_the_generate_dir_is_never_written") {
        return;
    }
    let good = TaskServer::start("good").await;
    let evil_task = TaskServer::start("evil").await;
    let (good_port, evil_port) = (free_port(), free_port());
    let planted = tempfile::tempdir().unwrap();
    let evil_dir = planted.path().join("nonexistent-dir");
    let evil_cert = evil_dir.join("evil.pem");
    let evil = App::new("/evil", evil_port, vec![evil_task.task()])
        .label("HAPROXY_0_SSL_CERT", evil_cert.to_str().unwrap());
    let web = App::new("/good", good_port, vec![good.task()]);
    // A missing --ssl-certs path (its directory exists) is still generated.
    let gen = tempfile::tempdir().unwrap();
    let default_cert = gen.path().join("default.pem");
    let options = Options {
        ssl_certs: Some(default_cert.display().to_string()),
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&web, &evil]).await;

    lb.wait_for_answers(good_port, &["good"], SETTLE).await;
    assert!(
        !evil_dir.exists(),
        "a label made marathon-lb create a directory"
    );
    assert_eq!(std::fs::read_dir(planted.path()).unwrap().count(), 0);
    let status = lb.status().await;
    let invalid = status["invalid_apps"].as_array().expect("invalid_apps");
    let entry = invalid
        .iter()
        .find(|a| a["app_id"] == "/evil")
        .unwrap_or_else(|| panic!("/evil not left out: {status}"));
    let error = entry["error"].as_str().unwrap();
    assert!(
        entry["labels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l == "HAPROXY_0_SSL_CERT")),
        "{entry}"
    );
    assert!(error.contains(evil_cert.to_str().unwrap()), "{error}");
    assert_eq!(invalid.len(), 1, "{status}");
    assert!(!lb.config().contains(&evil.backend()), "{}", lb.config());
    assert_eq!(managed::get(evil_port, None).await.get(..3), Some("ERR"));

    assert!(
        default_cert.is_file(),
        "--ssl-certs not generated; log:\n{}",
        lb.log()
    );
    assert!(lb.log().contains("generated a self-signed one"));
    assert!(
        https_body(&lb, lb.ports.https).await.is_some(),
        "marathon_https_in does not speak TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_signals_refuse_other_origins_and_rebound_hosts() {
    if haproxy_missing("admin_signals_refuse_other_origins_and_rebound_hosts") {
        return;
    }
    let task = TaskServer::start("a").await;
    let web = App::new("/web", free_port(), vec![task.task()]);
    let lb = ManagedLb::start(Options::default(), &[&web]).await;
    let admin = lb.ports.admin;
    // The event stream's connect triggers a pass of its own, which may still be queued when
    // the start is seen: count from a quiet loop.
    let before = quiet_passes(&lb).await;

    let refused: [&[(&str, &str)]; 4] = [
        &[("Origin", "http://evil.example")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Host", "evil.example"), ("Origin", "http://evil.example")],
        &[("Host", "rebound.example:9092")],
    ];
    for headers in refused {
        for path in ["/signal/hup", "/signal/usr1"] {
            let (code, body) = post(admin, path, headers).await;
            assert_eq!(code, 403, "{path} {headers:?}: {body}");
            assert!(body.starts_with("forbidden: "), "{body}");
        }
    }
    // Nothing was triggered: no pass ran, no reload.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(passes(&lb).await, before, "a refused signal ran a pass");
    assert!(lb.log().contains("refused a cross-origin admin request"));

    // Same origin (the status page's buttons) and plain clients (curl) are served.
    let own = format!("http://127.0.0.1:{admin}");
    let (code, body) = post(admin, "/signal/hup", &[("Origin", &own)]).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(admin, "/signal/hup", &[]).await;
    assert_eq!(code, 200, "{body}");
    lb.wait_until("a pass after the plain POST", SETTLE, || async {
        passes(&lb).await > before
    })
    .await;
    // HAProxy's Lua forwarder (`:9090/_mlb_signal/hup`) still gets through.
    let after = passes(&lb).await;
    let (code, body) = lb.get_stats("/_mlb_signal/hup").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "Sent SIGHUP signal to marathon-lb")
    );
    lb.wait_until("a pass after /_mlb_signal/hup", SETTLE, || async {
        passes(&lb).await > after
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_a_taken_admin_address_exits_and_starts_no_haproxy() {
    if haproxy_missing("a_second_instance_on_a_taken_admin_address_exits") {
        return;
    }
    let task = TaskServer::start("a").await;
    let port = free_port();
    let web = App::new("/web", port, vec![task.task()]);
    let lb = ManagedLb::start(Options::default(), &[&web]).await;
    let addr = format!("127.0.0.1:{}", lb.ports.admin);

    let second = tempfile::tempdir().unwrap();
    let run_dir = second.path().join("run");
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .current_dir(lb.dir.path())
        .args(["--marathon", &lb.fake.url(), "--sse", "--group", "external"])
        .arg("--haproxy-config")
        .arg(second.path().join("haproxy.cfg"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--admin-addr", &addr, "--archive-versions", "0"])
        .args(["--syslog-socket", "/dev/null", "--log-level", "info"])
        .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let pids = managed::haproxy_pids_in(&run_dir);
            managed::signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
            for pid in &pids {
                managed::signal(*pid, libc::SIGKILL);
            }
            panic!("the second instance kept running (haproxy pids {pids:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("--admin-addr off"), "{stderr}");
    assert!(managed::haproxy_pids_in(&run_dir).is_empty());
    assert!(
        !second.path().join("haproxy.cfg").exists(),
        "it wrote a config"
    );
    eprintln!(
        "second instance exited in {:?}: {stderr}",
        started.elapsed()
    );

    // The first one is untouched and its signals stay its own.
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let (code, _) = lb.get_admin("/healthz").await.unwrap();
    assert_eq!(code, 200);
}

/// The uid the archive directory is named after.
fn uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

/// One-shot run writing `<dir>/<config>` from `apps.json`, with `TMPDIR=<dir>` and two
/// archived versions: its stderr, after checking it exited 0.
fn one_shot(dir: &Path, config: &str) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--apps-file", "apps.json", "--group", "external"])
        .args(["--haproxy-config", config, "--skip-validation"])
        .args(["--archive-versions", "2", "--syslog-socket", "/dev/null"])
        .env("TMPDIR", dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn the_archive_never_writes_through_a_planted_symlink() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("apps.json"),
        r#"{"apps":[{"id":"/web","labels":{"HAPROXY_GROUP":"external"},
        "portDefinitions":[{"port":10001}],
        "tasks":[{"id":"w.1","host":"127.0.0.1","ports":[8080],"state":"TASK_RUNNING"}]}]}"#,
    )
    .unwrap();
    // Dangling links where the archive used to go, and inside the new archive directory.
    for n in [1, 2] {
        symlink(
            dir.join(format!("old-target.{n}")),
            dir.join(format!("hap_cfg.{n}")),
        )
        .unwrap();
    }
    let archive = dir.join(format!("marathon-lb-archive-{}", uid()));
    std::fs::create_dir(&archive).unwrap();
    std::fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    symlink(dir.join("new-target"), archive.join("hap_cfg.1")).unwrap();

    one_shot(dir, "a.cfg");
    let config = std::fs::read_to_string(dir.join("a.cfg")).unwrap();
    let archived = archive.join("hap_cfg.1");
    assert!(std::fs::symlink_metadata(&archived).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&archived).unwrap(), config);
    for target in ["old-target.1", "old-target.2", "new-target"] {
        assert!(
            !dir.join(target).exists(),
            "{target} created through a link"
        );
    }

    // The archive directory itself replaced by a link: skipped with a warning, config written.
    std::fs::remove_dir_all(&archive).unwrap();
    symlink(dir.join("dir-target"), &archive).unwrap();
    let stderr = one_shot(dir, "b.cfg");
    assert!(stderr.contains("config not archived"), "{stderr}");
    assert!(stderr.contains("it is a symlink"), "{stderr}");
    assert!(!dir.join("dir-target").exists());
    assert_eq!(std::fs::read_to_string(dir.join("b.cfg")).unwrap(), config);
}
