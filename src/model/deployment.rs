//! Blue/green deployment groups (`HAPROXY_DEPLOYMENT_GROUP`): the two apps of a group are
//! merged into one backend under the group's id, draining old tasks as new ones become healthy.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

use super::Error;
use crate::compat::parse_int;
use crate::marathon::types::App;

/// An app ready for the model: tasks carry whether they are being drained.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    /// The app (for a merged group: the old app's definition with the group id and all tasks).
    pub app: App<'a>,
    /// `draining[i]` is true when `app.tasks[i]` must stop receiving new connections.
    pub draining: Vec<bool>,
}

impl<'a> Prepared<'a> {
    /// An app outside any group: nothing drains.
    pub fn new(app: App<'a>) -> Self {
        let draining = vec![false; app.tasks.len()];
        Self { app, draining }
    }
}

/// Merges deployment groups. Apps outside a group come first in input order, then one merged
/// app per group in order of first appearance.
///
/// # Errors
/// [`Error::Deployment`] when dates or instance counts the merge needs are missing or invalid.
pub fn merge(apps: Vec<App<'_>>) -> Result<Vec<Prepared<'_>>, Error> {
    let mut groups = Groups::default();
    let mut plain: Vec<Prepared> = apps
        .into_iter()
        .filter_map(|app| groups.take(app))
        .map(Prepared::new)
        .collect();
    plain.extend(groups.finish()?);
    Ok(plain)
}

/// Collects the apps of deployment groups as they stream in, merging each group's pair.
#[derive(Debug, Default)]
pub struct Groups<'a> {
    /// Group id -> its merged app so far, in order of first appearance.
    merged: Vec<(String, Prepared<'a>)>,
    /// The merges that failed, in order; later apps of a failed group are dropped.
    failed: Vec<(String, Error)>,
}

impl<'a> Groups<'a> {
    /// Keeps an app with `HAPROXY_DEPLOYMENT_GROUP` for merging; gives any other app back.
    pub fn take(&mut self, mut app: App<'a>) -> Option<App<'a>> {
        let Some(group) = app.labels.get("HAPROXY_DEPLOYMENT_GROUP") else {
            return Some(app);
        };
        let id: String = if group.starts_with('/') {
            group.to_string()
        } else {
            format!("/{group}")
        };
        if self.failed.iter().any(|(g, _)| *g == id) {
            return None;
        }
        app.id = id.clone().into();
        match self.merged.iter().position(|(g, _)| *g == id) {
            Some(at) => {
                let prev = &mut self.merged[at].1;
                let previous = std::mem::replace(prev, Prepared::new(App::default()));
                match merge_pair(previous, app) {
                    Ok(both) => *prev = both,
                    Err(e) => {
                        self.merged.remove(at);
                        self.failed.push((id, e));
                    }
                }
            }
            None => self.merged.push((id, Prepared::new(app))),
        }
        None
    }

    /// The merged apps, one per group.
    ///
    /// # Errors
    /// The first failed merge.
    pub fn finish(self) -> Result<Vec<Prepared<'a>>, Error> {
        match self.failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(self.merged.into_iter().map(|(_, p)| p).collect()),
        }
    }

    /// The merged apps of the groups that merged, and the errors of those that did not
    /// (live mode leaves those groups out).
    pub fn finish_each(self) -> (Vec<Prepared<'a>>, Vec<Error>) {
        let merged = self.merged.into_iter().map(|(_, p)| p).collect();
        (merged, self.failed.into_iter().map(|(_, e)| e).collect())
    }
}

fn merge_pair<'a>(prev: Prepared<'a>, cur: App<'a>) -> Result<Prepared<'a>, Error> {
    let group = cur.id.to_string();
    let fail = |reason: String| Error::Deployment {
        group: group.clone(),
        reason,
    };
    let started = |app: &App| -> Result<When, Error> {
        match app.labels.get("HAPROXY_DEPLOYMENT_STARTED_AT") {
            None => Ok(When::Naive(NaiveDateTime::MIN)),
            Some(text) => When::parse(text).ok_or_else(|| {
                fail(format!(
                    "HAPROXY_DEPLOYMENT_STARTED_AT {text:?} is not a date"
                ))
            }),
        }
    };
    let cur_has_checks = !cur.health_checks.is_empty();
    let (prev_date, cur_date) = (started(&prev.app)?, started(&cur)?);
    let cur = Prepared::new(cur);
    let (mut old, mut new) = if prev_date
        .earlier_than(&cur_date)
        .map_err(|e| fail(e.into()))?
    {
        (prev, cur)
    } else {
        (cur, prev)
    };

    let target_instances = target_instances(&mut old, &mut new, &fail)?;

    let healthy_new = if cur_has_checks {
        let alive = |t: &crate::marathon::types::Task| {
            t.health_check_results.iter().flatten().any(|r| r.alive)
        };
        new.app.tasks.iter().filter(|t| alive(t)).count() as i64
    } else {
        new.app.instances.unwrap_or(0)
    };
    let old_instances = old.app.instances.unwrap_or(0);
    let drainable = (healthy_new + old_instances - target_instances).max(0);

    let mut old_tasks: Vec<_> = old
        .app
        .tasks
        .drain(..)
        .zip(old.draining.drain(..))
        .collect();
    old_tasks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let to_drain = (old_tasks.len() as i64)
        .min(healthy_new)
        .min(drainable)
        .max(0) as usize;
    for (_, draining) in old_tasks.iter_mut().take(to_drain) {
        *draining = true;
    }
    old_tasks.extend(new.app.tasks.drain(..).zip(new.draining.drain(..)));
    let (tasks, draining) = old_tasks.into_iter().unzip();
    old.app.tasks = tasks;
    Ok(Prepared {
        app: old.app,
        draining,
    })
}

