//! The incremental live model: the apps as Marathon listed them, kept between passes and
//! changed by events, so an event costs at most a one-app fetch instead of the whole cluster.
//!
//! The store holds each app's JSON as Marathon sent it, in Marathon's order. A pass renders
//! the listing the store spells (`{"apps":[…]}`) through the same parse -> model -> render path
//! as a full fetch, so the config is the one a full fetch of the same state gives, and live
//! mode's hardening (invalid apps left out, last good services, port holders) is unchanged.
//!
//! Rules (README, "Incremental live model"): a task event of a known app whose version the
//! store has and that has no health checks is applied from its payload; any other event that
//! names an app the store knows fetches that one app; `app_terminated_event` removes the app.
//! Everything the store cannot prove current falls back to a full fetch: a new app (its place
//! in Marathon's order decides port assignment), a group change, an unknown or unparsable
//! event, a failed or odd one-app fetch, or a store that was never loaded.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::run::AppJson;

/// Task states after which Marathon no longer lists the task.
const GONE: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
    "TASK_DROPPED",
    "TASK_UNKNOWN",
];

/// What applying an event needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The store is up to date with the event.
    Applied,
    /// The event names this app, but does not carry everything the config needs: fetch it.
    Fetch(String),
    /// A deployment changed these apps (a scale changes `instances` without an
    /// `api_post_event`): fetch each.
    FetchEach(Vec<String>),
    /// The store cannot prove it is current: fetch the whole cluster (the reason is logged).
    Full(&'static str),
}

/// The apps of the last full fetch, changed by events since.
#[derive(Debug, Default)]
pub struct AppStore {
    /// Each app's JSON, in Marathon's order.
    apps: Vec<Arc<AppJson>>,
    /// App id -> position in `apps`.
    index: HashMap<String, usize>,
    /// Whether a full listing was loaded (and nothing made it doubtful since).
    loaded: bool,
    /// The last revision handed out.
    revision: u64,
}

#[derive(Deserialize)]
struct Listing<'a> {
    #[serde(borrow)]
    apps: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct OneApp {
    app: Box<RawValue>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default, rename = "healthChecks")]
    health_checks: Option<Vec<serde::de::IgnoredAny>>,
}

impl AppStore {
    /// Whether the store holds a full listing it can build on.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Forgets everything: the next pass must fetch the whole cluster.
    pub fn invalidate(&mut self) {
        self.loaded = false;
    }

    /// Number of apps held.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether no app is held.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Replaces the store with a full `/v2/apps` listing. A listing that does not parse (the
    /// pass reports it) or lists an app twice leaves the store unloaded. An app whose JSON is
    /// the same as before keeps its revision, so a resync does not model it again.
    pub fn load(&mut self, body: &[u8]) {
        let old_apps = std::mem::take(&mut self.apps);
        let old_index = std::mem::take(&mut self.index);
        self.loaded = false;
        // A `&str` reader skips UTF-8 checks inside strings: checked once here instead.
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        let Ok(listing) = serde_json::from_str::<Listing>(text) else {
            return;
        };
        self.apps.reserve(listing.apps.len());
        for (at, raw) in listing.apps.into_iter().enumerate() {
            // Most apps are unchanged and where they were: no need to read their id again.
            let same = |old: &&Arc<AppJson>| old.json.get() == raw.get();
            let app = match old_apps.get(at).filter(same) {
                Some(old) => old.clone(),
                None => {
                    let Some(id) = head(raw).and_then(|h| h.id) else {
                        return;
                    };
                    let moved = old_index.get(&id).map(|&i| &old_apps[i]).filter(same);
                    match moved {
                        Some(old) => old.clone(),
                        None => self.stored(id, raw.to_owned()),
                    }
                }
            };
            if self.index.insert(app.id.clone(), self.apps.len()).is_some() {
                return;
            }
            self.apps.push(app);
        }
        self.loaded = true;
    }

    /// The apps as the model takes them, in Marathon's order.
    pub fn snapshot(&self) -> Vec<Arc<AppJson>> {
        self.apps.clone()
    }

