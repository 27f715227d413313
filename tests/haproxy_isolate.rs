//! `haproxy::isolate` against the real `haproxy -c`: bad apps among good ones are found,
//! left out and reported with their label and HAProxy's alert, in few checks.
//!
//! Each test skips, loudly, when `haproxy` is not on PATH (CI installs it with apt).

mod common;

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use marathon_lb::config::{Cli, Config};
use marathon_lb::haproxy::isolate::{self, Isolation};
use marathon_lb::haproxy::{self, ValidateError, ValidateOutput};
use marathon_lb::marathon::types::AppsBody;
use marathon_lb::model::{self, network::Resolver, HealthMemory, Service};
use marathon_lb::render::{self, Rendered};
use marathon_lb::templates::Templates;

/// A temp dir with the unprivileged head, the config of one run and a check counter.
struct Sandbox {
    /// Holds the head's socket dir and the config path for the sandbox's lifetime.
    _dir: tempfile::TempDir,
    templates: Templates,
    config: Config,
    checks: Cell<usize>,
}

impl Sandbox {
    fn new(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let templates = common::unprivileged_templates(dir.path());
        let mut argv = vec![
            "marathon-lb".to_owned(),
            "--haproxy-config".to_owned(),
            dir.path().join("haproxy.cfg").display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let config = Cli::try_parse_from(argv)
            .unwrap()
            .validate(|_| None)
            .unwrap();
        Self {
            _dir: dir,
            templates,
            config,
            checks: Cell::new(0),
        }
    }

    fn services(&self, body: &[u8]) -> Vec<Arc<Service>> {
        let apps = AppsBody::parse(body).unwrap().apps;
        model::build(
            apps,
            &self.config.model,
            &mut Resolver::default(),
            &mut HealthMemory::default(),
        )
        .unwrap()
    }

    /// Renders, pointing every `crt` at the fixture certificate (the only one the tests have).
    fn render(&self, services: &[Arc<Service>]) -> Result<Rendered, render::Error> {
        let mut rendered = render::render(services, &self.templates, &self.config.render)?;
        rendered.config = common::with_fixture_certs(&rendered.config).into();
        Ok(rendered)
    }

    fn validate(&self, rendered: &Rendered) -> Result<ValidateOutput, ValidateError> {
        self.checks.set(self.checks.get() + 1);
        let output = &self.config.output;
        haproxy::validate_verbose(rendered, &output.paths, output.map, "haproxy")
    }

    fn isolate(&self, services: &[Arc<Service>]) -> Isolation {
        isolate::isolate(services, |s| self.render(s), |r| self.validate(r)).unwrap()
    }

    fn bisect(&self, services: &[Arc<Service>]) -> Isolation {
        isolate::isolate_by_bisection(services, |s| self.render(s), |r| self.validate(r)).unwrap()
    }
}

/// One app as Marathon lists it: `/id`, a service port, one task, and `labels` (JSON pairs).
fn app(id: &str, port: usize, labels: &str) -> String {
    let comma = if labels.is_empty() { "" } else { "," };
    format!(
        r#"{{"id":"{id}","labels":{{"HAPROXY_GROUP":"external"{comma}{labels}}},
        "portDefinitions":[{{"port":{port}}}],
        "tasks":[{{"id":"{id}.1","host":"127.0.0.1","ports":[{}],"state":"TASK_RUNNING"}}]}}"#,
        20_000 + port % 10_000
    )
}

