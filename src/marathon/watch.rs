//! The connect → stream → reconnect state machine over Marathon's `/v2/events`.
//!
//! Data flow position: between `client` and the reconcile loop. [`watch`] returns a
//! never-ending `Stream` of [`WatchEvent`]s: `Connected` after each (re)connection
//! (the loop should resync then, since events may have been missed), `Relevant` for
//! each event that can change the config, and `Disconnected` when a connection fails,
//! ends or stalls. Reconnects wait an exponential, jittered [`Backoff`] capped by
//! `max_backoff`, reset once a connection has stayed up for `reset_after`.
//! Drop the stream to stop watching.
//!
//! As in kube-runtime's watcher, errors are items, not the end of the stream, and the
//! machine is an explicit `State` driven by `futures::stream::unfold`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tokio::time::Instant;

use super::client::{Client, Error, Result};
use super::events::EventStream;

/// The Marathon event types that can change the generated config (marathon-lb's set).
pub const RELEVANT_EVENT_TYPES: &[&str] = &[
    "api_post_event",
    "health_status_changed_event",
    "status_update_event",
    "app_terminated_event",
    "group_change_success",
    "deployment_info",
    "deployment_success",
    "deployment_failed",
];

/// What the watcher reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// The event stream is (re)connected; anything may have changed meanwhile.
    Connected {
        /// The stream URL.
        url: String,
    },
    /// A relevant event arrived; carries its Marathon `eventType` and its JSON data (the
    /// incremental live model applies it).
    Relevant(String, String),
    /// Connecting failed, or the stream ended, broke or stalled.
    Disconnected {
        /// Why.
        error: Error,
        /// How long until the next connection attempt.
        retry_in: Duration,
    },
}

/// Settings for [`watch`]; build with [`WatchConfig::default`] and the setters.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// First reconnect delay.
    pub initial_backoff: Duration,
    /// Cap on the reconnect delay (`--max-backoff`).
    pub max_backoff: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub reset_after: Duration,
    /// Event types reported as [`WatchEvent::Relevant`]; others are ignored.
    pub relevant: Vec<String>,
    /// Seed of the jitter; `None` seeds from the clock. Tests fix it to replay.
    pub seed: Option<u64>,
}

impl Default for WatchConfig {
    /// 1 s doubling up to 30 s, reset after 120 s up, marathon-lb's relevant events.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
            relevant: RELEVANT_EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
            seed: None,
        }
    }
}

impl WatchConfig {
    /// Sets the first and the maximum reconnect delay.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets how long a connection must stay up to reset the backoff.
    #[must_use]
    pub fn reset_after(mut self, healthy: Duration) -> Self {
        self.reset_after = healthy;
        self
    }

    /// Fixes the jitter seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// Exponential backoff with ±20 % jitter, capped. Pure: the seed is injected.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    initial: Duration,
    /// Cap on any delay.
    max: Duration,
    /// Un-jittered delay to hand out next.
    next: Duration,
    /// splitmix64 state for the jitter.
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max,
            next: initial.min(max),
            rng: seed,
        }
    }

    /// The next delay: the current base times a factor in [0.8, 1.2), at most `max`,
    /// in whole milliseconds.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.max);
        let unit = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        let delay = base.mul_f64(0.8 + 0.4 * unit).min(self.max);
        // Whole milliseconds: the timer's resolution, so the wait is what we report.
        Duration::from_millis(delay.as_millis() as u64)
    }

    /// Starts over from `initial` (after a healthy period).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }

    /// splitmix64: tiny, good enough for jitter, needs no dependency.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Watches `client`'s event stream; see the module doc.
pub fn watch(client: Arc<Client>, config: WatchConfig) -> BoxStream<'static, WatchEvent> {
    watch_with(
        move || {
            let client = client.clone();
            async move { client.events().await }
        },
        config,
    )
}

/// [`watch`] over any connector (tests script one).
pub fn watch_with<C, F>(connect: C, config: WatchConfig) -> BoxStream<'static, WatchEvent>
where
    C: FnMut() -> F + Send + 'static,
    F: Future<Output = Result<EventStream>> + Send + 'static,
{
    let seed = config.seed.unwrap_or_else(clock_seed);
    let machine = Machine {
        backoff: Backoff::new(config.initial_backoff, config.max_backoff, seed),
        connect,
        config,
        state: State::Connect {
            delay: Duration::ZERO,
        },
    };
    futures::stream::unfold(machine, |mut machine| async move {
        let event = machine.step().await;
        Some((event, machine))
    })
    .boxed()
}

