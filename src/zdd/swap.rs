//! The step loop: wait for the new colour's deployment, kill the old tasks every load
//! balancer has drained, grow the new colour, and delete the old app when the new one
//! serves everything (or stop at the split in hybrid mode); gates and rollback.
//!
//! Which old tasks the load balancers drain comes from marathon-lb's own model
//! ([`crate::model::deployment::merge`]) fed the same two apps, so zdd waits for exactly
//! the servers the load balancers will put into maintenance. A task is drained when its
//! server is in `MAINT`/`DRAIN` with no session and nothing queued on every load balancer
//! (or is not there at all: nothing can be routed to it); sessions elsewhere on a load
//! balancer (a long-lived tunnel through another app) do not matter.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::api::Marathon;
use super::plan::{self, instances, target};
use super::stats::{Balancers, Server};
use super::{confirm, gate, Error, ZddArgs};
use crate::compat::clean_name;
use crate::marathon::types::AppsBody;

/// How often the load balancers and Marathon are polled while waiting.
const POLL: Duration = Duration::from_millis(200);

/// The two apps of one swap and how it ends.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The colour that grows.
    pub new_id: String,
    /// The colour that drains.
    pub old_id: String,
    /// Stop at the split (`HAPROXY_DEPLOYMENT_NEW_INSTANCES`) instead of completing.
    pub hybrid: bool,
    /// A rollback: grow straight to the target, delete the failed app with `force`.
    pub rollback: bool,
}

/// One zdd run against Marathon and the load balancers.
pub struct Deploy<'a> {
    pub(super) api: &'a Marathon,
    pub(super) lbs: &'a Balancers,
    pub(super) args: &'a ZddArgs,
}

impl<'a> Deploy<'a> {
    /// A run with these endpoints and flags.
    pub fn new(api: &'a Marathon, lbs: &'a Balancers, args: &'a ZddArgs) -> Self {
        Deploy { api, lbs, args }
    }

