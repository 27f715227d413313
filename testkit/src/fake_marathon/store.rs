//! The apps written through the fake's write API, their tasks and deployments.
//!
//! Marathon semantics kept where zdd and marathon-lb depend on them: `instances` is the
//! target and a deployment converges the running tasks on it; apps with `healthChecks`
//! report `healthCheckResults` once a task has run for the health delay; every scale moves
//! `versionInfo.lastScalingAt` forward (marathon-lb's deployment-group merge compares it);
//! a deployment ends (`deployment_success`) only when every task runs and, with health
//! checks, is healthy, so an app whose health fails keeps its deployment, as Marathon does.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::task_server::TaskServer;

/// Default time from a task's start to its first health result.
pub const DEFAULT_HEALTH_DELAY: Duration = Duration::from_millis(300);

/// Everything written through the API.
pub struct Store {
    /// App id -> app.
    pub apps: BTreeMap<String, StoredApp>,
    /// Deployments in progress.
    pub deployments: Vec<Deployment>,
    /// Apps whose tasks report failing health.
    pub unhealthy: HashSet<String>,
    /// Apps whose tasks (started from then on) answer every second request with a 500.
    pub flaky: HashSet<String>,
    /// Time from a task's start to its first health result.
    pub health_delay: Duration,
    /// How long tasks take to answer a request.
    pub task_delay: Duration,
    /// Counter for task and deployment ids.
    counter: u64,
    /// Last timestamp handed out (microseconds), so timestamps strictly increase.
    last_micros: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            apps: BTreeMap::new(),
            deployments: Vec::new(),
            unhealthy: HashSet::new(),
            flaky: HashSet::new(),
            health_delay: DEFAULT_HEALTH_DELAY,
            task_delay: Duration::ZERO,
            counter: 0,
            last_micros: 0,
        }
    }
}

/// One app.
pub struct StoredApp {
    /// The definition as written (with `id` normalised), without runtime fields.
    pub def: Map<String, Value>,
    /// Running tasks, oldest first.
    pub tasks: Vec<StoredTask>,
    /// `version`.
    pub version: String,
    /// `versionInfo.lastScalingAt`.
    pub last_scaling_at: String,
    /// `versionInfo.lastConfigChangeAt`.
    pub last_config_change_at: String,
}

/// One running task.
pub struct StoredTask {
    /// Task id (`<app>.<n>`, as Marathon's `app.uuid`).
    pub id: String,
    /// The server answering for it.
    pub server: TaskServer,
    /// Last health result (`None`: no checks or none yet).
    pub alive: Option<bool>,
    /// `startedAt`.
    pub started_at: String,
    /// The app version it runs.
    pub version: String,
}

/// A deployment in progress.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Deployment id.
    pub id: String,
    /// The affected app.
    pub app: String,
    /// The version it deploys.
    pub version: String,
}

/// `/a/b` for `a/b`, `/a/b/` or `/a/b`.
pub fn normalise_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

impl Store {
    /// A strictly increasing ISO-8601 UTC timestamp with microseconds.
    pub fn timestamp(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_micros = now.max(self.last_micros + 1);
        iso(self.last_micros)
    }

