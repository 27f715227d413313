//! `marathon-lb zdd` end to end beyond a plain swap, each under a steady client load with 0
//! failed and 0 non-2xx answers: a traffic split (`--new-instances`) completed both ways
//! (`--complete-cur`, `--complete-prev`), a rollback when the new colour's health fails, a
//! resume (`--resume`) after the tool was killed mid-deploy, and a multi-hop `--steps` split.

#[path = "common/managed.rs"]
mod managed;
#[path = "common/zdd.rs"]
mod zdd_stand;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use managed::{answers, haproxy_missing};
use zdd_stand::{Stand, Traffic};

/// The colours answering 40 requests.
async fn colours(stand: &Stand) -> BTreeSet<String> {
    answers(stand.port, None, 40).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_completes_to_the_current_then_back_to_the_previous_colour() {
    if haproxy_missing("a_split_completes_to_the_current_then_back_to_the_previous_colour") {
        return;
    }
    let stand = Stand::start(3, &[]).await;
    stand.deploy_blue().await;
    let traffic = Traffic::start(stand.port);

    stand.zdd_ok(&["-f", "-s", "1", "-n", "1"]).await;
    let mut apps = stand.apps();
    apps.sort();
    assert_eq!(
        apps,
        [("/web-blue".to_owned(), 2), ("/web-green".to_owned(), 1)]
    );
    stand.wait_for(&["/web-blue", "/web-green"]).await;

    stand.zdd_ok(&["-f", "-s", "1", "--complete-cur"]).await;
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 3)]);
    stand.wait_for(&["/web-green"]).await;

    // The other way: split again (blue is new now), then back to green.
    stand.zdd_ok(&["-f", "-s", "1", "-n", "1"]).await;
    let mut apps = stand.apps();
    apps.sort();
    assert_eq!(
        apps,
        [("/web-blue".to_owned(), 1), ("/web-green".to_owned(), 2)]
    );
    assert_eq!(colours(&stand).await.len(), 2);
    stand.zdd_ok(&["-f", "-s", "1", "--complete-prev"]).await;
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 3)]);
    stand.wait_for(&["/web-green"]).await;
    traffic.finish("split and completion both ways");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_rolls_back_and_exits_non_zero() {
    if haproxy_missing("failing_health_rolls_back_and_exits_non_zero") {
        return;
    }
    let stand = Stand::start(2, &[]).await;
    stand.deploy_blue().await;
    stand.lb.fake.fail_health("/web-green", true);
    let traffic = Traffic::start(stand.port);
    let (status, out, _) = stand
        .zdd(&["-f", "-s", "1", "-w", "3"], Duration::from_secs(60))
        .await;
    assert_eq!(status.code(), Some(10), "{out}");
    assert!(
        out.contains("did not finish within 3 s") && out.contains("rolled back"),
        "{out}"
    );
    assert_eq!(stand.apps(), [("/web-blue".to_owned(), 2)]);
    stand.wait_for(&["/web-blue"]).await;
    traffic.finish("rollback on failing health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deploy_resumes_from_the_labels() {
    if haproxy_missing("a_killed_deploy_resumes_from_the_labels") {
        return;
    }
    let stand = Stand::start(4, &[]).await;
    stand.deploy_blue().await;
    let traffic = Traffic::start(stand.port);
    // Slow steps; killed once the first old task is gone.
    let mut child = stand.command(&["-f", "-s", "3"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let blue = stand.app("/web-blue").and_then(|a| a["instances"].as_u64());
        if blue.is_some_and(|n| n < 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "zdd made no step; lb log:\n{}",
            stand.lb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let mut apps = stand.apps();
    apps.sort();
    assert_eq!(apps.len(), 2, "{apps:?}");

    // Without --resume, zdd refuses to start another deploy.
    let (status, out, _) = stand.zdd(&["-f"], Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("existing deployment in progress"), "{out}");

    stand.zdd_ok(&["-f", "-s", "1", "-r"]).await;
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 4)]);
    stand.wait_for(&["/web-green"]).await;
    traffic.finish("resume after a kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_grow_the_new_colour_hop_by_hop_behind_gates() {
    if haproxy_missing("steps_grow_the_new_colour_hop_by_hop_behind_gates") {
        return;
    }
    let stand = Stand::start(4, &[]).await;
    stand.deploy_blue().await;
    let traffic = Traffic::start(stand.port);
    let (status, out, _) = stand
        .zdd(
            &[
                "-f",
                "-s",
                "1",
                "--steps",
                "25,50,100",
                "--max-5xx-rate",
                "0.01",
            ],
            Duration::from_secs(90),
        )
        .await;
    assert!(status.success(), "{out}\nlb log:\n{}", stand.lb.log());
    // Hops of 1, 2 and 4 of the 4 target instances, each behind the 5xx gate.
    for hop in [
        "scaling new app up to 2 instances",
        "scaling new app up to 4 instances",
    ] {
        assert!(out.contains(hop), "{hop} in\n{out}");
    }
    assert_eq!(
        out.matches("gate: 5xx rate of the new servers").count(),
        2,
        "{out}"
    );
    assert_eq!(stand.apps(), [("/web-green".to_owned(), 4)]);
    traffic.finish("--steps 25,50,100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_gate_rolls_back_mid_deploy() {
    if haproxy_missing("a_5xx_gate_rolls_back_mid_deploy") {
        return;
    }
    let stand = Stand::start(4, &[]).await;
    stand.deploy_blue().await;
    // A bad release: half its answers are 500s, yet it passes health checks.
    stand.lb.fake.fail_requests("/web-green");
    let traffic = Traffic::start(stand.port);
    let (status, out, _) = stand
        .zdd(
            &[
                "-f",
                "-s",
                "1",
                "-w",
                "30",
                "--steps",
                "25,100",
                "--max-5xx-rate",
                "0.05",
            ],
            Duration::from_secs(90),
        )
        .await;
    assert_eq!(
        status.code(),
        Some(10),
        "{out}\nlb log:\n{}",
        stand.lb.log()
    );
    assert!(
        out.contains("gate: the new servers answered") && out.contains("rolled back"),
        "{out}"
    );
    // The first hop ran (a blue task was replaced), then the rollback brought blue back.
    assert!(out.contains("there are 1 drained tasks"), "{out}");
    assert_eq!(stand.apps(), [("/web-blue".to_owned(), 4)]);
    stand.wait_for(&["/web-blue"]).await;
    let (_, failed, _) = traffic.totals();
    eprintln!("ZDD 5xx gate: {failed} failed or non-2xx answers while the bad hop served");
    drop(traffic);
    // After the rollback nothing fails.
    let after = Traffic::start(stand.port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    after.finish("after the rollback");
}
