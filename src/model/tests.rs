//! Unit tests of the model: labels -> services, tasks, ports, health and sorting.

use super::*;
use crate::marathon::types::AppsBody;
use std::sync::Arc;

fn build_with(json: &str, options: &Options) -> Vec<Arc<Service>> {
    let apps = AppsBody::parse(json.as_bytes()).unwrap().apps;
    build(
        apps,
        options,
        &mut Resolver::default(),
        &mut HealthMemory::default(),
    )
    .unwrap()
}

fn build_json(json: &str) -> Vec<Arc<Service>> {
    build_with(json, &Options::default())
}

/// `(app id, service port, [ip:port ...])` of each service.
fn summary(services: &[Arc<Service>]) -> Vec<(String, i64, Vec<String>)> {
    services
        .iter()
        .map(|s| {
            let backends = s
                .backends
                .iter()
                .map(|b| format!("{}:{}", b.ip, b.port))
                .collect();
            (s.app_id.clone(), s.service_port, backends)
        })
        .collect()
}

#[test]
fn services_are_sorted_by_app_id_then_port_and_backends_by_host_string() {
    let services = build_json(
        r#"{"apps":[
          {"id":"/b","portDefinitions":[{"port":2},{"port":1}],
           "tasks":[{"id":"b.1","host":"10.0.0.3","ports":[30,31]},
                    {"id":"b.2","host":"10.0.0.10","ports":[40,41]}]},
          {"id":"/a","ports":[9],"tasks":[{"id":"a.1","host":"10.0.0.1","ports":[5]}]}]}"#,
    );
    assert_eq!(
        summary(&services),
        [
            ("/a".into(), 9, vec!["10.0.0.1:5".into()]),
            (
                "/b".into(),
                1,
                vec!["10.0.0.10:41".into(), "10.0.0.3:31".into()]
            ),
            (
                "/b".into(),
                2,
                vec!["10.0.0.10:40".into(), "10.0.0.3:30".into()]
            ),
        ]
    );
}

#[test]
fn app_group_label_is_split_on_commas_without_trimming() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","labels":{"HAPROXY_GROUP":"external, internal"},
          "portDefinitions":[{"port":1}],"tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5]}]}]}"#,
    );
    assert_eq!(services[0].app_groups, ["external", " internal"]);
    assert!(services[0].in_groups(&["external".into()]));
    assert!(!services[0].in_groups(&["internal".into()]));
    assert!(services[0].in_groups(&["*".into()]));
}

#[test]
fn port_group_replaces_the_app_group() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","labels":{"HAPROXY_GROUP":"external","HAPROXY_1_GROUP":"internal"},
          "portDefinitions":[{"port":1},{"port":2}],
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]}]}"#,
    );
    let external: Vec<i64> = services
        .iter()
        .filter(|s| s.in_groups(&["external".into()]))
        .map(|s| s.service_port)
        .collect();
    assert_eq!(external, [1]);
    assert!(services[1].in_groups(&["internal".into()]));
}

#[test]
fn only_routable_task_states_with_a_host_become_backends() {
    let states = [
        ("TASK_RUNNING", true),
        ("TASK_LOST", true),
        ("TASK_UNREACHABLE", true),
        ("TASK_STAGING", false),
        ("TASK_STARTING", false),
        ("TASK_KILLING", false),
        ("TASK_KILLED", false),
        ("TASK_FAILED", false),
        ("TASK_FINISHED", false),
        ("TASK_GONE_BY_OPERATOR", false),
        ("TASK_UNKNOWN", false),
    ];
    for (state, routed) in states {
        let json = format!(
            r#"{{"apps":[{{"id":"/a","ports":[1],"tasks":[{{"id":"a.1","host":"1.1.1.1","ports":[5],"state":"{state}"}}]}}]}}"#
        );
        assert_eq!(build_json(&json).len(), usize::from(routed), "{state}");
    }
    let no_state = r#"{"apps":[{"id":"/a","ports":[1],"tasks":[
        {"id":"a.1","host":"1.1.1.1","ports":[5]},{"id":"a.2","host":"","ports":[6]}]}]}"#;
    assert_eq!(summary(&build_json(no_state))[0].2, ["1.1.1.1:5"]);
}

