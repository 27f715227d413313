//! Tests of the apps body decoder.

use super::*;

#[test]
fn nulls_behave_like_absent_keys() {
    let body = br#"{"apps":[{"id":"/a","labels":{"HAPROXY_GROUP":null,"X":"y"},
        "tasks":null,"healthChecks":null,"container":null,"unknown":{"deep":1}}]}"#;
    let apps = AppsBody::parse(body).unwrap().apps;
    assert_eq!(apps[0].labels.len(), 1);
    assert!(apps[0].tasks.is_empty());
    assert!(apps[0].container.is_none());
}

#[test]
fn malformed_json_is_an_error() {
    assert!(AppsBody::parse(b"{\"apps\": [").is_err());
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_body() {
    let body = br#"{"apps":[{"id":"/a","labels":{"K":"v","E":"x\u0041"},
        "versionInfo":{"lastScalingAt":"2020"},
        "tasks":[{"id":"t","host":"h","state":"S","ipAddresses":[{"ipAddress":"1.2.3.4"}]}]}]}"#;
    let apps = AppsBody::parse(body).unwrap().apps;
    let (app, task) = (&apps[0], &apps[0].tasks[0]);
    let borrowed = |s: &Str| matches!(s, Cow::Borrowed(_));
    assert!(borrowed(&app.id));
    assert!(app.labels.keys().all(borrowed));
    assert!(borrowed(&app.labels["K"]));
    assert_eq!(app.labels["E"], "xA");
    assert!(borrowed(
        app.version_info
            .as_ref()
            .unwrap()
            .last_scaling_at
            .as_ref()
            .unwrap()
    ));
    assert!(borrowed(&task.id));
    assert!([&task.host, &task.state]
        .iter()
        .all(|s| s.as_ref().is_some_and(borrowed)));
    let ip = &task.ip_addresses.as_ref().unwrap()[0].ip_address;
    assert!(ip.as_ref().is_some_and(borrowed));
}

#[test]
fn apps_are_handed_over_in_order_and_other_keys_ignored() {
    let body = br#"{"extra":{"apps":1},"apps":[{"id":"/a"},{"id":"/b"}],"more":[1]}"#;
    let mut ids = Vec::new();
    for_each_app(body, |app| ids.push(app.unwrap().id.to_string())).unwrap();
    assert_eq!(ids, ["/a", "/b"]);
    assert!(AppsBody::parse(br#"{"apps":[]}"#).unwrap().apps.is_empty());
    assert!(AppsBody::parse(br#"{"apps":[]} x"#).is_err());
    assert!(AppsBody::parse(br#"[]"#).is_err());
}

fn no_list(body: &[u8]) -> String {
    match for_each_app(body, |_| panic!("no app expected")) {
        Err(e @ Error::NoAppsList { .. }) => e.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_without_an_apps_list_is_an_error_not_zero_apps() {
    assert!(no_list(b"{}").contains("\"apps\" is missing"));
    assert!(no_list(br#"{"apps":null}"#).contains("\"apps\" is null"));
    assert!(no_list(br#"{"apps":"x"}"#).contains("a string"));
    assert!(no_list(br#"{"apps":{"id":"/a"}}"#).contains("an object"));
    assert!(no_list(br#"{"apps":3}"#).contains("a number"));
    let leader = no_list(br#"{"message":"Leader not found"}"#);
    assert!(leader.contains("Leader not found"), "{leader}");
    assert!(matches!(
        for_each_app(b"<html>", |_| ()),
        Err(Error::Parse(_))
    ));
}

/// The apps handed over for `body`: ids of the good ones, errors of the bad ones.
fn decoded(body: &str) -> (Vec<String>, Vec<AppError>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for_each_app(body.as_bytes(), |app| match app {
        Ok(app) => good.push(app.id.to_string()),
        Err(e) => bad.push(e),
    })
    .unwrap();
    (good, bad)
}

#[test]
fn a_bad_element_is_an_error_naming_the_app_and_field_and_the_others_decode() {
    let (good, bad) = decoded(
        r#"{"apps":[{"id":"/a"},{"id":"/x","labels":{"HAPROXY_0_PORT":5}},
        {"id":"/y","labels":[1]},{"id":7,"tasks":"no"},null,{"id":"/b"}]}"#,
    );
    assert_eq!(good, ["/a", "/b"]);
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert_eq!(bad[0].app_id.as_deref(), Some("/x"));
    assert_eq!(bad[0].field.as_deref(), Some("labels.HAPROXY_0_PORT"));
    let text = bad[0].to_string();
    assert!(
        text.starts_with("app /x (apps[1]): field labels.HAPROXY_0_PORT: invalid type"),
        "{text}"
    );
    assert!(!text.contains("line 1"), "{text}");
    assert_eq!(bad[1].app_id.as_deref(), Some("/y"));
    assert_eq!(bad[1].field.as_deref(), Some("labels"));
    assert_eq!((bad[2].app_id.as_deref(), bad[2].index), (None, 3));
    assert!(bad[2].to_string().starts_with("apps[3] (no string id)"));
    assert_eq!(bad[3].index, 4);
}

#[test]
fn parse_fails_on_the_first_bad_app_naming_it() {
    let e = AppsBody::parse(br#"{"apps":[{"id":"/ok"},{"id":"/x","labels":{"L":{}}}]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/x") && e.contains("labels.L"), "{e}");
}

#[test]
fn deep_nesting_is_skipped_in_unknown_fields_and_an_app_error_in_known_ones() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let (good, bad) = decoded(&format!(
        r#"{{"apps":[{{"id":"/deep","x":{deep}}},{{"id":"/bad","labels":{{"L":{deep}}}}},{{"id":"/a"}}]}}"#
    ));
    assert_eq!(good, ["/deep", "/a"]);
    assert_eq!(bad[0].app_id.as_deref(), Some("/bad"));
}
