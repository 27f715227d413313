//! The incremental live model at scale: event -> config written, per event kind, and
//! Marathon's load per marathon-lb instance.
//!
//! The fake Marathon holds `gen-apps --apps N --tasks-per-app 3 --seed 1` (N = 10,000 unless
//! `LIVE_APPS` says otherwise); the real release binary follows it with `--sse`. Each step
//! changes the fake's body and sends Marathon's events for exactly that change
//! (`FakeMarathon::set_apps_with_events`): task steps like `gen-apps --churn` (one task killed,
//! one started on a new port) and, every eleventh step, an app-definition change (a label and a
//! new version).
//! Latency is from the events going out to `haproxy.cfg` on disk being byte-identical to the
//! library's full render of the new body. Prints p50/p90/p99/max per kind, whole-cluster and
//! one-app fetches per event, and bytes fetched per event.
//! Run: `cargo build --release && cargo bench --bench live_incremental` (`LIVE_STEPS` task
//! steps, default 200; the resync timer is set to an hour so only events count).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use marathon_lb::config::Cli;
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;
use marathon_lb_testkit::fake_marathon::{Endpoint, FakeMarathon, Options};
use serde_json::Value;

/// Task steps unless `LIVE_STEPS` says otherwise.
const TASK_STEPS: usize = 200;
const DEFINITION_EVERY: usize = 10;

fn main() {
    let apps: usize = std::env::var("LIVE_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    if !gen.exists() {
        println!("SKIP: {} not found", gen.display());
        return;
    }
    let out = Command::new(&gen)
        .args([
            "--apps",
            &apps.to_string(),
            "--tasks-per-app",
            "3",
            "--seed",
            "1",
        ])
        .output()
        .expect("run gen-apps");
    let base = String::from_utf8(out.stdout).unwrap();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/marathon-lb");
    assert!(bin.exists(), "build the release binary first");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure(&bin, &base, apps));
}

/// A task change of an app of `body` (one task killed, one started on a new port), as
/// `gen-apps --churn` makes them: the churn stream itself would hold 27.7 MB per step.
fn task_change(value: &mut Value, n: usize) -> String {
    let apps = value["apps"].as_array_mut().unwrap();
    let len = apps.len();
    let app = &mut apps[(n * 104_729) % len];
    if let Some(tasks) = app["tasks"].as_array_mut().filter(|t| !t.is_empty()) {
        let mut task = tasks.remove(0);
        task["id"] = format!("churn.{n}").into();
        if let Some(ports) = task["ports"].as_array_mut() {
            for port in ports.iter_mut() {
                *port = (40_000 + n).into();
            }
        }
        tasks.push(task);
    }
    value.to_string()
}

/// A definition change of the `n`th app of `body`: a balance label and a new version.
fn definition_change(value: &mut Value, n: usize) -> String {
    let apps = value["apps"].as_array_mut().unwrap();
    let len = apps.len();
    let app = &mut apps[(n * 7919) % len];
    let balance = if n.is_multiple_of(2) {
        "leastconn"
    } else {
        "source"
    };
    app["labels"]["HAPROXY_0_BALANCE"] = balance.into();
    app["version"] = format!("2030-01-01T00:00:{:02}.000Z", n % 60).into();
    value.to_string()
}

