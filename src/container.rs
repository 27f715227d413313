//! The original image's `run` conventions, done by the binary itself so that it can be the
//! container's entrypoint (PID 1: it reaps orphans and stops HAProxy on SIGTERM).
//!
//! Container mode starts when the first argument is `sse` or `poll`, as with the original's
//! `run poll|sse [marathon_lb.py args]`; any other command line is left alone. Then:
//!
//! - `sse` becomes `--sse`; `poll` becomes `--poll-interval $POLL_INTERVAL` (default 60 s);
//! - `--haproxy-config /marathon-lb/haproxy.cfg` and `--syslog-socket $SYSLOG_SOCKET`
//!   (default `/dev/null`) are added unless given;
//! - certificates: `HAPROXY_SSL_CERT` is written to `$MARATHON_LB_SSL_DIR/cert.pem` and
//!   `HAPROXY_SSL_CERT0` .. `HAPROXY_SSL_CERT100` to `cert<N>.pem` (the directory defaults to
//!   `/etc/ssl`; `\n` in a value is a newline, as the original's `echo -e`), and they are
//!   passed as `--ssl-certs` after any `--ssl-certs` given; without either, `--ssl-certs` stays
//!   `/etc/ssl/cert.pem`, which managed mode fills with a self-signed certificate when missing
//!   (the original generated one with openssl);
//! - templates: the files of `$MESOS_SANDBOX/templates` are copied into `./templates`, where
//!   marathon-lb reads template overrides;
//! - `HAPROXY_SYSCTL_PARAMS` (`name=value` pairs) are written to `/proc/sys`; a failure stops
//!   the start unless `HAPROXY_SYSCTL_NONSTRICT` is set.
//!
//! The original's `PORTS` (for its iptables SYN-drop during reloads) is not needed: reloads
//! here keep the listening sockets (master-worker mode).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why container mode could not prepare the start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate from the environment could not be written.
    #[error("cannot write {path} (from ${var}): {source}; set MARATHON_LB_SSL_DIR to a writable directory")]
    WriteCert {
        /// The file.
        path: PathBuf,
        /// The environment variable it came from.
        var: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `$MESOS_SANDBOX/templates` could not be copied.
    #[error("cannot copy the templates of {from} into ./templates: {source}")]
    CopyTemplates {
        /// The sandbox's templates directory.
        from: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sysctl of `HAPROXY_SYSCTL_PARAMS` could not be set.
    #[error("HAPROXY_SYSCTL_PARAMS: cannot set {param}: {reason} (set HAPROXY_SYSCTL_NONSTRICT to go on anyway)")]
    Sysctl {
        /// The `name=value` pair.
        param: String,
        /// What went wrong.
        reason: String,
    },
}

/// What container mode does before the command line is parsed (pure: from the arguments and
/// the environment).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The command line to parse (the program name first).
    pub args: Vec<OsString>,
    /// Certificate files to write, with the variable each came from.
    pub certs: Vec<(PathBuf, String, String)>,
    /// A directory whose files go into `./templates`.
    pub templates_from: Option<PathBuf>,
    /// `(name, value)` sysctls, and whether a failure may be ignored.
    pub sysctls: (Vec<(String, String)>, bool),
}

/// The plan for `args` (program name first), or `None` when the first argument is not `sse`
/// or `poll` (not container mode).
pub fn plan(args: &[OsString], env: impl Fn(&str) -> Option<String>) -> Option<Plan> {
    let mode = args.get(1)?.to_str()?;
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let mut out = Plan::default();
    let mut rest: Vec<OsString> = args[2..].to_vec();
    out.args.push(args[0].clone());
    match mode {
        "sse" => out.args.push("--sse".into()),
        "poll" => {
            let every = var("POLL_INTERVAL").unwrap_or_else(|| "60".into());
            out.args.extend(["--poll-interval".into(), every.into()]);
        }
        _ => return None,
    }
    let given = |flag: &str| rest.iter().any(|a| a == flag);
    if !given("--haproxy-config") {
        out.args
            .extend(["--haproxy-config".into(), "/marathon-lb/haproxy.cfg".into()]);
    }
    if !given("--syslog-socket") {
        let socket = var("SYSLOG_SOCKET").unwrap_or_else(|| "/dev/null".into());
        out.args.extend(["--syslog-socket".into(), socket.into()]);
    }
    // --ssl-certs given: taken out, and the certificates from the environment appended.
    let mut certs: Vec<String> = Vec::new();
    if let Some(at) = rest.iter().position(|a| a == "--ssl-certs") {
        if let Some(value) = rest.get(at + 1) {
            certs.push(value.to_string_lossy().into_owned());
        }
        rest.drain(at..(at + 2).min(rest.len()));
    }
    if let Some(pem) = var("HAPROXY_SSL_CERT") {
        let dir = PathBuf::from(var("MARATHON_LB_SSL_DIR").unwrap_or_else(|| "/etc/ssl".into()));
        let mut add = |name: String, var_name: String, pem: String| {
            let path = dir.join(name);
            certs.push(path.display().to_string());
            out.certs.push((path, var_name, pem.replace("\\n", "\n")));
        };
        add("cert.pem".into(), "HAPROXY_SSL_CERT".into(), pem);
        for i in 0..=100 {
            let name = format!("HAPROXY_SSL_CERT{i}");
            if let Some(pem) = var(&name) {
                add(format!("cert{i}.pem"), name, pem);
            }
        }
    }
    if !certs.is_empty() {
        out.args
            .extend(["--ssl-certs".into(), certs.join(",").into()]);
    }
    out.args.extend(rest);
    if let Some(sandbox) = var("MESOS_SANDBOX") {
        let templates = Path::new(&sandbox).join("templates");
        if templates.is_dir() {
            out.templates_from = Some(templates);
        }
    }
    if let Some(params) = var("HAPROXY_SYSCTL_PARAMS") {
        let pairs = params
            .split_whitespace()
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect();
        out.sysctls = (pairs, var("HAPROXY_SYSCTL_NONSTRICT").is_some());
    }
    Some(out)
}

