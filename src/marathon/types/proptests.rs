//! Property tests of the apps decoder: any bytes, and valid bodies with fields of the wrong
//! JSON type, give apps or errors (naming the app when it has a string id), never a panic.
//! `cargo test` runs 256 cases per property; the `#[ignore]`d variants run 20,000
//! (`cargo test --lib proptests -- --ignored`).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(json!("127.0.0.1\nlisten evil")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid app entry.
fn valid_app(i: usize) -> Value {
    json!({
        "id": format!("/app-{i}"),
        "instances": 1,
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_PORT": "10000"},
        "portDefinitions": [{"port": 10000 + i}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}],
        "container": {"docker": {"network": "BRIDGE", "portMappings": [{"containerPort": 80}]}},
        "ipAddress": {"discovery": {"ports": [{"number": 80}]}},
        "versionInfo": {"lastScalingAt": "2024-01-01T00:00:00.000Z"},
        "tasks": [{"id": "t1", "host": "10.0.0.1", "ports": [31000], "state": "TASK_RUNNING",
                   "ipAddresses": [{"ipAddress": "10.0.0.1"}],
                   "healthCheckResults": [{"alive": true}]}]
    })
}

/// Where a mutation puts a value of any type.
const PATHS: &[&[&str]] = &[
    &["id"],
    &["instances"],
    &["labels"],
    &["labels", "HAPROXY_0_PORT"],
    &["labels", "HAPROXY_0_VHOST"],
    &["portDefinitions"],
    &["portDefinitions", "0"],
    &["portDefinitions", "0", "port"],
    &["healthChecks"],
    &["healthChecks", "0", "portIndex"],
    &["container"],
    &["container", "docker", "portMappings"],
    &["ipAddress"],
    &["ipAddress", "discovery", "ports"],
    &["versionInfo"],
    &["tasks"],
    &["tasks", "0"],
    &["tasks", "0", "host"],
    &["tasks", "0", "ports"],
    &["tasks", "0", "ipAddresses", "0", "ipAddress"],
    &["tasks", "0", "healthCheckResults", "0", "alive"],
];

fn set(target: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *target = value;
        return;
    };
    let mut at = target;
    for key in parents {
        at = match at {
            Value::Array(items) => match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            Value::Object(map) => map.entry(*key).or_insert(json!({})),
            _ => return,
        };
    }
    match at {
        Value::Array(items) => {
            if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = value;
            }
        }
        Value::Object(map) => {
            map.insert((*last).to_owned(), value);
        }
        _ => {}
    }
}

/// A body of 1..4 apps, each with up to three fields replaced by values of any type.
fn mutated_body() -> impl Strategy<Value = Vec<Value>> {
    let mutation = (0..PATHS.len(), any_json());
    prop::collection::vec(prop::collection::vec(mutation, 0..3), 1..4).prop_map(|apps| {
        apps.into_iter()
            .enumerate()
            .map(|(i, mutations)| {
                let mut app = valid_app(i);
                for (path, value) in mutations {
                    set(&mut app, PATHS[path], value);
                }
                app
            })
            .collect()
    })
}

/// The property: every element is handed over once, as an app or as an error that names
/// its string id (in the error and its text).
fn check_mutated(apps: &[Value]) -> Result<(), TestCaseError> {
    let body = json!({ "apps": apps }).to_string();
    let mut results = Vec::new();
    for_each_app(body.as_bytes(), |r| {
        results.push(r.map(|a| a.id.to_string()))
    })
    .map_err(|e| TestCaseError::fail(format!("whole body failed: {e}")))?;
    prop_assert_eq!(results.len(), apps.len());
    for (app, result) in apps.iter().zip(&results) {
        let id = app.get("id").and_then(Value::as_str);
        match result {
            Ok(decoded) => prop_assert_eq!(Some(decoded.as_str()), id.or(Some(""))),
            Err(e) => {
                prop_assert_eq!(e.app_id.as_deref(), id);
                if let Some(id) = id {
                    prop_assert!(e.to_string().contains(&id.escape_debug().to_string()));
                }
            }
        }
    }
    Ok(())
}

fn check_bytes(bytes: &[u8]) {
    let _ = for_each_app(bytes, |_| ());
    let _ = AppsBody::parse(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&bytes);
    }

    #[test]
    fn mutated_bodies_give_apps_or_errors_naming_the_app(apps in mutated_body()) {
        check_mutated(&apps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    #[ignore = "long run: cargo test --lib proptests -- --ignored"]
    fn arbitrary_bytes_never_panic_long(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_bytes(&bytes);
    }

    #[test]
    #[ignore = "long run: cargo test --lib proptests -- --ignored"]
    fn mutated_bodies_give_apps_or_errors_naming_the_app_long(apps in mutated_body()) {
        check_mutated(&apps)?;
    }
}
