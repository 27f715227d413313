//! Task churn under load at 1000 apps, in managed mode: no reload, no failed request.
//!
//! 999 background apps from `gen-apps --apps 1000 --seed 1` (their tasks moved to
//! `127.0.<i>.2`, where nothing listens, their health checks dropped so HAProxy does not probe
//! them, every app in group `external`) plus one target app whose 3 tasks are real local
//! servers. `wrk -c16` (keep-alive) loads the target app's frontend while the fake Marathon
//! replays task-churn events on it, one every 120 ms: each replaces the oldest of its 8 tasks
//! by a fresh server. Reports reloads (from the admin `/metrics`: must stay at `initial`),
//! wrk's failed and non-2xx requests (must be 0), and per event the time from pushing it to
//! the first request the new task answers (the task records it). Run:
//! `cargo bench --bench churn` (`CHURN_EVENTS=N` to change the 1000 events).

#[path = "common/wrk.rs"]
mod wrk;

#[path = "../tests/common/managed.rs"]
mod managed;

use std::collections::VecDeque;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use managed::{free_port, App, ManagedLb, Options, TaskServer};
use serde_json::Value;

const BACKGROUND: usize = 999;
const TASKS: usize = 8;
/// Time between two churn events.
const INTERVAL: Duration = Duration::from_millis(120);

