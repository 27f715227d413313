//! Marathon's events for a change of the `GET /v2/apps` body set by the test, so churn streams
//! (`gen-apps --churn`) drive the event stream as a real cluster would; one app of that body
//! for `GET /v2/apps/{id}`; and per-endpoint request and byte counts.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{broadcast_all, lock, Shared};

/// Sets `body` as the listing, indexes it, and sends the events from the old listing to it.
/// The old listing and index are freed before the events go out: freeing 27.7 MB is the
/// fake's own work, and a benchmark on the same machine should not time it as the client's.
pub(super) fn set_with_events(shared: &Shared, body: Bytes) -> usize {
    let old = lock(&shared.apps).clone();
    let events = events(&old, &body);
    let index = Some(Arc::new(index(&body)));
    let old_listing = std::mem::replace(&mut *lock(&shared.apps), body);
    let old_index = std::mem::replace(&mut *lock(&shared.index), index);
    drop((old, old_listing, old_index));
    send(shared, &events)
}

/// Sets `body` as the listing and sends the events from `before` to `after` (the apps that
/// changed, as they were and are), changing the index only for them.
pub(super) fn change_with_events(
    shared: &Shared,
    body: Bytes,
    before: &[u8],
    after: &[u8],
) -> usize {
    let events = events(before, after);
    {
        let mut index = lock(&shared.index);
        let updated = match index.take() {
            None => Arc::new(self::index(&body)),
            Some(mut map) => {
                update_index(Arc::make_mut(&mut map), before, after);
                map
            }
        };
        *index = Some(updated);
    }
    *lock(&shared.apps) = body;
    send(shared, &events)
}

/// Sends `events` to every open stream in one write; returns how many there were.
fn send(shared: &Shared, events: &[(&'static str, Value)]) -> usize {
    if !events.is_empty() {
        broadcast_all(shared, events);
    }
    events.len()
}

/// The apps of a `/v2/apps` body by id, in order.
fn apps(body: &[u8]) -> Vec<Map<String, Value>> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    match body.remove("apps") {
        Some(Value::Array(apps)) => apps
            .into_iter()
            .filter_map(|a| match a {
                Value::Object(a) => Some(a),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The app `id` of a `/v2/apps` body, as `GET /v2/apps/{id}` gives it.
pub(super) fn app_in_body(body: &[u8], id: &str) -> Option<Value> {
    apps(body)
        .into_iter()
        .find(|a| text(a, "id") == id)
        .map(Value::Object)
}

/// An app's definition: everything but its tasks and deployments.
fn definition(app: &Map<String, Value>) -> Map<String, Value> {
    let mut def = app.clone();
    def.remove("tasks");
    def.remove("deployments");
    def
}

fn tasks(app: &Map<String, Value>) -> Vec<Map<String, Value>> {
    app.get("tasks")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|t| t.as_object().cloned()).collect())
        .unwrap_or_default()
}

/// The apps of a `/v2/apps` body by id (for `GET /v2/apps/{id}` without parsing the body).
pub(super) fn index(body: &[u8]) -> HashMap<String, Value> {
    apps(body)
        .into_iter()
        .map(|a| (text(&a, "id").to_owned(), Value::Object(a)))
        .collect()
}

/// Changes an [`index`] from the apps of `before` (a body of the apps as they were) to those
/// of `after` (as they are now): an app only in `before` is gone.
pub(super) fn update_index(index: &mut HashMap<String, Value>, before: &[u8], after: &[u8]) {
    for id in self::index(before).into_keys() {
        index.remove(&id);
    }
    index.extend(self::index(after));
}

/// Marathon's events (type, fields besides `eventType` and `timestamp`) that turn `old` into
/// `new`: `api_post_event` for a new or changed definition, `status_update_event` for each task
/// started, changed or gone, `health_status_changed_event` when a task's health results
/// change, `app_terminated_event` for an app gone.
pub(super) fn events(old: &[u8], new: &[u8]) -> Vec<(&'static str, Value)> {
    let old = apps(old);
    let before: HashMap<&str, &Map<String, Value>> =
        old.iter().map(|a| (text(a, "id"), a)).collect();
    let new = apps(new);
    let mut out = Vec::new();
    for app in &new {
        let id = text(app, "id");
        let was = before.get(id).copied();
        if was.map(definition) != Some(definition(app)) {
            let uri = format!("/v2/apps{id}");
            let def = Value::Object(definition(app));
            out.push((
                "api_post_event",
                json!({ "appDefinition": def, "clientIp": "127.0.0.1", "uri": uri }),
            ));
        }
        let old_tasks = was.map(tasks).unwrap_or_default();
        let new_tasks = tasks(app);
        for task in &old_tasks {
            if !new_tasks.iter().any(|t| t.get("id") == task.get("id")) {
                out.push(task_event(app, task, "TASK_KILLED"));
            }
        }
        for task in &new_tasks {
            let prior = old_tasks.iter().find(|t| t.get("id") == task.get("id"));
            let state = task.get("state").and_then(Value::as_str);
            let mut core = |t: &Map<String, Value>| {
                let mut t = t.clone();
                t.remove("healthCheckResults");
                t
            };
            if prior.map(&mut core) != Some(core(task)) {
                out.push(task_event(app, task, state.unwrap_or("TASK_RUNNING")));
            }
            let health = |t: &Map<String, Value>| t.get("healthCheckResults").cloned();
            if prior.map(health).unwrap_or_default() != health(task) {
                out.push(health_event(app, task));
            }
        }
    }
    let ids: Vec<&str> = new.iter().map(|a| text(a, "id")).collect();
    for app in &old {
        let id = text(app, "id");
        if !ids.contains(&id) {
            for task in tasks(app) {
                out.push(task_event(app, &task, "TASK_KILLED"));
            }
            out.push(("app_terminated_event", json!({ "appId": id })));
        }
    }
    out
}

/// `status_update_event` for one task of `app`.
fn task_event(
    app: &Map<String, Value>,
    task: &Map<String, Value>,
    status: &str,
) -> (&'static str, Value) {
    let mut event = json!({
        "appId": text(app, "id"), "taskId": text(task, "id"), "taskStatus": status,
        "host": task.get("host"), "ports": task.get("ports").cloned().unwrap_or(json!([])),
        "slaveId": task.get("slaveId"), "version": app.get("version"),
    });
    if let (Some(ips), Some(map)) = (task.get("ipAddresses"), event.as_object_mut()) {
        map.insert("ipAddresses".into(), ips.clone());
    }
    ("status_update_event", event)
}

/// `health_status_changed_event` for one task of `app`.
fn health_event(app: &Map<String, Value>, task: &Map<String, Value>) -> (&'static str, Value) {
    let alive = task
        .get("healthCheckResults")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            !r.is_empty()
                && r.iter()
                    .all(|r| r.get("alive").and_then(Value::as_bool) == Some(true))
        });
    let event = json!({
        "appId": text(app, "id"), "taskId": text(task, "id"), "instanceId": text(task, "id"),
        "alive": alive, "version": app.get("version"),
    });
    ("health_status_changed_event", event)
}

/// Requests and response bytes served per endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Requests answered.
    pub requests: u64,
    /// Response body bytes.
    pub bytes: u64,
}

