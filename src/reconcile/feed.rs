//! What a live pass renders: the triggers gathered into one [`Work`] (coalescing), and the apps
//! body for it — a full fetch, or the incremental model ([`AppStore`]) changed by the events
//! and by one-app fetches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::incremental::{AppStore, Change};
use super::Trigger;
use crate::marathon::client::Client;
use crate::pass::{FetchError, Fetched, Source};
use crate::run::Apps;

/// Quiet time that ends a burst's gathering window (after a pass that just ran).
const QUIET: Duration = Duration::from_millis(10);
/// A trigger this soon after the last pass is part of a burst.
const BURST_GAP: Duration = Duration::from_millis(20);
/// The longest a burst's window stays open.
const BURST_MAX: Duration = Duration::from_millis(100);

/// The triggers gathered for one pass.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// Fetch the whole cluster (start, reconnect, resync timer, SIGHUP, file change).
    pub full: bool,
    /// Marathon events to apply, in arrival order.
    pub events: Vec<Arc<str>>,
    /// Re-apply the config on disk (SIGUSR1), when no pass runs anyway.
    pub reload_existing: bool,
}

impl Work {
    fn add(&mut self, trigger: Trigger) {
        match trigger {
            Trigger::Resync => self.full = true,
            Trigger::Event(data) => self.events.push(data),
            Trigger::ReloadExisting => self.reload_existing = true,
        }
    }

    /// Whether the gathered triggers need a pass.
    pub fn needs_pass(&self) -> bool {
        self.full || !self.events.is_empty()
    }
}

/// Gathers the triggers that follow `first` into one [`Work`]. Alone, a trigger waits
/// `debounce` (the first event's latency grows by that only). Right after a pass (a burst, or
/// events that arrived while it ran), the window stays open until `QUIET` passes without a
/// trigger, at most `BURST_MAX`: a burst costs a pass at its start and one at its end.
pub(super) async fn gather(
    first: Trigger,
    triggers: &mut mpsc::UnboundedReceiver<Trigger>,
    debounce: Duration,
    last_pass: Option<Instant>,
) -> Work {
    let mut work = Work::default();
    work.add(first);
    let in_burst = last_pass.is_some_and(|at| at.elapsed() < BURST_GAP);
    if in_burst {
        let deadline = Instant::now() + BURST_MAX;
        loop {
            let until = (Instant::now() + QUIET).min(deadline);
            match tokio::time::timeout_at(until, triggers.recv()).await {
                Ok(Some(trigger)) => work.add(trigger),
                Ok(None) | Err(_) => break,
            }
        }
    } else {
        wait(debounce).await;
    }
    while let Ok(trigger) = triggers.try_recv() {
        work.add(trigger);
    }
    work
}

/// Spans shorter than this are slept outside tokio's timer, whose ticks are whole milliseconds.
const TIMER_TICK: Duration = Duration::from_millis(2);

/// Waits `span`. Tokio rounds a sleep up to its next millisecond tick and its worker parks for
/// whole milliseconds: a 1 ms sleep took 2.1 ms on average (measured at 10,000 apps, where it
/// was a fifth of an event's latency). A shorter span is slept by the thread itself, outside
/// the runtime (`block_in_place`; its other tasks move to another worker meanwhile).
async fn wait(span: Duration) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let threads = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    match span < TIMER_TICK && threads {
        true => tokio::task::block_in_place(|| std::thread::sleep(span)),
        false => tokio::time::sleep(span).await,
    }
}

/// The apps body for `work`: from the incremental model when it can prove it is current
/// after the events (Marathon only), else a full fetch, which reloads the model.
///
/// # Errors
/// [`FetchError`] when the full fetch fails (the model is then unloaded).
pub(super) async fn fetch(
    source: &Source,
    store: &mut AppStore,
    work: &Work,
    max_bytes: u64,
) -> Result<Fetched, FetchError> {
    let started = std::time::Instant::now();
    let Source::Marathon(client) = source else {
        let (body, origin) = source.fetch(max_bytes).await?;
        let took = started.elapsed();
        let apps = Apps::Body(body);
        return Ok(Fetched { apps, origin, took });
    };
    let origin = format!("Marathon {}", client.current_host());
    if !work.full && store.is_loaded() {
        match apply(client, store, &work.events).await {
            Ok(fetched) => {
                tracing::debug!(
                    events = work.events.len(),
                    apps_fetched = fetched,
                    "applied events to the live model"
                );
                let apps = Apps::Each(store.snapshot());
                let took = started.elapsed();
                return Ok(Fetched { apps, origin, took });
            }
            Err(reason) => tracing::info!(
                reason,
                "fetching all apps: the model cannot prove it is current"
            ),
        }
    }
    store.invalidate();
    let body = client.apps_json().await.map_err(FetchError::Marathon)?;
    let took = started.elapsed();
    store.load(&body);
    // A listing the store took is modeled app by app (unchanged apps are not modeled again);
    // one it could not take goes through the body's own parse, which reports what is wrong.
    let apps = match store.is_loaded() {
        true => Apps::Each(store.snapshot()),
        false => Apps::Body(body),
    };
    Ok(Fetched { apps, origin, took })
}

