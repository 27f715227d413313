//! One pass, end to end, in [`run()`]: fetch the apps -> model -> render -> plan (once) ->
//! validate -> apply, returning what changed and how it reached HAProxy ([`Outcome`]) or why
//! not ([`Error`]). One-shot runs make one pass; the live loop ([`crate::reconcile`]) makes one
//! per burst of triggers. The HAProxy side is a [`Target`]: the reload command, our managed
//! HAProxy, or a fake in tests.

use crate::config::Config;
use crate::haproxy::command::tokio_block;
use crate::haproxy::isolate::RejectedApp;
use crate::haproxy::target::{Applied, RuntimeFailure, Step, Target};
use crate::haproxy::{ReloadReason, Validated};
use crate::model::invalid::LeftOut;
use crate::run::{self, Built};
use crate::templates::Templates;

pub mod mapped;
pub mod source;
#[cfg(test)]
mod tests;

pub use crate::run::{Error, Memory};
pub use source::{FetchError, Source};

/// What a pass needs besides its memory and its target.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The validated options.
    pub config: &'a Config,
    /// Templates after file and environment overrides.
    pub templates: &'a Templates,
    /// Where the apps come from.
    pub source: &'a Source,
    /// Whether to describe the served services for the status ([`Outcome::served`]): the live
    /// loop publishes them; a one-shot run would pay for 10,000 rows nobody reads.
    pub describe_services: bool,
}

/// What a successful pass did.
#[derive(Debug)]
pub struct Outcome {
    /// How the config reached HAProxy (or why nothing had to).
    pub applied: Applied,
    /// Why a Runtime API update was not used: the reload of [`Outcome::applied`] replaced it.
    pub runtime_failure: Option<RuntimeFailure>,
    /// Apps left out for invalid input (live mode; one-shot fails instead).
    pub left_out: Vec<LeftOut>,
    /// Apps HAProxy rejected, when the config was checked in this pass.
    pub rejected: Option<Vec<RejectedApp>>,
    /// Time spent fetching the apps.
    pub fetch: std::time::Duration,
    /// Where the apps came from (the Marathon URL or the file).
    pub origin: String,
    /// Size of the apps body.
    pub fetched_bytes: usize,
    /// What the rendered config serves, for the status (services, stats page, certificates).
    pub served: crate::status::services::Served,
    /// What changed, in a few words: the servers a Runtime API update touched or the sections
    /// a reload is for; empty when nothing changed.
    pub changes: String,
}

/// One pass: fetch, model and render the apps, plan against what HAProxy serves, check and
/// apply. Nothing is written unless the config changed and passed `haproxy -c` (or the check
/// was skipped); with `--dry` the config is printed instead.
///
/// # Errors
/// [`Error`]: the last good config keeps serving.
pub async fn run(
    inputs: Inputs<'_>,
    memory: &mut Memory,
    target: &mut impl Target,
) -> Result<Outcome, Error> {
    let started = std::time::Instant::now();
    let max = inputs.config.source.max_body_bytes;
    let (body, origin) = inputs.source.fetch(max).await?;
    let fetched = Fetched {
        apps: run::Apps::Body(body),
        origin,
        took: started.elapsed(),
    };
    run_fetched(inputs, fetched, memory, target).await
}

/// The apps already in hand: a fetched body, or the incremental live model's apps
/// ([`crate::reconcile`]).
pub struct Fetched {
    /// The apps.
    pub apps: run::Apps,
    /// Where it came from, for error messages.
    pub origin: String,
    /// Time spent getting it.
    pub took: std::time::Duration,
}

/// [`run()`] after the fetch: the same pass over the apps in hand.
///
/// # Errors
/// [`Error`]: the last good config keeps serving.
pub async fn run_fetched(
    inputs: Inputs<'_>,
    fetched: Fetched,
    memory: &mut Memory,
    target: &mut impl Target,
) -> Result<Outcome, Error> {
    let Inputs {
        config, templates, ..
    } = inputs;
    let Fetched {
        apps,
        origin,
        took: fetch,
    } = fetched;
    let fetched_bytes = apps.bytes();
    let mut built = tokio_block(|| run::build(apps, &origin, config, templates, memory))?;
    let mut outcome = Outcome {
        applied: Applied::Unchanged,
        runtime_failure: None,
        left_out: std::mem::take(&mut built.left_out),
        rejected: None,
        fetch,
        origin,
        fetched_bytes,
        served: match inputs.describe_services {
            true => crate::status::services::Served::of(&built),
            false => Default::default(),
        },
        changes: String::new(),
    };
    if config.dry {
        println!("{}", built.rendered.config);
        outcome.applied = Applied::Printed;
        return Ok(outcome);
    }
    target.prepare(&built.rendered, config);
    outcome.applied = apply(built, inputs, target, &mut outcome).await?;
    Ok(outcome)
}

/// Plan -> (Runtime API | check -> write -> reload). The plan is made once; only when HAProxy
/// rejected apps (so the config to serve changed) is the rest planned again. A failed Runtime
/// API update falls back to a checked reload; a reload that failed before is retried when
/// nothing else changed.
async fn apply(
    mut built: Built,
    inputs: Inputs<'_>,
    target: &mut impl Target,
    outcome: &mut Outcome,
) -> Result<Applied, Error> {
    let reason = match target.plan(&built.rendered) {
        Step::Unchanged => return unchanged(target).await,
        Step::Runtime(ops) => {
            outcome.changes = crate::status::summarize_ops(&ops);
            match target.runtime(&ops, built.rendered).await {
                Ok(()) => return Ok(Applied::Runtime { ops: ops.len() }),
                Err(failed) => {
                    tracing::warn!(error = %failed.error, "runtime update failed; checking the config and reloading instead");
                    outcome.runtime_failure = Some(failed.error);
                    built.rendered = failed.next;
                    ReloadReason::RuntimeFallback
                }
            }
        }
        Step::Reload { reason, changes } => {
            outcome.changes = changes;
            reason
        }
    };
    let (config, templates) = (inputs.config, inputs.templates);
    let checked = tokio_block(|| run::check(built, config, templates))?;
    outcome.rejected = Some(checked.rejected.clone());
    // Apps HAProxy rejected are left out: plan the config that is left (rarely anything new).
    let reason = match checked.rejected.is_empty() {
        true => reason,
        false => match target.plan(checked.validated.rendered()) {
            Step::Unchanged => return unchanged(target).await,
            Step::Runtime(ops) if outcome.runtime_failure.is_none() => {
                outcome.changes = crate::status::summarize_ops(&ops);
                let next = checked.validated.into_rendered();
                match target.runtime(&ops, next).await {
                    Ok(()) => return Ok(Applied::Runtime { ops: ops.len() }),
                    Err(failed) => {
                        tracing::warn!(error = %failed.error, "runtime update failed; reloading instead");
                        outcome.runtime_failure = Some(failed.error);
                        // Checked above: only the Runtime API refused it.
                        let validated = Validated::unchecked(failed.next);
                        return Ok(target
                            .reload(validated, ReloadReason::RuntimeFallback)
                            .await?);
                    }
                }
            }
            Step::Runtime(_) => ReloadReason::RuntimeFallback,
            Step::Reload { reason, changes } => {
                outcome.changes = changes;
                reason
            }
        },
    };
    Ok(target.reload(checked.validated, reason).await?)
}

/// Nothing new to serve: retries a reload that failed before, if one is pending.
async fn unchanged(target: &mut impl Target) -> Result<Applied, Error> {
    match target.retry_pending().await {
        Some(retried) => Ok(retried?),
        None => Ok(Applied::Unchanged),
    }
}
