//! A restart while Marathon is unreachable: managed mode serves the config left on disk before
//! its first pass only when that file is the last one written whole (`haproxy::record`), not
//! one cut short by a power loss during a write, even when HAProxy would accept it. The real
//! binary and a real HAProxy; the torn file is made by writing into the config in place, as
//! a write over the spare file interrupted by a power loss leaves it. Every wait is bounded.

#[path = "common/managed.rs"]
mod managed;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use managed::{app, free_port, haproxy_missing, signal, tasks, ManagedLb, Options, SETTLE};
use marathon_lb::haproxy::record::{self, Check};

/// A relaunched marathon-lb, stopped (SIGTERM, then SIGKILL) when dropped.
struct Relaunched(Child);

impl Relaunched {
    /// SIGTERM, and a bounded wait for the exit (HAProxy stops with it).
    fn stop(&mut self) {
        signal(self.0.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Relaunched {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `port` answers an HTTP request with `name` within `timeout`.
async fn answers_within(port: u16, name: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if managed::get(port, None).await.trim() == name {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits until no HAProxy of `lb`'s run dir is left.
async fn wait_haproxy_gone(lb: &ManagedLb) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lb.haproxy_pids().is_empty() {
        assert!(Instant::now() < deadline, "HAProxy did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_on_disk(path: &Path) -> Check {
    record::check(path, &std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_serves_the_last_whole_config_and_not_a_torn_one() {
    if haproxy_missing("a_start_serves_the_last_whole_config_and_not_a_torn_one") {
        return;
    }
    let t = tasks(&["a"]).await;
    let port = free_port();
    let mut lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    assert!(answers_within(port, "a", SETTLE).await, "{}", lb.log());
    let config = lb.config_path();
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_on_disk(&config) != Check::Whole {
        assert!(Instant::now() < deadline, "{:?}", check_on_disk(&config));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lb.terminate(Duration::from_secs(15)).await.expect("exit");
    wait_haproxy_gone(&lb).await;
    // Marathon is unreachable from now on: only the file on disk can be served.
    let nowhere = format!("http://127.0.0.1:{}", free_port());

    let log = lb.dir.path().join("whole.log");
    let mut whole = Relaunched(lb.relaunch(&nowhere, &log));
    let served = answers_within(port, "a", SETTLE).await;
    let whole_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(served, "the whole config was not served:\n{whole_log}");
    whole.stop();
    wait_haproxy_gone(&lb).await;

    // A power loss during a write leaves pages of another content in the file: still a
    // config HAProxy accepts, but not the one recorded.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n# a page of another write\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&config)
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, text.as_bytes(), 0))
        .unwrap();
    assert!(matches!(check_on_disk(&config), Check::Differs { .. }));
    let log = lb.dir.path().join("torn.log");
    let torn = Relaunched(lb.relaunch(&nowhere, &log));
    let served = answers_within(port, "a", Duration::from_secs(4)).await;
    let torn_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!served, "a torn config was served:\n{torn_log}");
    assert!(
        torn_log.contains("not the last one written whole") && torn_log.contains("haproxy.cfg"),
        "the log must say why the file on disk is not served:\n{torn_log}"
    );
    assert!(lb.haproxy_pids().is_empty(), "HAProxy was started");
    drop(torn);
}
