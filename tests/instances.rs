//! Several instances, as Marathon runs them (one per public agent): three real binaries in
//! managed mode, each with its own run dir, config and ports, follow ONE fake Marathon. A
//! change to the cluster reaches all three within a bound; stopping one leaves the other two
//! serving. The fake counts what each event costs Marathon (README "Deploy": N instances).

#[path = "common/managed.rs"]
mod managed;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use managed::{
    answers, app, apps_body, cert_pem, free_port, haproxy_missing, haproxy_pids_in, runnable_head,
    signal, tasks,
};
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options as FakeOptions};
use serde_json::json;

/// One marathon-lb in managed mode on its own temp dir and loopback ports.
struct Instance {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Instance {
    /// Starts one whose app frontends bind `127.0.0.1:frontend_port` (each instance its own
    /// port for the shared app, as each agent binds the same port on its own address).
    fn start(marathon: &str, frontend_port: u16) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let stats = free_port();
        let t = dir.path().join("templates");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(
            t.join("HAPROXY_HEAD"),
            runnable_head(dir.path(), stats, &[]),
        )
        .unwrap();
        std::fs::write(
            t.join("HAPROXY_FRONTEND_HEAD"),
            format!("\nfrontend {{backend}}\n  bind 127.0.0.1:{frontend_port}\n  mode {{mode}}\n"),
        )
        .unwrap();
        let appid = free_port();
        std::fs::write(
            t.join("HAPROXY_HTTP_FRONTEND_APPID_HEAD"),
            format!("\nfrontend marathon_http_appid_in\n  bind 127.0.0.1:{appid}\n  mode http\n"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("marathon-lb.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
            .current_dir(dir.path())
            .args(["--marathon", marathon, "--sse", "--group", "external"])
            .arg("--dont-bind-http-https")
            .arg("--haproxy-config")
            .arg(dir.path().join("haproxy.cfg"))
            .args(["--run-dir", "run", "--archive-versions", "0"])
            .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--ssl-certs")
            .arg(cert_pem())
            .env("NO_COLOR", "1")
            .env_remove("MARATHON_LB_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Instance {
            dir,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("marathon-lb.log")).unwrap_or_default()
    }

    fn run_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("run")
    }

    /// SIGTERM, then (bounded) whatever is left.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in haproxy_pids_in(&self.run_dir()) {
            signal(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until every instance's HAProxy answers `port`'s service with exactly `want`.
async fn all_serve(instances: &[&Instance], ports: &[u16], want: &[&str], bound: Duration) {
    let want: std::collections::BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + bound;
    for port in ports {
        loop {
            let got = answers(*port, None, 8).await;
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "port {port} answered {got:?}, want {want:?}; logs:\n{}",
                instances
                    .iter()
                    .map(|i| i.log())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_follow_one_marathon_and_survive_losing_one() {
    if haproxy_missing("three_instances_follow_one_marathon_and_survive_losing_one") {
        return;
    }
    let servers = tasks(&["a1", "a2", "b1"]).await;
    let fake = FakeMarathon::start(FakeOptions::default()).await.unwrap();
    // One app; each instance serves it on its own loopback port.
    let service_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let body = |names: &[usize]| {
        let picked: Vec<&managed::TaskServer> = names.iter().map(|&i| &servers[i]).collect();
        apps_body(&[&app("/web", 10000, &picked)])
    };
    fake.set_apps(body(&[0]));
    let mut instances: Vec<Instance> = service_ports
        .iter()
        .map(|port| Instance::start(&fake.url(), *port))
        .collect();
    let refs: Vec<&Instance> = instances.iter().collect();
    all_serve(&refs, &service_ports, &["a1"], Duration::from_secs(30)).await;
    fake.wait_for_subscribers(3).await;

    // A change to the cluster: one event, all three follow.
    let before = fake.apps_requests();
    let new_body = body(&[0, 1]);
    let bytes = new_body.len();
    let changed = Instant::now();
    fake.set_apps(new_body);
    fake.push_marathon_event("status_update_event", json!({"appId": "/web"}));
    all_serve(
        &refs,
        &service_ports,
        &["a1", "a2"],
        Duration::from_secs(20),
    )
    .await;
    let took = changed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fetches = fake.apps_requests() - before;
    eprintln!(
        "one event: all 3 instances serving in {took:?}; {fetches} GET /v2/apps \
         ({:.1} per instance, {bytes} bytes each)",
        fetches as f64 / 3.0
    );
    assert!(
        (3..=6).contains(&fetches),
        "{fetches} fetches for one event"
    );

    // One instance stops: the other two keep serving, and follow the next change.
    drop(refs);
    let mut stopped = instances.remove(0);
    stopped.stop();
    let refs: Vec<&Instance> = instances.iter().collect();
    let alive = &service_ports[1..];
    fake.set_apps(body(&[2]));
    fake.push_marathon_event("status_update_event", json!({"appId": "/web"}));
    all_serve(&refs, alive, &["b1"], Duration::from_secs(20)).await;
    assert!(stopped.child.is_none() && haproxy_pids_in(&stopped.run_dir()).is_empty());
    for instance in &instances {
        assert!(!instance.log().contains("[ALERT]"), "{}", instance.log());
    }
}