    /// Two deploys of the group exist: complete the split either way, resume an
    /// interrupted run, or refuse.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn resume(&self, deploys: Vec<Value>) -> Result<(), Error> {
        let (latest, second) = match deploys.as_slice() {
            [.., second, latest] => (plan::id(latest).to_owned(), plan::id(second).to_owned()),
            _ => return Err(Error::Other("no deployment to resume".into())),
        };
        if self.args.complete_cur {
            tracing::info!(new = %latest, old = %second, "converting all instances to the current config");
            self.swap_or_roll_back(&latest, &second, true).await
        } else if self.args.complete_prev {
            tracing::info!(new = %second, old = %latest, "converting all instances to the previous config");
            self.swap_or_roll_back(&second, &latest, true).await
        } else if self.args.resume {
            tracing::info!(new = %latest, old = %second, "found previous deployment, resuming");
            self.swap_or_roll_back(&latest, &second, false).await
        } else {
            Err(Error::Other(
                "There appears to be an existing deployment in progress".into(),
            ))
        }
    }

    /// Swaps `old_id` for `new_id`; when a gate or `--max-wait` fails (and not
    /// `--no-rollback`, and not a completion), rolls back to `old_id`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn swap_or_roll_back(
        &self,
        new_id: &str,
        old_id: &str,
        completing: bool,
    ) -> Result<(), Error> {
        let new = self.app(new_id).await?;
        let hybrid =
            plan::new_instances(&new) != 0 && !self.args.complete_cur && !self.args.complete_prev;
        let roles = Roles {
            new_id: new_id.to_owned(),
            old_id: old_id.to_owned(),
            hybrid,
            rollback: false,
        };
        match self.swap(&roles).await {
            Err(Error::Gate { reason, .. }) if !self.args.no_rollback && !completing => {
                tracing::error!("{reason}; rolling back to {old_id}");
                let back = Roles {
                    new_id: old_id.to_owned(),
                    old_id: new_id.to_owned(),
                    hybrid: false,
                    rollback: true,
                };
                match self.roll_back(&back).await {
                    Ok(()) => Err(Error::Gate {
                        reason,
                        rolled_back: true,
                    }),
                    Err(e) => Err(Error::RollbackFailed {
                        reason,
                        rollback: e.to_string(),
                    }),
                }
            }
            other => other,
        }
    }

    /// Grows the previous colour back to its target (the scale makes it the newer colour in
    /// marathon-lb's merge, so the failed colour's tasks drain), then swaps back.
    async fn roll_back(&self, roles: &Roles) -> Result<(), Error> {
        let previous = self.app(&roles.new_id).await?;
        let goal = target(&previous);
        tracing::info!(app = %roles.new_id, instances = goal, "rollback: scaling the previous colour back");
        self.api
            .scale(&roles.new_id, goal, true)
            .await
            .map_err(Error::AppScale)?;
        self.swap(roles).await
    }

    /// The step loop of one swap.
    pub async fn swap(&self, roles: &Roles) -> Result<(), Error> {
        let max_wait = Duration::from_secs(self.args.max_wait);
        let mut progress = Instant::now();
        loop {
            self.wait_deployment(&roles.new_id).await?;
            let (new, old, drained) = self.wait_drained(roles).await?;
            tracing::info!(
                old = instances(&old),
                new = instances(&new),
                "existing app running {} instances, new app running {} instances",
                instances(&old),
                instances(&new)
            );
            if ready_to_delete(roles, &new, &old, &drained) {
                return self.finish(roles).await;
            }
            let mut stepped = false;
            if !drained.is_empty() {
                self.kill(&old, &drained, &new).await?;
                stepped = true;
            }
            let goal = self.goal(roles, &new, &old);
            if goal > instances(&new) {
                if !roles.rollback && instances(&new) > 0 {
                    gate::check(self, &new).await?;
                }
                tracing::info!("scaling new app up to {goal} instances");
                self.api
                    .scale(&roles.new_id, goal, false)
                    .await
                    .map_err(Error::AppScale)?;
                stepped = true;
            }
            if stepped {
                progress = Instant::now();
            } else if progress.elapsed() > max_wait {
                return Err(Error::Gate {
                    reason: format!("no progress for {} s", self.args.max_wait),
                    rolled_back: false,
                });
            }
            tokio::time::sleep(Duration::from_secs(self.args.step_delay)).await;
        }
    }

    /// `GET /v2/apps/{id}`.
    pub(super) async fn app(&self, id: &str) -> Result<Value, Error> {
        self.api.app(id).await.map_err(Error::Marathon)
    }

    /// Waits until `id` has no deployment in progress, at most `--max-wait`.
    async fn wait_deployment(&self, id: &str) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(self.args.max_wait);
        loop {
            let app = self.app(id).await?;
            let busy = app
                .get("deployments")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty());
            if !busy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let healthy = app.get("tasksHealthy").and_then(Value::as_u64).unwrap_or(0);
                return Err(Error::Gate {
                    reason: format!(
                        "the deployment of {id} did not finish within {} s ({healthy} of {} tasks healthy)",
                        self.args.max_wait,
                        instances(&app)
                    ),
                    rolled_back: false,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every load balancer serves every new task and has drained the old tasks
    /// marathon-lb's model drains; returns both apps and those tasks. At most `--max-wait`.
    /// The apps are read again every second: a task that fails or a health flip changes
    /// what the load balancers drain.
    async fn wait_drained(&self, roles: &Roles) -> Result<(Value, Value, Vec<String>), Error> {
        let deadline = Instant::now() + Duration::from_secs(self.args.max_wait);
        let mut read_at: Option<Instant> = None;
        let (mut new, mut old, mut expected) = (Value::Null, Value::Null, Vec::new());
        loop {
            if read_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                new = self.app(&roles.new_id).await?;
                old = self.app(&roles.old_id).await?;
                expected = draining(&old, &new)?;
                read_at = Some(Instant::now());
            }
            let backend = backend(&new);
            let problem = match self.lbs.backend(&backend).await {
                Ok(views) => self.unsettled(&views, &new, &old, &expected),
                Err(e) if Instant::now() >= deadline => return Err(Error::LbEndpoint(e)),
                Err(e) => Some(e.to_string()),
            };
            let Some(problem) = problem else {
                tracing::info!(backend = %backend, drained = expected.len(), "load balancers settled");
                return Ok((new, old, expected));
            };
            if Instant::now() >= deadline {
                return Err(Error::Gate {
                    reason: format!("after {} s: {problem}", self.args.max_wait),
                    rolled_back: false,
                });
            }
            tracing::debug!("waiting: {problem}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// What the load balancers still lack, if anything.
    fn unsettled(
        &self,
        views: &[HashMap<String, Server>],
        new: &Value,
        old: &Value,
        expected: &[String],
    ) -> Option<String> {
        for (view, url) in views.iter().zip(self.lbs.urls()) {
            for task in tasks(new) {
                match find(view, task) {
                    Some(s) if s.serving() => {}
                    found => {
                        let status = found.map_or("absent", |s| s.status.as_str());
                        return Some(format!(
                            "new task {} is not serving on {url} ({status})",
                            task_id(task)
                        ));
                    }
                }
            }
            for task in tasks(old).filter(|t| expected.iter().any(|e| e == task_id(t))) {
                if let Some(s) = find(view, task).filter(|s| !s.drained()) {
                    return Some(format!(
                        "old task {} is not drained on {url} ({}, {} sessions, {} queued)",
                        task_id(task),
                        s.status,
                        s.scur,
                        s.qcur
                    ));
                }
            }
        }
        None
    }

    /// Runs the pre-kill hook, asks, and kills `ids` with `scale=true`.
    async fn kill(&self, old: &Value, ids: &[String], new: &Value) -> Result<(), Error> {
        if let Some(hook) = &self.args.pre_kill_hook {
            tracing::info!("calling pre-kill hook '{}'", hook.display());
            let status = tokio::process::Command::new(hook)
                .arg(old.to_string())
                .arg(json!(ids).to_string())
                .arg(new.to_string())
                .status()
                .await
                .map_err(|e| Error::Other(format!("pre-kill hook {}: {e}", hook.display())))?;
            if !status.success() {
                return Err(Error::Other(format!(
                    "pre-kill hook {} failed ({status}): an operator must intervene",
                    hook.display()
                )));
            }
        }
        tracing::info!(
            "there are {} drained tasks, about to kill:\n  - {}",
            ids.len(),
            ids.join("\n  - ")
        );
        if !self.args.force && !confirm("Continue?") {
            return Err(Error::Declined);
        }
        tracing::info!("scaling down old app by {} instances", ids.len());
        self.api
            .kill_and_scale(ids)
            .await
            .map(drop)
            .map_err(Error::AppScale)
    }

    /// The end: delete the old app, unless this is a split.
    async fn finish(&self, roles: &Roles) -> Result<(), Error> {
        if roles.hybrid {
            tracing::info!("not deleting old app, as its hybrid configuration");
            return Ok(());
        }
        tracing::info!("about to delete old app {}", roles.old_id);
        if !self.args.force && !confirm("Continue?") {
            return Err(Error::Declined);
        }
        self.api
            .delete(&roles.old_id, roles.rollback)
            .await
            .map(drop)
            .map_err(Error::AppDelete)
    }

    /// The new app's next size.
    fn goal(&self, roles: &Roles, new: &Value, old: &Value) -> u64 {
        let (now, full) = (instances(new), target(new));
        if roles.rollback {
            return full;
        }
        if roles.hybrid {
            return self.grow(now).min(plan::new_instances(new));
        }
        if !self.args.steps.is_empty() {
            return hops(&self.args.steps, full)
                .into_iter()
                .find(|h| *h > now)
                .unwrap_or(full);
        }
        let grown = self.grow(now);
        if grown >= instances(old) {
            full
        } else {
            grown
        }
    }

    /// One growth step: half again (zdd.py), or `--initial-instances` more with
    /// `--linear-increase`.
    fn grow(&self, now: u64) -> u64 {
        if self.args.linear_increase {
            now + self.args.initial_instances.max(1)
        } else {
            now + now.div_ceil(2)
        }
    }
}

/// Instances at each `--steps` percentage of `target` (at least 1, the last is the target).
pub fn hops(steps: &[u8], target: u64) -> Vec<u64> {
    let mut out: Vec<u64> = steps
        .iter()
        .map(|p| (u64::from(*p) * target).div_ceil(100).max(1))
        .collect();
    out.push(target);
    out.dedup();
    out
}

/// Whether the old app can go: the split is reached (hybrid), or the new app is complete
/// and every old task is drained.
fn ready_to_delete(roles: &Roles, new: &Value, old: &Value, drained: &[String]) -> bool {
    if roles.hybrid {
        let n = plan::new_instances(new);
        instances(new) == n && instances(old) == target(old).saturating_sub(n)
    } else {
        instances(new) == target(new) && drained.len() as u64 == instances(old)
    }
}

/// The backend both colours share: `<group>_<HAPROXY_0_PORT>`.
pub fn backend(app: &Value) -> String {
    let group = plan::group(app).unwrap_or_default();
    let port = plan::label(app, "HAPROXY_0_PORT")
        .map(str::to_owned)
        .or_else(|| plan::service_port(app).map(|p| p.to_string()))
        .unwrap_or_default();
    format!("{}_{port}", group.trim_start_matches('/').replace('/', "_"))
}

/// The old tasks marathon-lb drains for this pair of apps (its own merge, same input).
fn draining(old: &Value, new: &Value) -> Result<Vec<String>, Error> {
    let body = json!({ "apps": [old, new] }).to_string();
    let parsed = AppsBody::parse(body.as_bytes())
        .map_err(|e| Error::Other(format!("Marathon's apps do not parse: {e}")))?;
    let merged = crate::model::deployment::merge(parsed.apps).map_err(|e| {
        Error::Other(format!(
            "marathon-lb cannot merge the deployment group: {e}"
        ))
    })?;
    let old_ids: Vec<&str> = tasks(old).map(task_id).collect();
    Ok(merged
        .iter()
        .flat_map(|p| p.app.tasks.iter().zip(&p.draining))
        .filter(|(task, draining)| **draining && old_ids.contains(&task.id.as_ref()))
        .map(|(task, _)| task.id.to_string())
        .collect())
}

/// An app's tasks.
pub(super) fn tasks(app: &Value) -> impl Iterator<Item = &Value> {
    app.get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn task_id(task: &Value) -> &str {
    task.get("id").and_then(Value::as_str).unwrap_or("")
}

/// The task's server in one load balancer's view (`<host>_<port>`, or with its IP).
pub(super) fn find<'v>(view: &'v HashMap<String, Server>, task: &Value) -> Option<&'v Server> {
    let host = clean_name(task.get("host").and_then(Value::as_str).unwrap_or(""));
    let port = task.pointer("/ports/0").and_then(Value::as_u64)?;
    let mut names = vec![format!("{host}_{port}")];
    for ip in task
        .get("ipAddresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("ipAddress").and_then(Value::as_str))
    {
        names.push(format!("{}_{port}", clean_name(ip)));
        names.push(format!("{host}_{}_{port}", clean_name(ip)));
    }
    names.iter().find_map(|n| view.get(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_shares_of_the_target() {
        assert_eq!(hops(&[10, 50, 100], 10), [1, 5, 10]);
        assert_eq!(hops(&[10, 50], 4), [1, 2, 4]);
        assert_eq!(hops(&[1], 3), [1, 3]);
    }

    #[test]
    fn the_model_drains_one_old_task_per_healthy_new_one() {
        let labels = |at: &str| {
            json!({"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_0_PORT": "80",
            "HAPROXY_DEPLOYMENT_STARTED_AT": at, "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3",
            "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0"})
        };
        let task = |id: &str| json!({"id": id, "host": "127.0.0.1", "ports": [1]});
        let old = json!({"id": "/web-blue", "instances": 3, "labels": labels("2026-01-01T00:00:00"),
            "versionInfo": {"lastScalingAt": "2026-01-01T00:00:00.000Z"},
            "tasks": [task("b1"), task("b2"), task("b3")]});
        let new = json!({"id": "/web-green", "instances": 1, "labels": labels("2026-01-01T00:01:00"),
            "versionInfo": {"lastScalingAt": "2026-01-01T00:01:00.000Z"}, "tasks": [task("g1")]});
        assert_eq!(draining(&old, &new).unwrap(), ["b1"]);
        assert_eq!(backend(&new), "web_80");
    }
}