#[test]
fn health_check_flag_keeps_only_tasks_marathon_reports_alive() {
    let json = r#"{"apps":[
      {"id":"/checked","ports":[1],"healthChecks":[{"protocol":"TCP","portIndex":0}],
       "tasks":[{"id":"c.1","host":"1.1.1.1","ports":[5],"healthCheckResults":[{"alive":true}]},
                {"id":"c.2","host":"1.1.1.2","ports":[5],"healthCheckResults":[{"alive":false}]},
                {"id":"c.3","host":"1.1.1.3","ports":[5],"healthCheckResults":[{"alive":false},{"alive":true}]},
                {"id":"c.4","host":"1.1.1.4","ports":[5]}]},
      {"id":"/unchecked","ports":[2],"tasks":[{"id":"u.1","host":"1.1.1.5","ports":[5]}]}]}"#;
    let all = build_json(json);
    assert_eq!(all[0].backends.len(), 4);
    let options = Options {
        health_check: true,
        ..Options::default()
    };
    let checked = build_with(json, &options);
    assert_eq!(
        summary(&checked),
        [
            (
                "/checked".into(),
                1,
                vec!["1.1.1.1:5".into(), "1.1.1.3:5".into()]
            ),
            ("/unchecked".into(), 2, vec!["1.1.1.5:5".into()]),
        ]
    );
}

#[test]
fn health_checks_attach_by_port_index_or_port_and_set_the_mode() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":1},{"port":2},{"port":3}],
          "healthChecks":[{"protocol":"TCP","portIndex":1},{"protocol":"HTTP","portIndex":2,"path":"/h"}],
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6,7]}]}]}"#,
    );
    let protocol = |s: &Service| s.health_check.as_ref().and_then(|h| h.protocol.clone());
    assert_eq!(protocol(&services[0]), None);
    assert_eq!(protocol(&services[1]).as_deref(), Some("TCP"));
    assert_eq!(protocol(&services[2]).as_deref(), Some("HTTP"));
    assert_eq!(services[1].mode, None, "TCP checks leave the mode open");
    assert_eq!(
        services[2].mode.as_ref().map(super::ProxyMode::as_str),
        Some("http")
    );

    let fixed_port = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":1},{"port":2}],
          "healthChecks":[{"protocol":"HTTP","port":8080}],
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]}]}"#,
    );
    assert!(fixed_port.iter().all(|s| s.health_check.is_some()));
}

#[test]
fn mode_label_beats_the_health_check_and_a_borrowed_http_check_forces_http() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":1},{"port":2}],
          "labels":{"HAPROXY_1_MODE":"tcp","HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX":"1"},
          "healthChecks":[{"protocol":"MESOS_HTTP","portIndex":1,"path":"/h"}],
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]}]}"#,
    );
    assert_eq!(
        services[0].mode.as_ref().map(super::ProxyMode::as_str),
        Some("http"),
        "borrowed check"
    );
    assert_eq!(
        services[0]
            .health_check
            .as_ref()
            .and_then(|h| h.protocol.as_deref()),
        Some("MESOS_HTTP")
    );
    assert_eq!(
        services[1].mode.as_ref().map(super::ProxyMode::as_str),
        Some("tcp"),
        "MODE label"
    );
}

#[test]
fn strict_mode_needs_enabled_and_enabled_false_always_disables() {
    let json = r#"{"apps":[{"id":"/a","portDefinitions":[{"port":1},{"port":2},{"port":3}],
        "labels":{"HAPROXY_1_ENABLED":"true","HAPROXY_2_ENABLED":"false"},
        "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6,7]}]}]}"#;
    let enabled =
        |services: Vec<Arc<Service>>| -> Vec<bool> { services.iter().map(|s| s.enabled).collect() };
    assert_eq!(enabled(build_json(json)), [true, true, false]);
    let strict = Options {
        strict_mode: true,
        ..Options::default()
    };
    assert_eq!(enabled(build_with(json, &strict)), [false, true, false]);
}

#[test]
fn framework_app_is_skipped_and_apps_without_tasks_have_no_services() {
    let json = r#"{"apps":[
      {"id":"/marathon-lb","ports":[1],"tasks":[{"id":"m.1","host":"1.1.1.1","ports":[5]}]},
      {"id":"/idle","ports":[2],"tasks":[]},
      {"id":"/web","ports":[3],"tasks":[{"id":"w.1","host":"1.1.1.2","ports":[6]}]}]}"#;
    let options = Options {
        framework_name: Some("marathon-lb".into()),
        ..Options::default()
    };
    let ids: Vec<String> = build_with(json, &options)
        .into_iter()
        .map(|s| s.app_id.clone())
        .collect();
    assert_eq!(ids, ["/web"]);
    assert_eq!(build_json(json).len(), 2);
}

