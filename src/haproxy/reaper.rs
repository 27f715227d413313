//! As PID 1 (a container without an init), marathon-lb inherits every orphaned process in
//! its namespace and must reap them, or zombies pile up (a reload command's daemons, old
//! HAProxy workers whose master was restarted).
//!
//! Why not `waitpid(-1)` (or the `pid1` crate, which loops on it): it would also take the
//! exit status of the children we wait for ourselves (the HAProxy master, `haproxy -c`, the
//! reload command), and their waits would then fail. Instead, on each SIGCHLD (and once a
//! second, to cover coalesced signals), [`reap_orphans`] lists our zombie children in
//! `/proc` and reaps, by pid, only those we did not spawn: every spawn registers its pid in
//! [`super::exec::KNOWN`] while holding its lock, and the scan holds the same lock, so a
//! child of ours is never seen unregistered.

use std::time::Duration;

use rustix::process::{Pid, WaitOptions};

use super::exec;

/// Reaps zombie children we did not spawn; returns how many.
pub fn reap_orphans() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    reap(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()))
}

/// [`reap_orphans`] among `pids`.
fn reap(pids: impl Iterator<Item = u32>) -> usize {
    let me = std::process::id();
    let known = exec::known();
    let mut reaped = 0;
    for pid in pids {
        if known.as_ref().is_some_and(|k| k.contains(&pid)) || !zombie_child_of(pid, me) {
            continue;
        }
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        if let Ok(Some(_)) = rustix::process::waitpid(Some(raw), WaitOptions::NOHANG) {
            reaped += 1;
        }
    }
    drop(known);
    if reaped > 0 {
        tracing::debug!(reaped, "reaped orphaned processes");
    }
    reaped
}

/// Whether `/proc/PID/stat` shows a zombie whose parent is `parent`.
fn zombie_child_of(pid: u32, parent: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(end) = text.rfind(')') else {
        return false;
    };
    let mut fields = text[end + 1..].split_whitespace();
    fields.next() == Some("Z") && fields.next().and_then(|p| p.parse().ok()) == Some(parent)
}

/// When we are PID 1, reaps orphans for the life of the runtime.
pub fn spawn_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    tracing::info!("running as PID 1: reaping orphaned processes");
    tokio::spawn(async {
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            let tick = tokio::time::sleep(Duration::from_secs(1));
            match sigchld.as_mut() {
                Some(sig) => {
                    tokio::select! {
                        _ = sig.recv() => {}
                        _ = tick => {}
                    }
                }
                None => tick.await,
            }
            tokio::task::block_in_place(reap_orphans);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // the point: the reaper, not we, waits for `orphan`
    fn an_orphan_zombie_is_reaped_and_a_known_child_is_not() {
        // A child we do not register stands in for an orphan; a registered one for ours.
        let orphan = std::process::Command::new("true").spawn().unwrap();
        let mut ours = {
            let mut known = exec::known();
            let child = std::process::Command::new("true").spawn().unwrap();
            known
                .get_or_insert_with(Default::default)
                .insert(child.id());
            child
        };
        std::thread::sleep(Duration::from_millis(200));
        let me = std::process::id();
        assert!(zombie_child_of(orphan.id(), me) && zombie_child_of(ours.id(), me));
        // Only these two: other tests of this binary run children too.
        assert_eq!(reap([orphan.id(), ours.id()].into_iter()), 1);
        assert!(!zombie_child_of(orphan.id(), me));
        assert!(
            ours.wait().unwrap().success(),
            "our child's status was kept"
        );
    }
}
