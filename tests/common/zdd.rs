//! A stand for `marathon-lb zdd` end to end: the real binary in managed mode with a real
//! HAProxy following the fake Marathon (write API, real task servers, Marathon's events),
//! the real binary again as `marathon-lb zdd`, and a steady client load through HAProxy
//! (keep-alive clients and `Connection: close` clients) counting every failed or non-2xx
//! answer. Included with `#[path]` next to `common/managed.rs` as `managed`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::managed::{free_port, get, App, Load, ManagedLb, Options};

/// marathon-lb, its fake Marathon, and the app `/web` zdd deploys.
pub struct Stand {
    /// marathon-lb in managed mode (with `--health-check`) and its fake Marathon.
    pub lb: ManagedLb,
    /// The app's service port (its HAProxy frontend).
    pub port: u16,
    /// `HAPROXY_DEPLOYMENT_ALT_PORT`.
    pub alt: u16,
    /// The app JSON zdd reads.
    pub json: PathBuf,
}

impl Stand {
    /// Starts marathon-lb (with `others` besides) and writes `/web`'s JSON with `instances`.
    pub async fn start(instances: u64, others: &[&App]) -> Stand {
        let options = Options {
            health_check: true,
            ..Options::default()
        };
        let lb = ManagedLb::start(options, others).await;
        // Requests are in flight on every task all the time: killing one that still gets
        // traffic fails requests.
        lb.fake.set_task_delay(Duration::from_millis(20));
        let (port, alt) = (free_port(), free_port());
        let json = lb.dir.path().join("web.json");
        let stand = Stand {
            lb,
            port,
            alt,
            json,
        };
        stand.write_app(instances);
        stand
    }

    /// Writes the app JSON with `instances`.
    pub fn write_app(&self, instances: u64) {
        let app = json!({
            "id": "/web", "instances": instances, "cmd": "serve",
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http",
                       "HAPROXY_DEPLOYMENT_GROUP": "web",
                       "HAPROXY_DEPLOYMENT_ALT_PORT": self.alt.to_string()},
            "portDefinitions": [{"port": self.port, "protocol": "tcp"}],
            "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0,
                              "intervalSeconds": 1, "timeoutSeconds": 1,
                              "maxConsecutiveFailures": 3, "gracePeriodSeconds": 5}],
        });
        std::fs::write(&self.json, app.to_string()).unwrap();
    }

    /// The `marathon-lb zdd` command for this stand with `args` after the common ones.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
        cmd.arg("zdd")
            .arg("-j")
            .arg(&self.json)
            .args(["-m", &self.lb.fake.url()])
            .args(["-l", &format!("http://127.0.0.1:{}", self.lb.ports.stats)])
            .args(["--syslog-socket", "/dev/null", "--log-level", "info"])
            .args(args)
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .env_remove("MARATHON_LB_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `marathon-lb zdd` to the end (at most `limit`): its status, output and time.
    pub async fn zdd(&self, args: &[&str], limit: Duration) -> (ExitStatus, String, Duration) {
        let started = Instant::now();
        let run = self.command(args).output();
        let out = tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "zdd {args:?} ran over {limit:?}; lb log:\n{}",
                    self.lb.log()
                )
            })
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text, started.elapsed())
    }

    /// Runs zdd expecting success.
    pub async fn zdd_ok(&self, args: &[&str]) -> Duration {
        let (status, out, took) = self.zdd(args, Duration::from_secs(120)).await;
        assert!(
            status.success(),
            "zdd {args:?}: {status}\n{out}\nlb log:\n{}",
            self.lb.log()
        );
        eprintln!("zdd {args:?} took {took:?}:\n{out}");
        took
    }

    /// The first deploy: `/web-blue`, then waits until HAProxy serves only it.
    pub async fn deploy_blue(&self) {
        self.zdd_ok(&["-f"]).await;
        self.wait_for(&["/web-blue"]).await;
    }

    /// Waits until the frontend answers exactly `names`.
    pub async fn wait_for(&self, names: &[&str]) {
        self.lb
            .wait_for_answers(self.port, names, Duration::from_secs(30))
            .await;
    }

    /// Waits until the fake's deployments are over.
    pub async fn wait_idle(&self) {
        let fake = &self.lb.fake;
        self.lb
            .wait_until("deployments to finish", Duration::from_secs(30), || async {
                fake.deployments() == 0
            })
            .await;
    }

    /// `(id, instances)` of the written apps.
    pub fn apps(&self) -> Vec<(String, u64)> {
        let fake = &self.lb.fake;
        fake.app_ids()
            .into_iter()
            .map(|id| {
                let n = fake
                    .app(&id)
                    .and_then(|a| a["instances"].as_u64())
                    .unwrap_or(0);
                (id, n)
            })
            .collect()
    }

    /// A written app.
    pub fn app(&self, id: &str) -> Option<Value> {
        self.lb.fake.app(id)
    }
}

/// Clients sending `GET /` through HAProxy all the time: keep-alive ones and ones that
/// open a connection per request (`Connection: close`).
pub struct Traffic {
    keep_alive: Load,
    close_ok: Arc<AtomicU64>,
    close_failed: Arc<AtomicU64>,
    close_failures: Arc<std::sync::Mutex<Vec<String>>>,
    closers: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts 3 keep-alive and 2 closing clients on `port`.
    pub fn start(port: u16) -> Traffic {
        let close_ok = Arc::new(AtomicU64::new(0));
        let close_failed = Arc::new(AtomicU64::new(0));
        let close_failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let closers = (0..2)
            .map(|_| {
                let (ok, failed, failures) = (
                    close_ok.clone(),
                    close_failed.clone(),
                    close_failures.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let answer = get(port, None).await;
                        if answer.starts_with("ERR") {
                            failed.fetch_add(1, Ordering::SeqCst);
                            let mut first = failures.lock().unwrap();
                            if first.len() < 10 {
                                first.push(answer);
                            }
                        } else {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        Traffic {
            keep_alive: Load::start(port, 3),
            close_ok,
            close_failed,
            close_failures,
            closers,
        }
    }

    /// `(answered 2xx, failed or non-2xx, first failures)` so far over both kinds.
    pub fn totals(&self) -> (u64, u64, Vec<String>) {
        let (ok, failed) = self.keep_alive.counts();
        let mut failures = self.keep_alive.failures.lock().unwrap().clone();
        failures.extend(self.close_failures.lock().unwrap().iter().cloned());
        (
            ok + self.close_ok.load(Ordering::SeqCst),
            failed + self.close_failed.load(Ordering::SeqCst),
            failures,
        )
    }

    /// Stops the clients and asserts none failed and enough were served; returns the counts.
    pub fn finish(self, what: &str) -> (u64, u64) {
        for closer in &self.closers {
            closer.abort();
        }
        let (ok, failed, failures) = self.totals();
        eprintln!("ZDD {what}: {ok} requests answered 2xx, {failed} failed or non-2xx");
        assert_eq!(failed, 0, "{what}: failed requests: {failures:?}");
        assert!(ok > 50, "{what}: only {ok} requests were served");
        (ok, failed)
    }
}
