//! The new app's definition: colour, service ports and the `HAPROXY_DEPLOYMENT_*` labels
//! marathon-lb's deployment-group merge reads (zdd.py's `prepare_deploy`). Pure.

use serde_json::{json, Value};

use super::Error;

/// The label naming the deployment group (also the backend's name).
pub const GROUP: &str = "HAPROXY_DEPLOYMENT_GROUP";
/// The alternate service port the two colours take in turns.
pub const ALT_PORT: &str = "HAPROXY_DEPLOYMENT_ALT_PORT";
/// When the deployment started; the newer app of a group is the one deployed last.
pub const STARTED_AT: &str = "HAPROXY_DEPLOYMENT_STARTED_AT";
/// Instances the group runs when the deployment is complete.
pub const TARGET: &str = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES";
/// Instances of the new colour in a traffic split (0: a full deployment).
pub const NEW_INSTANCES: &str = "HAPROXY_DEPLOYMENT_NEW_INSTANCES";
/// `blue` or `green`.
pub const COLOUR: &str = "HAPROXY_DEPLOYMENT_COLOUR";

/// A label's value.
pub fn label<'a>(app: &'a Value, key: &str) -> Option<&'a str> {
    app.get("labels")?.get(key)?.as_str()
}

/// The app's deployment group.
pub fn group(app: &Value) -> Option<&str> {
    label(app, GROUP)
}

/// `instances` (Marathon's default 1).
pub fn instances(app: &Value) -> u64 {
    app.get("instances").and_then(Value::as_u64).unwrap_or(1)
}

/// `HAPROXY_DEPLOYMENT_TARGET_INSTANCES`, else `instances`.
pub fn target(app: &Value) -> u64 {
    label(app, TARGET)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| instances(app))
}

/// `HAPROXY_DEPLOYMENT_NEW_INSTANCES`, else 0.
pub fn new_instances(app: &Value) -> u64 {
    label(app, NEW_INSTANCES)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `HAPROXY_DEPLOYMENT_STARTED_AT` (`"0"` when missing, so such apps sort first).
pub fn started_at(app: &Value) -> &str {
    label(app, STARTED_AT).unwrap_or("0")
}

/// The app's id.
pub fn id(app: &Value) -> &str {
    app.get("id").and_then(Value::as_str).unwrap_or("")
}

/// The deploys of a group, oldest first.
pub fn sort_deploys(apps: &mut [Value]) {
    apps.sort_by(|a, b| started_at(a).cmp(started_at(b)));
}

/// Checks the labels zdd needs.
///
/// # Errors
/// [`Error::MissingField`].
pub fn validate(app: &Value) -> Result<(), Error> {
    let missing = |message: &str, field: &str| Error::MissingField {
        message: message.to_owned(),
        field: field.to_owned(),
    };
    if app.get("id").and_then(Value::as_str).is_none() {
        return Err(missing("App doesn't contain a valid App ID", "id"));
    }
    if !app.get("labels").is_some_and(Value::is_object) {
        return Err(missing(
            "No labels found. Please define the HAPROXY_DEPLOYMENT_GROUP label",
            "label",
        ));
    }
    for key in [GROUP, ALT_PORT] {
        if label(app, key).is_none() {
            return Err(missing(&format!("Please define the {key} label"), key));
        }
    }
    Ok(())
}

/// The JSON pointers where an app keeps its (first) service port, in zdd.py's order.
const PORT_FIELDS: [&str; 4] = [
    "/container/docker/portMappings/0/servicePort",
    "/container/portMappings/0/servicePort",
    "/portDefinitions/0/port",
    "/ports/0",
];

/// The app's first service port.
pub fn service_port(app: &Value) -> Option<u64> {
    PORT_FIELDS
        .iter()
        .filter_map(|p| app.pointer(p))
        .find_map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .filter(|p| *p != 0)
}

/// Sets the first service port wherever the app defines one (zdd.py wrote only one of
/// `portDefinitions`/`ports`, and its `portDefinitions` write was a no-op).
fn set_service_port(app: &mut Value, port: u64) {
    for pointer in PORT_FIELDS {
        if let Some(slot) = app.pointer_mut(pointer) {
            *slot = json!(port);
        }
    }
}

/// `green` after a blue deploy, else `blue`.
pub fn next_colour(last: &Value) -> &'static str {
    if label(last, COLOUR) == Some("blue") {
        "green"
    } else {
        "blue"
    }
}

/// The service port the next colour takes: the alternate port, unless the last deploy has
/// it, then the group's own (`HAPROXY_0_PORT`).
pub fn next_port(last: &Value) -> Option<u64> {
    let alt: u64 = label(last, ALT_PORT)?.trim().parse().ok()?;
    if service_port(last) == Some(alt) {
        label(last, "HAPROXY_0_PORT")?.trim().parse().ok()
    } else {
        Some(alt)
    }
}

/// What the new deploy will be.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The new app's definition.
    pub app: Value,
    /// Instances when complete.
    pub target: u64,
    /// New-colour instances of a traffic split (0: full deployment), capped at the target.
    pub new_instances: u64,
}

