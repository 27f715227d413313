//! Assertions shared by the managed-mode test files: bounded waits on the runtime applies,
//! and "no reload happened".

use super::*;

/// How long a change may take to be served (a loaded machine included).
pub const SETTLE: Duration = Duration::from_secs(10);

/// The reload counts of a HAProxy that only started.
pub fn only_initial() -> BTreeMap<String, u64> {
    BTreeMap::from([("initial".to_owned(), 1)])
}

/// Waits until `n` passes were applied through the Runtime API (counted in the log: `/status`
/// does not publish the count).
pub async fn wait_runtime_applies(lb: &ManagedLb, n: usize) {
    lb.wait_until(&format!("{n} runtime applies"), SETTLE, || async {
        lb.runtime_applies() >= n
    })
    .await;
}

/// No reload happened: the same worker serves and only the initial load is counted.
pub async fn assert_no_reload(lb: &ManagedLb, worker: u32) {
    assert_eq!(lb.worker_pid().await, worker, "the worker changed");
    assert_eq!(lb.reloads().await, only_initial(), "{}", lb.metrics().await);
    let procs = lb.show_proc().await.unwrap();
    assert_eq!(procs.master.reloads, 0, "{procs:?}");
}

/// `marathon_lb_runtime_updates_total{op,result="ok"}`.
pub async fn runtime_ok(lb: &ManagedLb, op: &str) -> f64 {
    let series = format!("marathon_lb_runtime_updates_total{{op=\"{op}\",result=\"ok\"}}");
    sample(&lb.metrics().await, &series).unwrap_or(0.0)
}
