//! Leaving out the apps that make HAProxy reject the config, so one bad app cannot hold back
//! every other change.
//!
//! Data flow position: between `render` and `apply`, when the full config fails `haproxy -c`.
//! The original marathon-lb then runs one `haproxy -c` per app; this module needs far fewer:
//!
//! 1. **Attribution.** HAProxy's `[ALERT]` lines name lines (`parsing [haproxy.cfg:120]`) and
//!    proxies (`backend 'shop_10001'`). Both are mapped to services (see `attribute`); their
//!    apps are left out and the rest is checked again, for up to [`ATTRIBUTION_ROUNDS`] rounds
//!    (HAProxy reports some errors only once the parsing errors are gone).
//! 2. **Bisection**, when the alerts name no app (or naming them was not enough): the
//!    shortest failing prefix of the apps in order is found by binary search, its last app is
//!    left out, and the search goes on after it: about `log2(apps) + 1` checks per bad app.
//!    Apps that fail only together (two apps rendering the same backend name) are handled as
//!    well: the earlier app is kept, the later one is left out.
//!
//! All services of an app are kept or left out together. The caller renders and validates
//! through closures, so tests can count the checks or replace HAProxy.

mod attribute;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{ValidateError, ValidateOutput, Validated};
use crate::model::labels::port_label;
use crate::model::Service;
use crate::render::{self, Rendered};
use attribute::{Hit, Index};

/// How many times step 1 may leave out apps before bisection takes over.
pub const ATTRIBUTION_ROUNDS: usize = 4;

/// An app left out of the config, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedApp {
    /// The Marathon app id.
    pub app_id: String,
    /// The app's `HAPROXY_*` labels involved: those whose value shows in the failing line,
    /// else the per-port labels of the failing service port(s).
    pub labels: Vec<String>,
    /// HAProxy's `[ALERT]` line about the app (or the first alert of the failing check when
    /// none names it).
    pub error_line: String,
}

/// A `[WARNING]` HAProxy printed about a section of a kept app (the config is still valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppWarning {
    /// The Marathon app id.
    pub app_id: String,
    /// HAProxy's warning line.
    pub line: String,
}

/// The result of [`isolate`]: a valid config of the apps that could be kept.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The services of the kept apps, in input order.
    pub kept: Vec<Arc<Service>>,
    /// The apps left out, in the order they were found.
    pub rejected: Vec<RejectedApp>,
    /// Warnings about sections of kept apps.
    pub warnings: Vec<AppWarning>,
    /// Warnings that point at no app (the global part of the config).
    pub other_warnings: Vec<String>,
    /// How many times the validate closure ran (`haproxy -c` runs).
    pub checks_run: usize,
    /// The config of `kept`, as HAProxy accepted it.
    pub validated: Validated,
}

/// Why no valid config could be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config of a subset of the apps could not be rendered.
    #[error(transparent)]
    Render(#[from] render::Error),
    /// `haproxy -c` could not run.
    #[error(transparent)]
    Check(ValidateError),
    /// HAProxy rejects the config even without any app: the head or a global template is bad.
    #[error("haproxy rejects the config even without any app:\n{alerts}")]
    Global {
        /// HAProxy's alerts on the config without apps.
        alerts: String,
    },
}

/// Finds a valid config, leaving out the apps HAProxy rejects: first the apps its alerts
/// point at, then by bisection. `services` are sorted as `model::build` returns them;
/// `render` renders a subset, `validate` runs `haproxy -c` (e.g. [`super::validate_verbose`]).
/// When the full config is valid this costs one check and leaves nothing out.
///
/// # Errors
/// [`Error::Render`] when a subset cannot be rendered, [`Error::Check`] when HAProxy cannot
/// run, [`Error::Global`] when even the config without apps is rejected.
pub fn isolate<R, V>(services: &[Arc<Service>], render: R, validate: V) -> Result<Isolation, Error>
where
    R: Fn(&[Arc<Service>]) -> Result<Rendered, render::Error>,
    V: Fn(&Rendered) -> Result<ValidateOutput, ValidateError>,
{
    Search::new(services, render, validate).run(None, true)
}

/// [`isolate`] when the config of all `services` is already rendered (`full`): saves
/// rendering it again. `full` must be what `render(services)` returns.
///
/// # Errors
/// As [`isolate`].
pub fn isolate_rendered<R, V>(
    services: &[Arc<Service>],
    full: Rendered,
    render: R,
    validate: V,
) -> Result<Isolation, Error>
where
    R: Fn(&[Arc<Service>]) -> Result<Rendered, render::Error>,
    V: Fn(&Rendered) -> Result<ValidateOutput, ValidateError>,
{
    Search::new(services, render, validate).run(Some(full), true)
}