/// Applies the events, then fetches each app they could not settle (once per app). The
/// number of apps fetched, or why only a full fetch will do.
async fn apply(
    client: &Client,
    store: &mut AppStore,
    events: &[Arc<str>],
) -> Result<usize, &'static str> {
    let mut wanted: Vec<String> = Vec::new();
    for event in events {
        match store.apply(event) {
            Change::Applied => {}
            Change::Fetch(id) => {
                if !wanted.contains(&id) {
                    wanted.push(id);
                }
            }
            Change::FetchEach(ids) => {
                for id in ids {
                    if !wanted.contains(&id) {
                        wanted.push(id);
                    }
                }
            }
            Change::Full(reason) => return Err(reason),
        }
    }
    for id in &wanted {
        let body = match client.app_json(id).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(app_id = %id, error = %e.chain(), "one-app fetch failed");
                return Err("a one-app fetch failed");
            }
        };
        match store.set_app(id, body.as_deref()) {
            Change::Applied => {}
            Change::Full(reason) => return Err(reason),
            Change::Fetch(_) | Change::FetchEach(_) => {
                return Err("a one-app body the model cannot apply")
            }
        }
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50 events 2 ms apart, each pass taking `pass`: the passes it costs, and when the first
    /// one started.
    async fn burst(pass: Duration) -> (usize, Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        tokio::spawn(async move {
            for i in 0..50 {
                let _ = tx.send(Trigger::Event(format!("{i}").into()));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let (mut passes, mut events, mut first_at) = (0, 0, None);
        let mut last_pass = None;
        while events < 50 {
            let first = rx.recv().await.unwrap();
            let work = gather(first, &mut rx, Duration::from_millis(5), last_pass).await;
            first_at.get_or_insert(start.elapsed());
            events += work.events.len();
            passes += 1;
            tokio::time::sleep(pass).await;
            last_pass = Some(Instant::now());
        }
        (passes, first_at.unwrap_or_default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_50_event_burst_costs_at_most_3_passes_and_5_ms_of_the_first_events_latency() {
        for pass in [1, 10, 50, 150] {
            let (passes, first) = burst(Duration::from_millis(pass)).await;
            assert!(passes <= 3, "{passes} passes with {pass} ms passes");
            assert!(
                first <= Duration::from_millis(10),
                "first pass after {first:?}"
            );
        }
    }

    /// A debounce under a timer tick (slept by the thread, outside tokio's timer) still waits
    /// its whole span and gathers what is queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sub_tick_debounce_waits_its_span_and_gathers_the_queue() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(Trigger::Event("first".into())).unwrap();
        tx.send(Trigger::Event("second".into())).unwrap();
        let first = rx.recv().await.unwrap();
        let long_ago = Instant::now().checked_sub(Duration::from_secs(1));
        let debounce = Duration::from_micros(1500);
        let start = std::time::Instant::now();
        let work = gather(first, &mut rx, debounce, long_ago).await;
        assert!(start.elapsed() >= debounce, "waited {:?}", start.elapsed());
        assert_eq!(work.events.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_event_waits_only_the_debounce() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(Trigger::Event("e".into())).unwrap();
        let start = Instant::now();
        let first = rx.recv().await.unwrap();
        // The last pass was long ago: no burst window.
        let long_ago = Instant::now().checked_sub(Duration::from_secs(1));
        let work = gather(first, &mut rx, Duration::from_millis(5), long_ago).await;
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        assert_eq!(work.events.len(), 1);
        assert!(!work.full && work.needs_pass());
    }
}
