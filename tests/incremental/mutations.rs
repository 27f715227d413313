//! Seeded random changes of a `/v2/apps` body, as Marathon would make them: tasks started and
//! killed, health flips, label changes (a new app version), apps deleted and created again.

use serde_json::{json, Value};

/// splitmix64: a small seeded generator, so a failing sequence replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn apps(body: &mut Value) -> &mut Vec<Value> {
    body["apps"].as_array_mut().unwrap()
}

/// Applies one random change to `body` and names it.
/// `deleted` keeps deleted apps to create again.
pub fn mutate(body: &mut Value, rng: &mut Rng, deleted: &mut Vec<Value>) -> String {
    let n = apps(body).len();
    let at = rng.below(n);
    let serial = rng.next() % 1_000_000;
    match rng.below(7) {
        0 | 1 => {
            let app = &mut apps(body)[at];
            let id = app["id"].as_str().unwrap().to_owned();
            let tasks = app["tasks"].as_array_mut().unwrap();
            let Some(model) = tasks.first().cloned() else {
                return "nothing (no task to copy)".into();
            };
            let mut task = model;
            task["id"] = json!(format!("{}.t{serial}", id.trim_start_matches('/')));
            task["host"] = json!(format!("10.9.{}.{}", serial % 200, serial % 250));
            if let Some(ports) = task["ports"].as_array_mut() {
                for port in ports.iter_mut() {
                    *port = json!(31000 + serial % 1000);
                }
            }
            tasks.push(task);
            format!("start a task of {id}")
        }
        2 | 3 => {
            let app = &mut apps(body)[at];
            let id = app["id"].as_str().unwrap().to_owned();
            let tasks = app["tasks"].as_array_mut().unwrap();
            if tasks.is_empty() {
                return "nothing (no task to kill)".into();
            }
            let i = rng.below(tasks.len());
            tasks.remove(i);
            format!("kill a task of {id}")
        }
        4 => {
            let app = &mut apps(body)[at];
            let id = app["id"].as_str().unwrap().to_owned();
            let tasks = app["tasks"].as_array_mut().unwrap();
            if tasks.is_empty() {
                return "nothing (no task to flip)".into();
            }
            let i = rng.below(tasks.len());
            let alive = tasks[i]["healthCheckResults"][0]["alive"]
                .as_bool()
                .unwrap_or(false);
            tasks[i]["healthCheckResults"] = json!([{ "alive": !alive, "consecutiveFailures": 0 }]);
            format!("flip the health of a task of {id}")
        }
        5 => {
            let app = &mut apps(body)[at];
            let id = app["id"].as_str().unwrap().to_owned();
            let balance = ["roundrobin", "leastconn", "source"][rng.below(3)];
            app["labels"]["HAPROXY_0_BALANCE"] = json!(balance);
            let version = format!("2030-01-01T00:00:{:02}.{:03}Z", serial % 60, serial % 1000);
            app["version"] = json!(version);
            format!("balance {balance} for {id}")
        }
        _ => {
            if let Some(app) = deleted.pop() {
                let id = app["id"].as_str().unwrap().to_owned();
                apps(body).push(app);
                return format!("create {id} again");
            }
            let app = apps(body).remove(at);
            let id = app["id"].as_str().unwrap().to_owned();
            deleted.push(app);
            format!("delete {id}")
        }
    }
}
