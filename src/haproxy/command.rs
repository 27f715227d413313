//! The original's way to serve a config: write the files, then run `--command` (or, without
//! one, only write). The files on disk are the state: a config equal to them is unchanged.

use super::target::{Applied, Error, RuntimeFailed, RuntimeFailure, Step, Target};
use super::{plan, ReloadReason, Validated};
use crate::config::{Config, Output};
use crate::metrics::Metrics;
use crate::render::Rendered;

/// Writes configs and runs the reload command.
pub struct CommandReload {
    output: Output,
    command: Option<String>,
    metrics: Metrics,
    /// The last reload command failed after its config was written: retried next pass.
    reload_pending: bool,
    /// What this process last wrote, and the files' stamps right after.
    written: Option<Written>,
}

/// The last config (and maps) written: while the files on disk still carry the stamps they
/// had after the write, a new config is compared with this copy in memory instead of reading
/// 10 MB back from disk on every pass.
struct Written {
    rendered: Rendered,
    stamps: [Option<Stamp>; 3],
}

/// What tells a file replaced or edited since: inode, modification time, size.
type Stamp = (u64, i64, i64, u64);

/// The stamps of the config and the two map files.
fn stamps(output: &Output) -> [Option<Stamp>; 3] {
    use std::os::unix::fs::MetadataExt;
    let paths = &output.paths;
    let stamp = |path: &std::path::Path| {
        let m = std::fs::metadata(path).ok()?;
        Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    [
        stamp(&paths.config),
        stamp(&paths.domain_map()),
        stamp(&paths.app_map()),
    ]
}

/// Whether `next` differs from the `written` config (and its maps, when `map`). When `next`
/// was rendered from `written` and changed only servers, only the changed apps' backend
/// sections can differ, so those are compared ([`crate::render::Delta::texts_since`]) instead
/// of two 10 MB configs, which costs a millisecond a pass at 10,000 apps.
pub fn differs(written: &Rendered, next: &Rendered, map: bool) -> bool {
    let maps_differ =
        map && (written.domain_map != next.domain_map || written.app_map != next.app_map);
    let local = written
        .incremental
        .as_ref()
        .zip(next.incremental.as_ref())
        .and_then(|(written, next)| next.texts_since(written.generation));
    let config_differs = match local {
        Some((before, after)) => before != after,
        None => written.config != next.config,
    };
    config_differs || maps_differ
}

impl CommandReload {
    /// A target writing where `config` says, reloading with its `--command` (if any).
    pub fn new(config: &Config, metrics: Metrics) -> Self {
        Self {
            output: config.output.clone(),
            command: config.apply.command().map(str::to_owned),
            metrics,
            reload_pending: false,
            written: None,
        }
    }

    /// Whether a reload failed after its config was written and waits for a retry.
    pub fn reload_pending(&self) -> bool {
        self.reload_pending
    }

    /// Runs the reload command, counting it (as a config change: the command cannot tell).
    fn run_command(&mut self, command: &str) -> Result<(), Error> {
        let result = super::reload(command);
        self.metrics
            .reload(ReloadReason::ConfigChange, result.is_ok());
        self.reload_pending = result.is_err();
        result?;
        tracing::info!(command, "reloaded haproxy");
        Ok(())
    }
}

impl Target for CommandReload {
    fn plan(&self, next: &Rendered) -> Step {
        let unchanged_on_disk = self
            .written
            .as_ref()
            .filter(|w| w.stamps == stamps(&self.output))
            .map(|w| &w.rendered);
        let changed = match unchanged_on_disk {
            Some(written) => differs(written, next, self.output.map),
            None => super::changed(next, &self.output.paths, self.output.map),
        };
        if changed {
            Step::Reload {
                reason: ReloadReason::ConfigChange,
                changes: "new config".to_owned(),
            }
        } else {
            tracing::debug!("config unchanged, skipping reload");
            Step::Unchanged
        }
    }

    /// Never asked: [`CommandReload::plan`] plans no Runtime API step.
    async fn runtime(&mut self, _ops: &[plan::Op], next: Rendered) -> Result<(), RuntimeFailed> {
        Err(RuntimeFailed {
            error: RuntimeFailure::NoSocket,
            next,
        })
    }

    async fn reload(
        &mut self,
        validated: Validated,
        _reason: ReloadReason,
    ) -> Result<Applied, Error> {
        self.written = None;
        super::target::write(&self.output, &validated)?;
        self.written = Some(Written {
            rendered: validated.into_rendered(),
            stamps: stamps(&self.output),
        });
        tracing::info!(config = %self.output.paths.config.display(), "wrote new config");
        let Some(command) = self.command.clone() else {
            tracing::warn!("no --command given: HAProxy was not reloaded");
            return Ok(Applied::Written);
        };
        tokio_block(|| self.run_command(&command))?;
        Ok(Applied::Reloaded {
            reason: ReloadReason::ConfigChange,
        })
    }

    async fn retry_pending(&mut self) -> Option<Result<Applied, Error>> {
        let command = self.command.clone().filter(|_| self.reload_pending)?;
        tracing::info!("retrying the reload command that failed before");
        let result = tokio_block(|| self.run_command(&command));
        Some(result.map(|()| Applied::Reloaded {
            reason: ReloadReason::ConfigChange,
        }))
    }

    async fn reload_existing(&mut self, config: &Config) -> Result<(), Error> {
        let result = tokio_block(|| {
            if !config.validation.skip {
                super::validate_file(&self.output.paths.config, "haproxy")?;
            }
            if let Some(command) = &self.command {
                super::reload(command)?;
            }
            Ok(())
        });
        self.metrics
            .reload(ReloadReason::ManualSignal, result.is_ok());
        result
    }
}

/// Runs blocking work (`haproxy -c`, the reload command) off the async workers when the
/// runtime has other workers; inline on a current-thread runtime (one-shot runs, tests).
pub(crate) fn tokio_block<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
