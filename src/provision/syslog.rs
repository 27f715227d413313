//! A stand-in syslog socket for HAProxy's `log /dev/log` when no syslog daemon listens there
//! (a container, a minimal host): marathon-lb binds the datagram socket itself and writes every
//! message to its own stderr (target `haproxy`), so HAProxy logs instead of raising an
//! `[ALERT] sendmsg()/writev() failed in logger` and the operator sees the logs with
//! marathon-lb's (the original's image needed `HAPROXY_SYSLOGD` and a syslogd for this).

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};

/// Why a stand-in socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {path} for HAProxy's `log` lines: {source}. Run a syslog daemon there, \
     or set a HAPROXY_HEAD template with another `log` target"
)]
pub struct BindError {
    /// The socket path.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Whether something answers on the datagram socket `path` (a syslog daemon).
fn listened(path: &Path) -> bool {
    StdDatagram::unbound().and_then(|s| s.connect(path)).is_ok()
}

/// Binds `path` unless a syslog daemon already listens there, and forwards what arrives to
/// stderr (a task on the current tokio runtime, for the life of the process). A stale socket
/// (ours from a previous run, nobody listening) is replaced; any other file is left alone.
/// Returns whether marathon-lb now listens there.
///
/// # Errors
/// [`BindError`] when the socket cannot be bound.
pub fn stand_in(path: &Path) -> Result<bool, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if listened(path) {
                return Ok(false);
            }
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(_) => return Ok(false),
    }
    let fail = |source| BindError {
        path: path.to_path_buf(),
        source,
    };
    let socket = StdDatagram::bind(path).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    let socket = tokio::net::UnixDatagram::from_std(socket).map_err(fail)?;
    tokio::spawn(forward(socket));
    Ok(true)
}

/// Writes each datagram as one log line, at the level of its syslog severity. HAProxy's
/// per-request traffic logs (severity info) go to DEBUG, so a busy load balancer does not flood
/// marathon-lb's log; its notices (a server going DOWN, a worker exiting) and worse stay
/// visible at INFO and above. The default head sends notices to two `log` lines, so a message
/// equal to the one just before it is dropped.
async fn forward(socket: tokio::net::UnixDatagram) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut previous = String::new();
    while let Ok(n) = socket.recv(&mut buf).await {
        let message = String::from_utf8_lossy(&buf[..n]);
        let (severity, text) = parse(&message);
        if severity <= 5 && text == previous {
            continue;
        }
        match severity {
            0..=3 => tracing::error!(target: "haproxy", "{text}"),
            4 => tracing::warn!(target: "haproxy", "{text}"),
            5 => tracing::info!(target: "haproxy", "{text}"),
            _ => tracing::debug!(target: "haproxy", "{text}"),
        }
        previous.clear();
        previous.push_str(text);
    }
}

/// `<PRI>rest` -> (severity, rest without trailing newline); no PRI -> (info, all).
fn parse(message: &str) -> (u8, &str) {
    let trimmed = message.trim_end_matches(['\n', '\0']);
    if let Some(rest) = trimmed.strip_prefix('<') {
        if let Some((pri, text)) = rest.split_once('>') {
            if let Ok(pri) = pri.parse::<u16>() {
                return ((pri & 7) as u8, text);
            }
        }
    }
    (6, trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_comes_from_the_priority() {
        assert_eq!(
            parse("<134>Nov 1 haproxy[1]: GET /\n"),
            (6, "Nov 1 haproxy[1]: GET /")
        );
        assert_eq!(parse("<139>x"), (3, "x"));
        assert_eq!(parse("<12>x"), (4, "x"));
        assert_eq!(parse("plain"), (6, "plain"));
    }

    #[tokio::test]
    async fn binds_a_free_path_replaces_a_stale_socket_and_leaves_a_live_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        assert!(stand_in(&path).unwrap());
        // Ours now listens: a second call leaves it.
        assert!(!stand_in(&path).unwrap());
        let sender = StdDatagram::unbound().unwrap();
        sender.send_to(b"<134>hello", &path).unwrap();

        // A socket file nobody listens on is replaced.
        let stale = tmp.path().join("stale");
        drop(StdDatagram::bind(&stale).unwrap());
        assert!(stand_in(&stale).unwrap());
        // A regular file is not ours to replace.
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!stand_in(&file).unwrap());
    }
}
