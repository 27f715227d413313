//! The live loop's render: keeps each app's rendered sections (userlists, frontends, backends
//! of its services) and the shared block (`marathon_http_in`, `marathon_http_appid_in`,
//! `marathon_https_in` or the per-vhost frontends, and the map files) from the last render,
//! and renders again only what the new services changed.
//!
//! What each part depends on, and so when it is rendered again:
//! - an app's sections: the app's services (all of them: a health check may borrow a sibling
//!   port) + templates + options. Reused when those are equal (`==`) to the last render's.
//! - the shared block: the selected services in order, without their tasks (no shared rule
//!   reads a task). Rendered again when an app came or went, or a changed app differs in
//!   anything but its tasks or in which of its services are selected.
//!
//! The text is assembled in the buffer of an older config that nothing holds any more; what
//! that buffer holds before the first place any render since changed is kept, not copied again
//! (a task change usually touches one backend, past the middle of a 10 MB config).
//!
//! The assembled config is byte-identical to [`super::render`]'s: the same functions render
//! the same parts, and the parts are joined in the same order (`tests/properties` checks it on
//! random service sets and random changes). An error is always that of a full render.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::service::Sections;
use super::{Error, Options, Rendered, Renderer};
use crate::model::Service;
use crate::templates::Templates;

/// Renders apps again only when their inputs changed; see the module docs.
#[derive(Debug, Default)]
pub struct Incremental {
    /// The last render, once [`Incremental::commit`] tied it to its services.
    state: Option<State>,
    /// The last render, before [`Incremental::commit`].
    pending: Option<(State, usize)>,
    /// The configs of the last renders with their generations, newest last. The oldest lends
    /// its buffer to the next assembly once nothing else holds it: a fresh 10 MB buffer is
    /// page-faulted in and zeroed on every pass, which took 1-8 ms of a 10k-app pass. What the
    /// buffer already holds up to the first change since its render is kept, not copied again.
    recent: VecDeque<(u64, Arc<String>)>,
    /// Where each recent render first changed the text of the one it updated.
    edits: VecDeque<Edit>,
}

/// A place in the config, in text order (the derived order): every app's userlists, the
/// shared block, every app's frontends, every app's backends, the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Userlists(usize),
    Shared,
    Frontends(usize),
    Backends(usize),
    End,
}

/// How render `generation` changed the text of render `base`: everything before `first` is
/// byte-identical (`None`: nothing is known to be, as after a full render or when apps came or
/// went, which moves every app's place).
#[derive(Debug, Clone, Copy)]
struct Edit {
    generation: u64,
    base: Option<u64>,
    first: Option<Place>,
}

/// How many [`Edit`]s are kept: enough to reach back to any buffer in `recent`.
const EDITS: usize = 8;

/// How many past configs [`Incremental`] keeps: the written config and the served one (the
/// status pages' copy, a newer one after an unchanged pass) are held elsewhere; the third is
/// free to reuse.
const RECENT_CONFIGS: usize = 3;

/// What changed between two renders of one [`Incremental`].
#[derive(Debug, Default)]
pub struct Delta {
    /// This render's number (unique in the process).
    pub generation: u64,
    /// The render this one is relative to; `None` after a full render.
    pub base: Option<u64>,
    /// Apps now rendered that were not before.
    pub added: Vec<String>,
    /// Apps rendered before and not now.
    pub removed: Vec<String>,
    /// Apps whose services changed.
    pub changed: Vec<String>,
    /// Whether the shared block (http/https/appid frontends, maps) was rendered again.
    pub shared_changed: bool,
    /// Whether no app came or went and each changed app differs only in its tasks (the
    /// Runtime API can apply such a change).
    pub servers_only: bool,
    /// Whether every backend name is unique (then the sections of [`Delta::before`] and
    /// [`Delta::after`] are all the config's sections with these headers).
    pub unique_backends: bool,
    /// The changed apps' sections as rendered before, in app order.
    pub before: String,
    /// The changed apps' sections as rendered now, in app order.
    pub after: String,
    /// Bytes of the config that a reused buffer already held (from an older render) and that
    /// were not copied again.
    pub kept: usize,
}

