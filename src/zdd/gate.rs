//! The gate before each growth step of the new colour (ours, not zdd.py's): every new task
//! healthy in Marathon (when it has health checks) and, with `--max-5xx-rate`, the new
//! servers' share of 5xx answers over `--step-delay` seconds at most that rate, summed
//! over the load balancers.

use std::time::Duration;

use serde_json::Value;

use super::swap::{backend, find, tasks, Deploy};
use super::Error;

/// Checks the new app before it grows.
///
/// # Errors
/// [`Error::Gate`] saying what failed; load balancer or Marathon errors.
pub async fn check(deploy: &Deploy<'_>, new: &Value) -> Result<(), Error> {
    let fail = |reason: String| Error::Gate {
        reason,
        rolled_back: false,
    };
    let checked = new
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if checked {
        for task in tasks(new) {
            let alive = task
                .get("healthCheckResults")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|r| r.get("alive") == Some(&Value::Bool(true))));
            if !alive {
                let id = task.get("id").and_then(Value::as_str).unwrap_or("");
                return Err(fail(format!("gate: new task {id} is not healthy")));
            }
        }
    }
    let Some(max_rate) = deploy.args.max_5xx_rate else {
        return Ok(());
    };
    let before = answers(deploy, new).await?;
    tokio::time::sleep(Duration::from_secs(deploy.args.step_delay.max(1))).await;
    let after = answers(deploy, new).await?;
    let (errors, total) = (
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
    );
    let rate = if total == 0 {
        0.0
    } else {
        errors as f64 / total as f64
    };
    tracing::info!(errors, total, rate, "gate: 5xx rate of the new servers");
    if rate > max_rate {
        return Err(fail(format!(
            "gate: the new servers answered {errors} of {total} requests with 5xx ({:.1}% > --max-5xx-rate {:.1}%)",
            rate * 100.0,
            max_rate * 100.0
        )));
    }
    Ok(())
}

/// `(5xx, all)` answers of the new app's servers, summed over the load balancers.
async fn answers(deploy: &Deploy<'_>, new: &Value) -> Result<(u64, u64), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(deploy.args.max_wait);
    let views = deploy.lbs.backend_until(&backend(new), deadline).await?;
    let mut sum = (0, 0);
    for view in &views {
        for server in tasks(new).filter_map(|t| find(view, t)) {
            sum.0 += server.hrsp_5xx;
            sum.1 += server.answers;
        }
    }
    Ok(sum)
}
