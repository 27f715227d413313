//! Managed mode end to end, server churn: the real binary runs a real HAProxy (no `--command`)
//! and follows the fake Marathon over `--sse`; tasks are tiny HTTP servers answering their own
//! name. Scale up/down, a replaced task, a colliding server id, a health flip and blue/green
//! draining must reach HAProxy through the Runtime API with no reload: the same worker pid
//! before and after and `marathon_lb_reloads_total` at `initial` only, while traffic reaches
//! exactly the new set. Reloads, fallbacks and the rest are in `tests/managed_reload.rs`.
//! Every wait is bounded.

#[path = "common/managed.rs"]
mod managed;

use managed::{
    app, assert_no_reload, free_port, haproxy_missing, only_initial, runtime_ok, tasks,
    wait_runtime_applies, App, ManagedLb, Options, TaskServer, SETTLE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_serves_traffic() {
    if haproxy_missing("start_serves_traffic") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let web = app("/web", port, &[&t[0], &t[1]]).label("HAPROXY_0_VHOST", "web.test");
    let lb = ManagedLb::start(Options::default(), &[&web]).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    // The shared HTTP frontend routes the vhost too.
    let via_vhost = managed::answers(lb.ports.http, Some("web.test"), 4).await;
    assert_eq!(via_vhost, ["a".to_owned(), "b".to_owned()].into());
    assert_eq!(lb.reloads().await, only_initial());
    let pids = lb.haproxy_pids();
    assert_eq!(
        pids.len(),
        2,
        "one master and one worker:\n{}",
        managed::describe_pids(&pids)
    );
    let status = lb.status().await;
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["marathon_connected"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_needs_no_reload() {
    if haproxy_missing("scale_up_needs_no_reload") {
        return;
    }
    let t = tasks(&["a", "b", "c"]).await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    let worker = lb.worker_pid().await;

    lb.set_apps(&[&app("/web", port, &[&t[0], &t[1], &t[2]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["a", "b", "c"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
    assert_eq!(runtime_ok(&lb, "add").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_needs_no_reload() {
    if haproxy_missing("scale_down_needs_no_reload") {
        return;
    }
    let t = tasks(&["a", "b", "c"]).await;
    let port = free_port();
    let all = app("/web", port, &[&t[0], &t[1], &t[2]]);
    let lb = ManagedLb::start(Options::default(), &[&all]).await;
    lb.wait_for_answers(port, &["a", "b", "c"], SETTLE).await;
    let worker = lb.worker_pid().await;

    lb.set_apps(&[&app("/web", port, &[&t[1]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["b"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
    assert_eq!(runtime_ok(&lb, "del").await, 2.0);
    assert!(
        !lb.config().contains(&format!(":{}", t[0].port)),
        "the config on disk must match what HAProxy serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_task_needs_no_reload() {
    if haproxy_missing("replacing_a_task_needs_no_reload") {
        return;
    }
    let t = tasks(&["a", "b", "c"]).await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0], &t[1]])]).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    let worker = lb.worker_pid().await;

    // Task a dies, Marathon starts c elsewhere.
    lb.set_apps(&[&app("/web", port, &[&t[1], &t[2]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["b", "c"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
    assert_eq!(
        (runtime_ok(&lb, "add").await, runtime_ok(&lb, "del").await),
        (1.0, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_tasks_under_keep_alive_load_needs_no_reload() {
    if haproxy_missing("replacing_tasks_under_keep_alive_load_needs_no_reload") {
        return;
    }
    let t = tasks(&["a", "b", "c", "d", "e", "f"]).await;
    let port = free_port();
    // HTTP mode: every request is balanced on its own (in TCP mode, the default without a
    // vhost or HTTP health check, a connection stays on its server until it is shut down).
    let web = |servers: &[&TaskServer]| app("/web", port, servers).label("HAPROXY_0_MODE", "http");
    let lb = ManagedLb::start(Options::default(), &[&web(&[&t[0], &t[1]])]).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    let worker = lb.worker_pid().await;
    let load = managed::Load::start(port, 8);
    lb.wait_until("load flowing", SETTLE, || async { load.counts().0 > 100 })
        .await;

    // Each step replaces the oldest task while requests keep the servers busy: the deleted
    // server must be drained, not make the update fall back to a reload.
    for step in 0..4 {
        lb.set_apps(&[&web(&[&t[step + 1], &t[step + 2]])]);
        wait_runtime_applies(&lb, step + 1).await;
        let before = t[step + 2].hits();
        lb.wait_until("the new task serving", SETTLE, || async {
            t[step + 2].hits() > before
        })
        .await;
    }
    let (ok, failed) = load.counts();
    let failures = load.failures.lock().unwrap().clone();
    let retried = load.retried.load(std::sync::atomic::Ordering::SeqCst);
    drop(load);
    assert_no_reload(&lb, worker).await;
    assert_eq!((failed, retried), (0, 0), "{ok} requests ok; {failures:#?}");
    assert_eq!(runtime_ok(&lb, "del").await, 4.0);
}

/// Server ids are `sha256(name) mod 32767` with collisions resolved in address order (the
/// original's scheme, byte-compatible output). A new task whose id collides with a running
/// server's and sorts first takes that id: the running server is deleted and added again with
/// its new id through the Runtime API, not reloaded (the churn bench sees this about once in
/// 1000 events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_task_whose_server_id_collides_needs_no_reload() {
    if haproxy_missing("a_new_task_whose_server_id_collides_needs_no_reload") {
        return;
    }
    let (low, high) = colliding_free_ports().await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&high])]).await;
    lb.wait_for_answers(port, &["high"], SETTLE).await;
    let worker = lb.worker_pid().await;
    lb.set_apps(&[&app("/web", port, &[&low, &high])]);
    lb.wait_for_answers(port, &["high", "low"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colliding_task_under_keep_alive_load_needs_no_reload() {
    if haproxy_missing("a_colliding_task_under_keep_alive_load_needs_no_reload") {
        return;
    }
    let (low, high) = colliding_free_ports().await;
    let steady = tasks(&["steady"]).await;
    let port = free_port();
    let web = |servers: &[&TaskServer]| app("/web", port, servers).label("HAPROXY_0_MODE", "http");
    let lb = ManagedLb::start(Options::default(), &[&web(&[&steady[0], &high])]).await;
    lb.wait_for_answers(port, &["steady", "high"], SETTLE).await;
    let worker = lb.worker_pid().await;
    let load = managed::Load::start(port, 8);
    lb.wait_until("load flowing", SETTLE, || async { load.counts().0 > 100 })
        .await;

    // `high` is busy when `low` takes its id: it is drained, deleted and added back.
    lb.set_apps(&[&web(&[&steady[0], &low, &high])]);
    wait_runtime_applies(&lb, 1).await;
    let before = (low.hits(), high.hits());
    lb.wait_until("both colliding tasks serving", SETTLE, || async {
        low.hits() > before.0 && high.hits() > before.1
    })
    .await;
    let (ok, failed) = load.counts();
    let failures = load.failures.lock().unwrap().clone();
    drop(load);
    assert_no_reload(&lb, worker).await;
    assert_eq!(failed, 0, "{ok} requests ok; {failures:#?}");
    assert_eq!(
        (runtime_ok(&lb, "add").await, runtime_ok(&lb, "del").await),
        (2.0, 1.0)
    );
}

/// Task servers on two free ports whose server names get the same id hash, the lower first.
async fn colliding_free_ports() -> (TaskServer, TaskServer) {
    let mut seen: std::collections::HashMap<u32, u16> = Default::default();
    for p in 20000..60000u16 {
        let name = format!("127_0_0_1_{p}");
        let id = marathon_lb::compat::server_id(&name, &mut Default::default());
        if let Some(&low) = seen.get(&id) {
            if let (Ok(a), Ok(b)) = (
                TaskServer::start_on("low", low).await,
                TaskServer::start_on("high", p).await,
            ) {
                return (a, b);
            }
        }
        seen.entry(id).or_insert(p);
    }
    panic!("no free colliding ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_flip_needs_no_reload() {
    if haproxy_missing("a_health_flip_needs_no_reload") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let with = |b_alive: bool| {
        App::new(
            "/web",
            port,
            vec![t[0].task().alive(true), t[1].task().alive(b_alive)],
        )
        .health_checked()
    };
    let options = Options {
        health_check: true,
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&with(true)]).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    let worker = lb.worker_pid().await;

    lb.set_apps(&[&with(false)]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;
    lb.set_apps(&[&with(true)]);
    wait_runtime_applies(&lb, 2).await;
    lb.wait_for_answers(port, &["a", "b"], SETTLE).await;
    assert_no_reload(&lb, worker).await;
    assert_eq!(
        (runtime_ok(&lb, "del").await, runtime_ok(&lb, "add").await),
        (1.0, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_draining_needs_no_reload() {
    if haproxy_missing("blue_green_draining_needs_no_reload") {
        return;
    }
    let t = tasks(&["blue1", "blue2", "green1", "green2"]).await;
    let port = free_port();
    let group = |app: App, started: &str| {
        app.label("HAPROXY_DEPLOYMENT_GROUP", "web")
            .label("HAPROXY_DEPLOYMENT_STARTED_AT", started)
    };
    let blue = group(
        app("/web-blue", port, &[&t[0], &t[1]]),
        "2024-01-01T00:00:00.000Z",
    );
    let lb = ManagedLb::start(Options::default(), &[&blue]).await;
    lb.wait_for_answers(port, &["blue1", "blue2"], SETTLE).await;
    let worker = lb.worker_pid().await;

    // The green app starts with one task: one blue task drains (disabled, no new requests).
    let green = |servers: &[&TaskServer]| {
        let mut green = group(app("/web-green", port, servers), "2024-01-02T00:00:00.000Z");
        green.instances = Some(servers.len());
        green
    };
    lb.set_apps(&[&blue, &green(&[&t[2]])]);
    wait_runtime_applies(&lb, 1).await;
    lb.wait_for_answers(port, &["blue2", "green1"], SETTLE)
        .await;
    assert!(lb.config().contains(" disabled"), "{}", lb.config());

    // Green at full size: every blue task drains.
    lb.set_apps(&[&blue, &green(&[&t[2], &t[3]])]);
    wait_runtime_applies(&lb, 2).await;
    lb.wait_for_answers(port, &["green1", "green2"], SETTLE)
        .await;

    // Blue goes away: its servers are deleted.
    lb.set_apps(&[&green(&[&t[2], &t[3]])]);
    wait_runtime_applies(&lb, 3).await;
    lb.wait_for_answers(port, &["green1", "green2"], SETTLE)
        .await;
    assert!(!lb.config().contains(" disabled"), "{}", lb.config());
    assert_no_reload(&lb, worker).await;
    assert!(runtime_ok(&lb, "state").await >= 1.0);
}
