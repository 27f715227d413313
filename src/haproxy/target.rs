//! The seam between a pass and HAProxy: a [`Target`] plans how to serve a rendered config and
//! serves it. Three implementations: [`super::command::CommandReload`] (write the files and run
//! `--command`, the original's way), [`super::managed::Managed`] (HAProxy supervised by us,
//! server changes through the Runtime API) and, in tests, a recording fake.
//!
//! The pass ([`crate::pass::run`]) owns the order of the steps and the fallbacks (a failed
//! Runtime API update becomes a checked reload); a target only knows what HAProxy serves and
//! how to change it.

use std::future::Future;

use super::plan::{self, Change, Plan, Snapshot};
use super::process::{self, ReloadReason};
use super::runtime::RuntimeError;
use super::{ApplyError, ValidateError, Validated};
use crate::config::{Config, Output};
use crate::render::Rendered;

/// What a target needs to serve a rendered config, decided before the config is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// HAProxy already serves it (or the files on disk already hold it).
    Unchanged,
    /// Only servers differ: these Runtime API operations, no `haproxy -c`, no reload.
    Runtime(Vec<plan::Op>),
    /// Check, write and reload.
    Reload {
        /// Why.
        reason: ReloadReason,
        /// What changed, for the log and the recent applies (the first few changes).
        changes: String,
    },
}

/// How a pass's config reached HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to do: HAProxy (or the file on disk) already has this config.
    Unchanged,
    /// Server changes through the Runtime API, no reload.
    Runtime {
        /// Operations applied.
        ops: usize,
    },
    /// Written, then reloaded (or HAProxy started).
    Reloaded {
        /// Why.
        reason: ReloadReason,
    },
    /// Written; no reload command given (`--command` absent in command mode).
    Written,
    /// `--dry`: printed to stdout, nothing written.
    Printed,
}

/// Why a target could not serve a config. HAProxy keeps serving its last good config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The files could not be written, or the reload command failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The config on disk is not valid (SIGUSR1).
    #[error(transparent)]
    Validate(#[from] ValidateError),
    /// The managed HAProxy could not start or reload.
    #[error("HAProxy reload failed: {0}")]
    Reload(process::Error),
}