    /// A fresh id with this prefix.
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{:08}", self.counter)
    }

    /// Records a deployment of `app` and returns it.
    pub fn deploy(&mut self, app: &str) -> Deployment {
        let id = format!("{}-deployment", self.next_id(""));
        let version = self
            .apps
            .get(app)
            .map_or_else(String::new, |a| a.version.clone());
        let deployment = Deployment {
            id,
            app: app.to_owned(),
            version,
        };
        self.deployments.push(deployment.clone());
        deployment
    }

    /// Ends a deployment; whether it was still open.
    pub fn finish(&mut self, id: &str) -> bool {
        let before = self.deployments.len();
        self.deployments.retain(|d| d.id != id);
        before != self.deployments.len()
    }

    /// Whether `app` has a deployment in progress.
    pub fn locked(&self, app: &str) -> bool {
        self.deployments.iter().any(|d| d.app == app)
    }

    /// The app's JSON as `GET /v2/apps` and `GET /v2/apps/{id}` give it.
    pub fn app_json(&self, id: &str) -> Option<Value> {
        let app = self.apps.get(id)?;
        let mut out = app.def.clone();
        out.insert("instances".into(), json!(app.instances()));
        if !out.contains_key("ports") {
            let ports: Vec<Value> = app
                .def
                .get("portDefinitions")
                .and_then(Value::as_array)
                .map(|defs| defs.iter().filter_map(|d| d.get("port").cloned()).collect())
                .unwrap_or_default();
            out.insert("ports".into(), Value::Array(ports));
        }
        out.insert("version".into(), json!(app.version));
        out.insert(
            "versionInfo".into(),
            json!({"lastScalingAt": app.last_scaling_at,
                   "lastConfigChangeAt": app.last_config_change_at}),
        );
        let healthy = app.tasks.iter().filter(|t| t.alive == Some(true)).count();
        let unhealthy = app.tasks.iter().filter(|t| t.alive == Some(false)).count();
        out.insert("tasksRunning".into(), json!(app.tasks.len()));
        out.insert("tasksStaged".into(), json!(0));
        out.insert("tasksHealthy".into(), json!(healthy));
        out.insert("tasksUnhealthy".into(), json!(unhealthy));
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .filter(|d| d.app == id)
            .map(|d| json!({"id": d.id}))
            .collect();
        out.insert("deployments".into(), Value::Array(deployments));
        let tasks: Vec<Value> = app.tasks.iter().map(|t| t.json(id)).collect();
        out.insert("tasks".into(), Value::Array(tasks));
        Some(Value::Object(out))
    }

    /// Every app's JSON, by id.
    pub fn apps_json(&self) -> Vec<Value> {
        self.apps
            .keys()
            .filter_map(|id| self.app_json(id))
            .collect()
    }

    /// `GET /v2/deployments`.
    pub fn deployments_json(&self) -> Value {
        Value::Array(
            self.deployments
                .iter()
                .map(|d| {
                    json!({
                        "id": d.id, "version": d.version, "affectedApps": [d.app],
                        "affectedPods": [],
                        "steps": [{"actions": [{"action": "ScaleApplication", "app": d.app}]}],
                        "currentActions": [{"action": "ScaleApplication", "app": d.app}],
                        "currentStep": 1, "totalSteps": 1,
                    })
                })
                .collect(),
        )
    }

    /// The app a task belongs to.
    pub fn app_of_task(&self, task: &str) -> Option<String> {
        self.apps
            .iter()
            .find(|(_, a)| a.tasks.iter().any(|t| t.id == task))
            .map(|(id, _)| id.clone())
    }
}

impl StoredApp {
    /// A new app from its definition; `now` for every timestamp.
    pub fn new(def: Map<String, Value>, now: &str) -> Self {
        StoredApp {
            def,
            tasks: Vec::new(),
            version: now.to_owned(),
            last_scaling_at: now.to_owned(),
            last_config_change_at: now.to_owned(),
        }
    }

    /// The target number of tasks.
    pub fn instances(&self) -> u64 {
        self.def
            .get("instances")
            .and_then(Value::as_u64)
            .unwrap_or(1)
    }

    /// Sets the target, as a scale.
    pub fn scale(&mut self, instances: u64, now: &str) {
        self.def.insert("instances".into(), json!(instances));
        self.last_scaling_at = now.to_owned();
        self.version = now.to_owned();
    }

    /// Whether Marathon health checks are defined.
    pub fn health_checked(&self) -> bool {
        self.def
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
    }
}

impl StoredTask {
    /// The task's JSON in an app.
    pub fn json(&self, app: &str) -> Value {
        let mut task = json!({
            "id": self.id, "appId": app, "host": "127.0.0.1", "ports": [self.server.port],
            "servicePorts": [], "state": "TASK_RUNNING", "startedAt": self.started_at,
            "stagedAt": self.started_at, "version": self.version,
            "slaveId": "fake-agent-1",
        });
        if let Some(alive) = self.alive {
            task["healthCheckResults"] = json!([{
                "alive": alive, "taskId": self.id, "consecutiveFailures": u32::from(!alive),
                "firstSuccess": if alive { Value::from(self.started_at.clone()) } else { Value::Null },
            }]);
        }
        task
    }
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn iso(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
        micros % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_and_increase() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso(1_709_251_199_000_001), "2024-02-29T23:59:59.000001Z");
        let mut store = Store::default();
        let (a, b) = (store.timestamp(), store.timestamp());
        assert!(a < b, "{a} < {b}");
    }
}
