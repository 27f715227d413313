//! Talking to HAProxy: validate a rendered config with `haproxy -c`, then write it into place
//! atomically and run the reload command, or reload a supervised master-worker HAProxy
//! ([`process::Supervisor`], through the master CLI client in [`master`]).
//!
//! Data flow position: after `render`. A [`Validated`] config can only be made by
//! [`validate`] (or explicitly [`Validated::unchecked`] for `--skip-validation`), so nothing
//! unvalidated reaches the disk by accident.

mod apply;
pub mod master;
pub mod plan;
pub mod process;
pub mod runtime;
mod validate;

pub use apply::{apply, changed, reload, ApplyError, Paths};
pub use process::{ReloadOutcome, ReloadReason, Retries, Supervisor, SupervisorConfig};
pub use validate::{validate, validate_file, ValidateError, Validated};
