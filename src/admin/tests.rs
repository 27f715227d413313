//! The admin server over real loopback HTTP (bound on `127.0.0.1:0`), plus the pure health rules.

use std::time::UNIX_EPOCH;

use super::*;

/// A running admin server and the ends of its channels the tests drive.
struct Harness {
    base: String,
    status: watch::Sender<Status>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), Error>>,
}

async fn start(with_invalid: bool) -> Harness {
    let (status, status_rx) = watch::channel(Status::default());
    let (trigger_tx, triggers) = mpsc::unbounded_channel();
    let metrics = Metrics::new();
    let mut state = AdminState::new(status_rx, metrics.clone(), trigger_tx);
    if with_invalid {
        state = state.listing_invalid_apps();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    Harness {
        base,
        status,
        triggers,
        metrics,
        stop: Some(stop),
        server,
    }
}

impl Harness {
    async fn get(&self, path: &str) -> (u16, String, String) {
        let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        answer(resp).await
    }

    async fn post(&self, path: &str) -> (u16, String, String) {
        self.post_with(path, &[]).await
    }

    /// `POST` with extra headers (a `Host` given here replaces the URL's).
    async fn post_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.unwrap()).await
    }
}

/// Status code, content type and body.
async fn answer(resp: reqwest::Response) -> (u16, String, String) {
    let code = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (code, ctype, resp.text().await.unwrap())
}

fn succeeded(at: SystemTime) -> Status {
    Status {
        passes: 3,
        applies: 1,
        last_success: Some(at),
        last_apply: Some(at),
        served: crate::status::services::served_n(2),
        marathon_connected: true,
        ..Status::default()
    }
}

#[test]
fn health_rules() {
    let now = SystemTime::now();
    let grace = Duration::from_secs(60);
    let failed = |since: u64| Status {
        last_error: Some("Marathon down".into()),
        ..succeeded(now - Duration::from_secs(since))
    };
    assert_eq!(
        Health::of(&Status::default(), now, grace),
        Health::Starting { error: None }
    );
    let first_failed = Status {
        passes: 1,
        last_error: Some("boom".into()),
        ..Status::default()
    };
    assert!(!Health::of(&first_failed, now, grace).is_healthy());
    assert_eq!(Health::of(&succeeded(now), now, grace), Health::Ok);
    let degraded = Health::of(&failed(30), now, grace);
    assert!(degraded.is_healthy(), "{degraded:?}");
    assert!(degraded.describe().starts_with("ok"));
    let failing = Health::of(&failed(61), now, grace);
    assert!(!failing.is_healthy(), "{failing:?}");
    assert!(failing.describe().contains("Marathon down"));
    // A success stamped in the future (clock stepped back) counts as just now.
    let future = Status {
        last_error: Some("x".into()),
        ..succeeded(now + Duration::from_secs(3600))
    };
    assert!(Health::of(&future, now, grace).is_healthy());
}

#[tokio::test]
async fn healthz_follows_the_last_pass() {
    let h = start(false).await;
    let (code, _, body) = h.get("/healthz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "starting: no pass has succeeded yet\n")
    );

    h.status.send_replace(succeeded(SystemTime::now()));
    let (code, ctype, body) = h.get("/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(ctype.starts_with("text/plain"), "{ctype}");

    h.status.send_modify(|s| {
        s.last_success = Some(SystemTime::now() - DEFAULT_FAILURE_GRACE * 2);
        s.last_error = Some("cannot fetch apps: connection refused".into());
    });
    let (code, _, body) = h.get("/healthz").await;
    assert_eq!(code, 503);
    assert!(
        body.starts_with("failing: ") && body.contains("connection refused"),
        "{body}"
    );
}

#[tokio::test]
async fn status_is_json_of_the_published_status() {
    let h = start(false).await;
    h.status.send_replace(Status {
        last_error: Some("label <bad>".into()),
        ..succeeded(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
    });
    let (code, ctype, body) = h.get("/status").await;
    assert_eq!(code, 200);
    assert_eq!(ctype, "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["passes"], 3);
    assert_eq!(json["applies"], 1);
    assert_eq!(json["apps"], 2);
    assert_eq!(json["marathon_connected"], true);
    assert_eq!(json["last_apply"], "2023-11-14T22:13:20.123Z");
    assert_eq!(json["last_error"], "label <bad>");
    assert_eq!(json["healthy"], false);
    assert!(json.get("invalid_apps").is_none(), "{body}");
}

#[tokio::test]
async fn invalid_apps_are_listed_and_counted_when_published() {
    let h = start(true).await;
    h.status.send_modify(|s| {
        s.invalid_apps = vec![InvalidApp {
            app_id: "/web".into(),
            labels: vec!["HAPROXY_0_PORT".into()],
            reason: "label HAPROXY_0_PORT=\"x\" is invalid".into(),
            since: std::time::SystemTime::UNIX_EPOCH,
        }]
    });
    let (_, _, body) = h.get("/status").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["invalid_apps"][0]["app_id"], "/web");
    let (_, _, metrics) = h.get("/metrics").await;
    assert!(
        metrics.contains("\nmarathon_lb_invalid_apps 1\n"),
        "{metrics}"
    );
    let (_, _, state) = h.get("/api/v1/state").await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["left_out"][0]["app_id"], "/web", "{state}");
    assert_eq!(
        state["left_out"][0]["labels"][0], "HAPROXY_0_PORT",
        "{state}"
    );
    assert_eq!(state["summary"]["left_out"], 1, "{state}");
}

#[tokio::test]
async fn metrics_are_openmetrics_text_with_status_gauges() {
    let h = start(false).await;
    h.status
        .send_replace(succeeded(UNIX_EPOCH + Duration::from_secs(42)));
    h.metrics
        .reload(crate::haproxy::ReloadReason::ConfigChange, true);
    let (code, ctype, body) = h.get("/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(ctype, metrics::CONTENT_TYPE);
    for line in [
        "marathon_lb_apps 2",
        "marathon_lb_marathon_connected 1",
        "marathon_lb_last_apply_timestamp_seconds 42.0",
        "marathon_lb_reloads_total{reason=\"config-change\",result=\"ok\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line}:\n{body}");
    }
}

#[tokio::test]
async fn signals_queue_triggers_and_need_post() {
    let mut h = start(false).await;
    let (code, _, body) = h.post("/signal/hup").await;
    assert_eq!((code, body.as_str()), (200, "queued a resync (SIGHUP)\n"));
    assert_eq!(h.triggers.try_recv(), Ok(Trigger::Resync));
    let (code, _, _) = h.post("/signal/usr1").await;
    assert_eq!(code, 200);
    assert_eq!(h.triggers.try_recv(), Ok(Trigger::ReloadExisting));

    let (code, _, _) = h.get("/signal/hup").await;
    assert_eq!(code, 405);
    assert!(h.triggers.try_recv().is_err());

    h.triggers.close();
    let (code, _, body) = h.post("/signal/hup").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "the reconcile loop is not running\n")
    );
}