/// The command line to parse: in container mode (see the module doc) after its files are
/// written; otherwise the process's own.
///
/// # Errors
/// [`Error`] when a certificate, the templates or a sysctl cannot be written.
pub fn prepare(args: Vec<OsString>) -> Result<Vec<OsString>, Error> {
    let Some(plan) = plan(&args, |k| std::env::var(k).ok()) else {
        return Ok(args);
    };
    for (path, var, pem) in &plan.certs {
        write_private(path, pem).map_err(|source| Error::WriteCert {
            path: path.clone(),
            var: var.clone(),
            source,
        })?;
    }
    if let Some(from) = &plan.templates_from {
        copy_templates(from).map_err(|source| Error::CopyTemplates {
            from: from.clone(),
            source,
        })?;
    }
    let (sysctls, nonstrict) = &plan.sysctls;
    for (name, value) in sysctls {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        if let Err(e) = std::fs::write(&path, value) {
            if !nonstrict {
                return Err(Error::Sysctl {
                    param: format!("{name}={value}"),
                    reason: format!("{}: {e}", path.display()),
                });
            }
            eprintln!("marathon-lb: HAPROXY_SYSCTL_PARAMS: {name}={value}: {e} (ignored)");
        }
    }
    Ok(plan.args)
}

/// Writes a certificate (with its key) readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// Copies the regular files of `from` into `./templates`.
fn copy_templates(from: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all("templates")?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let to = Path::new("templates").join(entry.file_name());
            std::fs::copy(entry.path(), &to)?;
            eprintln!(
                "marathon-lb: template {} -> {}",
                entry.path().display(),
                to.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Option<Plan> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        plan(&args, |k| env.get(k).cloned())
    }

    fn args(plan: &Plan) -> Vec<String> {
        plan.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn only_sse_or_poll_first_is_container_mode() {
        assert_eq!(run(&["mlb", "--sse", "--group", "x"], &[]), None);
        assert_eq!(run(&["mlb", "zdd"], &[]), None);
        assert_eq!(run(&["mlb"], &[]), None);
        let sse = run(&["mlb", "sse", "--group", "external"], &[]).unwrap();
        assert_eq!(
            args(&sse),
            [
                "mlb",
                "--sse",
                "--haproxy-config",
                "/marathon-lb/haproxy.cfg",
                "--syslog-socket",
                "/dev/null",
                "--group",
                "external"
            ]
        );
        let poll = run(
            &["mlb", "poll", "--haproxy-config", "h.cfg"],
            &[("POLL_INTERVAL", "5")],
        );
        assert_eq!(
            args(&poll.unwrap()),
            [
                "mlb",
                "--poll-interval",
                "5",
                "--syslog-socket",
                "/dev/null",
                "--haproxy-config",
                "h.cfg"
            ]
        );
    }

    #[test]
    fn certificates_from_the_environment_follow_the_given_ones() {
        let env = [
            ("HAPROXY_SSL_CERT", "A\\nB"),
            ("HAPROXY_SSL_CERT0", "C"),
            ("HAPROXY_SSL_CERT7", "D"),
            ("MARATHON_LB_SSL_DIR", "/s"),
        ];
        let plan = run(
            &["mlb", "sse", "--ssl-certs", "/x.pem", "--group", "g"],
            &env,
        )
        .unwrap();
        let a = args(&plan);
        let at = a.iter().position(|x| x == "--ssl-certs").unwrap();
        assert_eq!(a[at + 1], "/x.pem,/s/cert.pem,/s/cert0.pem,/s/cert7.pem");
        assert_eq!(a.iter().filter(|x| *x == "--ssl-certs").count(), 1);
        assert_eq!(a[a.len() - 2..], ["--group", "g"]);
        assert_eq!(
            plan.certs[0],
            (
                "/s/cert.pem".into(),
                "HAPROXY_SSL_CERT".into(),
                "A\nB".into()
            )
        );
        assert_eq!(plan.certs.len(), 3);
        // Neither: the default --ssl-certs (generated in managed mode when missing).
        let plain = run(&["mlb", "sse"], &[]).unwrap();
        assert!(!args(&plain).contains(&"--ssl-certs".to_owned()));
    }

    #[test]
    fn sandbox_templates_and_sysctls() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("templates")).unwrap();
        let sandbox = tmp.path().display().to_string();
        let plan = run(
            &["mlb", "sse"],
            &[
                ("MESOS_SANDBOX", &sandbox),
                ("HAPROXY_SYSCTL_PARAMS", "net.a.b=1 c=2"),
            ],
        )
        .unwrap();
        assert_eq!(plan.templates_from, Some(tmp.path().join("templates")));
        assert_eq!(
            plan.sysctls.0,
            [("net.a.b".into(), "1".into()), ("c".into(), "2".into())]
        );
        assert!(!plan.sysctls.1);
        let none = run(&["mlb", "sse"], &[("MESOS_SANDBOX", "/nonexistent")]).unwrap();
        assert_eq!(none.templates_from, None);
    }
}
