//! Every endpoint of the built-in head's stats listener (`:9090`), served by a real
//! `haproxy -W` running the repo's `lua/` scripts: stats page and CSV, health check, config and
//! map dumps, pids, the `/_mlb_signal/*` forwards (into a real admin server whose trigger
//! channel the test reads) and HAProxy's Prometheus exporter.
//!
//! The config is the built-in `HAPROXY_HEAD` with its root-owned paths moved into a temp dir,
//! the `lua-load` paths pointed at `lua/`, a global `maxconn` that fits the test's file-descriptor
//! limit and every `bind` on 127.0.0.1 with a free port, plus
//! one rendered app with `--haproxy-map`. Skips, loudly, when `haproxy` is not on PATH.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use marathon_lb::admin::{self, AdminState};
use marathon_lb::config::Cli;
use marathon_lb::haproxy::Paths;
use marathon_lb::metrics::Metrics;
use marathon_lb::reconcile::{Status, Trigger};
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::{self, Templates};
use tokio::sync::{mpsc, watch};

/// A port nobody listens on right now (bound and released; good enough for a test).
use marathon_lb_testkit::ports::free_port;

/// `text` with `from` replaced by `to`; `from` must occur, so a changed head fails loudly.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// The built-in head, runnable unprivileged from `dir` with the stats listener on `stats_port`.
fn head(dir: &Path, stats_port: u16) -> String {
    let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
    let head = templates::default_head(None);
    let head = replace(&head, "/marathon-lb/", &format!("{}/", lua.display()));
    let head = replace(
        &head,
        "stats socket /var/run/haproxy/socket",
        &format!("stats socket {}/haproxy.sock", dir.display()),
    );
    let head = replace(
        &head,
        "server-state-base /var/state/haproxy/",
        &format!("server-state-base {}/", dir.display()),
    );
    // `maxconn 50000` makes HAProxy want 100033 file descriptors; unprivileged (or in a
    // container without CAP_SYS_RESOURCE) it cannot raise RLIMIT_NOFILE that far and exits.
    let head = replace(&head, "  maxconn 50000\n", "  maxconn 2000\n");
    replace(
        &head,
        "bind 0.0.0.0:9090",
        &format!("bind 127.0.0.1:{stats_port}"),
    )
}

/// `config` with every `bind *:PORT` (:80, :443, :9091, the service port) on 127.0.0.1 and a
/// free port, so the test needs no privileges and collides with nothing.
fn loopback_binds(config: &str) -> String {
    let mut out = String::with_capacity(config.len());
    let mut moved = 0;
    for line in config.lines() {
        match line.strip_prefix("  bind *:") {
            Some(rest) => {
                let options = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                out.push_str(&format!("  bind 127.0.0.1:{}{options}\n", free_port()));
                moved += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert_eq!(
        moved, 4,
        "expected :80, :443, :9091 and the service port:\n{config}"
    );
    out
}

/// The files HAProxy runs from.
struct Rendered {
    config_path: PathBuf,
    config: String,
    domain_map: String,
    app_map: String,
    backend: String,
}

/// Renders one vhost app with `--haproxy-map` into `dir`.
fn render(dir: &Path, stats_port: u16) -> Rendered {
    let service_port = 10000;
    let templates_dir = dir.join("templates");
    std::fs::create_dir(&templates_dir).unwrap();
    std::fs::write(templates_dir.join("HAPROXY_HEAD"), head(dir, stats_port)).unwrap();
    let templates = Templates::load(Some(&templates_dir), |_| None).unwrap();
    let config_path = dir.join("haproxy.cfg");
    let config = Cli::try_parse_from([
        "marathon-lb",
        "--group",
        "external",
        "--haproxy-map",
        "--ssl-certs",
        common::cert_pem().to_str().unwrap(),
        "--haproxy-config",
        config_path.to_str().unwrap(),
    ])
    .unwrap()
    .validate(|_| None)
    .unwrap();
    let apps = format!(
        r#"{{"apps":[{{"id":"/web","labels":{{"HAPROXY_GROUP":"external","HAPROXY_0_VHOST":"web.example.com"}},
            "portDefinitions":[{{"port":{service_port}}}],
            "tasks":[{{"id":"web.1","host":"127.0.0.1","ports":[31000],"state":"TASK_RUNNING"}}]}}]}}"#
    );
    let rendered = run::render_body(
        apps,
        "apps.json",
        &config,
        &templates,
        &mut Memory::default(),
    )
    .unwrap();
    let text = loopback_binds(&rendered.config);
    let paths = Paths::new(config_path.to_str().unwrap());
    std::fs::write(&config_path, &text).unwrap();
    std::fs::write(paths.domain_map(), &rendered.domain_map).unwrap();
    std::fs::write(paths.app_map(), &rendered.app_map).unwrap();
    assert!(rendered.domain_map.contains("web.example.com"));
    assert!(rendered.app_map.contains("/web"));
    Rendered {
        config_path,
        config: text,
        domain_map: rendered.domain_map,
        app_map: rendered.app_map,
        backend: format!("web_{service_port}"),
    }
}

