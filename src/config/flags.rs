//! The flags the main command and `marathon-lb zdd` share: logging and Marathon's
//! credentials (flattened into both command lines, so they cannot drift apart).

use std::path::PathBuf;

use clap::Args;

use super::Auth;

/// Where and how the binary logs.
#[derive(Debug, Clone, Args)]
pub struct LogFlags {
    /// Syslog socket, used when it exists ('/dev/null' to disable); logs always go to stderr too.
    #[arg(long, default_value = "/dev/log")]
    pub syslog_socket: String,
    /// `json` for JSON lines on stderr; anything else (such as the original's Python format
    /// string) means the human-readable format.
    #[arg(long, default_value = "%(asctime)-15s %(name)s: %(message)s")]
    pub log_format: String,
    /// Log level: DEBUG, INFO, WARNING, ERROR, CRITICAL (any case).
    #[arg(long, default_value = "DEBUG")]
    pub log_level: String,
}

impl LogFlags {
    /// Installs the global log subscriber these flags describe ([`crate::logging::init`]).
    pub fn init(&self) {
        crate::logging::init(&self.log_level, &self.log_format, &self.syslog_socket);
    }
}

/// Marathon's credentials and the CA that signs its certificate.
#[derive(Debug, Clone, Args)]
pub struct AuthFlags {
    /// Path to a file with Marathon HTTP basic auth credentials (user:pass on the first line).
    #[arg(long)]
    pub marathon_auth_credential_file: Option<PathBuf>,
    /// Marathon HTTP basic auth credentials, user:pass.
    #[arg(long)]
    pub auth_credentials: Option<String>,
    /// DC/OS service account credentials (JSON with uid, private_key, login_endpoint).
    #[arg(long, env = "DCOS_SERVICE_ACCOUNT_CREDENTIAL", hide_env_values = true)]
    pub dcos_auth_credentials: Option<String>,
    /// CA certificate (PEM) for Marathon's TLS.
    #[arg(long)]
    pub marathon_ca_cert: Option<PathBuf>,
}

impl AuthFlags {
    /// The credentials given; the first present wins, in the original's order: DC/OS service
    /// account, then basic auth, then the basic-auth file.
    pub fn auth(&self) -> Auth {
        if let Some(json) = &self.dcos_auth_credentials {
            Auth::Dcos(json.clone())
        } else if let Some(text) = &self.auth_credentials {
            Auth::Basic(text.clone())
        } else if let Some(path) = &self.marathon_auth_credential_file {
            Auth::File(path.clone())
        } else {
            Auth::None
        }
    }
}