fn main() {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    if !gen.exists() || !wrk::available() || Command::new("haproxy").arg("-v").output().is_err() {
        println!("SKIP churn: needs {}, wrk and haproxy", gen.display());
        return;
    }
    let events: usize = std::env::var("CHURN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let out = Command::new(&gen)
        .args(["--apps", "1000", "--seed", "1"])
        .output()
        .expect("run gen-apps");
    let background = background_apps(&String::from_utf8(out.stdout).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(run(background, events));
    // Everything started (marathon-lb, HAProxy, wrk, the tasks) is stopped by now.
    drop(runtime);
    if !ok {
        std::process::exit(1);
    }
}

/// The first 999 generated apps, made harmless: tasks on `127.0.<i>.2` (nothing listens: a
/// request would be refused at once), no health checks, all in group `external`.
fn background_apps(body: &str) -> Vec<Value> {
    let mut doc: Value = serde_json::from_str(body).unwrap();
    let apps = doc["apps"].as_array_mut().unwrap();
    apps.truncate(BACKGROUND);
    for app in apps.iter_mut() {
        app.as_object_mut().unwrap().remove("healthChecks");
        let labels = app["labels"].as_object_mut().unwrap();
        labels.insert("HAPROXY_GROUP".into(), "external".into());
        labels.remove("HAPROXY_1_GROUP");
        for (i, task) in app["tasks"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let ip = format!("127.0.{}.2", i % 250 + 1);
            task["host"] = ip.clone().into();
            if let Some(addrs) = task["ipAddresses"].as_array_mut() {
                for addr in addrs {
                    addr["ipAddress"] = ip.clone().into();
                }
            }
            task.as_object_mut().unwrap().remove("healthCheckResults");
        }
    }
    apps.clone()
}

fn body(background: &[Value], target: &App) -> String {
    let mut apps = background.to_vec();
    apps.push(target.json());
    serde_json::json!({ "apps": apps }).to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn run(background: Vec<Value>, events: usize) -> bool {
    let port = free_port();
    let mut live: VecDeque<TaskServer> = VecDeque::new();
    for i in 0..TASKS {
        live.push_back(TaskServer::start(&format!("seed{i}")).await);
    }
    let target = |live: &VecDeque<TaskServer>| {
        // HTTP mode: each request is balanced on its own, so a new task gets traffic at once
        // (in TCP mode wrk's connections would stay on their first servers).
        App::new(
            "/bench/target",
            port,
            live.iter().map(TaskServer::task).collect(),
        )
        .label("HAPROXY_0_MODE", "http")
    };
    let started = Instant::now();
    let options = Options {
        log_level: "info".into(),
        start_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    let lb = ManagedLb::start_with_body(options, body(&background, &target(&live))).await;
    let seeds: Vec<String> = live.iter().map(|t| t.name.clone()).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    lb.wait_for_answers(port, &seeds, Duration::from_secs(120))
        .await;
    let backend = target(&live).backend();
    let backends = lb.config().matches("\nbackend ").count();
    let up = started.elapsed();
    let reloads_before = lb.reloads().await;
    let api = marathon_lb::haproxy::runtime::RuntimeApi::new(lb.stats_socket(), Duration::ZERO);
    let running_ports = || async {
        let state = api
            .command(&format!("show servers state {backend}"))
            .await
            .unwrap_or_default();
        state
            .lines()
            .filter_map(|l| l.split_whitespace().nth(18)?.parse::<u16>().ok())
            .collect::<Vec<u16>>()
    };

    let load = wrk::Wrk::start(&format!("http://127.0.0.1:{port}/"), 1, 16, 900, None);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Events at a fixed pace; marathon-lb coalesces those that arrive during a pass. A task
    // lives for TASKS events, so it is normally applied before it is replaced.
    let mut pushed: Vec<(String, Instant)> = Vec::with_capacity(events);
    let mut born: Vec<TaskServer> = Vec::new();
    let mut retired: VecDeque<(TaskServer, Instant)> = VecDeque::new();
    let churn_started = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until((churn_started + INTERVAL * i as u32).into()).await;
        let fresh = TaskServer::start(&format!("t{i}")).await;
        let old = live.pop_front().unwrap();
        live.push_back(fresh);
        lb.set_body(body(&background, &target(&live)));
        pushed.push((format!("t{i}"), Instant::now()));
        retired.push_back((old, Instant::now()));
        // A retired task stops once HAProxy no longer has it (and no pass still in flight
        // could add it back), as a killed Marathon task would.
        if retired
            .front()
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(3))
        {
            let running = running_ports().await;
            while let Some((task, at)) = retired.front() {
                if at.elapsed() <= Duration::from_secs(3) || running.contains(&task.port) {
                    break;
                }
                let (task, _) = retired.pop_front().unwrap();
                if task.name.starts_with('t') {
                    born.push(task);
                } // seeds simply stop
            }
        }
    }
    let churn_took = churn_started.elapsed();
    // The last tasks get their first request (or 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.iter().any(|t| t.first_hit().is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = load.finish();
    let reloads_after = lb.reloads().await;
    let metrics = lb.metrics().await;
    let runtime_ops = |op: &str| {
        managed::sample(
            &metrics,
            &format!("marathon_lb_runtime_updates_total{{op=\"{op}\",result=\"ok\"}}"),
        )
        .unwrap_or(0.0)
    };
    let reload_total: u64 = reloads_after.values().sum();
    let churn_reloads = reload_total - reloads_before.values().sum::<u64>();

    // Time from the push of the event that created a task to its first request.
    let first_hits: std::collections::HashMap<String, Option<Instant>> = born
        .iter()
        .chain(retired.iter().map(|(t, _)| t))
        .chain(live.iter())
        .map(|t| (t.name.clone(), t.first_hit()))
        .collect();
    let mut latencies = Vec::new();
    let mut superseded = 0;
    for (name, at) in &pushed {
        match first_hits.get(name).copied().flatten() {
            Some(hit) => latencies.push(hit.saturating_duration_since(*at)),
            None => superseded += 1,
        }
    }
    latencies.sort();
    println!();
    println!(
        "churn: {backends} backends ({BACKGROUND} generated apps + /bench/target with {TASKS} \
         tasks), up in {:.1} s; {events} task-churn events, one every {} ms, in {:.1} s",
        up.as_secs_f64(),
        INTERVAL.as_millis(),
        churn_took.as_secs_f64()
    );
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| reloads during churn (must be 0) | {churn_reloads} (total {reloads_after:?}) |");
    println!(
        "| Runtime API ops | add {} / del {} |",
        runtime_ops("add"),
        runtime_ops("del")
    );
    println!(
        "| wrk -t1 -c16 keep-alive requests | {} ({:.0} req/s) |",
        result.requests,
        result.rps()
    );
    println!(
        "| failed requests (socket errors, must be 0) | {} (connect {}, read {}, write {}, timeout {}) |",
        result.errors(),
        result.connect,
        result.read,
        result.write,
        result.timeout
    );
    println!("| non-2xx responses (must be 0) | {} |", result.non_2xx);
    println!(
        "| wrk latency p50 / p99 | {} / {} |",
        result.p50, result.p99
    );
    println!(
        "| event -> first request on the new task, p50 / p99 / max ({} tasks) | {} / {} / {} |",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("| tasks replaced before any pass served them (coalesced events) | {superseded} |");
    // Where a pass spends its time, from marathon-lb's own "pass done" log lines.
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(&format!("{name}=")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let log = lb.log();
    let passes: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("pass done") && l.contains("Runtime"))
        .filter_map(|l| Some((field(l, "fetch_ms")?, field(l, "total_ms")?)))
        .collect();
    let quantiles = |mut v: Vec<u64>| {
        v.sort_unstable();
        let at = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
        };
        format!(
            "{:?} / {:?} ms",
            at(0.5).unwrap_or(0),
            at(0.99).unwrap_or(0)
        )
    };
    println!(
        "| runtime passes: fetch p50 / p99, whole pass p50 / p99 ({} passes) | {}, {} |",
        passes.len(),
        quantiles(passes.iter().map(|p| p.0).collect()),
        quantiles(passes.iter().map(|p| p.1).collect())
    );
    let applies: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("applied server changes"))
        .filter_map(|l| Some((field(l, "runtime_ms")?, field(l, "write_ms")?)))
        .collect();
    println!(
        "| of which Runtime API ops (incl. drain) p50 / p99, config write p50 / p99 | {}, {} |",
        quantiles(applies.iter().map(|p| p.0).collect()),
        quantiles(applies.iter().map(|p| p.1).collect())
    );
    if result.requests == 0 {
        println!("\nwrk output:\n{}", result.raw);
    }
    if churn_reloads > 0 {
        // Expected only for a server-id collision (see tests/managed.rs,
        // a_new_task_whose_server_id_collides_needs_no_reload).
        println!("\nreloads during churn (expected 0), as logged:");
        for line in lb.log().lines().filter(|l| {
            l.contains("runtime update failed")
                || (l.contains("reloading HAProxy") && !l.contains("reason=initial"))
        }) {
            println!("  {}", line.split("reason=").nth(1).unwrap_or(line));
        }
    }
    let ok = result.errors() == 0 && result.non_2xx == 0 && result.requests > 0;
    if !ok {
        println!("\nFAIL: churn must cause no failed request\n{}", result.raw);
    }
    ok
}
