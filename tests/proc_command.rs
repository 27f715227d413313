//! Process faults with `--command` (the original's apply mode), end to end through the real
//! binary in live mode (`--apps-file --watch`): the reload command and `haproxy -c` see no
//! credentials; a reload command past `--command-timeout` is killed and reported; SIGTERM
//! during a long reload command is honoured; a failed write is retried without a new event.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APPS: &str = r#"{"apps":[{"id":"/web","labels":{"HAPROXY_GROUP":"external"},
    "portDefinitions":[{"port":10000}],
    "tasks":[{"id":"web.1","host":"127.0.0.1","ports":[31000],"state":"TASK_RUNNING"}]}]}"#;

/// marathon-lb with `--apps-file --watch`; killed (by its pid) when dropped.
struct Lb {
    child: Child,
    dir: tempfile::TempDir,
}

impl Lb {
    /// Starts it in a temp dir holding `apps.json`; `config` is `--haproxy-config` relative to
    /// that dir.
    fn start(config: &str, extra: &[&str], env: &[(&str, &str)]) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, extra, env)
    }

    fn start_in(dir: tempfile::TempDir, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Lb {
        std::fs::write(dir.path().join("apps.json"), APPS).unwrap();
        // A head `haproxy -c` accepts unprivileged (the built-in one loads Lua from /marathon-lb).
        common::unprivileged_templates(dir.path());
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marathon-lb"));
        cmd.current_dir(dir.path())
            .args(["--apps-file", "apps.json", "--watch", "--group", "external"])
            .args(["--archive-versions", "0", "--syslog-socket", "/dev/null"])
            .arg("--haproxy-config")
            .arg(dir.path().join(config))
            .args(["--log-level", "debug", "--admin-addr", "off"])
            .arg("--ssl-certs")
            .arg(common::cert_pem())
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        Lb {
            child: cmd.spawn().unwrap(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` for `what`.
    async fn wait(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&Lb) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_command_and_the_check_see_no_credentials() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIP: no haproxy");
        return;
    }
    // `haproxy` on PATH is a wrapper that records its environment, then runs the real one.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v haproxy"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin.join("haproxy");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > \"{}/check-env.txt\"\nexec {} \"$@\"\n",
            dir.path().display(),
            real.trim()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let lb = Lb::start_in(
        dir,
        "haproxy.cfg",
        &[
            "--command",
            "env > reload-env.txt",
            "--haproxy-env",
            "MLB_TEST_EXTRA",
        ],
        &[
            ("PATH", &path),
            ("DCOS_SERVICE_ACCOUNT_CREDENTIAL", "secret-value"),
            ("SOME_TOKEN", "token-value"),
            ("MESOS_SECRET", "mesos-secret-value"),
            ("MARATHON_APP_ID", "/mlb"),
            ("MLB_TEST_EXTRA", "extra-value"),
        ],
    );
    lb.wait("the reload command", Duration::from_secs(10), |lb| {
        read(&lb.path("reload-env.txt")).contains("PATH=")
    })
    .await;
    for file in ["reload-env.txt", "check-env.txt"] {
        let env = read(&lb.path(file));
        for secret in ["secret-value", "token-value", "mesos-secret-value"] {
            assert!(!env.contains(secret), "{file} has {secret}:\n{env}");
        }
        assert!(env.contains("MARATHON_APP_ID=/mlb"), "{file}:\n{env}");
        assert!(env.contains("MLB_TEST_EXTRA=extra-value"), "{file}:\n{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_command_past_its_timeout_is_killed_and_reported() {
    let lb = Lb::start(
        "haproxy.cfg",
        &[
            "--skip-validation",
            "--command",
            "echo $$ > sh.pid; sleep 30",
            "--command-timeout",
            "1",
        ],
        &[],
    );
    lb.wait("the timeout", Duration::from_secs(10), |lb| {
        lb.stderr()
            .contains("reload command `echo $$ > sh.pid; sleep 30` failed: the reload command timed out after 1s; killed it")
    })
    .await;
    let pid = read(&lb.path("sh.pid")).trim().to_owned();
    assert!(!pid.is_empty());
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the command still runs: {stat}"
    );
    // The reload is retried with a backoff, without a new event.
    lb.wait("a retry", Duration::from_secs(10), |lb| {
        lb.stderr().matches("timed out after 1s").count() >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_reload_command_is_honoured() {
    let mut lb = Lb::start(
        "haproxy.cfg",
        &["--skip-validation", "--command", "touch started; sleep 60"],
        &[],
    );
    lb.wait("the command", Duration::from_secs(10), |lb| {
        lb.path("started").exists()
    })
    .await;
    let asked = Instant::now();
    // SAFETY: kill(2) on the pid of the child we started.
    unsafe {
        libc::kill(lb.child.id() as libc::pid_t, libc::SIGTERM);
    }
    while lb.child.try_wait().unwrap().is_none() {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "SIGTERM ignored:\n{}",
            lb.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("exited {:?} after SIGTERM", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_retried_without_a_new_event() {
    // As root a read-only mode does not stop writes: the config's directory is a file instead.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etc"), "not a directory").unwrap();
    let lb = Lb::start_in(
        dir,
        "etc/haproxy.cfg",
        &[
            "--skip-validation",
            "--command",
            "echo reload >> reloads.log",
        ],
        &[],
    );
    lb.wait("the write failure", Duration::from_secs(10), |lb| {
        lb.stderr().contains("cannot write")
    })
    .await;
    let fixed = Instant::now();
    std::fs::remove_file(lb.path("etc")).unwrap();
    std::fs::create_dir(lb.path("etc")).unwrap();
    lb.wait("the retried write", Duration::from_secs(5), |lb| {
        read(&lb.path("etc/haproxy.cfg")).contains("backend web_10000")
            && read(&lb.path("reloads.log")) == "reload\n"
    })
    .await;
    eprintln!("applied {:?} after the fix", fixed.elapsed());
    assert!(
        lb.stderr().contains("retrying the failed pass"),
        "{}",
        lb.stderr()
    );
}

/// Zombie processes whose parent is `parent`.
fn zombies_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
            let (state, ppid) = (fields.next()?, fields.next()?.parse::<u32>().ok()?);
            (state == "Z" && ppid == parent).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_orphans_are_reaped_and_our_children_keep_their_status() {
    let usable = Command::new("unshare")
        .args(["-fp", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable || Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("\n!!!!! SKIP: needs `unshare -fp --mount-proc` (root) and haproxy !!!!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apps.json"), APPS).unwrap();
    common::unprivileged_templates(dir.path());
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    // Each reload leaves an orphan (the backgrounded sleep), which becomes our child.
    let mut unshare = Command::new("unshare")
        .args(["-fp", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_marathon-lb"))
        .args(["--apps-file", "apps.json", "--watch", "--group", "external"])
        .args(["--archive-versions", "0", "--syslog-socket", "/dev/null"])
        .args(["--haproxy-config", "haproxy.cfg", "--admin-addr", "off"])
        .arg("--ssl-certs")
        .arg(common::cert_pem())
        .args(["--command", "sleep 0.2 & echo reload >> reloads.log"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let stderr = || read(&dir.path().join("stderr.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let lb = loop {
        let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat[stat.rfind(')')? + 2..]
                .split(' ')
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == unshare.id()).then_some(pid)
        });
        if let Some(pid) = found {
            break KillOnDrop(pid);
        }
        assert!(Instant::now() < deadline, "marathon-lb did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Three passes, three reloads (a new config each time), three orphans.
    for port in [31001, 31002] {
        while !read(&dir.path().join("reloads.log")).ends_with("reload\n") {
            assert!(Instant::now() < deadline, "no reload:\n{}", stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(
            dir.path().join("apps.json"),
            APPS.replace("31000", &port.to_string()),
        )
        .unwrap();
    }
    let want = "reload\nreload\nreload\n";
    while read(&dir.path().join("reloads.log")) != want {
        assert!(Instant::now() < deadline, "reloads:\n{}", stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let zombies = zombies_of(lb.0);
    assert!(
        zombies.is_empty(),
        "unreaped orphans {zombies:?}:\n{}",
        stderr()
    );
    let log = stderr();
    assert!(log.contains("running as PID 1"), "{log}");
    assert!(
        !log.contains("failed"),
        "a child's status was stolen:\n{log}"
    );
    drop(lb);
    let _ = unshare.wait();
}

/// SIGKILL to a pid this test started, when dropped (also on a failed assertion): for the
/// namespace's init it ends everything in the namespace.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of marathon-lb, which this test started.
        unsafe {
            libc::kill(self.0 as libc::pid_t, libc::SIGKILL);
        }
    }
}
