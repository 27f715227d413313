//! HAProxy's live state for the admin server: `show stat` (Runtime API) and `show proc`
//! (master CLI), polled in the background so `/healthz`, the state API and the dashboard
//! answer at once and agree with HAProxy's own stats page.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::haproxy::master::{MasterCli, ProcList};
use crate::haproxy::runtime::RuntimeApi;
use crate::haproxy::stats::{self, StatRow};

/// How often HAProxy is asked, by default.
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

/// Starts polling HAProxy every `every`; the task ends when every receiver is gone.
pub fn spawn(link: HaproxyLink, every: Duration) -> watch::Receiver<Live> {
    let (tx, rx) = watch::channel(Live::default());
    tokio::spawn(async move {
        let api = RuntimeApi::new(&link.runtime_socket, Duration::ZERO);
        let master = MasterCli::new(&link.master_socket, Duration::from_secs(2));
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !tx.is_closed() {
            ticker.tick().await;
            tx.send_replace(read(&api, &master).await);
        }
    });
    rx
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
