//! The search against a fake HAProxy: configs are one `backend` per service, and the fake
//! rejects lines holding `bogus` (pointing at them, or not) and duplicate backend names.

use std::cell::Cell;
use std::sync::Arc;

use super::*;
use crate::haproxy::Validated;

/// A service of app `id` whose backend section holds `extra` (from a label).
fn service(id: &str, port: i64, extra: Option<&str>) -> Arc<Service> {
    let mut s = Service::new(id.into(), port, None, false);
    s.labels.push(("HAPROXY_GROUP".into(), "external".into()));
    if let Some(extra) = extra {
        s.labels
            .push(("HAPROXY_0_BACKEND_SERVER_OPTIONS".into(), extra.into()));
    }
    Arc::new(s)
}

fn render(services: &[Arc<Service>]) -> Result<Rendered, render::Error> {
    let mut config = String::from("global\n  maxconn 10\n");
    for s in services {
        config.push_str(&format!("backend {}\n", attribute::backend_name(s)));
        if let Some((_, extra)) = s.labels.iter().find(|(n, _)| n.ends_with("SERVER_OPTIONS")) {
            config.push_str(&format!("  {extra}\n"));
        }
    }
    Ok(Rendered {
        config: Arc::new(config),
        domain_map: String::new(),
        app_map: String::new(),
        incremental: None,
    })
}

/// A fake `haproxy -c`; `with_lines` decides whether its alerts say where the problem is.
fn fake_haproxy(rendered: &Rendered, with_lines: bool) -> Result<ValidateOutput, ValidateError> {
    let mut alerts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in rendered.config.lines().enumerate() {
        if line.contains("bogus") {
            alerts.push(if with_lines {
                format!(
                    "[ALERT] config : parsing [haproxy.cfg:{}] : unknown keyword 'bogus'",
                    i + 1
                )
            } else {
                "[ALERT] config : something is wrong somewhere".to_owned()
            });
        }
        if line.starts_with("backend ") && !seen.insert(line) {
            alerts.push(format!(
                "[ALERT] config : Parsing [haproxy.cfg:{}]: {line} has the same name as another",
                i + 1
            ));
        }
        if line.contains("global-bug") {
            alerts.push("[ALERT] config : global problem".to_owned());
        }
    }
    if alerts.is_empty() {
        let warnings = rendered
            .config
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("warn-me"))
            .map(|(i, _)| format!("[WARNING] config : parsing [haproxy.cfg:{}] : hm", i + 1))
            .collect();
        return Ok(ValidateOutput {
            validated: Validated::unchecked(rendered.clone()),
            warnings,
        });
    }
    alerts.push("[ALERT] config : Fatal errors found in configuration.".to_owned());
    Err(ValidateError::Rejected {
        alerts: alerts.join("\n"),
    })
}

/// `n` good apps `/app-NNNN`, with `bad` replacing some of them.
fn apps(n: usize, bad: &[(usize, &str)]) -> Vec<Arc<Service>> {
    (0..n)
        .map(|i| {
            let extra = bad.iter().find(|(b, _)| *b == i).map(|(_, e)| *e);
            service(&format!("/app-{i:04}"), 10_000 + i as i64, extra)
        })
        .collect()
}

fn run(services: &[Arc<Service>], with_lines: bool, attribute: bool) -> Result<Isolation, Error> {
    let validate = |r: &Rendered| fake_haproxy(r, with_lines);
    if attribute {
        isolate(services, render, validate)
    } else {
        isolate_by_bisection(services, render, validate)
    }
}

fn rejected_ids(isolation: &Isolation) -> Vec<&str> {
    isolation
        .rejected
        .iter()
        .map(|r| r.app_id.as_str())
        .collect()
}

#[test]
fn a_valid_config_costs_one_check() {
    let services = apps(20, &[]);
    let isolation = run(&services, true, true).unwrap();
    assert_eq!(isolation.checks_run, 1);
    assert_eq!(isolation.kept.len(), 20);
    assert!(isolation.rejected.is_empty());
}

#[test]
fn attribution_finds_a_bad_app_in_two_checks() {
    let services = apps(100, &[(37, "bogus-directive 1")]);
    let isolation = run(&services, true, true).unwrap();
    assert_eq!(isolation.checks_run, 2);
    assert_eq!(rejected_ids(&isolation), ["/app-0037"]);
    let rejected = &isolation.rejected[0];
    assert_eq!(rejected.labels, ["HAPROXY_0_BACKEND_SERVER_OPTIONS"]);
    assert!(rejected.error_line.contains("unknown keyword 'bogus'"));
    assert_eq!(isolation.kept.len(), 99);
    assert!(!isolation.validated.rendered().config.contains("bogus"));
}

