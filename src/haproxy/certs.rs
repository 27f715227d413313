//! Self-signed stand-ins for the certificates a config references but the host lacks.
//!
//! Data flow position: after `render`, before `validate`. HAProxy refuses a config whose
//! `bind ... crt <path>` names a missing file, so a fresh host (no `/etc/ssl/cert.pem`) would
//! hold back every app. Instead, a missing path gets a self-signed certificate + key (PEM,
//! mode 0600) for this host, and the caller warns about every path generated.
//!
//! Only where the operator said so ([`Allowed`]): the `--ssl-certs` paths, and paths inside
//! the `--generate-certs-dir` directory. A path that only an app label names
//! (`HAPROXY_{n}_SSL_CERT`) elsewhere is left missing: `haproxy -c` then rejects it and
//! isolation leaves that app out, naming the label. marathon-lb never creates a directory
//! here (the parent must exist) and never writes through a symlink: the file is created with
//! `O_CREAT|O_EXCL`, which fails on any existing name, a dangling link included.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a certificate could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `rcgen` could not build the certificate (e.g. a host name that is no DNS name).
    #[error("cannot generate a certificate for {path}: {error}")]
    Generate {
        /// Where it was to go.
        path: PathBuf,
        /// The generator's error.
        error: rcgen::Error,
    },
    /// The file could not be created (a missing directory included: none is created).
    #[error("cannot write certificate {path}: {error}")]
    Write {
        /// The certificate path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// Every certificate file `bind` lines of `config` load (`crt <path>`, as `ssl crt`, in the
/// `--ssl-certs` list of `marathon_https_in` and in the grouped vhost frontends), in order,
/// without duplicates. Relative paths are resolved against `crt-base` when the config sets it.
pub fn referenced(config: &str) -> Vec<PathBuf> {
    referenced_in(config, config)
}

/// [`referenced`] by the `bind` lines of `part` of `config` (relative paths resolved with
/// `config`'s `crt-base`).
pub fn referenced_in(config: &str, part: &str) -> Vec<PathBuf> {
    let crt_base = crt_base(config);
    let mut paths: Vec<PathBuf> = Vec::new();
    for line in part.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("bind") {
            continue;
        }
        while words.by_ref().any(|w| w == "crt") {
            let Some(path) = words.next() else { break };
            let path = resolve(crt_base, path);
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

/// The config's `crt-base`, if it sets one.
fn crt_base(config: &str) -> Option<&str> {
    // One fast search of a 10 MB config before reading it line by line.
    if !config.contains("crt-base") {
        return None;
    }
    config.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("crt-base"))
            .then(|| words.next())
            .flatten()
    })
}

/// `path` as HAProxy reads it: relative paths are under `crt-base`.
fn resolve(crt_base: Option<&str>, path: &str) -> PathBuf {
    match crt_base {
        Some(base) if !path.starts_with('/') => Path::new(base).join(path),
        _ => PathBuf::from(path),
    }
}

/// Where certificates may be generated: what the operator configured, never an app label.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// The `--ssl-certs` paths, as given (resolved against `crt-base` like the config's).
    ssl_certs: Vec<String>,
    /// `--generate-certs-dir`: any missing certificate inside it may be generated.
    dir: Option<PathBuf>,
}

impl Allowed {
    /// The comma-separated `--ssl-certs` list and the optional `--generate-certs-dir`. An
    /// empty list means `/etc/ssl/cert.pem`, as it does to the renderer.
    pub fn new(ssl_certs: &str, dir: Option<&Path>) -> Self {
        let ssl_certs = if ssl_certs.is_empty() {
            vec!["/etc/ssl/cert.pem".to_owned()]
        } else {
            ssl_certs.split(',').map(str::to_owned).collect()
        };
        Self {
            ssl_certs,
            dir: dir.map(Path::to_owned),
        }
    }

    /// Where to write a stand-in for `path`, or `None` when the operator did not allow it.
    /// An `--ssl-certs` path is written as named; a path inside the directory is written at
    /// its canonical location, checked to be inside the canonical directory (`..` and
    /// symlinked subdirectories that lead out are refused).
    fn target(&self, path: &Path, crt_base: Option<&str>) -> Option<PathBuf> {
        if self
            .ssl_certs
            .iter()
            .any(|cert| resolve(crt_base, cert) == path)
        {
            return Some(path.to_owned());
        }
        let dir = std::fs::canonicalize(self.dir.as_ref()?).ok()?;
        let name = match path.components().next_back()? {
            std::path::Component::Normal(name) => name,
            _ => return None,
        };
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        parent.starts_with(&dir).then(|| parent.join(name))
    }
}

/// Generates a self-signed certificate for this host at every path `config` references that
/// does not exist yet and `allowed` permits. Returns each path generated or the error for
/// it; paths not allowed are skipped (HAProxy's check reports them).
///
/// A path ending in `/` is a directory of certificates to HAProxy; it is left alone.
pub fn ensure(config: &str, allowed: &Allowed) -> Vec<Result<PathBuf, Error>> {
    ensure_paths(config, &referenced(config), allowed)
}