    /// The listing the store spells, in Marathon's order: what `/v2/apps` would answer now.
    pub fn body(&self) -> Vec<u8> {
        let size: usize = self.apps.iter().map(|a| a.json.get().len() + 1).sum();
        let mut body = Vec::with_capacity(size + 16);
        body.extend_from_slice(b"{\"apps\":[");
        for (i, app) in self.apps.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(app.json.get().as_bytes());
        }
        body.extend_from_slice(b"]}");
        body
    }

    /// `json` under a new revision.
    fn stored(&mut self, id: String, json: Box<RawValue>) -> Arc<AppJson> {
        self.revision += 1;
        Arc::new(AppJson {
            id,
            json,
            revision: self.revision,
        })
    }

    /// Replaces the JSON of the app at `at`.
    fn replace(&mut self, at: usize, json: Box<RawValue>) {
        let id = self.apps[at].id.clone();
        self.apps[at] = self.stored(id, json);
    }

    /// Applies one event's JSON data.
    pub fn apply(&mut self, data: &str) -> Change {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(data) else {
            return Change::Full("an event that does not parse");
        };
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let known = |id: &Option<String>| id.as_ref().is_some_and(|id| self.index.contains_key(id));
        match text("eventType").as_deref() {
            Some("status_update_event") => self.task_update(&event),
            Some("health_status_changed_event") => match text("appId") {
                id @ Some(_) if known(&id) => Change::Fetch(id.unwrap_or_default()),
                _ => Change::Full("health of an app not in the model"),
            },
            Some("instance_changed_event") => match text("runSpecId") {
                id @ Some(_) if known(&id) => Change::Fetch(id.unwrap_or_default()),
                _ => Change::Full("an instance of an app not in the model"),
            },
            Some("api_post_event") => {
                let id = event
                    .get("appDefinition")
                    .and_then(|d| d.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match id {
                    id @ Some(_) if known(&id) => Change::Fetch(id.unwrap_or_default()),
                    _ => Change::Full("a new app or a definition without an id"),
                }
            }
            Some("app_terminated_event") => match text("appId") {
                Some(id) => {
                    self.remove(&id);
                    Change::Applied
                }
                None => Change::Full("app_terminated_event without appId"),
            },
            Some("group_change_success") => Change::Full("a group change"),
            Some("deployment_info" | "deployment_success" | "deployment_failed") => {
                self.deployment(&event)
            }
            _ => Change::Full("an event type the model does not apply"),
        }
    }

    /// Sets one app from the body of `GET /v2/apps/{id}` (`None`: 404, the app is gone).
    pub fn set_app(&mut self, id: &str, body: Option<&[u8]>) -> Change {
        let Some(body) = body else {
            self.remove(id);
            return Change::Applied;
        };
        let Ok(one) = serde_json::from_slice::<OneApp>(body) else {
            return Change::Full("a one-app body that does not parse");
        };
        if head(&one.app).and_then(|h| h.id).as_deref() != Some(id) {
            return Change::Full("a one-app body for another id");
        }
        match self.index.get(id) {
            Some(&at) => {
                self.replace(at, one.app);
                Change::Applied
            }
            None => Change::Full("a fetched app not in the model"),
        }
    }

    /// `status_update_event`: adds, updates or removes one task of a known app.
    fn task_update(&mut self, event: &Map<String, Value>) -> Change {
        let text = |key: &str| event.get(key).and_then(Value::as_str);
        let (Some(app_id), Some(task_id), Some(state)) =
            (text("appId"), text("taskId"), text("taskStatus"))
        else {
            return Change::Full("a task event without appId, taskId or taskStatus");
        };
        let gone = GONE.contains(&state);
        let Some(&at) = self.index.get(app_id) else {
            return match gone {
                // Marathon's listing has no such task either.
                true => Change::Applied,
                false => Change::Full("a task of an app not in the model"),
            };
        };
        let Some(head) = head(&self.apps[at].json) else {
            return Change::Fetch(app_id.to_owned());
        };
        let checked = head.health_checks.is_some_and(|c| !c.is_empty());
        // A task of a version the store has not seen means a definition change it missed; a
        // started task of a health-checked app needs its health results. A task that ended
        // simply leaves the listing.
        if !gone && (checked || head.version.as_deref() != text("version")) {
            return Change::Fetch(app_id.to_owned());
        }
        let Ok(mut app) = serde_json::from_str::<Map<String, Value>>(self.apps[at].json.get())
        else {
            return Change::Fetch(app_id.to_owned());
        };
        let tasks = app
            .entry("tasks")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(tasks) = tasks else {
            return Change::Fetch(app_id.to_owned());
        };
        let position = tasks
            .iter()
            .position(|t| t.get("id").and_then(Value::as_str) == Some(task_id));
        match (gone, position) {
            (true, Some(i)) => {
                tasks.remove(i);
            }
            (true, None) => return Change::Applied,
            (false, Some(i)) => update_task(&mut tasks[i], event, state),
            (false, None) => {
                // Servers are ordered by (host, port), ties in Marathon's task order, which an
                // event does not tell: a task on a host that already runs one of the app's
                // tasks is placed by fetching the app.
                let host = text("host");
                let shares_host = |t: &Value| t.get("host").and_then(Value::as_str) == host;
                if host.is_some() && tasks.iter().any(shares_host) {
                    return Change::Fetch(app_id.to_owned());
                }
                tasks.push(new_task(event, app_id, task_id, state))
            }
        }
        match serde_json::value::to_raw_value(&app) {
            Ok(raw) => {
                self.replace(at, raw);
                Change::Applied
            }
            Err(_) => Change::Fetch(app_id.to_owned()),
        }
    }

    /// A deployment event: fetch every app its plan names, or everything when it names none or
    /// one the model does not have.
    fn deployment(&self, event: &Map<String, Value>) -> Change {
        let mut apps: Vec<String> = Vec::new();
        let steps = event
            .get("plan")
            .and_then(|p| p.get("steps"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(event.get("currentStep"));
        for step in steps {
            let actions = step.get("actions").and_then(Value::as_array);
            for action in actions.into_iter().flatten() {
                if let Some(app) = action.get("app").and_then(Value::as_str) {
                    if !apps.iter().any(|a| a == app) {
                        apps.push(app.to_owned());
                    }
                }
            }
        }
        if apps.is_empty() {
            return Change::Full("a deployment event that names no app");
        }
        if apps.iter().any(|a| !self.index.contains_key(a)) {
            return Change::Full("a deployment of an app not in the model");
        }
        Change::FetchEach(apps)
    }

    /// Removes an app (and re-indexes the ones after it).
    fn remove(&mut self, id: &str) {
        if let Some(at) = self.index.remove(id) {
            self.apps.remove(at);
            for (i, app) in self.apps.iter().enumerate().skip(at) {
                self.index.insert(app.id.clone(), i);
            }
        }
    }
}

/// The fields of an app the event rules read.
fn head(raw: &RawValue) -> Option<Head> {
    serde_json::from_str(raw.get()).ok()
}

/// A listed task from a `status_update_event`: the fields the model reads.
fn new_task(event: &Map<String, Value>, app_id: &str, task_id: &str, state: &str) -> Value {
    let mut task = Map::new();
    task.insert("id".into(), task_id.into());
    task.insert("appId".into(), app_id.into());
    task.insert("state".into(), state.into());
    let mut task = Value::Object(task);
    update_task(&mut task, event, state);
    task
}

/// Copies what a `status_update_event` says about a task onto its listed form.
fn update_task(task: &mut Value, event: &Map<String, Value>, state: &str) {
    let Value::Object(task) = task else { return };
    task.insert("state".into(), state.into());
    for key in ["host", "ports", "ipAddresses", "version", "slaveId"] {
        if let Some(value) = event.get(key) {
            task.insert(key.into(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
