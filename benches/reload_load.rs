//! Structural reloads under load, and what old workers cost, in managed mode.
//!
//! Part 1: `wrk` through the managed HAProxy (an HTTP-mode app with 2 local tasks) while the
//! fake Marathon makes 100 structural changes (an app added, removed, added, ...), each a
//! reload confirmed through `/metrics`. Three runs: one connection per request
//! (`Connection: close`: errors must be 0), keep-alive, and keep-alive with
//! `option idle-close-on-response` added to the head's `defaults`.
//!
//! Part 2: old workers and memory (sum of `VmRSS`, and of `Pss` from `smaps_rollup`, over the
//! HAProxy processes) sampled every second for 20 s while 10 reloads happen (one every 2 s),
//! with long idle TCP tunnels open (`timeout tunnel 3600s`), under `--drain-timeout 5` and a
//! huge drain timeout: (a) one tunnel opened before the first reload, (b) a new tunnel after
//! every reload (long-lived connections keep arriving).
//!
//! Run: `cargo bench --bench reload_load` (about 2.5 minutes).

#[path = "common/wrk.rs"]
mod wrk;

#[path = "../tests/common/managed.rs"]
mod managed;

use std::process::Command;
use std::time::{Duration, Instant};

use managed::{free_port, App, ManagedLb, Options, TaskServer};
use tokio::net::TcpStream;

const RELOADS: usize = 100;
const MEM_RELOADS: usize = 10;
const MEM_SECONDS: u64 = 20;
const HUGE_DRAIN: u64 = 86_400;