/// The endpoints counted by [`Served`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v2/apps` (the whole cluster).
    Apps,
    /// `GET /v2/apps/{id}` (one app).
    App,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_change_becomes_marathons_events() {
        let old = br#"{"apps":[{"id":"/a","version":"1","tasks":[{"id":"a1","host":"h","ports":[1]}]},{"id":"/gone","tasks":[{"id":"g1"}]}]}"#;
        let new = br#"{"apps":[{"id":"/a","version":"1","tasks":[{"id":"a2","host":"h","ports":[2],"healthCheckResults":[{"alive":true}]}]},{"id":"/new","tasks":[]}]}"#;
        let got: Vec<(&str, String)> = events(old, new)
            .into_iter()
            .map(|(t, v)| {
                (
                    t,
                    v.get("taskId")
                        .or(v.get("appId"))
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let kinds: Vec<&str> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            kinds,
            [
                "status_update_event",
                "status_update_event",
                "health_status_changed_event",
                "api_post_event",
                "status_update_event",
                "app_terminated_event"
            ],
            "{got:?}"
        );
        assert_eq!(got[0].1, "\"a1\"");
        assert_eq!(got[1].1, "\"a2\"");
        assert!(app_in_body(new, "/new").is_some());
        assert!(app_in_body(new, "/gone").is_none());
    }

    #[test]
    fn an_index_follows_a_change_given_as_the_changed_apps() {
        let body = br#"{"apps":[{"id":"/a","tasks":[]},{"id":"/b","tasks":[]},{"id":"/c"}]}"#;
        let mut idx = index(body);
        let before = br#"{"apps":[{"id":"/a","tasks":[]},{"id":"/c"}]}"#;
        let after = br#"{"apps":[{"id":"/a","tasks":[{"id":"a1"}]},{"id":"/d"}]}"#;
        update_index(&mut idx, before, after);
        let mut ids: Vec<&str> = idx.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["/a", "/b", "/d"]);
        assert_eq!(idx["/a"]["tasks"][0]["id"], "a1");
    }
}