/// [`ensure`] for `paths`, which `config` references (found by [`referenced`], or kept from
/// an earlier config plus [`referenced_in`] the sections that changed).
pub fn ensure_paths(
    config: &str,
    paths: &[PathBuf],
    allowed: &Allowed,
) -> Vec<Result<PathBuf, Error>> {
    let crt_base = crt_base(config);
    if paths.iter().all(|p| p.exists()) {
        return Vec::new(); // the usual case: no host name to look up
    }
    let host = host_name();
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str().to_string_lossy().ends_with('/') || path.exists() {
            continue;
        }
        let Some(target) = allowed.target(path, crt_base) else {
            tracing::debug!(path = %path.display(), "certificate missing; not generated: not an --ssl-certs path nor inside --generate-certs-dir");
            continue;
        };
        match generate(&target, &host) {
            Ok(true) => out.push(Ok(target)),
            Ok(false) => {}
            Err(e) => out.push(Err(e)),
        }
    }
    out
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
/// `host` (common name; alternative names `host`, `localhost` and `127.0.0.1`). The parent
/// directory must exist: none is created. Returns `false`, writing nothing, when anything
/// exists at `path` by then, a symlink (dangling or not) included: it is never followed.
///
/// # Errors
/// [`Error::Generate`] or [`Error::Write`].
pub fn generate(path: &Path, host: &str) -> Result<bool, Error> {
    let pem = self_signed(host).map_err(|error| Error::Generate {
        path: path.to_owned(),
        error,
    })?;
    let write_err = |error| Error::Write {
        path: path.to_owned(),
        error,
    };
    // `create_new` (`O_CREAT|O_EXCL`): never replace a certificate that appeared meanwhile,
    // and fail on a symlink instead of creating its target.
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

    fn generated(config: &str, allowed: &Allowed) -> Vec<PathBuf> {
        ensure(config, allowed)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    fn bind(paths: &[&Path]) -> String {
        let crts: String = paths
            .iter()
            .map(|p| format!(" crt {}", p.display()))
            .collect();
        format!("frontend f\n  bind *:443 ssl{crts}\n")
    }

    #[test]
    fn missing_ssl_certs_are_generated_with_mode_0600_and_existing_ones_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing.pem");
        std::fs::write(&existing, "keep me").unwrap();
        let missing = dir.path().join("missing.pem");
        let a_dir = format!("{}/", dir.path().join("a-dir").display());
        let config = bind(&[&existing, &missing, Path::new(&a_dir)]);
        let list = format!("{},{},{a_dir}", existing.display(), missing.display());
        let allowed = Allowed::new(&list, None);
        assert_eq!(generated(&config, &allowed), vec![missing.clone()]);
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
        let pem = std::fs::read_to_string(&missing).unwrap();
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"));
        let mode = std::fs::metadata(&missing).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(generated(&config, &allowed).is_empty(), "now it exists");
    }

    #[test]
    fn a_path_only_a_label_names_is_never_written_nor_its_directory_created() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let outside = dir.path().join("app.pem");
        let deep = dir.path().join("nonexistent-dir/evil.pem");
        let escape = certs.join("../escape.pem");
        let config = bind(&[&outside, &deep, &escape]);
        let allowed = Allowed::new("/etc/ssl/other-cert.pem", Some(&certs));
        assert!(generated(&config, &allowed).is_empty());
        assert!(!outside.exists() && !deep.parent().unwrap().exists());
        assert!(!dir.path().join("escape.pem").exists());
    }

    #[test]
    fn a_missing_parent_is_an_error_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("no/such/dir/cert.pem");
        let allowed = Allowed::new(&deep.display().to_string(), None);
        let results = ensure(&bind(&[&deep]), &allowed);
        assert_eq!(results.len(), 1);
        let err = results.into_iter().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("cert.pem"), "{err}");
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn certificates_inside_the_generate_dir_are_generated_there_only() {
        let dir = tempfile::tempdir().unwrap();
        let certs = std::fs::canonicalize(dir.path()).unwrap().join("certs");
        std::fs::create_dir_all(certs.join("sub")).unwrap();
        let top = certs.join("a.pem");
        let sub = certs.join("sub/b.pem");
        let missing_sub = certs.join("nosub/c.pem");
        let allowed = Allowed::new("", Some(&certs));
        let config = bind(&[&top, &sub, &missing_sub]);
        assert_eq!(generated(&config, &allowed), vec![top.clone(), sub.clone()]);
        assert!(top.is_file() && sub.is_file());
        assert!(!certs.join("nosub").exists());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let certs = root.join("certs");
        std::fs::create_dir(&certs).unwrap();
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        // A dangling link at the certificate path, in the dir and as an --ssl-certs path.
        let target = root.join("target.pem");
        let link = certs.join("link.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // A subdirectory link leading out of the dir.
        std::os::unix::fs::symlink(&outside, certs.join("out")).unwrap();
        let through = certs.join("out/x.pem");
        let allowed = Allowed::new(&link.display().to_string(), Some(&certs));
        assert!(generated(&bind(&[&link, &through]), &allowed).is_empty());
        assert!(!target.exists(), "a dangling link was followed");
        assert!(
            !outside.join("x.pem").exists(),
            "left the dir through a link"
        );
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }
}