impl Delta {
    /// The old and new text of everything that changed, when that is all that changed
    /// relative to render `base`: planning over these two equals planning over the whole
    /// configs.
    pub fn texts_since(&self, base: u64) -> Option<(&str, &str)> {
        let local = self.base == Some(base)
            && self.servers_only
            && !self.shared_changed
            && self.unique_backends;
        local.then_some((&self.before, &self.after))
    }
}

/// One render's parts, and the inputs they were rendered from.
#[derive(Debug)]
struct State {
    generation: u64,
    services: Arc<Vec<Arc<Service>>>,
    templates: Templates,
    options: Options,
    /// One entry per app, in service order.
    apps: Vec<App>,
    /// Everything between the userlists and the services' frontends.
    shared: String,
    domain_map: String,
    app_map: String,
    unique_backends: bool,
}

/// One app's services (a range of `State::services`) and their rendered sections.
#[derive(Debug)]
struct App {
    range: Range<usize>,
    sections: Sections,
}

/// Numbers renders across every [`Incremental`] of the process.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The app ranges of sorted services.
fn app_ranges(services: &[Arc<Service>]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 1..=services.len() {
        if i == services.len() || services[i].app_id != services[start].app_id {
            ranges.push(start..i);
            start = i;
        }
    }
    ranges
}

/// The app ranges of `services`, which are those of the last render's `old` services when
/// the app ids line up position by position (the usual case: no app came or went). A service
/// the model did not touch is the same allocation, so mostly no id is read at all.
fn app_ranges_since(
    old: &[Arc<Service>],
    old_apps: &[App],
    services: &[Arc<Service>],
) -> Vec<Range<usize>> {
    let lined_up = old.len() == services.len()
        && old
            .iter()
            .zip(services)
            .all(|(a, b)| Arc::ptr_eq(a, b) || a.app_id == b.app_id);
    match lined_up {
        true => old_apps.iter().map(|app| app.range.clone()).collect(),
        false => app_ranges(services),
    }
}

