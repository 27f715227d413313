//! Self-signed stand-ins for the certificates a config references but the host lacks.
//!
//! Data flow position: after `render`, before `validate`. HAProxy refuses a config whose
//! `bind ... crt <path>` names a missing file, so a fresh host (no `/etc/ssl/cert.pem`) or an
//! app label naming a certificate not deployed yet would hold back every app. Instead, each
//! missing path gets a self-signed certificate + key (PEM, mode 0600) for this host, and the
//! caller warns about every path generated.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a certificate could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `rcgen` could not build the certificate (e.g. a host name that is no DNS name).
    #[error("cannot generate a certificate for {path}: {source}")]
    Generate {
        /// Where it was to go.
        path: PathBuf,
        /// The generator's error.
        #[source]
        source: rcgen::Error,
    },
    /// The file or its directory could not be created.
    #[error("cannot write certificate {path}: {source}")]
    Write {
        /// The certificate path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Every certificate file `bind` lines of `config` load (`crt <path>`, as `ssl crt`, in the
/// `--ssl-certs` list of `marathon_https_in` and in the grouped vhost frontends), in order,
/// without duplicates. Relative paths are resolved against `crt-base` when the config sets it.
pub fn referenced(config: &str) -> Vec<PathBuf> {
    let crt_base = config.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("crt-base"))
            .then(|| words.next())
            .flatten()
    });
    let mut paths: Vec<PathBuf> = Vec::new();
    for line in config.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("bind") {
            continue;
        }
        while words.by_ref().any(|w| w == "crt") {
            let Some(path) = words.next() else { break };
            let path = match crt_base {
                Some(base) if !path.starts_with('/') => Path::new(base).join(path),
                _ => PathBuf::from(path),
            };
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

/// Generates a self-signed certificate for this host at every path `config` references that
/// does not exist yet. Returns the paths generated, for the caller to warn about.
///
/// A path ending in `/` is a directory of certificates to HAProxy; it is left alone.
///
/// # Errors
/// [`Error`] for the first path that could not be generated; earlier ones stay in place.
pub fn ensure(config: &str) -> Result<Vec<PathBuf>, Error> {
    let host = host_name();
    let mut generated = Vec::new();
    for path in referenced(config) {
        if path.as_os_str().to_string_lossy().ends_with('/') || path.exists() {
            continue;
        }
        if generate(&path, &host)? {
            generated.push(path);
        }
    }
    Ok(generated)
}

/// This host's name: `/proc/sys/kernel/hostname`, else the `hostname` command, else
/// `localhost`.
pub fn host_name() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let from_command = || {
        std::process::Command::new("hostname")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    from_proc
        .or_else(from_command)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Writes a self-signed certificate and its key (one PEM file, mode 0600) to `path`, for
/// `host` (common name; alternative names `host`, `localhost` and `127.0.0.1`), creating the
/// parent directories. Returns `false`, writing nothing, when `path` exists by then.
///
/// # Errors
/// [`Error::Generate`] or [`Error::Write`].
pub fn generate(path: &Path, host: &str) -> Result<bool, Error> {
    let pem = self_signed(host).map_err(|source| Error::Generate {
        path: path.to_owned(),
        source,
    })?;
    let write_err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // `create_new`: never replace a certificate that appeared meanwhile.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(write_err(e)),
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err)?;
    Ok(true)
}

/// A self-signed certificate followed by its private key, PEM encoded.
fn self_signed(host: &str) -> Result<String, rcgen::Error> {
    let mut names = vec![
        host.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_paths_come_from_bind_lines_only_once_each() {
        let config = "\
global
  crt-base /etc/certs
frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem crt /etc/ssl/other.pem
  # crt /not/a/bind.pem
frontend a_example_com
  bind abns@a_example_com accept-proxy ssl crt /etc/ssl/a.pem
frontend web_443
  bind *:443 ssl crt /etc/ssl/cert.pem
frontend rel
  bind *:8443 ssl crt relative.pem
backend x
  server s 1.1.1.1:443 ssl crt /client/cert.pem
";
        assert_eq!(
            referenced(config),
            [
                "/etc/ssl/cert.pem",
                "/etc/ssl/other.pem",
                "/etc/ssl/a.pem",
                "/etc/certs/relative.pem"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn missing_certificates_are_generated_with_mode_0600_and_existing_ones_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing.pem");
        std::fs::write(&existing, "keep me").unwrap();
        let missing = dir.path().join("deep/er/missing.pem");
        let config = format!(
            "frontend f\n  bind *:443 ssl crt {} crt {} crt {}/\n",
            existing.display(),
            missing.display(),
            dir.path().join("a-dir").display()
        );
        assert_eq!(ensure(&config).unwrap(), vec![missing.clone()]);
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
        let pem = std::fs::read_to_string(&missing).unwrap();
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"));
        let mode = std::fs::metadata(&missing).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(ensure(&config).unwrap().is_empty(), "now it exists");
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }
}
