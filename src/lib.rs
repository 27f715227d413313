//! marathon-lb in Rust: HAProxy configuration from Marathon apps, a drop-in replacement for
//! Mesosphere's marathon-lb 1.x (same flags, labels, templates and output).
//!
//! # Layout
//!
//! The modules follow the data flow
//! **Marathon -> model -> templates/render -> validate -> apply**:
//!
//! - [`marathon`]: serde types of Marathon's `/v2/apps` body, the REST client (failover,
//!   basic and DC/OS auth), the SSE decoder and the reconnecting event watch.
//! - [`model`]: apps -> load-balanced services (labels, ports, tasks, health, deployment
//!   groups). Pure.
//! - [`templates`]: the 53 built-in templates, their file/env/label overrides, and Python
//!   `str.format` semantics. Pure.
//! - [`render`]: services + templates -> `haproxy.cfg` and map files, byte-identical to the
//!   original. Pure.
//! - [`haproxy`]: `haproxy -c` validation (the only way to get a [`haproxy::Validated`]),
//!   isolation of the apps HAProxy rejects, self-signed stand-ins for missing certificates,
//!   the atomic write + reload command, [`haproxy::Supervisor`] (HAProxy in master-worker
//!   mode as our child, reloaded and confirmed through the master CLI, restarted on death),
//!   and the Runtime API planner and client for reload-free server changes. Every program we
//!   run goes through [`haproxy::exec`] (scrubbed environment, timeout, death signal) and,
//!   as PID 1, [`haproxy::reaper`] reaps orphans.
//! - [`config`]: the command line, validated into the options of each stage.
//! - [`run`]: one pass: read apps, build, render, validate, apply.
//! - [`deploy`]: managed mode: HAProxy run by us; server-only changes through the Runtime
//!   API, everything else written and reloaded with a typed reason.
//! - [`reconcile`]: the live loop: triggers (events, polls, file changes, signals) coalesced
//!   into passes, failures retried, status published.
//! - [`status`]: the state the loop publishes (services, left-out apps, recent applies,
//!   Marathon), read by the admin server and the metrics.
//! - [`admin`]: the admin HTTP server (`--admin-addr`): health, status JSON and page,
//!   metrics, and the signal endpoints HAProxy's `:9090/_mlb_signal/*` forward to.
//! - [`metrics`]: the controller's Prometheus metrics (reloads, runtime updates, passes).
//! - [`compat`]: Python-compatible conversions the original's output depends on.
//! - [`longhelp`]: `--longhelp`, every label and template.
//! - [`logging`]: the binary's log set-up (level, colour, format).
//!
//! The test fakes (a fake Marathon, a stand-in Kubernetes API server) and their binaries
//! live in the `marathon-lb-testkit` workspace member (`testkit/`), a dev-dependency only:
//! the product carries no fake.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod compat;
pub mod config;
pub mod deploy;
pub mod haproxy;
pub mod logging;
pub mod longhelp;
pub mod marathon;
pub mod metrics;
pub mod model;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod status;
pub mod templates;
