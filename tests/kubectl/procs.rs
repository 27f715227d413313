//! Processes of the end-to-end test: free ports, kill-on-drop guards, HAProxy under
//! `reload.sh`, and `kubectl` runs.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Whether `haproxy` and `kubectl` are on PATH; when not, prints a loud SKIP line.
pub fn tools_available(test: &str) -> bool {
    if !crate::common::haproxy_available(test) {
        return false;
    }
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok();
    if !found {
        eprintln!("\n!!!!! SKIP {test}: `kubectl` is not on PATH !!!!!\n");
    }
    found
}

pub use marathon_lb_testkit::ports::free_ports;

/// A child process, killed (by its pid) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process and everything it started (managed mode: HAProxy): on drop, SIGTERM to
/// the child (a clean exit stops its HAProxy), then SIGKILL, by pid, to whatever is left.
pub struct KilledTree(pub Child);

impl Drop for KilledTree {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        let tree = descendants(pid);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if self.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        for pid in tree {
            // SAFETY: kill(2) on a pid that was below our child (gone ones fail with ESRCH).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// How HAProxy is run in the end-to-end test.
#[allow(dead_code)] // one of the two is in use
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// `--command "sh reload.sh"`: the script starts HAProxy in master-worker mode on the
    /// first call and reloads it with `kill -USR2 <master pid>` after.
    Command,
    /// Managed mode: no `--command`; marathon-lb runs `haproxy -W -S ... -f <config>` itself
    /// (master socket and extra config in `--run-dir`).
    Managed,
}

/// The way the end-to-end test runs HAProxy; switching is this one line.
pub const CONTROL: Control = Control::Managed;

/// `marathon-lb` arguments for [`CONTROL`], given the work dir.
pub fn haproxy_control(dir: &Path) -> Vec<String> {
    match CONTROL {
        Control::Command => {
            let script = dir.join("reload.sh");
            std::fs::write(&script, RELOAD_SH).unwrap();
            vec!["--command".into(), format!("sh {}", script.display())]
        }
        Control::Managed => vec!["--run-dir".into(), dir.join("run").display().to_string()],
    }
}

/// Starts HAProxy (master-worker, daemon, pid file and master CLI in the script's dir) or
/// reloads the running master; logs each call.
const RELOAD_SH: &str = r#"#!/bin/sh
dir=$(dirname "$0")
pidfile="$dir/haproxy.pid"
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill -USR2 "$(cat "$pidfile")" || exit 1
  echo "reload $(cat "$pidfile")" >> "$dir/reloads.log"
else
  haproxy -W -D -p "$pidfile" -S "$dir/master.sock" -f "$dir/haproxy.cfg" \
    >> "$dir/haproxy.log" 2>&1 || exit 1
  echo "start $(cat "$pidfile")" >> "$dir/reloads.log"
fi
"#;

/// The HAProxy master of `reload.sh` (if it ran) and every process under it: killed by pid
/// when dropped. Under managed mode there is no pid file and nothing to do here.
pub struct HaproxyGuard(pub PathBuf);

impl Drop for HaproxyGuard {
    fn drop(&mut self) {
        let Some(master) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return;
        };
        let mut pids = descendants(master);
        pids.insert(0, master);
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            for &pid in &pids {
                // SAFETY: kill(2) with a pid this test started (read from its pid file).
                unsafe { libc::kill(pid, signal) };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The pids whose parent chain leads to `root` (from `/proc/*/stat`).
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// What a line reader thread reports of a child's stdout.
#[derive(Debug)]
pub enum Out {
    /// One line of output.
    Line(String),
    /// The output ended (the process exited or closed it), at this time.
    End(Instant),
}

/// Spawns `kubectl` with `args` against `kubeconfig`, its stdout read line by line.
pub fn kubectl_stream(kubeconfig: &Path, args: &[&str]) -> (Killed, mpsc::UnboundedReceiver<Out>) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    let _ = tx.send(Out::Line(line));
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Out::End(Instant::now()));
    });
    (Killed(child), rx)
}

/// Runs `kubectl` with `args` to completion; its stdout (panics on failure).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A kubeconfig for `https://127.0.0.1:<port>`, not verifying the certificate.
pub fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lb\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: test\n  user:\n    token: test-token\n\
             contexts:\n- name: lb\n  context:\n    cluster: lb\n    user: test\n\
             current-context: lb\n"
        ),
    )
    .unwrap();
    path
}

/// Polls `check` every 20 ms until it holds; panics with `what` and `context()` after `secs`.
pub async fn wait_until(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
