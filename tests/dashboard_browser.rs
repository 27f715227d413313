//! The dashboard in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (WebDriver, via fantoccini), against the real binary in managed mode with a real HAProxy
//! and the fake Marathon. Asserts what a person sees: the services with their ports and
//! vhosts, per-server states that agree with HAProxy's own stats CSV, a backend whose only
//! task stops listening turning DOWN and health turning degraded with no reload of the page,
//! a left-out app with its label and reason, and a Marathon change appearing in place. Saves
//! screenshots (desktop 1400x900 and phone) under `target/tmp/` for a person to look at.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`);
//! without them the test fails and says so (CI installs them; it must not skip).

#[path = "common/managed.rs"]
mod managed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use managed::{app, free_port, haproxy_missing, tasks, App, ManagedLb, Options, TaskServer};
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Generous: the machine may be loaded; HAProxy needs ~3 failed checks (2 s apart) for DOWN.
const WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free loopback port, stopped (by its pid) on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        for path in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: this test drives a real browser; install it with \
                 `apt-get install -y chromium chromium-driver` (CI does, in .ci/run)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver {
            child,
            port,
            _profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    async fn browser(&self, width: u32, height: u32) -> Client {
        // fantoccini's rustls needs a process-wide crypto provider (the WebDriver link is
        // plain HTTP on loopback; no TLS is used).
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let profile = tempfile::Builder::new()
            .prefix("chromium-profile")
            .tempdir_in(self._profile.path())
            .unwrap()
            .keep();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session through chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the page shows, read from its DOM.
async fn page(client: &Client) -> Value {
    client
        .execute(
            r#"const q = (s, r) => Array.from((r || document).querySelectorAll(s));
            return {
              marker: window.__marker || null,
              health: document.getElementById('health').textContent,
              reasons: q('#reasons li').map(li => li.textContent),
              cards: document.getElementById('cards').innerText,
              services: q('#services-body tr[data-backend]').map(tr => ({
                backend: tr.dataset.backend, text: tr.innerText,
                servers: q('[data-server]', tr).map(b => ({name: b.dataset.server, state: b.dataset.state}))
              })),
              left_out: q('#left-out-body tr').map(tr => tr.innerText),
              left_out_visible: !document.getElementById('left-out-section').hidden,
              applies: q('#applies-body tr').map(tr => tr.innerText),
              stats_link: (document.getElementById('haproxy-stats') || {}).href || null
            };"#,
            Vec::new(),
        )
        .await
        .expect("reading the page")
}

/// Polls the page until `ok` holds (bounded by [`WAIT`]).
async fn wait_page(client: &Client, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = page(client).await;
        if ok(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show {what} within {WAIT:?}; it shows:\n{seen:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn service<'a>(page: &'a Value, backend: &str) -> Option<&'a Value> {
    page["services"]
        .as_array()?
        .iter()
        .find(|s| s["backend"] == backend)
}

fn server_states(page: &Value, backend: &str) -> Vec<String> {
    service(page, backend)
        .and_then(|s| s["servers"].as_array())
        .map(|v| {
            v.iter()
                .map(|s| s["state"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// HAProxy's own view: `(backend, server) -> status word` from the stats page's CSV.
async fn haproxy_states(lb: &ManagedLb) -> Vec<(String, String, String)> {
    let (_, csv) = lb.get_stats("/haproxy?stats;csv").await.expect("stats CSV");
    let rows = marathon_lb::haproxy::stats::parse_show_stat(&csv).expect("stats CSV parses");
    rows.into_iter()
        .filter(|r| r.kind == marathon_lb::haproxy::stats::Kind::Server)
        .map(|r| {
            let word = marathon_lb::haproxy::stats::state_word(&r.status).to_owned();
            (r.proxy, r.name, word)
        })
        .collect()
}

/// An app with a Marathon health check (so HAProxy checks its servers too) whose tasks
/// Marathon reports alive.
fn checked(id: &str, port: u16, servers: &[&TaskServer]) -> App {
    let tasks = servers.iter().map(|s| s.task().alive(true)).collect();
    App::new(id, port, tasks).health_checked()
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_services_states_left_out_apps_and_changes_in_place() {
    if haproxy_missing("the_dashboard_shows_services_states_left_out_apps_and_changes_in_place") {
        return;
    }
    let driver = Driver::start();
    let t = tasks(&["web-1", "web-2", "api-1"]).await;
    let (web_port, api_port, bad_port, new_port) =
        (free_port(), free_port(), free_port(), free_port());
    let web = checked("/shop/web", web_port, &[&t[0], &t[1]])
        .label("HAPROXY_0_VHOST", "shop.example.com");
    let api = checked("/api", api_port, &[&t[2]]);
    let bad = app("/bad", bad_port, &[&t[2]]).label("HAPROXY_0_PORT", "not-a-port");
    let options = Options {
        health_check: true,
        ..Options::default()
    };
    let lb = ManagedLb::start(options, &[&web, &api, &bad]).await;
    let client = driver.browser(1400, 900).await;
    let url = format!("http://127.0.0.1:{}/", lb.ports.admin);
    client.goto(&url).await.unwrap();
    client
        .execute("window.__marker = 'no reload';", Vec::new())
        .await
        .unwrap();

    // The services, with their ports and vhosts; every server UP once HAProxy checked it.
    let shown = wait_page(&client, "both services with every server UP", |p| {
        server_states(p, &web.backend()) == ["UP", "UP"]
            && server_states(p, &api.backend()) == ["UP"]
    })
    .await;
    let web_row = service(&shown, &web.backend()).unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(web_row.contains("/shop/web"), "{web_row}");
    assert!(
        web_row.contains(&format!("127.0.0.1:{web_port}")),
        "{web_row}"
    );
    assert!(web_row.contains("shop.example.com"), "{web_row}");
    assert!(
        web_row.contains(&format!("127.0.0.1:{}", t[0].port)),
        "{web_row}"
    );
    let api_row = service(&shown, &api.backend()).unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(
        api_row.contains(&format!("127.0.0.1:{api_port}")),
        "{api_row}"
    );
    assert!(
        shown["stats_link"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!(":{}/haproxy?stats", lb.ports.stats)),
        "{shown:#}"
    );

    // The left-out app, with its label and reason; health says so.
    assert!(shown["left_out_visible"].as_bool().unwrap(), "{shown:#}");
    let left = shown["left_out"][0].as_str().unwrap_or("");
    assert!(
        left.contains("/bad") && left.contains("HAPROXY_0_PORT"),
        "{left}"
    );
    assert!(
        left.contains("not-a-port"),
        "the reason names the value: {left}"
    );
    assert_eq!(shown["health"], "degraded", "{shown:#}");

    // What the page shows agrees with HAProxy's own stats page.
    let haproxy = haproxy_states(&lb).await;
    for backend in [web.backend(), api.backend()] {
        let svc = service(&shown, &backend).unwrap();
        for server in svc["servers"].as_array().unwrap() {
            let theirs = haproxy
                .iter()
                .find(|(px, name, _)| *px == backend && server["name"] == name.as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "{backend}/{} not in HAProxy's stats: {haproxy:?}",
                        server["name"]
                    )
                });
            assert_eq!(server["state"], theirs.2.as_str(), "{backend}: {haproxy:?}");
        }
    }
    client.set_window_size(1400, 900).await.unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dashboard-1400x900.png"), png).unwrap();

    // The api's only task stops listening: its server turns DOWN on the page, by itself.
    let mut t = t;
    drop(t.remove(2));
    let down = wait_page(
        &client,
        "the api server DOWN and a degraded health naming it",
        |p| {
            server_states(p, &api.backend()) == ["DOWN"]
                && p["reasons"].as_array().is_some_and(|r| {
                    r.iter().any(|r| {
                        r.as_str().unwrap_or("").contains(&format!(
                            "backend {} (/api) has no server up",
                            api.backend()
                        ))
                    })
                })
        },
    )
    .await;
    assert_eq!(
        down["marker"], "no reload",
        "the page was reloaded: {down:#}"
    );
    assert_eq!(down["health"], "degraded");
    assert!(
        down["cards"].as_str().unwrap().contains("1 down"),
        "{down:#}"
    );
    let haproxy = haproxy_states(&lb).await;
    assert!(
        haproxy
            .iter()
            .any(|(px, _, st)| *px == api.backend() && st == "DOWN"),
        "HAProxy agrees: {haproxy:?}"
    );
    let (code, health) = lb.get_admin("/healthz").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        health.starts_with("ok (degraded)") && health.contains("has no server up"),
        "{health}"
    );

    // A Marathon change appears in place: a new app, served and listed without a reload.
    let extra = tasks(&["new-1"]).await;
    let newer = app("/new", new_port, &[&extra[0]]);
    lb.set_apps(&[&web, &api, &bad, &newer]);
    let changed = wait_page(&client, "the new app", |p| {
        service(p, &newer.backend()).is_some()
    })
    .await;
    assert_eq!(changed["marker"], "no reload", "{changed:#}");
    let row = service(&changed, &newer.backend()).unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(row.contains(&format!("127.0.0.1:{new_port}")), "{row}");
    assert!(
        changed["applies"].as_array().is_some_and(|a| !a.is_empty()),
        "{changed:#}"
    );
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dashboard-1400x900-after.png"), png).unwrap();

    // On a phone: the same page, narrow.
    client.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dashboard-phone.png"), png).unwrap();
    let width: Value = client
        .execute("return document.documentElement.scrollWidth;", Vec::new())
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap_or(9999) <= 420,
        "the phone page scrolls sideways: {width}"
    );
    client.close().await.unwrap();
    // The served certificate's expiry, from the file the config loads.
    let metrics = lb.metrics().await;
    let cert = managed::cert_pem().display().to_string();
    let want = format!("marathon_lb_certificate_expiry_timestamp_seconds{{path=\"{cert}\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&want));
    let at: i64 = line
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{want} not in:\n{metrics}"));
    assert_eq!(
        Some(at),
        marathon_lb::status::certs::expiry(&managed::cert_pem())
    );
    drop(driver);
}
