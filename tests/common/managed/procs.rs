//! Processes and metrics seen from outside: signals, the HAProxy processes of a run dir,
//! their memory, and samples of the metrics text.

use super::*;

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we started (or its HAProxy); no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// `haproxy` processes whose command line mentions `run_dir` (the `-S <run_dir>/master.sock`
/// of the HAProxy we started there; workers inherit the master's command line).
pub fn haproxy_pids_in(run_dir: &Path) -> Vec<u32> {
    let needle = run_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let argv0 = cmdline.split('\0').next().unwrap_or_default();
        // A zombie has an empty command line: it is gone already.
        if argv0.ends_with("haproxy") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// `pid ppid state cmdline` of each of `pids`, one a line, for failure messages.
pub fn describe_pids(pids: &[u32]) -> String {
    let mut out = String::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
        let mut fields = after_comm.split(' ');
        let (state, ppid) = (fields.next().unwrap_or("?"), fields.next().unwrap_or("?"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push_str(&format!("{pid} ppid {ppid} {state} {cmdline}\n"));
    }
    out
}

/// Successful reloads by reason in a metrics text.
pub fn parse_reloads(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("marathon_lb_reloads_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        if !labels.contains("result=\"ok\"") {
            continue;
        }
        let reason = labels
            .split(',')
            .find_map(|l| l.strip_prefix("reason=\""))
            .map(|r| r.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *out.entry(reason).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    out
}

/// The value of the sample line `series` (exact, labels included) in a metrics text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident and proportional set sizes (kB) of `pids`: sums of `VmRSS` and, where
/// `smaps_rollup` is readable, `Pss`.
pub fn memory_kb(pids: &[u32]) -> (u64, Option<u64>) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let mut rss = 0;
    let mut pss = Some(0);
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        rss += field(&status, "VmRSS:").unwrap_or(0);
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok();
        pss = match (pss, rollup.as_deref().and_then(|r| field(r, "Pss:"))) {
            (Some(sum), Some(p)) => Some(sum + p),
            _ => None,
        };
    }
    (rss, pss)
}