async fn measure(bin: &Path, base: &str, apps: usize) {
    let fake = FakeMarathon::start(Options::default()).await.unwrap();
    fake.set_apps(base.to_owned());
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("haproxy.cfg");
    let args = [
        "--group",
        "*",
        "--skip-validation",
        "--resync-interval",
        "3600",
        "--archive-versions",
        "0",
        "--command",
        "true",
        "--haproxy-config",
        config_path.to_str().unwrap(),
    ];
    let cli = Cli::try_parse_from(std::iter::once("marathon-lb").chain(args)).unwrap();
    let config = Arc::new(cli.validate(|_| None).unwrap());
    let templates = Templates::builtin();
    let expected = |body: &str| {
        run::render_body(
            body.as_bytes(),
            "bench",
            &config,
            &templates,
            &mut Memory::default(),
        )
        .unwrap()
        .config
    };
    let mut child = Command::new(bin)
        .current_dir(dir.path())
        .args(["--marathon", &fake.url(), "--sse", "--log-level", "error"])
        .args(args)
        .stderr(match std::env::var_os("LIVE_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    wait_for(&config_path, &expected(base), Duration::from_secs(60))
        .await
        .expect("first config");
    fake.wait_for_subscribers(1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (apps_before, app_before) = (fake.served(Endpoint::Apps), fake.served(Endpoint::App));
    let (mut task, mut definition) = (Vec::new(), Vec::new());
    let (mut task_events, mut definition_events) = (0, 0);
    let mut value: Value = serde_json::from_str(base).unwrap();
    let mut previous = expected(base);
    let task_steps: usize = std::env::var("LIVE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TASK_STEPS);
    let steps = task_steps + task_steps / DEFINITION_EVERY;
    for i in 1..=steps {
        let is_definition = i.is_multiple_of(DEFINITION_EVERY + 1);
        let body = match is_definition {
            true => definition_change(&mut value, i),
            false => task_change(&mut value, i),
        };
        let want = expected(&body);
        // Compared before the events go out: the fake's one worker sends them, and a 10 MB
        // compare on it held back the step's later events by up to 3 ms.
        let unchanged = want == previous;
        // The fake diffs the bodies before it sends the events: the clock starts when they are out.
        let sent = fake.set_apps_with_events(body);
        let start = Instant::now();
        if unchanged {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue; // nothing to observe on disk for this step
        }
        let written = wait_for(&config_path, &want, Duration::from_secs(30))
            .await
            .expect("config for step");
        let took = written - start;
        previous = want;
        match is_definition {
            true => (definition.push(took), definition_events += sent),
            false => (task.push(took), task_events += sent),
        };
        tokio::time::sleep(Duration::from_millis(50)).await; // separate bursts
    }
    let _ = child.kill();
    let _ = child.wait();
    let full = fake.served(Endpoint::Apps).requests - apps_before.requests;
    let one = fake.served(Endpoint::App);
    let (one_requests, one_bytes) = (
        one.requests - app_before.requests,
        one.bytes - app_before.bytes,
    );
    let full_bytes = fake.served(Endpoint::Apps).bytes - apps_before.bytes;
    let events = (task_events + definition_events) as f64;
    println!(
        "live mode, incremental model, {apps} apps x 3 tasks, release binary, --skip-validation"
    );
    println!(
        "| kind | changes | events | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    row("task (churn step)", &mut task, task_events);
    row("app definition", &mut definition, definition_events);
    println!("\n| Marathon load | total | per event |\n|---|---:|---:|");
    println!(
        "| `GET /v2/apps` (whole cluster) | {full} ({:.1} MB) | {:.3} |",
        full_bytes as f64 / 1e6,
        full as f64 / events
    );
    println!(
        "| `GET /v2/apps/{{id}}` (one app) | {one_requests} | {:.2} |",
        one_requests as f64 / events
    );
    println!(
        "| bytes fetched | {:.1} KB | {:.1} KB |",
        (one_bytes + full_bytes) as f64 / 1e3,
        (one_bytes + full_bytes) as f64 / 1e3 / events
    );
    println!(
        "| full fetches per 1000 task events | | {:.2} |",
        full as f64 * 1000.0 / task_events.max(1) as f64
    );
}

fn row(kind: &str, latencies: &mut [Duration], events: usize) {
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| {kind} | {} | {events} | {} | {} | {} | {} |",
        latencies.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
}

/// Waits until `path` holds `want` and returns when it first saw the file that holds it. The
/// config is replaced by rename, so a cheap `stat` every 0.5 ms tells when to read it (reading
/// 10 MB that often would take a core from the binary); the time is that of the `stat`, before
/// the bench reads and compares 10 MB. It polls on a blocking thread: a tokio timer would
/// round 0.5 ms up to 1 ms, and the runtime's one worker serves the fake Marathon.
async fn wait_for(path: &Path, want: &Arc<String>, limit: Duration) -> Result<Instant, String> {
    let (path, want) = (path.to_owned(), Arc::clone(want));
    tokio::task::spawn_blocking(move || poll_for(&path, &want, limit))
        .await
        .unwrap()
}

fn poll_for(path: &Path, want: &str, limit: Duration) -> Result<Instant, String> {
    use std::os::unix::fs::MetadataExt;
    let deadline = Instant::now() + limit;
    let mut seen = None;
    loop {
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.mtime_nsec(), m.len()));
        if stamp.is_some() && stamp != seen {
            let seen_at = Instant::now();
            seen = stamp;
            if std::fs::read(path).is_ok_and(|b| b == want.as_bytes()) {
                return Ok(seen_at);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not reach the expected content",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
