//! A slice of the conformance corpus, run exactly as `../shared/conformance/run` runs it, so
//! that `cargo test` alone guards the renderer and the one-shot command line.
//!
//! Each folder under `tests/conformance/cases/` is a corpus case (`apps.json`, `args`, optional
//! `env.json` and `templates/`, `expected/`). A case runs the real binary as
//!
//! ```text
//! env <inherited env minus HAPROXY_*, FRAMEWORK_NAME, DCOS_SERVICE_ACCOUNT_CREDENTIAL> <env.json>
//! marathon-lb --apps-file CASE/apps.json --haproxy-config out/haproxy.cfg \
//!     --skip-validation --command true <args, one per line>
//! ```
//!
//! in a fresh temporary directory holding an empty `out/` and a copy of `CASE/templates`.
//! Afterwards `out/` must hold exactly the files of `CASE/expected/`, byte for byte, and the exit
//! status must be 0 or the number in `expected/exit-code`. Every failing case is reported, each
//! with a short diff. How the cases were chosen: `tests/conformance/README.md`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The runner's per-case limit; a one-shot run must never wait for a reload.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Variables the runner removes besides `HAPROXY_*`: they change what is rendered.
const STRIP_ENV: [&str; 2] = ["FRAMEWORK_NAME", "DCOS_SERVICE_ACCOUNT_CREDENTIAL"];
/// Lines of diff shown per differing file, enough to locate the change.
const DIFF_LINES: usize = 24;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("apps.json").is_file() && p.join("args").is_file())
        .collect();
    cases.sort();
    cases
}

/// The `args` file, one argument per line (a final newline ends the last one).
fn read_args(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case.join("args")).unwrap();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

fn read_env(case: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(case.join("env.json")) else {
        return Vec::new();
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// Every file under `root`, keyed by its path relative to `root` (empty when `root` is absent).
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The inherited environment minus what the runner strips, plus the case's `env.json`.
fn case_env(case: &Path) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !k.starts_with("HAPROXY_") && !STRIP_ENV.contains(&k.as_ref())
        })
        .collect();
    for (k, v) in read_env(case) {
        env.retain(|(old, _)| old.to_string_lossy() != k);
        env.push((k.into(), v.into()));
    }
    env
}

/// How the binary's run ended.
struct Outcome {
    /// The exit status; `None` when it timed out or was killed by a signal.
    code: Option<i32>,
    /// Why there is no exit status, if there is none.
    problem: Option<String>,
    /// The last lines of its standard error, to explain a wrong exit status.
    stderr_tail: String,
}

/// Runs the binary for `case` in `work` (stdout and stderr go to files there, so a chatty run
/// cannot fill a pipe and block).
fn run_binary(case: &Path, work: &Path) -> Outcome {
    let stderr_path = work.join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .arg("--apps-file")
        .arg(case.join("apps.json"))
        .args(["--haproxy-config", "out/haproxy.cfg", "--skip-validation"])
        .args(["--command", "true"])
        .args(read_args(case))
        .current_dir(work)
        .env_clear()
        .envs(case_env(case))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(work.join("stdout")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let stderr_tail = lines[lines.len().saturating_sub(3)..].join("\n    stderr: ");
    let problem = match status {
        None => Some(format!("timed out after {}s", TIMEOUT.as_secs())),
        Some(s) if s.code().is_none() => Some(format!("{s}\n    stderr: {stderr_tail}")),
        Some(_) => None,
    };
    Outcome {
        code: status.and_then(|s| s.code()),
        problem,
        stderr_tail,
    }
}

/// A short diff of two texts: the changed block between their common first and last lines.
fn short_diff(name: &str, expected: &[u8], actual: &[u8]) -> String {
    let (e, a) = (
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(actual),
    );
    let (e, a): (Vec<&str>, Vec<&str>) = (
        e.split_inclusive('\n').collect(),
        a.split_inclusive('\n').collect(),
    );
    let prefix = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let suffix = e[prefix..]
        .iter()
        .rev()
        .zip(a[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (gone, new) = (&e[prefix..e.len() - suffix], &a[prefix..a.len() - suffix]);
    let mut lines = vec![format!("--- expected/{name}"), format!("+++ out/{name}")];
    lines.push(format!("@@ line {} @@", prefix + 1));
    let changed = gone
        .iter()
        .map(|l| format!("-{}", l.trim_end_matches('\n')))
        .chain(new.iter().map(|l| format!("+{}", l.trim_end_matches('\n'))));
    let changed: Vec<String> = changed.collect();
    if changed.iter().all(|l| l.len() == 1) || gone == new {
        lines.push("  (texts differ only in line endings or a final newline)".to_owned());
    }
    lines.extend(changed.iter().take(DIFF_LINES).cloned());
    if changed.len() > DIFF_LINES {
        lines.push(format!(
            "... ({} more diff lines)",
            changed.len() - DIFF_LINES
        ));
    }
    lines.iter().map(|l| format!("    {l}\n")).collect()
}

/// Runs one case; returns its problems (empty when it passes), diffs included.
fn run_case(case: &Path) -> Vec<String> {
    let mut expected = read_tree(&case.join("expected"));
    let want_rc: i32 = match expected.remove("exit-code") {
        Some(code) => {
            let code = String::from_utf8(code).unwrap();
            let code = code.trim();
            if code.is_empty() {
                0
            } else {
                code.parse().unwrap()
            }
        }
        None => 0,
    };
    let work = tempfile::Builder::new()
        .prefix("mlb-conf-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(work.path().join("out")).unwrap();
    if case.join("templates").is_dir() {
        copy_tree(&case.join("templates"), &work.path().join("templates"));
    }
    let outcome = run_binary(case, work.path());
    let mut problems: Vec<String> = outcome.problem.into_iter().collect();
    if let Some(rc) = outcome.code.filter(|rc| *rc != want_rc) {
        let stderr = outcome.stderr_tail;
        problems.push(format!(
            "exit status {rc}, expected {want_rc}\n    stderr: {stderr}"
        ));
    }
    let got = read_tree(&work.path().join("out"));
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(got.keys()).collect();
    for name in names {
        match (expected.get(name), got.get(name)) {
            (Some(_), None) => problems.push(format!("missing out/{name}")),
            (None, Some(_)) => problems.push(format!("unexpected out/{name}")),
            (Some(e), Some(g)) if e != g => {
                problems.push(format!("out/{name} differs\n{}", short_diff(name, e, g)))
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn conformance_slice_matches_the_reference_outputs() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "only {} cases in tests/conformance/cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let problems = run_case(case);
        if !problems.is_empty() {
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            failures.push(format!("FAIL {name}: {}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
