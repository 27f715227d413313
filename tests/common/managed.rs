//! A harness for managed mode end to end: the real `marathon-lb` binary (no `--command`, so it
//! runs HAProxy itself) against the fake Marathon over `--sse`, with tasks that are tiny HTTP
//! servers answering their own name. Used by `tests/managed.rs` and the benches (`#[path]`).
//!
//! Everything binds 127.0.0.1: the stats listener, the shared HTTP/HTTPS/app-id frontends and
//! every app frontend (template overrides in `<tmp>/templates`), the admin server, the tasks.
//! Every process started is stopped by its pid: marathon-lb on drop (SIGTERM, then SIGKILL),
//! then any HAProxy still running from this harness's run dir (SIGKILL).

#![allow(dead_code)] // the tests and each bench use a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use marathon_lb::haproxy::master::{MasterCli, ProcList};
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options as FakeOptions};
pub use marathon_lb_testkit::haproxy::{cert_pem, runnable_head};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// Child modules by explicit path: this file is included with `#[path]` from each test.
#[path = "managed/checks.rs"]
mod checks;
#[path = "managed/procs.rs"]
mod procs;
#[path = "managed/tasks.rs"]
mod tasks;
#[path = "managed/traffic.rs"]
mod traffic;

#[allow(unused_imports)] // only the managed-mode test files use them
pub use checks::*;
pub use procs::*;
pub use tasks::*;
pub use traffic::*;

/// Whether `haproxy` is missing from PATH; if so, prints a loud SKIP line for `test`.
pub fn haproxy_missing(test: &str) -> bool {
    let missing = Command::new("haproxy").arg("-v").output().is_err();
    if missing {
        eprintln!(
            "\n!!!!! SKIP {test}: `haproxy` is not on PATH (apt-get install -y haproxy) !!!!!\n"
        );
    }
    missing
}

pub use marathon_lb_testkit::ports::free_port;

/// How to run marathon-lb.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--health-check`.
    pub health_check: bool,
    /// `--drain-timeout SECS` (the binary's default when `None`).
    pub drain_timeout: Option<u64>,
    /// Lines appended to the head's `defaults` section.
    pub extra_defaults: Vec<String>,
    /// More flags.
    pub extra_args: Vec<String>,
    /// `--log-level`.
    pub log_level: String,
    /// How long the first config may take to be served.
    pub start_timeout: Duration,
    /// `--ssl-certs` (the fixture certificate when `None`).
    pub ssl_certs: Option<String>,
    /// More environment for marathon-lb.
    pub env: Vec<(String, String)>,
    /// `--run-dir` (default: `run` in the temp dir).
    pub run_dir: Option<PathBuf>,
    /// DC/OS mode: `(uid, public key PEM, private key PEM)`; the fake Marathon then requires a
    /// login, and marathon-lb gets the credential in `DCOS_SERVICE_ACCOUNT_CREDENTIAL`.
    pub dcos: Option<(String, String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            health_check: false,
            drain_timeout: None,
            extra_defaults: Vec::new(),
            extra_args: Vec::new(),
            log_level: "info".to_owned(),
            start_timeout: Duration::from_secs(20),
            ssl_certs: None,
            env: Vec::new(),
            run_dir: None,
            dcos: None,
        }
    }
}

/// The loopback ports of one run.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The stats listener (`:9090` in production).
    pub stats: u16,
    /// `marathon_http_in` (`:80`).
    pub http: u16,
    /// `marathon_https_in` (`:443`).
    pub https: u16,
    /// `marathon_http_appid_in` (`:9091`).
    pub appid: u16,
    /// The admin server (`--admin-addr`).
    pub admin: u16,
}

/// marathon-lb in managed mode, its fake Marathon and temp dir.
pub struct ManagedLb {
    /// The temp dir: the cwd of marathon-lb (with `templates/`), the config, sockets, logs.
    pub dir: tempfile::TempDir,
    /// The fake Marathon it follows.
    pub fake: FakeMarathon,
    /// Loopback ports in use.
    pub ports: Ports,
    child: Option<Child>,
    /// The arguments and environment it was started with, to start it again.
    relaunch: (Vec<std::ffi::OsString>, Vec<(String, String)>),
    http: reqwest::Client,
    run_dir: PathBuf,
}

/// The arguments and the environment set on `cmd` (variables it removes are left out).
fn cmd_parts(cmd: &Command) -> (Vec<std::ffi::OsString>, Vec<(String, String)>) {
    let args = cmd.get_args().map(ToOwned::to_owned).collect();
    let env = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    (args, env)
}

