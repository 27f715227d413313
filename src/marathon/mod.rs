//! Everything that speaks Marathon: serde types of its REST bodies, the REST client with host
//! failover and auth, the SSE decoder, and the watch state machine that turns `/v2/events`
//! into triggers.
//!
//! Data flow position: first stage. `types` turns the body of
//! `GET /v2/apps?embed=apps.tasks&...` into plain Rust values that `model` consumes.

pub mod auth;
pub mod client;
pub mod events;
pub mod hosts;
pub mod sse;
pub mod types;
pub mod watch;
