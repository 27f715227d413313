use super::*;

const BODY: &str = r#"{"apps":[{"id":"/a","version":"v1","tasks":[{"id":"a.1","host":"h","ports":[1],"state":"TASK_RUNNING"}]},{"id":"/b","version":"v1","healthChecks":[{"protocol":"HTTP"}],"tasks":[]}]}"#;

fn loaded() -> AppStore {
    let mut store = AppStore::default();
    store.load(BODY.as_bytes());
    assert!(store.is_loaded());
    store
}

fn tasks(store: &AppStore, id: &str) -> Vec<Value> {
    let body: Value = serde_json::from_slice(&store.body()).unwrap();
    let app = body["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone();
    app["tasks"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_loaded_listing_is_spelled_back_in_order() {
    let store = loaded();
    let body: Value = serde_json::from_slice(&store.body()).unwrap();
    assert_eq!(body, serde_json::from_str::<Value>(BODY).unwrap());
}

#[test]
fn task_events_add_update_and_remove_tasks_of_a_known_version() {
    let mut store = loaded();
    let started = r#"{"eventType":"status_update_event","appId":"/a","taskId":"a.2","taskStatus":"TASK_RUNNING","host":"h2","ports":[2],"version":"v1"}"#;
    assert_eq!(store.apply(started), Change::Applied);
    let now = tasks(&store, "/a");
    assert_eq!(now.len(), 2);
    assert_eq!(now[1]["host"], "h2");
    assert_eq!(now[1]["ports"][0], 2);
    let killed = r#"{"eventType":"status_update_event","appId":"/a","taskId":"a.1","taskStatus":"TASK_KILLED","version":"v1"}"#;
    assert_eq!(store.apply(killed), Change::Applied);
    let now = tasks(&store, "/a");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["id"], "a.2");
}

#[test]
fn what_the_event_lacks_is_fetched_for_that_app_and_doubt_fetches_all() {
    let mut store = loaded();
    let new_version = r#"{"eventType":"status_update_event","appId":"/a","taskId":"a.3","taskStatus":"TASK_RUNNING","version":"v2"}"#;
    assert_eq!(store.apply(new_version), Change::Fetch("/a".into()));
    let checked = r#"{"eventType":"status_update_event","appId":"/b","taskId":"b.1","taskStatus":"TASK_RUNNING","version":"v1"}"#;
    assert_eq!(store.apply(checked), Change::Fetch("/b".into()));
    let health = r#"{"eventType":"health_status_changed_event","appId":"/b","alive":true}"#;
    assert_eq!(store.apply(health), Change::Fetch("/b".into()));
    let new_app = r#"{"eventType":"api_post_event","appDefinition":{"id":"/c"}}"#;
    assert!(matches!(store.apply(new_app), Change::Full(_)));
    assert!(matches!(store.apply("not json"), Change::Full(_)));
    assert!(matches!(
        store.apply(r#"{"eventType":"pod_created_event"}"#),
        Change::Full(_)
    ));
}

#[test]
fn fetched_and_terminated_apps_replace_and_leave_the_listing() {
    let mut store = loaded();
    let one = br#"{"app":{"id":"/a","version":"v2","tasks":[]}}"#;
    assert_eq!(store.set_app("/a", Some(one)), Change::Applied);
    assert!(tasks(&store, "/a").is_empty());
    assert!(matches!(store.set_app("/a", Some(b"{}")), Change::Full(_)));
    let gone = r#"{"eventType":"app_terminated_event","appId":"/a"}"#;
    assert_eq!(store.apply(gone), Change::Applied);
    assert_eq!(store.len(), 1);
    assert_eq!(store.set_app("/b", None), Change::Applied);
    assert_eq!(&store.body(), b"{\"apps\":[]}");
}

#[test]
fn a_deployment_fetches_the_apps_its_plan_names() {
    let mut store = loaded();
    let info = r#"{"eventType":"deployment_info","plan":{"steps":[{"actions":[{"app":"/a","type":"ScaleApplication"}]}]},"currentStep":{"actions":[{"app":"/b"}]}}"#;
    assert_eq!(
        store.apply(info),
        Change::FetchEach(vec!["/a".into(), "/b".into()])
    );
    let bare = r#"{"eventType":"deployment_success","id":"d1"}"#;
    assert!(matches!(store.apply(bare), Change::Full(_)));
    let new_app =
        r#"{"eventType":"deployment_info","plan":{"steps":[{"actions":[{"app":"/c"}]}]}}"#;
    assert!(matches!(store.apply(new_app), Change::Full(_)));
}
