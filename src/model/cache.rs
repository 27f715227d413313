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

/// Per-app model results; see the module docs. A revision is unique to one JSON of one app in
/// the process, so it alone finds a result. Results are kept in the order of the pass that
/// made them: in the next pass an app is usually at the same position, and is found there
/// without hashing anything.
#[derive(Debug, Default)]
pub struct ModelCache {
    /// The last pass's results, by the app's position in that pass.
    last: Vec<Option<Entry>>,
    /// This pass's results, by position.
    next: Vec<Option<Entry>>,
    /// Revision -> position in `last`, made the first time an app is not where it was.
    moved: Option<FxHashMap<u64, usize>>,
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
    /// The app id, to tell an app changed in place from apps that moved.
    id: String,
    revision: u64,
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
        self.next.clear();
        self.next.reserve(self.last.len());
        self.stats = Reuse::default();
    }

    /// Ends a pass: forgets the apps it did not list. The two lists trade places, so a pass
    /// fills one that already has room for 10,000 apps instead of growing a new one.
    pub fn end_pass(&mut self) -> Reuse {
        std::mem::swap(&mut self.last, &mut self.next);
        self.next.clear();
        self.moved = None;
        self.stats
    }

    /// Apps reused and modeled in the last pass.
    pub fn last(&self) -> Reuse {
        self.stats
    }

    /// Number of apps held.
    pub fn len(&self) -> usize {
        self.last.iter().flatten().count()
    }

    /// Whether no app is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the last result of `revision`, for app `id` at `position` of this pass.
    fn take(&mut self, position: usize, id: &str, revision: u64) -> Option<Entry> {
        if let Some(here) = self.last.get(position).and_then(Option::as_ref) {
            if here.revision == revision {
                return self.last[position].take();
            }
            if here.id == id {
                return None; // the app changed where it was: nothing moved
            }
        }
        let last = &self.last;
        let moved = self.moved.get_or_insert_with(|| {
            let held = last.iter().enumerate();
            held.filter_map(|(i, e)| Some((e.as_ref()?.revision, i)))
                .collect()
        });
        let at = *moved.get(&revision)?;
        self.last[at].take()
    }

    /// Records this pass's result of the next app (`None`: not kept).
    fn keep(&mut self, entry: Option<Entry>) {
        self.next.push(entry);
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
        let position = cache.next.len();
        if let Some(entry) = cache.take(position, id, revision) {
            match &entry.outcome {
                Outcome::Services(services) => self.services.extend(services.iter().cloned()),
                Outcome::LeftOut(out) => self.left_out.push(out.clone()),
            }
            cache.stats.reused += 1;
            cache.keep(Some(entry));
            return;
        }
        cache.stats.modeled += 1;
        let outcome = self.model_revision(decode);
        let id = id.to_owned();
        cache.keep(outcome.map(|outcome| Entry {
            id,
            revision,
            outcome,
        }));
    }

    /// Models `decode()`'s app; its result when it depends on this app alone.
    fn model_revision(
        &mut self,
        decode: impl FnOnce() -> Result<App<'a>, LeftOut>,
    ) -> Option<Outcome> {
        let app = match decode() {
            Ok(app) => app,
            Err(out) => {
                self.left_out.push(out.clone());
                return Some(Outcome::LeftOut(out));
            }
        };
        // A deployment group's app: merged and modeled at the end of every pass.
        let app = self.groups.take(app)?;
        let before = (self.services.len(), self.left_out.len());
        let assigned = self.assigner.assigned();
        self.model(&deployment::Prepared::new(app));
        if self.assigner.assigned() != assigned || self.label_error.is_some() {
            return None;
        }
        Some(match self.left_out.get(before.1) {
            Some(out) => Outcome::LeftOut(out.clone()),
            None => Outcome::Services(self.services[before.0..].to_vec()),
        })
    }
}
