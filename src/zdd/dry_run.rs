//! `--dry-run`'s plan: the steps a deploy would take, simulated with marathon-lb's drain
//! rule (one old task drains per healthy new task beyond the target).

use std::fmt::Write as _;

use serde_json::Value;

use super::plan::{self, Prepared};
use super::swap::hops;
use super::ZddArgs;

/// The plan of deploying `prepared` over `last` (the current colour), one line per step.
pub fn plan_text(args: &ZddArgs, prepared: &Prepared, last: Option<&Value>) -> String {
    let mut out = String::from("Plan:\n");
    let id = plan::id(&prepared.app);
    let mut new = plan::instances(&prepared.app);
    let port = plan::service_port(&prepared.app).unwrap_or(0);
    let _ = writeln!(
        out,
        "  1. create {id} with {new} instance(s) on service port {port}"
    );
    let Some(last) = last else {
        let _ = writeln!(out, "  (first deploy of the group: nothing to swap)");
        return out;
    };
    let old_id = plan::id(last);
    let target = prepared.target;
    let split = prepared.new_instances;
    let mut old = plan::instances(last);
    let mut step = 2;
    for _ in 0..1000 {
        let drain = old.min(new).min((new + old).saturating_sub(target));
        if split == 0 && new == target && drain == old {
            let _ = writeln!(
                out,
                "  {step}. wait for {id}'s health; when every load balancer has drained all {old} remaining task(s) of {old_id}, delete it"
            );
            return out;
        }
        if drain > 0 {
            let _ = writeln!(
                out,
                "  {step}. wait for {id}'s health; when every load balancer has drained {drain} task(s) of {old_id}, kill them ({old_id}: {} left)",
                old - drain
            );
            old -= drain;
            step += 1;
        }
        let done = if split > 0 {
            new == split && old == target - split
        } else {
            new == target && old == 0
        };
        if done {
            break;
        }
        let goal = if split > 0 {
            (new + new.div_ceil(2)).min(split)
        } else if !args.steps.is_empty() {
            hops(&args.steps, target)
                .into_iter()
                .find(|h| *h > new)
                .unwrap_or(target)
        } else if args.linear_increase {
            (new + args.initial_instances.max(1)).min(target)
        } else if new + new.div_ceil(2) >= old {
            target
        } else {
            new + new.div_ceil(2)
        };
        if goal > new {
            let _ = writeln!(out, "  {step}. gate, then scale {id} to {goal}");
            new = goal;
            step += 1;
        }
    }
    let _ = writeln!(
        out,
        "  {step}. stop at the split: {id} {new}, {old_id} {old} (complete with --complete-cur or --complete-prev)"
    );
    out
}
