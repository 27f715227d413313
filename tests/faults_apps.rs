//! Hostile or broken Marathon input, end to end: the real binary in managed mode (a real
//! HAProxy) following the fake Marathon, and `--sse --command` for the command mode.
//!
//! A body that is not an apps listing must never be read as "zero apps"; one app's bad input
//! (a label, its JSON, a port another app holds, a line break in a value) must leave only that
//! app out while every other change is applied; a body over the size cap fails the pass.
//! Each test asserts what HAProxy serves, then what `/healthz`, `/status` and `/metrics` say.

#[path = "common/managed.rs"]
mod managed;

use std::time::{Duration, Instant};

use managed::{app, free_port, haproxy_missing, tasks, App, ManagedLb, Options};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(10);

/// A `/v2/apps` body of these app entries (JSON values, so a test can break their types).
fn body(apps: &[Value]) -> String {
    json!({ "apps": apps }).to_string()
}

/// Waits until `/healthz` answers 200 with a body containing every one of `needles`.
async fn wait_health(lb: &ManagedLb, needles: &[&str]) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let health = lb.get_admin("/healthz").await;
        if let Some((200, text)) = &health {
            if needles.iter().all(|n| text.contains(n)) {
                return text.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never said {needles:?}: {health:?}; log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/healthz` says exactly `ok` (a degraded answer also contains "ok").
async fn wait_healthy(lb: &ManagedLb) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let health = lb.get_admin("/healthz").await;
        if health == Some((200, "ok\n".into())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never said ok: {health:?}; log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/status` lists exactly `ids` as invalid apps; returns the list.
async fn wait_invalid(lb: &ManagedLb, ids: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = lb.status().await;
        let list = status["invalid_apps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let listed: Vec<&str> = list.iter().filter_map(|a| a["app_id"].as_str()).collect();
        if listed == ids {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "invalid apps never became {ids:?}: {status}; log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn invalid_metric(lb: &ManagedLb) -> Option<f64> {
    managed::sample(&lb.metrics().await, "marathon_lb_invalid_apps")
}

/// Item 1: `{}`, `{"apps": null}` and Marathon's "Leader not found" answer are errors, not an
/// empty cluster: every frontend keeps serving, `/healthz` says degraded with the reason; a
/// good body then applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_an_apps_list_keeps_the_last_config() {
    if haproxy_missing("a_body_without_an_apps_list_keeps_the_last_config") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let lb = ManagedLb::start(Options::default(), &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;

    for (broken, reason) in [
        ("{}", "\"apps\" is missing"),
        (r#"{"apps":null}"#, "\"apps\" is null"),
        (r#"{"message":"Leader not found"}"#, "Leader not found"),
        (r#"{"apps":{"id":"/web"}}"#, "\"apps\" is an object"),
        (
            "<html>502 Bad Gateway</html>",
            "malformed Marathon apps JSON",
        ),
    ] {
        lb.set_body(broken.to_owned());
        let health = wait_health(&lb, &["degraded", reason]).await;
        assert!(health.starts_with("ok (degraded)"), "{health}");
        lb.wait_for_answers(port, &["a"], SETTLE).await;
        assert!(lb.config().contains("backend web_"), "{broken}");
    }
    let status = lb.status().await;
    assert_eq!(status["apps"], 1, "{status}");

    lb.set_body(managed::apps_body(&[&app("/web", port, &[&t[1]])]));
    wait_healthy(&lb).await;
    lb.wait_for_answers(port, &["b"], SETTLE).await;
    assert_eq!(
        lb.get_admin("/healthz").await.map(|h| h.1),
        Some("ok\n".into())
    );
}

/// Item 2: app X's new definition is invalid (a port label that is not a number, a label value
/// of the wrong JSON type, `labels` of the wrong type, a template label with an unbalanced
/// `{`) while app Y scales: Y's change is served, X keeps serving its last good config and is
/// reported by name and label; a new app N with an invalid label is left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apps_bad_input_leaves_only_that_app_out() {
    if haproxy_missing("one_apps_bad_input_leaves_only_that_app_out") {
        return;
    }
    let t = tasks(&["x", "y1", "y2", "n"]).await;
    let (px, py, pn) = (free_port(), free_port(), free_port());
    let newcomer = app("/n", pn, &[&t[3]])
        .label("HAPROXY_0_BACKEND_WEIGHT", "heavy")
        .json();
    let x = app("/x", px, &[&t[0]]);
    let y_both = app("/y", py, &[&t[1], &t[2]]);
    let y_one = app("/y", py, &[&t[1]]);
    let lb = ManagedLb::start(Options::default(), &[&x, &y_both]).await;
    lb.wait_for_answers(px, &["x"], SETTLE).await;
    lb.wait_for_answers(py, &["y1", "y2"], SETTLE).await;

    let mut number_label = x.json();
    number_label["labels"]["HAPROXY_0_BACKEND_WEIGHT"] = json!(5);
    let mut object_labels = x.json();
    object_labels["labels"] = json!(["HAPROXY_GROUP", "external"]);
    let bad_port = x.clone().label("HAPROXY_0_PORT", "abc").json();
    let bad_template = x
        .clone()
        .label("HAPROXY_0_BACKEND_HEAD", "\nbackend {backend\n")
        .json();
    let cases = [
        (bad_port, "HAPROXY_0_PORT"),
        (number_label, "HAPROXY_0_BACKEND_WEIGHT"),
        (object_labels, "labels"),
        (bad_template, "HAPROXY_0_BACKEND_HEAD"),
    ];
    for (i, (bad_x, label)) in cases.into_iter().enumerate() {
        // Y alternates between one and two tasks: each pass has a change to apply.
        let (y, want): (&App, &[&str]) = if i % 2 == 0 {
            (&y_one, &["y1"])
        } else {
            (&y_both, &["y1", "y2"])
        };
        lb.set_body(body(&[newcomer.clone(), bad_x, y.json()]));
        lb.wait_for_answers(py, want, SETTLE).await;
        lb.wait_for_answers(px, &["x"], SETTLE).await;
        assert!(managed::get(pn, None).await.starts_with("ERR"), "{label}");
        // Y's servers can change over the Runtime API before the pass publishes its status:
        // wait for this case's report, not just for the same two ids as the last case.
        let deadline = Instant::now() + SETTLE;
        let list = loop {
            let list = wait_invalid(&lb, &["/n", "/x"]).await;
            let reported = list[1]["error"]
                .as_str()
                .unwrap_or_default()
                .contains(label);
            if reported || Instant::now() > deadline {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let list = &list[1..];
        let error = list[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("/x") && error.contains(label) && error.contains("last good config"),
            "{label}: {list:?}"
        );
        if label != "labels" {
            assert_eq!(list[0]["labels"], json!([label]), "{list:?}");
        }
        assert_eq!(invalid_metric(&lb).await, Some(2.0));
        assert_eq!(
            lb.get_admin("/healthz").await.map(|h| h.1),
            Some("ok\n".into())
        );
    }
    assert_eq!(t[3].hits(), 0);
    // Fixed: X is back and no longer reported.
    lb.set_body(managed::apps_body(&[&x, &y_both]));
    lb.wait_for_answers(px, &["x"], SETTLE).await;
    wait_invalid(&lb, &[]).await;
    assert!(lb.log().contains("valid again"), "{}", lb.log());
}

/// Item 3: two apps claim the same port through `HAPROXY_0_PORT`: the app that held it keeps
/// every request (although the newcomer's id sorts first); the newcomer is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_cannot_take_a_port_another_app_holds() {
    if haproxy_missing("a_newcomer_cannot_take_a_port_another_app_holds") {
        return;
    }
    let t = tasks(&["holder", "newcomer"]).await;
    let (port, other) = (free_port(), free_port());
    let holder = app("/zed", port, &[&t[0]]);
    let lb = ManagedLb::start(Options::default(), &[&holder]).await;
    lb.wait_for_answers(port, &["holder"], SETTLE).await;

    let newcomer = app("/abc", other, &[&t[1]]).label("HAPROXY_0_PORT", &port.to_string());
    lb.set_apps(&[&newcomer, &holder]);
    let list = wait_invalid(&lb, &["/abc"]).await;
    let error = list[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&port.to_string())
            && error.contains("/zed")
            && error.contains("HAPROXY_0_PORT"),
        "{list:?}"
    );
    assert_eq!(list[0]["labels"], json!(["HAPROXY_0_PORT"]));
    let answers: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(managed::get(port, None).await);
        }
        out
    };
    assert!(answers.iter().all(|a| a == "holder"), "{answers:?}");
    assert_eq!(t[1].hits(), 0);
    assert_eq!(lb.config().matches(&format!(":{port}")).count(), 1);
    assert_eq!(invalid_metric(&lb).await, Some(1.0));
}

/// Item 4: a line break in `HAPROXY_0_BIND_OPTIONS` that would add a `listen` section is
/// refused: nothing listens on the injected port, the app is reported naming the label, the
/// other app is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_in_a_value_label_injects_nothing() {
    if haproxy_missing("a_line_break_in_a_value_label_injects_nothing") {
        return;
    }
    let t = tasks(&["good", "evil"]).await;
    let (good_port, evil_app_port, injected) = (free_port(), free_port(), free_port());
    let injection = format!(
        "\nlisten evil\n  bind 127.0.0.1:{injected}\n  mode http\n  server s 127.0.0.1:{}\n",
        t[1].port
    );
    let evil = app("/evil", evil_app_port, &[&t[1]]).label("HAPROXY_0_BIND_OPTIONS", &injection);
    let good = app("/good", good_port, &[&t[0]]);
    let lb = ManagedLb::start(Options::default(), &[&good, &evil]).await;
    lb.wait_for_answers(good_port, &["good"], SETTLE).await;
    let list = wait_invalid(&lb, &["/evil"]).await;
    assert_eq!(list[0]["labels"], json!(["HAPROXY_0_BIND_OPTIONS"]));
    assert!(list[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("control characters")));
    assert!(std::net::TcpStream::connect(("127.0.0.1", injected)).is_err());
    assert!(managed::get(evil_app_port, None).await.starts_with("ERR"));
    assert!(!lb.config().contains("listen evil"));
    assert_eq!(t[1].hits(), 0);
}

/// Item 13: a body over `--marathon-max-body-bytes` fails the pass with an error naming the
/// cap and the flag; the last config keeps serving; a body under the cap applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_size_cap_keeps_the_last_config() {
    if haproxy_missing("a_body_over_the_size_cap_keeps_the_last_config") {
        return;
    }
    let t = tasks(&["a", "b"]).await;
    let port = free_port();
    let options = Options {
        extra_args: vec!["--marathon-max-body-bytes".into(), "4096".into()],
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&app("/web", port, &[&t[0]])]).await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;

    let mut big = app("/web", port, &[&t[1]]).json();
    big["padding"] = json!("x".repeat(8192));
    lb.set_body(body(&[big]));
    wait_health(
        &lb,
        &[
            "degraded",
            "larger than 4096 bytes",
            "--marathon-max-body-bytes",
        ],
    )
    .await;
    lb.wait_for_answers(port, &["a"], SETTLE).await;

    lb.set_apps(&[&app("/web", port, &[&t[1]])]);
    lb.wait_for_answers(port, &["b"], SETTLE).await;
    wait_healthy(&lb).await;
}

/// marathon-lb in `--command` mode (`--skip-validation`, the reload command only logs), with
/// its admin server; stopped by its pid on drop.
struct CommandLb {
    child: std::process::Child,
    dir: tempfile::TempDir,
    admin: u16,
}

impl CommandLb {
    fn start(source: &[&str]) -> CommandLb {
        let dir = tempfile::tempdir().unwrap();
        let admin = free_port();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
            .current_dir(dir.path())
            .args(source)
            .args(["--group", "external", "--skip-validation"])
            .args(["--archive-versions", "0", "--haproxy-config", "haproxy.cfg"])
            .args(["--command", "true", "--log-level", "info"])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        CommandLb { child, dir, admin }
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.cfg")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        reqwest::get(url).await.ok()?.text().await.ok()
    }

    /// Waits until `/status` satisfies `f`; returns it.
    async fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            let status = self.get("/status").await;
            let json = status.as_deref().and_then(|s| serde_json::from_str(s).ok());
            if let Some(json) = json.filter(|j| f(j)) {
                return json;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: /status {status:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CommandLb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain_app(id: &str, port: u16, task_port: u16) -> App {
    App::new(
        id,
        port,
        vec![managed::Task::new(
            &format!("{id}.1"),
            "127.0.0.1",
            task_port,
        )],
    )
}

/// `--sse --command`: an invalid app is left out of the file on disk and reported in
/// `/status` and the metric, the others are written; the error is logged once, not per pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_mode_leaves_out_and_reports_an_invalid_app() {
    let fake = marathon_lb_testkit::fake_marathon::FakeMarathon::start(Default::default())
        .await
        .unwrap();
    let good = plain_app("/good", 10001, 31001);
    let bad = plain_app("/bad", 10002, 31002).label("HAPROXY_0_PORT", "abc");
    fake.set_apps(managed::apps_body(&[&good, &bad]));
    let lb = CommandLb::start(&["--marathon", &fake.url(), "--sse"]);
    let status = lb
        .wait_status("the bad app reported", |s| {
            s["invalid_apps"][0]["app_id"] == "/bad"
        })
        .await;
    assert_eq!(
        status["invalid_apps"][0]["labels"],
        json!(["HAPROXY_0_PORT"])
    );
    assert!(status["invalid_apps"][0]["since"]
        .as_u64()
        .is_some_and(|s| s > 0));
    let config = lb.config();
    assert!(
        config.contains("backend good_10001") && !config.contains("bad_"),
        "{config}"
    );
    let metrics = lb.get("/metrics").await.unwrap_or_default();
    assert!(
        metrics.contains("\nmarathon_lb_invalid_apps 1\n"),
        "{metrics}"
    );

    fake.wait_for_subscribers(1).await;
    let good2 = plain_app("/good", 10001, 31003);
    for _ in 0..3 {
        fake.set_apps(managed::apps_body(&[&good2, &bad]));
        fake.push_marathon_event("status_update_event", json!({"appId": "/good"}));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + SETTLE;
    while !lb.config().contains(":31003") {
        assert!(Instant::now() < deadline, "log:\n{}", lb.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = lb.log().matches("left out an app").count();
    assert_eq!(logged, 1, "{}", lb.log());
}

/// `--apps-file --watch`: a file over the cap fails the pass (named error, config kept); a
/// file of `{}` too; a good file applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_apps_file_over_the_cap_or_without_apps_keeps_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.json");
    std::fs::write(
        &apps,
        managed::apps_body(&[&plain_app("/web", 10001, 31001)]),
    )
    .unwrap();
    let lb = CommandLb::start(&[
        "--apps-file",
        apps.to_str().unwrap(),
        "--watch",
        "--marathon-max-body-bytes",
        "2048",
    ]);
    lb.wait_status("first pass", |s| s["last_success"].is_string())
        .await;
    let good = lb.config();
    assert!(good.contains(":31001"), "{good}");

    std::fs::write(
        &apps,
        format!("{{\"pad\":\"{}\",\"apps\":[]}}", "x".repeat(4096)),
    )
    .unwrap();
    let status = lb
        .wait_status("the cap error", |s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("larger than 2048 bytes"))
        })
        .await;
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("--marathon-max-body-bytes"));
    std::fs::write(&apps, "{}").unwrap();
    lb.wait_status("the no-list error", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no apps list"))
    })
    .await;
    assert_eq!(lb.config(), good);
    std::fs::write(
        &apps,
        managed::apps_body(&[&plain_app("/web", 10001, 31002)]),
    )
    .unwrap();
    let deadline = Instant::now() + SETTLE;
    while !lb.config().contains(":31002") {
        assert!(Instant::now() < deadline, "log:\n{}", lb.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