impl ManagedLb {
    /// Starts the fake Marathon serving `apps`, then marathon-lb, and waits until HAProxy
    /// serves the first config and the event stream is connected.
    pub async fn start(options: Options, apps: &[&App]) -> ManagedLb {
        Self::start_with_body(options, apps_body(apps)).await
    }

    /// [`ManagedLb::start`] with the fake Marathon serving this `/v2/apps` body.
    pub async fn start_with_body(options: Options, body: String) -> ManagedLb {
        let mut fake_options = FakeOptions::default();
        if let Some((uid, public, _)) = &options.dcos {
            fake_options = fake_options.dcos(uid, public);
        }
        let fake = FakeMarathon::start(fake_options).await.unwrap();
        fake.set_apps(body);
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            stats: free_port(),
            http: free_port(),
            https: free_port(),
            appid: free_port(),
            admin: free_port(),
        };
        let templates = dir.path().join("templates");
        std::fs::create_dir(&templates).unwrap();
        let extra: Vec<&str> = options.extra_defaults.iter().map(String::as_str).collect();
        let write = |name: &str, text: String| std::fs::write(templates.join(name), text).unwrap();
        write(
            "HAPROXY_HEAD",
            runnable_head(dir.path(), ports.stats, &extra),
        );
        write(
            "HAPROXY_HTTP_FRONTEND_HEAD",
            format!(
                "\nfrontend marathon_http_in\n  bind 127.0.0.1:{}\n  mode http\n",
                ports.http
            ),
        );
        write(
            "HAPROXY_HTTP_FRONTEND_APPID_HEAD",
            format!(
                "\nfrontend marathon_http_appid_in\n  bind 127.0.0.1:{}\n  mode http\n",
                ports.appid
            ),
        );
        write(
            "HAPROXY_HTTPS_FRONTEND_HEAD",
            format!(
                "\nfrontend marathon_https_in\n  bind 127.0.0.1:{} ssl {{sslCerts}}\n  mode http\n",
                ports.https
            ),
        );
        write(
            "HAPROXY_FRONTEND_HEAD",
            "\nfrontend {backend}\n  bind 127.0.0.1:{servicePort}{sslCert}{bindOptions}\n  mode {mode}\n"
                .to_owned(),
        );
        let log = std::fs::File::create(dir.path().join("marathon-lb.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
        cmd.current_dir(dir.path())
            .args(["--marathon", &fake.url(), "--sse", "--group", "external"])
            .arg("--haproxy-config")
            .arg(dir.path().join("haproxy.cfg"))
            // Relative, as a user would type it (HAProxy needs absolute socket paths: the
            // binary must resolve it).
            .arg("--run-dir")
            .arg(options.run_dir.clone().unwrap_or_else(|| "run".into()))
            .args(["--admin-addr", &format!("127.0.0.1:{}", ports.admin)])
            .arg("--ssl-certs")
            .arg(
                options
                    .ssl_certs
                    .clone()
                    .unwrap_or_else(|| cert_pem().display().to_string()),
            )
            .args(["--archive-versions", "0", "--syslog-socket", "/dev/null"])
            .args(["--log-level", &options.log_level])
            .args(&options.extra_args)
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .env_remove("MARATHON_LB_LOG")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if options.health_check {
            cmd.arg("--health-check");
        }
        if let Some((uid, _, private)) = &options.dcos {
            let credential =
                json!({"uid": uid, "private_key": private, "login_endpoint": fake.login_url()});
            cmd.env("DCOS_SERVICE_ACCOUNT_CREDENTIAL", credential.to_string());
        }
        if let Some(secs) = options.drain_timeout {
            cmd.args(["--drain-timeout", &secs.to_string()]);
        }
        // Template overrides from the environment would beat the files above.
        for (key, _) in std::env::vars() {
            if key.starts_with("HAPROXY_") {
                cmd.env_remove(key);
            }
        }
        let relaunch = cmd_parts(&cmd);
        let child = cmd.spawn().unwrap();
        let run_dir = options
            .run_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("run"));
        let lb = ManagedLb {
            run_dir,
            dir,
            fake,
            ports,
            child: Some(child),
            relaunch,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        lb.wait_ready(options.start_timeout).await;
        lb
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self
                .get_admin("/healthz")
                .await
                .is_some_and(|(c, _)| c == 200);
            let serving = healthy
                && self
                    .show_proc()
                    .await
                    .is_some_and(|p| !p.workers.is_empty());
            let streaming = self.fake.subscribers() >= 1;
            if serving && streaming {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "managed marathon-lb did not come up (healthy {healthy}, serving {serving}, \
                 streaming {streaming}); its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// marathon-lb's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// marathon-lb's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("marathon-lb.log")).unwrap_or_default()
    }

    /// Passes applied through the Runtime API so far (from the log).
    pub fn runtime_applies(&self) -> usize {
        self.log()
            .matches("applied server changes through the Runtime API")
            .count()
    }

    /// The config on disk.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// `--haproxy-config`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// `--run-dir`.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone()
    }

    /// The admin-level stats socket marathon-lb adds for its Runtime API updates.
    pub fn stats_socket(&self) -> PathBuf {
        self.run_dir().join("runtime.sock")
    }

    /// Serves `apps` from the fake Marathon and pushes a `status_update_event`.
    pub fn set_apps(&self, apps: &[&App]) {
        self.set_body(apps_body(apps));
    }

    /// Serves this `/v2/apps` body and pushes a `status_update_event`.
    pub fn set_body(&self, body: String) {
        self.fake.set_apps(body);
        self.fake
            .push_marathon_event("status_update_event", json!({"appId": "/"}));
    }

    /// `GET` on the admin server: status code and body, `None` when unreachable.
    pub async fn get_admin(&self, path: &str) -> Option<(u16, String)> {
        self.get_url(&format!("http://127.0.0.1:{}{path}", self.ports.admin))
            .await
    }

    /// `GET` on the stats listener.
    pub async fn get_stats(&self, path: &str) -> Option<(u16, String)> {
        self.get_url(&format!("http://127.0.0.1:{}{path}", self.ports.stats))
            .await
    }

    async fn get_url(&self, url: &str) -> Option<(u16, String)> {
        let resp = self.http.get(url).send().await.ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get_admin("/metrics").await.expect("admin /metrics").1
    }

    /// The admin `/status` JSON.
    pub async fn status(&self) -> Value {
        let (_, body) = self.get_admin("/status").await.expect("admin /status");
        serde_json::from_str(&body).unwrap()
    }

    /// Successful reloads by reason (`marathon_lb_reloads_total{result="ok"}`).
    pub async fn reloads(&self) -> BTreeMap<String, u64> {
        parse_reloads(&self.metrics().await)
    }

    /// `show proc` from the master CLI, `None` when it does not answer.
    pub async fn show_proc(&self) -> Option<ProcList> {
        MasterCli::new(self.run_dir().join("master.sock"), Duration::from_secs(2))
            .show_proc()
            .await
            .ok()
    }

    /// The pid of the one current worker.
    pub async fn worker_pid(&self) -> u32 {
        let procs = self.show_proc().await.expect("show proc");
        assert_eq!(procs.workers.len(), 1, "{procs:?}");
        procs.workers[0].pid
    }

    /// Every process running from this harness's run dir (HAProxy master and workers).
    pub fn haproxy_pids(&self) -> Vec<u32> {
        haproxy_pids_in(&self.run_dir())
    }

    /// Waits (up to `timeout`) until `n` requests to `127.0.0.1:port` are answered by exactly
    /// the names in `expected`, then checks again with `2n` more. Panics with the last
    /// answers and the log on timeout.
    pub async fn wait_for_answers(&self, port: u16, expected: &[&str], timeout: Duration) {
        let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        let n = 4 * want.len().max(1);
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            last = answers(port, None, n).await;
            if last == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "port {port} answered {last:?}, want {want:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let again = answers(port, None, 2 * n).await;
        assert_eq!(
            again,
            want,
            "port {port}: answers changed after settling; log:\n{}",
            self.log()
        );
    }

    /// Waits (up to `timeout`) until `f(self)` holds.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts marathon-lb again, after [`ManagedLb::terminate`], as it was started but
    /// following `marathon` instead of the fake, logging into `log`: the caller stops it.
    pub fn relaunch(&self, marathon: &str, log: &Path) -> Child {
        let (args, env) = &self.relaunch;
        let mut args = args.clone();
        if let Some(i) = args.iter().position(|a| a == "--marathon") {
            args[i + 1] = marathon.into();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .env_remove("MARATHON_LB_LOG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (key, _) in std::env::vars() {
            if key.starts_with("HAPROXY_") {
                cmd.env_remove(key);
            }
        }
        cmd.spawn().unwrap()
    }

    /// Sends SIGTERM to marathon-lb and waits (up to `timeout`) for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ManagedLb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything of ours left behind (a bug, reported by the tests) goes too.
        for pid in self.haproxy_pids() {
            signal(pid, libc::SIGKILL);
        }
    }
}