/// Where the watcher is.
enum State {
    /// Waiting `delay`, then connecting.
    Connect {
        /// Time to wait before the attempt.
        delay: Duration,
    },
    /// Reading events from a live connection.
    Stream {
        /// The connection.
        events: EventStream,
        /// When it was established, to decide on a backoff reset.
        since: Instant,
    },
}

/// The state plus what drives it.
struct Machine<C> {
    /// Opens a connection.
    connect: C,
    /// Settings.
    config: WatchConfig,
    /// Reconnect delays.
    backoff: Backoff,
    /// Current state.
    state: State,
}

impl<C, F> Machine<C>
where
    C: FnMut() -> F,
    F: Future<Output = Result<EventStream>>,
{
    /// Runs until there is something to report.
    async fn step(&mut self) -> WatchEvent {
        loop {
            let state = std::mem::replace(
                &mut self.state,
                State::Connect {
                    delay: Duration::ZERO,
                },
            );
            match state {
                State::Connect { delay } => {
                    tokio::time::sleep(delay).await;
                    return match (self.connect)().await {
                        Ok(events) => {
                            let url = events.url().to_owned();
                            self.state = State::Stream {
                                events,
                                since: Instant::now(),
                            };
                            WatchEvent::Connected { url }
                        }
                        Err(error) => self.disconnected(error),
                    };
                }
                State::Stream { mut events, since } => match events.next().await {
                    Some(Ok(event)) => {
                        self.state = State::Stream { events, since };
                        let relevant = event
                            .marathon_event_type()
                            .filter(|t| self.config.relevant.contains(t));
                        if let Some(event_type) = relevant {
                            return WatchEvent::Relevant(event_type, event.data);
                        }
                    }
                    end => {
                        if since.elapsed() >= self.config.reset_after {
                            self.backoff.reset();
                        }
                        let error = match end {
                            Some(Err(error)) => error,
                            _ => Error::StreamEnded {
                                url: events.url().to_owned(),
                            },
                        };
                        return self.disconnected(error);
                    }
                },
            }
        }
    }

    /// Schedules the next attempt after the backoff delay.
    fn disconnected(&mut self, error: Error) -> WatchEvent {
        let retry_in = self.backoff.next_delay();
        tracing::warn!(error = %error.chain(), ?retry_in, "Marathon event stream disconnected");
        self.state = State::Connect { delay: retry_in };
        WatchEvent::Disconnected { error, retry_in }
    }
}