#[test]
fn an_already_rendered_full_config_is_not_rendered_again() {
    let services = apps(10, &[(4, "bogus-directive 1")]);
    let renders = Cell::new(0);
    let counting_render = |s: &[Arc<Service>]| {
        renders.set(renders.get() + 1);
        render(s)
    };
    let full = render(&services).unwrap();
    let isolation = isolate_rendered(&services, full, counting_render, |r: &Rendered| {
        fake_haproxy(r, true)
    })
    .unwrap();
    assert_eq!(rejected_ids(&isolation), ["/app-0004"]);
    assert_eq!((isolation.checks_run, renders.get()), (2, 1));
}

#[test]
fn bisection_finds_bad_apps_in_log_checks_each() {
    for (n, bad) in [
        (100, vec![37]),
        (100, vec![0]),
        (100, vec![99]),
        (1000, vec![3, 500, 999]),
        (1, vec![0]),
    ] {
        let faults: Vec<(usize, &str)> = bad.iter().map(|&b| (b, "bogus 1")).collect();
        let services = apps(n, &faults);
        for attribute in [false, true] {
            let isolation = run(&services, false, attribute).unwrap();
            let want: Vec<String> = bad.iter().map(|b| format!("/app-{b:04}")).collect();
            assert_eq!(rejected_ids(&isolation), want, "n={n} bad={bad:?}");
            assert_eq!(isolation.kept.len(), n - bad.len());
            let log = (n as f64).log2().ceil() as usize;
            let bound = 2 + bad.len() * (log + 2);
            assert!(
                isolation.checks_run <= bound,
                "n={n} bad={bad:?}: {} checks > {bound}",
                isolation.checks_run
            );
            // Without a line to match, the app's per-port labels are reported.
            assert_eq!(
                isolation.rejected[0].labels,
                ["HAPROXY_0_BACKEND_SERVER_OPTIONS"]
            );
        }
    }
}

#[test]
fn apps_bad_only_together_keep_the_earlier_one() {
    // `/a/b` and `/a_b` both render `backend a_b_80`.
    let mut services = apps(30, &[]);
    services.push(service("/a/b", 80, None));
    services.push(service("/a_b", 80, None));
    services.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    for attribute in [true, false] {
        let isolation = run(&services, true, attribute).unwrap();
        assert_eq!(rejected_ids(&isolation), ["/a_b"], "attribute={attribute}");
        assert!(isolation.kept.iter().any(|s| s.app_id == "/a/b"));
        assert!(isolation.rejected[0].error_line.contains("same name"));
    }
}

#[test]
fn a_config_bad_without_any_app_is_an_error() {
    let mut services = apps(10, &[]);
    Arc::make_mut(&mut services[0]).app_id = "/app".into();
    let render_bad = |s: &[Arc<Service>]| {
        render(s).map(|mut r| {
            Arc::make_mut(&mut r.config).push_str("  global-bug\n");
            r
        })
    };
    let checks = Cell::new(0);
    let validate = |r: &Rendered| {
        checks.set(checks.get() + 1);
        fake_haproxy(r, true)
    };
    let err = isolate(&services, render_bad, validate).unwrap_err();
    assert!(matches!(err, Error::Global { ref alerts } if alerts.contains("global problem")));
    assert!(checks.get() <= 2 + 4 + 1, "{} checks", checks.get());
}

#[test]
fn warnings_in_an_apps_section_are_attributed_to_it() {
    let services = apps(5, &[(2, "warn-me")]);
    let isolation = run(&services, true, true).unwrap();
    assert_eq!(isolation.checks_run, 1);
    assert_eq!(
        isolation.warnings,
        [AppWarning {
            app_id: "/app-0002".into(),
            line: "[WARNING] config : parsing [haproxy.cfg:6] : hm".into()
        }]
    );
}

#[test]
fn haproxys_padding_and_pid_are_dropped_from_lines() {
    assert_eq!(
        without_pid("[ALERT]    (18618) : config : parsing [haproxy.cfg:7] : bad\n"),
        "[ALERT] config : parsing [haproxy.cfg:7] : bad"
    );
    assert_eq!(without_pid("[WARNING] config : x"), "[WARNING] config : x");
    assert_eq!(without_pid("no tag"), "no tag");
}

#[test]
fn label_values_match_as_whole_words_around_placeholders() {
    assert!(value_shows_in("tcp", &["incompatible tcp backend"]));
    assert!(!value_shows_in("tcp", &["incompatible tcpx backend"]));
    assert!(!value_shows_in("1", &["line 1"]), "too short to tell");
    assert!(value_shows_in(
        "  timeout client 1s\n  bogus {backend} x\n",
        &["  bogus web_80 x"]
    ));
    assert!(!value_shows_in(
        "  bogus {backend} y\n",
        &["  bogus web_80 x"]
    ));
    assert!(value_shows_in("a.example.com", &["-i a.example.com"]));
}
