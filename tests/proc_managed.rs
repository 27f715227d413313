//! Process faults in managed mode, end to end (real binary, real HAProxy, fake Marathon):
//! HAProxy does not see marathon-lb's credentials; it dies with marathon-lb (`kill -9`); a
//! master left by a previous run is stopped; the run dir is locked and cleaned; a wedged
//! `haproxy -c` times out, is reported, and never blocks SIGTERM. Every wait is bounded.

#[path = "common/managed.rs"]
mod managed;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use managed::{free_port, haproxy_missing, App, ManagedLb, Options, TaskServer};

const SETTLE: Duration = Duration::from_secs(10);

fn app(id: &str, port: u16, server: &TaskServer) -> App {
    App::new(id, port, vec![server.task()])
}

/// Whether a process runs (a zombie counts as gone).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 2..].chars().next()? != 'Z'))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_does_not_see_marathon_lbs_credentials() {
    if haproxy_missing("haproxy_does_not_see_marathon_lbs_credentials") {
        return;
    }
    let task = TaskServer::start("a").await;
    let port = free_port();
    // A backend that answers with what HAProxy expands from its environment.
    let leak = app("/leak", port, &task).label("HAPROXY_0_MODE", "http").label(
        "HAPROXY_0_BACKEND_HEAD",
        "\nbackend {backend}\n  balance {balance}\n  mode {mode}\n  http-request return status 200 \
         content-type text/plain lf-string \"cred=${{DCOS_SERVICE_ACCOUNT_CREDENTIAL}} \
         tok=${{SOME_TOKEN}} pw=${{MARATHON_APP_LABEL_DB_PASSWORD}} app=${{MARATHON_APP_ID}} \
         extra=${{MLB_TEST_EXTRA}}\"\n",
    );
    let options = Options {
        // marathon-lb logs in to the (fake) DC/OS with a real service-account credential.
        dcos: Some((
            "mlb-principal".into(),
            include_str!("fixtures/dcos-test-key.pub.pem").into(),
            include_str!("fixtures/dcos-test-key.pem").into(),
        )),
        env: [
            ("SOME_TOKEN", "token-value"),
            ("MARATHON_APP_LABEL_DB_PASSWORD", "pw-value"),
            ("MARATHON_APP_ID", "/mlb"),
            ("MLB_TEST_EXTRA", "extra-value"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        extra_args: vec!["--haproxy-env".into(), "MLB_TEST_EXTRA".into()],
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&leak]).await;
    lb.wait_for_answers(port, &["cred= tok= pw= app=/mlb extra=extra-value"], SETTLE)
        .await;
    let master = lb.show_proc().await.unwrap().master.pid;
    let environ = std::fs::read(format!("/proc/{master}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for secret in ["mlb-principal", "PRIVATE KEY", "token-value", "pw-value"] {
        assert!(!environ.contains(secret), "{secret} in {environ}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_marathon_lb_takes_its_haproxy_with_it() {
    if haproxy_missing("killing_marathon_lb_takes_its_haproxy_with_it") {
        return;
    }
    let task = TaskServer::start("a").await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &task)]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let pids = lb.haproxy_pids();
    assert_eq!(pids.len(), 2, "{}", managed::describe_pids(&pids));

    managed::signal(lb.pid(), libc::SIGKILL);
    let killed = Instant::now();
    while pids.iter().any(|p| running(*p)) || !managed::get(port, None).await.starts_with("ERR") {
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "HAProxy outlived marathon-lb:\n{}",
            managed::describe_pids(&pids)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("HAProxy gone {:?} after kill -9", killed.elapsed());
}

/// HAProxy's own messages (workers forked, servers going down) reach marathon-lb's log at the
/// default level, under the target `haproxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxys_own_messages_are_in_the_log() {
    if haproxy_missing("haproxys_own_messages_are_in_the_log") {
        return;
    }
    let task = TaskServer::start("a").await;
    let port = free_port();
    let options = Options {
        log_level: "DEBUG".to_owned(),
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&app("/web", port, &task)]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let deadline = Instant::now() + SETTLE;
    while !lb.log().contains("haproxy: [NOTICE]") {
        assert!(
            Instant::now() < deadline,
            "no HAProxy message in the log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A config serving `/web` (answered by `web`) on `web_port` and `/gone` on `gone_port`.
fn orphan_config(web_port: u16, web: &TaskServer, gone_port: u16, gone: &TaskServer) -> String {
    format!(
        "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  \
         timeout server 5s\nfrontend web\n  bind 127.0.0.1:{web_port}\n  default_backend web\n\
         backend web\n  server s 127.0.0.1:{}\nfrontend gone\n  bind 127.0.0.1:{gone_port}\n  \
         default_backend gone\nbackend gone\n  server s 127.0.0.1:{}\n",
        web.port, gone.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_left_by_a_previous_run_is_stopped() {
    if haproxy_missing("a_master_left_by_a_previous_run_is_stopped") {
        return;
    }
    let (old, gone, new) = (
        TaskServer::start("old").await,
        TaskServer::start("gone").await,
        TaskServer::start("new").await,
    );
    let (web_port, gone_port) = (free_port(), free_port());
    // The master a marathon-lb left behind: on the run dir's socket, with its pid file.
    let base = tempfile::tempdir().unwrap();
    let run_dir = base.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let run_dir = run_dir.canonicalize().unwrap();
    let config = base.path().join("orphan.cfg");
    std::fs::write(&config, orphan_config(web_port, &old, gone_port, &gone)).unwrap();
    let mut orphan = Command::new("haproxy")
        .args(["-W", "-db", "-S"])
        .arg(run_dir.join("master.sock"))
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(run_dir.join("haproxy.pid"), format!("{}\n", orphan.id())).unwrap();
    let deadline = Instant::now() + SETTLE;
    while managed::get(gone_port, None).await != "gone" {
        assert!(Instant::now() < deadline, "the orphan did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let options = Options {
        run_dir: Some(run_dir.clone()),
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&app("/web", web_port, &new)]).await;
    // Only the new master serves: the shared port answers `new` only, `/gone` not at all.
    lb.wait_for_answers(web_port, &["new"], SETTLE).await;
    assert!(managed::get(gone_port, None).await.starts_with("ERR"));
    assert!(!running(orphan.id()), "the orphan master still runs");
    let master = lb.show_proc().await.unwrap().master.pid;
    let pids = lb.haproxy_pids();
    assert_eq!(pids.len(), 2, "{}", managed::describe_pids(&pids));
    assert!(pids.contains(&master));
    assert!(
        lb.log().contains("stopped the leftover haproxy master"),
        "{}",
        lb.log()
    );
    let _ = orphan.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_dir_is_locked_and_cleaned_on_stop() {
    if haproxy_missing("the_run_dir_is_locked_and_cleaned_on_stop") {
        return;
    }
    let task = TaskServer::start("a").await;
    let port = free_port();
    let mut lb = ManagedLb::start(Options::default(), &[&app("/web", port, &task)]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let run_dir = lb.run_dir();

    let second = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
    cmd.current_dir(second.path())
        .args(["--marathon", &lb.fake.url(), "--sse", "--group", "external"])
        .arg("--haproxy-config")
        .arg(second.path().join("haproxy.cfg"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--admin-addr", "off", "--syslog-socket", "/dev/null"])
        .stdin(Stdio::null());
    let output = tokio::time::timeout(SETTLE, tokio::process::Command::from(cmd).output())
        .await
        .expect("the second instance did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let holder = format!("in use by another marathon-lb (pid {})", lb.pid());
    assert!(
        stderr.contains(&holder) && stderr.contains(&run_dir.display().to_string()),
        "{stderr}"
    );
    // The first keeps serving, on its own sockets.
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    assert!(lb.show_proc().await.is_some());

    let status = lb.terminate(Duration::from_secs(15)).await.expect("exit");
    assert!(status.success(), "{status}");
    for file in ["master.sock", "runtime.sock", "haproxy.pid"] {
        assert!(!run_dir.join(file).exists(), "{file} left in the run dir");
    }
}

/// A FIFO: opening it for reading blocks until a writer comes, which wedges `haproxy -c`.
fn fifo(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("wedge.pem");
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_check_times_out_is_reported_and_the_old_config_serves() {
    if haproxy_missing("a_wedged_check_times_out_is_reported_and_the_old_config_serves") {
        return;
    }
    let (a, b) = (TaskServer::start("a").await, TaskServer::start("b").await);
    let (port, tls_port) = (free_port(), free_port());
    let options = Options {
        extra_args: vec!["--check-timeout".into(), "2".into()],
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&app("/web", port, &a)]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let fifo = fifo(lb.dir.path());
    let wedged = app("/tls", tls_port, &b)
        .label("HAPROXY_0_SSL_CERT", fifo.to_str().unwrap())
        .label("HAPROXY_0_MODE", "http");
    let changed = Instant::now();
    lb.set_apps(&[&app("/web", port, &a), &wedged]);
    lb.wait_until("/healthz degraded", Duration::from_secs(8), || async {
        lb.get_admin("/healthz")
            .await
            .is_some_and(|(code, body)| code == 200 && body.contains("timed out after 2s"))
    })
    .await;
    let took = changed.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let (_, health) = lb.get_admin("/healthz").await.unwrap();
    assert!(
        health.starts_with("ok (degraded)") && health.contains("`haproxy -c` timed out"),
        "{health}"
    );
    // The old config keeps serving; the wedged check leaves no process behind.
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    assert!(!lb.config().contains("frontend tls_"), "{}", lb.config());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_wedged_check_stops_everything_within_10s() {
    if haproxy_missing("sigterm_during_a_wedged_check_stops_everything_within_10s") {
        return;
    }
    let (a, b) = (TaskServer::start("a").await, TaskServer::start("b").await);
    let (port, tls_port) = (free_port(), free_port());
    let mut lb = ManagedLb::start(Options::default(), &[&app("/web", port, &a)]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let pids = lb.haproxy_pids();
    let fifo = fifo(lb.dir.path());
    let wedged = app("/tls", tls_port, &b)
        .label("HAPROXY_0_SSL_CERT", fifo.to_str().unwrap())
        .label("HAPROXY_0_MODE", "http");
    lb.set_apps(&[&app("/web", port, &a), &wedged]);
    // Until the check is stuck on the FIFO (its process reads a temp copy of the config).
    let deadline = Instant::now() + SETTLE;
    while !check_running(lb.pid()) {
        assert!(
            Instant::now() < deadline,
            "no `haproxy -c` ran:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(check_running(lb.pid()), "the check did not wedge");
    let asked = Instant::now();
    let status = lb
        .terminate(Duration::from_secs(10))
        .await
        .expect("marathon-lb ignored SIGTERM during a wedged check for 10 s");
    eprintln!("exited {:?} after SIGTERM: {status}", asked.elapsed());
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| running(*p)) {
        assert!(
            Instant::now() < deadline,
            "{}",
            managed::describe_pids(&pids)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(managed::get(port, None).await.starts_with("ERR"));
}

/// Whether a `haproxy -c` child of `parent` runs.
fn check_running(parent: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1)?.parse::<u32>().ok());
        ppid == Some(parent)
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("haproxy\0-c\0"))
    })
}
