//! Replace the config and maps atomically, keep archived copies, and run the reload command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::Validated;
use crate::render::Rendered;

/// Where the config and its maps live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `--haproxy-config`, as given.
    pub config: PathBuf,
    /// The directory string the config text uses for maps (`dirname` of the config path).
    pub haproxy_dir: String,
}

impl Paths {
    /// Paths for a config file, its maps beside it.
    pub fn new(config: &str) -> Self {
        let haproxy_dir = Path::new(config)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            config: PathBuf::from(config),
            haproxy_dir,
        }
    }

    fn dir(&self) -> &Path {
        Path::new(&self.haproxy_dir)
    }

    /// `domain2backend.map` on disk.
    pub fn domain_map(&self) -> PathBuf {
        self.dir().join("domain2backend.map")
    }

    /// `app2backend.map` on disk.
    pub fn app_map(&self) -> PathBuf {
        self.dir().join("app2backend.map")
    }

    /// How the config text refers to `domain2backend.map`.
    pub fn domain_map_ref(&self) -> String {
        format!("{}/domain2backend.map", self.haproxy_dir)
    }

    /// How the config text refers to `app2backend.map`.
    pub fn app_map_ref(&self) -> String {
        format!("{}/app2backend.map", self.haproxy_dir)
    }
}

/// Why the new config could not be put into place or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Writing a file failed (the old file is untouched).
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The reload command could not start or failed.
    #[error("reload command `{command}` failed: {reason}")]
    Reload {
        /// The command.
        command: String,
        /// Exit status or start error.
        reason: String,
    },
}

/// Whether `rendered` differs from what is on disk (config, and maps in map mode).
pub fn changed(rendered: &Rendered, paths: &Paths, map_mode: bool) -> bool {
    let differs =
        |path: &Path, text: &str| std::fs::read(path).map_or(true, |old| old != text.as_bytes());
    differs(&paths.config, &rendered.config)
        || (map_mode
            && (differs(&paths.domain_map(), &rendered.domain_map)
                || differs(&paths.app_map(), &rendered.app_map)))
}

/// Writes the maps (map mode) and then the config, each by rename of a temp file in the same
/// directory, so HAProxy never reads a half-written file. Without map mode, stale map files
/// are emptied. Keeps the last `archive_versions` configs as `hap_cfg.N` in the archive
/// directory ([`super::archive`]).
///
/// # Errors
/// [`ApplyError::Write`]; files written before the failure stay replaced, the config last.
pub fn apply(
    validated: &Validated,
    paths: &Paths,
    map_mode: bool,
    archive_versions: usize,
) -> Result<(), ApplyError> {
    let rendered = validated.rendered();
    if map_mode {
        write_atomic(&paths.domain_map(), Arc::new(rendered.domain_map.clone()))?;
        write_atomic(&paths.app_map(), Arc::new(rendered.app_map.clone()))?;
    } else {
        for map in [paths.domain_map(), paths.app_map()] {
            if map.is_file() {
                std::fs::write(&map, "").map_err(|error| write_err(&map, error))?;
            }
        }
    }
    write_atomic(&paths.config, Arc::clone(&rendered.config))?;
    if let Err(e) = super::archive::archive(&rendered.config, "hap_cfg", archive_versions) {
        tracing::warn!(error = %e, "config not archived");
    }
    Ok(())
}

fn write_err(path: &Path, error: std::io::Error) -> ApplyError {
    ApplyError::Write {
        path: path.display().to_string(),
        error,
    }
}

/// Puts `content` into place at `path` by an atomic swap ([`super::replace`]): HAProxy sees
/// the old file or the new one, never a part. The data is flushed to the disk after the swap,
/// on another thread, and then recorded as complete ([`super::record`]): the config is visible
/// at once (a 10 MB flush takes milliseconds the next event should not wait for), durable soon
/// after, and derived state anyway (every start renders it again from Marathon before it is
/// applied; before that, a start serves only a file that matches its record).
fn write_atomic(path: &Path, content: Arc<String>) -> Result<(), ApplyError> {
    let replaced =
        super::replace::replace(path, content.as_bytes()).map_err(|e| write_err(path, e))?;
    tracing::trace!(path = %path.display(), written = ?replaced.written, "replaced");
    let path = path.to_owned();
    let flush = move || {
        let flushed = match super::record::kept() {
            true => {
                let sum = super::record::Sum::of(content.as_bytes());
                super::record::flush_and_record(&path, &replaced.file, sum)
            }
            false => replaced.file.sync_all(),
        };
        if let Err(error) = flushed {
            tracing::warn!(path = %path.display(), %error, "could not flush the written file to disk (or record it)");
        }
        drop(replaced.unlinked);
        // Live mode only: a one-shot run, like the original, leaves nothing beside its files.
        if replaced.no_spare && super::record::kept() {
            if let Err(error) = super::replace::prepare_spare(&path, content.as_bytes()) {
                tracing::debug!(path = %path.display(), %error, "no spare file prepared");
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("flush".into())
        .spawn(flush)
    {
        tracing::warn!(error = %e, "no thread to flush the written file; it is flushed by the system");
    }
    Ok(())
}

/// Runs the reload command through `sh -c`, with the scrubbed environment, in its own
/// process group, bounded by `--command-timeout` (then the whole group is killed).
///
/// # Errors
/// [`ApplyError::Reload`] when it cannot start, exits non-zero or times out.
pub fn reload(command: &str) -> Result<(), ApplyError> {
    let fail = |reason: String| ApplyError::Reload {
        command: command.to_owned(),
        reason,
    };
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command);
    let timeout = super::exec::limits().command_timeout;
    let output =
        super::exec::run_bounded(sh, "the reload command", timeout, false).map_err(|e| {
            fail(match e {
                super::exec::ExecError::Spawn { error, .. } => error.to_string(),
                other => other.to_string(),
            })
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(output.status.to_string()))
    }
}
