//! Differential tests against the real Python (`python3`), whose semantics the original's
//! output depends on: `str.format`, `int(str)` and `repr(float)`. One `python3` process
//! answers a whole batch of generated inputs. Skipped (with a message) without `python3`.
//!
//! Known, intended gaps that are counted, not failed: placeholders the templates do not
//! support (`{x!r}`, `{x:>4}`, `{x[0]}`: errors here, rendered by Python), and integers that
//! Python reads but an `i64` cannot hold or that use non-ASCII digits (`int("\u{664}")`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use marathon_lb::compat::{float_str, parse_int};
use marathon_lb::templates::{format, FormatError};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use crate::formatter::{args, template};

/// Reads one JSON request per line, answers one JSON line each.
const SCRIPT: &str = r#"
import json, struct, sys
for line in sys.stdin:
    req = json.loads(line)
    try:
        if req["kind"] == "format":
            out = req["template"].format(**req["args"])
        elif req["kind"] == "int":
            out = str(int(req["text"]))
        else:
            out = repr(struct.unpack("<d", struct.pack("<Q", req["bits"]))[0])
        print(json.dumps({"ok": out}))
    except Exception as e:
        print(json.dumps({"err": type(e).__name__}))
"#;

/// Python's answers to `requests`, or `None` when there is no `python3`.
fn ask_python(requests: &[Value]) -> Option<Vec<Value>> {
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut input = String::new();
    for request in requests {
        input.push_str(&request.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take()?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    assert!(output.status.success(), "python3 failed");
    let answers: Vec<Value> = String::from_utf8(output.stdout)
        .ok()?
        .lines()
        .map(|l| serde_json::from_str(l).expect("python answered JSON"))
        .collect();
    assert_eq!(answers.len(), requests.len());
    Some(answers)
}

/// `count` values of `strategy` (deterministic seed, so a failure replays).
fn sample<S: Strategy>(strategy: S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

fn cases(default: usize) -> usize {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the Rust formatter succeeds, Python gives the same text; where Python fails, so does
/// the Rust formatter; a Rust error other than "unsupported" is a Python error too.
fn format_matches_python(count: usize) {
    let start = Instant::now();
    let inputs = sample((template(), args()), count);
    // `args` may repeat a key: Python gets the first value, as the formatter uses the first.
    let requests: Vec<Value> = inputs
        .iter()
        .map(|(template, args)| {
            let mut map = serde_json::Map::new();
            for (k, v) in args {
                map.entry(k.clone())
                    .or_insert_with(|| Value::from(v.clone()));
            }
            json!({"kind": "format", "template": template, "args": map})
        })
        .collect();
    let Some(answers) = ask_python(&requests) else {
        eprintln!("python3 not found: format_matches_python skipped");
        return;
    };
    let mut unsupported = 0;
    for ((text, args), answer) in inputs.iter().zip(&answers) {
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ours = format(text, &args);
        match (&ours, answer.get("ok")) {
            (Ok(out), Some(py)) => assert_eq!(py, out, "{text:?} {args:?}"),
            (Err(FormatError::Unsupported(_)), Some(_)) => unsupported += 1,
            (Err(_), None) => {}
            _ => panic!("{text:?} with {args:?}: ours {ours:?}, Python {answer}"),
        }
    }
    eprintln!(
        "format vs Python: {count} templates agree ({unsupported} unsupported forms Python renders) in {:.2?}",
        start.elapsed()
    );
}

/// `parse_int` reads what Python's `int` reads, with the same value, within `i64` and ASCII
/// digits; everything it rejects Python rejects or is one of those two gaps.
fn int_matches_python(count: usize) {
    let start = Instant::now();
    let strategy = prop_oneof![
        "[ \t\n\x0b\x0c\r\x1c-\x1f\u{85}\u{a0}\u{3000}]{0,2}[+-]{0,2}[0-9_]{0,21}[ \x1c\u{85}]{0,2}",
        "[0-9\u{664}\u{ff11} +_-]{0,6}",
        ".{0,8}",
    ];
    let inputs = sample(strategy, count);
    let requests: Vec<Value> = inputs
        .iter()
        .map(|t| json!({"kind": "int", "text": t}))
        .collect();
    let Some(answers) = ask_python(&requests) else {
        eprintln!("python3 not found: int_matches_python skipped");
        return;
    };
    let mut gaps = 0;
    for (text, answer) in inputs.iter().zip(&answers) {
        let python = answer.get("ok").and_then(Value::as_str);
        match (parse_int(text), python) {
            (Some(ours), Some(py)) => assert_eq!(py, ours.to_string(), "{text:?}"),
            (None, None) => {}
            (None, Some(py)) => {
                let wide = py.parse::<i64>().is_err();
                let non_ascii = text.chars().any(|c| c.is_numeric() && !c.is_ascii_digit());
                assert!(
                    wide || non_ascii,
                    "{text:?}: Python reads {py}, parse_int does not"
                );
                gaps += 1;
            }
            (Some(ours), None) => panic!("{text:?}: parse_int reads {ours}, Python refuses it"),
        }
    }
    eprintln!(
        "int vs Python: {count} strings agree ({gaps} known gaps) in {:.2?}",
        start.elapsed()
    );
}

/// `float_str` is Python's `repr(float)` for every bit pattern.
fn float_matches_python(count: usize) {
    let start = Instant::now();
    let inputs = sample(
        prop_oneof![
            any::<u64>(),
            any::<f64>().prop_map(f64::to_bits),
            (-100i32..100).prop_map(|i| (f64::from(i) / 8.0).to_bits())
        ],
        count,
    );
    let requests: Vec<Value> = inputs
        .iter()
        .map(|b| json!({"kind": "float", "bits": b}))
        .collect();
    let Some(answers) = ask_python(&requests) else {
        eprintln!("python3 not found: float_matches_python skipped");
        return;
    };
    for (bits, answer) in inputs.iter().zip(&answers) {
        let ours = float_str(f64::from_bits(*bits));
        assert_eq!(answer["ok"], ours.as_str(), "bits {bits:#x}");
    }
    eprintln!(
        "float vs Python: {count} floats agree in {:.2?}",
        start.elapsed()
    );
}

#[test]
fn format_agrees_with_python() {
    format_matches_python(cases(crate::CASES as usize));
}

#[test]
fn int_agrees_with_python() {
    int_matches_python(cases(crate::CASES as usize));
}

#[test]
fn float_agrees_with_python() {
    float_matches_python(cases(crate::CASES as usize));
}

#[test]
#[ignore = "large property run: cargo test --release --test properties -- --ignored"]
fn large_format_agrees_with_python() {
    format_matches_python(cases(crate::LARGE_CASES as usize));
}

#[test]
#[ignore = "large property run: cargo test --release --test properties -- --ignored"]
fn large_int_agrees_with_python() {
    int_matches_python(cases(crate::LARGE_CASES as usize));
}

#[test]
#[ignore = "large property run: cargo test --release --test properties -- --ignored"]
fn large_float_agrees_with_python() {
    float_matches_python(cases(crate::LARGE_CASES as usize));
}
