//! `marathon-lb zdd` end to end: the real binary as zdd against the fake Marathon's write
//! API, the real binary in managed mode with a real HAProxy following the fake's events, and
//! clients sending requests through HAProxy the whole time (keep-alive and
//! `Connection: close`): a blue -> green deploy fails no request and answers no non-2xx, and
//! an idle long-lived connection through another app does not hold the deploy up, and a step
//! waits until every load balancer (`-l` repeated) has drained.

#[path = "common/managed.rs"]
mod managed;
#[path = "common/zdd.rs"]
mod zdd_stand;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use managed::{app, free_port, haproxy_missing, tasks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zdd_stand::{Stand, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_to_green_under_load_fails_no_request() {
    if haproxy_missing("blue_to_green_under_load_fails_no_request") {
        return;
    }
    let stand = Stand::start(3, &[]).await;
    stand.deploy_blue().await;
    assert_eq!(stand.apps(), [("/web-blue".to_owned(), 3)]);
    let blue = stand.app("/web-blue").unwrap();
    assert_eq!(blue["labels"]["HAPROXY_DEPLOYMENT_COLOUR"], "blue");
    assert_eq!(blue["labels"]["HAPROXY_0_PORT"], stand.port.to_string());

    let traffic = Traffic::start(stand.port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = stand.zdd_ok(&["-f", "-s", "1"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, _) = traffic.finish("blue -> green");
    eprintln!(
        "ZDD blue -> green with --step-delay 1 took {:.1} s ({ok} requests)",
        took.as_secs_f64()
    );

    assert_eq!(stand.apps(), [("/web-green".to_owned(), 3)]);
    let green = stand.app("/web-green").unwrap();
    assert_eq!(green["labels"]["HAPROXY_DEPLOYMENT_COLOUR"], "green");
    assert_eq!(green["labels"]["HAPROXY_APP_ID"], "/web");
    assert_eq!(green["portDefinitions"][0]["port"], stand.alt);
    stand.wait_for(&["/web-green"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_through_another_app_does_not_hold_a_deploy() {
    if haproxy_missing("an_idle_tunnel_through_another_app_does_not_hold_a_deploy") {
        return;
    }
    let servers = tasks(&["tunnel-end"]).await;
    let tunnel_port = free_port();
    let tunnel = app("/tunnel", tunnel_port, &[&servers[0]]);
    let stand = Stand::start(2, &[&tunnel]).await;
    stand.deploy_blue().await;
    stand
        .lb
        .wait_for_answers(tunnel_port, &["tunnel-end"], Duration::from_secs(30))
        .await;
    // A TCP connection through HAProxy to the other app, idle for the whole deploy (a
    // kubectl watch through a proxy app looks like this).
    let mut idle = TcpStream::connect(("127.0.0.1", tunnel_port))
        .await
        .unwrap();
    // A reload now leaves the old worker running for the tunnel: zdd.py, which counts
    // HAProxy processes, would wait for it until --max-wait.
    let lb = &stand.lb;
    lb.wait_until("the tunnel's session", Duration::from_secs(10), || async {
        lb.get_stats("/haproxy?stats;csv")
            .await
            .is_some_and(|(_, csv)| {
                csv.lines().any(|l| {
                    l.starts_with(&format!("tunnel_{tunnel_port},127_0_0_1_"))
                        && l.split(',').nth(4) == Some("1")
                })
            })
    })
    .await;
    lb.set_apps(&[&tunnel.clone().label("HAPROXY_0_BALANCE", "leastconn")]);
    lb.wait_until(
        "an old worker holding the tunnel",
        Duration::from_secs(30),
        || async {
            lb.show_proc()
                .await
                .is_some_and(|p| !p.old_workers.is_empty())
        },
    )
    .await;

    let traffic = Traffic::start(stand.port);
    // --max-wait 300: a deploy held by the tunnel would take 300 s; the limit is 90.
    let (status, out, took) = stand
        .zdd(&["-f", "-s", "1", "-w", "300"], Duration::from_secs(90))
        .await;
    assert!(
        status.success(),
        "{status}\n{out}\nlb log:\n{}",
        stand.lb.log()
    );
    traffic.finish("deploy with an idle tunnel open");
    eprintln!(
        "ZDD deploy with an idle tunnel open took {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 2)]);
    let procs = lb.show_proc().await.unwrap();
    assert!(
        !procs.old_workers.is_empty(),
        "the old worker (and the tunnel) lived through the deploy"
    );

    // The tunnel is still open and works.
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.ends_with("tunnel-end"), "{answer}");
}

/// A second "load balancer": serves the real one's stats CSV, but while `hold` is set it
/// reports a session on every server of `backend` in maintenance (not drained yet).
async fn lagging_lb(real_stats: u16, backend: String, hold: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let url = format!("http://127.0.0.1:{real_stats}/haproxy?stats;csv");
            let csv = match http.get(url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let held = hold.load(Ordering::SeqCst);
            let body: String = csv
                .lines()
                .map(|line| {
                    let mut f: Vec<String> = line.split(',').map(str::to_owned).collect();
                    if held && f[0] == backend && f.get(17).is_some_and(|s| s.starts_with("MAINT"))
                    {
                        f[4] = "1".into(); // scur
                    }
                    f.join(",") + "\n"
                })
                .collect();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waits_until_every_load_balancer_has_drained() {
    if haproxy_missing("a_step_waits_until_every_load_balancer_has_drained") {
        return;
    }
    let stand = Stand::start(2, &[]).await;
    stand.deploy_blue().await;
    let hold = Arc::new(AtomicBool::new(true));
    let backend = format!("web_{}", stand.port);
    let second = lagging_lb(stand.lb.ports.stats, backend, hold.clone()).await;
    let traffic = Traffic::start(stand.port);
    let mut child = stand
        .command(&["-f", "-s", "1", "-l", &format!("http://127.0.0.1:{second}")])
        .spawn()
        .unwrap();
    // The new colour comes up and the real load balancer drains a blue task, but the
    // second one still reports a session on it: no blue task may be killed.
    let lb = &stand.lb;
    lb.wait_until("green to be healthy", Duration::from_secs(30), || async {
        stand
            .app("/web-green")
            .is_some_and(|a| a["tasksHealthy"] == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stand.app("/web-blue").unwrap()["instances"],
        2,
        "killed before every LB drained"
    );
    hold.store(false, Ordering::SeqCst);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 2)]);
    traffic.finish("two load balancers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_kill_hook_stops_the_deploy_before_any_kill() {
    if haproxy_missing("a_failing_pre_kill_hook_stops_the_deploy_before_any_kill") {
        return;
    }
    let stand = Stand::start(2, &[]).await;
    stand.deploy_blue().await;
    let dir = stand.lb.dir.path();
    let hook = dir.join("hook.sh");
    let seen = dir.join("hook-args");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" \"$2\" \"$3\" > {}\nexit 1\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let traffic = Traffic::start(stand.port);
    let (status, out, _) = stand
        .zdd(
            &["-f", "-s", "1", "--pre-kill-hook", hook.to_str().unwrap()],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("pre-kill hook") && out.contains("an operator must intervene"),
        "{out}"
    );
    // Called with the old app, the task ids to kill, the new app (JSON each).
    let args = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<serde_json::Value> = args
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["id"], "/web-blue");
    assert_eq!(lines[1].as_array().map(Vec::len), Some(1));
    assert_eq!(lines[2]["id"], "/web-green");
    // Nothing was killed: blue keeps both tasks, next to the new colour's first one.
    assert_eq!(stand.app("/web-blue").unwrap()["instances"], 2);
    traffic.finish("a failing pre-kill hook");
}
