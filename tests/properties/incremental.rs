//! The live loop's incremental render equals a full render, at every step of random changes to
//! random service sets (apps added and removed, labels, tasks added, removed and moved, vhosts,
//! health checks, ports), under each map/grouping option; and the Runtime API plan made from
//! its delta equals the plan over the whole configs.

use std::sync::Arc;

use marathon_lb::haproxy::plan::{plan, Snapshot};
use marathon_lb::marathon::types::AppsBody;
use marathon_lb::model::{self, network::Resolver, HealthMemory, Service};
use marathon_lb::render::{self, Incremental, Options, Rendered};
use marathon_lb::templates::Templates;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::property;

/// One generated app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    id: u8,
    ports: Vec<u16>,
    group: bool,
    vhost: Option<u8>,
    sticky: bool,
    mode: Option<&'static str>,
    auth: bool,
    weight: i8,
    health: Option<&'static str>,
    tasks: Vec<(u8, u16)>,
    redirect: bool,
    enabled: bool,
}

/// One random change to the app set.
#[derive(Debug, Clone)]
pub enum Step {
    Add(AppSpec),
    Remove(usize),
    Replace(usize, AppSpec),
    AddTask(usize, (u8, u16)),
    RemoveTask(usize, usize),
    MoveTask(usize, usize, u8),
    Vhost(usize, Option<u8>),
    Health(usize, Option<&'static str>),
    Port(usize, u16),
    Weight(usize, i8),
}

fn app_spec() -> impl Strategy<Value = AppSpec> {
    (
        (
            0u8..24,
            prop::collection::vec(prop_oneof![Just(80u16), 1000u16..1006], 1..3),
            prop::bool::weighted(0.8),
            prop::option::of(0u8..6),
            any::<bool>(),
        ),
        (
            prop::option::of(prop_oneof![Just("http"), Just("tcp")]),
            prop::bool::weighted(0.2),
            -2i8..3,
            prop::option::of(prop_oneof![Just("HTTP"), Just("TCP")]),
            prop::collection::vec((0u8..5, 31000u16..31004), 0..4),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.9),
        ),
    )
        .prop_map(
            |(
                (id, ports, group, vhost, sticky),
                (mode, auth, weight, health, tasks, redirect, enabled),
            )| {
                AppSpec {
                    id,
                    ports,
                    group,
                    vhost,
                    sticky,
                    mode,
                    auth,
                    weight,
                    health,
                    tasks,
                    redirect,
                    enabled,
                }
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    let i = 0usize..64;
    prop_oneof![
        1 => app_spec().prop_map(Step::Add),
        1 => i.clone().prop_map(Step::Remove),
        1 => (i.clone(), app_spec()).prop_map(|(i, a)| Step::Replace(i, a)),
        3 => (i.clone(), (0u8..5, 31000u16..31004)).prop_map(|(i, t)| Step::AddTask(i, t)),
        3 => (i.clone(), 0usize..4).prop_map(|(i, t)| Step::RemoveTask(i, t)),
        3 => (i.clone(), 0usize..4, 0u8..5).prop_map(|(i, t, h)| Step::MoveTask(i, t, h)),
        1 => (i.clone(), prop::option::of(0u8..6)).prop_map(|(i, v)| Step::Vhost(i, v)),
        1 => (i.clone(), prop::option::of(prop_oneof![Just("HTTP"), Just("TCP")]))
            .prop_map(|(i, h)| Step::Health(i, h)),
        1 => (i.clone(), 1000u16..1010).prop_map(|(i, p)| Step::Port(i, p)),
        1 => (i, -2i8..3).prop_map(|(i, w)| Step::Weight(i, w)),
    ]
}

/// Applies `step` to `apps` (indexes wrap; a step on no app does nothing).
pub fn apply(apps: &mut Vec<AppSpec>, step: &Step) {
    if let Step::Add(app) = step {
        apps.push(app.clone());
        return;
    }
    if apps.is_empty() {
        return;
    }
    let n = apps.len();
    match step.clone() {
        Step::Add(_) => {}
        Step::Remove(i) => {
            apps.remove(i % n);
        }
        Step::Replace(i, a) => {
            apps[i % n] = AppSpec {
                id: apps[i % n].id,
                ..a
            }
        }
        Step::AddTask(i, t) => apps[i % n].tasks.push(t),
        Step::RemoveTask(i, t) => {
            let tasks = &mut apps[i % n].tasks;
            if !tasks.is_empty() {
                tasks.remove(t % tasks.len());
            }
        }
        Step::MoveTask(i, t, host) => {
            let tasks = &mut apps[i % n].tasks;
            if !tasks.is_empty() {
                let t = t % tasks.len();
                tasks[t].0 = host;
            }
        }
        Step::Vhost(i, v) => apps[i % n].vhost = v,
        Step::Health(i, h) => apps[i % n].health = h,
        Step::Port(i, p) => apps[i % n].ports[0] = p,
        Step::Weight(i, w) => apps[i % n].weight = w,
    }
}

/// Marathon's JSON for `app`.
fn app_json(app: &AppSpec, index: usize) -> Value {
    let mut labels = serde_json::Map::new();
    if app.group {
        labels.insert("HAPROXY_GROUP".into(), json!("external"));
    }
    if let Some(v) = app.vhost {
        labels.insert("HAPROXY_0_VHOST".into(), json!(format!("h{v}.example.com")));
    }
    labels.insert("HAPROXY_0_STICKY".into(), json!(app.sticky.to_string()));
    if let Some(mode) = app.mode {
        labels.insert("HAPROXY_1_MODE".into(), json!(mode));
    }
    if app.auth {
        labels.insert(
            "HAPROXY_0_AUTH".into(),
            json!(format!("realm:u{}:p", app.id)),
        );
    }
    if app.weight != 0 {
        labels.insert(
            "HAPROXY_0_BACKEND_WEIGHT".into(),
            json!(app.weight.to_string()),
        );
    }
    if app.redirect {
        labels.insert("HAPROXY_0_REDIRECT_TO_HTTPS".into(), json!("true"));
    }
    if !app.enabled {
        labels.insert("HAPROXY_0_ENABLED".into(), json!("false"));
    }
    let ports: Vec<Value> = app
        .ports
        .iter()
        .enumerate()
        .map(|(k, p)| json!({"port": 10000 + u32::from(app.id) * 20 + k as u32 * 10 + u32::from(*p % 10)}))
        .collect();
    let checks: Vec<Value> = app
        .health
        .iter()
        .map(|protocol| json!({"protocol": protocol, "portIndex": 0, "path": "/h", "timeoutSeconds": 5, "intervalSeconds": 10, "gracePeriodSeconds": 300, "maxConsecutiveFailures": 3}))
        .collect();
    let tasks: Vec<Value> = app
        .tasks
        .iter()
        .enumerate()
        .map(|(k, (host, port))| {
            let ports: Vec<u16> = (0..app.ports.len() as u16).map(|p| port + p * 10).collect();
            json!({"id": format!("t{index}.{k}"), "host": format!("10.0.0.{host}"), "ports": ports})
        })
        .collect();
    json!({
        "id": format!("/team{}/app{}", app.id % 3, app.id),
        "labels": labels,
        "portDefinitions": ports,
        "healthChecks": checks,
        "tasks": tasks,
    })
}

/// The services of `apps` (duplicate ids: the last one wins, as Marathon cannot hold both).
pub fn services(apps: &[AppSpec]) -> Vec<Arc<Service>> {
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<(usize, &AppSpec)> = apps
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, a)| seen.insert(a.id))
        .collect();
    unique.reverse();
    let body = json!({"apps": unique.iter().map(|(i, a)| app_json(a, *i)).collect::<Vec<_>>()})
        .to_string();
    let parsed = AppsBody::parse(body.as_bytes())
        .expect("generated body parses")
        .apps;
    model::build(
        parsed,
        &model::Options::default(),
        &mut Resolver::default(),
        &mut HealthMemory::default(),
    )
    .expect("generated apps model")
}

