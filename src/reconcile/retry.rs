//! Which failed passes the loop retries by itself (with a bounded backoff, without waiting
//! for an event or the resync), and the test of that retry through the loop.

use crate::run;

/// Whether a failed pass is worth retrying as is: the failure was in the environment (disk,
/// HAProxy, the reload command, a timeout), not in the apps.
pub(super) fn retryable(error: &run::Error) -> bool {
    matches!(
        error,
        run::Error::Fetch(_)
            | run::Error::Apply(_)
            | run::Error::Reload(_)
            | run::Error::Validate(crate::haproxy::ValidateError::Run { .. })
            | run::Error::Validate(crate::haproxy::ValidateError::Exec(_))
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::reconcile::testing::{start, APPS};
    use crate::reconcile::Trigger;

    /// `tokio::time::pause` needs a current-thread runtime, where the pass's `block_in_place`
    /// panics: this runs in real time with the 1 s first backoff.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_retried_without_a_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps.json");
        std::fs::write(&apps, APPS).unwrap();
        // The config's directory is a file: every write fails (even as root).
        let etc = dir.path().join("etc");
        std::fs::write(&etc, "").unwrap();
        let mut running = start(apps, &etc, Duration::ZERO);
        let (tx, status_rx) = (&running.tx, &mut running.status);
        tx.send(Trigger::Resync).unwrap();
        status_rx
            .wait_for(|s| {
                s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot write"))
            })
            .await
            .unwrap();
        std::fs::remove_file(&etc).unwrap();
        std::fs::create_dir(&etc).unwrap();
        let fixed = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(3),
            status_rx.wait_for(|s| s.applies == 1),
        )
        .await
        .expect("the failed write was not retried")
        .unwrap();
        assert!(
            fixed.elapsed() <= Duration::from_millis(1500),
            "{:?}",
            fixed.elapsed()
        );
        assert!(std::fs::read_to_string(etc.join("haproxy.cfg"))
            .unwrap()
            .contains("backend a_10000"));
        assert!(status_rx.borrow().passes >= 2);
        running.stop().await;
    }
}
