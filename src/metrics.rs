//! The controller's own Prometheus metrics: reloads, Runtime API updates, passes, apps and
//! the HAProxy process, served as OpenMetrics text by the admin server's `GET /metrics`.
//!
//! Data flow position: a side channel. The reconcile loop and the HAProxy supervisor record
//! events here ([`Metrics::reload`], [`Metrics::pass`], ...); the gauges that mirror the
//! published [`Status`] are refreshed from it at scrape time ([`Metrics::observe_status`]), so
//! they can never disagree with `GET /status`. HAProxy's own traffic metrics are a different
//! endpoint: its built-in exporter on the stats port (`:9090/metrics`).
//!
//! Built on `prometheus-client` (the official Rust client of the Prometheus project): typed
//! label sets, no global registry, and one lock-free atomic per series.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::haproxy::ReloadReason;
use crate::status::Status;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the thing a counter counts succeeded: the `result` label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// It worked: `ok`.
    Ok,
    /// It failed: `error`.
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        encoder.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        })
    }
}

impl From<bool> for Outcome {
    fn from(ok: bool) -> Self {
        if ok {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    reason: String,
    result: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    op: String,
    result: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Outcome,
}

/// The series themselves; each handle is an `Arc` around atomics, shared with the registry.
struct Inner {
    /// Kept for [`Metrics::encode`]; the handles below write into the same series.
    registry: Registry,
    reloads: Family<ReloadLabels, Counter>,
    runtime_updates: Family<RuntimeLabels, Counter>,
    passes: Family<ResultLabels, Counter>,
    pass_duration: Histogram,
    apps: Gauge,
    invalid_apps: Gauge,
    last_apply: Gauge<f64, AtomicU64>,
    marathon_connected: Gauge,
    haproxy_restarts: Counter,
    haproxy_old_workers: Gauge,
}

/// The controller's metrics registry. Cloning is cheap (one `Arc`); every clone records into
/// the same series, so hand one to each task that has something to count.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series registered (names prefixed `marathon_lb_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("marathon_lb");
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "HAProxy reloads by reason and result",
            reloads.clone(),
        );
        let runtime_updates = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "runtime_updates",
            "Runtime API updates (no reload) by operation and result",
            runtime_updates.clone(),
        );
        let passes = Family::<ResultLabels, Counter>::default();
        registry.register("passes", "Reconcile passes by result", passes.clone());
        // 5 ms .. ~41 s: a small cluster renders in milliseconds, a reload with a slow
        // `haproxy -c` of a 10k-app config takes seconds.
        let pass_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "pass_duration_seconds",
            "Duration of reconcile passes (fetch, render, validate, apply)",
            pass_duration.clone(),
        );
        let apps = Gauge::default();
        registry.register(
            "apps",
            "Load-balanced services (backends) in the last rendered config",
            apps.clone(),
        );
        let invalid_apps = Gauge::default();
        registry.register(
            "invalid_apps",
            "Apps left out of the last rendered config because of invalid labels",
            invalid_apps.clone(),
        );
        let last_apply = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_apply_timestamp_seconds",
            "Unix time a new config was last applied (0: never)",
            last_apply.clone(),
        );
        let marathon_connected = Gauge::default();
        registry.register(
            "marathon_connected",
            "1 while the Marathon event stream is connected",
            marathon_connected.clone(),
        );
        let haproxy_restarts = Counter::default();
        registry.register(
            "haproxy_restarts",
            "Times the supervised HAProxy master was (re)started after exiting",
            haproxy_restarts.clone(),
        );
        let haproxy_old_workers = Gauge::default();
        registry.register(
            "haproxy_old_workers",
            "HAProxy workers of earlier reloads still draining connections",
            haproxy_old_workers.clone(),
        );
        // Both results exist from the start, so `rate(..{result="error"}[5m])` has a series
        // to work on before the first failure.
        for result in [Outcome::Ok, Outcome::Error] {
            let _ = passes.get_or_create(&ResultLabels { result });
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                reloads,
                runtime_updates,
                passes,
                pass_duration,
                apps,
                invalid_apps,
                last_apply,
                marathon_connected,
                haproxy_restarts,
                haproxy_old_workers,
            }),
        }
    }

    /// Counts one HAProxy reload; the label is the reason's [`ReloadReason::as_str`].
    pub fn reload(&self, reason: ReloadReason, ok: bool) {
        let labels = ReloadLabels {
            reason: reason.as_str().to_owned(),
            result: ok.into(),
        };
        self.inner.reloads.get_or_create(&labels).inc();
    }

    /// Counts one Runtime API update (`op`: e.g. `set_server_addr`, `set_server_state`,
    /// `map_commit`; a fixed set: it becomes a label value).
    pub fn runtime_update(&self, op: &str, ok: bool) {
        let labels = RuntimeLabels {
            op: op.to_owned(),
            result: ok.into(),
        };
        self.inner.runtime_updates.get_or_create(&labels).inc();
    }

    /// Counts one reconcile pass and records how long it took.
    pub fn pass(&self, ok: bool, took: Duration) {
        let labels = ResultLabels { result: ok.into() };
        self.inner.passes.get_or_create(&labels).inc();
        self.inner.pass_duration.observe(took.as_secs_f64());
    }

    /// Sets the number of load-balanced services in the last rendered config.
    pub fn set_apps(&self, n: usize) {
        self.inner.apps.set(saturating_i64(n));
    }

    /// Sets the number of apps left out for invalid labels.
    pub fn set_invalid_apps(&self, n: usize) {
        self.inner.invalid_apps.set(saturating_i64(n));
    }

    /// Sets when a new config was last applied.
    pub fn set_last_apply(&self, at: SystemTime) {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.inner.last_apply.set(secs);
    }

    /// Sets whether the Marathon event stream is connected.
    pub fn set_marathon_connected(&self, connected: bool) {
        self.inner.marathon_connected.set(i64::from(connected));
    }

    /// Counts one restart of the supervised HAProxy after it exited.
    pub fn haproxy_restart(&self) {
        self.inner.haproxy_restarts.inc();
    }

    /// Sets the number of HAProxy workers of earlier reloads still running.
    pub fn set_haproxy_old_workers(&self, n: usize) {
        self.inner.haproxy_old_workers.set(saturating_i64(n));
    }

    /// Copies the gauges that mirror the reconcile [`Status`] (apps, last apply, Marathon
    /// connection). The admin server calls it before each encode.
    pub fn observe_status(&self, status: &Status) {
        self.set_apps(status.served.described().services.len());
        self.set_marathon_connected(status.marathon_connected);
        if let Some(at) = status.last_apply {
            self.set_last_apply(at);
        }
    }

    /// Every series as OpenMetrics text (served with [`CONTENT_TYPE`]; Prometheus scrapes it).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail; the `fmt::Error` only exists for other writers.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `series ` in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn every_series_is_exposed_with_its_documented_name() {
        let text = Metrics::new().encode();
        // Label families with no series yet are left out entirely (prometheus-client's
        // choice); reloads and runtime updates appear with their first count.
        assert!(!text.contains("marathon_lb_reloads"), "{text}");
        for name in [
            "marathon_lb_passes",
            "marathon_lb_pass_duration_seconds",
            "marathon_lb_apps",
            "marathon_lb_invalid_apps",
            "marathon_lb_last_apply_timestamp_seconds",
            "marathon_lb_marathon_connected",
            "marathon_lb_haproxy_restarts",
            "marathon_lb_haproxy_old_workers",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            sample(&text, "marathon_lb_passes_total{result=\"error\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn records_land_in_the_labelled_series() {
        let metrics = Metrics::new();
        let clone = metrics.clone();
        metrics.reload(ReloadReason::NewApp, true);
        clone.reload(ReloadReason::NewApp, true);
        metrics.reload(ReloadReason::ConfigChange, false);
        metrics.runtime_update("set_server_addr", true);
        metrics.pass(true, Duration::from_millis(30));
        metrics.pass(false, Duration::from_millis(3));
        metrics.set_invalid_apps(2);
        metrics.haproxy_restart();
        metrics.set_haproxy_old_workers(3);
        metrics.set_last_apply(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let text = metrics.encode();
        let expect = [
            (
                "marathon_lb_reloads_total{reason=\"new-app\",result=\"ok\"}",
                2.0,
            ),
            (
                "marathon_lb_reloads_total{reason=\"config-change\",result=\"error\"}",
                1.0,
            ),
            (
                "marathon_lb_runtime_updates_total{op=\"set_server_addr\",result=\"ok\"}",
                1.0,
            ),
            ("marathon_lb_passes_total{result=\"ok\"}", 1.0),
            ("marathon_lb_passes_total{result=\"error\"}", 1.0),
            ("marathon_lb_pass_duration_seconds_count", 2.0),
            (
                "marathon_lb_pass_duration_seconds_bucket{le=\"0.005\"}",
                1.0,
            ),
            ("marathon_lb_invalid_apps", 2.0),
            ("marathon_lb_haproxy_restarts_total", 1.0),
            ("marathon_lb_haproxy_old_workers", 3.0),
            ("marathon_lb_last_apply_timestamp_seconds", 1.7e9),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
        }
    }

    #[test]
    fn status_gauges_follow_the_published_status() {
        let metrics = Metrics::new();
        metrics.observe_status(&Status {
            served: crate::status::services::served_n(7),
            marathon_connected: true,
            last_apply: Some(UNIX_EPOCH + Duration::from_secs(10)),
            ..Status::default()
        });
        let text = metrics.encode();
        assert_eq!(sample(&text, "marathon_lb_apps"), Some(7.0));
        assert_eq!(sample(&text, "marathon_lb_marathon_connected"), Some(1.0));
        assert_eq!(
            sample(&text, "marathon_lb_last_apply_timestamp_seconds"),
            Some(10.0)
        );
    }
}
