//! Live mode's isolation of one app's faults, between the model and the check: port conflicts,
//! the last good services of an app whose new definition is invalid, and render errors.
//!
//! An app left out for invalid input that was served before keeps serving the services of the
//! last rendered config (its tasks as they were then): a typo in a label must not take a
//! running app's traffic away. A new invalid app is simply left out. Each is reported.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Error, Memory};
use crate::config::Config;
use crate::model::invalid::LeftOut;
use crate::model::{self, Service};
use crate::render::Rendered;
use crate::templates::Templates;

/// Restores the last good services of left-out apps, resolves port conflicts (the holder keeps
/// its port), and renders, leaving out (or restoring) any app whose section cannot be rendered.
///
/// # Errors
/// [`Error::Render`] for a global render error.
pub(super) fn keep_and_render(
    services: &mut Vec<Arc<Service>>,
    left_out: &mut Vec<LeftOut>,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
) -> Result<Rendered, Error> {
    let mut restored = HashSet::new();
    restore_last_good(services, left_out, &memory.previous, &mut restored);
    let opts = &config.render;
    let reserved: &[(i64, &str)] = if opts.bind_http_https {
        &[(80, "marathon_http_in"), (443, "marathon_https_in")]
    } else {
        &[]
    };
    let selected = |s: &Service| s.enabled && s.in_groups(&opts.groups);
    let (kept, conflicts) =
        memory
            .port_claims
            .resolve(std::mem::take(services), selected, reserved);
    *services = kept;
    left_out.extend(conflicts);
    loop {
        let error = match memory
            .incremental
            .render(services, templates, &config.render)
        {
            Ok(rendered) => return Ok(rendered),
            Err(e) => e,
        };
        let Some(app_id) = error.app_id().map(str::to_owned) else {
            return Err(error.into());
        };
        let label = error.label().map(|l| concrete_label(services, &app_id, l));
        let before = services.len();
        services.retain(|s| s.app_id != app_id);
        if services.len() == before {
            return Err(error.into());
        }
        let reason = match &label {
            Some(label) if !error.to_string().contains(label.as_str()) => {
                format!("{error} (label {label})")
            }
            _ => error.to_string(),
        };
        left_out.push(LeftOut {
            app_id,
            labels: label.into_iter().collect(),
            reason,
        });
        // Each app is restored at most once, so this loop ends.
        restore_last_good(services, left_out, &memory.previous, &mut restored);
    }
}

/// Puts back the previous services of each left-out app that has none now (once per app).
fn restore_last_good(
    services: &mut Vec<Arc<Service>>,
    left_out: &mut [LeftOut],
    previous: &[Arc<Service>],
    restored: &mut HashSet<String>,
) {
    let mut changed = false;
    for out in left_out.iter_mut() {
        if restored.contains(&out.app_id) || services.iter().any(|s| s.app_id == out.app_id) {
            continue;
        }
        let old: Vec<Arc<Service>> = previous
            .iter()
            .filter(|s| s.app_id == out.app_id)
            .cloned()
            .collect();
        if old.is_empty() {
            continue;
        }
        restored.insert(out.app_id.clone());
        out.reason
            .push_str("; it keeps serving its last good config");
        services.extend(old);
        changed = true;
    }
    if changed {
        // Stable, as the model's own order: by app id, then service port.
        services.sort_by(|a, b| {
            (a.app_id.as_str(), a.service_port).cmp(&(b.app_id.as_str(), b.service_port))
        });
    }
}

/// `HAPROXY_{n}_NAME` from a render error as the app's actual label (`HAPROXY_0_NAME`).
fn concrete_label(services: &[Arc<Service>], app_id: &str, label: &str) -> String {
    let Some(name) = label.strip_prefix("HAPROXY_{n}_") else {
        return label.to_owned();
    };
    services
        .iter()
        .filter(|s| s.app_id == app_id)
        .flat_map(|s| s.labels.iter().map(|(k, _)| k))
        .find(|k| model::labels::port_label(k).is_some_and(|(_, n)| n == name))
        .cloned()
        .unwrap_or_else(|| label.to_owned())
}