#[tokio::test]
async fn the_dashboard_embeds_the_state_escaped_and_keeps_the_signal_buttons() {
    let h = start(false).await;
    h.status.send_replace(Status {
        last_error: Some("<script>alert(1)</script>".into()),
        ..succeeded(SystemTime::now())
    });
    let (code, ctype, page) = h.get("/").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        page.contains("\\u003cscript>alert(1)\\u003c/script>"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("action=\"/signal/hup\""), "{page}");
    assert!(page.contains("action=\"/signal/usr1\""), "{page}");
    assert!(page.contains("src=\"/assets/dashboard.js\""), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external resource: {page}"
    );
    let (code, ctype, script) = h.get("/assets/dashboard.js").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/javascript"), "{ctype}");
    assert!(script.contains("/api/v1/state"));
    let (code, _, state) = h.get("/api/v1/state").await;
    assert_eq!(code, 200);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["health"]["status"], "degraded", "{state}");
    assert_eq!(state["summary"]["last_error"], "<script>alert(1)</script>");
}

#[test]
fn health_names_left_out_apps_dead_backends_and_an_unreachable_marathon() {
    use crate::haproxy::stats::parse_show_stat;
    use crate::status::{ServerInfo, ServiceInfo};
    let now = SystemTime::now();
    let rules = Rules {
        failure_grace: DEFAULT_FAILURE_GRACE,
        marathon_unreachable_after: Duration::from_secs(60),
    };
    let server = ServerInfo {
        name: "127_0_0_1_31000".into(),
        address: "127.0.0.1:31000".into(),
        host: "127.0.0.1".into(),
        draining: false,
    };
    let service = ServiceInfo {
        app_id: "/web".into(),
        port_index: Some(0),
        service_port: 10000,
        frontend: "web_10000".into(),
        bind: "*:10000".into(),
        mode: "tcp".into(),
        vhosts: Vec::new(),
        path: None,
        backend: "web_10000".into(),
        labels: Default::default(),
        servers: vec![server],
    };
    let mut status = succeeded(now);
    status.served = std::sync::Arc::new(crate::status::Served::described_as(
        crate::status::Described {
            services: vec![service],
            ..Default::default()
        },
    ));
    let stat = |state: &str| Live {
        stats: Some(
            parse_show_stat(&format!(
                "# pxname,svname,status,type,check_status\n\
                 web_10000,127_0_0_1_31000,{state},2,L4CON\nweb_10000,BACKEND,{state},1,\n"
            ))
            .unwrap(),
        ),
        ..Live::default()
    };
    assert_eq!(
        Health::judge(&status, Some(&stat("UP")), now, &rules),
        Health::Ok
    );
    let down = Health::judge(&status, Some(&stat("DOWN")), now, &rules);
    assert_eq!(down.word(), "degraded");
    assert!(down.is_healthy());
    assert!(
        down.describe()
            .contains("backend web_10000 (/web) has no server up"),
        "{down:?}"
    );
    let view = state::build(&status, Some(&stat("DOWN")), &down, now);
    assert_eq!(view.services[0].servers[0].state, "DOWN");
    assert_eq!(view.services[0].servers[0].check.as_deref(), Some("L4CON"));
    assert_eq!((view.summary.servers_up, view.summary.servers_down), (0, 1));

    status.invalid_apps = vec![InvalidApp {
        app_id: "/bad".into(),
        labels: vec!["HAPROXY_0_PORT".into()],
        reason: "not a port".into(),
        since: now,
    }];
    status
        .marathon
        .fetch_failed(now - Duration::from_secs(61), "connection refused");
    let health = Health::judge(&status, None, now, &rules);
    let text = health.describe();
    assert!(text.starts_with("ok (degraded): "), "{text}");
    assert!(
        text.contains("1 app(s) left out: /bad [HAPROXY_0_PORT] (not a port)"),
        "{text}"
    );
    assert!(
        text.contains("Marathon unreachable for 61s: connection refused"),
        "{text}"
    );
    status.marathon.fetch_failed(now, "x");
    status.marathon.fetched("m", now, Duration::ZERO, 1);
    status.invalid_apps.clear();
    assert_eq!(Health::judge(&status, None, now, &rules), Health::Ok);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mut h = start(false).await;
    h.stop.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut h.server)
        .await
        .expect("server did not stop")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_taken_address_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_status, status_rx) = watch::channel(Status::default());
    let (tx, _rx) = mpsc::unbounded_channel();
    let state = AdminState::new(status_rx, Metrics::new(), tx);
    let err = serve(addr, state, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("--admin-addr off"),
        "{text}"
    );
}

