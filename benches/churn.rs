//! Task churn under load in managed mode: no reload, no failed request, no whole-cluster fetch.
//!
//! `CHURN_APPS - 1` background apps from `gen-apps --apps CHURN_APPS --tasks-per-app
//! CHURN_TASKS --seed 1` (their tasks moved to `127.0.<i>.2`, where nothing listens, their
//! health checks dropped so HAProxy does not probe them, every app in group `external`) plus one
//! target app whose tasks are real local servers (8 of them, or `CHURN_TASKS` when set).
//! `wrk -c16` (keep-alive) loads the target app's frontend while the fake Marathon replaces the
//! oldest task of the target by a fresh server every 120 ms, `CHURN_EVENTS` times: each step
//! sends Marathon's real events for exactly that change (`status_update_event` `TASK_KILLED`
//! for the old task, `TASK_RUNNING` for the new one), so marathon-lb follows it incrementally.
//! Reports reloads (from the admin `/metrics`: must stay at `initial`), wrk's failed and
//! non-2xx requests (must be 0), per event the time from sending it to the first request the
//! new task answers (the task records it), Marathon's load during the churn (whole-cluster
//! fetches must stay at <= 1 per 1000 events; `--resync-interval` is an hour so the timer does
//! not count), and the RSS of marathon-lb and HAProxy after start-up and after the churn.
//! Exits non-zero when a must-hold check fails.
//!
//! Run: `cargo build --release && cargo bench --bench churn` (1000 apps x 3 tasks, 1000
//! events); issue 15's case: `CHURN_APPS=10000 CHURN_TASKS=10 cargo bench --bench churn`
//! (`CHURN_LOG=<file>` keeps marathon-lb's log).

#[path = "common/wrk.rs"]
mod wrk;

#[path = "../tests/common/managed.rs"]
mod managed;

#[path = "common/churn_cluster.rs"]
mod churn_cluster;
#[path = "common/churn_report.rs"]
mod churn_report;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use churn_cluster::Listing;
use churn_report::{Cpu, Load, Memory, Outcome};
use managed::{free_port, App, ManagedLb, Options, TaskServer};
use marathon_lb_testkit::fake_marathon::Endpoint;

/// Target tasks unless `CHURN_TASKS` is set.
const TARGET_TASKS: usize = 8;
/// Time between two churn steps.
const INTERVAL: Duration = Duration::from_millis(120);
/// A retired task stops this long after it was replaced, once HAProxy no longer has it.
const RETIRE_AFTER: Duration = Duration::from_secs(3);

