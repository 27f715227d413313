//! The apps left out of the config, reported once.
//!
//! A pass leaves an app out for invalid input (a label, its JSON, a port another app holds, a
//! template that does not format) or because HAProxy rejects its section. Every pass finds
//! them again; the log says so only when an app first appears in the list, when its reason
//! changes, and when it is back. `/status` lists them with the time they were first left out
//! for that reason, and `marathon_lb_invalid_apps` counts them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::haproxy::isolate::RejectedApp;
use crate::model::invalid::LeftOut;

pub use crate::status::InvalidApp;

/// What was reported so far.
#[derive(Debug, Default)]
pub struct Reporter {
    /// App id -> its entry, as last published.
    known: BTreeMap<String, InvalidApp>,
    /// Apps HAProxy rejected at the last check (kept while no new check runs).
    rejected: Vec<LeftOut>,
}

impl Reporter {
    /// Takes this pass's left-out apps: `left_out` from the model and render (every pass),
    /// `rejected` from `haproxy -c` when the pass checked a config (`None`: unchanged config,
    /// the last check's list stands). Logs what is new, changed or back; returns the list.
    pub fn update(
        &mut self,
        left_out: Vec<LeftOut>,
        rejected: Option<&[RejectedApp]>,
        now: SystemTime,
    ) -> Vec<InvalidApp> {
        if let Some(rejected) = rejected {
            self.rejected = rejected
                .iter()
                .map(|r| LeftOut {
                    app_id: r.app_id.clone(),
                    labels: r.labels.clone(),
                    reason: format!("HAProxy rejects its config: {}", r.error_line),
                })
                .collect();
        }
        // In the order found (model and render first, then HAProxy's), one entry per app.
        let mut merged: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for entry in left_out.into_iter().chain(self.rejected.iter().cloned()) {
            let at = match merged.iter().position(|(id, _, _)| *id == entry.app_id) {
                Some(at) => at,
                None => {
                    merged.push((entry.app_id, Vec::new(), Vec::new()));
                    merged.len() - 1
                }
            };
            let (_, labels, reasons) = &mut merged[at];
            for label in entry.labels {
                if !labels.contains(&label) {
                    labels.push(label);
                }
            }
            if !reasons.contains(&entry.reason) {
                reasons.push(entry.reason);
            }
        }
        let mut next = Vec::with_capacity(merged.len());
        for (app_id, labels, reasons) in merged {
            let reason = reasons.join("; ");
            let since = match self.known.get(&app_id) {
                Some(old) if old.reason == reason => old.since,
                _ => {
                    tracing::error!(app_id = %app_id.escape_debug(), labels = ?labels, %reason, "left out an app; every other app is applied");
                    now
                }
            };
            next.push(InvalidApp {
                app_id,
                labels,
                reason,
                since,
            });
        }
        for app_id in self
            .known
            .keys()
            .filter(|id| !next.iter().any(|n| n.app_id == **id))
        {
            tracing::info!(app_id = %app_id.escape_debug(), "an app left out before is valid again (or gone)");
        }
        self.known = next.iter().map(|n| (n.app_id.clone(), n.clone())).collect();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn left(app: &str, reason: &str) -> LeftOut {
        LeftOut {
            app_id: app.into(),
            labels: vec!["HAPROXY_0_PORT".into()],
            reason: reason.into(),
        }
    }

    #[test]
    fn since_holds_while_the_reason_holds_and_haproxy_rejections_stay_until_rechecked() {
        let mut r = Reporter::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let t1 = t0 + Duration::from_secs(5);
        let rejected = RejectedApp {
            app_id: "/h".into(),
            labels: vec!["HAPROXY_0_BIND_OPTIONS".into()],
            error_line: "[ALERT] bad".into(),
        };
        let list = r.update(vec![left("/x", "bad port")], Some(&[rejected]), t0);
        assert_eq!(list.len(), 2);
        let list = r.update(vec![left("/x", "bad port")], None, t1);
        assert_eq!(
            list.len(),
            2,
            "the HAProxy rejection stands until the next check"
        );
        assert_eq!(list[0].app_id, "/x");
        assert_eq!(list[0].since, t0);
        let list = r.update(vec![left("/x", "other")], Some(&[]), t1);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].since, t1);
        assert!(r.update(Vec::new(), None, t1).is_empty());
    }

    #[test]
    fn several_reasons_of_one_app_are_one_entry() {
        let mut r = Reporter::default();
        let list = r.update(
            vec![left("/x", "a"), left("/x", "b")],
            None,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "a; b");
        assert_eq!(list[0].labels, ["HAPROXY_0_PORT"]);
    }
}
