//! The `kubeapi-proxy` scenario end to end: the app of `examples/kubeapi-proxy.json` in a
//! fake Marathon, the real `marathon-lb` binary in live mode, real HAProxy, and a real
//! `kubectl` talking TLS to HAProxy, which talks TLS to the stand-in API server
//! (`marathon_lb_testkit::fake_kube_apiserver`).
//!
//! Also the real `haproxy -c` on the published labels (its `timeout client ... will be
//! ignored` warning), on the shipped example (no warning), and on an unresolvable API server
//! host. Each test skips, loudly, when `haproxy` or `kubectl` is not on PATH.
//!
//! Every process a test starts is killed by its pid when the test ends (drop guards).

#[path = "../common/mod.rs"]
mod common;
mod procs;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use marathon_lb_testkit::fake_kube_apiserver::{FakeKubeApiServer, SelfSigned};
use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};
use serde_json::{json, Value};

use procs::{
    descendants, free_ports, haproxy_control, kubeconfig, kubectl, kubectl_stream, tools_available,
    wait_until, HaproxyGuard, KilledTree, Out, CONTROL,
};
use wire::{echo, expect_event, stats_csv, upgraded_connection};

/// The API server address in the app as published.
const PUBLISHED_HOST: &str = "apiserver.devkubernetes01.l4lb.thisdcos.directory:6443";

/// `HAPROXY_0_BACKEND_SERVER_OPTIONS` as published, with its ignored `timeout client`.
const PUBLISHED_SERVER_OPTIONS: &str = "  timeout connect 10s\n  timeout client 86400s\n  \
     timeout server 86400s\n  timeout tunnel 86400s\n  server kube-apiserver \
     apiserver.devkubernetes01.l4lb.thisdcos.directory:6443 ssl verify none\n";

/// What HAProxy says of a `timeout client` in a backend.
const IGNORED_WARNING: &str =
    "'timeout client' will be ignored because backend 'kubeapi-proxy_6443' has no frontend capability";

/// `examples/kubeapi-proxy.json`: the app definition as it is POSTed to Marathon.
fn example_app() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubeapi-proxy.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The app with the labels as published (no frontend head, `timeout client` in the backend).
fn published_app() -> Value {
    with_server_options(PUBLISHED_SERVER_OPTIONS)
}

/// A control: the app with HAProxy's default timeouts (only the `server` line).
fn default_timeouts_app() -> Value {
    with_server_options(&format!(
        "  server kube-apiserver {PUBLISHED_HOST} ssl verify none\n"
    ))
}

/// The example app without its frontend head and with these backend server options.
fn with_server_options(options: &str) -> Value {
    let mut app = example_app();
    let labels = app["labels"].as_object_mut().unwrap();
    labels.remove("HAPROXY_0_FRONTEND_HEAD");
    labels.insert("HAPROXY_0_BACKEND_SERVER_OPTIONS".into(), options.into());
    app
}

