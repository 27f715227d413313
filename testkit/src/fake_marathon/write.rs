//! Marathon's write API on the fake: create, update/scale, delete apps, kill tasks (with
//! `scale`), list deployments; each change goes out as Marathon's events on `/v2/events`.
//!
//! Changes converge in the background like Marathon's deployments: [`converge`] starts or
//! stops real task servers until the app runs `instances` tasks, gives health results
//! after the health delay, then ends the deployment with `deployment_success`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::store::{normalise_id, StoredApp, StoredTask};
use super::task_server::TaskServer;
use super::{broadcast, lock, Shared};

/// `?force=true` and `?scale=true`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Flags {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    scale: bool,
}

fn message(status: StatusCode, text: String) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// The body as a JSON object; `None` (answer [`not_an_object`]) otherwise.
fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn not_an_object() -> Response {
    message(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid JSON: expected an object".into(),
    )
}

/// `GET /v2/apps/{id}`.
pub(super) async fn get_app(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id = normalise_id(&id);
    let written = lock(&shared.store).app_json(&id);
    // The body set by the test first, as `GET /v2/apps` lists it.
    let index = lock(&shared.index).clone();
    let set = match index {
        Some(index) => index.get(&id).cloned(),
        None => super::diff::app_in_body(&lock(&shared.apps).clone(), &id),
    };
    match set.or(written) {
        Some(app) => {
            let body = json!({ "app": app }).to_string();
            super::count(&shared, super::Endpoint::App, body.len());
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        None => message(StatusCode::NOT_FOUND, format!("App '{id}' does not exist")),
    }
}

/// `POST /v2/apps`: creates an app (409 when it exists).
pub(super) async fn post_app(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(mut def) = object(&body) else {
        return not_an_object();
    };
    let Some(id) = def.get("id").and_then(Value::as_str).map(normalise_id) else {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "App id is missing".into());
    };
    def.insert("id".into(), json!(id));
    let (app, deployment) = {
        let mut store = lock(&shared.store);
        if store.apps.contains_key(&id) {
            return message(
                StatusCode::CONFLICT,
                format!("An app with id [{id}] already exists."),
            );
        }
        let now = store.timestamp();
        store.apps.insert(id.clone(), StoredApp::new(def, &now));
        let deployment = store.deploy(&id);
        (store.app_json(&id), deployment)
    };
    let mut app = app.unwrap_or_default();
    announce(&shared, &id, &app, &deployment.id);
    tokio::spawn(converge(shared, id, Some(deployment.id.clone())));
    app["deployments"] = json!([{ "id": deployment.id }]);
    (StatusCode::CREATED, Json(app)).into_response()
}

/// `PUT /v2/apps/{id}[?force=true]`: changes (or creates) an app; `{"instances": n}` scales.
pub(super) async fn put_app(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Response {
    let id = normalise_id(&id);
    let Some(changes) = object(&body) else {
        return not_an_object();
    };
    let (app, deployment, version) = {
        let mut store = lock(&shared.store);
        if store.locked(&id) && !flags.force {
            return message(
                StatusCode::CONFLICT,
                format!("App is locked by one or more deployments: {id}"),
            );
        }
        let now = store.timestamp();
        let app = store
            .apps
            .entry(id.clone())
            .or_insert_with(|| StoredApp::new(Map::from_iter([("id".into(), json!(id))]), &now));
        let scale_only = changes.keys().all(|k| k == "instances");
        for (key, value) in changes {
            if key != "id" {
                app.def.insert(key, value);
            }
        }
        app.scale(app.instances(), &now);
        if !scale_only {
            app.last_config_change_at = now.clone();
        }
        let deployment = store.deploy(&id);
        (store.app_json(&id).unwrap_or_default(), deployment, now)
    };
    announce(&shared, &id, &app, &deployment.id);
    tokio::spawn(converge(shared, id, Some(deployment.id.clone())));
    Json(json!({ "version": version, "deploymentId": deployment.id })).into_response()
}

/// `DELETE /v2/apps/{id}`: stops every task and removes the app.
pub(super) async fn delete_app(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let id = normalise_id(&id);
    let (removed, deployment, version) = {
        let mut store = lock(&shared.store);
        let Some(removed) = store.apps.remove(&id) else {
            return message(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"));
        };
        store.deployments.retain(|d| d.app != id);
        let deployment = store.next_id("delete-");
        (removed, deployment, store.timestamp())
    };
    for task in removed.tasks {
        let ports = [task.server.port];
        drop(task.server);
        task_event(&shared, &id, &task.id, &ports, "TASK_KILLED");
    }
    broadcast(&shared, "app_terminated_event", json!({ "appId": id }));
    broadcast(&shared, "deployment_success", json!({ "id": deployment }));
    Json(json!({ "version": version, "deploymentId": deployment })).into_response()
}

/// `GET /v2/deployments`.
pub(super) async fn deployments(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.store).deployments_json()).into_response()
}

