//! `fake-marathon`: serves a JSON apps file as a fake Marathon, for manual runs and
//! benchmarks of marathon-lb without a cluster.
//!
//! `GET /v2/apps` returns the file; it is re-read every `--poll` and, when it changed,
//! an `api_post_event` goes out on `/v2/events`. `--event-interval` adds a synthetic
//! `status_update_event` at that period and `--keepalive` a keep-alive comment.
//!
//! ```text
//! fake-marathon --listen 127.0.0.1:8080 --apps tests/fixtures/marathon/apps.json
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Serve a JSON apps file as a fake Marathon (REST + SSE)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The body of GET /v2/apps (a Marathon apps listing).
    #[arg(long)]
    apps: PathBuf,
    /// Serve Marathon under this path prefix, e.g. /service/marathon.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Require HTTP basic auth user:password.
    #[arg(long)]
    basic_auth: Option<String>,
    /// How often to re-read the apps file, in seconds.
    #[arg(long, default_value_t = 1.0)]
    poll: f64,
    /// Send a status_update_event this often, in seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    event_interval: f64,
    /// Send a keep-alive comment this often, in seconds (0: never).
    #[arg(long, default_value_t = 15.0)]
    keepalive: f64,
}

/// A ticker for a period in seconds, or `None` for 0 (off).
fn ticker(seconds: f64) -> anyhow::Result<Option<tokio::time::Interval>> {
    if seconds == 0.0 {
        return Ok(None);
    }
    let period = Duration::try_from_secs_f64(seconds).context("invalid period")?;
    anyhow::ensure!(!period.is_zero(), "period too small");
    Ok(Some(tokio::time::interval(period)))
}

/// Waits for the next tick, or forever when off.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut options = Options::default().prefix(args.prefix.clone());
    if let Some(basic) = &args.basic_auth {
        let (user, password) = basic
            .split_once(':')
            .context("--basic-auth must be user:password")?;
        options = options.basic_auth(user, password);
    }
    let read = || std::fs::read(&args.apps).with_context(|| format!("reading {:?}", args.apps));
    let mut apps = read()?;
    let fake = FakeMarathon::bind(args.listen, options).await?;
    fake.set_apps(apps.clone());
    println!("fake Marathon listening on {}", fake.url());

    let mut poll = ticker(args.poll)?;
    let mut events = ticker(args.event_interval)?;
    let mut keepalive = ticker(args.keepalive)?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick(&mut poll) => match read() {
                Ok(fresh) if fresh != apps => {
                    apps = fresh;
                    fake.set_apps(apps.clone());
                    fake.push_marathon_event("api_post_event", serde_json::json!({}));
                    println!("apps file changed; sent api_post_event");
                }
                Ok(_) => {}
                Err(error) => eprintln!("{error:#}"),
            },
            _ = tick(&mut events) => fake.push_marathon_event(
                "status_update_event",
                serde_json::json!({"taskStatus": "TASK_RUNNING"}),
            ),
            _ = tick(&mut keepalive) => fake.keep_alive(),
        }
    }
}
