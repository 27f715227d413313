//! The recent applies: what each pass did to HAProxy, why, and how it went.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::haproxy::plan::Op;

/// How a pass reached HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyHow {
    /// Server changes through the Runtime API, no reload.
    Runtime,
    /// A new config written and HAProxy reloaded (or started).
    Reload,
    /// A new config written and `--command` run (or just written, without one).
    Command,
    /// HAProxy already served this config.
    Nothing,
    /// The pass failed; the last good config keeps serving.
    Failed,
}

/// One apply, as the state API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyRecord {
    /// When it finished (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// How.
    pub how: ApplyHow,
    /// Why: the reload reason (`new_app`, `servers_changed`, ...), `runtime_ops`, or empty.
    pub reason: String,
    /// What changed, briefly (the first sections or the servers touched).
    pub changes: String,
    /// How long the pass took, in milliseconds.
    pub duration_ms: u64,
    /// Whether it worked.
    pub ok: bool,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Further identical "nothing to do" passes folded into this entry.
    pub repeated: u64,
}

impl ApplyRecord {
    /// A record of `how` at `at`.
    pub fn new(at: SystemTime, how: ApplyHow, reason: &str, changes: &str, took_ms: u64) -> Self {
        Self {
            at,
            how,
            reason: reason.to_owned(),
            changes: changes.to_owned(),
            duration_ms: took_ms,
            ok: how != ApplyHow::Failed,
            error: None,
            repeated: 0,
        }
    }

    /// A failed pass.
    pub fn failed(at: SystemTime, error: &str, took_ms: u64) -> Self {
        let mut record = Self::new(at, ApplyHow::Failed, "", "", took_ms);
        record.error = Some(error.to_owned());
        record
    }
}

/// Serializes a time as RFC 3339 (UTC, milliseconds).
pub fn rfc3339<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*at))
}

/// A time as RFC 3339 (UTC, milliseconds).
pub fn format_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runtime API operations in a line, naming the servers: `add web_10000/10_0_0_1_31000;
/// del ...` (the first eight, then a count).
pub fn summarize_ops(ops: &[Op]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = ops
        .iter()
        .take(SHOWN)
        .map(|op| match op {
            Op::Add { backend, server } => {
                format!("add {backend}/{} {}", server.name, server.address)
            }
            Op::Delete { backend, name } => format!("del {backend}/{name}"),
            Op::SetDisabled {
                backend,
                name,
                disabled,
            } => {
                let state = if *disabled { "maint" } else { "ready" };
                format!("{state} {backend}/{name}")
            }
        })
        .collect();
    if ops.len() > SHOWN {
        parts.push(format!("and {} more", ops.len() - SHOWN));
    }
    parts.join("; ")
}
