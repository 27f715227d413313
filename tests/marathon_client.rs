//! The Marathon client, event stream and watcher against the fake Marathon over real
//! loopback HTTP: apps listing, host failover, basic and DC/OS auth, SSE, reconnects
//! and stall detection. Real time with short durations (paused time would fire
//! timeouts while sockets are busy); every wait is bounded so a hang fails fast.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use futures::StreamExt;
use marathon_lb::marathon::auth::{BasicCredentials, Credentials, DcosCredentials};
use marathon_lb::marathon::client::{Client, ClientConfig, Error};
use marathon_lb::marathon::watch::{watch, WatchConfig, WatchEvent};
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};

const KEY: &str = include_str!("fixtures/dcos-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/dcos-test-key.pub.pem");
const APPS: &str = r#"{"apps":[{"id":"/web","labels":{"HAPROXY_GROUP":"external"}}]}"#;
const APPS_URI: &str = "/v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness";

/// Fails the test instead of hanging when `future` takes more than 5 s.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("timed out")
}

async fn fake(options: Options) -> FakeMarathon {
    let fake = FakeMarathon::start(options).await.unwrap();
    fake.set_apps(APPS);
    fake
}

/// A URL on which nothing listens (the port was bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn client(config: ClientConfig) -> Client {
    Client::new(config.connect_timeout(Duration::from_secs(1))).unwrap()
}

fn dcos_credentials(fake: &FakeMarathon) -> DcosCredentials {
    let json = serde_json::json!({
        "uid": "mlb-principal",
        "private_key": KEY,
        "login_endpoint": fake.login_url(),
    });
    DcosCredentials::from_json(&json.to_string()).unwrap()
}

