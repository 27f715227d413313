//! Runs `wrk` (Debian's package) against a URL in the background and parses its summary.

#![allow(dead_code)] // each bench uses a different subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `wrk` reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    /// Requests completed.
    pub requests: u64,
    /// Seconds it ran.
    pub seconds: f64,
    /// Socket errors: connect, read, write, timeout.
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
    /// Latency percentiles as printed (`--latency`): 50%, 99%.
    pub p50: String,
    pub p99: String,
    /// The whole output, for when parsing is not enough.
    pub raw: String,
}

impl WrkResult {
    /// Socket errors of every kind.
    pub fn errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A running `wrk`; SIGINT makes it stop and print its summary. Killed (by pid) if dropped.
pub struct Wrk {
    child: Option<Child>,
    out: tempfile::NamedTempFile,
}

/// Whether `wrk` is on PATH.
pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

impl Wrk {
    /// `wrk -t<threads> -c<connections> -d<max_secs>s --latency [-H header] url`.
    pub fn start(
        url: &str,
        threads: u32,
        connections: u32,
        max_secs: u32,
        header: Option<&str>,
    ) -> Wrk {
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("wrk");
        cmd.args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{max_secs}s"),
            "--timeout".into(),
            "5s".into(),
            "--latency".into(),
        ]);
        if let Some(h) = header {
            cmd.args(["-H", h]);
        }
        cmd.arg(url)
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null());
        Wrk {
            child: Some(cmd.spawn().expect("run wrk")),
            out,
        }
    }

    /// Stops it (SIGINT: it prints its summary) and parses the summary.
    pub fn finish(mut self) -> WrkResult {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        parse(&std::fs::read_to_string(self.out.path()).unwrap_or_default())
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses wrk's summary.
pub fn parse(text: &str) -> WrkResult {
    let mut r = WrkResult {
        raw: text.to_owned(),
        ..WrkResult::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some((requests, rest)) = line.split_once(" requests in ") {
            r.requests = requests.trim().parse().unwrap_or(0);
            let secs = rest.split(',').next().unwrap_or("");
            r.seconds = duration_secs(secs);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n = n.parse().unwrap_or(0);
                match kind {
                    "connect" => r.connect = n,
                    "read" => r.read = n,
                    "write" => r.write = n,
                    "timeout" => r.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("50%") {
            r.p50 = rest.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("99%") {
            r.p99 = rest.trim().to_owned();
        }
    }
    r
}

fn duration_secs(text: &str) -> f64 {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let n: f64 = num.parse().unwrap_or(0.0);
    match unit {
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        _ => n,
    }
}