/// The new colour of `app` given the group's `previous` deploys (oldest first), started
/// `now` (zdd.py's `datetime.now().isoformat()`: a naive ISO date the model compares).
///
/// # Errors
/// [`Error::MissingField`] without a service port or alternate port.
pub fn prepare(
    mut app: Value,
    previous: &[Value],
    initial_instances: u64,
    new_instances: u64,
    now: &str,
) -> Result<Prepared, Error> {
    let missing_port = || Error::MissingField {
        message: "App doesn't contain a service port".into(),
        field: "container.portMappings".into(),
    };
    let own_port = service_port(&app).ok_or_else(missing_port)?;
    let (colour, port, target, new_instances) = match previous.last() {
        Some(last) => {
            let target = instances(last);
            let n = new_instances.min(target);
            let first = if n > 0 { n } else { target };
            app["instances"] = json!(initial_instances.min(first));
            let port = next_port(last).ok_or_else(|| Error::MissingField {
                message: "The last deploy has no usable HAPROXY_DEPLOYMENT_ALT_PORT".into(),
                field: ALT_PORT.into(),
            })?;
            (next_colour(last), port, target, n)
        }
        None => ("blue", own_port, instances(&app), 0),
    };
    let original_id = id(&app).to_owned();
    let new_id = format!("/{}-{colour}", original_id.trim_start_matches('/'));
    app["id"] = json!(new_id);
    set_service_port(&mut app, port);
    let labels = &mut app["labels"];
    labels["HAPROXY_APP_ID"] = json!(original_id);
    labels["HAPROXY_0_PORT"] = json!(own_port.to_string());
    labels[NEW_INSTANCES] = json!(new_instances.to_string());
    labels[TARGET] = json!(target.to_string());
    labels[COLOUR] = json!(colour);
    labels[STARTED_AT] = json!(now);
    Ok(Prepared {
        app,
        target,
        new_instances,
    })
}

/// Now as a naive ISO-8601 date with microseconds (UTC), as zdd.py's `isoformat()` writes it.
pub fn now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
        .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blue_json() -> Value {
        json!({"id": "/nginx", "instances": 3,
               "labels": {"HAPROXY_DEPLOYMENT_GROUP": "nginx", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
                          "HAPROXY_GROUP": "external"},
               "portDefinitions": [{"port": 10000, "protocol": "tcp"}]})
    }

    #[test]
    fn a_first_deploy_is_blue_on_its_own_port() {
        let p = prepare(blue_json(), &[], 1, 0, "2026-01-01T00:00:00.000001").unwrap();
        assert_eq!(p.app["id"], "/nginx-blue");
        assert_eq!(p.app["instances"], 3);
        assert_eq!(p.app["portDefinitions"][0]["port"], 10000);
        let l = &p.app["labels"];
        assert_eq!(l["HAPROXY_APP_ID"], "/nginx");
        assert_eq!(l["HAPROXY_0_PORT"], "10000");
        assert_eq!(l[TARGET], "3");
        assert_eq!(l[NEW_INSTANCES], "0");
        assert_eq!(l[COLOUR], "blue");
    }

    #[test]
    fn the_next_deploy_is_green_on_the_alt_port_then_blue_on_the_own_port() {
        let mut blue = prepare(blue_json(), &[], 1, 0, "2026-01-01T00:00:00.000001")
            .unwrap()
            .app;
        blue["ports"] = json!([10000]);
        let green = prepare(blue_json(), &[blue], 1, 0, "2026-01-01T00:00:01.000000").unwrap();
        assert_eq!(green.app["id"], "/nginx-green");
        assert_eq!(green.app["instances"], 1);
        assert_eq!(green.app["portDefinitions"][0]["port"], 10001);
        assert_eq!(green.app["labels"]["HAPROXY_0_PORT"], "10000");
        assert_eq!(green.target, 3);
        let mut green = green.app;
        green["instances"] = json!(3); // where the swap left it
        let again = prepare(blue_json(), &[green], 5, 0, "2026-01-01T00:00:02").unwrap();
        assert_eq!(again.app["id"], "/nginx-blue");
        assert_eq!(again.app["portDefinitions"][0]["port"], 10000);
        assert_eq!(
            again.app["instances"], 3,
            "initial instances capped at the target"
        );
    }

    #[test]
    fn a_split_caps_new_instances_at_the_target() {
        let blue = prepare(blue_json(), &[], 1, 0, "2026-01-01T00:00:00")
            .unwrap()
            .app;
        let green = prepare(blue_json(), &[blue], 2, 9, "2026-01-01T00:00:01").unwrap();
        assert_eq!(green.new_instances, 3);
        assert_eq!(green.app["labels"][NEW_INSTANCES], "3");
        assert_eq!(green.app["instances"], 2);
    }

    #[test]
    fn missing_labels_are_named() {
        let mut app = blue_json();
        app["labels"].as_object_mut().unwrap().remove(ALT_PORT);
        match validate(&app) {
            Err(Error::MissingField { field, .. }) => assert_eq!(field, ALT_PORT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn started_at_is_naive_iso_with_micros() {
        let now = now_iso();
        assert_eq!(now.len(), 26, "{now}");
        assert!(chrono::NaiveDateTime::parse_from_str(&now, "%Y-%m-%dT%H:%M:%S%.f").is_ok());
    }
}
