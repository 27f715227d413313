//! The series `/metrics` adds from the published status (built at scrape time, so they need
//! no hook in the loop): build info, Marathon fetches, event stream and events by type, the
//! last failure, and the expiry of every certificate the served config loads. Appended to [`crate::metrics::Metrics::encode`]'s output.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::status::{unix, Status};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    r#type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// The OpenMetrics text of these series for `status` (no `# EOF`).
pub fn encode(status: &Status) -> String {
    let mut registry = Registry::with_prefix("marathon_lb");
    registry.register(
        "build",
        "marathon-lb build information",
        Info::new(VersionLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    );
    let m = &status.marathon;
    let counter = |n: u64| {
        let c: Counter = Counter::default();
        c.inc_by(n);
        c
    };
    registry.register(
        "marathon_fetch_errors",
        "Failed fetches of Marathon's apps (or the apps file)",
        counter(m.fetch_errors),
    );
    let last_fetch = Gauge::<f64, AtomicU64>::default();
    last_fetch.set(m.last_fetch_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    registry.register_with_unit(
        "marathon_last_fetch_duration",
        "Duration of the last successful apps fetch",
        Unit::Seconds,
        last_fetch,
    );
    let bytes: Gauge = Gauge::default();
    bytes.set(
        m.last_fetch_bytes
            .map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
    );
    registry.register_with_unit(
        "marathon_last_fetch_size",
        "Size of the last apps body fetched",
        Unit::Bytes,
        bytes,
    );
    registry.register(
        "marathon_stream_connects",
        "Marathon event stream connections (the first and every reconnect)",
        counter(m.stream_connects),
    );
    let events = Family::<EventLabels, Counter>::default();
    for (kind, n) in &m.events {
        events
            .get_or_create(&EventLabels {
                r#type: kind.clone(),
            })
            .inc_by(*n);
    }
    registry.register(
        "marathon_events",
        "Marathon events that triggered a pass, by type",
        events,
    );
    let failure = Gauge::<f64, AtomicU64>::default();
    failure.set(status.last_failure.map_or(0.0, |t| unix(t) as f64));
    registry.register_with_unit(
        "last_failure_timestamp",
        "Unix time a pass (fetch, render, check or apply) last failed (0: never)",
        Unit::Seconds,
        failure,
    );
    let expiry = Family::<PathLabels, Gauge>::default();
    for (path, at) in crate::status::certs::expiries(&status.served.described().certificates) {
        expiry
            .get_or_create(&PathLabels {
                path: path.display().to_string(),
            })
            .set(at);
    }
    registry.register_with_unit(
        "certificate_expiry_timestamp",
        "Unix time each certificate the served config loads (crt) expires",
        Unit::Seconds,
        expiry,
    );
    let mut text = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut text, &registry).is_err() {
        return String::new();
    }
    text
}

/// `base` (a whole exposition ending in `# EOF`) with `extra` inserted before its end.
pub fn append(base: String, extra: &str) -> String {
    match base.strip_suffix("# EOF\n") {
        Some(head) => format!("{head}{extra}# EOF\n"),
        None => base,
    }
}