/// `n` good apps (every third one an http vhost) plus `extra`, as an apps body.
fn body(n: usize, extra: &[String]) -> Vec<u8> {
    let mut apps: Vec<String> = (0..n)
        .map(|i| {
            let labels = if i % 3 == 0 {
                format!(r#""HAPROXY_0_VHOST":"app-{i}.example.com""#)
            } else {
                String::new()
            };
            app(&format!("/app-{i:04}"), 10_000 + i, &labels)
        })
        .collect();
    apps.extend_from_slice(extra);
    format!(r#"{{"apps":[{}]}}"#, apps.join(",")).into_bytes()
}

fn vhost_on_tcp() -> String {
    app(
        "/shop",
        9_001,
        r#""HAPROXY_0_VHOST":"shop.example.com","HAPROXY_0_MODE":"tcp""#,
    )
}

fn bogus_server_options() -> String {
    app(
        "/bogus",
        9_002,
        r#""HAPROXY_0_BACKEND_SERVER_OPTIONS":"  bogus-directive on\n""#,
    )
}

/// The bound the brief sets: `2 + 2 * log2(apps)` checks for one bad app.
fn log_bound(apps: usize) -> usize {
    2 + 2 * (apps as f64).log2().ceil() as usize
}

fn ids(isolation: &Isolation) -> Vec<&str> {
    isolation
        .rejected
        .iter()
        .map(|r| r.app_id.as_str())
        .collect()
}

#[test]
fn one_bad_app_among_fifty_is_left_out_with_its_label_and_alert() {
    if !common::haproxy_available("one_bad_app_among_fifty_is_left_out_with_its_label_and_alert") {
        return;
    }
    for (bad, label, alert) in [
        (
            vhost_on_tcp(),
            "HAPROXY_0_MODE",
            "tries to use incompatible tcp backend 'shop_9001'",
        ),
        (
            bogus_server_options(),
            "HAPROXY_0_BACKEND_SERVER_OPTIONS",
            "unknown keyword 'bogus-directive'",
        ),
    ] {
        let sandbox = Sandbox::new(&["--group", "external"]);
        let services = sandbox.services(&body(50, &[bad]));
        let apps = model::app_count(&services);
        let isolation = sandbox.isolate(&services);
        assert_eq!(isolation.rejected.len(), 1, "{:?}", isolation.rejected);
        let rejected = &isolation.rejected[0];
        assert!(rejected.labels.iter().any(|l| l == label), "{rejected:?}");
        assert!(rejected.error_line.contains("[ALERT]"), "{rejected:?}");
        assert!(rejected.error_line.contains(alert), "{rejected:?}");
        assert_eq!(isolation.kept.len(), 50);
        assert_eq!(isolation.checks_run, sandbox.checks.get());
        assert!(
            isolation.checks_run <= log_bound(apps),
            "{}",
            isolation.checks_run
        );
        assert_eq!(isolation.checks_run, 2, "attribution needs one re-check");
        assert!(isolation
            .validated
            .rendered()
            .config
            .contains("backend app-0049_10049\n"));

        // Bisection alone finds the same app, within the bound.
        let sandbox = Sandbox::new(&["--group", "external"]);
        let bisected = sandbox.bisect(&services);
        assert_eq!(ids(&bisected), ids(&isolation));
        assert!(
            bisected.checks_run <= log_bound(apps),
            "{}",
            bisected.checks_run
        );
        assert!(bisected.rejected[0].error_line.contains(alert));
    }
}

#[test]
fn two_bad_apps_are_both_left_out() {
    if !common::haproxy_available("two_bad_apps_are_both_left_out") {
        return;
    }
    let sandbox = Sandbox::new(&["--group", "external"]);
    let services = sandbox.services(&body(50, &[vhost_on_tcp(), bogus_server_options()]));
    let isolation = sandbox.isolate(&services);
    let mut rejected = ids(&isolation);
    rejected.sort();
    assert_eq!(rejected, ["/bogus", "/shop"]);
    let shop = isolation
        .rejected
        .iter()
        .find(|r| r.app_id == "/shop")
        .unwrap();
    assert_eq!(shop.labels, ["HAPROXY_0_MODE", "HAPROXY_0_VHOST"]);
    assert!(
        shop.error_line
            .starts_with("[ALERT] config : http frontend"),
        "{shop:?}"
    );
    // The parse error shows first; the mode clash only once parsing succeeds.
    assert!(isolation.checks_run <= 3, "{}", isolation.checks_run);
    assert_eq!(isolation.kept.len(), 50);

    let sandbox = Sandbox::new(&["--group", "external"]);
    let bisected = sandbox.bisect(&services);
    assert_eq!(ids(&bisected), ["/bogus", "/shop"]);
    assert!(bisected.checks_run <= 2 * log_bound(52));
}

#[test]
fn apps_that_clash_keep_the_earlier_one() {
    if !common::haproxy_available("apps_that_clash_keep_the_earlier_one") {
        return;
    }
    // Both render `frontend a_b_9100` and `backend a_b_9100`.
    let clash = [app("/a/b", 9_100, ""), app("/a_b", 9_100, "")];
    let sandbox = Sandbox::new(&["--group", "external"]);
    let services = sandbox.services(&body(50, &clash));
    let isolation = sandbox.isolate(&services);
    assert_eq!(ids(&isolation), ["/a_b"]);
    assert!(
        isolation.rejected[0]
            .error_line
            .contains("has the same name"),
        "{:?}",
        isolation.rejected
    );
    assert!(isolation.kept.iter().any(|s| s.app_id == "/a/b"));
    assert_eq!(isolation.checks_run, 2);

    let sandbox = Sandbox::new(&["--group", "external"]);
    let bisected = sandbox.bisect(&services);
    assert_eq!(ids(&bisected), ["/a_b"]);
    assert!(bisected.checks_run <= log_bound(52));
}

#[test]
fn the_kubeapi_proxy_warning_is_attributed_to_its_app() {
    if !common::haproxy_available("the_kubeapi_proxy_warning_is_attributed_to_its_app") {
        return;
    }
    let sandbox = Sandbox::new(&["--group", "external"]);
    let example =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/apps.json")).unwrap();
    let services = sandbox.services(&example);
    let isolation = sandbox.isolate(&services);
    assert!(isolation.rejected.is_empty(), "{:?}", isolation.rejected);
    assert_eq!(isolation.checks_run, 1);
    let warning = isolation
        .warnings
        .iter()
        .find(|w| w.line.contains("'timeout client' will be ignored"))
        .unwrap_or_else(|| panic!("no timeout warning in {:?}", isolation.warnings));
    assert_eq!(warning.app_id, "/kubeapi-proxy");
    assert!(warning.line.contains("backend 'kubeapi-proxy_6443'"));
    assert!(isolation
        .warnings
        .iter()
        .all(|w| w.app_id == "/kubeapi-proxy"));
}

/// `cargo test --release --test haproxy_isolate -- --ignored --nocapture`: one bad app among
/// 1000, found by attribution, by bisection, and one `haproxy -c` per app as the original does.
#[test]
#[ignore]
fn one_bad_app_among_a_thousand_timings() {
    if !common::haproxy_available("one_bad_app_among_a_thousand_timings") {
        return;
    }
    let sandbox = Sandbox::new(&["--group", "external"]);
    let services = sandbox.services(&body(1000, &[bogus_server_options()]));
    let started = Instant::now();
    let isolation = sandbox.isolate(&services);
    let attributed = (isolation.checks_run, started.elapsed());
    assert_eq!(ids(&isolation), ["/bogus"]);

    let started = Instant::now();
    let bisected = sandbox.bisect(&services);
    let bisection = (bisected.checks_run, started.elapsed());
    assert_eq!(ids(&bisected), ["/bogus"]);

    // The original: the full check fails, then one check per app, each app alone.
    let started = Instant::now();
    let mut checks = 1;
    let mut bad = Vec::new();
    let _ = sandbox.validate(&sandbox.render(&services).unwrap());
    let mut apps = model::sibling_ranges(&services);
    apps.dedup();
    for range in apps {
        let alone = &services[range];
        checks += 1;
        if sandbox.validate(&sandbox.render(alone).unwrap()).is_err() {
            bad.push(alone[0].app_id.clone());
        }
    }
    let per_app = (checks, started.elapsed());
    assert_eq!(bad, ["/bogus"]);
    eprintln!(
        "1 bad app among 1001: attribution {} checks in {:.2?}; bisection {} checks in {:.2?}; \
         one per app {} checks in {:.2?}",
        attributed.0, attributed.1, bisection.0, bisection.1, per_app.0, per_app.1
    );
}
