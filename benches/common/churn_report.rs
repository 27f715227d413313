//! The churn bench's measurements and its table: memory from `/proc`, percentiles, the pass
//! timings marathon-lb logs, and the checks that must hold.

use std::collections::BTreeMap;
use std::time::Duration;

use super::wrk::WrkResult;

/// Memory of the controller and of HAProxy (master and workers), in kB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// marathon-lb's `VmRSS`.
    pub controller_rss: u64,
    /// marathon-lb's `VmHWM` (peak RSS so far).
    pub controller_hwm: u64,
    /// The sum of `VmRSS` over the HAProxy processes.
    pub haproxy_rss: u64,
    /// How many HAProxy processes there were.
    pub haproxy_procs: usize,
}

/// A `kB` field of `/proc/<pid>/status` (0 when the process is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Memory {
    /// Reads it now.
    pub fn sample(controller: u32, haproxy: &[u32]) -> Memory {
        Memory {
            controller_rss: status_kb(controller, "VmRSS:"),
            controller_hwm: status_kb(controller, "VmHWM:"),
            haproxy_rss: haproxy.iter().map(|&p| status_kb(p, "VmRSS:")).sum(),
            haproxy_procs: haproxy.len(),
        }
    }
}

/// CPU time used so far, in clock ticks: by the bench itself (the fake Marathon, the tasks,
/// building listings), marathon-lb, HAProxy, and the whole machine (busy and all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    bench: u64,
    controller: u64,
    haproxy: u64,
    machine_busy: u64,
    machine_all: u64,
}

/// `utime + stime` of a process (0 when it is gone).
fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    // Fields 14 and 15 of the line; the 12th and 13th after the command.
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

impl Cpu {
    /// Reads it now.
    pub fn sample(controller: u32, haproxy: &[u32]) -> Cpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let all: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).unwrap_or(&0) + ticks.get(4).unwrap_or(&0);
        Cpu {
            bench: process_ticks("self"),
            controller: process_ticks(&controller.to_string()),
            haproxy: haproxy.iter().map(|p| process_ticks(&p.to_string())).sum(),
            machine_busy: all - idle,
            machine_all: all,
        }
    }

    /// One table row: the CPU seconds each used between `self` and `end`.
    pub fn row(&self, end: &Cpu) -> String {
        // SAFETY: sysconf has no memory effects.
        #[allow(unsafe_code)]
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let s = |a: u64, b: u64| format!("{:.1} s", b.saturating_sub(a) as f64 / hz);
        format!(
            "| CPU during the churn: marathon-lb, HAProxy, the bench (fake Marathon, tasks, \
             listings), whole machine busy of all | {}, {}, {}, {} of {} |",
            s(self.controller, end.controller),
            s(self.haproxy, end.haproxy),
            s(self.bench, end.bench),
            s(self.machine_busy, end.machine_busy),
            s(self.machine_all, end.machine_all)
        )
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// `sorted[p]`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let rest = line.split(&format!("{name}=")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `p50 / p99 / max ms` of integer milliseconds.
fn quantiles(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let at = |p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    format!("{} / {} / {} ms", at(0.5), at(0.99), at(1.0))
}

/// Marathon's load during the churn, from the fake's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Events the fake sent.
    pub events: usize,
    /// `GET /v2/apps` requests and bytes (the whole cluster).
    pub full: (u64, u64),
    /// `GET /v2/apps/{id}` requests and bytes (one app).
    pub one: (u64, u64),
}

/// What one run measured.
pub struct Outcome {
    /// Reloads during the churn, and the totals by reason at the end.
    pub reloads: (u64, BTreeMap<String, u64>),
    /// Runtime API `add` and `del` operations that succeeded.
    pub runtime_ops: (f64, f64),
    /// wrk's summary.
    pub wrk: WrkResult,
    /// Event -> first request on the new task, sorted.
    pub latencies: Vec<Duration>,
    /// Tasks replaced before any pass served them.
    pub superseded: usize,
    /// Marathon's load during the churn.
    pub load: Load,
    /// Memory after start-up and after the churn.
    pub memory: (Memory, Memory),
    /// CPU used during the churn: the table row.
    pub cpu: String,
    /// marathon-lb's log.
    pub log: String,
}

