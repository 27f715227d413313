//! `haproxy -c` on a candidate config, with its map files, before anything is replaced.

use std::path::Path;
use std::process::Command;

use super::exec::{self, ExecError};
use super::Paths;
use crate::render::Rendered;

/// A rendered config that HAProxy accepted (or whose check the user skipped).
#[derive(Debug, Clone)]
pub struct Validated {
    rendered: Rendered,
}

impl Validated {
    /// Marks a config as valid without checking it (`--skip-validation`).
    pub fn unchecked(rendered: Rendered) -> Self {
        Self { rendered }
    }

    /// The validated config and maps.
    pub fn rendered(&self) -> &Rendered {
        &self.rendered
    }

    /// The validated config and maps, by value (what HAProxy serves once written).
    pub fn into_rendered(self) -> Rendered {
        self.rendered
    }
}

/// Why a config was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The check could not run (temp files, or the haproxy binary is missing).
    #[error("cannot run `{binary} -c`: {error}")]
    Run {
        /// The HAProxy binary.
        binary: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// HAProxy rejected the config.
    #[error("haproxy rejected the new config:\n{alerts}")]
    Rejected {
        /// HAProxy's `[ALERT]` lines (or its whole output when it printed none).
        alerts: String,
    },
    /// The check ran past `--check-timeout` (e.g. a certificate path that is a FIFO) and was
    /// killed, or marathon-lb is stopping.
    #[error(transparent)]
    Exec(ExecError),
}

/// What HAProxy printed about a config it accepted.
#[derive(Debug, Clone)]
pub struct ValidateOutput {
    /// The accepted config.
    pub validated: Validated,
    /// HAProxy's `[WARNING]` lines, temp paths replaced by the file names.
    pub warnings: Vec<String>,
}

/// Runs `binary -c -f <temp copy>` on `rendered`; map references point at temp copies of the
/// new maps so they are checked too.
///
/// # Errors
/// [`ValidateError::Rejected`] with HAProxy's alerts when the config is invalid;
/// [`ValidateError::Run`] when the check itself cannot run.
pub fn validate(
    rendered: Rendered,
    paths: &Paths,
    map_mode: bool,
    binary: &str,
) -> Result<Validated, ValidateError> {
    run_check(&rendered, paths, map_mode, binary)?;
    Ok(Validated { rendered })
}

/// As [`validate`], for a borrowed config, also returning HAProxy's warnings (which the
/// isolation of bad apps attributes to apps).
///
/// # Errors
/// As [`validate`].
pub fn validate_verbose(
    rendered: &Rendered,
    paths: &Paths,
    map_mode: bool,
    binary: &str,
) -> Result<ValidateOutput, ValidateError> {
    let warnings = run_check(rendered, paths, map_mode, binary)?;
    Ok(ValidateOutput {
        validated: Validated {
            rendered: rendered.clone(),
        },
        warnings,
    })
}

/// Checks `rendered` from a temp dir; the `[WARNING]` lines when it is accepted.
fn run_check(
    rendered: &Rendered,
    paths: &Paths,
    map_mode: bool,
    binary: &str,
) -> Result<Vec<String>, ValidateError> {
    let run_err = |error| ValidateError::Run {
        binary: binary.to_owned(),
        error,
    };
    let dir = tempfile::tempdir().map_err(run_err)?;
    let mut config = std::borrow::Cow::Borrowed(rendered.config.as_str());
    // (temp path, name shown in messages)
    let mut renames = Vec::new();
    if map_mode {
        let domain = dir.path().join("domain2backend.map");
        let app = dir.path().join("app2backend.map");
        std::fs::write(&domain, &rendered.domain_map).map_err(run_err)?;
        std::fs::write(&app, &rendered.app_map).map_err(run_err)?;
        let domain = domain.to_string_lossy().into_owned();
        let app = app.to_string_lossy().into_owned();
        config = config
            .replace(&paths.domain_map_ref(), &domain)
            .replace(&paths.app_map_ref(), &app)
            .into();
        renames.push((domain, "domain2backend.map"));
        renames.push((app, "app2backend.map"));
    }
    let candidate = dir.path().join("haproxy.cfg");
    std::fs::write(&candidate, config.as_bytes()).map_err(run_err)?;
    let output = check(binary, &candidate)?;
    renames.push((candidate.to_string_lossy().into_owned(), "haproxy.cfg"));
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for (path, name) in &renames {
        text = text.replace(path.as_str(), name);
    }
    if output.status.success() {
        let warnings = text
            .lines()
            .filter(|l| l.contains("[WARNING]"))
            .map(str::to_owned)
            .collect();
        return Ok(warnings);
    }
    Err(ValidateError::Rejected {
        alerts: alerts(&text),
    })
}

/// Runs `binary -c -f path` on a config file as it is.
///
/// # Errors
/// As [`validate`].
pub fn validate_file(path: &Path, binary: &str) -> Result<(), ValidateError> {
    let output = check(binary, path)?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(ValidateError::Rejected {
        alerts: alerts(&text),
    })
}

/// HAProxy's `[ALERT]` lines, or its whole output when it printed none.
fn alerts(text: &str) -> String {
    let alerts: Vec<&str> = text.lines().filter(|l| l.contains("[ALERT]")).collect();
    if alerts.is_empty() {
        text.trim().to_owned()
    } else {
        alerts.join("\n")
    }
}

/// `binary -c -f config`, with the scrubbed environment, bounded by `--check-timeout`.
fn check(binary: &str, config: &Path) -> Result<std::process::Output, ValidateError> {
    let mut command = Command::new(binary);
    command.arg("-c").arg("-f").arg(config);
    let timeout = exec::limits().check_timeout;
    exec::run_bounded(command, &format!("`{binary} -c`"), timeout, true).map_err(|e| match e {
        ExecError::Spawn { error, .. } => ValidateError::Run {
            binary: binary.to_owned(),
            error,
        },
        other => ValidateError::Exec(other),
    })
}
