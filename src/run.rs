//! One pass of the pipeline: apps body -> services -> config -> validate -> write -> reload.

use std::path::Path;

use crate::config::Config;
use crate::haproxy::{self, ApplyError, Paths, ValidateError, Validated};
use crate::marathon::types::{self, AppsBody};
use crate::model::{self, network::Resolver, HealthMemory};
use crate::render::{self, Rendered};
use crate::templates::Templates;

/// Why a pass failed. The last good config on disk is untouched by every one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apps file could not be read.
    #[error("cannot read apps file {path}: {source}")]
    ReadApps {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The apps body is not valid JSON of the expected shape.
    #[error("{origin}: {source}")]
    Parse {
        /// Where the body came from (file path or Marathon URL).
        origin: String,
        /// The parse error.
        #[source]
        source: types::Error,
    },
    /// An app's labels or deployment group are invalid.
    #[error(transparent)]
    Model(#[from] model::Error),
    /// A template could not be rendered.
    #[error(transparent)]
    Render(#[from] render::Error),
    /// HAProxy rejected the config.
    #[error(transparent)]
    Validate(#[from] ValidateError),
    /// The config could not be written or HAProxy not reloaded.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rendered config equals the one on disk: nothing written, no reload.
    Unchanged,
    /// A new config was written (and the reload command run, if any).
    Applied,
}

/// State kept between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// Cached DNS answers for agent hosts.
    pub resolver: Resolver,
    /// Last known task health.
    pub health: HealthMemory,
}

/// Reads an apps body from a file.
///
/// # Errors
/// [`Error::ReadApps`].
pub fn read_apps_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadApps {
        path: path.display().to_string(),
        source,
    })
}

/// Parses, models and renders an apps body. Pass the body by value to free it early.
///
/// # Errors
/// [`Error::Parse`], [`Error::Model`] or [`Error::Render`].
pub fn render_body(
    body: impl AsRef<[u8]>,
    origin: &str,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
) -> Result<Rendered, Error> {
    let started = std::time::Instant::now();
    let apps_bytes = body.as_ref().len();
    let apps = AppsBody::parse(body.as_ref())
        .map_err(|source| Error::Parse {
            origin: origin.to_owned(),
            source,
        })?
        .apps;
    let parsed = started.elapsed();
    let services = model::build(
        apps,
        &config.model,
        &mut memory.resolver,
        &mut memory.health,
    )?;
    let modeled = started.elapsed();
    // The services own what they need: free the body (often tens of MB) before rendering.
    drop(body);
    let rendered = render::render(&services, templates, &config.render)?;
    tracing::debug!(
        apps_bytes,
        services = services.len(),
        parse_ms = parsed.as_secs_f64() * 1e3,
        model_ms = (modeled - parsed).as_secs_f64() * 1e3,
        render_ms = (started.elapsed() - modeled).as_secs_f64() * 1e3,
        "rendered"
    );
    Ok(rendered)
}

/// Compares with the config on disk; when different, validates, writes and reloads.
///
/// # Errors
/// [`Error::Validate`] (nothing written) or [`Error::Apply`].
pub fn apply(rendered: Rendered, config: &Config) -> Result<Outcome, Error> {
    let cli = &config.cli;
    let paths = Paths::new(&cli.haproxy_config);
    if !haproxy::changed(&rendered, &paths, cli.haproxy_map) {
        tracing::debug!("config unchanged, skipping reload");
        return Ok(Outcome::Unchanged);
    }
    let validated = if cli.skip_validation {
        Validated::unchecked(rendered)
    } else {
        haproxy::validate(rendered, &paths, cli.haproxy_map, "haproxy")?
    };
    haproxy::apply(&validated, &paths, cli.haproxy_map, cli.archive_versions)?;
    tracing::info!(config = %paths.config.display(), "wrote new config");
    match &cli.command {
        Some(command) => {
            haproxy::reload(command)?;
            tracing::info!(command, "reloaded haproxy");
        }
        None => tracing::warn!("no --command given: HAProxy was not reloaded"),
    }
    Ok(Outcome::Applied)
}

/// Validates the config already on disk and runs the reload command (SIGUSR1).
///
/// # Errors
/// [`Error::Validate`] when HAProxy rejects it, [`Error::Apply`] when the reload fails.
pub fn reload_existing(config: &Config) -> Result<(), Error> {
    let cli = &config.cli;
    if !cli.skip_validation {
        haproxy::validate_file(Path::new(&cli.haproxy_config), "haproxy")?;
    }
    if let Some(command) = &cli.command {
        haproxy::reload(command)?;
    }
    Ok(())
}