impl Outcome {
    /// Prints the table; returns whether every must-hold check held.
    pub fn print(&self) -> bool {
        let (reloads, totals) = &self.reloads;
        let r = &self.wrk;
        let lat = &self.latencies;
        println!("| metric | value |\n|---|---|");
        println!("| reloads during churn (must be 0) | {reloads} (total {totals:?}) |");
        let (add, del) = self.runtime_ops;
        println!("| Runtime API ops | add {add} / del {del} |");
        println!(
            "| wrk -t1 -c16 keep-alive requests | {} ({:.0} req/s) |",
            r.requests,
            r.rps()
        );
        println!(
            "| failed requests (socket errors, must be 0) | {} (connect {}, read {}, write {}, \
             timeout {}) |",
            r.errors(),
            r.connect,
            r.read,
            r.write,
            r.timeout
        );
        println!("| non-2xx responses (must be 0) | {} |", r.non_2xx);
        println!("| wrk latency p50 / p99 | {} / {} |", r.p50, r.p99);
        let p99 = percentile(lat, 0.99);
        println!(
            "| event -> first request on the new task, p50 / p99 / max ({} tasks; p99 target \
             < 100 ms: {}) | {} / {} / {} |",
            lat.len(),
            if p99 < Duration::from_millis(100) {
                "met"
            } else {
                "MISSED"
            },
            ms(percentile(lat, 0.5)),
            ms(p99),
            ms(lat.last().copied().unwrap_or_default())
        );
        let superseded = self.superseded;
        println!(
            "| tasks replaced before any pass served them (coalesced events) | {superseded} |"
        );
        let full_ok = self.print_load();
        self.print_memory();
        println!("{}", self.cpu);
        self.print_passes();
        let ok = r.errors() == 0 && r.non_2xx == 0 && r.requests > 0 && *reloads == 0;
        ok && full_ok
    }

    /// Marathon's load; returns whether whole-cluster fetches stayed at <= 1 per 1000 events.
    fn print_load(&self) -> bool {
        let l = self.load;
        let events = l.events.max(1) as f64;
        let full_ok = l.full.0 as f64 <= (l.events as f64 / 1000.0).max(1.0);
        println!(
            "| whole-cluster `GET /v2/apps` during churn (must be <= 1 per 1000 events) | {} \
             ({:.1} MB) |",
            l.full.0,
            l.full.1 as f64 / 1e6
        );
        println!(
            "| one-app `GET /v2/apps/{{id}}` during churn, per event | {} ({:.2}) |",
            l.one.0,
            l.one.0 as f64 / events
        );
        println!(
            "| events sent; bytes fetched per event | {}; {:.1} KB |",
            l.events,
            (l.full.1 + l.one.1) as f64 / 1e3 / events
        );
        full_ok
    }

    fn print_memory(&self) {
        let (start, end) = self.memory;
        println!(
            "| controller VmRSS start / end (VmHWM start / end) | {} / {} ({} / {}) |",
            mb(start.controller_rss),
            mb(end.controller_rss),
            mb(start.controller_hwm),
            mb(end.controller_hwm)
        );
        println!(
            "| HAProxy VmRSS start / end (master + workers: {} / {} processes) | {} / {} |",
            start.haproxy_procs,
            end.haproxy_procs,
            mb(start.haproxy_rss),
            mb(end.haproxy_rss)
        );
    }

    /// Where a pass spends its time, from marathon-lb's own log lines.
    fn print_passes(&self) {
        let passes: Vec<(u64, u64)> = self
            .log
            .lines()
            .filter(|l| l.contains("pass done") && l.contains("Runtime"))
            .filter_map(|l| Some((field(l, "fetch_ms")?, field(l, "total_ms")?)))
            .collect();
        println!(
            "| runtime passes: fetch p50 / p99 / max, whole pass p50 / p99 / max ({} passes) | {}, {} |",
            passes.len(),
            quantiles(passes.iter().map(|p| p.0).collect()),
            quantiles(passes.iter().map(|p| p.1).collect())
        );
        let applies: Vec<(u64, u64)> = self
            .log
            .lines()
            .filter(|l| l.contains("applied server changes"))
            .filter_map(|l| Some((field(l, "runtime_ms")?, field(l, "write_ms")?)))
            .collect();
        println!(
            "| of which Runtime API ops (incl. drain) p50 / p99 / max, config write p50 / p99 / max | \
             {}, {} |",
            quantiles(applies.iter().map(|p| p.0).collect()),
            quantiles(applies.iter().map(|p| p.1).collect())
        );
    }
}
