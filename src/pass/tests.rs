//! The pass's HAProxy paths on the recording fake and on the command target, in paused time:
//! the Runtime API -> reload fallback, a failed reload retried by the next pass, a pending
//! reload command retried, and the loop's retry backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::*;
use crate::haproxy::fake::{Call, Fake};
use crate::haproxy::CommandReload;
use crate::metrics::Metrics;
use crate::reconcile::testing::{config, APPS};
use crate::reconcile::{Reconciler, Status, Timing, Trigger};

fn body(apps: &str) -> Source {
    Source::Body(Bytes::from(apps.to_owned()))
}

/// One pass of `source` into `target`, with the test config writing into `dir`.
async fn pass(
    dir: &std::path::Path,
    source: &Source,
    target: &mut impl Target,
) -> Result<Outcome, Error> {
    let config = config(dir);
    let templates = Templates::builtin();
    let inputs = Inputs {
        config: &config,
        templates: &templates,
        source,
        describe_services: false,
    };
    run(inputs, &mut Memory::default(), target).await
}

#[tokio::test(start_paused = true)]
async fn a_failed_runtime_update_falls_back_to_a_checked_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::default();
    let first = pass(dir.path(), &body(APPS), &mut fake).await.unwrap();
    assert_eq!(
        first.applied,
        Applied::Reloaded {
            reason: ReloadReason::Initial
        }
    );
    // The task moved: servers only, so the Runtime API (address and port: two operations);
    // it fails, so a reload instead.
    fake.runtime_failures = 1;
    let moved = body(&APPS.replace("31000", "31001"));
    let second = pass(dir.path(), &moved, &mut fake).await.unwrap();
    assert_eq!(
        second.applied,
        Applied::Reloaded {
            reason: ReloadReason::RuntimeFallback
        }
    );
    assert!(second.runtime_failure.is_some());
    assert_eq!(second.rejected, Some(Vec::new()), "the config was checked");
    let calls = fake.record.calls();
    assert_eq!(
        calls[1..],
        [
            (Call::Runtime(2), false),
            (Call::Reload(ReloadReason::RuntimeFallback), true)
        ]
    );
    // The fallback's config is what the fake serves: the same body is now unchanged.
    let third = pass(dir.path(), &moved, &mut fake).await.unwrap();
    assert_eq!(third.applied, Applied::Unchanged);
    // And a working Runtime API takes the next move without a reload.
    let back = pass(dir.path(), &body(APPS), &mut fake).await.unwrap();
    assert_eq!(back.applied, Applied::Runtime { ops: 2 });
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_makes_the_next_pass_reload_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::default();
    pass(dir.path(), &body(APPS), &mut fake).await.unwrap();
    fake.reload_failures = 1;
    let label = APPS.replace(
        r#""id":"/a","#,
        r#""id":"/a","labels":{"HAPROXY_0_MODE":"http"},"#,
    );
    let failed = pass(dir.path(), &body(&label), &mut fake).await;
    assert!(matches!(failed, Err(Error::Reload(_))), "{failed:?}");
    // What HAProxy serves is unknown now: the same input reloads again instead of "unchanged".
    let retried = pass(dir.path(), &body(&label), &mut fake).await.unwrap();
    assert!(matches!(retried.applied, Applied::Reloaded { .. }));
    let reloads: Vec<_> = fake.record.calls();
    assert_eq!(
        reloads,
        [
            (Call::Reload(ReloadReason::Initial), true),
            (Call::Reload(ReloadReason::LabelChange), false),
            (Call::Reload(ReloadReason::Initial), true),
        ]
    );
    let again = pass(dir.path(), &body(&label), &mut fake).await.unwrap();
    assert_eq!(again.applied, Applied::Unchanged);
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_command_is_retried_by_the_next_pass_only() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ok) = (dir.path().join("log"), dir.path().join("ok"));
    let command = format!("echo run >> {}; test -f {}", log.display(), ok.display());
    let mut config = (*config(dir.path())).clone();
    config.apply = crate::config::Apply::Command(command);
    let mut target = CommandReload::new(&config, Metrics::new());
    let templates = Templates::builtin();
    let source = body(APPS);
    let inputs = Inputs {
        config: &config,
        templates: &templates,
        source: &source,
        describe_services: false,
    };
    let failed = run(inputs, &mut Memory::default(), &mut target).await;
    assert!(matches!(failed, Err(Error::Apply(_))), "{failed:?}");
    assert!(target.reload_pending());
    assert!(std::fs::read_to_string(dir.path().join("haproxy.cfg"))
        .unwrap()
        .contains("backend a_10000"));
    std::fs::write(&ok, "").unwrap();
    let retried = run(inputs, &mut Memory::default(), &mut target)
        .await
        .unwrap();
    assert_eq!(
        retried.applied,
        Applied::Reloaded {
            reason: ReloadReason::ConfigChange
        }
    );
    assert!(!target.reload_pending());
    let unchanged = run(inputs, &mut Memory::default(), &mut target)
        .await
        .unwrap();
    assert_eq!(unchanged.applied, Applied::Unchanged);
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "the command ran once more, not twice"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_reloads_are_retried_with_a_growing_capped_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake {
        reload_failures: 5,
        ..Fake::default()
    };
    let record = fake.record.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, mut status) = watch::channel(Status::default());
    let (_stop, stop_rx) = watch::channel(false);
    let reconciler = Reconciler {
        config: config(dir.path()),
        templates: Arc::new(Templates::builtin()),
        source: body(APPS),
        target: fake,
        status: status_tx,
        metrics: Metrics::new(),
        timing: Timing {
            debounce: Duration::from_millis(5),
            resync_every: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(4),
        },
    };
    let handle = tokio::spawn(reconciler.run(rx, stop_rx));
    tx.send(Trigger::Resync).unwrap();
    // Five failures, then the sixth try serves: no trigger but the first.
    status.wait_for(|s| s.applies == 1).await.unwrap();
    let times = record.times();
    assert_eq!(times.len(), 6, "{:?}", record.calls());
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // 1, 2, 4, 4, 4 s (±20 % jitter, plus the 5 ms debounce), capped at --max-backoff.
    for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0, 4.0, 4.0]) {
        assert!(
            (base * 0.8..=base * 1.2 + 0.01).contains(gap),
            "gaps {gaps:?}"
        );
    }
    assert!(record.calls().iter().take(5).all(|(_, ok)| !ok));
    drop(tx);
    handle.await.unwrap();
}
