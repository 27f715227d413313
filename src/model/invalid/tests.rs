//! Unit tests of the per-app rules: leave out vs abort, control characters, port conflicts.

use super::*;
use crate::marathon::types::AppsBody;
use crate::model::{network::Resolver, Builder, HealthMemory, Options};
use std::sync::Arc;

fn app(id: &str, port: i64, labels: &str) -> String {
    format!(
        r#"{{"id":"{id}","labels":{{{labels}}},"portDefinitions":[{{"port":{port}}}],
        "tasks":[{{"id":"{id}.1","host":"127.0.0.1","ports":[31000]}}]}}"#
    )
}

fn build(apps: &[String], leave_out: bool) -> Result<(Vec<Arc<Service>>, Vec<LeftOut>), Error> {
    let body = format!(r#"{{"apps":[{}]}}"#, apps.join(","));
    let parsed = AppsBody::parse(body.as_bytes()).unwrap().apps;
    let options = Options {
        leave_out_invalid: leave_out,
        ..Options::default()
    };
    let (mut resolver, mut health) = (Resolver::default(), HealthMemory::default());
    let mut builder = Builder::new(&options, &mut resolver, &mut health);
    for app in parsed {
        builder.push(app);
    }
    builder.finish_all()
}

fn ids(services: &[Arc<Service>]) -> Vec<&str> {
    services.iter().map(|s| s.app_id.as_str()).collect()
}

#[test]
fn live_mode_leaves_out_an_app_with_a_bad_port_label_and_models_the_rest() {
    let apps = [
        app("/a", 10000, ""),
        app("/x", 10001, r#""HAPROXY_0_PORT":"abc""#),
        app("/z", 10002, ""),
    ];
    let (services, left_out) = build(&apps, true).unwrap();
    assert_eq!(ids(&services), ["/a", "/z"]);
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].app_id, "/x");
    assert_eq!(left_out[0].labels, ["HAPROXY_0_PORT"]);
    assert!(
        left_out[0].reason.contains("HAPROXY_0_PORT"),
        "{left_out:?}"
    );
}

#[test]
fn one_shot_aborts_on_the_first_bad_app_as_the_original() {
    let apps = [
        app("/x", 10001, r#""HAPROXY_0_PORT":"abc""#),
        app("/y", 10002, r#""HAPROXY_0_BACKEND_WEIGHT":"w""#),
    ];
    let e = build(&apps, false).unwrap_err().to_string();
    assert!(e.contains("/x") && e.contains("HAPROXY_0_PORT"), "{e}");
}

#[test]
fn value_labels_and_ids_with_line_breaks_are_refused_templates_are_not() {
    let evil = r#""HAPROXY_0_BIND_OPTIONS":"ssl\nlisten evil\n bind 127.0.0.1:1""#;
    for labels in [
        evil,
        r#""HAPROXY_0_VHOST":"a.com\r\n""#,
        r#""HAPROXY_GROUP":"external\n""#,
        r#""HAPROXY_0_SSL_CERT":"/a\u0000""#,
        r#""HAPROXY_1_MODE":"http\n""#,
    ] {
        let e = build(&[app("/x", 10000, labels)], false).unwrap_err();
        assert!(matches!(e, Error::InvalidLabel { .. }), "{labels}: {e}");
        let (services, left_out) = build(&[app("/x", 10000, labels)], true).unwrap();
        assert!(services.is_empty(), "{labels}");
        assert_eq!(left_out[0].labels.len(), 1, "{labels}");
        assert!(left_out[0].reason.contains("control characters"));
    }
    // Both a value and a template name: verbatim in one-shot (as the original), refused live.
    let redir = r#""HAPROXY_0_HTTP_BACKEND_REDIR":"  acl is_root path -i /\n""#;
    assert!(build(&[app("/r", 10000, redir)], false).is_ok());
    assert_eq!(build(&[app("/r", 10000, redir)], true).unwrap().1.len(), 1);
    let template = r#""HAPROXY_0_BACKEND_HEAD":"\nbackend {backend}\n  balance {balance}\n""#;
    let (services, left_out) = build(&[app("/t", 10000, template)], true).unwrap();
    assert_eq!((services.len(), left_out.len()), (1, 0));

    let (services, left_out) = build(&[app("/a\\nlisten x", 10000, "")], true).unwrap();
    assert!(services.is_empty());
    assert!(left_out[0].reason.contains("app id"), "{left_out:?}");
    assert!(build(&[app("/a\\tb", 10000, "")], false).is_err());
}

#[test]
fn a_task_whose_host_or_address_has_whitespace_is_left_out() {
    let body = r#"{"apps":[{"id":"/a","portDefinitions":[{"port":10000}],"tasks":[
        {"id":"a.1","host":"127.0.0.1\nlisten x","ports":[31000]},
        {"id":"a.2","host":"127.0.0.2","ports":[31001]},
        {"id":"a.3","host":"127.0.0.3","ports":[31002],"ipAddresses":[{"ipAddress":"1.2.3.4 x"}]}]}]}"#;
    let apps = AppsBody::parse(body.as_bytes()).unwrap().apps;
    let services = crate::model::build(
        apps,
        &Options::default(),
        &mut Resolver::default(),
        &mut HealthMemory::default(),
    )
    .unwrap();
    let hosts: Vec<&str> = services[0]
        .backends
        .iter()
        .map(|b| b.host.as_str())
        .collect();
    assert_eq!(hosts, ["127.0.0.2"]);
}

