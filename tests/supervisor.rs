//! The HAProxy supervisor against a real `haproxy` (master-worker mode) on 127.0.0.1:
//! start, reload, a rejected reload, restart after `kill -9`, `hard-stop-after` on old workers
//! holding an idle tunnel, and stop/drop leaving no process behind.
//!
//! Each test skips, loudly, when `haproxy` is not on PATH. Sockets and state live in a temp
//! dir, so the tests run as any user.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::haproxy_available;
use marathon_lb::haproxy::process::{Error, Status};
use marathon_lb::haproxy::{ReloadReason, Retries, Supervisor, SupervisorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server on 127.0.0.1:0 that answers every read with `<name>:<bytes read>` and keeps
/// the connection open until the client closes it.
async fn named_echo(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    if conn.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

use marathon_lb_testkit::ports::free_port;

/// A temp dir with the config, the sockets, and a front port for HAProxy.
struct Sandbox {
    dir: tempfile::TempDir,
    front: u16,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            front: free_port(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// A TCP proxy from the front port to `backend`, with day-long timeouts.
    fn write_config(&self, backend: u16) {
        let text = format!(
            "global\n  stats socket {dir}/stats.sock mode 600 level admin expose-fd listeners\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 86400s\n  \
             timeout server 86400s\n  timeout tunnel 86400s\n\
             listen front\n  bind 127.0.0.1:{front}\n  server b 127.0.0.1:{backend}\n",
            dir = self.dir.path().display(),
            front = self.front,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn supervisor_config(&self, drain: Option<Duration>) -> SupervisorConfig {
        let mut config = SupervisorConfig::new(self.config_path(), self.dir.path());
        config.drain_timeout = drain;
        config.reload_interval = Duration::from_secs(3);
        config.max_reload_retries = Retries::None;
        config.stop_timeout = Duration::from_secs(5);
        config
    }

    /// Connects through HAProxy, sends `ping`, returns the answer and the open connection.
    async fn ping(&self) -> (String, TcpStream) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.front)).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
            .await
            .expect("no answer through haproxy")
            .unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), conn)
    }
}

/// Whether a pid is gone (or a zombie: in containers whose init does not reap, workers of
/// a killed master stay as zombies of pid 1).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn all_pids(sup: &Supervisor) -> Vec<u32> {
    let list = sup.show_proc().await.unwrap();
    std::iter::once(list.master.pid)
        .chain(list.workers.iter().map(|w| w.pid))
        .chain(list.old_workers.iter().map(|w| w.pid))
        .collect()
}

fn status(sup: &Supervisor) -> Status {
    sup.subscribe().borrow().clone()
}

