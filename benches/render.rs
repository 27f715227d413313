//! Render benchmark: `cargo bench --bench render`.
//!
//! Inputs come from `../shared/bench/gen-apps --apps N --tasks-per-app 3 --seed 1` for
//! N = 100, 1000, 10000 (`GEN_APPS=/path/to/gen-apps` overrides the location; without it the
//! benchmark prints a message and exits). Two tables are printed:
//!
//! 1. The whole release binary (`--apps-file FILE --group external --skip-validation
//!    --command true` into a fresh temp dir): median wall time of 5 runs and peak RSS from
//!    `wait4`'s `rusage`, next to the Python original's figures from `shared/bench/README.md`.
//! 2. In process, per step (parse JSON, build the model, render): median wall time of 5 runs and
//!    the peak heap above what was live when the step started, counted by a global allocator
//!    (which adds a little time to every allocation).
//!
//! 3. The live loop's render at N = 10000: full against incremental, for a one-task and a
//!    one-label change ([`incremental`]).
//!
//! Targets: the whole process for N = 10000 under 100 ms and 100 MB, growing linearly in N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use marathon_lb::config::{Cli, Config};
use marathon_lb::marathon::types::AppsBody;
use marathon_lb::model::{self, network::Resolver, HealthMemory};
use marathon_lb::render;
use marathon_lb::templates::Templates;

#[path = "render/incremental.rs"]
mod incremental;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a step: the peak is reset to what is live now, which is returned.
fn start_step() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// Bytes the step needed at its worst, above what was live when it started.
fn step_peak(baseline: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
}

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const RUNS: usize = 5;

/// The Python original on this kind of machine (shared/bench/README.md): (apps, seconds, MB).
const PYTHON: [(usize, f64, f64); 3] =
    [(100, 0.20, 49.0), (1_000, 0.36, 68.0), (10_000, 5.0, 269.0)];

/// One step's figures over the runs.
#[derive(Default)]
struct Step {
    times: Vec<Duration>,
    /// Most bytes live above the step's start, over the runs.
    peak: usize,
    /// Most bytes live during the last run, counted from zero.
    last_absolute_peak: usize,
}

impl Step {
    fn record<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let baseline = start_step();
        let t = Instant::now();
        let out = f();
        self.times.push(t.elapsed());
        self.peak = self.peak.max(step_peak(baseline));
        self.last_absolute_peak = PEAK.load(Ordering::Relaxed);
        out
    }

    fn median(&self) -> Duration {
        median(&self.times)
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn gen_apps() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GEN_APPS") {
        return Some(PathBuf::from(path));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-apps");
    path.is_file().then_some(path)
}

fn generate(gen: &Path, apps: usize, into: &Path) -> PathBuf {
    let file = into.join(format!("apps-{apps}.json"));
    // Straight into the file: the body never passes through this process's memory.
    let status = Command::new(gen)
        .args([
            "--apps",
            &apps.to_string(),
            "--tasks-per-app",
            "3",
            "--seed",
            "1",
        ])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", gen.display()));
    assert!(status.success(), "gen-apps failed for --apps {apps}");
    file
}

fn config() -> Config {
    Cli::try_parse_from(["marathon-lb", "--group", "external"])
        .unwrap()
        .validate(|_| None)
        .unwrap()
}

/// In-process figures of one input: (parse, model, render, whole pipeline peak, config bytes).
fn in_process(body: &[u8], config: &Config, templates: &Templates) -> ([Step; 3], usize, usize) {
    let mut steps: [Step; 3] = Default::default();
    let mut bytes = 0;
    let mut pipeline_peak = 0;
    for _ in 0..RUNS {
        let baseline = start_step();
        let apps = steps[0].record(|| AppsBody::parse(body).unwrap().apps);
        let services = steps[1].record(|| {
            model::build(
                apps,
                &config.model,
                &mut Resolver::default(),
                &mut HealthMemory::default(),
            )
            .unwrap()
        });
        let rendered =
            steps[2].record(|| render::render(&services, templates, &config.render).unwrap());
        // Each step resets the high-water mark; the pipeline's peak is the highest of them,
        // counted from what was live before parsing (the input body).
        let highest = steps
            .iter()
            .map(|s| s.last_absolute_peak)
            .max()
            .unwrap_or(0);
        pipeline_peak = pipeline_peak.max(highest.saturating_sub(baseline));
        bytes = rendered.config.len();
        drop((services, rendered));
    }
    (steps, pipeline_peak, bytes)
}

