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

/// Starts one task server per name, in order.
pub async fn tasks(names: &[&str]) -> Vec<TaskServer> {
    let mut out = Vec::new();
    for name in names {
        out.push(TaskServer::start(name).await);
    }
    out
}

/// An app `id` on service `port` whose tasks are these servers.
pub fn app(id: &str, port: u16, servers: &[&TaskServer]) -> App {
    App::new(id, port, servers.iter().map(|s| s.task()).collect())
}

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

/// A task: a tiny HTTP/1.1 server on `127.0.0.1:0` answering every request with its name
/// (keep-alive unless the request says otherwise). Stops accepting when dropped.
pub struct TaskServer {
    /// What it answers.
    pub name: String,
    /// Its port.
    pub port: u16,
    hits: Arc<AtomicU64>,
    first_hit: Arc<OnceLock<Instant>>,
    accept: JoinHandle<()>,
}

impl TaskServer {
    /// Starts one; needs a tokio runtime.
    pub async fn start(name: &str) -> TaskServer {
        Self::start_on(name, 0).await.unwrap()
    }

    /// Starts one on `127.0.0.1:port` (`0`: any free port).
    pub async fn start_on(name: &str, port: u16) -> std::io::Result<TaskServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let first_hit = Arc::new(OnceLock::new());
        let reply: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        )
        .into_bytes()
        .into();
        let (h, f) = (hits.clone(), first_hit.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve(sock, reply.clone(), h.clone(), f.clone()));
            }
        });
        Ok(TaskServer {
            name: name.to_owned(),
            port,
            hits,
            first_hit,
            accept,
        })
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// When the first request arrived.
    pub fn first_hit(&self) -> Option<Instant> {
        self.first_hit.get().copied()
    }

    /// Its Marathon task (`host` 127.0.0.1, its port, `id` = its name).
    pub fn task(&self) -> Task {
        Task::new(&self.name, "127.0.0.1", self.port)
    }
}

impl Drop for TaskServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    reply: Arc<[u8]>,
    hits: Arc<AtomicU64>,
    first_hit: Arc<OnceLock<Instant>>,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        first_hit.get_or_init(Instant::now);
        hits.fetch_add(1, Ordering::SeqCst);
        let close = head.contains("connection: close")
            || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        if sock.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

/// A Marathon task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Agent host (an IP here).
    pub host: String,
    /// Host port.
    pub port: u16,
    /// `healthCheckResults[0].alive`, when the task has results.
    pub alive: Option<bool>,
}

impl Task {
    /// A running task without health results.
    pub fn new(id: &str, host: &str, port: u16) -> Task {
        Task {
            id: id.to_owned(),
            host: host.to_owned(),
            port,
            alive: None,
        }
    }

    /// With a health check result.
    #[must_use]
    pub fn alive(mut self, alive: bool) -> Task {
        self.alive = Some(alive);
        self
    }

    fn json(&self) -> Value {
        let mut t = json!({
            "id": self.id, "host": self.host, "ports": [self.port], "state": "TASK_RUNNING",
            "startedAt": "2024-01-01T00:00:00.000Z",
        });
        if let Some(alive) = self.alive {
            t["healthCheckResults"] = json!([{"alive": alive, "consecutiveFailures": 0}]);
        }
        t
    }
}

/// A Marathon app with one service port, in group `external`.
#[derive(Debug, Clone)]
pub struct App {
    /// App id (`/web`).
    pub id: String,
    /// Its service port (the app frontend binds 127.0.0.1 on it).
    pub service_port: u16,
    /// Labels besides `HAPROXY_GROUP=external`.
    pub labels: BTreeMap<String, String>,
    /// Its tasks.
    pub tasks: Vec<Task>,
    /// Whether it has a Marathon HTTP health check (HAProxy then checks its servers too).
    pub health_check: bool,
    /// `instances` (default: the number of tasks).
    pub instances: Option<usize>,
}

impl App {
    /// An app without labels.
    pub fn new(id: &str, service_port: u16, tasks: Vec<Task>) -> App {
        App {
            id: id.to_owned(),
            service_port,
            labels: BTreeMap::new(),
            tasks,
            health_check: false,
            instances: None,
        }
    }

    /// With a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> App {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// With an HTTP health check on port index 0.
    #[must_use]
    pub fn health_checked(mut self) -> App {
        self.health_check = true;
        self
    }

    /// The backend name marathon-lb gives it (`/a/b` -> `a_b_<port>`).
    pub fn backend(&self) -> String {
        format!(
            "{}_{}",
            self.id.trim_start_matches('/').replace('/', "_"),
            self.service_port
        )
    }

    /// Its `/v2/apps` entry.
    pub fn json(&self) -> Value {
        let mut labels = json!({"HAPROXY_GROUP": "external"});
        for (k, v) in &self.labels {
            labels[k] = json!(v);
        }
        let mut app = json!({
            "id": self.id,
            "labels": labels,
            "instances": self.instances.unwrap_or(self.tasks.len()),
            "portDefinitions": [{"port": self.service_port, "protocol": "tcp"}],
            "versionInfo": {"lastScalingAt": "2024-01-01T00:00:00.000Z",
                            "lastConfigChangeAt": "2024-01-01T00:00:00.000Z"},
            "tasks": self.tasks.iter().map(Task::json).collect::<Vec<_>>(),
        });
        if self.health_check {
            app["healthChecks"] = json!([{
                "protocol": "HTTP", "path": "/", "portIndex": 0, "timeoutSeconds": 2,
                "intervalSeconds": 2, "maxConsecutiveFailures": 3, "gracePeriodSeconds": 10
            }]);
        }
        app
    }
}