fn env(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The run's sizes, from the environment.
struct Sizes {
    apps: usize,
    tasks: usize,
    target_tasks: usize,
    events: usize,
}

fn main() {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    if !gen.exists() || !wrk::available() || Command::new("haproxy").arg("-v").output().is_err() {
        println!("SKIP churn: needs {}, wrk and haproxy", gen.display());
        return;
    }
    let sizes = Sizes {
        apps: env("CHURN_APPS").unwrap_or(1000).max(1),
        tasks: env("CHURN_TASKS").unwrap_or(3),
        target_tasks: env("CHURN_TASKS").unwrap_or(TARGET_TASKS).max(2),
        events: env("CHURN_EVENTS").unwrap_or(1000),
    };
    let generated = Instant::now();
    let listing = Listing::generate(&gen, sizes.apps, sizes.tasks);
    println!(
        "generated {} background apps with {} tasks in {:.1} s",
        listing.background,
        listing.background_tasks,
        generated.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(run(listing, sizes));
    // Everything started (marathon-lb, HAProxy, wrk, the tasks) is stopped by now.
    drop(runtime);
    if !ok {
        std::process::exit(1);
    }
}

/// The target app with these tasks. HTTP mode: each request is balanced on its own, so a new
/// task gets traffic at once (in TCP mode wrk's connections would stay on their first servers).
fn target(port: u16, live: &VecDeque<TaskServer>) -> App {
    let tasks = live.iter().map(TaskServer::task).collect();
    App::new("/bench/target", port, tasks).label("HAPROXY_0_MODE", "http")
}

/// `{"apps":[<the target>]}`: the part of the listing a step changes.
fn target_body(port: u16, live: &VecDeque<TaskServer>) -> String {
    managed::apps_body(&[&target(port, live)])
}

/// marathon-lb serving the listing with the target's first tasks, up.
struct Started {
    lb: ManagedLb,
    port: u16,
    live: VecDeque<TaskServer>,
    memory: Memory,
}

/// Starts the target's tasks and marathon-lb (with HAProxy), waits until the target is
/// served, and prints the set-up.
async fn start(listing: &Listing, sizes: &Sizes) -> Started {
    let port = free_port();
    let mut live: VecDeque<TaskServer> = VecDeque::new();
    for i in 0..sizes.target_tasks {
        live.push_back(TaskServer::start(&format!("seed{i}")).await);
    }
    let started = Instant::now();
    let options = Options {
        log_level: "info".into(),
        start_timeout: Duration::from_secs(900),
        extra_args: vec!["--resync-interval".into(), "3600".into()],
        ..Options::default()
    };
    let body = listing.body(&target(port, &live).json());
    let lb = ManagedLb::start_with_body(options, body.clone()).await;
    let seeds: Vec<String> = live.iter().map(|t| t.name.clone()).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    lb.wait_for_answers(port, &seeds, Duration::from_secs(900))
        .await;
    let up = started.elapsed();
    let config = lb.config();
    let backends = config.matches("\nbackend ").count();
    let servers = config.matches("\n  server ").count();
    // The same body with events: none go out, and the fake indexes the listing for one-app
    // requests. Timed, as the cost a step would have if the whole listing were diffed.
    let diffed = Instant::now();
    let none = lb.fake.set_apps_with_events(body);
    let diff_took = diffed.elapsed();
    assert_eq!(none, 0, "the same listing must send no events");
    let memory = Memory::sample(lb.pid(), &lb.haproxy_pids());
    println!(
        "\nchurn: {backends} backends, {servers} servers ({} generated apps x {} tasks + \
         /bench/target with {} live tasks), up in {:.1} s; diffing the whole listing would take \
         {:.0} ms a step",
        listing.background,
        sizes.tasks,
        sizes.target_tasks,
        up.as_secs_f64(),
        diff_took.as_secs_f64() * 1e3
    );
    Started {
        lb,
        port,
        live,
        memory,
    }
}

async fn run(listing: Listing, sizes: Sizes) -> bool {
    let Started {
        lb,
        port,
        live,
        memory: memory_start,
    } = start(&listing, &sizes).await;
    let load = wrk::Wrk::start(&format!("http://127.0.0.1:{port}/"), 1, 16, 900, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reloads_before: u64 = lb.reloads().await.values().sum();
    let served_before = (
        lb.fake.served(Endpoint::Apps),
        lb.fake.served(Endpoint::App),
    );
    let mut churn = Churn::new(&lb, &listing, port, live);
    let cpu_start = Cpu::sample(lb.pid(), &lb.haproxy_pids());
    let churn_started = Instant::now();
    for i in 0..sizes.events {
        tokio::time::sleep_until((churn_started + INTERVAL * i as u32).into()).await;
        churn.step(i).await;
    }
    let churn_took = churn_started.elapsed();
    let cpu = cpu_start.row(&Cpu::sample(lb.pid(), &lb.haproxy_pids()));
    println!(
        "{} task-churn steps, one every {} ms, in {:.1} s",
        sizes.events,
        INTERVAL.as_millis(),
        churn_took.as_secs_f64()
    );
    churn.wait_for_last().await;
    let wrk = load.finish();
    let served = (
        lb.fake.served(Endpoint::Apps),
        lb.fake.served(Endpoint::App),
    );
    let load = Load {
        events: churn.sent,
        full: (
            served.0.requests - served_before.0.requests,
            served.0.bytes - served_before.0.bytes,
        ),
        one: (
            served.1.requests - served_before.1.requests,
            served.1.bytes - served_before.1.bytes,
        ),
    };
    let memory_end = Memory::sample(lb.pid(), &lb.haproxy_pids());
    let reloads_after = lb.reloads().await;
    let churn_reloads = reloads_after.values().sum::<u64>() - reloads_before;
    let (latencies, superseded) = churn.latencies();
    let outcome = Outcome {
        reloads: (churn_reloads, reloads_after),
        runtime_ops: (
            managed::runtime_ok(&lb, "add").await,
            managed::runtime_ok(&lb, "del").await,
        ),
        wrk,
        latencies,
        superseded,
        load,
        memory: (memory_start, memory_end),
        cpu,
        log: lb.log(),
    };
    finish(&outcome)
}

/// Prints the table and what explains a failure (marathon-lb's log is copied to `CHURN_LOG`
/// when set); returns whether every check held.
fn finish(outcome: &Outcome) -> bool {
    println!();
    let ok = outcome.print();
    if let Some(path) = std::env::var_os("CHURN_LOG") {
        match std::fs::write(&path, &outcome.log) {
            Ok(()) => println!("\nmarathon-lb's log: {}", Path::new(&path).display()),
            Err(e) => println!("\ncannot write {}: {e}", Path::new(&path).display()),
        }
    }
    if outcome.wrk.requests == 0 {
        println!("\nwrk output:\n{}", outcome.wrk.raw);
    }
    if outcome.reloads.0 > 0 {
        // Expected only for a server-id collision (see tests/managed.rs,
        // a_new_task_whose_server_id_collides_needs_no_reload).
        println!("\nreloads during churn (expected 0), as logged:");
        for line in outcome.log.lines().filter(|l| {
            l.contains("runtime update failed")
                || (l.contains("reloading HAProxy") && !l.contains("reason=initial"))
        }) {
            println!("  {}", line.split("reason=").nth(1).unwrap_or(line));
        }
    }
    if outcome.load.full.0 > 0 {
        println!("\nwhole-cluster fetches during churn, as logged:");
        for line in outcome
            .log
            .lines()
            .filter(|l| l.contains("fetching all apps"))
        {
            println!("  {line}");
        }
    }
    if !ok {
        println!(
            "\nFAIL: churn must cause no reload, no failed request and no whole-cluster fetch\n{}",
            outcome.wrk.raw
        );
    }
    ok
}

/// The churn's state: the target's live tasks, and every task started or retired so far.
struct Churn<'a> {
    lb: &'a ManagedLb,
    listing: &'a Listing,
    port: u16,
    live: VecDeque<TaskServer>,
    /// Each step's new task and when its events went out.
    pushed: Vec<(String, Instant)>,
    /// Tasks stopped after they were replaced.
    stopped: Vec<TaskServer>,
    /// Tasks replaced, still running until HAProxy no longer has them.
    retired: VecDeque<(TaskServer, Instant)>,
    /// Events sent.
    sent: usize,
    api: marathon_lb::haproxy::runtime::RuntimeApi,
}

impl<'a> Churn<'a> {
    fn new(lb: &'a ManagedLb, listing: &'a Listing, port: u16, live: VecDeque<TaskServer>) -> Self {
        Churn {
            lb,
            listing,
            port,
            live,
            pushed: Vec::new(),
            stopped: Vec::new(),
            retired: VecDeque::new(),
            sent: 0,
            api: marathon_lb::haproxy::runtime::RuntimeApi::new(lb.stats_socket(), Duration::ZERO),
        }
    }

    /// Replaces the oldest task by a new server: the listing changes and Marathon's events for
    /// that change go out. Events at a fixed pace; marathon-lb coalesces those that arrive
    /// during a pass. A task lives for as many steps as the target has tasks, so it is
    /// normally served before it is replaced.
    async fn step(&mut self, i: usize) {
        let name = format!("t{i}");
        let fresh = TaskServer::start(&name).await;
        let before = target_body(self.port, &self.live);
        let old = self.live.pop_front().unwrap();
        self.live.push_back(fresh);
        let after = target_body(self.port, &self.live);
        let body = self.listing.body(&target(self.port, &self.live).json());
        let sent = self
            .lb
            .fake
            .change_apps_with_events(body, before.as_bytes(), after.as_bytes());
        self.pushed.push((name, Instant::now()));
        assert_eq!(sent, 2, "a step is one task killed and one started");
        self.sent += sent;
        self.retired.push_back((old, Instant::now()));
        self.stop_retired().await;
    }

    /// Stops the retired tasks HAProxy no longer has (and no pass still in flight could add
    /// back), as a killed Marathon task would stop.
    async fn stop_retired(&mut self) {
        let due = |at: &Instant| at.elapsed() > RETIRE_AFTER;
        if !self.retired.front().is_some_and(|(_, at)| due(at)) {
            return;
        }
        let running = self.running_ports().await;
        while let Some((task, at)) = self.retired.front() {
            if !due(at) || running.contains(&task.port) {
                break;
            }
            let (task, _) = self.retired.pop_front().unwrap();
            if task.name.starts_with('t') {
                self.stopped.push(task);
            } // seeds simply stop
        }
    }

    /// The ports of the target's servers in HAProxy now.
    async fn running_ports(&self) -> Vec<u16> {
        let backend = target(self.port, &self.live).backend();
        let state = self
            .api
            .command(&format!("show servers state {backend}"))
            .await
            .unwrap_or_default();
        state
            .lines()
            .filter_map(|l| l.split_whitespace().nth(18)?.parse::<u16>().ok())
            .collect()
    }

    /// Waits (10 s at most) until the last tasks got their first request.
    async fn wait_for_last(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.live.iter().any(|t| t.first_hit().is_none()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Per step, the time from its events to the new task's first request, sorted; and how
    /// many new tasks never got one (replaced before a pass served them).
    fn latencies(&self) -> (Vec<Duration>, usize) {
        let first_hits: HashMap<&str, Option<Instant>> = self
            .stopped
            .iter()
            .chain(self.retired.iter().map(|(t, _)| t))
            .chain(self.live.iter())
            .map(|t| (t.name.as_str(), t.first_hit()))
            .collect();
        let mut latencies = Vec::new();
        let mut superseded = 0;
        for (name, at) in &self.pushed {
            match first_hits.get(name.as_str()).copied().flatten() {
                Some(hit) => latencies.push(hit.saturating_duration_since(*at)),
                None => superseded += 1,
            }
        }
        latencies.sort();
        (latencies, superseded)
    }
}