/// How many instances the deployment aims at (`HAPROXY_DEPLOYMENT_TARGET_INSTANCES`, read from
/// the app scaled last, which becomes `new`), or 1 outside a deployment.
fn target_instances<'a>(
    old: &mut Prepared<'a>,
    new: &mut Prepared<'a>,
    fail: &dyn Fn(String) -> Error,
) -> Result<i64, Error> {
    if !new
        .app
        .labels
        .contains_key("HAPROXY_DEPLOYMENT_NEW_INSTANCES")
    {
        return Ok(1);
    }
    let scaled = |app: &App| -> Result<When, Error> {
        let text = app
            .version_info
            .as_ref()
            .and_then(|v| v.last_scaling_at.as_deref());
        let text = text.ok_or_else(|| fail("app has no versionInfo.lastScalingAt".into()))?;
        When::parse(text).ok_or_else(|| fail(format!("lastScalingAt {text:?} is not a date")))
    };
    if scaled(&new.app)?
        .earlier_than(&scaled(&old.app)?)
        .map_err(|e| fail(e.into()))?
    {
        std::mem::swap(old, new);
    }
    let text = new.app.labels.get("HAPROXY_DEPLOYMENT_TARGET_INSTANCES");
    let text = text.ok_or_else(|| fail("HAPROXY_DEPLOYMENT_TARGET_INSTANCES is missing".into()))?;
    parse_int(text).ok_or_else(|| {
        fail(format!(
            "HAPROXY_DEPLOYMENT_TARGET_INSTANCES {text:?} is not an integer"
        ))
    })
}

/// A date as Python's `dateutil` gives it: naive or with an offset (the two cannot be compared).
#[derive(Debug, Clone, Copy)]
enum When {
    Naive(NaiveDateTime),
    Aware(DateTime<FixedOffset>),
}

impl When {
    fn parse(text: &str) -> Option<When> {
        let t = text.trim();
        if let Ok(aware) = DateTime::parse_from_rfc3339(t) {
            return Some(When::Aware(aware));
        }
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
                return Some(When::Naive(naive));
            }
        }
        let date = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
        date.and_hms_opt(0, 0, 0).map(When::Naive)
    }

    fn earlier_than(&self, other: &When) -> Result<bool, MixedZones> {
        match (self, other) {
            (When::Naive(a), When::Naive(b)) => Ok(a < b),
            (When::Aware(a), When::Aware(b)) => Ok(a < b),
            _ => Err(MixedZones),
        }
    }
}

/// Two deployment dates, one with a time zone and one without: Python cannot order them.
#[derive(Debug, thiserror::Error)]
#[error("cannot compare a date with a time zone to one without")]
struct MixedZones;

impl From<MixedZones> for String {
    fn from(e: MixedZones) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::types::AppsBody;

    fn apps(json: &str) -> Vec<App<'_>> {
        AppsBody::parse(json.as_bytes()).unwrap().apps
    }

    #[test]
    fn a_lone_grouped_app_is_renamed() {
        let merged = merge(apps(
            r#"{"apps":[{"id":"/x-blue","labels":{"HAPROXY_DEPLOYMENT_GROUP":"x"}},{"id":"/y"}]}"#,
        ))
        .unwrap();
        assert_eq!(merged[0].app.id, "/y");
        assert_eq!(merged[1].app.id, "/x");
    }

    #[test]
    fn old_tasks_drain_as_new_ones_are_healthy() {
        let body = r#"{"apps":[
          {"id":"/blue","instances":2,"labels":{"HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"2016-01-01T00:00:00"},
           "tasks":[{"id":"b2"},{"id":"b1"}]},
          {"id":"/green","instances":1,"labels":{"HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"2016-01-02T00:00:00"},
           "tasks":[{"id":"g1"}]}]}"#;
        let merged = merge(apps(body)).unwrap();
        assert_eq!(merged.len(), 1);
        let ids: Vec<_> = merged[0].app.tasks.iter().map(|t| t.id.as_ref()).collect();
        assert_eq!(ids, ["b1", "b2", "g1"]);
        // healthy new = 1 (no checks: new instances), drainable = 1 + 2 - 1 = 2 -> 1 drained.
        assert_eq!(merged[0].draining, [true, false, false]);
    }

    #[test]
    fn mixed_naive_and_aware_dates_are_an_error() {
        let body = r#"{"apps":[
          {"id":"/a","labels":{"HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"2016-01-01T00:00:00Z"}},
          {"id":"/b","labels":{"HAPROXY_DEPLOYMENT_GROUP":"g","HAPROXY_DEPLOYMENT_STARTED_AT":"2016-01-02T00:00:00"}}]}"#;
        assert!(merge(apps(body)).is_err());
    }
}