/// The body of `POST /v2/tasks/delete`.
#[derive(serde::Deserialize)]
pub(super) struct TaskIds {
    ids: Vec<String>,
}

/// `POST /v2/tasks/delete[?scale=true]`: kills tasks; with `scale`, lowers their apps'
/// `instances` so they are not replaced.
pub(super) async fn delete_tasks(
    State(shared): State<Arc<Shared>>,
    Query(flags): Query<Flags>,
    Json(body): Json<TaskIds>,
) -> Response {
    let mut killed = Vec::new();
    let mut touched = Vec::new();
    let version = {
        let mut store = lock(&shared.store);
        let now = store.timestamp();
        for task_id in &body.ids {
            let Some(app_id) = store.app_of_task(task_id) else {
                continue;
            };
            let Some(app) = store.apps.get_mut(&app_id) else {
                continue;
            };
            let Some(at) = app.tasks.iter().position(|t| t.id == *task_id) else {
                continue;
            };
            let task = app.tasks.remove(at);
            if flags.scale {
                let instances = app.instances().saturating_sub(1);
                app.scale(instances, &now);
            }
            killed.push((app_id.clone(), task.json(&app_id), task));
            if !touched.contains(&app_id) {
                touched.push(app_id);
            }
        }
        now
    };
    let mut tasks = Vec::new();
    for (app_id, json, task) in killed {
        let ports = [task.server.port];
        drop(task.server);
        task_event(&shared, &app_id, &task.id, &ports, "TASK_KILLED");
        tasks.push(json);
    }
    if flags.scale {
        let deployment = lock(&shared.store).next_id("scale-");
        broadcast(&shared, "deployment_success", json!({ "id": deployment }));
        return Json(json!({ "version": version, "deploymentId": deployment })).into_response();
    }
    for app in touched {
        tokio::spawn(converge(shared.clone(), app, None));
    }
    Json(json!({ "tasks": tasks })).into_response()
}

/// `api_post_event` and `deployment_info` for a change of `app`.
fn announce(shared: &Shared, id: &str, app: &Value, deployment: &str) {
    let mut definition = app.clone();
    if let Some(map) = definition.as_object_mut() {
        map.remove("tasks");
        map.remove("deployments");
    }
    let uri = format!("/v2/apps{id}");
    broadcast(
        shared,
        "api_post_event",
        json!({ "appDefinition": definition, "clientIp": "127.0.0.1", "uri": uri }),
    );
    let action = json!({ "action": "ScaleApplication", "app": id });
    broadcast(
        shared,
        "deployment_info",
        json!({ "plan": { "id": deployment, "steps": [{ "actions": [action] }],
                          "version": app.get("version") },
                "currentStep": { "actions": [action] } }),
    );
}

/// A `status_update_event` for one task.
fn task_event(shared: &Shared, app: &str, task: &str, ports: &[u16], status: &str) {
    broadcast(
        shared,
        "status_update_event",
        json!({ "appId": app, "taskId": task, "taskStatus": status, "host": "127.0.0.1",
                "ports": ports, "slaveId": "fake-agent-1", "version": "" }),
    );
}

/// What [`converge`] does next.
enum Step {
    Start(String),
    Stop(StoredTask),
    Done { health_checked: bool },
    Gone,
}