#[tokio::test]
async fn fetches_apps_under_a_path_prefix() {
    let fake = fake(Options::default().prefix("/service/marathon")).await;
    let client = client(ClientConfig::new([fake.url()]));
    let body = within(client.apps_json()).await.unwrap();
    assert_eq!(body, APPS.as_bytes());
    let request = &fake.requests()[0];
    assert_eq!(request.uri, format!("/service/marathon{APPS_URI}"));
    assert_eq!(request.accept.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn refused_first_host_fails_over_and_sticks_to_the_second() {
    let fake = fake(Options::default()).await;
    let client = client(ClientConfig::new([closed_port_url(), fake.url()]));
    within(client.apps_json()).await.unwrap();
    assert_eq!(client.current_host().as_str(), format!("{}/", fake.url()));
    within(client.apps_json()).await.unwrap();
    assert_eq!(fake.apps_requests(), 2);
}

#[tokio::test]
async fn status_503_fails_over_and_back() {
    let (a, b) = (
        fake(Options::default()).await,
        fake(Options::default()).await,
    );
    let client = client(ClientConfig::new([a.url(), b.url()]));
    a.force_status(Some(StatusCode::SERVICE_UNAVAILABLE));
    within(client.apps_json()).await.unwrap();
    assert_eq!((a.apps_requests(), b.apps_requests()), (0, 1));
    a.force_status(None);
    b.force_status(Some(StatusCode::BAD_GATEWAY));
    within(client.apps_json()).await.unwrap();
    assert_eq!((a.apps_requests(), b.apps_requests()), (1, 1));

    a.force_status(Some(StatusCode::SERVICE_UNAVAILABLE));
    let err = within(client.apps_json()).await.unwrap_err();
    assert!(
        matches!(err, Error::AllHostsFailed(ref all) if all.len() == 2),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains(&a.url()) && shown.contains("503"), "{shown}");
    assert!(shown.contains(&b.url()) && shown.contains("502"), "{shown}");
}

#[tokio::test]
async fn client_errors_do_not_fail_over() {
    let (a, b) = (
        fake(Options::default()).await,
        fake(Options::default()).await,
    );
    let client = client(ClientConfig::new([a.url(), b.url()]));
    a.force_status(Some(StatusCode::NOT_FOUND));
    let err = within(client.apps_json()).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(b.requests().len(), 0);
}

#[tokio::test]
async fn basic_auth_accepted_and_wrong_password_refused() {
    let fake = fake(Options::default().basic_auth("marathon", "s3cret-pw")).await;
    let good = Credentials::Basic(BasicCredentials::parse("marathon:s3cret-pw").unwrap());
    let ok = client(ClientConfig::new([fake.url()]).credentials(good));
    assert_eq!(within(ok.apps_json()).await.unwrap(), APPS.as_bytes());

    let in_url = fake.url().replace("http://", "http://marathon:s3cret-pw@");
    assert!(within(client(ClientConfig::new([in_url])).apps_json())
        .await
        .is_ok());

    let bad = Credentials::Basic(BasicCredentials::parse("marathon:wrong-pw").unwrap());
    let refused = client(ClientConfig::new([fake.url()]).credentials(bad));
    let err = within(refused.apps_json()).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let shown = format!("{err} {err:?} {refused:?}");
    assert!(
        !shown.contains("wrong-pw") && !shown.contains("s3cret"),
        "{shown}"
    );
}

#[tokio::test]
async fn dcos_login_and_relogin_after_revocation() {
    let fake = fake(Options::default().dcos("mlb-principal", PUBLIC_KEY)).await;
    let creds = Credentials::Dcos(dcos_credentials(&fake));
    let client = client(ClientConfig::new([fake.url()]).credentials(creds));
    within(client.apps_json()).await.unwrap();
    within(client.apps_json()).await.unwrap();
    assert_eq!(fake.logins(), 1, "the token is reused");

    fake.revoke_tokens();
    within(client.apps_json()).await.unwrap();
    assert_eq!(fake.logins(), 2, "a 401 logs in again and retries");
    fake.revoke_tokens();
    let mut events = within(client.events()).await.unwrap();
    assert!(within(events.next()).await.unwrap().is_ok());
    assert_eq!(fake.logins(), 3);
}

#[tokio::test]
async fn dcos_token_is_renewed_before_it_expires() {
    let fake = fake(Options::default().dcos("mlb-principal", PUBLIC_KEY)).await;
    let creds = dcos_credentials(&fake)
        .with_token_lifetime(Duration::from_millis(1500), Duration::from_millis(1300));
    let client = client(ClientConfig::new([fake.url()]).credentials(Credentials::Dcos(creds)));
    within(client.apps_json()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(client.apps_json()).await.unwrap();
    assert_eq!(fake.logins(), 2);
}

#[tokio::test]
async fn dcos_login_refused_for_an_unknown_account() {
    let fake = fake(Options::default().dcos("someone-else", PUBLIC_KEY)).await;
    let creds = Credentials::Dcos(dcos_credentials(&fake));
    let client = client(ClientConfig::new([fake.url()]).credentials(creds));
    let err = within(client.apps_json()).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("login") && shown.contains("401"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY") && !shown.contains(&KEY[40..80]));
    assert_eq!(fake.apps_requests(), 0);
}

#[tokio::test]
async fn events_are_streamed_from_the_failover_host() {
    let (down, fake) = (
        fake(Options::default()).await,
        fake(Options::default()).await,
    );
    down.force_status(Some(StatusCode::SERVICE_UNAVAILABLE));
    let client = client(ClientConfig::new([down.url(), fake.url()]));
    let mut events = within(client.events()).await.unwrap();
    let attached = within(events.next()).await.unwrap().unwrap();
    assert_eq!(attached.event, "event_stream_attached");

    fake.keep_alive();
    fake.push_marathon_event("status_update_event", serde_json::json!({"appId": "/web"}));
    let event = within(events.next()).await.unwrap().unwrap();
    assert_eq!(event.event, "status_update_event");
    assert_eq!(
        event.marathon_event_type().as_deref(),
        Some("status_update_event")
    );
    let request = &fake.requests()[0];
    assert_eq!(request.uri, "/v2/events?event_type=api_post_event&event_type=health_status_changed_event&event_type=status_update_event&event_type=app_terminated_event&event_type=group_change_success&event_type=deployment_info&event_type=deployment_success&event_type=deployment_failed");
    assert_eq!(request.accept.as_deref(), Some("text/event-stream"));

    fake.cut_streams();
    let err = within(events.next()).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::StreamEnded { .. }), "{err:?}");
}

#[tokio::test]
async fn a_silent_stream_stalls_but_keep_alives_keep_it_open() {
    let fake = fake(Options::default()).await;
    let config = ClientConfig::new([fake.url()]).stall_timeout(Duration::from_millis(500));
    let client = client(config);
    let mut events = within(client.events()).await.unwrap();
    within(events.next()).await.unwrap().unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fake.keep_alive();
    }
    fake.push_event("api_post_event", "{}");
    assert_eq!(
        within(events.next()).await.unwrap().unwrap().event,
        "api_post_event"
    );

    let started = std::time::Instant::now();
    let err = within(events.next()).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn watch_reports_relevant_events_and_reconnects_after_a_cut() {
    let fake = fake(Options::default()).await;
    let client = Arc::new(client(ClientConfig::new([fake.url()])));
    let config = WatchConfig::default()
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .seed(1);
    let mut watch = watch(client, config);
    assert!(matches!(
        within(watch.next()).await,
        Some(WatchEvent::Connected { .. })
    ));
    fake.wait_for_subscribers(1).await;
    fake.push_marathon_event("framework_message_event", serde_json::json!({}));
    fake.push_marathon_event(
        "health_status_changed_event",
        serde_json::json!({"alive": true}),
    );
    match within(watch.next()).await {
        Some(WatchEvent::Relevant(t, _)) => assert_eq!(t, "health_status_changed_event"),
        other => panic!("unexpected {other:?}"),
    }

    fake.cut_streams();
    assert!(matches!(
        within(watch.next()).await,
        Some(WatchEvent::Disconnected { .. })
    ));
    assert!(matches!(
        within(watch.next()).await,
        Some(WatchEvent::Connected { .. })
    ));
    assert_eq!(fake.events_requests(), 2);
    fake.wait_for_subscribers(1).await;
    fake.push_marathon_event("api_post_event", serde_json::json!({}));
    assert!(
        matches!(within(watch.next()).await, Some(WatchEvent::Relevant(t, _)) if t == "api_post_event")
    );
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let basic = fake(Options::default().basic_auth("u", "basic-secret")).await;
    let wrong = Credentials::Basic(BasicCredentials::parse("u:wrong-secret").unwrap());
    let hosts = [closed_port_url(), basic.url()];
    let _ = within(client(ClientConfig::new(hosts).credentials(wrong)).apps_json()).await;

    let dcos = fake(Options::default().dcos("mlb-principal", PUBLIC_KEY)).await;
    let creds = Credentials::Dcos(dcos_credentials(&dcos));
    let client = client(ClientConfig::new([closed_port_url(), dcos.url()]).credentials(creds));
    within(client.apps_json()).await.unwrap();
    dcos.revoke_tokens();
    within(client.apps_json()).await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("logged in to DC/OS"), "logging works: {logs}");
    for secret in [
        "basic-secret",
        "wrong-secret",
        "fake-dcos-token",
        "PRIVATE KEY",
        &KEY[40..80],
    ] {
        assert!(!logs.contains(secret), "{secret} leaked: {logs}");
    }
}