fn main() {
    if !wrk::available() || Command::new("haproxy").arg("-v").output().is_err() {
        println!("SKIP reload_load: needs wrk and haproxy");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(async {
        let ok = under_load().await;
        old_workers().await;
        ok
    });
    drop(runtime);
    if !ok {
        std::process::exit(1);
    }
}

/// Successful reloads so far, every reason.
async fn reload_count(lb: &ManagedLb) -> u64 {
    lb.reloads().await.values().sum()
}

/// Waits (up to 15 s) until `n` reloads are counted.
async fn wait_reloads(lb: &ManagedLb, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while reload_count(lb).await < n {
        assert!(
            Instant::now() < deadline,
            "reload {n} not seen; log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Run {
    name: &'static str,
    result: wrk::WrkResult,
    reloads: u64,
    took: Duration,
    old_workers_after: usize,
}

async fn under_load() -> bool {
    let tasks = [TaskServer::start("a").await, TaskServer::start("b").await];
    let extra_task = TaskServer::start("extra").await;
    let mut runs = Vec::new();
    for (name, header, connections, extra_defaults) in [
        (
            "Connection: close, -c8",
            Some("Connection: close"),
            8,
            vec![],
        ),
        ("keep-alive, -c16", None, 16, vec![]),
        (
            "keep-alive, -c16, idle-close-on-response",
            None,
            16,
            vec!["option idle-close-on-response".to_owned()],
        ),
    ] {
        let port = free_port();
        let web = App::new("/web", port, tasks.iter().map(TaskServer::task).collect())
            .label("HAPROXY_0_MODE", "http");
        let extra = App::new("/extra", free_port(), vec![extra_task.task()])
            .label("HAPROXY_0_MODE", "http");
        let options = Options {
            log_level: "warning".into(),
            extra_defaults,
            ..Options::default()
        };
        let lb = ManagedLb::start(options, &[&web]).await;
        lb.wait_for_answers(port, &["a", "b"], Duration::from_secs(10))
            .await;
        let base = reload_count(&lb).await;
        let load = wrk::Wrk::start(
            &format!("http://127.0.0.1:{port}/"),
            1,
            connections,
            300,
            header,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        for k in 0..RELOADS {
            if k % 2 == 0 {
                lb.set_apps(&[&web, &extra]);
            } else {
                lb.set_apps(&[&web]);
            }
            wait_reloads(&lb, base + k as u64 + 1).await;
        }
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let result = load.finish();
        let old_workers_after = lb.show_proc().await.map_or(0, |p| p.old_workers.len());
        runs.push(Run {
            name,
            result,
            reloads: reload_count(&lb).await - base,
            took,
            old_workers_after,
        });
    }

    println!();
    println!("reload_load part 1: wrk -t1 through managed HAProxy during {RELOADS} structural reloads (HTTP-mode app, 2 tasks)");
    println!();
    println!("| run | requests | req/s | socket errors (connect/read/write/timeout) | non-2xx | reloads | reload time | old workers after |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {:.0} | {} ({}/{}/{}/{}) | {} | {} | {:.1} s ({:.0} ms each) | {} |",
            r.name,
            r.result.requests,
            r.result.rps(),
            r.result.errors(),
            r.result.connect,
            r.result.read,
            r.result.write,
            r.result.timeout,
            r.result.non_2xx,
            r.reloads,
            r.took.as_secs_f64(),
            r.took.as_secs_f64() * 1e3 / r.reloads.max(1) as f64,
            r.old_workers_after
        );
    }
    let close = &runs[0].result;
    let ok = close.errors() == 0 && close.non_2xx == 0 && close.requests > 0;
    if !ok {
        println!(
            "\nFAIL: one connection per request must see no error\n{}",
            close.raw
        );
    }
    ok
}

/// One sample: seconds, old workers, HAProxy processes, RSS and PSS (kB).
type Sample = (u64, usize, usize, u64, Option<u64>);

async fn old_workers() {
    let backend = TaskServer::start("tunnel").await;
    let extra_task = TaskServer::start("extra").await;
    for per_reload in [false, true] {
        let mut series = Vec::new();
        for drain in [5, HUGE_DRAIN] {
            series.push(sample_run(drain, per_reload, &backend, &extra_task).await);
        }
        println!();
        println!(
            "reload_load part 2{}: {MEM_RELOADS} reloads (one every 2 s) with {}; HAProxy master + workers",
            if per_reload { "b" } else { "a" },
            if per_reload {
                "a new idle TCP tunnel opened after every reload"
            } else {
                "one idle TCP tunnel opened before the first reload"
            }
        );
        println!();
        println!("| t (s) | old workers, drain 5 s | RSS MB | PSS MB | old workers, drain {HUGE_DRAIN} s | RSS MB | PSS MB |");
        println!("|---|---|---|---|---|---|---|");
        let mb = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
        let pss = |p: Option<u64>| p.map_or("n/a".to_owned(), mb);
        for (a, b) in series[0].iter().zip(&series[1]) {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                a.0,
                a.1,
                mb(a.3),
                pss(a.4),
                b.1,
                mb(b.3),
                pss(b.4)
            );
        }
    }
}

async fn sample_run(
    drain: u64,
    per_reload: bool,
    backend: &TaskServer,
    extra_task: &TaskServer,
) -> Vec<Sample> {
    let port = free_port();
    // TCP mode (no vhost, no HTTP check): an open connection is a tunnel.
    let tunnel = App::new("/tunnel", port, vec![backend.task()]);
    let extra = App::new("/extra", free_port(), vec![extra_task.task()]);
    let options = Options {
        log_level: "warning".into(),
        drain_timeout: Some(drain),
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&tunnel]).await;
    let mut tunnels: Vec<TcpStream> = Vec::new();
    tunnels.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let base = reload_count(&lb).await;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut reloads = 0;
    for second in 0..=MEM_SECONDS {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        if second % 2 == 1 && reloads < MEM_RELOADS {
            if reloads % 2 == 0 {
                lb.set_apps(&[&tunnel, &extra]);
            } else {
                lb.set_apps(&[&tunnel]);
            }
            reloads += 1;
            wait_reloads(&lb, base + reloads as u64).await;
            if per_reload {
                tunnels.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
            }
        }
        let pids = lb.haproxy_pids();
        let old = lb.show_proc().await.map_or(0, |p| p.old_workers.len());
        let (rss, pss) = managed::memory_kb(&pids);
        samples.push((second, old, pids.len(), rss, pss));
    }
    drop(tunnels);
    samples
}
