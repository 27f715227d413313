//! The live loop's render at 10,000 apps: a full render against [`render::Incremental`] after a
//! one-task change (one server moves) and after a one-label change (one app's vhost), each pass
//! rendering the new services and committing them, as the live pass does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use marathon_lb::config::Config;
use marathon_lb::model::Service;
use marathon_lb::render::{self, Incremental};
use marathon_lb::templates::Templates;

use super::{median, ms};

/// Passes per measurement.
const PASSES: usize = 30;

/// Median time of `PASSES` passes, each rendering the next of two alternating service sets.
fn passes(
    versions: &[Arc<Vec<Arc<Service>>>; 2],
    mut pass: impl FnMut(&Arc<Vec<Arc<Service>>>) -> String,
) -> Duration {
    let mut times = Vec::with_capacity(PASSES);
    let mut bytes = 0;
    for i in 0..PASSES {
        let t = Instant::now();
        bytes += pass(&versions[i % 2]).len();
        times.push(t.elapsed());
    }
    assert!(bytes > 0);
    median(&times)
}

/// Prints the table for `services` (sorted, as modeled).
pub fn table(services: Vec<Arc<Service>>, config: &Config, templates: &Templates) {
    let options = &config.render;
    let base = Arc::new(services);
    let task = {
        let mut changed = (*base).clone();
        let service = changed.iter_mut().find(|s| !s.backends.is_empty()).unwrap();
        Arc::make_mut(service).backends[0].port += 1;
        Arc::new(changed)
    };
    let label = {
        let mut changed = (*base).clone();
        let service = changed.iter_mut().find(|s| s.hostname.is_some()).unwrap();
        Arc::make_mut(service).hostname = Some("changed.example.com".into());
        Arc::new(changed)
    };
    let full = passes(&[base.clone(), task.clone()], |s| {
        render::render(s, templates, options)
            .unwrap()
            .config
            .to_string()
    });
    let mut incremental = Incremental::new();
    let mut inc = |s: &Arc<Vec<Arc<Service>>>| {
        let rendered = incremental.render(s, templates, options).unwrap();
        incremental.commit(s);
        rendered.config.to_string()
    };
    inc(&base);
    let one_task = passes(&[task, base.clone()], &mut inc);
    let one_label = passes(&[label, base.clone()], &mut inc);
    println!("\nLive render at {} services (median of {PASSES} passes; each pass renders the whole config):\n", base.len());
    println!("| pass | full render | incremental | speed-up |");
    println!("|---|---:|---:|---:|");
    for (name, time) in [
        ("one task moved", one_task),
        ("one vhost label changed", one_label),
    ] {
        println!(
            "| {name} | {} | {} | {:.1}x |",
            ms(full),
            ms(time),
            full.as_secs_f64() / time.as_secs_f64()
        );
    }
}