/// A jitter seed from the wall clock, so replicas don't reconnect in lockstep.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use bytes::Bytes;
    use reqwest::StatusCode;
    use tokio::sync::mpsc;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn refused() -> Error {
        Error::Status {
            url: "http://m/v2/events".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// An open connection whose bytes the test sends; stall timeout one hour.
    fn connection() -> (mpsc::UnboundedSender<Bytes>, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let bytes = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok(chunk), rx))
        });
        let url = "http://m/v2/events".to_owned();
        (tx, EventStream::decode(bytes, 3600 * SECOND, url))
    }

    /// A watcher whose connection attempts return `script` in order (then refuse),
    /// and which records when each attempt happened.
    fn scripted(
        script: Vec<Result<EventStream>>,
        config: WatchConfig,
    ) -> (BoxStream<'static, WatchEvent>, Arc<Mutex<Vec<Instant>>>) {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let log = attempts.clone();
        let stream = watch_with(
            move || {
                log.lock().unwrap().push(Instant::now());
                let next = script.lock().unwrap().pop_front();
                async move { next.unwrap_or_else(|| Err(refused())) }
            },
            config,
        );
        (stream, attempts)
    }

    fn config() -> WatchConfig {
        WatchConfig::default()
            .backoff(SECOND, 8 * SECOND)
            .reset_after(60 * SECOND)
            .seed(7)
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_caps() {
        let mut backoff = Backoff::new(SECOND, 30 * SECOND, 42);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, delay) in delays.iter().enumerate() {
            let base = (SECOND * 2u32.pow(i as u32)).min(30 * SECOND);
            assert!(
                *delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2),
                "{i}: {delay:?}"
            );
            assert!(*delay <= 30 * SECOND);
        }
        assert_ne!(delays[6], delays[7], "jitter varies at the cap");
        backoff.reset();
        assert!(backoff.next_delay() <= SECOND.mul_f64(1.2));
        let replay: Vec<Duration> = {
            let mut again = Backoff::new(SECOND, 30 * SECOND, 42);
            (0..8).map(|_| again.next_delay()).collect()
        };
        assert_eq!(delays, replay, "same seed, same delays");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_connects_back_off_exponentially_up_to_the_cap() {
        let (mut watch, attempts) = scripted(vec![], config());
        let mut reported = Vec::new();
        for _ in 0..6 {
            match watch.next().await.unwrap() {
                WatchEvent::Disconnected { retry_in, .. } => reported.push(retry_in),
                other => panic!("unexpected {other:?}"),
            }
        }
        let attempts = attempts.lock().unwrap().clone();
        for (i, pair) in attempts.windows(2).enumerate() {
            assert_eq!(pair[1] - pair[0], reported[i], "waited what it announced");
        }
        assert!(reported[0] < 2 * SECOND && reported[2] > 3 * SECOND);
        assert!(reported[4..]
            .iter()
            .all(|d| *d <= 8 * SECOND && *d >= 6 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn relevant_events_pass_others_are_dropped_and_a_cut_reconnects() {
        let (tx, events) = connection();
        let (tx2, events2) = connection();
        let (mut watch, _) = scripted(vec![Ok(events), Err(refused()), Ok(events2)], config());
        assert!(matches!(
            watch.next().await,
            Some(WatchEvent::Connected { .. })
        ));
        tx.send(Bytes::from_static(
            b"event: event_stream_attached\ndata: {\"eventType\":\"event_stream_attached\"}\n\n\
              :keep-alive\n\n\
              event: status_update_event\ndata: {\"eventType\":\"status_update_event\"}\n\n",
        ))
        .unwrap();
        match watch.next().await {
            Some(WatchEvent::Relevant(t, _)) => assert_eq!(t, "status_update_event"),
            other => panic!("unexpected {other:?}"),
        }
        drop(tx);
        match watch.next().await {
            Some(WatchEvent::Disconnected { error, .. }) => {
                assert!(matches!(error, Error::StreamEnded { .. }), "{error:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            watch.next().await,
            Some(WatchEvent::Disconnected { .. })
        ));
        assert!(matches!(
            watch.next().await,
            Some(WatchEvent::Connected { .. })
        ));
        tx2.send(Bytes::from_static(
            b"data: {\"eventType\":\"api_post_event\"}\n\n",
        ))
        .unwrap();
        assert!(
            matches!(watch.next().await, Some(WatchEvent::Relevant(t, _)) if t == "api_post_event")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_period_resets_the_backoff() {
        let (short_tx, short) = connection();
        let (long_tx, long) = connection();
        let (mut short_tx, mut long_tx) = (Some(short_tx), Some(long_tx));
        let script = vec![Err(refused()), Err(refused()), Ok(short), Ok(long)];
        let (mut watch, _) = scripted(script, config());
        let (mut retry_ins, mut connects) = (Vec::new(), 0);
        while retry_ins.len() < 4 {
            match watch.next().await.unwrap() {
                WatchEvent::Disconnected { retry_in, .. } => retry_ins.push(retry_in),
                WatchEvent::Connected { .. } => {
                    connects += 1;
                    if connects == 2 {
                        tokio::time::sleep(61 * SECOND).await;
                        long_tx.take();
                    } else {
                        short_tx.take();
                    }
                }
                WatchEvent::Relevant(..) => unreachable!(),
            }
        }
        assert!(
            retry_ins[2] > 3 * SECOND,
            "a short connection keeps growing: {retry_ins:?}"
        );
        assert!(
            retry_ins[3] < 2 * SECOND,
            "a long one resets: {retry_ins:?}"
        );
    }
}
