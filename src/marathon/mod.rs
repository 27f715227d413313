//! Everything that speaks Marathon: the REST client with host failover and auth,
//! the SSE decoder, and the watch state machine that turns `/v2/events` into triggers.

pub mod auth;
pub mod client;
pub mod events;
pub mod hosts;
pub mod sse;
pub mod watch;