#[test]
fn a_failed_deployment_group_is_left_out_in_live_mode() {
    let group = |id: &str, started: &str| {
        app(
            id,
            10000,
            &format!(
                r#""HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"{started}""#
            ),
        )
    };
    let apps = [
        group("/g-1", "2020-01-01T00:00:00"),
        group("/g-2", "2020-01-02T00:00:00+00:00"),
        app("/a", 10001, ""),
    ];
    assert!(build(&apps, false).is_err());
    let (services, left_out) = build(&apps, true).unwrap();
    assert_eq!(ids(&services), ["/a"]);
    assert_eq!(left_out[0].app_id, "/g");
}

fn services(list: &[(&str, i64, &str)]) -> Vec<Arc<Service>> {
    list.iter()
        .map(|(id, port, bind)| {
            let mut s = Service::new((*id).into(), *port, None, false);
            s.bind_addr = (*bind).into();
            s.labels = vec![("HAPROXY_0_PORT".into(), port.to_string())];
            Arc::new(s)
        })
        .collect()
}

fn resolve(list: &[(&str, i64, &str)], previous: &PortHolders) -> (Vec<String>, Vec<LeftOut>) {
    let (kept, left_out, _) = resolve_port_conflicts(
        services(list),
        previous,
        |_| true,
        &[(80, "marathon_http_in")],
    );
    let kept = kept
        .iter()
        .map(|s| format!("{}:{}", s.app_id, s.service_port))
        .collect();
    (kept, left_out)
}

#[test]
fn at_start_the_lowest_app_id_keeps_a_contested_port() {
    let (kept, left_out) = resolve(
        &[("/a", 9000, "*"), ("/b", 9000, "*"), ("/b", 9001, "*")],
        &PortHolders::new(),
    );
    assert_eq!(kept, ["/a:9000", "/b:9001"]);
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].app_id, "/b");
    assert_eq!(left_out[0].labels, ["HAPROXY_0_PORT"]);
    let reason = &left_out[0].reason;
    assert!(
        reason.contains("9000") && reason.contains("app /a") && reason.contains("HAPROXY_0_PORT"),
        "{reason}"
    );
}

#[test]
fn the_previous_holder_keeps_its_port_against_a_newcomer() {
    let previous = PortHolders::from([(9000, "/b".to_owned())]);
    let (kept, left_out) = resolve(&[("/a", 9000, "*"), ("/b", 9000, "*")], &previous);
    assert_eq!(kept, ["/b:9000"]);
    assert_eq!(left_out[0].app_id, "/a");
    assert!(left_out[0].reason.contains("app /b"));
}

