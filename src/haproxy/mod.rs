//! Talking to HAProxy: validate a rendered config with `haproxy -c`, then write it into place
//! atomically and run the reload command. [`certs`] stands in self-signed certificates for
//! missing `crt` files first; when the config is rejected, [`isolate`] finds the apps to
//! leave out.
//!
//! Data flow position: after `render`. A [`Validated`] config can only be made by
//! [`validate`] (or explicitly [`Validated::unchecked`] for `--skip-validation`), so nothing
//! unvalidated reaches the disk by accident.

mod apply;
pub mod certs;
pub mod isolate;
mod validate;

pub use apply::{apply, changed, reload, ApplyError, Paths};
pub use validate::{
    validate, validate_file, validate_verbose, ValidateError, ValidateOutput, Validated,
};
