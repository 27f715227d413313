//! `marathon-lb zdd` end to end: the real binary as zdd against the fake Marathon's write
//! API, the real binary in managed mode with a real HAProxy following the fake's events, and
//! clients sending requests through HAProxy the whole time (keep-alive and
//! `Connection: close`): a blue -> green deploy fails no request and answers no non-2xx, and
//! an idle long-lived connection through another app does not hold the deploy up.

#[path = "common/managed.rs"]
mod managed;
#[path = "common/zdd.rs"]
mod zdd_stand;

use std::time::Duration;

use managed::{app, haproxy_missing, tasks, free_port};
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
    eprintln!("ZDD blue -> green with --step-delay 1 took {:.1} s ({ok} requests)", took.as_secs_f64());

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
    let mut idle = TcpStream::connect(("127.0.0.1", tunnel_port)).await.unwrap();
    // A reload now leaves the old worker running for the tunnel: zdd.py, which counts
    // HAProxy processes, would wait for it until --max-wait.
    let lb = &stand.lb;
    lb.wait_until("the tunnel's session", Duration::from_secs(10), || async {
        lb.get_stats("/haproxy?stats;csv")
            .await
            .is_some_and(|(_, csv)| csv.lines().any(|l| l.starts_with(&format!("tunnel_{tunnel_port},127_0_0_1_")) && l.split(',').nth(4) == Some("1")))
    })
    .await;
    lb.set_apps(&[&tunnel.clone().label("HAPROXY_0_BALANCE", "leastconn")]);
    lb.wait_until("an old worker holding the tunnel", Duration::from_secs(30), || async {
        lb.show_proc().await.is_some_and(|p| !p.old_workers.is_empty())
    })
    .await;

    let traffic = Traffic::start(stand.port);
    // --max-wait 300: a deploy held by the tunnel would take 300 s; the limit is 90.
    let (status, out, took) = stand
        .zdd(&["-f", "-s", "1", "-w", "300"], Duration::from_secs(90))
        .await;
    assert!(status.success(), "{status}\n{out}\nlb log:\n{}", stand.lb.log());
    traffic.finish("deploy with an idle tunnel open");
    eprintln!("ZDD deploy with an idle tunnel open took {:.1} s", took.as_secs_f64());
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 2)]);
    let procs = lb.show_proc().await.unwrap();
    assert!(!procs.old_workers.is_empty(), "the old worker (and the tunnel) lived through the deploy");

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