/// Brings `app` to its `instances`, then health, then ends `deployment`.
pub(super) async fn converge(shared: Arc<Shared>, app: String, deployment: Option<String>) {
    loop {
        // One step at a time across the fake: two deployments of one app must not both
        // start the task it lacks (the extra one would serve traffic, then be stopped).
        let guard = shared.converging.lock().await;
        let step = {
            let mut store = lock(&shared.store);
            match store.apps.get_mut(&app) {
                None => Step::Gone,
                Some(a) if (a.tasks.len() as u64) < a.instances() => {
                    let body = a.def.get("id").and_then(Value::as_str).unwrap_or(&app);
                    Step::Start(body.to_owned())
                }
                Some(a) if (a.tasks.len() as u64) > a.instances() => match a.tasks.pop() {
                    Some(task) => Step::Stop(task),
                    None => Step::Gone,
                },
                Some(a) => Step::Done {
                    health_checked: a.health_checked(),
                },
            }
        };
        match step {
            Step::Gone => return,
            Step::Start(body) => {
                if !start_task(&shared, &app, &body).await {
                    return;
                }
            }
            Step::Stop(task) => {
                let ports = [task.server.port];
                drop(task.server);
                task_event(&shared, &app, &task.id, &ports, "TASK_KILLED");
            }
            Step::Done { health_checked } => {
                drop(guard);
                if health_checked && !report_health(&shared, &app).await {
                    return; // failing health: the deployment stays, as in Marathon
                }
                break;
            }
        }
    }
    if let Some(id) = deployment {
        if lock(&shared.store).finish(&id) {
            broadcast(&shared, "deployment_success", json!({ "id": id }));
        }
    }
}

/// Starts one task server for `app`; false when it could not or the app went away.
async fn start_task(shared: &Arc<Shared>, app: &str, body: &str) -> bool {
    let (delay, flaky) = {
        let store = lock(&shared.store);
        (store.task_delay, store.flaky.contains(app))
    };
    let server = match TaskServer::start(body, delay, flaky).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "fake Marathon: cannot start a task");
            return false;
        }
    };
    let port = server.port;
    let task_id = {
        let mut store = lock(&shared.store);
        let now = store.timestamp();
        let n = store.next_id("");
        let Some(a) = store.apps.get_mut(app) else {
            return false;
        };
        let id = format!("{}.{n}", app.trim_start_matches('/').replace('/', "_"));
        a.tasks.push(StoredTask {
            id: id.clone(),
            server,
            alive: None,
            started_at: now,
            version: a.version.clone(),
        });
        id
    };
    task_event(shared, app, &task_id, &[port], "TASK_RUNNING");
    true
}

