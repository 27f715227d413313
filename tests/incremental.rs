//! The incremental live model against a full fetch, through the real binary in live SSE mode
//! and the fake Marathon: at every step the config on disk must be byte-identical to the
//! library's one-shot render of the fake's current `/v2/apps` body, while whole-cluster
//! fetches stay at the ones the rules allow. Steps come from `gen-apps --churn` (task churn)
//! and from seeded random mutations (tasks started, killed, moved; health flips; label and
//! port changes; apps deleted and created).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use marathon_lb::config::{Cli, Config};
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;
use marathon_lb_testkit::fake_marathon::{Endpoint, FakeMarathon, Options};
use serde_json::Value;

#[path = "incremental/mutations.rs"]
mod mutations;
use mutations::{mutate, Rng};

/// marathon-lb in live SSE mode; killed (by its pid) when dropped.
struct Lb {
    child: Child,
    dir: tempfile::TempDir,
    config: Arc<Config>,
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lb {
    fn start(fake: &FakeMarathon, extra: &[&str]) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let mut args: Vec<String> = [
            "--group",
            "*",
            "--skip-validation",
            "--archive-versions",
            "0",
            "--command",
            "true",
            "--haproxy-config",
            path.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let cli =
            Cli::try_parse_from(std::iter::once("marathon-lb".to_string()).chain(args.clone()))
                .unwrap();
        let config = Arc::new(cli.validate(|_| None).unwrap());
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
            .current_dir(dir.path())
            .args(["--marathon", &fake.url(), "--sse", "--log-level", "debug"])
            .args(["--admin-addr", "off"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Lb { child, dir, config }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// The one-shot render of `body`: what a full fetch + full render gives.
    fn expected(&self, body: &str) -> String {
        let templates = Templates::builtin();
        let mut memory = Memory::default();
        run::render_body(
            body.as_bytes(),
            "test",
            &self.config,
            &templates,
            &mut memory,
        )
        .map(|r| std::sync::Arc::unwrap_or_clone(r.config))
        .unwrap()
    }

    /// Waits until the config on disk is `want`, or fails with a diff and the log.
    async fn converges(&self, want: &str, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let have = std::fs::read_to_string(self.path()).unwrap_or_default();
            if have == want {
                return;
            }
            if Instant::now() > deadline {
                let mut diff: Vec<String> = diff_lines(&have, want);
                if diff.is_empty() {
                    // Same lines, other order or count: show where they part.
                    let at = have
                        .bytes()
                        .zip(want.bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                    let from = at.saturating_sub(300);
                    diff.push(format!(
                        "{} vs {} bytes; first difference at {at}",
                        have.len(),
                        want.len()
                    ));
                    diff.push(format!(
                        "have: {:?}",
                        have.get(from..(at + 300).min(have.len()))
                    ));
                    diff.push(format!(
                        "want: {:?}",
                        want.get(from..(at + 300).min(want.len()))
                    ));
                }
                let log =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!("{step}: the config differs from a full render:\n{}\nlog (last lines, newest first):\n{tail}", diff.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Lines only in one of the two configs.
fn diff_lines(have: &str, want: &str) -> Vec<String> {
    let mut out: Vec<String> = have
        .lines()
        .filter(|l| !want.lines().any(|w| w == *l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        want.lines()
            .filter(|l| !have.lines().any(|h| h == *l))
            .map(|l| format!("+ {l}")),
    );
    out.truncate(40);
    out
}

fn gen_apps(args: &[&str]) -> Vec<String> {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    assert!(gen.exists(), "{} is needed (CI has it)", gen.display());
    let out = Command::new(gen).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Starts the fake with `first`, marathon-lb against it, and waits for the first config and
/// the event stream.
async fn started(first: &str, extra: &[&str]) -> (FakeMarathon, Lb) {
    let fake = FakeMarathon::start(Options::default()).await.unwrap();
    fake.set_apps(first.to_owned());
    let lb = Lb::start(&fake, extra);
    lb.converges(&lb.expected(first), "first config").await;
    fake.wait_for_subscribers(1).await;
    // The connect resync may still be running: let it end before counting fetches.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lb.converges(&lb.expected(first), "first config").await;
    (fake, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_apps_churn_through_events_equals_a_full_render_without_full_fetches() {
    let bodies = gen_apps(&[
        "--apps",
        "40",
        "--tasks-per-app",
        "3",
        "--seed",
        "11",
        "--churn",
        "30",
        "--churn-changes",
        "4",
    ]);
    let (fake, lb) = started(&bodies[0], &[]).await;
    let full_before = fake.served(Endpoint::Apps).requests;
    let mut events = 0;
    for (i, body) in bodies.iter().enumerate().skip(1) {
        events += fake.set_apps_with_events(body.clone());
        lb.converges(&lb.expected(body), &format!("churn step {i}"))
            .await;
    }
    assert!(events >= bodies.len() - 1, "{events} events");
    // Let the last events' passes end, then check no whole-cluster fetch was needed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = fake.served(Endpoint::Apps).requests - full_before;
    let one = fake.served(Endpoint::App);
    assert_eq!(full, 0, "{events} task events cost {full} full fetches");
    assert!(one.requests <= events as u64, "{one:?} for {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_through_events_equal_a_full_render() {
    let bodies = gen_apps(&[
        "--apps",
        "25",
        "--tasks-per-app",
        "2",
        "--seed",
        "5",
        "--churn",
        "1",
    ]);
    for seed in [1u64, 2, 3] {
        let (fake, lb) = started(&bodies[0], &[]).await;
        let mut body: Value = serde_json::from_str(&bodies[0]).unwrap();
        let mut rng = Rng(seed);
        let mut full_allowed = 0;
        let mut deleted = Vec::new();
        let full_before = fake.served(Endpoint::Apps).requests;
        for step in 0..25 {
            let what = mutate(&mut body, &mut rng, &mut deleted);
            if what.starts_with("create") {
                full_allowed += 1; // a new app: its place in Marathon's order is unknown
            }
            let text = body.to_string();
            fake.set_apps_with_events(text.clone());
            lb.converges(
                &lb.expected(&text),
                &format!("seed {seed} step {step} ({what})"),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let full = fake.served(Endpoint::Apps).requests - full_before;
        assert!(
            full <= full_allowed,
            "seed {seed}: {full} full fetches, {full_allowed} allowed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_event_burst_costs_at_most_3_passes() {
    let bodies = gen_apps(&[
        "--apps",
        "10",
        "--tasks-per-app",
        "2",
        "--seed",
        "3",
        "--churn",
        "1",
    ]);
    let (fake, lb) = started(&bodies[0], &[]).await;
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    let app = body["apps"][0]["id"].as_str().unwrap().to_owned();
    let task = body["apps"][0]["tasks"][0]["id"]
        .as_str()
        .unwrap_or("t")
        .to_owned();
    let before = fake.served(Endpoint::App).requests;
    let full_before = fake.served(Endpoint::Apps).requests;
    // Each health event needs a one-app fetch, made once per pass: fetches count passes.
    for _ in 0..50 {
        fake.push_marathon_event(
            "health_status_changed_event",
            serde_json::json!({ "appId": app, "taskId": task, "instanceId": task, "alive": true }),
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.served(Endpoint::App).requests == before {
        assert!(
            Instant::now() < deadline,
            "no one-app fetch after the burst"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let passes = fake.served(Endpoint::App).requests - before;
    assert!(
        (1..=3).contains(&passes),
        "{passes} passes for a 50-event burst"
    );
    assert_eq!(fake.served(Endpoint::Apps).requests, full_before);
    lb.converges(&lb.expected(&bodies[0]), "after the burst")
        .await;
}

/// Proptest over random change sequences (each op a seed for `mutate`), through one running
/// marathon-lb: every case starts from the base body again (which may create apps back:
/// full fetches are allowed for each app created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proptest_random_event_sequences_equal_a_full_render() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PtConfig, TestRunner};
    let bodies = gen_apps(&[
        "--apps",
        "20",
        "--tasks-per-app",
        "2",
        "--seed",
        "9",
        "--churn",
        "1",
    ]);
    let base = bodies[0].clone();
    let (fake, lb) = started(&base, &[]).await;
    let handle = tokio::runtime::Handle::current();
    let ids = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let current = std::sync::Mutex::new(base.clone());
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(PtConfig {
            cases: 6,
            failure_persistence: None,
            ..PtConfig::default()
        });
        runner
            .run(&prop::collection::vec(any::<u64>(), 1..15), |ops| {
                handle.block_on(async {
                    let mut full_allowed = 0;
                    let full_before = fake.served(Endpoint::Apps).requests;
                    let have = ids(&current.lock().unwrap());
                    full_allowed += ids(&base).iter().filter(|id| !have.contains(id)).count();
                    fake.set_apps_with_events(base.clone());
                    lb.converges(&lb.expected(&base), "reset to the base body")
                        .await;
                    let mut body: Value = serde_json::from_str(&base).unwrap();
                    let mut deleted = Vec::new();
                    for (step, op) in ops.iter().enumerate() {
                        let what = mutate(&mut body, &mut Rng(*op), &mut deleted);
                        if what.starts_with("create") {
                            full_allowed += 1;
                        }
                        let text = body.to_string();
                        *current.lock().unwrap() = text.clone();
                        fake.set_apps_with_events(text.clone());
                        lb.converges(
                            &lb.expected(&text),
                            &format!("ops {ops:?} step {step} ({what})"),
                        )
                        .await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let full = fake.served(Endpoint::Apps).requests - full_before;
                    assert!(
                        full <= full_allowed as u64,
                        "{full} full fetches, {full_allowed} allowed"
                    );
                });
                Ok(())
            })
            .unwrap();
    });
}
