//! Managed mode end to end, beyond server churn (see `tests/managed.rs`): structural changes
//! reload with a typed reason; a failing runtime op falls back to a reload; a killed master
//! comes back; a bad app is left out; a missing certificate (in `--generate-certs-dir`) is
//! generated; the stats endpoints and metrics work; SIGTERM leaves no HAProxy behind. Every
//! wait is bounded.

#[path = "common/managed.rs"]
mod managed;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use managed::{
    app, assert_no_reload, free_port, haproxy_missing, only_initial, tasks, wait_runtime_applies,
    ManagedLb, Options, TaskServer, SETTLE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_reloads_with_its_reason() {
    if haproxy_missing("a_new_app_reloads_with_its_reason") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let (p1, p2) = (free_port(), free_port());
    let web = app("/web", p1, &[&t[0]]);
    let lb = ManagedLb::start(Options::default(), &[&web]).await;
    lb.wait_for_answers(p1, &["a"], SETTLE).await;
    let worker = lb.worker_pid().await;

    lb.set_apps(&[&web, &app("/api", p2, &[&t[1]])]);
    lb.wait_for_answers(p2, &["b"], SETTLE).await;
    lb.wait_for_answers(p1, &["a"], SETTLE).await;
    // The reload is counted once HAProxy confirmed the new worker.
    lb.wait_until("the new-app reload counted", SETTLE, || async {
        lb.reloads().await.get("new-app") == Some(&1)
    })
    .await;
    assert_eq!(
        lb.reloads().await,
        BTreeMap::from([("initial".to_owned(), 1), ("new-app".to_owned(), 1)])
    );
    assert_ne!(lb.worker_pid().await, worker, "a reload means a new worker");
    // The servers' state was saved for the new worker (`server-state-file global` in the head).
    let state = std::fs::read_to_string(lb.dir.path().join("global")).expect("server state file");
    assert!(state.contains("web_"), "{state}");

    // And removing it is a reload too.
    lb.set_apps(&[&web]);
    lb.wait_until("a removed-app reload", SETTLE, || async {
        lb.reloads().await.get("removed-app") == Some(&1)
    })
    .await;
    lb.wait_until("the removed app's port closed", SETTLE, || async {
        managed::get(p2, None).await.starts_with("ERR")
    })
    .await;
    lb.wait_for_answers(p1, &["a"], SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_runtime_op_falls_back_to_a_reload() {
    if haproxy_missing("a_failing_runtime_op_falls_back_to_a_reload") {
        return;
    }
    let t = tasks(&["a", "b", "c"]).await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let worker = lb.worker_pid().await;

    // The stats socket is gone: every Runtime API call fails to connect.
    let socket = lb.stats_socket();
    let hidden = lb.dir.path().join("hidden.sock");
    std::fs::rename(&socket, &hidden).unwrap();
    lb.set_apps(&[&app("/web", port, &[&t[0], &t[1]])]);
    lb.wait_until("a runtime-fallback reload", SETTLE, || async {
        lb.reloads().await.get("runtime-fallback") == Some(&1)
    })
    .await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    assert_ne!(lb.worker_pid().await, worker, "a reload means a new worker");
    let metrics = lb.metrics().await;
    assert_eq!(
        managed::sample(
            &metrics,
            "marathon_lb_runtime_updates_total{op=\"add\",result=\"error\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // A reload does not bring the path back: the master hands the new worker the same
    // listening socket, still bound to the renamed inode. Put it back; the next churn is a
    // runtime update again.
    assert!(!socket.exists());
    std::fs::rename(&hidden, &socket).unwrap();
    let worker = lb.worker_pid().await;
    lb.set_apps(&[&app("/web", port, &[&t[0], &t[1], &t[2]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["a", "b", "c"], SETTLE).await;
    assert_eq!(lb.worker_pid().await, worker);
    assert_eq!(lb.reloads().await.get("runtime-fallback"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_restarted_with_the_last_good_config() {
    if haproxy_missing("a_killed_master_is_restarted_with_the_last_good_config") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    // The last good config includes a runtime-applied change.
    lb.set_apps(&[&app("/web", port, &[&t[0], &t[1]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    let master = lb.show_proc().await.unwrap().master.pid;

    managed::signal(master, libc::SIGKILL);
    let killed = Instant::now();
    lb.wait_until("a new master serving", Duration::from_secs(2), || async {
        lb.show_proc()
            .await
            .is_some_and(|p| p.master.pid != master && !p.workers.is_empty())
    })
    .await;
    lb.wait_for_answers(port, &["a", "b"], Duration::from_secs(2))
        .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "serving again after {took:?}"
    );
    lb.wait_until("the restart counted", SETTLE, || async {
        let metrics = lb.metrics().await;
        managed::sample(&metrics, "marathon_lb_haproxy_restarts_total") == Some(1.0)
            && managed::parse_reloads(&metrics).get("restart") == Some(&1)
    })
    .await;
    // The old master's workers are gone (only the new master and its worker remain).
    lb.wait_until("two haproxy processes", SETTLE, || async {
        lb.haproxy_pids().len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_haproxy_rejects_are_left_out_and_reported() {
    if haproxy_missing("apps_haproxy_rejects_are_left_out_and_reported") {
        return;
    }
    let t = tasks(&["a", "b", "x", "y"]).await;
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let good = |servers: &[&TaskServer]| app("/good", p1, servers);
    let bad_option = app("/bad-option", p2, &[&t[2]])
        .label("HAPROXY_0_BACKEND_SERVER_OPTIONS", "  bogus-directive 42\n");
    let bad_mode = app("/bad-mode", p3, &[&t[3]])
        .label("HAPROXY_0_MODE", "tcp")
        .label("HAPROXY_0_VHOST", "bad.test");
    let lb = ManagedLb::start(
        Options::default(),
        &[&good(&[&t[0]]), &bad_option, &bad_mode],
    )
    .await;
    lb.wait_for_answers(p1, &["a"], SETTLE).await;
    assert!(managed::get(p2, None).await.starts_with("ERR"));
    assert!(managed::get(p3, None).await.starts_with("ERR"));

    let metrics = lb.metrics().await;
    assert_eq!(
        managed::sample(&metrics, "marathon_lb_invalid_apps"),
        Some(2.0),
        "{metrics}"
    );
    let invalid_ids = |status: &serde_json::Value| -> Option<Vec<String>> {
        let list = status["invalid_apps"].as_array()?;
        Some(
            list.iter()
                .filter_map(|a| Some(a["app_id"].as_str()?.to_owned()))
                .collect(),
        )
    };
    let deadline = Instant::now() + SETTLE;
    let mut status = lb.status().await;
    while invalid_ids(&status).is_none_or(|ids| ids.len() < 2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = lb.status().await;
    }
    assert_eq!(
        invalid_ids(&status),
        Some(vec!["/bad-option".to_owned(), "/bad-mode".to_owned()]),
        "{status}"
    );
    assert!(
        status["invalid_apps"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("bogus-directive")),
        "{status}"
    );

    // Another app's change still goes through (and still without a reload).
    let worker = lb.worker_pid().await;
    lb.set_apps(&[&good(&[&t[0], &t[1]]), &bad_option, &bad_mode]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(p1, &["a", "b"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
    let metrics = lb.metrics().await;
    assert_eq!(
        managed::sample(&metrics, "marathon_lb_invalid_apps"),
        Some(2.0),
        "{metrics}"
    );
}

/// `--generate-certs-dir <dir>/certs`, and the certificate path an app there would name.
fn generate_certs_in(dir: &std::path::Path) -> (std::path::PathBuf, Options) {
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let options = Options {
        extra_args: vec!["--generate-certs-dir".into(), certs.display().to_string()],
        ..Options::default()
    };
    (certs.join("app.pem"), options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_in_the_generate_dir_is_generated_and_tls_serves() {
    if haproxy_missing("a_missing_certificate_in_the_generate_dir_is_generated_and_tls_serves") {
        return;
    }
    let t = tasks(&["secure"]).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (cert, options) = generate_certs_in(dir.path());
    let web = app("/web", port, &[&t[0]]).label("HAPROXY_0_SSL_CERT", cert.to_str().unwrap());
    let lb = ManagedLb::start(options, &[&web]).await;
    assert!(
        cert.exists(),
        "no certificate generated; log:\n{}",
        lb.log()
    );
    assert!(lb.log().contains("generated a self-signed one"));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut body = String::new();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(resp) = client
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
        {
            body = resp.text().await.unwrap_or_default();
            if body == "secure" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body, "secure", "log:\n{}", lb.log());
}

/// A task change of another app checks only what changed for new certificates, but still
/// finds a generated certificate deleted since (it would fail the next reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_certificate_comes_back_on_another_apps_task_change() {
    if haproxy_missing("a_deleted_certificate_comes_back_on_another_apps_task_change") {
        return;
    }
    let t = tasks(&["secure", "a", "b"]).await;
    let (port, other_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let (cert, options) = generate_certs_in(dir.path());
    let web = app("/web", port, &[&t[0]]).label("HAPROXY_0_SSL_CERT", cert.to_str().unwrap());
    let lb = ManagedLb::start(options, &[&web, &app("/other", other_port, &[&t[1]])]).await;
    assert!(cert.exists(), "log:\n{}", lb.log());
    let worker = lb.worker_pid().await;
    for (i, task) in [&t[2], &t[1]].into_iter().enumerate() {
        std::fs::remove_file(&cert).unwrap();
        let applies = lb.runtime_applies();
        lb.set_apps(&[&web, &app("/other", other_port, &[task])]);
        wait_runtime_applies(&lb, applies + 1).await;
        assert!(
            cert.exists(),
            "step {i}: not generated again; log:\n{}",
            lb.log()
        );
    }
    assert_no_reload(&lb, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_endpoints_answer_in_managed_mode() {
    if haproxy_missing("stats_endpoints_answer_in_managed_mode") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let web = app("/web", port, &[&t[0]]).label("HAPROXY_0_VHOST", "web.test");
    let options = Options {
        extra_args: vec!["--haproxy-map".into()],
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&web]).await;

    let (code, _) = lb.get_stats("/_haproxy_health_check").await.unwrap();
    assert_eq!(code, 200);
    let (code, csv) = lb.get_stats("/haproxy?stats;csv").await.unwrap();
    assert_eq!(code, 200);
    assert!(csv.starts_with("# pxname,svname,"), "{csv}");
    assert!(
        csv.contains(&format!("\n{},BACKEND,", web.backend())),
        "{csv}"
    );
    let (code, config) = lb.get_stats("/_haproxy_getconfig").await.unwrap();
    assert_eq!((code, config), (200, lb.config()));
    let map = std::fs::read_to_string(lb.dir.path().join("domain2backend.map")).unwrap();
    assert!(map.contains("web.test"), "{map}");
    let (code, served) = lb.get_stats("/_haproxy_getvhostmap").await.unwrap();
    assert_eq!((code, served), (200, map));
    let (code, pids) = lb.get_stats("/_haproxy_getpids").await.unwrap();
    assert_eq!(code, 200);
    let master = lb.show_proc().await.unwrap().master.pid;
    assert!(pids.starts_with(&format!("{master} ")), "{pids}");

    // /_mlb_signal/hup goes through the Lua to the admin server and runs a pass.
    let passes = lb.status().await["passes"].as_u64().unwrap();
    let (code, body) = lb.get_stats("/_mlb_signal/hup").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "Sent SIGHUP signal to marathon-lb")
    );
    lb.wait_until("a pass after /_mlb_signal/hup", SETTLE, || async {
        lb.status().await["passes"].as_u64().unwrap() > passes
    })
    .await;
    // Nothing changed, so nothing reloaded.
    assert_eq!(lb.reloads().await, only_initial());

    // After a runtime update (no reload) the config served is still the one on disk.
    lb.set_apps(&[&app("/web", port, &[&t[0], &t[1]]).label("HAPROXY_0_VHOST", "web.test")]);
    wait_runtime_applies(&lb, 1).await;
    assert_eq!(lb.reloads().await, only_initial());
    let (code, config) = lb.get_stats("/_haproxy_getconfig").await.unwrap();
    assert!(lb.config().contains(&format!(":{}", t[1].port)));
    assert_eq!((code, config), (200, lb.config()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reloads_by_reason_and_runtime_updates_by_op() {
    if haproxy_missing("metrics_count_reloads_by_reason_and_runtime_updates_by_op") {
        return;
    }
    let t = tasks(&["a", "b", "c"]).await;
    let (p1, p2) = (free_port(), free_port());
    let lb = ManagedLb::start(Options::default(), &[&app("/web", p1, &[&t[0]])]).await;
    lb.wait_for_answers(p1, &["a"], SETTLE).await;
    lb.set_apps(&[&app("/web", p1, &[&t[0], &t[1]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.set_apps(&[&app("/web", p1, &[&t[1]])]);
    wait_runtime_applies(&lb, 2).await;
    lb.set_apps(&[&app("/web", p1, &[&t[1]]), &app("/api", p2, &[&t[2]])]);
    lb.wait_for_answers(p2, &["c"], SETTLE).await;
    lb.wait_until("the new-app reload counted", SETTLE, || async {
        lb.reloads().await.get("new-app") == Some(&1)
    })
    .await;
    let metrics = lb.metrics().await;
    for (series, value) in [
        (
            "marathon_lb_reloads_total{reason=\"initial\",result=\"ok\"}",
            1.0,
        ),
        (
            "marathon_lb_reloads_total{reason=\"new-app\",result=\"ok\"}",
            1.0,
        ),
        (
            "marathon_lb_runtime_updates_total{op=\"add\",result=\"ok\"}",
            1.0,
        ),
        (
            "marathon_lb_runtime_updates_total{op=\"del\",result=\"ok\"}",
            1.0,
        ),
        ("marathon_lb_invalid_apps", 0.0),
        ("marathon_lb_marathon_connected", 1.0),
        ("marathon_lb_apps", 2.0),
    ] {
        assert_eq!(
            managed::sample(&metrics, series),
            Some(value),
            "{series}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_haproxy() {
    if haproxy_missing("sigterm_stops_haproxy") {
        return;
    }
    let t = tasks(&["a"]).await;
    let port = free_port();
    let mut lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let pids = lb.haproxy_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let status = lb
        .terminate(Duration::from_secs(15))
        .await
        .expect("marathon-lb did not exit within 15 s of SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", lb.log());
    let left = lb.haproxy_pids();
    assert!(left.is_empty(), "HAProxy processes left behind: {left:?}");
    assert!(managed::get(port, None).await.starts_with("ERR"));
}
