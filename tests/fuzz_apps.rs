//! Fuzz-style run of the real binary, one-shot (`--apps-file`, `--dry`, `--group '*'`), over
//! mutated copies of the conformance corpus's `apps.json` files: byte flips, truncations,
//! inserted garbage and non-UTF-8, deep nesting, values of the wrong JSON type, thousands of
//! labels and tasks. Every run must exit 0, or 1 with an error message: never a signal, a panic
//! (101) or a hang. A failing input is saved under `target/fuzz-apps/`.
//!
//! ```text
//! cargo test --release --test fuzz_apps -- --ignored --nocapture
//! ```
//!
//! `FUZZ_RUNS` (default 400) and `FUZZ_SEED` (default 10) choose the runs; the seed and the
//! run number replay one input.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_marathon-lb");

/// Longest a one-shot run may take before it counts as a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A small deterministic generator (SplitMix64), so a seed replays a whole run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The corpus: every conformance case's `apps.json`.
fn corpus() -> Vec<Vec<u8>> {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap_or_else(|e| panic!("{}: {e}", cases.display()))
        .map(|e| e.unwrap().path().join("apps.json"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One mutation of `input`, and its name for the report.
fn mutate(rng: &mut Rng, input: &[u8]) -> (&'static str, Vec<u8>) {
    let mut bytes = input.to_vec();
    match rng.below(9) {
        0 => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= (rng.below(255) + 1) as u8;
                }
            }
            ("byte flips", bytes)
        }
        1 => {
            bytes.truncate(rng.below(bytes.len()));
            ("truncation", bytes)
        }
        2 => {
            const GARBAGE: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\0",
                b"\n",
                b"\"",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"\\",
                b"\\u0000",
                b"\\ud800",
                b"1e999",
                b"-",
                b"\r\n\tglobal\n",
            ];
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                let junk = rng.pick(GARBAGE);
                bytes.splice(at..at, junk.iter().copied());
            }
            ("inserted garbage", bytes)
        }
        3 => ("deep nesting", nest(rng, &bytes)),
        _ => match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut value) => {
                let name = mutate_json(rng, &mut value);
                (name, value.to_string().into_bytes())
            }
            Err(_) => {
                bytes.reverse();
                ("reversed (input not JSON)", bytes)
            }
        },
    }
}

/// A nested array or object of random depth (up to 1M levels) as a new top-level member or as
/// a label value.
fn nest(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let depth = *rng.pick(&[64, 129, 10_000, 1_000_000]);
    let nested = if rng.below(2) == 0 {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let anchor = if rng.below(2) == 0 {
        text.find("\"labels\":{")
            .map(|at| at + "\"labels\":{".len())
    } else {
        None
    };
    match anchor {
        Some(at) => format!(
            "{}\"HAPROXY_0_VHOST\":{nested},{}",
            &text[..at],
            &text[at..]
        ),
        None => match text.find('{') {
            Some(at) => format!("{}\"nest\":{nested},{}", &text[..=at], &text[at + 1..]),
            None => nested,
        },
    }
    .into_bytes()
}

/// A JSON-aware mutation of the parsed body; returns its name.
fn mutate_json(rng: &mut Rng, value: &mut Value) -> &'static str {
    let apps_len = value["apps"].as_array().map_or(0, Vec::len);
    let app = rng.below(apps_len);
    match rng.below(5) {
        0 if apps_len > 0 => {
            let labels = &mut value["apps"][app]["labels"];
            if !labels.is_object() {
                *labels = json!({});
            }
            let names = [
                "PORT",
                "VHOST",
                "MODE",
                "BACKEND_HEAD",
                "FRONTEND_HEAD",
                "PATH",
                "AUTH",
            ];
            for i in 0..5_000 {
                let key = format!("HAPROXY_{}_{}", i % 12, rng.pick(&names));
                let key = if i % 3 == 0 {
                    format!("{key}_{i}")
                } else {
                    key
                };
                labels[key] = random_value(rng);
            }
            "5,000 labels"
        }
        1 if apps_len > 0 => {
            let count = *rng.pick(&[3_000, 3_000, 3_000, 33_000]);
            let tasks: Vec<Value> = (0..count)
                .map(|i| {
                    json!({"id": format!("t.{i}"), "host": format!("10.0.{}.{}", i / 250, i % 250),
                        "ports": [1024 + i % 60_000], "state": "TASK_RUNNING"})
                })
                .collect();
            value["apps"][app]["tasks"] = Value::Array(tasks);
            "3,000 or 33,000 tasks"
        }
        2 if apps_len > 1 => {
            let copy = value["apps"][app].clone();
            if let Some(apps) = value["apps"].as_array_mut() {
                apps.push(copy);
            }
            "duplicated app"
        }
        _ => {
            let count = nodes(value);
            for _ in 0..=rng.below(3) {
                let target = rng.below(count);
                let replacement = random_value(rng);
                replace_nth(value, &mut { target }, replacement);
            }
            "wrong-type values"
        }
    }
}

