//! Talking to HAProxy: validate a rendered config with `haproxy -c`, write it into place
//! atomically, and get it served: by the user's reload command, or by our supervised
//! master-worker HAProxy ([`process::Supervisor`], through the master CLI client in
//! [`master`]), without any reload for server-only changes ([`plan`] + [`runtime`]).
//! [`certs`] stands in self-signed certificates for missing `crt` files the operator allowed
//! first; when the config is rejected, [`isolate`] finds the apps to leave out. [`archive`]
//! keeps the previous configs in a private directory. [`exec`] runs every external program
//! (scrubbed environment, bounded time, dies with us); [`reaper`] reaps orphans as PID 1.
//!
//! Data flow position: after `render`. A [`Validated`] config can only be made by
//! [`validate`] (or explicitly [`Validated::unchecked`] for `--skip-validation`), so nothing
//! unvalidated reaches the disk by accident.

mod apply;
pub mod archive;
pub mod certs;
pub mod command;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod isolate;
pub mod managed;
pub mod master;
pub mod plan;
pub mod process;
pub mod reaper;
pub mod record;
pub mod replace;
pub mod runtime;
pub mod stats;
pub mod target;
mod validate;

pub use apply::{apply, changed, reload, ApplyError, Paths};
pub use command::CommandReload;
pub use managed::Managed;
pub use process::{ReloadOutcome, ReloadReason, Retries, Supervisor, SupervisorConfig};
pub use target::{Applied, Step, Target};
pub use validate::{
    validate, validate_file, validate_verbose, ValidateError, ValidateOutput, Validated,
};
