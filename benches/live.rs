//! Event -> config-written latency of live mode at 1000 apps.
//!
//! Starts the fake Marathon in-process with `gen-apps --apps 1000 --seed 1 --churn K`, runs
//! the real release binary with `--sse` against it, and for each churn step sets the new apps,
//! pushes one `status_update_event` and measures the time until `haproxy.cfg` on disk equals
//! the config the library renders for that step. Prints p50/p90/p99/max and the number of
//! `/v2/apps` fetches per event. Run: `cargo bench --bench live`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use marathon_lb::config::Cli;
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};

const APPS: usize = 1000;
const STEPS: usize = 200;

fn main() {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    if !gen.exists() {
        println!("SKIP: {} not found", gen.display());
        return;
    }
    let out = Command::new(&gen)
        .args([
            "--apps",
            &APPS.to_string(),
            "--seed",
            "1",
            "--churn",
            &(STEPS + 1).to_string(),
        ])
        .output()
        .expect("run gen-apps");
    let bodies: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(bodies.len(), STEPS + 1);

    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/marathon-lb");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure(&bin, &bodies));
}

async fn measure(bin: &Path, bodies: &[String]) {
    let fake = FakeMarathon::start(Options::default()).await.unwrap();
    fake.set_apps(bodies[0].clone());
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("haproxy.cfg");
    let args = [
        "--group",
        "*",
        "--skip-validation",
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = expected(&bodies[0]);
    wait_for(&config_path, &first, Duration::from_secs(30))
        .await
        .expect("first config");
    fake.wait_for_subscribers(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let fetches_before = fake.apps_requests();
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut previous = first;
    for body in &bodies[1..] {
        let want = expected(body);
        fake.set_apps(body.clone());
        let start = Instant::now();
        fake.push_marathon_event(
            "status_update_event",
            serde_json::json!({"taskStatus": "TASK_RUNNING"}),
        );
        if want == previous {
            continue; // nothing to observe on disk for this step
        }
        wait_for(&config_path, &want, Duration::from_secs(10))
            .await
            .expect("config for step");
        latencies.push(start.elapsed());
        previous = want;
        tokio::time::sleep(Duration::from_millis(30)).await; // let the next event be a separate burst
    }
    let fetches = fake.apps_requests() - fetches_before;
    let _ = child.kill();
    let _ = child.wait();

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "live mode, {APPS} apps, {} events with a config change ({STEPS} events sent)",
        latencies.len()
    );
    println!("| metric | value |\n|---|---|");
    println!("| event -> config written p50 | {} |", ms(pct(0.5)));
    println!("| p90 | {} |", ms(pct(0.9)));
    println!("| p99 | {} |", ms(pct(0.99)));
    println!("| max | {} |", ms(*latencies.last().unwrap()));
    println!(
        "| /v2/apps fetches per event | {:.2} |",
        fetches as f64 / STEPS as f64
    );
}

async fn wait_for(path: &Path, want: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if std::fs::read(path)
            .map(|b| b == want.as_bytes())
            .unwrap_or(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not reach the expected content",
                path.display()
            ));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}