/// A value of any JSON type, with the edge cases that hurt: huge and negative numbers, control
/// characters and braces in strings, a 100 kB string.
fn random_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e308),
        4 => serde_json::from_str("18446744073709551616").unwrap(),
        5 => json!(""),
        6 => json!("a\nbind :80\n"),
        7 => json!("{"),
        8 => json!([]),
        9 => json!({"k": "v"}),
        10 => json!("x".repeat(100_000)),
        _ => json!("80\u{0}\u{1b}"),
    }
}

fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(nodes).sum(),
        _ => 0,
    }
}

/// Replaces the `n`th node in depth-first order; `true` once done.
fn replace_nth(value: &mut Value, n: &mut usize, replacement: Value) -> bool {
    if *n == 0 {
        *value = replacement;
        return true;
    }
    *n -= 1;
    let children: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) => map.values_mut().collect(),
        _ => return false,
    };
    for child in children {
        if replace_nth(child, n, replacement.clone()) {
            return true;
        }
    }
    false
}

/// An app with 33,000 tasks on one port: every server gets a distinct id (once hung forever,
/// as the 32,766 ids of the original's hash ran out).
#[test]
#[ignore = "runs the release binary: cargo test --release --test fuzz_apps -- --ignored"]
fn a_backend_of_33000_servers_gets_distinct_ids() {
    let tasks: Vec<Value> = (0..33_000)
        .map(|i| {
            json!({"id": format!("t.{i}"), "host": format!("127.0.{}.{}", i / 250, i % 250),
                "ports": [1024 + i], "state": "TASK_RUNNING"})
        })
        .collect();
    let apps = json!({"apps": [{"id": "/big", "labels": {"HAPROXY_GROUP": "external"},
        "portDefinitions": [{"port": 10001}], "tasks": tasks}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apps.json");
    std::fs::write(&path, apps.to_string()).unwrap();
    let start = Instant::now();
    let out = Command::new(BIN)
        .args([
            "--apps-file",
            path.to_str().unwrap(),
            "--dry",
            "--group",
            "*",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<&str> = config
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .filter_map(|l| l.split(" id ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 33_000);
    assert_eq!(distinct.len(), 33_000);
    eprintln!("33,000 servers rendered in {:.2?}", start.elapsed());
}

/// How one run ended.
struct Ran {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs the binary one-shot on `apps` in a fresh temp dir, killing it after [`RUN_TIMEOUT`].
fn run(apps: &[u8]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apps.json"), apps).unwrap();
    let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .args(["--apps-file", "apps.json", "--dry", "--group", "*"])
        .args(["--haproxy-config", "haproxy.cfg"])
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (key, _) in std::env::vars() {
        if key.starts_with("HAPROXY_") || key == "FRAMEWORK_NAME" {
            cmd.env_remove(key);
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > RUN_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let code = status.and_then(|s| s.code());
    let stderr = match status {
        None => format!("hung: killed after {RUN_TIMEOUT:?}\n{stderr}"),
        Some(s) if s.code().is_none() => format!("killed by a signal: {s:?}\n{stderr}"),
        Some(_) => stderr,
    };
    Ran { code, stderr, took }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "fuzz run of the release binary: cargo test --release --test fuzz_apps -- --ignored"]
fn mutated_apps_bodies_exit_cleanly() {
    let corpus = corpus();
    assert!(!corpus.is_empty(), "no conformance cases found");
    let runs = env_or("FUZZ_RUNS", 400);
    let seed = env_or("FUZZ_SEED", 10);
    let saved = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-apps");
    let (mut ok, mut refused, mut failures) = (0, 0, Vec::new());
    let mut slowest = (Duration::ZERO, "");
    let start = Instant::now();
    for n in 0..runs {
        let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(n));
        let input = &corpus[rng.below(corpus.len())];
        let (mutation, apps) = mutate(&mut rng, input);
        let ran = run(&apps);
        if ran.took > slowest.0 {
            slowest = (ran.took, mutation);
        }
        match ran.code {
            Some(0) => ok += 1,
            Some(1) if ran.stderr.contains("error") => refused += 1,
            _ => {
                std::fs::create_dir_all(&saved).unwrap();
                let path = saved.join(format!("seed{seed}-run{n}.json"));
                std::fs::write(&path, &apps).unwrap();
                std::fs::write(path.with_extension("stderr"), &ran.stderr).unwrap();
                failures.push(format!(
                    "run {n} ({mutation}): exit {:?}, input {}\n{}",
                    ran.code,
                    path.display(),
                    ran.stderr.lines().take(5).collect::<Vec<_>>().join("\n")
                ));
            }
        }
    }
    eprintln!(
        "fuzz_apps: {runs} runs (seed {seed}) in {:.1?}: {ok} exit 0, {refused} exit 1 with an \
         error, {} failures; slowest {:.2?} ({})",
        start.elapsed(),
        failures.len(),
        slowest.0,
        slowest.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
