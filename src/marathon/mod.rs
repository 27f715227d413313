//! Everything that speaks Marathon: the serde types of its REST bodies.
//!
//! Data flow position: first stage. `types` turns the body of
//! `GET /v2/apps?embed=apps.tasks&...` into plain Rust values that `model` consumes.

pub mod types;