/// `app` as Marathon lists it: `service_port` assigned and one running task.
fn as_listed(mut app: Value, service_port: u16, task_port: u16) -> Value {
    let id = app["id"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    app["portDefinitions"][0]["port"] = service_port.into();
    app["tasks"] = json!([{
        "id": format!("{id}.{task_port}"), "host": "127.0.0.1", "ports": [task_port],
        "state": "TASK_RUNNING", "startedAt": "2026-01-01T00:00:00.000Z"
    }]);
    app
}

/// Sets label `name` of `app`.
fn label(app: &mut Value, name: &str, value: impl Into<Value>) {
    app["labels"][name] = value.into();
}

/// Points the API server line of `app` at `api` instead of the published host.
fn with_api_server(app: &mut Value, api: &str) {
    let options = app["labels"]["HAPROXY_0_BACKEND_SERVER_OPTIONS"]
        .as_str()
        .unwrap()
        .replace(PUBLISHED_HOST, api);
    label(app, "HAPROXY_0_BACKEND_SERVER_OPTIONS", options);
}

/// A temp working directory for `marathon-lb`: `templates/` with an unprivileged head (stats
/// on `127.0.0.1:<stats>`) and app-id frontend (`127.0.0.1:<appid>`), and room for the
/// config, the frontend certificate (`cert.pem`), the logs and HAProxy's pid file and sockets.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new(stats_port: u16, appid_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let templates = dir.path().join("templates");
        std::fs::create_dir(&templates).unwrap();
        // `maxconn 50000` makes HAProxy raise its fd limit to 100044, above the hard limit
        // of a test machine; a running (not just checked) HAProxy then refuses to start.
        let head = common::checkable_head(dir.path())
            .replace("bind 0.0.0.0:9090", &format!("bind 127.0.0.1:{stats_port}"))
            .replace("\n  maxconn 50000\n", "\n  maxconn 4096\n");
        assert!(head.contains(&format!("127.0.0.1:{stats_port}")) && head.contains("maxconn 4096"));
        std::fs::write(templates.join("HAPROXY_HEAD"), head).unwrap();
        std::fs::write(
            templates.join("HAPROXY_HTTP_FRONTEND_APPID_HEAD"),
            format!(
                "\nfrontend marathon_http_appid_in\n  bind 127.0.0.1:{appid_port}\n  mode http\n"
            ),
        )
        .unwrap();
        Self { dir }
    }

    /// Writes a self-signed `cert.pem` (certificate + key) for the frontends.
    fn write_cert(&self) {
        let cert = SelfSigned::generate(&["localhost", "127.0.0.1"]).unwrap();
        std::fs::write(self.path("cert.pem"), cert.combined_pem()).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

/// Renders `apps` with the real binary (`--dry`) in `work`, as `--group external` would.
fn render(work: &Workdir, apps: &[Value]) -> String {
    let body = json!({ "apps": apps }).to_string();
    std::fs::write(work.path("apps.json"), body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .current_dir(work.dir.path())
        .args(["--apps-file", "apps.json", "--group", "external", "--dry"])
        .args(["--dont-bind-http-https", "--log-level", "error"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `haproxy -c` on `config` (written to `work`): success and everything it printed.
fn haproxy_check(work: &Workdir, config: &str) -> (bool, String) {
    std::fs::write(work.path("checked.cfg"), config).unwrap();
    let out = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(work.path("checked.cfg"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `app` ready for `haproxy -c` in `work`: its certificate, and the API server on loopback.
fn checkable(work: &Workdir, mut app: Value) -> Value {
    with_api_server(&mut app, "127.0.0.1:6443");
    label(
        &mut app,
        "HAPROXY_0_SSL_CERT",
        work.path("cert.pem").to_str().unwrap(),
    );
    as_listed(app, 10000, 31000)
}

#[test]
fn published_labels_warn_that_the_backend_client_timeout_is_ignored() {
    if !common::haproxy_available(
        "published_labels_warn_that_the_backend_client_timeout_is_ignored",
    ) {
        return;
    }
    let work = Workdir::new(9090, 9091);
    work.write_cert();
    let published = render(&work, &[checkable(&work, published_app())]);
    let (valid, said) = haproxy_check(&work, &published);
    assert!(valid, "{said}");
    assert!(said.contains(IGNORED_WARNING), "{said}");

    let example = render(&work, &[checkable(&work, example_app())]);
    let (valid, said) = haproxy_check(&work, &example);
    assert!(valid, "{said}");
    assert!(!said.contains("will be ignored"), "{said}");
    let frontend = example
        .split("\nfrontend kubeapi-proxy_6443\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no kubeapi-proxy frontend:\n{example}"));
    assert!(frontend.contains("  timeout client 86400s"), "{frontend}");
}

/// HAProxy resolves server names when it loads a config, and `haproxy -c` fails on one that
/// doesn't resolve: marathon-lb leaves the app out, naming it and HAProxy's line (the host).
#[test]
fn an_unresolvable_api_server_host_leaves_the_app_out_naming_app_and_host() {
    let test = "an_unresolvable_api_server_host_leaves_the_app_out_naming_app_and_host";
    if !common::haproxy_available(test) {
        return;
    }
    let work = Workdir::new(9090, 9091);
    work.write_cert();
    let mut app = example_app();
    label(
        &mut app,
        "HAPROXY_0_SSL_CERT",
        work.path("cert.pem").to_str().unwrap(),
    );
    let body = json!({ "apps": [as_listed(app, 10000, 31000)] }).to_string();
    std::fs::write(work.path("apps.json"), body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .current_dir(work.dir.path())
        .args(["--apps-file", "apps.json", "--group", "external"])
        .args(["--dont-bind-http-https", "--archive-versions", "0"])
        .args(["--haproxy-config", "haproxy.cfg"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/kubeapi-proxy")
            && stderr.contains(
                "could not resolve address 'apiserver.devkubernetes01.l4lb.thisdcos.directory'"
            ),
        "the error must name the app and the host: {stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    let config = work.read("haproxy.cfg");
    assert!(
        config.contains("frontend marathon_http_appid_in")
            && !config.contains("kubeapi-proxy_6443"),
        "the other apps' config is written without the app:\n{config}"
    );
}

/// The apps of the end-to-end test and the ports they bind.
struct Scenario {
    /// `host:port` of the stand-in API server.
    api: String,
    /// The example app's frontend (`HAPROXY_0_PORT`, instead of 6443).
    front: u16,
    /// The frontend of the same app with the labels as published.
    published: u16,
    /// The frontend of the same app with HAProxy's default timeouts.
    defaults: u16,
    /// The frontend of `/churn`, whose task moves.
    churn: u16,
    /// The frontend of `/extra`, which comes and goes.
    extra: u16,
    /// The certificate of the frontends.
    cert: PathBuf,
}

impl Scenario {
    /// A kubeapi-proxy app on `127.0.0.1:<port>` in front of the stand-in.
    fn kubeapi(&self, mut app: Value, id: &str, port: u16) -> Value {
        app["id"] = id.into();
        with_api_server(&mut app, &self.api);
        label(&mut app, "HAPROXY_0_PORT", port.to_string());
        label(&mut app, "HAPROXY_0_BIND_ADDR", "127.0.0.1");
        label(&mut app, "HAPROXY_0_SSL_CERT", self.cert.to_str().unwrap());
        as_listed(app, 10000, 31000)
    }

    /// A plain TCP app on `127.0.0.1:<port>` with one task on `task_port`.
    fn plain(id: &str, port: u16, task_port: u16) -> Value {
        let app = json!({
            "id": id, "instances": 1, "portDefinitions": [{"protocol": "tcp", "port": 0}],
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_BIND_ADDR": "127.0.0.1",
                       "HAPROXY_0_PORT": port.to_string()}
        });
        as_listed(app, 10000 + port % 1000, task_port)
    }

    /// The Marathon apps body: `/churn`'s task on `churn_task`, `/extra` when `extra`.
    fn body(&self, churn_task: u16, extra: bool) -> String {
        let mut apps = vec![
            self.kubeapi(example_app(), "/kubeapi-proxy", self.front),
            self.kubeapi(published_app(), "/kubeapi-published", self.published),
            self.kubeapi(default_timeouts_app(), "/kubeapi-defaults", self.defaults),
            Self::plain("/churn", self.churn, churn_task),
        ];
        if extra {
            apps.push(Self::plain("/extra", self.extra, 32000));
        }
        json!({ "apps": apps }).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_marathon_lb_survives_changes_and_idle() {
    if !tools_available("kubectl_through_marathon_lb_survives_changes_and_idle") {
        return;
    }
    let started = Instant::now();
    let api = FakeKubeApiServer::start().await.unwrap();
    let ports = free_ports(7);
    let work = Workdir::new(ports[4], ports[5]);
    // A label's certificate is generated only inside --generate-certs-dir: bring one.
    work.write_cert();
    let scenario = Scenario {
        api: api.addr().to_string(),
        front: ports[0],
        published: ports[1],
        defaults: ports[6],
        churn: ports[2],
        extra: ports[3],
        cert: work.path("cert.pem"),
    };
    let stats = ports[4];
    let marathon = FakeMarathon::start(Options::default()).await.unwrap();
    let mut churn_task = 31100;
    marathon.set_apps(scenario.body(churn_task, false));

    let _haproxy = HaproxyGuard(work.path("haproxy.pid"));
    let config = work.path("haproxy.cfg");
    let lb = KilledTree(
        Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
            .current_dir(work.dir.path())
            .args([
                "--sse",
                "--marathon",
                &marathon.url(),
                "--group",
                "external",
            ])
            .args(["--dont-bind-http-https", "--archive-versions", "0"])
            .args(["--admin-addr", "off"])
            .arg("--haproxy-config")
            .arg(&config)
            .args(haproxy_control(work.dir.path()))
            .args(["--log-level", "debug"])
            .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path("marathon-lb.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let context = || {
        format!(
            "--- marathon-lb.log\n{}\n--- reloads.log\n{}\n--- haproxy.log\n{}",
            work.read("marathon-lb.log"),
            work.read("reloads.log"),
            work.read("haproxy.log")
        )
    };
    let front = SocketAddr::from(([127, 0, 0, 1], scenario.front));
    wait_until(
        "HAProxy serving the kubeapi-proxy frontend",
        30,
        || std::net::TcpStream::connect(front).is_ok(),
        context,
    )
    .await;
    marathon.wait_for_subscribers(1).await;
    let frontend_cert = work.read("cert.pem");
    assert!(frontend_cert.contains("BEGIN CERTIFICATE"), "{}", context());

    // One-shot requests: kubectl -> HAProxy (TLS, http mode) -> stand-in (TLS, no verify).
    let kubeconfig = kubeconfig(work.dir.path(), scenario.front);
    let version: Value =
        serde_json::from_str(&kubectl(&kubeconfig, &["version", "-o", "json"])).unwrap();
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        "v1.32.0-marathon-lb-standin"
    );
    let raw: Value =
        serde_json::from_str(&kubectl(&kubeconfig, &["get", "--raw", "/version"])).unwrap();
    assert_eq!(raw["minor"], "32");
    let through_haproxy = api
        .requests()
        .into_iter()
        .find(|r| r.uri == "/version")
        .unwrap();
    assert_eq!(
        through_haproxy.header("x-forwarded-proto"),
        Some("https"),
        "{through_haproxy:?}"
    );

    // Long-lived: a watch through the example app, one through the published labels, one
    // through the default timeouts, and an upgraded connection.
    let watch_path = "/api/v1/namespaces/default/pods?watch=true";
    let (_watch_child, mut watch) = kubectl_stream(&kubeconfig, &["get", "--raw", watch_path]);
    let watch_at = |port: u16| {
        let server = format!("https://127.0.0.1:{port}");
        kubectl_stream(
            &kubeconfig,
            &["--server", &server, "get", "--raw", watch_path],
        )
    };
    let (_published_child, mut published) = watch_at(scenario.published);
    let (_defaults_child, mut defaults) = watch_at(scenario.defaults);
    api.wait_for_watchers(3).await;
    let mut tunnel = upgraded_connection(scenario.front, &frontend_cert).await;
    api.push_pod("ADDED", "web-1", 0);
    expect_event(&mut watch, "watch", 0).await;
    expect_event(&mut published, "published watch", 0).await;
    expect_event(&mut defaults, "default-timeouts watch", 0).await;
    echo(&mut tunnel, 0).await;

    // 20 Marathon changes, alternately task churn and an app added or removed; each is
    // waited for on disk and then in the running HAProxy (its stats).
    let mut extra = false;
    for change in 1..=20u64 {
        if change % 2 == 1 {
            churn_task += 1;
        } else {
            extra = !extra;
        }
        let before = std::fs::read_to_string(&config).unwrap();
        marathon.set_apps(scenario.body(churn_task, extra));
        marathon.push_marathon_event("api_post_event", json!({"appId": "/churn"}));
        wait_until(
            &format!("config change {change} on disk"),
            20,
            || std::fs::read_to_string(&config).is_ok_and(|now| now != before),
            context,
        )
        .await;
        let server = format!("churn_{},127_0_0_1_{churn_task},", scenario.churn);
        let extra_frontend = format!("\nextra_{},FRONTEND,", scenario.extra);
        wait_until(
            &format!("change {change} in HAProxy's stats"),
            20,
            || {
                let csv = stats_csv(stats);
                csv.contains(&server) && csv.contains(&extra_frontend) == extra
            },
            context,
        )
        .await;
        api.push_pod("MODIFIED", "web-1", change);
        expect_event(&mut watch, "watch", change).await;
        expect_event(&mut published, "published watch", change).await;
        expect_event(&mut defaults, "default-timeouts watch", change).await;
        echo(&mut tunnel, change).await;
    }
    // The HAProxy processes: under marathon-lb (managed mode) or under the master that
    // `reload.sh` started (its pid file).
    let master = std::fs::read_to_string(work.path("haproxy.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let log = work.read("marathon-lb.log");
    eprintln!(
        "{CONTROL:?}: 20 changes done after {:?}; {} reloads ({} by reload.sh), {} runtime \
         updates; processes under {}: {:?}",
        started.elapsed(),
        log.matches("HAProxy reloaded").count(),
        work.read("reloads.log").lines().count(),
        log.matches("applied server changes through the Runtime API")
            .count(),
        if master.is_some() {
            "the HAProxy master"
        } else {
            "marathon-lb"
        },
        descendants(master.unwrap_or(lb.0.id() as i32)),
    );

    // 40 s of silence. What bounds an idle response stream in HAProxy 2.6 is `timeout server`
    // (HAProxy waits on the server; the client has nothing to send): the example and the
    // published labels set it to 86400 s in the backend and keep their watches, the control
    // with the default 30 s loses its own. The upgraded connection lives by `timeout tunnel`.
    let idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(40)).await;
    api.push_pod("MODIFIED", "web-1", 21);
    expect_event(&mut watch, "watch", 21).await;
    expect_event(&mut published, "published watch", 21).await;
    echo(&mut tunnel, 21).await;
    match tokio::time::timeout(Duration::from_secs(1), defaults.recv()).await {
        Ok(Some(Out::End(at))) => {
            let after = at.duration_since(idle);
            assert!(
                after >= Duration::from_secs(25),
                "the default-timeouts watch ended {after:?} into the idle period, before `timeout server`"
            );
        }
        other => panic!("the default `timeout server` should have cut the idle watch: {other:?}"),
    }
    let raw: Value =
        serde_json::from_str(&kubectl(&kubeconfig, &["get", "--raw", "/version"])).unwrap();
    assert_eq!(raw["major"], "1");
    eprintln!("kubectl end to end: {:?}", started.elapsed());
}