/// [`isolate`] without the attribution step: bisection only. For comparison and tests.
///
/// # Errors
/// As [`isolate`].
pub fn isolate_by_bisection<R, V>(
    services: &[Arc<Service>],
    render: R,
    validate: V,
) -> Result<Isolation, Error>
where
    R: Fn(&[Arc<Service>]) -> Result<Rendered, render::Error>,
    V: Fn(&Rendered) -> Result<ValidateOutput, ValidateError>,
{
    Search::new(services, render, validate).run(None, false)
}

/// A rejected check: the apps checked, the config and HAProxy's alerts.
struct Failure {
    /// App indexes, ascending.
    apps: Vec<usize>,
    rendered: Rendered,
    alerts: String,
}

enum Verdict {
    Valid(ValidateOutput),
    Invalid(Failure),
}

/// The state of one isolation.
struct Search<'s, R, V> {
    services: &'s [Arc<Service>],
    /// App -> its service indexes, apps in order of first service.
    apps: Vec<Vec<usize>>,
    /// Service -> its app.
    app_of: Vec<usize>,
    render: R,
    validate: V,
    /// Checks run so far.
    checks: usize,
}

impl<'s, R, V> Search<'s, R, V>
where
    R: Fn(&[Arc<Service>]) -> Result<Rendered, render::Error>,
    V: Fn(&Rendered) -> Result<ValidateOutput, ValidateError>,
{
    fn new(services: &'s [Arc<Service>], render: R, validate: V) -> Self {
        let mut apps: Vec<Vec<usize>> = Vec::new();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut app_of = Vec::with_capacity(services.len());
        for (i, service) in services.iter().enumerate() {
            let app = *by_id.entry(&service.app_id).or_insert_with(|| {
                apps.push(Vec::new());
                apps.len() - 1
            });
            apps[app].push(i);
            app_of.push(app);
        }
        Self {
            services,
            apps,
            app_of,
            render,
            validate,
            checks: 0,
        }
    }

    /// Runs both steps (`attribute`) or bisection only; `full` is the config of all services
    /// when the caller has it.
    fn run(mut self, full: Option<Rendered>, attribute: bool) -> Result<Isolation, Error> {
        let mut current: Vec<usize> = (0..self.apps.len()).collect();
        let mut rejected = Vec::new();
        let full = match full {
            Some(rendered) => rendered,
            None => (self.render)(&self.subset(&current))?,
        };
        let mut verdict = self.check_rendered(&current, full)?;
        if attribute {
            for _ in 0..ATTRIBUTION_ROUNDS {
                let Verdict::Invalid(failure) = &verdict else {
                    break;
                };
                let found = self.attributed(failure);
                if found.is_empty() {
                    break;
                }
                current.retain(|app| !found.iter().any(|(a, _)| a == app));
                rejected.extend(found.into_iter().map(|(_, r)| r));
                verdict = self.check(&current)?;
            }
        }
        let (kept, output) = match verdict {
            Verdict::Valid(output) => (current, output),
            Verdict::Invalid(failure) => self.bisect(failure, &mut rejected)?,
        };
        let kept_services = self.subset(&kept);
        let (warnings, other_warnings) = self.warnings(&kept, &output);
        Ok(Isolation {
            kept: kept_services,
            rejected,
            warnings,
            other_warnings,
            checks_run: self.checks,
            validated: output.validated,
        })
    }

    /// Renders and checks the services of `apps`.
    fn check(&mut self, apps: &[usize]) -> Result<Verdict, Error> {
        let rendered = (self.render)(&self.subset(apps))?;
        self.check_rendered(apps, rendered)
    }

    /// Checks `rendered`, the config of `apps`.
    fn check_rendered(&mut self, apps: &[usize], rendered: Rendered) -> Result<Verdict, Error> {
        self.checks += 1;
        match (self.validate)(&rendered) {
            Ok(output) => Ok(Verdict::Valid(output)),
            Err(ValidateError::Rejected { alerts }) => Ok(Verdict::Invalid(Failure {
                apps: apps.to_vec(),
                rendered,
                alerts,
            })),
            Err(other) => Err(Error::Check(other)),
        }
    }

    /// The services of `apps`, in input order.
    fn subset(&self, apps: &[usize]) -> Vec<Arc<Service>> {
        let mut indexes: Vec<usize> = apps.iter().flat_map(|&a| self.apps[a].clone()).collect();
        indexes.sort_unstable();
        indexes.iter().map(|&i| self.services[i].clone()).collect()
    }

    /// `(service index, service)` of `apps`, in input order, for an [`Index`].
    fn indexed(&self, apps: &[usize]) -> Vec<(usize, &'s Service)> {
        let mut indexes: Vec<usize> = apps.iter().flat_map(|&a| self.apps[a].clone()).collect();
        indexes.sort_unstable();
        indexes
            .into_iter()
            .map(|i| (i, &*self.services[i]))
            .collect()
    }

    /// Step 1: the apps the alerts of `failure` point at, each with its first alert.
    fn attributed(&self, failure: &Failure) -> Vec<(usize, RejectedApp)> {
        let index = Index::new(self.indexed(&failure.apps), &failure.rendered);
        let mut found: Vec<(usize, RejectedApp)> = Vec::new();
        for line in alert_lines(&failure.alerts) {
            for hit in index.attribute(line) {
                let app = self.app_of[hit.service];
                if !found.iter().any(|(a, _)| *a == app) {
                    let rules = index.rules_of(line, hit.service);
                    found.push((app, self.explain(app, Some(hit), line, &rules)));
                }
            }
        }
        found
    }

    /// Step 2. `failure` is a rejected check of the remaining apps. Returns the kept apps
    /// and their accepted check; adds every app it leaves out to `rejected`.
    fn bisect(
        &mut self,
        mut failure: Failure,
        rejected: &mut Vec<RejectedApp>,
    ) -> Result<(Vec<usize>, ValidateOutput), Error> {
        let mut rest = failure.apps.clone();
        if rest.is_empty() {
            return Err(Error::Global {
                alerts: failure.alerts,
            });
        }
        // Invariant: `kept + rest` fails with `failure`, and `kept` passes with `kept_ok`
        // (or is empty and not checked yet).
        let mut kept: Vec<usize> = Vec::new();
        let mut kept_ok: Option<ValidateOutput> = None;
        loop {
            // The shortest failing prefix `rest[..hi]`; `kept + rest[..hi - 1]` passes.
            let (mut lo, mut hi) = (0, rest.len());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                let set: Vec<usize> = kept.iter().chain(&rest[..mid]).copied().collect();
                match self.check(&set)? {
                    Verdict::Valid(output) => {
                        lo = mid;
                        kept_ok = Some(output);
                    }
                    Verdict::Invalid(f) => {
                        hi = mid;
                        failure = f;
                    }
                }
            }
            if kept_ok.is_none() {
                // Nothing passed yet (`kept` is empty and `hi` is 1): before blaming the first
                // app, make sure the config without apps passes.
                match self.check(&kept)? {
                    Verdict::Valid(output) => kept_ok = Some(output),
                    Verdict::Invalid(base) => {
                        return Err(Error::Global {
                            alerts: base.alerts,
                        })
                    }
                }
            }
            rejected.push(self.explain_failure(rest[hi - 1], &failure));
            kept.extend_from_slice(&rest[..hi - 1]);
            rest.drain(..hi);
            if rest.is_empty() {
                break;
            }
            let set: Vec<usize> = kept.iter().chain(&rest).copied().collect();
            match self.check(&set)? {
                Verdict::Valid(output) => {
                    kept.extend_from_slice(&rest);
                    return Ok((kept, output));
                }
                Verdict::Invalid(f) => failure = f,
            }
        }
        match kept_ok {
            Some(output) => Ok((kept, output)),
            // Unreachable: the search above checked `kept` before it broke out.
            None => match self.check(&kept)? {
                Verdict::Valid(output) => Ok((kept, output)),
                Verdict::Invalid(f) => Err(Error::Global { alerts: f.alerts }),
            },
        }
    }

    /// Why bisection left out `app`: the alert of `failure` that names it, else its first alert.
    fn explain_failure(&self, app: usize, failure: &Failure) -> RejectedApp {
        let index = Index::new(self.indexed(&failure.apps), &failure.rendered);
        let lines = alert_lines(&failure.alerts);
        for line in &lines {
            if let Some(hit) = index
                .attribute(line)
                .into_iter()
                .find(|h| self.app_of[h.service] == app)
            {
                let rules = index.rules_of(line, hit.service);
                return self.explain(app, Some(hit), line, &rules);
            }
        }
        let line = lines.first().copied().unwrap_or(failure.alerts.trim());
        self.explain(app, None, line, &[])
    }

    /// A [`RejectedApp`] for `app`, failing with `line` (about `hit`, when known; `rules` are
    /// the app's rules in the shared sections the line points at).
    fn explain(&self, app: usize, hit: Option<Hit<'_>>, line: &str, rules: &[&str]) -> RejectedApp {
        let services = &self.apps[app];
        let mut texts = vec![line, hit.and_then(|h| h.line).unwrap_or_default()];
        texts.extend_from_slice(rules);
        let mut labels: BTreeSet<&str> = services
            .iter()
            .flat_map(|&s| &self.services[s].labels)
            .filter(|(_, value)| value_shows_in(value, &texts))
            .map(|(name, _)| name.as_str())
            .collect();
        if labels.is_empty() {
            let ports: Vec<usize> = hit.map_or_else(|| services.clone(), |h| vec![h.service]);
            labels = ports
                .iter()
                .flat_map(|&s| &self.services[s].labels)
                .filter(|(name, _)| port_label(name).is_some())
                .map(|(name, _)| name.as_str())
                .collect();
        }
        RejectedApp {
            app_id: self.services[services[0]].app_id.clone(),
            labels: labels.into_iter().map(str::to_owned).collect(),
            error_line: without_pid(line),
        }
    }

    /// The warnings of the accepted check of `kept`, split into those about an app and the rest.
    fn warnings(&self, kept: &[usize], output: &ValidateOutput) -> (Vec<AppWarning>, Vec<String>) {
        let index = Index::new(self.indexed(kept), output.validated.rendered());
        let mut about_apps = Vec::new();
        let mut others = Vec::new();
        for line in &output.warnings {
            let hits = index.attribute(line);
            if hits.is_empty() {
                others.push(without_pid(line));
            }
            let mut apps: Vec<usize> = hits.iter().map(|h| self.app_of[h.service]).collect();
            apps.dedup();
            for app in apps {
                about_apps.push(AppWarning {
                    app_id: self.services[self.apps[app][0]].app_id.clone(),
                    line: without_pid(line),
                });
            }
        }
        (about_apps, others)
    }
}