/// Whole-process figures: (median wall time, peak RSS in bytes) of the release binary.
// The child is reaped by `wait_with_rusage` (wait4), which `Child::wait` cannot replace.
#[allow(clippy::zombie_processes)]
fn whole_process(apps_file: &Path, scratch: &Path) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut max_rss = 0;
    for run in 0..RUNS {
        let out_dir = scratch.join(format!("run-{run}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let config = out_dir.join("haproxy.cfg");
        let t = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
            .arg("--apps-file")
            .arg(apps_file)
            .arg("--haproxy-config")
            .arg(&config)
            .args([
                "--group",
                "external",
                "--skip-validation",
                "--command",
                "true",
            ])
            .env("TMPDIR", &out_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the marathon-lb binary");
        let (status, rusage) = wait_with_rusage(child.id());
        times.push(t.elapsed());
        assert!(status == 0, "marathon-lb exited with wait status {status}");
        assert!(config.is_file(), "no config written");
        // ru_maxrss is in kilobytes on Linux.
        max_rss = max_rss.max(rusage.ru_maxrss as usize * 1024);
        std::fs::remove_dir_all(&out_dir).unwrap();
    }
    (median(&times), max_rss)
}

/// Reaps `pid` and returns its wait status and its own resource usage (not other children's).
fn wait_with_rusage(pid: u32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (its `Child` handle is never waited on).
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as libc::pid_t, "wait4 failed");
    (status, usage)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let Some(gen) = gen_apps() else {
        println!(
            "SKIP render benchmark: ../shared/bench/gen-apps not found (set GEN_APPS=/path/to/gen-apps)"
        );
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let files: Vec<(usize, PathBuf)> = SIZES
        .iter()
        .map(|&apps| (apps, generate(&gen, apps, scratch.path())))
        .collect();

    // Whole-process runs come first, while this process is still small: Linux counts the
    // parent's memory, shared with the child until its exec, into the child's ru_maxrss.
    println!(
        "\nWhole process, release binary (median of {RUNS} runs), against the Python original:\n"
    );
    println!("| apps | time | peak RSS | µs per app | Python time | Python RSS | speed-up |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_app = Vec::new();
    let mut target = String::new();
    for (apps, file) in &files {
        let (time, rss) = whole_process(file, scratch.path());
        let (_, py_s, py_mb) = PYTHON.iter().find(|(n, _, _)| n == apps).unwrap();
        let us = time.as_secs_f64() * 1e6 / *apps as f64;
        per_app.push(us);
        println!(
            "| {apps} | {} | {} | {us:.1} | {py_s:.2} s | {py_mb:.0} MB | {:.0}x |",
            ms(time),
            mb(rss),
            py_s / time.as_secs_f64(),
        );
        if *apps == 10_000 {
            target = format!(
                "target N=10000: time {} ({}), peak RSS {} ({})",
                ms(time),
                if time < Duration::from_millis(100) {
                    "under 100 ms: ok"
                } else {
                    "OVER 100 ms"
                },
                mb(rss),
                if rss < 100_000_000 {
                    "under 100 MB: ok"
                } else {
                    "OVER 100 MB"
                },
            );
        }
    }
    println!("\n{target}");
    if let [a, b, c] = per_app[..] {
        println!(
            "growth: time per app {a:.1} / {b:.1} / {c:.1} µs at N=100 / 1000 / 10000 \
             (flat = linear; process start-up dominates N=100)"
        );
    }

    let config = config();
    let templates = Templates::builtin();
    println!("\nIn process (median of {RUNS} runs; peak heap = most bytes live above the step's start):\n");
    println!("| apps | input | parse | model | render | total | peak heap parse / model / render | pipeline peak heap | config |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (apps, file) in &files {
        let body = std::fs::read(file).unwrap();
        let (steps, pipeline_peak, bytes) = in_process(&body, &config, &templates);
        let total: Duration = steps.iter().map(Step::median).sum();
        println!(
            "| {apps} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |",
            mb(body.len()),
            ms(steps[0].median()),
            ms(steps[1].median()),
            ms(steps[2].median()),
            ms(total),
            mb(steps[0].peak),
            mb(steps[1].peak),
            mb(steps[2].peak),
            mb(pipeline_peak),
            mb(bytes),
        );
    }
    if let Some((_, file)) = files.last() {
        let body = std::fs::read(file).unwrap();
        let apps = AppsBody::parse(&body).unwrap().apps;
        let services = model::build(
            apps,
            &config.model,
            &mut Resolver::default(),
            &mut HealthMemory::default(),
        )
        .unwrap();
        incremental::table(services, &config, &templates);
    }
}