#[test]
fn a_repeated_service_port_keeps_the_last_service() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":7},{"port":7}],
          "labels":{"HAPROXY_0_VHOST":"first","HAPROXY_1_VHOST":"second"},
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]}]}"#,
    );
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].hostname.as_deref(), Some("second"));
    assert_eq!(summary(&services)[0].2, ["1.1.1.1:5", "1.1.1.1:6"]);
}

#[test]
fn port_label_renames_the_service_port() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":10000}],
          "labels":{"HAPROXY_0_PORT":"6443"},
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5]}]}]}"#,
    );
    assert_eq!(services[0].service_port, 6443);
}

/// The error of building `json` with default options.
fn build_error(json: &str) -> Error {
    let apps = AppsBody::parse(json.as_bytes()).unwrap().apps;
    build(
        apps,
        &Options::default(),
        &mut Resolver::default(),
        &mut HealthMemory::default(),
    )
    .unwrap_err()
}

#[test]
fn invalid_label_aborts_the_build() {
    let err = build_error(
        r#"{"apps":[{"id":"/a","ports":[1],"labels":{"HAPROXY_0_BACKEND_WEIGHT":"heavy"},
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5]}]}]}"#,
    );
    assert!(matches!(err, Error::InvalidLabel { ref app_id, .. } if app_id == "/a"));
}

#[test]
fn a_failed_deployment_group_wins_over_an_earlier_invalid_label() {
    // Groups are merged after all other apps, but the original merges them first: its
    // deployment error is the one reported.
    let err = build_error(
        r#"{"apps":[{"id":"/a","ports":[1],"labels":{"HAPROXY_0_BACKEND_WEIGHT":"heavy"},
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5]}]},
          {"id":"/b1","labels":{"HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"soon"}},
          {"id":"/b2","labels":{"HAPROXY_DEPLOYMENT_GROUP":"g"}}]}"#,
    );
    assert!(
        matches!(err, Error::Deployment { ref group, .. } if group == "/g"),
        "{err}"
    );
}

#[test]
fn services_keep_the_app_wide_and_their_own_port_labels() {
    let services = build_json(
        r#"{"apps":[{"id":"/a","portDefinitions":[{"port":1},{"port":2}],
          "labels":{"HAPROXY_GROUP":"external","HAPROXY_0_VHOST":"a.com","HAPROXY_1_MODE":"tcp",
                    "HAPROXY_01_MODE":"odd","OTHER":"x"},
          "tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]}]}"#,
    );
    let names = |s: &Service| -> Vec<String> { s.labels.iter().map(|l| l.0.clone()).collect() };
    assert_eq!(
        names(&services[0]),
        ["HAPROXY_01_MODE", "HAPROXY_0_VHOST", "HAPROXY_GROUP"]
    );
    assert_eq!(
        names(&services[1]),
        ["HAPROXY_01_MODE", "HAPROXY_1_MODE", "HAPROXY_GROUP"]
    );
    assert_eq!(services[1].labels[1].1, "tcp");
}

#[test]
fn sibling_ranges_group_services_of_one_app() {
    let services = build_json(
        r#"{"apps":[
          {"id":"/a","ports":[1,2],"tasks":[{"id":"a.1","host":"1.1.1.1","ports":[5,6]}]},
          {"id":"/b","ports":[3],"tasks":[{"id":"b.1","host":"1.1.1.1","ports":[7]}]}]}"#,
    );
    assert_eq!(sibling_ranges(&services), [0..2, 0..2, 2..3]);
    assert_eq!(app_count(&services), 2);
}

mod sort_tests {
    use super::*;

    #[test]
    fn services_sort_by_app_then_port_stably() {
        let input = [
            ("/b", 2, 0),
            ("/a", 9, 1),
            ("/b", 1, 2),
            ("/a", 9, 3),
            ("/c", 0, 4),
            ("/a", 1, 5),
        ];
        let services: Vec<Arc<Service>> = input
            .iter()
            .map(|(id, port, tag)| {
                let mut s = Service::new(id.to_string(), *port, None, false);
                s.backend_weight = *tag;
                Arc::new(s)
            })
            .collect();
        let sorted: Vec<(String, i64, i64)> = sorted_by_app_and_port(services)
            .into_iter()
            .map(|s| (s.app_id.clone(), s.service_port, s.backend_weight))
            .collect();
        let want = [
            ("/a", 1, 5),
            ("/a", 9, 1),
            ("/a", 9, 3),
            ("/b", 1, 2),
            ("/b", 2, 0),
            ("/c", 0, 4),
        ];
        assert_eq!(sorted, want.map(|(a, p, t)| (a.to_string(), p, t)));
    }
}