#[tokio::test]
async fn cross_origin_signals_are_refused_and_queue_nothing() {
    let mut h = start(false).await;
    let own = h.base.clone();
    let host = own.trim_start_matches("http://").to_owned();
    let refused: [&[(&str, &str)]; 6] = [
        &[("origin", "http://evil.example")],
        &[("origin", "null")],
        &[("origin", "https://127.0.0.1")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("host", "evil.example"), ("origin", "http://evil.example")],
    ];
    for headers in refused {
        for path in ["/signal/hup", "/signal/usr1"] {
            let (code, _, body) = h.post_with(path, headers).await;
            assert_eq!(code, 403, "{path} {headers:?}: {body}");
            assert!(body.starts_with("forbidden: "), "{body}");
            assert!(
                h.triggers.try_recv().is_err(),
                "{headers:?} queued a trigger"
            );
        }
    }
    let (_, _, body) = h
        .post_with("/signal/hup", &[("host", "rebound.example")])
        .await;
    assert!(body.contains("DNS name"), "{body}");

    // The page's own buttons (same origin) and what HAProxy's Lua sends are served.
    let allowed: [&[(&str, &str)]; 3] = [
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
        &[("host", &host)],
        &[("host", "localhost"), ("sec-fetch-site", "none")],
    ];
    for headers in allowed {
        let (code, _, body) = h.post_with("/signal/hup", headers).await;
        assert_eq!(code, 200, "{headers:?}: {body}");
        assert_eq!(h.triggers.try_recv(), Ok(Trigger::Resync));
    }
    // Reading is not guarded: a browser cannot read another origin's answer anyway.
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", h.base))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn metrics_add_build_info_marathon_fetches_events_and_the_last_failure() {
    let h = start(false).await;
    h.status.send_modify(|s| {
        *s = succeeded(UNIX_EPOCH + Duration::from_secs(42));
        s.marathon.fetch_failed(UNIX_EPOCH, "refused");
        s.marathon.fetch_failed(UNIX_EPOCH, "refused");
        s.marathon
            .fetched("m", UNIX_EPOCH, Duration::from_millis(250), 1234);
        s.marathon.stream(true, UNIX_EPOCH);
        s.marathon.event("status_update_event", UNIX_EPOCH);
        s.marathon.event("status_update_event", UNIX_EPOCH);
        s.record_apply(crate::status::ApplyRecord::failed(
            UNIX_EPOCH + Duration::from_secs(77),
            "boom",
            1,
        ));
    });
    let (_, _, body) = h.get("/metrics").await;
    for line in [
        &format!(
            "marathon_lb_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "marathon_lb_marathon_fetch_errors_total 2",
        "marathon_lb_marathon_last_fetch_duration_seconds 0.25",
        "marathon_lb_marathon_last_fetch_size_bytes 1234",
        "marathon_lb_marathon_stream_connects_total 1",
        "marathon_lb_marathon_events_total{type=\"status_update_event\"} 2",
        "marathon_lb_last_failure_timestamp_seconds 77.0",
    ] {
        assert!(
            body.contains(&format!("\n{line}\n")),
            "{line} not in:\n{body}"
        );
    }
    assert!(
        body.ends_with("# EOF\n") && body.matches("# EOF").count() == 1,
        "{body}"
    );
}
