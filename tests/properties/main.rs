//! Property-based tests of the parsers that see hostile input: the SSE decoder and Marathon's
//! event-type classification, the `str.format` template formatter, and the label parsers
//! (`HAPROXY_{n}_*` splitting and application, Python `int`/`bool` conversions).
//!
//! Every property holds for any input: a value or an error that names what was wrong, never a
//! panic, and the same answer however the input is chunked or built. Each property runs a
//! bounded number of cases in `cargo test` (`<property>::bounded`, [`CASES`], or
//! `PROPTEST_CASES` when set); its `<property>::large` twin is `#[ignore]`d and runs
//! [`LARGE_CASES`] (or `PROPTEST_CASES`):
//!
//! ```text
//! cargo test --release --test properties -- --ignored --nocapture
//! ```
//!
//! A failure prints the shrunk minimal input, which then becomes a regular unit test beside the
//! code it found wrong.

mod formatter;
mod incremental;
mod labels;
mod python;
mod sse;

use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Cases per property in a normal `cargo test`.
pub const CASES: u32 = 256;

/// Cases per property in the ignored `large_*` runs.
pub const LARGE_CASES: u32 = 100_000;

/// Runs `test` on `cases` inputs drawn from `strategy` (or `PROPTEST_CASES` inputs when that is
/// set) and panics with the shrunk minimal failing input. Prints the count and the time taken.
pub fn check<S, F>(name: &str, cases: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 10_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    let result = runner.run(&strategy, test);
    let took = start.elapsed();
    match result {
        Ok(()) => eprintln!("property {name}: {cases} cases passed in {took:.2?}"),
        Err(TestError::Fail(reason, input)) => {
            panic!("property {name} failed: {reason}\nminimal input: {input:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("property {name} aborted: {reason}"),
    }
}

/// Declares property `$test` (a function of one generated input) as two tests in a module of
/// the same name: `bounded` ([`CASES`] inputs) and the `#[ignore]`d `large` ([`LARGE_CASES`]).
#[macro_export]
macro_rules! property {
    ($test:ident, $strategy:expr) => {
        mod $test {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn bounded() {
                $crate::check(
                    concat!(module_path!(), "::bounded"),
                    $crate::CASES,
                    $strategy,
                    super::$test,
                );
            }

            #[test]
            #[ignore = "large property run: cargo test --release --test properties -- --ignored"]
            fn large() {
                $crate::check(
                    concat!(module_path!(), "::large"),
                    $crate::LARGE_CASES,
                    $strategy,
                    super::$test,
                );
            }
        }
    };
}
