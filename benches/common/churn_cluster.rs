//! The churn bench's cluster: the background apps from `gen-apps`, made harmless, and the
//! `/v2/apps` listing with the target app appended, built without re-serialising the
//! background at every step.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The background apps, serialised once: a listing is this prefix, the target app and `]}`.
pub struct Listing {
    /// `{"apps":[` and every background app followed by a comma.
    prefix: String,
    /// How many background apps there are.
    pub background: usize,
    /// How many servers they have in all.
    pub background_tasks: usize,
}

impl Listing {
    /// `gen-apps --apps <apps> --tasks-per-app <tasks> --seed 1`, of which the first
    /// `apps - 1` apps are kept (the target app makes `apps`).
    pub fn generate(gen: &Path, apps: usize, tasks: usize) -> Listing {
        let out = Command::new(gen)
            .args(["--apps", &apps.to_string()])
            .args(["--tasks-per-app", &tasks.to_string(), "--seed", "1"])
            .output()
            .expect("run gen-apps");
        assert!(out.status.success(), "gen-apps failed: {out:?}");
        let background = background_apps(&out.stdout, apps.saturating_sub(1));
        let background_tasks = background
            .iter()
            .map(|a| a["tasks"].as_array().map_or(0, Vec::len))
            .sum();
        let mut prefix = String::from("{\"apps\":[");
        for app in &background {
            prefix.push_str(&app.to_string());
            prefix.push(',');
        }
        Listing {
            prefix,
            background: background.len(),
            background_tasks,
        }
    }

    /// The whole `/v2/apps` body: the background apps, then `target`.
    pub fn body(&self, target: &Value) -> String {
        let target = target.to_string();
        let mut body = String::with_capacity(self.prefix.len() + target.len() + 2);
        body.push_str(&self.prefix);
        body.push_str(&target);
        body.push_str("]}");
        body
    }
}

/// The frontend head of a background app: the harness's, bound to `127.0.0.2`. Their service
/// ports (10000 up, 12.7k of them at 10k apps) overlap the range the test ports come from
/// (`free_port`: 10000..32000), so on `127.0.0.1` HAProxy would find the admin server or a
/// task on one of them ("cannot bind socket (Address already in use)") and refuse to start.
const BACKGROUND_FRONTEND_HEAD: &str =
    "\nfrontend {backend}\n  bind 127.0.0.2:{servicePort}{sslCert}{bindOptions}\n  mode {mode}\n";

/// How many service ports an app has (port definitions or container port mappings).
fn service_ports(app: &Value) -> usize {
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    count(&app["portDefinitions"]).max(count(&app["container"]["portMappings"]))
}

/// The first `keep` generated apps, made harmless: tasks on `127.0.<i>.2` (nothing listens: a
/// request would be refused at once), no health checks (HAProxy does not probe them; sticky
/// apps' servers still get `check`, refused at once too), frontends on `127.0.0.2`, all in
/// group `external`.
fn background_apps(body: &[u8], keep: usize) -> Vec<Value> {
    let mut doc: Value = serde_json::from_slice(body).unwrap();
    let mut apps = match doc["apps"].take() {
        Value::Array(apps) => apps,
        _ => panic!("gen-apps printed no apps list"),
    };
    apps.truncate(keep);
    for app in apps.iter_mut() {
        app.as_object_mut().unwrap().remove("healthChecks");
        let ports = service_ports(app);
        let labels = app["labels"].as_object_mut().unwrap();
        labels.insert("HAPROXY_GROUP".into(), "external".into());
        labels.remove("HAPROXY_1_GROUP");
        for n in 0..ports {
            labels.insert(
                format!("HAPROXY_{n}_FRONTEND_HEAD"),
                BACKGROUND_FRONTEND_HEAD.into(),
            );
        }
        for (i, task) in app["tasks"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let ip = format!("127.0.{}.2", i % 250 + 1);
            task["host"] = ip.clone().into();
            if let Some(addrs) = task["ipAddresses"].as_array_mut() {
                for addr in addrs {
                    addr["ipAddress"] = ip.clone().into();
                }
            }
            task.as_object_mut().unwrap().remove("healthCheckResults");
        }
    }
    apps
}