/// The `haproxy` under test (the master with `-W`); stopped by its pid when dropped.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// Starts `haproxy -f config` with `env` added to its environment, logging to `log`.
    fn start(config: &Path, env: &[(&str, String)], log: &Path, master_worker: bool) -> Haproxy {
        let log = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new("haproxy");
        if master_worker {
            cmd.arg("-W");
        }
        let child = cmd
            .arg("-f")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Haproxy { child }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SIGTERM: the master stops its workers, then exits.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code, content type and body of `GET base+path`.
async fn get(base: &str, path: &str) -> (u16, String, String) {
    let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
    let code = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (code, ctype, resp.text().await.unwrap())
}

/// Waits until HAProxy answers its health check (or fails with its log).
async fn wait_ready(base: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(resp) = reqwest::get(format!("{base}/_haproxy_health_check")).await {
            if resp.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "haproxy did not come up; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The parent pid in `/proc/<pid>/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(1)?.parse().ok()
}

/// A rendered config in a temp dir, with its stats listener's URL.
struct Stage {
    dir: tempfile::TempDir,
    rendered: Rendered,
    base: String,
}

impl Stage {
    /// `None` (after a loud SKIP line) when `haproxy` is not installed.
    fn new(test: &str) -> Option<Stage> {
        if !common::haproxy_available(test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let stats_port = free_port();
        let rendered = render(dir.path(), stats_port);
        let base = format!("http://127.0.0.1:{stats_port}");
        Some(Stage {
            dir,
            rendered,
            base,
        })
    }

    /// Starts HAProxy on the config with `env` and waits until it answers.
    async fn start(&self, env: &[(&str, String)], master_worker: bool) -> Haproxy {
        let log = self.dir.path().join("haproxy.log");
        let haproxy = Haproxy::start(&self.rendered.config_path, env, &log, master_worker);
        wait_ready(&self.base, &log).await;
        haproxy
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        get(&self.base, path).await
    }
}

/// A real admin server on a free port: its address and the loop's end of its trigger channel.
async fn start_admin() -> (String, mpsc::UnboundedReceiver<Trigger>) {
    let (_status_tx, status_rx) = watch::channel(Status::default());
    let (trigger_tx, triggers) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = AdminState::new(status_rx, Metrics::new(), trigger_tx);
    tokio::spawn(admin::serve_on(listener, state, std::future::pending()));
    (addr, triggers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stats_endpoint_answers_as_documented() {
    let Some(stage) = Stage::new("every_stats_endpoint_answers_as_documented") else {
        return;
    };
    let (admin_addr, _triggers) = start_admin().await;
    let haproxy = stage
        .start(&[("MARATHON_LB_ADMIN_ADDR", admin_addr)], true)
        .await;
    let rendered = &stage.rendered;

    let (code, ctype, body) = stage.get("/haproxy?stats").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(body.contains("Statistics Report"), "{body}");

    let (code, _, csv) = stage.get("/haproxy?stats;csv").await;
    assert_eq!(code, 200);
    assert!(csv.starts_with("# pxname,svname,"), "{csv}");
    assert!(
        csv.contains(&format!("\n{},BACKEND,", rendered.backend)),
        "{csv}"
    );

    let (code, _, _) = stage.get("/_haproxy_health_check").await;
    assert_eq!(code, 200);

    let (code, _, config) = stage.get("/_haproxy_getconfig").await;
    assert_eq!(code, 200);
    assert_eq!(config, rendered.config);

    let (code, _, vhosts) = stage.get("/_haproxy_getvhostmap").await;
    assert_eq!((code, vhosts.as_str()), (200, rendered.domain_map.as_str()));
    let (code, _, apps) = stage.get("/_haproxy_getappmap").await;
    assert_eq!((code, apps.as_str()), (200, rendered.app_map.as_str()));

    // The master first, then its worker(s); nothing else.
    let (code, _, pids) = stage.get("/_haproxy_getpids").await;
    assert_eq!(code, 200);
    let pids: Vec<u32> = pids
        .split(' ')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a pid list: {pids:?}"))
        })
        .collect();
    let master = haproxy.child.id();
    assert_eq!(pids[0], master, "{pids:?}");
    assert!(pids.len() >= 2, "no worker in {pids:?}");
    for worker in &pids[1..] {
        assert_eq!(ppid(*worker), Some(master), "{worker} of {pids:?}");
    }

    let (code, ctype, metrics) = stage.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        metrics.contains("# TYPE haproxy_process_")
            && metrics.contains(&format!("proxy=\"{}\"", rendered.backend)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_admin_server() {
    let Some(stage) = Stage::new("signals_reach_the_admin_server") else {
        return;
    };
    let (admin_addr, mut triggers) = start_admin().await;
    let _haproxy = stage
        .start(&[("MARATHON_LB_ADMIN_ADDR", admin_addr)], true)
        .await;

    let (code, _, body) = stage.get("/_mlb_signal/hup").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "Sent SIGHUP signal to marathon-lb")
    );
    assert_eq!(triggers.recv().await, Some(Trigger::Resync));
    let (code, _, body) = stage.get("/_mlb_signal/usr1").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "Sent SIGUSR1 signal to marathon-lb")
    );
    assert_eq!(triggers.recv().await, Some(Trigger::ReloadExisting));

    // A controller whose loop is gone answers 503; the Lua reports it (no pkill fallback then).
    triggers.close();
    let (code, _, body) = stage.get("/_mlb_signal/hup").await;
    assert_eq!(code, 500);
    assert_eq!(
        body,
        "Failed to send SIGHUP signal to marathon-lb \
         (admin server answered 503: the reconcile loop is not running)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_fall_back_to_pkill_without_an_admin_server() {
    let Some(stage) = Stage::new("signals_fall_back_to_pkill_without_an_admin_server") else {
        return;
    };
    // A fake `pkill` first on PATH that records its arguments: the real one would signal every
    // marathon-lb on the machine.
    let bin = stage.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = stage.dir.path().join("pkill.args");
    let pkill = bin.join("pkill");
    let script = format!("#!/bin/sh\necho \"$@\" >> {}\n", record.display());
    std::fs::write(&pkill, script).unwrap();
    std::fs::set_permissions(&pkill, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let nobody = format!("127.0.0.1:{}", free_port());
    let _haproxy = stage
        .start(&[("MARATHON_LB_ADMIN_ADDR", nobody), ("PATH", path)], true)
        .await;

    let (code, _, body) = stage.get("/_mlb_signal/usr1").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "Sent SIGUSR1 signal to marathon-lb")
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "-USR1 -x marathon-lb\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getpids_without_master_worker_lists_every_haproxy() {
    let Some(stage) = Stage::new("getpids_without_master_worker_lists_every_haproxy") else {
        return;
    };
    // No master to ask: `pidof haproxy`, as the original.
    let haproxy = stage.start(&[], false).await;
    let (code, _, pids) = stage.get("/_haproxy_getpids").await;
    assert_eq!(code, 200);
    let own = haproxy.child.id().to_string();
    assert!(pids.split(' ').any(|p| p == own), "{own} not in {pids:?}");
}