/// The body of `GET /v2/apps` for these apps.
pub fn apps_body(apps: &[&App]) -> String {
    json!({"apps": apps.iter().map(|a| a.json()).collect::<Vec<_>>()}).to_string()
}

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
    http: reqwest::Client,
    run_dir: PathBuf,
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

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we started (or its HAProxy); no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// `haproxy` processes whose command line mentions `run_dir` (the `-S <run_dir>/master.sock`
/// of the HAProxy we started there; workers inherit the master's command line).
pub fn haproxy_pids_in(run_dir: &Path) -> Vec<u32> {
    let needle = run_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let argv0 = cmdline.split('\0').next().unwrap_or_default();
        // A zombie has an empty command line: it is gone already.
        if argv0.ends_with("haproxy") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// `pid ppid state cmdline` of each of `pids`, one a line, for failure messages.
pub fn describe_pids(pids: &[u32]) -> String {
    let mut out = String::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
        let mut fields = after_comm.split(' ');
        let (state, ppid) = (fields.next().unwrap_or("?"), fields.next().unwrap_or("?"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push_str(&format!("{pid} ppid {ppid} {state} {cmdline}\n"));
    }
    out
}

/// Successful reloads by reason in a metrics text.
pub fn parse_reloads(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("marathon_lb_reloads_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        if !labels.contains("result=\"ok\"") {
            continue;
        }
        let reason = labels
            .split(',')
            .find_map(|l| l.strip_prefix("reason=\""))
            .map(|r| r.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *out.entry(reason).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    out
}

/// The value of the sample line `series` (exact, labels included) in a metrics text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// One `GET /` to `127.0.0.1:port` (with `Host: host` if given) on a fresh connection:
/// the body, or `"ERR <what>"`.
pub async fn get(port: u16, host: Option<&str>) -> String {
    let request = async {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host.unwrap_or("x")
        );
        sock.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        sock.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(3), request).await {
        Err(_) => "ERR timeout".to_owned(),
        Ok(Err(e)) => format!("ERR {e}"),
        Ok(Ok(out)) => match out.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => body.to_owned(),
            _ => format!("ERR {}", out.lines().next().unwrap_or("no answer")),
        },
    }
}

/// Keep-alive clients sending `GET /` to `127.0.0.1:port` back to back until dropped.
pub struct Load {
    /// Requests answered `200`.
    pub ok: Arc<AtomicU64>,
    /// Requests that failed (error, non-200, closed connection mid-request).
    pub failed: Arc<AtomicU64>,
    /// The first few failures, described.
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests sent again on a fresh connection because the reused one was closed before
    /// any byte of the answer (what HTTP clients do for idempotent requests).
    pub retried: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` connections; each reconnects when the server closes it between requests.
    pub fn start(port: u16, clients: usize) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let retried = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let fail = Failures {
                    count: failed.clone(),
                    first: failures.clone(),
                };
                tokio::spawn(client_loop(port, ok.clone(), fail, retried.clone()))
            })
            .collect();
        Load {
            ok,
            failed,
            failures,
            retried,
            tasks,
        }
    }

    /// `(ok, failed)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Failures {
    count: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Failures {
    fn add(&self, what: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(what);
        }
    }
}

async fn client_loop(port: u16, ok: Arc<AtomicU64>, failed: Failures, retried: Arc<AtomicU64>) {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    loop {
        let mut sock = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(sock) => sock,
            Err(e) => {
                failed.add(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut buf = Vec::new();
        let mut served = 0u64;
        let mut chunk = [0u8; 4096];
        loop {
            if let Err(e) = sock.write_all(request).await {
                failed.add(format!("write after {served} responses: {e}"));
                break;
            }
            // One response: headers, then Content-Length bytes.
            let mut done = None;
            while done.is_none() {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        buf.drain(..end + 4 + len);
                        done = Some(head);
                        continue;
                    }
                }
                let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk));
                match read.await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    Ok(Ok(0)) if served > 0 && buf.is_empty() => {
                        // Closed before any byte of the answer on a reused connection: the
                        // request is sent again on a fresh one (idempotent GET).
                        retried.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    other => {
                        failed.add(format!("read after {served} responses: {other:?}"));
                        break;
                    }
                }
            }
            let Some(head) = done else {
                break;
            };
            served += 1;
            if head.starts_with("http/1.1 200") {
                ok.fetch_add(1, Ordering::SeqCst);
            } else {
                failed.add(head.lines().next().unwrap_or_default().to_owned());
            }
            if head.contains("connection: close") {
                break;
            }
        }
    }
}

/// The set of answers to `n` requests.
pub async fn answers(port: u16, host: Option<&str>, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(get(port, host).await);
    }
    seen
}

/// Resident and proportional set sizes (kB) of `pids`: sums of `VmRSS` and, where
/// `smaps_rollup` is readable, `Pss`.
pub fn memory_kb(pids: &[u32]) -> (u64, Option<u64>) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let mut rss = 0;
    let mut pss = Some(0);
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        rss += field(&status, "VmRSS:").unwrap_or(0);
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok();
        pss = match (pss, rollup.as_deref().and_then(|r| field(r, "Pss:"))) {
            (Some(sum), Some(p)) => Some(sum + p),
            _ => None,
        };
    }
    (rss, pss)
}
