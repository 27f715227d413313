//! The live model's app-by-app path ([`Apps::Each`], with its model cache) gives the config
//! and reports a body gives, at every step of random changes to a mix of apps: plain ones,
//! IP-per-task apps given service ports from the range, deployment-group pairs, and apps with
//! an invalid label; and only changed apps (and the kinds that depend on others) are modeled.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Parser;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::*;
use crate::config::Cli;

fn live_config() -> Config {
    let cli = Cli::try_parse_from([
        "marathon-lb",
        "--group",
        "*",
        "--sse",
        "--marathon",
        "http://127.0.0.1:1",
        "--skip-validation",
        // A small range: the IP-per-task apps' service ports clash and depend on each other.
        "--min-serv-port-ip-per-task",
        "10050",
        "--max-serv-port-ip-per-task",
        "10055",
    ])
    .unwrap();
    cli.validate(|_| None).unwrap()
}

/// App `i` of `kind` (0 plain, 1 IP-per-task, 2 deployment group, 3 invalid label) at
/// `version` (which moves its tasks' ports and their count).
fn app(i: usize, kind: u8, version: u16) -> Value {
    let tasks: Vec<Value> = (0..=(version % 3))
        .map(|t| {
            let port = 20_000 + u64::from(version) * 10 + u64::from(t);
            match kind {
                1 => json!({"id": format!("ip{i}.{t}"), "host": "127.0.0.1", "ports": [],
                            "state": "TASK_RUNNING", "startedAt": "2026-01-01T00:00:00.000Z",
                            "ipAddresses": [{"ipAddress": format!("9.0.{i}.{t}"), "protocol": "IPv4"}]}),
                _ => json!({"id": format!("a{i}.{t}"), "host": "127.0.0.1", "ports": [port],
                            "state": "TASK_RUNNING"}),
            }
        })
        .collect();
    let mut labels = json!({"HAPROXY_GROUP": "external"});
    match kind {
        1 => {
            return json!({"id": format!("/ip{i}"), "labels": labels,
                "networks": [{"mode": "container", "name": "dcos"}],
                "container": {"type": "DOCKER", "docker": {"image": "nginx"},
                              "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]},
                "instances": tasks.len(), "tasks": tasks});
        }
        2 => {
            labels["HAPROXY_DEPLOYMENT_GROUP"] = json!("g");
            labels["HAPROXY_DEPLOYMENT_ALT_PORT"] = json!("10901");
            labels["HAPROXY_DEPLOYMENT_STARTED_AT"] =
                json!(format!("2026-01-01T00:00:{:02}", i % 60));
            labels["HAPROXY_0_PORT"] = json!("10900");
        }
        3 => labels["HAPROXY_0_BACKEND_WEIGHT"] = json!(format!("heavy{version}")),
        _ => {}
    }
    json!({"id": format!("/app{i}"), "labels": labels,
           "portDefinitions": [{"port": 10_000 + i}], "tasks": tasks})
}

/// The live model's store in miniature: a new revision whenever an app's JSON changes.
#[derive(Default)]
struct Revisions {
    by_id: HashMap<String, Arc<AppJson>>,
    next: u64,
}

impl Revisions {
    fn each(&mut self, apps: &[Value]) -> Apps {
        let mut out = Vec::new();
        for app in apps {
            let id = app["id"].as_str().unwrap().to_owned();
            let text = app.to_string();
            let kept = self
                .by_id
                .get(&id)
                .filter(|a| a.json.get() == text)
                .cloned();
            let stored = kept.unwrap_or_else(|| {
                self.next += 1;
                let json = RawValue::from_string(text).unwrap();
                Arc::new(AppJson {
                    id: id.clone(),
                    json,
                    revision: self.next,
                })
            });
            self.by_id.insert(id, stored.clone());
            out.push(stored);
        }
        Apps::Each(out)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn app_by_app_equals_the_body_at_every_step(
        kinds in proptest::collection::vec(0u8..4, 2..12),
        steps in proptest::collection::vec((0usize..12, 0u16..40), 1..12),
    ) {
        let config = live_config();
        let templates = Templates::builtin();
        let (mut each_memory, mut body_memory) = (Memory::default(), Memory::default());
        let mut revisions = Revisions::default();
        let mut versions: Vec<u16> = vec![0; kinds.len()];
        for (n, (pick, version)) in std::iter::once((usize::MAX, 0)).chain(steps).enumerate() {
            if let Some(v) = versions.get_mut(pick) {
                *v = version;
            }
            let apps: Vec<Value> =
                kinds.iter().zip(&versions).enumerate().map(|(i, (&k, &v))| app(i, k, v)).collect();
            let body = json!({"apps": apps}).to_string();
            let want = build_body(body.as_bytes(), "test", &config, &templates, &mut body_memory)
                .unwrap();
            let got = build(revisions.each(&apps), "test", &config, &templates, &mut each_memory)
                .unwrap();
            prop_assert_eq!(&got.rendered.config, &want.rendered.config, "step {}", n);
            prop_assert_eq!(&got.left_out, &want.left_out, "step {}", n);
            let reuse = each_memory.model.last();
            // Every pass after the first models at most the changed app, plus the kinds that
            // depend on other apps.
            let dependent = kinds.iter().filter(|&&k| k == 1 || k == 2).count();
            if n > 0 {
                prop_assert!(reuse.modeled <= 1 + dependent, "step {}: {:?}", n, reuse);
                prop_assert_eq!(reuse.reused + reuse.modeled, kinds.len());
            }
        }
    }
}
