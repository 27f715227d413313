//! Golden files: whole configs (and map files) rendered through the library API.
//!
//! Each folder under `tests/golden/` holds `apps.json` (a Marathon `/v2/apps` body), `args` (the
//! command line, one argument per line) and the expected output: `expected.cfg`, plus
//! `domain2backend.map` and `app2backend.map` when the args contain `--haproxy-map`. The run
//! uses `--haproxy-config out/haproxy.cfg` (so maps are referenced as `out/...map`) and the
//! built-in templates, with no environment.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files; review the diff
//! before committing it.

use std::path::{Path, PathBuf};

use clap::Parser;
use marathon_lb::config::Cli;
use marathon_lb::run::{self, Memory};
use marathon_lb::templates::Templates;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("apps.json").is_file())
        .collect();
    cases.sort();
    cases
}

/// The rendered files of one case: `(file name, content)`.
fn render(case: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let apps = case.join("apps.json");
    let args = std::fs::read_to_string(case.join("args")).map_err(|e| e.to_string())?;
    let mut argv = vec![
        "marathon-lb".to_owned(),
        "--apps-file".to_owned(),
        apps.display().to_string(),
        "--haproxy-config".to_owned(),
        "out/haproxy.cfg".to_owned(),
    ];
    argv.extend(args.lines().map(str::to_owned));
    let config = Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .validate(|_| None)
        .map_err(|e| e.to_string())?;
    let body = run::read_apps_file(&apps).map_err(|e| e.to_string())?;
    let rendered = run::render_body(
        &body,
        "apps.json",
        &config,
        &Templates::builtin(),
        &mut Memory::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut files = vec![("expected.cfg", rendered.config.to_string())];
    if config.output.map {
        files.push(("domain2backend.map", rendered.domain_map));
        files.push(("app2backend.map", rendered.app_map));
    }
    Ok(files)
}

/// The first differing line, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        if e.get(i) != a.get(i) {
            return format!(
                "line {}:\n  expected: {:?}\n  actual:   {:?}",
                i + 1,
                e.get(i),
                a.get(i)
            );
        }
    }
    "only line endings or the final newline differ".to_owned()
}

#[test]
fn golden_configs_and_maps() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 8,
        "expected at least 8 golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let files = match render(case) {
            Ok(files) => files,
            Err(e) => {
                failures.push(format!("{name}: render failed: {e}"));
                continue;
            }
        };
        if !files.iter().any(|(f, _)| f.ends_with(".map")) {
            for map in ["domain2backend.map", "app2backend.map"] {
                if case.join(map).exists() {
                    failures.push(format!("{name}: {map} exists but --haproxy-map is off"));
                }
            }
        }
        for (file, actual) in files {
            let path = case.join(file);
            if update {
                std::fs::write(&path, &actual).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(expected) if expected == actual => {}
                Ok(expected) => failures.push(format!(
                    "{name}/{file} differs ({})",
                    first_difference(&expected, &actual)
                )),
                Err(e) => failures.push(format!("{name}/{file}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es) (UPDATE_GOLDEN=1 rewrites them; review the diff):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_changed_expectation_is_reported() {
    // The comparison itself must be able to fail: a one-byte change in a rendered config is
    // caught and located.
    let case = &cases()[0];
    let (_, config) = render(case).unwrap().remove(0);
    let mut changed = config.clone();
    changed.insert(config.len() / 2, '#');
    assert_ne!(changed, config);
    assert!(first_difference(&changed, &config).starts_with("line "));
}