#[test]
fn distinct_addresses_share_a_port_and_the_shared_frontends_are_reserved() {
    let (kept, left_out) = resolve(
        &[
            ("/a", 9000, "127.0.0.1"),
            ("/b", 9000, "127.0.0.2"),
            ("/c", 9000, "*"),
            ("/d", 80, "*"),
        ],
        &PortHolders::new(),
    );
    assert_eq!(kept, ["/a:9000", "/b:9000"]);
    let out: Vec<&str> = left_out.iter().map(|l| l.app_id.as_str()).collect();
    assert_eq!(out, ["/c", "/d"]);
    assert!(left_out[1].reason.contains("marathon_http_in"));
}

#[test]
fn one_app_may_repeat_its_own_port() {
    let (kept, left_out) = resolve(&[("/a", 9000, "*"), ("/a", 9000, "*")], &PortHolders::new());
    assert_eq!(kept.len(), 2);
    assert!(left_out.is_empty());
}

/// One step of claims for [`port_claims_across_passes_match_the_holders_threaded_by_hand`]:
/// five services, each field changed from the last step or kept (`None`): app, port, address,
/// whether the config binds it, whether it keeps the last step's `Arc` when nothing changed.
type Slot = (
    Option<usize>,
    Option<i64>,
    Option<usize>,
    Option<bool>,
    bool,
);

fn claims_step() -> impl proptest::strategy::Strategy<Value = Vec<Slot>> {
    use proptest::option::weighted;
    use proptest::prelude::*;
    let slot = (
        weighted(0.2, 0..4usize),
        weighted(0.2, 9000..9003i64),
        weighted(0.2, 0..3usize),
        weighted(0.2, any::<bool>()),
        any::<bool>(),
    );
    proptest::collection::vec(slot, 5)
}

proptest::proptest! {
    // Cheap cases; an unsettled reuse shows in about one case in a few hundred.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// [`PortClaims`] (which reuses a settled resolution while the claims stay the same) leaves
    /// out exactly what [`resolve_port_conflicts`] does with the holders passed on by hand. The
    /// services come in any order (the model sorts them by app id; the claims must not rely
    /// on it).
    #[test]
    fn port_claims_across_passes_match_the_holders_threaded_by_hand(
        steps in proptest::collection::vec(claims_step(), 1..8),
        repeats in proptest::collection::vec(1..4usize, 8),
    ) {
        let binds = ["*", "127.0.0.1", "127.0.0.2"];
        let selected = |s: &Service| s.enabled;
        let reserved = [(9001, "marathon_http_in")];
        let mut claims = PortClaims::default();
        let mut holders = PortHolders::new();
        let mut fields = [(0usize, 9000i64, 0usize, true); 5];
        let mut last: Vec<Arc<Service>> = Vec::new();
        for (step, repeat) in steps.iter().zip(&repeats) {
            for (f, (app, port, bind, enabled, _)) in fields.iter_mut().zip(step) {
                *f = (app.unwrap_or(f.0), port.unwrap_or(f.1), bind.unwrap_or(f.2), enabled.unwrap_or(f.3));
            }
            for _ in 0..*repeat {
                let now: Vec<Arc<Service>> = fields
                    .iter()
                    .zip(step)
                    .enumerate()
                    .map(|(i, ((app, port, bind, enabled), slot))| {
                        let mut s = Service::new(format!("/a{app}"), *port, None, false);
                        s.bind_addr = binds[*bind].into();
                        s.enabled = *enabled;
                        s.labels = vec![("HAPROXY_0_PORT".into(), port.to_string())];
                        match last.get(i) {
                            Some(old) if slot.4 && **old == s => Arc::clone(old),
                            _ => Arc::new(s),
                        }
                    })
                    .collect();
                let (want_kept, want_out, next) =
                    resolve_port_conflicts(now.clone(), &holders, selected, &reserved);
                holders = next;
                let (kept, out) = claims.resolve(now.clone(), selected, &reserved);
                let ptrs = |v: &[Arc<Service>]| v.iter().map(Arc::as_ptr).collect::<Vec<_>>();
                proptest::prop_assert_eq!(ptrs(&kept), ptrs(&want_kept));
                proptest::prop_assert_eq!(out, want_out);
                last = now;
            }
        }
    }
}
