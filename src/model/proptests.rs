//! Property tests of the label parsers, the model and the label templates: arbitrary label
//! maps never panic; in one-shot an error names the app and the label, in live mode the
//! model never fails and every left-out app is named with labels it has; rendering what the
//! model kept fails only with an error naming one of its apps. 256 cases in `cargo test`,
//! 20,000 in the `#[ignore]`d variant.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::invalid::LeftOut;
use super::*;
use crate::marathon::types::{PortDefinition, Str};

const KEYS: &[&str] = &[
    "HAPROXY_GROUP",
    "HAPROXY_0_PORT",
    "HAPROXY_0_BACKEND_WEIGHT",
    "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX",
    "HAPROXY_0_AUTH",
    "HAPROXY_0_VHOST",
    "HAPROXY_0_PATH",
    "HAPROXY_0_MODE",
    "HAPROXY_0_BIND_ADDR",
    "HAPROXY_0_BIND_OPTIONS",
    "HAPROXY_0_SSL_CERT",
    "HAPROXY_0_STICKY",
    "HAPROXY_0_ENABLED",
    "HAPROXY_0_HTTP_BACKEND_REDIR",
    "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH",
    "HAPROXY_0_BACKEND_HEAD",
    "HAPROXY_0_FRONTEND_HEAD",
    "HAPROXY_0_BACKEND_SERVER_OPTIONS",
    "HAPROXY_1_PORT",
    "HAPROXY_00_PORT",
    "HAPROXY_DEPLOYMENT_GROUP",
    "HAPROXY_DEPLOYMENT_STARTED_AT",
    "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
    "OTHER",
];

/// Label values: short strings of characters that matter to the parsers and templates.
fn value() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        prop::sample::select(vec![
            '0', '1', '9', '-', ' ', ':', ',', '.', '/', 'a', 'T', '{', '}', '\n', '\r', '\t',
            '\0', 'é'
        ]),
        any::<char>(),
    ];
    prop::collection::vec(chars, 0..12).prop_map(|c| c.into_iter().collect())
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(prop::sample::select(KEYS), value(), 0..6)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn app(i: usize, labels: &BTreeMap<String, String>) -> App<'static> {
    let json = format!(
        r#"{{"id":"/app-{i}","instances":1,"tasks":[{{"id":"t{i}","host":"127.0.0.1","ports":[31000,31001]}}]}}"#
    );
    // Leaked so the app may borrow from it for 'static: a few bytes per test case.
    let json: &'static str = Box::leak(json.into_boxed_str());
    let mut app: App<'static> = match serde_json::from_str(json) {
        Ok(app) => app,
        Err(e) => panic!("{e}"),
    };
    app.labels = labels
        .iter()
        .map(|(k, v)| (Str::from(k.clone()), Str::from(v.clone())))
        .collect();
    app.port_definitions = Some(vec![
        PortDefinition {
            port: Some(10000 + 2 * i as i64),
        },
        PortDefinition {
            port: Some(10001 + 2 * i as i64),
        },
    ]);
    app
}

fn model(
    apps: &[BTreeMap<String, String>],
    live: bool,
) -> Result<(Vec<Arc<Service>>, Vec<LeftOut>), Error> {
    let options = Options {
        leave_out_invalid: live,
        ..Options::default()
    };
    let (mut resolver, mut health) = (network::Resolver::default(), HealthMemory::default());
    let mut builder = Builder::new(&options, &mut resolver, &mut health);
    for (i, labels) in apps.iter().enumerate() {
        builder.push(app(i, labels));
    }
    builder.finish_all()
}

/// Ids an error or report may name: the apps' and their deployment groups'.
fn known_ids(apps: &[BTreeMap<String, String>]) -> Vec<String> {
    let mut ids: Vec<String> = (0..apps.len()).map(|i| format!("/app-{i}")).collect();
    for labels in apps {
        if let Some(g) = labels.get("HAPROXY_DEPLOYMENT_GROUP") {
            ids.push(if g.starts_with('/') {
                g.clone()
            } else {
                format!("/{g}")
            });
        }
    }
    ids
}

fn check(apps: &[BTreeMap<String, String>]) -> Result<(), TestCaseError> {
    let ids = known_ids(apps);
    if let Err(e) = model(apps, false) {
        let text = e.to_string();
        prop_assert!(
            ids.iter()
                .any(|id| text.contains(id.as_str())
                    || text.contains(&id.escape_debug().to_string())),
            "{}",
            text
        );
        if let Error::InvalidLabel { label, .. } = &e {
            prop_assert!(apps.iter().any(|l| l.contains_key(label)), "{}", text);
        }
    }
    let (services, left_out) = match model(apps, true) {
        Ok(done) => done,
        Err(e) => return Err(TestCaseError::fail(format!("live mode failed: {e}"))),
    };
    for out in &left_out {
        prop_assert!(ids.contains(&out.app_id), "{:?}", out);
        for label in &out.labels {
            let known =
                label == "HAPROXY_DEPLOYMENT_GROUP" || apps.iter().any(|l| l.contains_key(label));
            prop_assert!(known, "{:?}", out);
        }
    }
    let options = crate::render::Options {
        groups: vec!["*".into()],
        bind_http_https: true,
        ssl_certs: "/etc/ssl/cert.pem".into(),
        haproxy_map: false,
        haproxy_dir: "/etc/haproxy".into(),
        group_https_by_vhost: false,
    };
    let templates = crate::templates::Templates::builtin();
    if let Err(e) = crate::render::render(&services, &templates, &options) {
        let named = e
            .app_id()
            .is_some_and(|id| services.iter().any(|s| s.app_id == id));
        prop_assert!(named, "{}", e);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_labels_never_panic_and_errors_name_app_and_label(
        apps in prop::collection::vec(labels(), 1..4)
    ) {
        check(&apps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    #[ignore = "long run: cargo test --lib proptests -- --ignored"]
    fn arbitrary_labels_never_panic_and_errors_name_app_and_label_long(
        apps in prop::collection::vec(labels(), 1..4)
    ) {
        check(&apps)?;
    }
}
