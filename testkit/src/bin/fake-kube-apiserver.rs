//! `fake-kube-apiserver`: the stand-in Kubernetes API server of
//! `marathon_lb_testkit::fake_kube_apiserver`, for trying the `kubeapi-proxy` example by hand.
//!
//! It serves TLS with a fresh self-signed certificate (written to `--cert-out` when given),
//! `/version`, minimal discovery, a pod watch that gets a `MODIFIED` event every
//! `--event-interval` seconds, and an echoing `Upgrade` endpoint.
//!
//! ```text
//! fake-kube-apiserver --listen 127.0.0.1:6444 --event-interval 5
//! kubectl --server https://127.0.0.1:6444 --insecure-skip-tls-verify get --raw /version
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use marathon_lb_testkit::fake_kube_apiserver::FakeKubeApiServer;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Serve a stand-in Kubernetes API server over TLS")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6444")]
    listen: SocketAddr,
    /// Write the server's certificate (PEM) here.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Push a pod MODIFIED watch event this often, in seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    event_interval: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = FakeKubeApiServer::bind(args.listen)
        .await
        .context("starting the stand-in API server")?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, server.cert_pem())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", server.url());
    if args.event_interval <= 0.0 {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        return Ok(());
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.event_interval));
    let mut version = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = ticker.tick() => {
                version += 1;
                server.push_pod("MODIFIED", "standin-0", version);
            }
        }
    }
}