/// Whether two apps' services are equal: the same allocations, or equal values.
fn same_services(a: &[Arc<Service>], b: &[Arc<Service>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
}

/// Whether two services give the shared block the same input: equal but for the fields only
/// their own backend section reads (tasks, balance, stickiness, health check, network ACL,
/// proxy paths; and the raw labels, which nothing renders), both or neither having tasks.
/// The shared block reads, of a selected service: its app id, port, vhost, path, auth,
/// redirect, bind address and options, certificate, weight, mode and template overrides.
fn same_shared_inputs(a: &Service, b: &Service) -> bool {
    if a.backends.is_empty() != b.backends.is_empty() {
        return false;
    }
    let strip = |s: &Service| Service {
        backends: Vec::new(),
        balance: a.balance.clone(),
        sticky: a.sticky,
        health_check: a.health_check.clone(),
        healthcheck_port_index: a.healthcheck_port_index,
        network_allowed: a.network_allowed.clone(),
        proxypath: a.proxypath.clone(),
        revproxypath: a.revproxypath.clone(),
        redirpath: a.redirpath.clone(),
        labels: Vec::new(),
        ..s.clone()
    };
    strip(a) == strip(b)
}

/// Whether two services are equal but for their tasks, and both or neither have any.
fn same_but_servers(a: &Service, b: &Service) -> bool {
    if a.backends.is_empty() != b.backends.is_empty() {
        return false;
    }
    let strip = |s: &Service| Service {
        backends: Vec::new(),
        ..s.clone()
    };
    strip(a) == strip(b)
}

impl Incremental {
    /// An empty cache: the first render renders everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders `services` (sorted as `model::build` returns them), reusing what the last
    /// committed render of equal inputs made. Call [`Incremental::commit`] with the same
    /// services to keep this render as the base of the next.
    ///
    /// # Errors
    /// The [`Error`] a full [`super::render`] of the same input returns.
    pub fn render(
        &mut self,
        services: &[Arc<Service>],
        templates: &Templates,
        options: &Options,
    ) -> Result<Rendered, Error> {
        self.pending = None;
        let renderer = Renderer {
            templates,
            options,
            workers: 1,
            min_chunk: usize::MAX,
        };
        let base = self
            .state
            .take()
            .filter(|s| s.templates == *templates && s.options == *options);
        let made = match base {
            Some(base) => renderer.update(base, services),
            None => renderer.full(services),
        };
        let Ok((state, delta)) = made else {
            // The error of a full render: the same input, the same (first) error.
            return super::render(services, templates, options);
        };
        let (mut delta, first) = delta;
        self.record(Edit {
            generation: state.generation,
            base: delta.base,
            first,
        });
        let (buffer, kept) = match self.free_buffer() {
            Some((generation, buffer)) => (buffer, self.first_change_since(generation, &delta)),
            None => (String::new(), None),
        };
        let (text, kept) = state.assemble(renderer.head()?, buffer, kept);
        delta.kept = kept;
        let config = Arc::new(text);
        if self.recent.len() == RECENT_CONFIGS {
            self.recent.pop_front();
        }
        self.recent
            .push_back((state.generation, Arc::clone(&config)));
        let rendered = Rendered {
            config,
            domain_map: state.domain_map.clone(),
            app_map: state.app_map.clone(),
            incremental: Some(Arc::new(delta)),
        };
        self.pending = Some((state, services.as_ptr() as usize));
        Ok(rendered)
    }

    /// A past config that nothing else holds any more, and its generation.
    fn free_buffer(&mut self) -> Option<(u64, String)> {
        let free = self
            .recent
            .iter()
            .position(|(_, c)| Arc::strong_count(c) == 1)?;
        let (generation, config) = self.recent.remove(free)?;
        Arc::try_unwrap(config).ok().map(|text| (generation, text))
    }

    fn record(&mut self, edit: Edit) {
        if self.edits.len() == EDITS {
            self.edits.pop_front();
        }
        self.edits.push_back(edit);
    }

    /// The first place where render `delta.generation` may differ from render `old`: the
    /// earliest first change along the chain of updates between them. `None` when the chain is
    /// broken (a full render, apps that came or went, an edit no longer kept).
    fn first_change_since(&self, old: u64, delta: &Delta) -> Option<Place> {
        let mut at = delta.generation;
        let mut first = Place::End;
        while at != old {
            let edit = self.edits.iter().rev().find(|e| e.generation == at)?;
            first = first.min(edit.first?);
            at = edit.base?;
        }
        Some(first)
    }

    /// Keeps the last render as the base of the next: `services` must be the ones it
    /// rendered (the same allocation: a `Vec` moved into the `Arc`), else it is dropped and
    /// the next render renders everything.
    pub fn commit(&mut self, services: &Arc<Vec<Arc<Service>>>) {
        self.state = match self.pending.take() {
            Some((mut state, at)) if at == services.as_ptr() as usize => {
                state.services = services.clone();
                Some(state)
            }
            _ => None,
        };
    }
}

impl State {
    /// The config text, in the order of [`Renderer::assemble`], in `config`, an old config's
    /// buffer whose text is this one's before `kept` (`None`: nothing of it is). Returns the
    /// text and how many of its bytes were kept rather than copied.
    fn assemble(&self, head: &str, mut config: String, kept: Option<Place>) -> (String, usize) {
        let sections: usize = self.apps.iter().map(|a| a.sections.len()).sum();
        let len = head.len() + sections + self.shared.len();
        if config.capacity() < len {
            // Some room, so that the buffer fits the next, slightly longer configs when it is
            // reused. (Growing a reused buffer instead would copy its whole capacity.)
            config = String::with_capacity(len + len / 32);
        }
        let mut from = kept.unwrap_or(Place::Userlists(0));
        let before = |from: Place| move |(place, _): &(Place, &str)| *place < from;
        let prefix: usize = self
            .parts()
            .take_while(before(from))
            .map(|(_, t)| t.len())
            .sum();
        let offset = head.len() + prefix;
        // The buffer is too short only when it was replaced by a larger, empty one above.
        let kept = match kept.is_some() && offset <= config.len() && config.is_char_boundary(offset)
        {
            true => {
                config.truncate(offset);
                offset
            }
            false => {
                from = Place::Userlists(0);
                config.clear();
                config.push_str(head);
                0
            }
        };
        for (_, text) in self.parts().skip_while(before(from)) {
            config.push_str(text);
        }
        (config, kept)
    }

    /// The parts after the head, in text order.
    fn parts(&self) -> impl Iterator<Item = (Place, &str)> {
        let apps = self.apps.iter().enumerate();
        let userlists = apps
            .clone()
            .map(|(i, a)| (Place::Userlists(i), &*a.sections.userlists));
        let frontends = apps
            .clone()
            .map(|(i, a)| (Place::Frontends(i), &*a.sections.frontends));
        let backends = apps.map(|(i, a)| (Place::Backends(i), &*a.sections.backends));
        userlists
            .chain([(Place::Shared, self.shared.as_str())])
            .chain(frontends)
            .chain(backends)
    }
}

/// A failed part: the full render reports the error.
struct Failed;

/// A render's state, what changed, and the first place where its text may differ from the
/// render it updated (`None`: anywhere).
type Made = (State, (Delta, Option<Place>));

/// The first of an app's sections that changed (its index is `index`), or [`Place::End`].
fn first_difference(index: usize, was: &Sections, now: &Sections) -> Place {
    if was.userlists != now.userlists {
        Place::Userlists(index)
    } else if was.frontends != now.frontends {
        Place::Frontends(index)
    } else if was.backends != now.backends {
        Place::Backends(index)
    } else {
        Place::End
    }
}

impl Renderer<'_> {
    /// Renders every part.
    fn full(&self, services: &[Arc<Service>]) -> Result<Made, Failed> {
        let apps = app_ranges(services)
            .into_iter()
            .map(|range| self.app(services, range))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state(services, apps)?;
        state.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let delta = Delta {
            generation: state.generation,
            shared_changed: true,
            unique_backends: state.unique_backends,
            ..Delta::default()
        };
        Ok((state, (delta, None)))
    }

    /// Renders the apps whose services differ from `base`'s, and the shared block if needed.
    /// Old and new apps are both in app-id order, so one merge walk pairs them; a service
    /// the model did not touch is the same allocation, so most apps compare by pointer.
    fn update(&self, mut base: State, services: &[Arc<Service>]) -> Result<Made, Failed> {
        let old = base.services.clone();
        let mut delta = Delta {
            base: Some(base.generation),
            servers_only: true,
            ..Delta::default()
        };
        let mut apps = Vec::with_capacity(base.apps.len() + 1);
        // Whether the shared block's inputs are as in `base` (then it is reused).
        let mut shared_same = true;
        let mut first = Place::End;
        let ranges = app_ranges_since(&old, &base.apps, services);
        let mut was_apps = base.apps.iter_mut().peekable();
        for range in ranges {
            let app_id = &services[range.start].app_id;
            let was = loop {
                // The same first service (the model did not touch the app): the same app.
                let same = |w: &&mut App| Arc::ptr_eq(&old[w.range.start], &services[range.start]);
                if let Some(was) = was_apps.next_if(same) {
                    break Some(was);
                }
                let Some(was) = was_apps.next_if(|w| old[w.range.start].app_id <= *app_id) else {
                    break None;
                };
                match old[was.range.start].app_id == *app_id {
                    true => break Some(was),
                    false => delta.removed.push(old[was.range.start].app_id.clone()),
                }
            };
            let Some(was) = was else {
                delta.added.push(app_id.clone());
                apps.push(self.app(services, range)?);
                continue;
            };
            let (before, now) = (&old[was.range.clone()], &services[range.clone()]);
            if same_services(before, now) {
                let sections = std::mem::take(&mut was.sections);
                apps.push(App { range, sections });
                continue;
            }
            delta.changed.push(app_id.clone());
            let pairs = || before.iter().zip(now);
            let same_ports = before.len() == now.len();
            delta.servers_only &= same_ports && pairs().all(|(a, b)| same_but_servers(a, b));
            shared_same &= same_ports && pairs().all(|(a, b)| same_shared_inputs(a, b));
            let app = self.app(services, range)?;
            first = first.min(first_difference(apps.len(), &was.sections, &app.sections));
            push_sections(&mut delta.before, &was.sections);
            push_sections(&mut delta.after, &app.sections);
            apps.push(app);
        }
        delta
            .removed
            .extend(was_apps.map(|w| old[w.range.start].app_id.clone()));
        let same_apps = delta.added.is_empty() && delta.removed.is_empty();
        delta.servers_only &= same_apps;
        shared_same &= same_apps;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        delta.generation = generation;
        let mut state = if shared_same {
            State {
                apps,
                generation,
                ..base
            }
        } else {
            delta.shared_changed = true;
            let state = self.state(services, apps)?;
            State {
                generation,
                ..state
            }
        };
        state.services = Arc::default();
        delta.unique_backends = state.unique_backends;
        // Apps that came or went move every app's place: nothing before a place is known.
        let first = match delta.shared_changed {
            true => first.min(Place::Shared),
            false => first,
        };
        Ok((state, (delta, same_apps.then_some(first))))
    }

    /// Renders the sections of one app's services (`range`: its services are each other's
    /// siblings, and only they are).
    fn app(&self, services: &[Arc<Service>], range: Range<usize>) -> Result<App, Failed> {
        let own = &services[range.clone()];
        let selected = self.select(own);
        let siblings = vec![0..own.len(); own.len()];
        let sections = self
            .sections(&selected, own, &siblings)
            .map_err(|_| Failed)?;
        Ok(App { range, sections })
    }

    /// A state with the shared block rendered from every selected service.
    fn state(&self, services: &[Arc<Service>], apps: Vec<App>) -> Result<State, Failed> {
        let head_ok = self.head().is_ok();
        let ssl_certs = self.ssl_certs();
        let mut frontends = self.frontend_heads(&ssl_certs).map_err(|_| Failed)?;
        let selected = self.select(services);
        let mut names = std::collections::HashSet::with_capacity(selected.len());
        let unique_backends = selected.iter().all(|s| names.insert(s.backend.as_str()));
        let mut shared = self.shared_rules(&selected).map_err(|_| Failed)?;
        self.push_vhost_rules(&mut frontends, &mut shared)
            .map_err(|_| Failed)?;
        let mut text = String::with_capacity(
            frontends.http.len() + frontends.https.len() + shared.appid_frontends.len(),
        );
        if self.options.bind_http_https {
            text.push_str(&frontends.http);
        }
        text.push_str(&shared.appid_frontends);
        if self.options.bind_http_https {
            text.push_str(&frontends.https);
            if self.options.group_https_by_vhost {
                self.grouped_vhost_frontends(&mut text, &mut shared.rules.grouped, &ssl_certs)
                    .map_err(|_| Failed)?;
            }
        }
        if !head_ok {
            return Err(Failed);
        }
        Ok(State {
            generation: 0,
            services: Arc::default(),
            templates: self.templates.clone(),
            options: self.options.clone(),
            apps,
            shared: text,
            domain_map: shared.rules.maps.domain.text(),
            app_map: shared.rules.maps.app.text(),
            unique_backends,
        })
    }
}

/// Appends an app's sections, in config order, for the plan.
fn push_sections(out: &mut String, sections: &Sections) {
    out.push_str(&sections.userlists);
    out.push_str(&sections.frontends);
    out.push_str(&sections.backends);
}