/// A sandbox serving the echo server "A" through a started supervisor (`drain`: its
/// `hard-stop-after`), or `None` when HAProxy is not installed (the test is skipped).
async fn started(test: &str, drain: Option<Duration>) -> Option<(Sandbox, Supervisor)> {
    if !haproxy_available(test) {
        return None;
    }
    let sandbox = Sandbox::new();
    sandbox.write_config(named_echo("A").await);
    let sup = Supervisor::start(sandbox.supervisor_config(drain))
        .await
        .unwrap();
    Some((sandbox, sup))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_serves() {
    let Some((sandbox, sup)) = started("starts_and_serves", None).await else {
        return;
    };
    let list = sup.show_proc().await.unwrap();
    assert_eq!(Some(list.master.pid), sup.master_pid());
    assert_eq!(list.workers.len(), 1);
    assert!(list.old_workers.is_empty());
    assert_eq!(sandbox.ping().await.0, "A:ping");
    assert_eq!(status(&sup).loads[&ReloadReason::Initial], 1);
    let extra = std::fs::read_to_string(&sup.config().extra_config_path).unwrap();
    assert!(extra.contains("global") && !extra.contains("hard-stop-after"));
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_fails_at_start_is_an_error_with_alerts() {
    if !haproxy_available("a_config_that_fails_at_start_is_an_error_with_alerts") {
        return;
    }
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.config_path(), "global\nbogus-keyword 1\n").unwrap();
    let err = Supervisor::start(sandbox.supervisor_config(None))
        .await
        .err()
        .expect("start must fail");
    match &err {
        Error::ExitedAtStart { output, .. } => {
            assert!(
                output.contains("[ALERT]") && output.contains("bogus-keyword"),
                "{output}"
            )
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_the_new_backend() {
    let Some((sandbox, sup)) = started(
        "reload_serves_the_new_backend",
        Some(Duration::from_secs(5)),
    )
    .await
    else {
        return;
    };
    let before = sup.show_proc().await.unwrap();
    assert_eq!(sandbox.ping().await.0, "A:ping");

    sandbox.write_config(named_echo("B").await);
    let outcome = sup.reload(ReloadReason::NewApp).await.unwrap();
    assert_eq!(outcome.reason, ReloadReason::NewApp);
    assert_eq!(outcome.old_workers, vec![before.workers[0].pid]);
    assert_ne!(outcome.new_worker, before.workers[0].pid);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(sandbox.ping().await.0, "B:ping");

    let after = sup.show_proc().await.unwrap();
    assert_eq!(after.master.pid, before.master.pid);
    assert_eq!(after.master.reloads, before.master.reloads + 1);
    assert!(after.is_current_worker(outcome.new_worker));
    let status = status(&sup);
    assert_eq!(status.loads[&ReloadReason::NewApp], 1);
    assert_eq!(status.last_reload, Some(outcome));
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_run_one_after_the_other() {
    // The sandbox holds the files HAProxy runs on until the test ends.
    let Some((_sandbox, sup)) = started(
        "concurrent_reloads_run_one_after_the_other",
        Some(Duration::from_secs(5)),
    )
    .await
    else {
        return;
    };
    let (a, b) = tokio::join!(
        sup.reload(ReloadReason::NewApp),
        sup.reload(ReloadReason::RemovedApp)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (first, second) = if b.old_workers.contains(&a.new_worker) {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(second.old_workers, vec![first.new_worker]);
    assert!(sup
        .show_proc()
        .await
        .unwrap()
        .is_current_worker(second.new_worker));
    let status = status(&sup);
    assert_eq!(status.loads[&ReloadReason::NewApp], 1);
    assert_eq!(status.loads[&ReloadReason::RemovedApp], 1);
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_is_reported_and_the_old_worker_keeps_serving() {
    if !haproxy_available("a_rejected_reload_is_reported_and_the_old_worker_keeps_serving") {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.write_config(named_echo("A").await);
    let mut config = sandbox.supervisor_config(None);
    config.reload_interval = Duration::from_millis(300);
    config.max_reload_retries = Retries::Limited(1);
    let sup = Supervisor::start(config).await.unwrap();
    let worker = sup.show_proc().await.unwrap().workers[0].pid;

    let good = std::fs::read_to_string(sandbox.config_path()).unwrap();
    std::fs::write(sandbox.config_path(), format!("{good}  no-such-keyword\n")).unwrap();
    let err = sup.reload(ReloadReason::LabelChange).await.unwrap_err();
    match &err {
        Error::ReloadRejected {
            reason,
            attempts,
            output,
        } => {
            assert_eq!(*reason, ReloadReason::LabelChange);
            assert_eq!(*attempts, 2, "one retry");
            assert!(output.contains("no-such-keyword"), "{output}");
        }
        other => panic!("unexpected error: {other}"),
    }
    let list = sup.show_proc().await.unwrap();
    assert_eq!(list.workers.len(), 1);
    assert_eq!(list.workers[0].pid, worker);
    assert_eq!(sandbox.ping().await.0, "A:ping");
    let st = status(&sup);
    assert_eq!(st.failures[&ReloadReason::LabelChange], 1);
    assert!(st.last_error.is_some());

    // The next good config loads.
    std::fs::write(sandbox.config_path(), good).unwrap();
    let outcome = sup.reload(ReloadReason::LabelChange).await.unwrap();
    assert_eq!(outcome.old_workers, vec![worker]);
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_restarted_with_the_last_config_within_2s() {
    let Some((sandbox, sup)) = started(
        "a_killed_master_is_restarted_with_the_last_config_within_2s",
        None,
    )
    .await
    else {
        return;
    };
    let old_master = sup.master_pid().unwrap();
    // The lead wrote a newer validated config but has not reloaded yet.
    sandbox.write_config(named_echo("C").await);

    let mut status = sup.subscribe();
    let pid = rustix::process::Pid::from_raw(old_master as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let killed = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(2),
        status.wait_for(|s| s.restarts == 1 && s.master_pid.is_some()),
    )
    .await
    .expect("not restarted within 2 s")
    .unwrap();
    eprintln!("restarted in {:?}", killed.elapsed());
    let new_master = sup.master_pid().unwrap();
    assert_ne!(new_master, old_master);
    assert_eq!(sandbox.ping().await.0, "C:ping");
    assert_eq!(status.borrow().loads[&ReloadReason::Restart], 1);
    // Reloads work against the new master.
    sup.reload(ReloadReason::ManualSignal).await.unwrap();
    sup.stop().await;
}

/// Opens a tunnel through the worker, reloads, and returns how long the old worker lived on
/// (`None` if it outlived `watch`).
async fn old_worker_lifetime(drain: Option<Duration>, watch: Duration) -> Option<Duration> {
    let sandbox = Sandbox::new();
    sandbox.write_config(named_echo("A").await);
    let sup = Supervisor::start(sandbox.supervisor_config(drain))
        .await
        .unwrap();
    let (answer, mut tunnel) = sandbox.ping().await;
    assert_eq!(answer, "A:ping");
    let outcome = sup.reload(ReloadReason::ServersChanged).await.unwrap();
    let old = outcome.old_workers[0];
    let listed = sup.old_workers().await.unwrap();
    assert_eq!(listed.iter().map(|w| w.pid).collect::<Vec<_>>(), vec![old]);
    assert_eq!(listed[0].reloads, 1, "an old worker's generation");
    let lifetime = wait_until(watch, || gone(old)).await;
    if lifetime.is_some() {
        assert!(sup.old_workers().await.unwrap().is_empty());
        // The tunnel was closed by the hard stop.
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(Duration::from_secs(1), tunnel.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    } else {
        assert_eq!(sup.old_workers().await.unwrap().len(), 1);
    }
    sup.stop().await;
    lifetime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_stop_after_ends_an_old_worker_holding_an_idle_tunnel() {
    if !haproxy_available("hard_stop_after_ends_an_old_worker_holding_an_idle_tunnel") {
        return;
    }
    let lifetime = old_worker_lifetime(Some(Duration::from_secs(2)), Duration::from_secs(4))
        .await
        .expect("old worker still alive 4 s after the reload with a 2 s drain timeout");
    eprintln!("old worker lived {lifetime:?} after the reload");
    assert!(lifetime >= Duration::from_millis(1500), "{lifetime:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_drain_timeout_the_old_worker_stays() {
    if !haproxy_available("without_a_drain_timeout_the_old_worker_stays") {
        return;
    }
    let lifetime = old_worker_lifetime(None, Duration::from_secs(4)).await;
    assert_eq!(lifetime, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_leaves_no_haproxy_process() {
    let Some((sandbox, sup)) = started(
        "stop_leaves_no_haproxy_process",
        Some(Duration::from_secs(1)),
    )
    .await
    else {
        return;
    };
    let _tunnel = sandbox.ping().await.1;
    sup.reload(ReloadReason::TemplateChange).await.unwrap();
    let _tunnel2 = sandbox.ping().await.1;
    let pids = all_pids(&sup).await;
    assert_eq!(pids.len(), 3, "master, worker, old worker");
    let started = Instant::now();
    sup.stop().await;
    eprintln!("stop took {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "soft stop is bounded by the drain timeout"
    );
    assert!(
        wait_until(Duration::from_secs(1), || pids.iter().all(|&p| gone(p)))
            .await
            .is_some(),
        "left behind: {:?}",
        pids.iter().filter(|&&p| !gone(p)).collect::<Vec<_>>()
    );
    assert!(!socket_answers(&sandbox.dir.path().join("master.sock")).await);
    assert!(matches!(
        sup.reload(ReloadReason::ManualSignal).await,
        Err(Error::NotRunning)
    ));
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_supervisor_kills_haproxy() {
    let Some((sandbox, sup)) = started("dropping_the_supervisor_kills_haproxy", None).await else {
        return;
    };
    let _tunnel = sandbox.ping().await.1;
    let pids = all_pids(&sup).await;
    drop(sup);
    assert!(
        wait_until(Duration::from_secs(3), || pids.iter().all(|&p| gone(p)))
            .await
            .is_some(),
        "left behind: {:?}",
        pids.iter().filter(|&&p| !gone(p)).collect::<Vec<_>>()
    );
}

async fn socket_answers(path: &Path) -> bool {
    tokio::net::UnixStream::connect(path).await.is_ok()
}