/// The `[ALERT]` lines that say something specific (not HAProxy's closing summary).
fn alert_lines(alerts: &str) -> Vec<&str> {
    alerts
        .lines()
        .filter(|l| {
            !l.contains("Fatal errors found in configuration")
                && !l.contains("Error(s) found in configuration file")
                && !l.trim().is_empty()
        })
        .collect()
}

/// A line of HAProxy's output without its padding and process id (`[ALERT]    (123) : config
/// : ...` -> `[ALERT] config : ...`), so the same problem reads the same on every pass.
fn without_pid(line: &str) -> String {
    let line = line.trim();
    let Some(close) = line.find(']').filter(|_| line.starts_with('[')) else {
        return line.to_owned();
    };
    let (tag, rest) = line.split_at(close + 1);
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .filter(|(pid, _)| pid.bytes().all(|b| b.is_ascii_digit()))
        .map_or(rest, |(_, after)| {
            after.trim_start().trim_start_matches(':').trim_start()
        });
    format!("{tag} {rest}")
}

/// Whether a label value shows in one of `texts`: some line of it (at least 3 characters),
/// with its literal parts around `{placeholders}` all present as whole words.
fn value_shows_in(value: &str, texts: &[&str]) -> bool {
    value.lines().any(|line| {
        let line = line.trim();
        if line.len() < 3 {
            return false;
        }
        let parts = literal_parts(line);
        !parts.is_empty()
            && texts
                .iter()
                .any(|text| parts.iter().all(|part| contains_word(text, part)))
    })
}

/// The text of a template line between its `{placeholders}`, trimmed, non-empty.
fn literal_parts(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        parts.push(&rest[..open]);
        rest = rest[open..]
            .find('}')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    parts.push(rest);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether `needle` occurs in `text` not glued to a word character on either side.
fn contains_word(text: &str, needle: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        let glued_before = needle.starts_with(word) && before.is_some_and(word);
        let glued_after = needle.ends_with(word) && after.is_some_and(word);
        !glued_before && !glued_after
    })
}

#[cfg(test)]
mod tests;
