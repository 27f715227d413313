//! The typed options [`Cli::validate`](super::Cli::validate) yields, one struct per stage that
//! reads them: where the config goes ([`Output`]), how it is checked ([`Validation`]), how
//! HAProxy picks it up ([`Apply`]), where the apps come from ([`SourceOptions`]) and what keeps
//! a live run going ([`LiveOptions`]). Nothing after validation reads the raw flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::haproxy::{Paths, Retries};
use crate::marathon::auth::{BasicCredentials, Credentials, DcosCredentials};

/// Where a pass writes the config, its maps and the archive.
#[derive(Debug, Clone)]
pub struct Output {
    /// `--haproxy-config` and the map files beside it.
    pub paths: Paths,
    /// `--haproxy-map`: the maps are written (and compared) too.
    pub map: bool,
    /// `--archive-versions`: previous configs kept (0 = none).
    pub archive_versions: usize,
}

/// How a new config is checked before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validation {
    /// `--skip-validation`: no `haproxy -c`.
    pub skip: bool,
    /// Leave out the apps HAProxy rejects (off with `--skip-config-cleanup`).
    pub cleanup: bool,
}

/// How HAProxy picks up a written config.
#[derive(Debug, Clone)]
pub enum Apply {
    /// `--command`: run it after each write.
    Command(String),
    /// Live mode without `--command`: marathon-lb runs and reloads HAProxy itself.
    Managed(Box<ManagedOptions>),
    /// One pass without `--command`: write only (the original warns that nothing reloaded).
    WriteOnly,
}

impl Apply {
    /// The reload command, if one was given.
    pub fn command(&self) -> Option<&str> {
        match self {
            Self::Command(command) => Some(command),
            _ => None,
        }
    }

    /// The supervisor settings of managed mode.
    pub fn managed(&self) -> Option<&ManagedOptions> {
        match self {
            Self::Managed(options) => Some(options),
            _ => None,
        }
    }
}

/// The supervised HAProxy of managed mode. The run directory is created, locked and resolved
/// at start (errors there are run-time errors, not usage errors).
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// `--haproxy-bin`.
    pub haproxy_bin: PathBuf,
    /// `--run-dir`, as given.
    pub run_dir: PathBuf,
    /// `--drain-timeout` (`None`: 0, old workers drain forever).
    pub drain_timeout: Option<Duration>,
    /// `--reload-interval`, at least 1 s.
    pub reload_interval: Duration,
    /// `--max-reload-retries`.
    pub max_reload_retries: Retries,
    /// `--generate-certs-dir`: where a missing app certificate gets a stand-in.
    pub generate_certs_dir: Option<PathBuf>,
}

/// Where the apps come from.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Marathon or a file.
    pub input: Input,
    /// `--marathon-max-body-bytes`: the largest apps body read.
    pub max_body_bytes: u64,
}

/// The apps' origin.
#[derive(Debug, Clone)]
pub enum Input {
    /// `--apps-file`.
    File(PathBuf),
    /// Marathon (`-m`).
    Marathon(MarathonOptions),
}

/// How to reach Marathon.
#[derive(Debug, Clone)]
pub struct MarathonOptions {
    /// `-m`: the endpoints, in order.
    pub urls: Vec<String>,
    /// The one credential flag that applies (parsed when the client is built).
    pub auth: Auth,
    /// `--marathon-ca-cert`.
    pub ca_cert: Option<PathBuf>,
    /// `--event-stall-timeout`, at least 1 s.
    pub stall_timeout: Duration,
}

/// Marathon credentials as given; the first present wins, in this order (as in the original).
#[derive(Clone)]
pub enum Auth {
    /// `--dcos-auth-credentials` (or `DCOS_SERVICE_ACCOUNT_CREDENTIAL`): JSON.
    Dcos(String),
    /// `--auth-credentials`: `user:pass`.
    Basic(String),
    /// `--marathon-auth-credential-file`: `user:pass` on its first line.
    File(PathBuf),
    /// No credentials.
    None,
}

impl std::fmt::Debug for Auth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dcos(_) => f.write_str("Dcos(..)"),
            Self::Basic(_) => f.write_str("Basic(..)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::None => f.write_str("None"),
        }
    }
}

impl Auth {
    /// The credentials these flags give, read and parsed (the file is read now).
    ///
    /// # Errors
    /// [`CredentialsError`]: the flag and why its value is unusable.
    pub fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let error = |flag, reason: &dyn std::fmt::Display| CredentialsError {
            flag,
            reason: reason.to_string(),
        };
        Ok(match self {
            Self::Dcos(json) => Credentials::Dcos(
                DcosCredentials::from_json(json)
                    .map_err(|e| error("--dcos-auth-credentials", &e))?,
            ),
            Self::Basic(text) => Credentials::Basic(
                BasicCredentials::parse(text).map_err(|e| error("--auth-credentials", &e))?,
            ),
            Self::File(path) => {
                let flag = "--marathon-auth-credential-file";
                let text = std::fs::read_to_string(path)
                    .map_err(|e| error(flag, &format!("reading {}: {e}", path.display())))?;
                let first = text.lines().next().unwrap_or_default().trim();
                Credentials::Basic(BasicCredentials::parse(first).map_err(|e| error(flag, &e))?)
            }
            Self::None => Credentials::None,
        })
    }
}

/// Credentials a flag names that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct CredentialsError {
    /// The flag.
    pub flag: &'static str,
    /// Why its value is unusable.
    pub reason: String,
}

/// What keeps a live run (`--sse`, `--poll-interval`, `--apps-file --watch`) going.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Follow changes: Marathon's event stream (`--sse`), or the apps file (`--watch`/`--sse`).
    pub follow: bool,
    /// `--poll-interval`, at least 1 s.
    pub poll_every: Option<Duration>,
    /// `--resync-interval`, at least 1 s.
    pub resync_every: Duration,
    /// `--max-backoff`, at least 1 s.
    pub max_backoff: Duration,
    /// `--admin-addr` as given: parsed at start, so a bad address stays a start-up error
    /// (exit 1), as before, and is ignored by one pass.
    pub admin_addr: String,
    /// `--marathon-unreachable-after`: when health says Marathon is unreachable.
    pub marathon_unreachable_after: Duration,
}
