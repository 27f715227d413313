//! The model's per-app results, kept between live passes: an app whose JSON has the revision
//! it had last time gets the same services (or the same report) without being parsed or
//! modeled again, so an event that touches one app of 10,000 models one app.
//!
//! Reusing a result is sound when it depends on nothing but the app's JSON and the options,
//! which hold for the life of the process: host names resolve through a process-lifetime
//! cache, and the health memory of a task changes only when its app's JSON does. Two kinds of
//! app depend on other apps, and are modeled again on every pass instead: apps of a
//! deployment group (merged with their pair) and apps given service ports from the IP-per-task
//! range (the ports already handed out in this pass decide theirs).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::invalid::LeftOut;
use super::{deployment, Builder, Service};
use crate::marathon::types::App;

/// Per-app model results by app id; see the module docs.
#[derive(Debug, Default)]
pub struct ModelCache {
    /// By app id. Fx hashing: 10,000 lookups a pass, of keys that come from Marathon (whoever
    /// may deploy apps), not from the network.
    apps: FxHashMap<String, Entry>,
    /// The pass being modeled (entries not seen in a pass are dropped at its end).
    pass: u64,
    /// Apps reused and modeled in the last pass.
    stats: Reuse,
}

/// How many apps a pass took from the cache, and how many it modeled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Apps whose last result was reused.
    pub reused: usize,
    /// Apps parsed and modeled.
    pub modeled: usize,
}

#[derive(Debug)]
struct Entry {
    revision: u64,
    seen: u64,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Services(Vec<Arc<Service>>),
    LeftOut(LeftOut),
}

impl ModelCache {
    /// Starts a pass.
    pub fn start_pass(&mut self) {
        self.pass += 1;
        self.stats = Reuse::default();
    }

    /// Ends a pass: forgets the apps it did not list.
    pub fn end_pass(&mut self) -> Reuse {
        let pass = self.pass;
        self.apps.retain(|_, entry| entry.seen == pass);
        self.stats
    }

    /// Apps reused and modeled in the last pass.
    pub fn last(&self) -> Reuse {
        self.stats
    }

    /// Number of apps held.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether no app is held.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    fn hit(&mut self, id: &str, revision: u64) -> Option<&Outcome> {
        let pass = self.pass;
        let entry = self.apps.get_mut(id).filter(|e| e.revision == revision)?;
        entry.seen = pass;
        Some(&entry.outcome)
    }

    fn keep(&mut self, id: &str, revision: u64, outcome: Outcome) {
        let seen = self.pass;
        let entry = Entry {
            revision,
            seen,
            outcome,
        };
        self.apps.insert(id.to_owned(), entry);
    }
}

impl<'a> Builder<'_, 'a> {
    /// Models the next app, `id` at `revision`, in Marathon's order: the last result when
    /// `cache` holds this revision, else `decode()` (an app, or why the element is not one)
    /// modeled as [`Builder::push`] does, its result kept when it depends on this app alone.
    pub fn push_revision(
        &mut self,
        cache: &mut ModelCache,
        id: &str,
        revision: u64,
        decode: impl FnOnce() -> Result<App<'a>, LeftOut>,
    ) {
        if let Some(outcome) = cache.hit(id, revision) {
            match outcome {
                Outcome::Services(services) => self.services.extend(services.iter().cloned()),
                Outcome::LeftOut(out) => self.left_out.push(out.clone()),
            }
            cache.stats.reused += 1;
            return;
        }
        cache.stats.modeled += 1;
        let app = match decode() {
            Ok(app) => app,
            Err(out) => {
                cache.keep(id, revision, Outcome::LeftOut(out.clone()));
                self.left_out.push(out);
                return;
            }
        };
        let Some(app) = self.groups.take(app) else {
            return; // a deployment group's app: merged and modeled at the end of every pass
        };
        let before = (self.services.len(), self.left_out.len());
        let assigned = self.assigner.assigned();
        self.model(&deployment::Prepared::new(app));
        if self.assigner.assigned() != assigned || self.label_error.is_some() {
            return;
        }
        let outcome = match self.left_out.get(before.1) {
            Some(out) => Outcome::LeftOut(out.clone()),
            None => Outcome::Services(self.services[before.0..].to_vec()),
        };
        cache.keep(id, revision, outcome);
    }
}
