//! HAProxy's live state for the admin server: `show stat` (Runtime API) and `show proc`
//! (master CLI), read when `/healthz`, the state API or the dashboard ask, and reused for a
//! second, so they agree with HAProxy's own stats page.
//!
//! Read on demand, not polled: `show stat` over a thousand backends stalls HAProxy's traffic for
//! tens of milliseconds (polling it every second took the p99 latency of requests through
//! HAProxy from 10 ms to 63-80 ms in `cargo bench --bench churn`). Nobody reading the state
//! costs HAProxy nothing; an open dashboard costs one reading every 2 s.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use crate::haproxy::master::{MasterCli, ProcList};
use crate::haproxy::runtime::RuntimeApi;
use crate::haproxy::stats::{self, StatRow};

/// How long a reading is reused, by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(1);

/// Where the supervised HAProxy answers.
#[derive(Debug, Clone)]
pub struct HaproxyLink {
    /// The admin-level stats socket (`show stat`).
    pub runtime_socket: PathBuf,
    /// The master CLI socket (`show proc`).
    pub master_socket: PathBuf,
}

/// The last answers.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// When they were read.
    pub at: Option<SystemTime>,
    /// `show stat`, parsed (`None` when it failed).
    pub stats: Option<Vec<StatRow>>,
    /// `show proc`, parsed (`None` when it failed).
    pub proc: Option<ProcList>,
    /// Why HAProxy could not be read (not running yet, restarting).
    pub error: Option<String>,
}

impl Live {
    /// The `BACKEND` row of `backend`.
    pub fn backend(&self, backend: &str) -> Option<&StatRow> {
        self.stats
            .as_ref()?
            .iter()
            .find(|r| r.kind == stats::Kind::Backend && r.proxy == backend)
    }

    /// The row of server `name` of `backend`.
    pub fn server(&self, backend: &str, name: &str) -> Option<&StatRow> {
        self.stats
            .as_ref()?
            .iter()
            .find(|r| r.kind == stats::Kind::Server && r.proxy == backend && r.name == name)
    }
}

/// HAProxy's live state, read when asked and reused for `max_age`.
#[derive(Debug)]
pub struct LiveSource {
    api: RuntimeApi,
    master: MasterCli,
    max_age: Duration,
    /// The last reading; the lock also makes concurrent askers share one reading.
    last: Mutex<Option<(std::time::Instant, Live)>>,
}

impl LiveSource {
    /// Reads from `link`, each reading reused for `max_age`.
    pub fn new(link: &HaproxyLink, max_age: Duration) -> Self {
        Self {
            api: RuntimeApi::new(&link.runtime_socket, Duration::ZERO),
            master: MasterCli::new(&link.master_socket, Duration::from_secs(2)),
            max_age,
            last: Mutex::new(None),
        }
    }

    /// The live state: the last reading when it is younger than `max_age`, else a new one.
    pub async fn get(&self) -> Live {
        let mut last = self.last.lock().await;
        if let Some((at, live)) = last.as_ref() {
            if at.elapsed() < self.max_age {
                return live.clone();
            }
        }
        let live = read(&self.api, &self.master).await;
        *last = Some((std::time::Instant::now(), live.clone()));
        live
    }
}

/// One reading of both sockets.
pub async fn read(api: &RuntimeApi, master: &MasterCli) -> Live {
    let mut errors = Vec::new();
    let stats = match api.command("show stat").await {
        Ok(text) => stats::parse_show_stat(&text)
            .map_err(|e| errors.push(e.to_string()))
            .ok(),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let proc = master
        .show_proc()
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    Live {
        at: Some(SystemTime::now()),
        stats,
        proc,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}