/// Waits the health delay, then gives every task of `app` without a result one; false when
/// the app's health fails or the app went away.
async fn report_health(shared: &Arc<Shared>, app: &str) -> bool {
    let delay = lock(&shared.store).health_delay;
    tokio::time::sleep(delay).await;
    let (changed, alive) = {
        let mut store = lock(&shared.store);
        let alive = !store.unhealthy.contains(app);
        let Some(a) = store.apps.get_mut(app) else {
            return false;
        };
        let mut changed = Vec::new();
        for task in &mut a.tasks {
            if task.alive != Some(alive) {
                task.alive = Some(alive);
                changed.push(task.id.clone());
            }
        }
        (changed, alive)
    };
    for task in changed {
        broadcast(
            shared,
            "health_status_changed_event",
            json!({ "appId": app, "taskId": task, "instanceId": task, "alive": alive,
                    "version": "" }),
        );
    }
    alive
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::super::{FakeMarathon, Options};

    async fn wait_idle(fake: &FakeMarathon) {
        for _ in 0..200 {
            if fake.deployments() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("deployments did not finish");
    }

    async fn get_json(http: &reqwest::Client, url: String) -> Value {
        http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// A fake with `/web` (2 health-checked instances on service port 10000) deployed.
    async fn with_web() -> (FakeMarathon, reqwest::Client) {
        let fake = FakeMarathon::start(Options::default()).await.unwrap();
        fake.set_health_delay(Duration::from_millis(10));
        let http = reqwest::Client::new();
        let def = json!({"id": "web", "instances": 2, "portDefinitions": [{"port": 10000}],
                         "healthChecks": [{"protocol": "HTTP", "path": "/"}]});
        let url = format!("{}/v2/apps", fake.url());
        let created = http.post(&url).json(&def).send().await.unwrap();
        assert_eq!(created.status(), 201);
        let again = http.post(&url).json(&def).send().await.unwrap();
        assert_eq!(again.status(), 409);
        wait_idle(&fake).await;
        (fake, http)
    }

    #[tokio::test]
    async fn created_apps_run_healthy_serving_tasks_and_are_listed_and_deleted() {
        let (fake, http) = with_web().await;
        let url = fake.url();
        let app = get_json(&http, format!("{url}/v2/apps/web")).await;
        let tasks = app["app"]["tasks"].as_array().unwrap().clone();
        assert_eq!(tasks.len(), 2);
        assert_eq!(app["app"]["ports"], json!([10000]));
        assert_eq!(tasks[0]["healthCheckResults"][0]["alive"], json!(true));
        let port = tasks[0]["ports"][0].as_u64().unwrap();
        let body = http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(body.text().await.unwrap(), "/web");
        let listed = get_json(&http, format!("{url}/v2/apps")).await;
        assert_eq!(listed["apps"][0]["id"], json!("/web"));
        let deleted = http
            .delete(format!("{url}/v2/apps/web"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
        assert!(fake.app("/web").is_none());
        assert!(http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
    }

    #[tokio::test]
    async fn kills_with_scale_lower_instances_and_scales_lock_the_app() {
        let (fake, http) = with_web().await;
        let url = fake.url();
        let app = fake.app("/web").unwrap();
        let task = app["tasks"][0].clone();
        let before = app["versionInfo"]["lastScalingAt"]
            .as_str()
            .unwrap()
            .to_owned();
        let killed = http
            .post(format!("{url}/v2/tasks/delete?scale=true"))
            .json(&json!({"ids": [task["id"]]}))
            .send()
            .await
            .unwrap();
        assert_eq!(killed.status(), 200);
        let app = fake.app("/web").unwrap();
        assert_eq!(
            (
                app["instances"].as_u64(),
                app["tasks"].as_array().unwrap().len()
            ),
            (Some(1), 1)
        );
        assert!(app["versionInfo"]["lastScalingAt"].as_str().unwrap() > before.as_str());
        let port = task["ports"][0].as_u64().unwrap();
        assert!(http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
        let scale = |n: u64| {
            http.put(format!("{url}/v2/apps/web"))
                .json(&json!({"instances": n}))
                .send()
        };
        assert_eq!(scale(3).await.unwrap().status(), 200);
        assert_eq!(
            scale(4).await.unwrap().status(),
            409,
            "locked by the deployment"
        );
        let deployments = get_json(&http, format!("{url}/v2/deployments")).await;
        assert_eq!(deployments[0]["affectedApps"], json!(["/web"]));
        wait_idle(&fake).await;
        assert_eq!(
            fake.app("/web").unwrap()["tasks"].as_array().unwrap().len(),
            3
        );
    }

    #[tokio::test]
    async fn failing_health_keeps_the_deployment_and_events_go_out() {
        let fake = FakeMarathon::start(Options::default()).await.unwrap();
        fake.set_health_delay(Duration::from_millis(10));
        fake.fail_health("/bad", true);
        let http = reqwest::Client::new();
        let mut events = http
            .get(format!("{}/v2/events", fake.url()))
            .send()
            .await
            .unwrap();
        let def = json!({"id": "/bad", "instances": 1, "healthChecks": [{"protocol": "HTTP"}]});
        http.post(format!("{}/v2/apps", fake.url()))
            .json(&def)
            .send()
            .await
            .unwrap();
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen.contains("\"alive\":false") {
            assert!(tokio::time::Instant::now() < deadline, "events: {seen}");
            let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk()).await;
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap().unwrap()));
        }
        for kind in [
            "api_post_event",
            "deployment_info",
            "status_update_event",
            "health_status_changed_event",
        ] {
            assert!(seen.contains(&format!("event: {kind}")), "{kind} in {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.deployments(), 1);
    }
}
