//! The `marathon-lb` binary: parse flags, then run one pass (or, later, keep watching).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use marathon_lb::config::{Cli, Config};
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.longhelp {
        print!("{}", marathon_lb::longhelp::text());
        return ExitCode::SUCCESS;
    }
    init_logging(&cli.log_level);
    let config = match cli.validate(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(usage) => clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{usage}\n"),
        )
        .exit(),
    };
    match run_once(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("marathon-lb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MARATHON_LB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("marathon_lb={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run_once(config: &Config) -> anyhow::Result<()> {
    let cli = &config.cli;
    if cli.sse {
        anyhow::bail!("--sse (live mode) is not implemented yet; run without it for a single pass");
    }
    let Some(apps_file) = &cli.apps_file else {
        anyhow::bail!(
            "reading apps from Marathon ({}) is not implemented yet; pass --apps-file FILE",
            cli.marathon.join(" ")
        );
    };
    let templates = Templates::load(Some(std::path::Path::new("templates")), |k| {
        std::env::var(k).ok()
    })
    .context("loading templates")?;
    let body = run::read_apps_file(apps_file)?;
    let mut memory = Memory::default();
    let rendered = run::render_body(
        &body,
        &apps_file.display().to_string(),
        config,
        &templates,
        &mut memory,
    )?;
    if cli.dry {
        println!("{}", rendered.config);
        return Ok(());
    }
    run::apply(rendered, config)?;
    Ok(())
}
