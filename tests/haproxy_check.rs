//! Rendered configs through the real `haproxy -c` (via `marathon_lb::haproxy::validate`).
//!
//! Each test skips, loudly, when `haproxy` is not on PATH (CI installs it with apt).
//! See `common` for why the head is swapped for an unprivileged copy of the built-in one.

mod common;

use std::path::Path;

use clap::Parser;
use marathon_lb::config::{Cli, Config};
use marathon_lb::haproxy::{self, ValidateError};
use marathon_lb::render::Rendered;
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;

/// A temp dir holding `templates/HAPROXY_HEAD` (the unprivileged head) and room for a config.
struct Sandbox {
    dir: tempfile::TempDir,
    templates: Templates,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let templates = common::unprivileged_templates(dir.path());
        Self { dir, templates }
    }

    fn config_path(&self) -> String {
        self.dir.path().join("haproxy.cfg").display().to_string()
    }

    fn config(&self, extra: &[&str]) -> Config {
        let mut argv = vec![
            "marathon-lb".to_owned(),
            "--haproxy-config".to_owned(),
            self.config_path(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Cli::try_parse_from(argv)
            .unwrap()
            .validate(|_| None)
            .unwrap()
    }

    /// Renders `body` and points every certificate (`crt <path>`, from labels or
    /// `--ssl-certs`) at the fixture, which is the only certificate these tests have.
    fn render(&self, body: &[u8], extra: &[&str]) -> (Rendered, Config) {
        let config = self.config(extra);
        let mut rendered = run::render_body(
            body,
            "apps.json",
            &config,
            &self.templates,
            &mut Memory::default(),
        )
        .unwrap();
        rendered.config = common::with_fixture_certs(&rendered.config).into();
        (rendered, config)
    }

    fn validate(&self, rendered: Rendered, config: &Config) -> Result<String, ValidateError> {
        let output = &config.output;
        haproxy::validate(rendered, &output.paths, output.map, "haproxy")
            .map(|v| v.rendered().config.to_string())
    }
}

fn example_body() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/apps.json")).unwrap()
}

#[test]
fn bundled_example_with_kubeapi_proxy_is_valid() {
    if !common::haproxy_available("bundled_example_with_kubeapi_proxy_is_valid") {
        return;
    }
    let sandbox = Sandbox::new();
    let (rendered, config) = sandbox.render(&example_body(), &["--group", "external"]);
    let text = sandbox
        .validate(rendered, &config)
        .unwrap_or_else(|e| panic!("haproxy rejected the bundled example: {e}"));
    // The check saw the real services, not an empty config.
    assert!(text.contains("frontend kubeapi-proxy_6443\n  bind *:6443 ssl crt "));
    assert!(text.contains("  server kube-apiserver localhost:6444 ssl verify none\n"));
    assert!(text.contains("backend demo_web_10001\n"));
}

#[test]
fn bundled_example_in_map_mode_is_valid() {
    if !common::haproxy_available("bundled_example_in_map_mode_is_valid") {
        return;
    }
    let sandbox = Sandbox::new();
    let (rendered, config) =
        sandbox.render(&example_body(), &["--group", "external", "--haproxy-map"]);
    assert!(rendered
        .domain_map
        .contains("demo.example.com demo_web_10001"));
    sandbox
        .validate(rendered, &config)
        .unwrap_or_else(|e| panic!("haproxy rejected the example in map mode: {e}"));
}

#[test]
fn vhost_on_a_tcp_mode_service_is_rejected_with_haproxys_alert() {
    if !common::haproxy_available("vhost_on_a_tcp_mode_service_is_rejected_with_haproxys_alert") {
        return;
    }
    let body = br#"{"apps":[{"id":"/shop","labels":{"HAPROXY_GROUP":"external",
        "HAPROXY_0_VHOST":"shop.example.com","HAPROXY_0_MODE":"tcp"},
        "portDefinitions":[{"port":10001}],
        "tasks":[{"id":"shop.1","host":"127.0.0.1","ports":[8080],"state":"TASK_RUNNING"}]}]}"#;
    let sandbox = Sandbox::new();
    let (rendered, config) = sandbox.render(body, &["--group", "external"]);
    match sandbox.validate(rendered, &config) {
        Ok(_) => panic!("haproxy accepted an http frontend routing to a tcp backend"),
        Err(ValidateError::Rejected { alerts }) => {
            assert!(alerts.contains("[ALERT]"), "{alerts}");
            assert!(
                alerts.contains("marathon_http_in") && alerts.contains("shop_10001"),
                "the alert should name the frontend and the tcp backend: {alerts}"
            );
            // The temp path of the candidate is replaced by the plain file name.
            assert!(!alerts.contains("/tmp"), "{alerts}");
        }
        Err(other) => panic!("the check did not run: {other}"),
    }
}

#[test]
fn every_golden_case_is_valid_for_haproxy() {
    if !common::haproxy_available("every_golden_case_is_valid_for_haproxy") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let case = entry.unwrap().path();
        let body = std::fs::read(case.join("apps.json")).unwrap();
        let args = std::fs::read_to_string(case.join("args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        let sandbox = Sandbox::new();
        let (rendered, config) = sandbox.render(&body, &args);
        if let Err(e) = sandbox.validate(rendered, &config) {
            panic!(
                "golden case {} is not valid for haproxy: {e}",
                case.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} golden cases found");
}
