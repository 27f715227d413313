//! Reloads of a supervised HAProxy (master-worker, real `haproxy` on 127.0.0.1):
//!
//! 1. time per confirmed reload (`reload` on the master CLI until `show proc` lists the new
//!    worker), p50/p99 over 20 reloads that alternate between two backends;
//! 2. old workers and memory of all HAProxy processes over time while idle tunnels stay
//!    open across 10 reloads (one per second), with and without a drain timeout
//!    (`hard-stop-after`). Two shapes: one tunnel opened before the first reload, and a
//!    fresh tunnel before every reload (each generation keeps one alive).
//!
//! Prints tables; asserts nothing about time. HAProxy does the work, so the profile hardly
//! matters: `cargo bench --bench reload` (or `--profile dev` to reuse a debug build).

use std::time::{Duration, Instant};

use marathon_lb::haproxy::{ReloadReason, Retries, Supervisor, SupervisorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RELOADS: usize = 20;
const TUNNEL_RELOADS: usize = 10;
const DRAIN: Duration = Duration::from_secs(3);

fn main() {
    if std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("SKIP: `haproxy` is not on PATH");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        reload_times().await;
        for one_tunnel in [true, false] {
            for drain in [None, Some(DRAIN)] {
                tunnels(drain, one_tunnel).await;
            }
        }
    });
}

/// A temp dir with a TCP proxy config from `front` to a backend port.
struct Bench {
    dir: tempfile::TempDir,
    front: u16,
}

impl Bench {
    fn new() -> Self {
        let front = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            front,
        }
    }

    fn write_config(&self, backend: u16) {
        let text = format!(
            "global\n  stats socket {dir}/stats.sock mode 600 level admin expose-fd listeners\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 86400s\n  \
             timeout server 86400s\n  timeout tunnel 86400s\n\
             listen front\n  bind 127.0.0.1:{front}\n  server b 127.0.0.1:{backend}\n",
            dir = self.dir.path().display(),
            front = self.front,
        );
        std::fs::write(self.dir.path().join("haproxy.cfg"), text).expect("write config");
    }

    async fn start(&self, drain: Option<Duration>) -> Supervisor {
        let mut config =
            SupervisorConfig::new(self.dir.path().join("haproxy.cfg"), self.dir.path());
        config.drain_timeout = drain;
        config.reload_interval = Duration::from_secs(5);
        config.max_reload_retries = Retries::None;
        config.stop_timeout = Duration::from_secs(1);
        Supervisor::start(config).await.expect("start haproxy")
    }

    /// A connection through HAProxy that has exchanged one message, then stays idle.
    async fn tunnel(&self) -> TcpStream {
        let mut conn = TcpStream::connect(("127.0.0.1", self.front))
            .await
            .expect("connect through haproxy");
        conn.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 8];
        let _ = conn.read(&mut buf).await.expect("read");
        conn
    }
}

/// An echo server on 127.0.0.1:0; returns its port.
async fn echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn reload_times() {
    let bench = Bench::new();
    let backends = [echo().await, echo().await];
    bench.write_config(backends[0]);
    let sup = bench.start(Some(DRAIN)).await;
    let mut times = Vec::new();
    for i in 0..RELOADS {
        bench.write_config(backends[(i + 1) % 2]);
        let outcome = sup
            .reload(ReloadReason::ConfigChange)
            .await
            .expect("reload");
        times.push(outcome.elapsed);
    }
    sup.stop().await;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pick = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!("\n## Time per confirmed reload ({RELOADS} reloads, no open connections)\n");
    println!("| min | p50 | p99 | max |\n|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        ms(times[0]),
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(times[times.len() - 1])
    );
}

async fn tunnels(drain: Option<Duration>, one_tunnel: bool) {
    let bench = Bench::new();
    bench.write_config(echo().await);
    let sup = bench.start(drain).await;
    let mut open = vec![bench.tunnel().await];
    println!(
        "\n## {} idle tunnel{}, {TUNNEL_RELOADS} reloads 1 s apart, drain timeout {}\n",
        if one_tunnel { "One" } else { "A fresh" },
        if one_tunnel {
            " opened first"
        } else {
            " before every reload"
        },
        drain.map_or("none".to_owned(), |d| format!("{} s", d.as_secs()))
    );
    println!(
        "| t (s) | event | old workers | haproxy processes | RSS total (MB) | PSS total (MB) |"
    );
    println!("|---|---|---|---|---|---|");
    let started = Instant::now();
    for i in 1..=TUNNEL_RELOADS {
        if !one_tunnel && i > 1 {
            open.push(bench.tunnel().await);
        }
        sup.reload(ReloadReason::ConfigChange)
            .await
            .expect("reload");
        tokio::time::sleep(Duration::from_millis(900)).await;
        sample(&sup, started, &format!("reload {i}")).await;
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sample(&sup, started, "idle").await;
    }
    sup.stop().await;
    drop(open);
}

async fn sample(sup: &Supervisor, started: Instant, event: &str) {
    let list = sup.show_proc().await.expect("show proc");
    let pids: Vec<u32> = std::iter::once(list.master.pid)
        .chain(list.workers.iter().chain(&list.old_workers).map(|w| w.pid))
        .collect();
    let rss: u64 = pids.iter().map(|&p| kb(p, "status", "VmRSS:")).sum();
    let pss: u64 = pids.iter().map(|&p| kb(p, "smaps_rollup", "Pss:")).sum();
    println!(
        "| {:.1} | {event} | {} | {} | {:.1} | {:.1} |",
        started.elapsed().as_secs_f64(),
        list.old_workers.len(),
        pids.len(),
        rss as f64 / 1024.0,
        pss as f64 / 1024.0
    );
}

/// A `kB` field of `/proc/<pid>/<file>`, 0 when unreadable.
fn kb(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
