//! Logging set-up of the binary: the `--log-level` filter, where lines go and how they look.
//!
//! - stderr, always: human-readable by default (the original's Python `--log-format` string
//!   keeps meaning "the human format"), or JSON lines with `--log-format json`. Colour only for
//!   a person at a terminal, and never when `NO_COLOR` is set (no-color.org).
//! - syslog, as the original did by default: to `--syslog-socket` (default `/dev/log`) when
//!   that socket exists; `/dev/null` turns it off. RFC 3164 lines, facility `user`, tagged
//!   `marathon-lb[pid]`, at the event's severity.
//!
//! HAProxy's own messages (tracing target `haproxy`) pass at the same level as ours.
//! `MARATHON_LB_LOG` (an `EnvFilter` directive) overrides the level.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the global subscriber. `level`: the original's names (DEBUG, INFO, WARNING, ERROR,
/// CRITICAL; validated by the command line); `format`: `json` or anything else (human);
/// `syslog_socket`: a Unix datagram/stream socket path, used when it exists.
pub fn init(level: &str, format: &str, syslog_socket: &str) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => "info",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MARATHON_LB_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("marathon_lb={level},haproxy={level}"))
        });
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stderr = if format.eq_ignore_ascii_case("json") {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .boxed()
    };
    let (syslog, syslog_error) = match open_syslog(syslog_socket) {
        Ok(Some(writer)) => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .with_level(false)
                    .with_writer(writer),
            ),
            None,
        ),
        Ok(None) => (None, None),
        Err(e) => (None, Some(e)),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(syslog)
        .init();
    if let Some(e) = syslog_error {
        tracing::warn!(socket = syslog_socket, error = %e, "cannot log to syslog; logging to stderr only");
    }
}

type Logger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// The syslog logger for `socket`, `None` when it is `/dev/null`, empty or absent.
fn open_syslog(socket: &str) -> Result<Option<SyslogWriter>, syslog::Error> {
    if socket.is_empty() || socket == "/dev/null" || !Path::new(socket).exists() {
        return Ok(None);
    }
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_USER,
        hostname: None,
        process: "marathon-lb".into(),
        pid: std::process::id(),
    };
    let logger = syslog::unix_custom(formatter, socket)?;
    Ok(Some(SyslogWriter(Arc::new(Mutex::new(logger)))))
}

/// Makes one [`SyslogLine`] per event, at the event's level.
#[derive(Clone)]
struct SyslogWriter(Arc<Mutex<Logger>>);

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine::new(self.0.clone(), Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogLine {
        SyslogLine::new(self.0.clone(), *meta.level())
    }
}

/// One formatted event, sent to syslog when dropped.
struct SyslogLine {
    logger: Arc<Mutex<Logger>>,
    level: Level,
    text: Vec<u8>,
}

impl SyslogLine {
    fn new(logger: Arc<Mutex<Logger>>, level: Level) -> Self {
        Self {
            logger,
            level,
            text: Vec::new(),
        }
    }
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let Ok(mut logger) = self.logger.lock() else {
            return;
        };
        // A full or gone syslog must never stop the controller: errors are dropped.
        let _ = match self.level {
            Level::ERROR => logger.err(text),
            Level::WARN => logger.warning(text),
            Level::INFO => logger.info(text),
            _ => logger.debug(text),
        };
    }
}