fn options(haproxy_map: bool, grouped: bool, groups: &str) -> Options {
    Options {
        groups: vec![groups.into()],
        bind_http_https: true,
        ssl_certs: String::new(),
        haproxy_map,
        haproxy_dir: "/etc/haproxy".into(),
        group_https_by_vhost: grouped,
    }
}

fn snapshot(r: &Rendered) -> Snapshot<'_> {
    Snapshot {
        config: &r.config,
        domain_map: &r.domain_map,
        app_map: &r.app_map,
    }
}

/// Renders `services` incrementally and in full, and fails unless they are byte-identical and
/// the delta's plan equals the whole configs' plan against `previous`.
pub fn same_step(
    incremental: &mut Incremental,
    services: Vec<Arc<Service>>,
    previous: Option<&Rendered>,
    templates: &Templates,
    options: &Options,
) -> Result<Rendered, TestCaseError> {
    let full = render::render(&services, templates, options).expect("generated apps render");
    let inc = incremental
        .render(&services, templates, options)
        .expect("incremental renders");
    prop_assert_eq!(&inc.config, &full.config);
    prop_assert_eq!(&inc.domain_map, &full.domain_map);
    prop_assert_eq!(&inc.app_map, &full.app_map);
    incremental.commit(&Arc::new(services));
    let (Some(previous), Some(delta)) = (previous, inc.incremental.as_ref()) else {
        return Ok(inc);
    };
    let base = previous
        .incremental
        .as_ref()
        .map(|d| d.generation)
        .expect("incremental");
    if let Some((before, after)) = delta.texts_since(base) {
        let part = |config| Snapshot {
            config,
            domain_map: "",
            app_map: "",
        };
        prop_assert_eq!(
            plan(Some(part(before)), part(after)),
            plan(Some(snapshot(previous)), snapshot(&full))
        );
    }
    Ok(inc)
}

fn incremental_equals_full(
    (initial, steps, map, grouped): (Vec<AppSpec>, Vec<Step>, bool, bool),
) -> Result<(), TestCaseError> {
    let templates = Templates::builtin();
    for groups in ["external", "*"] {
        let options = options(map, grouped, groups);
        let mut incremental = Incremental::new();
        let mut apps = initial.clone();
        let mut previous = same_step(
            &mut incremental,
            services(&apps),
            None,
            &templates,
            &options,
        )?;
        for step in &steps {
            apply(&mut apps, step);
            previous = same_step(
                &mut incremental,
                services(&apps),
                Some(&previous),
                &templates,
                &options,
            )?;
        }
    }
    Ok(())
}

property!(
    incremental_equals_full,
    (
        prop::collection::vec(app_spec(), 0..12),
        prop::collection::vec(step(), 1..12),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
);
