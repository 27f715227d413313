//! Every Marathon app definition we ship (`deploy/*.json`, and the `examples/*.json` that are
//! app definitions rather than `/v2/apps` bodies) validates against Marathon's own app schema
//! (`tests/spec/marathon-app-schema.json`, Marathon's `AppDefinition.json`, a copy of
//! `../shared/spec/marathon-app-schema.json`), and the deploy definitions say what README's
//! "Deploy" section promises.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    let schema = read(&repo().join("tests/spec/marathon-app-schema.json"));
    // The schema names the draft-04 era `http://json-schema.org/schema#`.
    jsonschema::draft4::new(&schema).unwrap()
}

/// Errors of `app` against the schema, one line each.
fn errors(validator: &jsonschema::Validator, app: &Value) -> Vec<String> {
    validator
        .iter_errors(app)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The app definitions we ship.
fn shipped() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["deploy", "examples"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") && read(&path).get("apps").is_none() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_app_definition_validates_against_marathons_schema() {
    let validator = validator();
    let files = shipped();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    for expected in [
        "deploy/marathon-lb.json",
        "deploy/kubeapi-proxy.json",
        "examples/kubeapi-proxy.json",
    ] {
        assert!(names.contains(&expected.to_owned()), "{names:?}");
    }
    for path in &files {
        let errors = errors(&validator, &read(path));
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn the_schema_rejects_what_marathon_rejects() {
    let validator = validator();
    let mut app = read(&repo().join("deploy/marathon-lb.json"));
    app["constraints"] = serde_json::json!([["hostname", "ONE_PER_HOST"]]);
    app["networks"] = serde_json::json!([{"mode": "HOST"}]);
    app["cmd"] = "x".into();
    let errors = errors(&validator, &app);
    assert!(errors.len() >= 3, "{errors:?}");
}

#[test]
fn the_marathon_lb_app_runs_one_instance_per_public_agent_with_the_originals_ports() {
    let app = read(&repo().join("deploy/marathon-lb.json"));
    assert_eq!(app["networks"][0]["mode"], "host");
    assert_eq!(
        app["constraints"][0],
        serde_json::json!(["hostname", "UNIQUE"])
    );
    assert_eq!(
        app["acceptedResourceRoles"],
        serde_json::json!(["slave_public"])
    );
    assert_eq!(app["requirePorts"], true);
    let ports: Vec<u64> = app["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    let mut want = vec![80, 443, 9090, 9091];
    want.extend(10000..=10100);
    assert_eq!(ports, want);
    let check = &app["healthChecks"][0];
    assert_eq!(check["path"], "/_haproxy_health_check");
    assert_eq!(ports[check["portIndex"].as_u64().unwrap() as usize], 9090);
    // Container mode (the first argument) and the group the original's image used.
    let args: Vec<&str> = app["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "sse");
    assert!(args.windows(2).any(|w| w == ["--group", "external"]));
    // The service account comes from a secret, never inline.
    let secret = app["env"]["DCOS_SERVICE_ACCOUNT_CREDENTIAL"]["secret"]
        .as_str()
        .unwrap();
    assert!(app["secrets"][secret]["source"].is_string());
    // The binary accepts the arguments (container mode rewrites them first).
    let mut argv: Vec<std::ffi::OsString> = vec!["marathon-lb".into()];
    argv.extend(args.iter().map(Into::into));
    let plan = marathon_lb::container::plan(&argv, |_| None).unwrap();
    let cli = <marathon_lb::config::Cli as clap::Parser>::try_parse_from(plan.args).unwrap();
    assert!(cli.sse && cli.health_check);
}

#[test]
fn the_kubeapi_proxy_seed_is_the_documented_one() {
    let deploy = read(&repo().join("deploy/kubeapi-proxy.json"));
    assert_eq!(deploy, read(&repo().join("examples/kubeapi-proxy.json")));
    let labels = &deploy["labels"];
    assert_eq!(labels["HAPROXY_0_MODE"], "http");
    assert_eq!(labels["HAPROXY_0_PORT"], "6443");
    assert_eq!(labels["HAPROXY_0_SSL_CERT"], "/etc/ssl/cert.pem");
    let server = labels["HAPROXY_0_BACKEND_SERVER_OPTIONS"].as_str().unwrap();
    assert!(server.contains("ssl verify none") && server.contains("timeout tunnel 86400s"));
}
