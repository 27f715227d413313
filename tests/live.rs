//! Live mode through the real binary against the fake Marathon over loopback HTTP/SSE:
//! first config, events, a cut stream, Marathon down, host failover, basic and DC/OS auth,
//! and coalescing of an event burst. Real time, every wait bounded.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};

const KEY: &str = include_str!("fixtures/dcos-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/dcos-test-key.pub.pem");

/// An apps body with one app whose single task listens on `port`.
fn apps(port: u16) -> String {
    format!(
        r#"{{"apps":[{{"id":"/web","labels":{{"HAPROXY_GROUP":"external"}},"portDefinitions":[{{"port":10000}}],
            "tasks":[{{"id":"web.1","host":"127.0.0.1","ports":[{port}],"state":"TASK_RUNNING"}}]}}]}}"#
    )
}

/// The marathon-lb process under test; killed (by its pid) when dropped.
struct Lb {
    child: Child,
    dir: tempfile::TempDir,
}

impl Lb {
    fn start(marathon: &[String], extra: &[&str]) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
        cmd.current_dir(dir.path())
            .arg("--marathon")
            .args(marathon)
            .args([
                "--sse",
                "--group",
                "external",
                "--skip-validation",
                "--archive-versions",
                "0",
            ])
            .args(["--haproxy-config", config.to_str().unwrap()])
            .args(["--command", "echo reload >> reloads.log"])
            .args(["--log-level", "debug", "--admin-addr", "off"])
            .args(extra)
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .stdout(Stdio::null())
            .stderr(log);
        Lb {
            child: cmd.spawn().unwrap(),
            dir,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits (up to `secs`) until the config mentions the task port.
    async fn wait_for_port(&self, port: u16, secs: u64) {
        let needle = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.config().contains(&needle) {
            assert!(
                Instant::now() < deadline,
                "config never showed {needle}; log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fake(options: Options, port: u16) -> FakeMarathon {
    let fake = FakeMarathon::start(options).await.unwrap();
    fake.set_apps(apps(port));
    fake
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn event(fake: &FakeMarathon) {
    fake.push_marathon_event("status_update_event", serde_json::json!({"appId": "/web"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_config_then_an_event_is_reflected() {
    let fake = fake(Options::default(), 31000).await;
    let lb = Lb::start(&[fake.url()], &[]);
    lb.wait_for_port(31000, 10).await;
    fake.wait_for_subscribers(1).await;
    fake.set_apps(apps(31001));
    event(&fake);
    lb.wait_for_port(31001, 5).await;
    // The reload command runs just after the config is written: give it a moment.
    let count = || {
        std::fs::read_to_string(lb.dir.path().join("reloads.log")).map_or(0, |r| r.lines().count())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(), 2, "one reload per changed config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_stream_is_cut_is_picked_up_on_reconnect() {
    let fake = fake(Options::default(), 31000).await;
    let lb = Lb::start(&[fake.url()], &[]);
    lb.wait_for_port(31000, 10).await;
    fake.wait_for_subscribers(1).await;
    fake.set_apps(apps(31002));
    fake.cut_streams();
    lb.wait_for_port(31002, 10).await;
    // The resync of the first connect may already have seen the change; either way the
    // stream must come back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.events_requests() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fake.events_requests() >= 2,
        "the event stream did not reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_down_keeps_the_last_config_and_recovers() {
    let fake = fake(Options::default(), 31000).await;
    let mut lb = Lb::start(&[fake.url()], &["--max-backoff", "1"]);
    lb.wait_for_port(31000, 10).await;
    fake.wait_for_subscribers(1).await;
    fake.force_status(Some(StatusCode::SERVICE_UNAVAILABLE));
    fake.set_apps(apps(31003));
    fake.cut_streams();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(lb.alive(), "marathon-lb exited while Marathon was down");
    assert!(
        lb.config().contains("127.0.0.1:31000"),
        "the last good config must keep serving"
    );
    fake.force_status(None);
    lb.wait_for_port(31003, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_marathon_is_used_when_the_first_is_down() {
    let fake = fake(Options::default(), 31004).await;
    let lb = Lb::start(&[closed_port_url(), fake.url()], &[]);
    lb.wait_for_port(31004, 10).await;
    fake.wait_for_subscribers(1).await;
    fake.set_apps(apps(31005));
    event(&fake);
    lb.wait_for_port(31005, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent_and_never_logged() {
    let fake = fake(Options::default().basic_auth("mlb", "s3cret-pw"), 31006).await;
    let lb = Lb::start(&[fake.url()], &["--auth-credentials", "mlb:s3cret-pw"]);
    lb.wait_for_port(31006, 10).await;
    fake.wait_for_subscribers(1).await;
    assert!(!lb.stderr().contains("s3cret-pw"));

    let wrong = Lb::start(&[fake.url()], &["--auth-credentials", "mlb:wrong-pw"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !wrong.config_path().exists(),
        "no config without valid credentials"
    );
    assert!(!wrong.stderr().contains("wrong-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcos_service_account_logs_in_and_again_after_revocation() {
    let fake = fake(Options::default().dcos("mlb-principal", PUBLIC_KEY), 31007).await;
    let credentials =
        serde_json::json!({"uid": "mlb-principal", "private_key": KEY, "login_endpoint": fake.login_url()}).to_string();
    let lb = Lb::start(&[fake.url()], &["--dcos-auth-credentials", &credentials]);
    lb.wait_for_port(31007, 10).await;
    fake.wait_for_subscribers(1).await;
    let logins = fake.logins();
    assert!(logins >= 1);
    fake.revoke_tokens();
    fake.set_apps(apps(31008));
    event(&fake);
    lb.wait_for_port(31008, 5).await;
    assert!(fake.logins() > logins, "a 401 must trigger a new login");
    assert!(
        !lb.stderr().contains("BEGIN"),
        "the private key must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_events_costs_at_most_3_fetches() {
    let fake = fake(Options::default(), 31000).await;
    let lb = Lb::start(&[fake.url()], &[]);
    lb.wait_for_port(31000, 10).await;
    fake.wait_for_subscribers(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = fake.apps_requests();
    for i in 0..50u16 {
        fake.set_apps(apps(32000 + i));
        event(&fake);
    }
    lb.wait_for_port(32049, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fetches = fake.apps_requests() - before;
    assert!(fetches <= 3, "{fetches} fetches for a burst of 50 events");
    assert!(lb.config().contains("127.0.0.1:32049"));
}

#[test]
fn apps_file_watch_rerenders_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let apps_file = dir.path().join("apps.json");
    std::fs::write(&apps_file, apps(31100)).unwrap();
    let config = dir.path().join("haproxy.cfg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .current_dir(dir.path())
        .args([
            "--apps-file",
            apps_file.to_str().unwrap(),
            "--watch",
            "--group",
            "external",
        ])
        .args([
            "--skip-validation",
            "--archive-versions",
            "0",
            "--command",
            "true",
        ])
        // Not the default 127.0.0.1:9092: another process holding it is a start-up error.
        .args(["--admin-addr", "off"])
        .args(["--haproxy-config", config.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&config)
            .unwrap_or_default()
            .contains(needle)
        {
            assert!(Instant::now() < deadline, "config never showed {needle}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("127.0.0.1:31100");
    std::fs::write(&apps_file, apps(31101)).unwrap();
    wait_for("127.0.0.1:31101");
    // SIGTERM ends it cleanly.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_failed_reload_command_is_retried_on_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let apps_file = dir.path().join("apps.json");
    std::fs::write(&apps_file, apps(31200)).unwrap();
    let config = dir.path().join("haproxy.cfg");
    // The reload works only once the file `ok` exists.
    let mut child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .current_dir(dir.path())
        .args([
            "--apps-file",
            apps_file.to_str().unwrap(),
            "--watch",
            "--group",
            "external",
        ])
        .args([
            "--skip-validation",
            "--archive-versions",
            "0",
            "--admin-addr",
            "off",
        ])
        .args(["--command", "test -f ok && echo reload >> reloads.log"])
        .args(["--haproxy-config", config.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("the first config", &|| config.exists());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !dir.path().join("reloads.log").exists(),
        "the reload failed"
    );
    std::fs::write(dir.path().join("ok"), "").unwrap();
    // Same apps, new mtime: a pass that finds the config unchanged must still reload.
    std::fs::write(&apps_file, apps(31200)).unwrap();
    let reloads = dir.path().join("reloads.log");
    wait_for("the retried reload", &|| reloads.exists());
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}
