//! The live loop's incremental render over `../shared/bench/gen-apps --churn`, Marathon's task
//! churn as successive `/v2/apps` bodies: at every version the config and maps equal a full
//! render byte for byte, task-only changes are planned from the changed apps alone, and that
//! plan equals the plan over the whole configs, as does `--command` mode's test of whether the
//! config changed. Label changes are mixed in every few versions.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use marathon_lb::haproxy::command;
use marathon_lb::haproxy::plan::{plan, Plan, Snapshot};
use marathon_lb::marathon::types::AppsBody;
use marathon_lb::model::{self, network::Resolver, HealthMemory, Service};
use marathon_lb::render::{self, Incremental, Options, Rendered};
use marathon_lb::templates::Templates;

/// `gen-apps` output: one apps body per line.
fn churn(apps: usize, versions: usize) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    let out = Command::new(&script)
        .args(["--apps", &apps.to_string(), "--seed", "7", "--churn"])
        .arg(versions.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{} must run (CI has ../shared): {e}", script.display()));
    assert!(out.status.success(), "gen-apps failed");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The services of one body; every fifth version gets one app's vhost changed, so definition
/// changes are part of the stream too.
fn services(body: &str, version: usize) -> Vec<Arc<Service>> {
    let mut value: serde_json::Value = serde_json::from_str(body).unwrap();
    if version % 5 == 4 {
        let apps = value["apps"].as_array_mut().unwrap();
        let n = apps.len();
        let app = &mut apps[(version * 37) % n];
        app["labels"]["HAPROXY_0_VHOST"] = format!("changed{version}.example.com").into();
    }
    let body = value.to_string();
    let apps = AppsBody::parse(body.as_bytes()).unwrap().apps;
    let options = model::Options {
        leave_out_invalid: true,
        ..model::Options::default()
    };
    let mut resolver = Resolver::new(|_| Some("10.9.9.9".to_owned()));
    model::build(apps, &options, &mut resolver, &mut HealthMemory::default()).unwrap()
}

fn snapshot(r: &Rendered) -> Snapshot<'_> {
    Snapshot {
        config: &r.config,
        domain_map: &r.domain_map,
        app_map: &r.app_map,
    }
}

#[test]
fn incremental_render_equals_full_render_over_a_churn_stream() {
    let templates = Templates::builtin();
    for haproxy_map in [false, true] {
        let options = Options {
            groups: vec!["external".into()],
            bind_http_https: true,
            ssl_certs: String::new(),
            haproxy_map,
            haproxy_dir: "/etc/haproxy".into(),
            group_https_by_vhost: false,
        };
        let mut incremental = Incremental::new();
        let mut previous: Option<Rendered> = None;
        let (mut local_plans, mut runtime_plans) = (0, 0);
        let (mut kept, mut total) = (0, 0);
        for (version, body) in churn(200, 30).iter().enumerate() {
            let services = services(body, version);
            let full = render::render(&services, &templates, &options).unwrap();
            let inc = incremental.render(&services, &templates, &options).unwrap();
            assert!(
                inc.config == full.config,
                "version {version}: configs differ"
            );
            kept += inc.incremental.as_ref().unwrap().kept;
            total += inc.config.len();
            assert_eq!(inc.domain_map, full.domain_map, "version {version}");
            assert_eq!(inc.app_map, full.app_map, "version {version}");
            let services = Arc::new(services);
            incremental.commit(&services);
            let inc = match version % 7 {
                // A pass whose services did not change: the same config, no reload.
                3 => {
                    let again = incremental.render(&services, &templates, &options).unwrap();
                    incremental.commit(&services);
                    assert!(!command::differs(&inc, &again, haproxy_map), "{version}");
                    again
                }
                _ => inc,
            };
            if let Some(previous) = &previous {
                let differs = previous.config != inc.config
                    || (haproxy_map
                        && (previous.domain_map != inc.domain_map
                            || previous.app_map != inc.app_map));
                assert_eq!(
                    command::differs(previous, &inc, haproxy_map),
                    differs,
                    "version {version}: `--command` mode's change test"
                );
                let whole = plan(Some(snapshot(previous)), snapshot(&full));
                let delta = inc.incremental.as_ref().unwrap();
                let base = previous.incremental.as_ref().unwrap().generation;
                if let Some((before, after)) = delta.texts_since(base) {
                    let part = |config| Snapshot {
                        config,
                        domain_map: "",
                        app_map: "",
                    };
                    assert_eq!(plan(Some(part(before)), part(after)), whole, "{version}");
                    local_plans += 1;
                }
                runtime_plans += usize::from(matches!(whole, Plan::Runtime(_)));
            }
            previous = Some(inc);
        }
        // Task churn is planned from the changed apps; vhost changes are not.
        eprintln!("map {haproxy_map}: {local_plans} local plans, {runtime_plans} runtime plans");
        assert!(local_plans >= 15, "only {local_plans} local plans");
        assert!(
            local_plans < 29,
            "label changes must re-render the shared block"
        );
        assert!(runtime_plans >= 15, "only {runtime_plans} runtime plans");
        // The configs above were assembled partly in reused buffers, keeping what an older
        // render's text already held up to the first change: that path was taken, and equal.
        eprintln!("map {haproxy_map}: {kept} of {total} bytes kept from reused buffers");
        assert!(kept * 10 > total, "only {kept} of {total} bytes kept");
    }
}

/// The config two renders back lends its buffer to the next render once nothing holds it; a
/// config still held is never written into.
#[test]
fn a_free_past_config_buffer_is_reused_and_a_held_one_is_left_alone() {
    let templates = Templates::builtin();
    let options = Options {
        groups: vec!["external".into()],
        bind_http_https: true,
        ssl_certs: String::new(),
        haproxy_map: false,
        haproxy_dir: "/etc/haproxy".into(),
        group_https_by_vhost: false,
    };
    let bodies = churn(50, 6);
    let mut incremental = Incremental::new();
    let mut render = |version: usize| {
        let services = services(&bodies[version], version);
        let rendered = incremental.render(&services, &templates, &options).unwrap();
        incremental.commit(&Arc::new(services));
        rendered.config
    };
    let data = |config: &Arc<String>| config.as_ptr();
    // As in the live loop, the last config is held (as the written one) during a render.
    let zero = render(0);
    let one = render(1);
    assert_ne!(data(&one), data(&zero), "a held config lends nothing");
    let zero_at = data(&zero);
    drop(zero);
    let two = render(2);
    assert_eq!(data(&two), zero_at, "a free config's buffer is reused");

    let one_text = one.to_string();
    drop(two);
    let three = render(3);
    assert_ne!(data(&three), data(&one));
    assert_eq!(*one, one_text, "a held config is never changed");
}