/// Why a Runtime API update did not apply; the pass then checks the config and reloads.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeFailure {
    /// The config names no stats socket to send the operations to.
    #[error("the config has no `stats socket` in its global section")]
    NoSocket,
    /// HAProxy refused or did not answer an operation, or the servers differ afterwards.
    #[error(transparent)]
    Api(#[from] RuntimeError),
    /// HAProxy took the change but the files could not be written.
    #[error(transparent)]
    Write(#[from] ApplyError),
}

/// A failed Runtime API update, with the config it was for (to be checked and reloaded).
#[derive(Debug)]
pub struct RuntimeFailed {
    /// Why it failed.
    pub error: RuntimeFailure,
    /// The config it was for.
    pub next: Rendered,
}

/// Where checked configs go. Futures are `Send`: the live loop runs on a multi-thread runtime.
pub trait Target: Send {
    /// Runs before a rendered config is planned (managed mode: self-signed stand-ins for
    /// missing certificates the operator allowed).
    fn prepare(&mut self, _rendered: &Rendered, _config: &Config) {}

    /// What serving `next` takes, from what HAProxy serves now. After a failed reload the
    /// answer must be a reload again (the pass relies on it to retry).
    fn plan(&self, next: &Rendered) -> Step;

    /// Applies server-only changes to the running HAProxy, then writes `next` to disk.
    fn runtime(
        &mut self,
        ops: &[plan::Op],
        next: Rendered,
    ) -> impl Future<Output = Result<(), RuntimeFailed>> + Send;

    /// Writes `validated` and gets it served (reload, start, or the reload command).
    fn reload(
        &mut self,
        validated: Validated,
        reason: ReloadReason,
    ) -> impl Future<Output = Result<Applied, Error>> + Send;

    /// Retries a reload that failed after its files were written, when the pass finds nothing
    /// else to do; `None` when none is pending.
    fn retry_pending(&mut self) -> impl Future<Output = Option<Result<Applied, Error>>> + Send {
        std::future::ready(None)
    }

    /// Validates the config already on disk and reloads HAProxy with it (SIGUSR1).
    fn reload_existing(
        &mut self,
        config: &Config,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Starts serving before the first pass (managed mode: the valid config on disk).
    fn start(&mut self, _config: &Config) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Stops what [`Target::start`] or a reload started.
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// What a HAProxy process serves, as far as we know: the planning state of the managed
/// target (and of the test fake, so both keep the same rules).
#[derive(Debug, Default)]
pub struct Served {
    /// The config and maps it serves; `None` when unknown (then the next plan reloads).
    running: Option<Rendered>,
}

impl Served {
    /// The step from what runs to `next`; `alive` is whether HAProxy runs at all.
    pub fn plan(&self, alive: bool, next: &Rendered) -> Step {
        let running = match (&self.running, alive) {
            (Some(running), true) => running,
            _ => {
                return Step::Reload {
                    reason: ReloadReason::Initial,
                    changes: "HAProxy starts".to_owned(),
                }
            }
        };
        match plan_rendered(running, next) {
            Plan::Unchanged => Step::Unchanged,
            Plan::Runtime(ops) => Step::Runtime(ops),
            Plan::Reload(changes) => {
                let reason = reason_of(&changes);
                let mut summary: Vec<String> =
                    changes.iter().take(3).map(ToString::to_string).collect();
                if changes.len() > 3 {
                    summary.push(format!("{} more", changes.len() - 3));
                }
                let changes = summary.join("; ");
                tracing::info!(%reason, %changes, "planned a reload");
                Step::Reload { reason, changes }
            }
        }
    }

    /// HAProxy now serves `next`.
    pub fn serves(&mut self, next: Rendered) {
        self.running = Some(next);
    }

    /// What HAProxy serves is unknown (a reload failed: it may run the old config or none).
    pub fn forget(&mut self) {
        self.running = None;
    }

    /// Whether what it serves is known.
    pub fn known(&self) -> bool {
        self.running.is_some()
    }
}

/// Plans from `running` to `next`: over only the changed apps' sections when `next` was
/// rendered incrementally from what runs and nothing else changed (the same plan, without
/// reading whole configs), else over the whole configs.
fn plan_rendered(running: &Rendered, next: &Rendered) -> Plan {
    let base = running.incremental.as_ref().map(|d| d.generation);
    let local = next.incremental.as_ref().zip(base);
    match local.and_then(|(delta, base)| delta.texts_since(base)) {
        Some((before, after)) => {
            let part = |config| plan::Snapshot {
                config,
                domain_map: "",
                app_map: "",
            };
            plan::plan(Some(part(before)), part(after))
        }
        None => plan::plan(Some(snapshot(running)), snapshot(next)),
    }
}

/// Writes a config and its maps where `output` says (atomically, archiving the previous one).
pub(super) fn write(output: &Output, validated: &Validated) -> Result<(), ApplyError> {
    super::apply(
        validated,
        &output.paths,
        output.map,
        output.archive_versions,
    )
}

fn snapshot(r: &Rendered) -> Snapshot<'_> {
    Snapshot {
        config: &r.config,
        domain_map: &r.domain_map,
        app_map: &r.app_map,
    }
}

/// The reload reason that best names a set of changes.
fn reason_of(changes: &[Change]) -> ReloadReason {
    match changes.first() {
        Some(Change::Initial) | None => ReloadReason::Initial,
        Some(Change::Added(_)) => ReloadReason::NewApp,
        Some(Change::Removed(_)) => ReloadReason::RemovedApp,
        Some(Change::Modified(section))
            if section.starts_with("frontend ") || section.starts_with("backend ") =>
        {
            ReloadReason::LabelChange
        }
        Some(Change::Modified(_)) => ReloadReason::ConfigChange,
        Some(Change::Server { .. }) => ReloadReason::ServersChanged,
        Some(Change::Map(_)) => ReloadReason::LabelChange,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_reasons_name_the_change() {
        assert_eq!(
            reason_of(&[Change::Added("backend a_1".into())]),
            ReloadReason::NewApp
        );
        assert_eq!(
            reason_of(&[Change::Removed("frontend a_1".into())]),
            ReloadReason::RemovedApp
        );
        assert_eq!(
            reason_of(&[Change::Modified("backend a_1".into())]),
            ReloadReason::LabelChange
        );
        assert_eq!(
            reason_of(&[Change::Modified("global".into())]),
            ReloadReason::ConfigChange
        );
        assert_eq!(reason_of(&[Change::Initial]), ReloadReason::Initial);
    }
}
