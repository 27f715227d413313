//! marathon-lb in Rust: HAProxy configuration from Marathon apps, a drop-in replacement for
//! Mesosphere's marathon-lb 1.x (same flags, labels, templates and output).
//!
//! # Layout
//!
//! One pass, [`pass::run`], owns the data flow end to end:
//!
//! ```text
//! pass::Source ──fetch──> apps body ──run::build_body──> model::Service ──render──> Rendered
//!   (Marathon / file)       (marathon::types)    (model: pure,            (templates +
//!                                                  lookup injected)         render: pure)
//!   Rendered ──Target::plan──> Step: Unchanged | Runtime(ops) | Reload(reason)
//!            ──run::check (haproxy -c, isolate)──> Validated
//!            ──Target::runtime / Target::reload──> pass::Outcome (haproxy::Applied + why)
//! ```
//!
//! - [`pass`]: the pass, its input ([`pass::Source`]) and its typed outcome and error.
//! - [`marathon`]: serde types of Marathon's `/v2/apps` body, the REST client (failover,
//!   basic and DC/OS auth), the SSE decoder and the reconnecting event watch.
//! - [`model`]: apps -> load-balanced services (labels, ports, tasks, health, deployment
//!   groups). Pure: host names go through a lookup the caller passes in.
//! - [`templates`]: the 53 built-in templates, their file/env/label overrides, and Python
//!   `str.format` semantics. Pure.
//! - [`render`]: services + templates -> `haproxy.cfg` and map files, byte-identical to the
//!   original. Pure.
//! - [`run`]: the stages before HAProxy: parse + model + render ([`run::build_body`]), and
//!   `haproxy -c` with isolation of rejected apps ([`run::check`]).
//! - [`haproxy`]: the [`haproxy::Target`] seam and its implementations
//!   ([`haproxy::CommandReload`]: write + `--command`; [`haproxy::Managed`]: our supervised
//!   HAProxy, Runtime API first, reload with a typed reason); validation (the only way to get
//!   a [`haproxy::Validated`]), isolation, stand-in certificates, the atomic write, the
//!   supervisor, master CLI and Runtime API. Every program we run goes through
//!   [`haproxy::exec`]; as PID 1, [`haproxy::reaper`] reaps orphans.
//! - [`config`]: the command line, validated into the options of each stage.
//! - [`container`]: the original image's `run` conventions (`sse`/`poll` first, certificates
//!   from `HAPROXY_SSL_CERT*`, `$MESOS_SANDBOX/templates`), so the binary is the entrypoint.
//! - [`reconcile`]: the live loop: triggers (events, polls, file changes, signals) coalesced
//!   into passes, failures retried with backoff, status published. Its incremental live model
//!   keeps each app's JSON and applies events to it; a pass then gets the apps one by one
//!   ([`run::Apps::Each`]) and models again only those whose JSON changed
//!   ([`model::ModelCache`]).
//! - [`status`]: the state the loop publishes (services, left-out apps, recent applies,
//!   Marathon), read by the admin server and the metrics.
//! - [`admin`]: the admin HTTP server (`--admin-addr`): the dashboard, the state API, health,
//!   metrics, and the signal endpoints HAProxy's `:9090/_mlb_signal/*` forward to.
//! - [`metrics`]: the controller's Prometheus metrics (reloads, runtime updates, passes).
//! - [`compat`]: Python-compatible conversions the original's output depends on.
//! - [`longhelp`]: `--longhelp`, every label and template.
//! - [`provision`]: managed mode's start: the Lua scripts carried in the binary and the
//!   directories the HAProxy head names, written where the head expects them.
//! - [`zdd`]: `marathon-lb zdd`, zero-downtime blue/green deployments through Marathon.
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
pub mod container;
pub mod haproxy;
pub mod logging;
pub mod longhelp;
pub mod marathon;
pub mod metrics;
pub mod model;
pub mod pass;
pub mod provision;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod status;
pub mod templates;
pub mod zdd;
