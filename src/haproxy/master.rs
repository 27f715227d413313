//! A client for the HAProxy master CLI (`haproxy -W -S <socket>`): one command per
//! connection, and a parser for `show proc`.
//!
//! Data flow position: under [`super::process`], which uses it to wait for a started master,
//! to trigger reloads and to tell whether they worked. I/O ([`MasterCli`]) is split from
//! parsing ([`parse_show_proc`]) so the parser is tested on captured output.
//!
//! HAProxy 2.6 prints, for example:
//!
//! ```text
//! #<PID>          <type>          <reloads>       <uptime>        <version>
//! 29257           master          2 [failed: 1]   0d00h00m10s     2.6.12-1+deb12u4
//! # workers
//! 29445           worker          1               0d00h00m07s     2.6.12-1+deb12u4
//! # old workers
//! 29261           worker          1               0d00h00m04s     2.6.12-1+deb12u4
//! # programs
//! ```
//!
//! The master's `reloads` counts every reload it ran, `failed` the failed ones since the last
//! success (it returns to 0 after one). A worker's `reloads` counts the reloads it has
//! survived: a fresh worker shows 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why a master CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket could not be reached (the master is down or re-executing itself).
    #[error("cannot connect to the master CLI at {socket}: {error}")]
    Connect {
        /// The socket path.
        socket: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Sending the command or reading its answer failed.
    #[error("master CLI command `{command}` failed: {error}")]
    Io {
        /// The command.
        command: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The master did not answer in time.
    #[error("master CLI command `{command}` got no answer within {timeout:?}")]
    Timeout {
        /// The command.
        command: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The answer to `show proc` has an unexpected shape.
    #[error("cannot parse `show proc`: {reason}\n{text}")]
    Parse {
        /// What was wrong.
        reason: String,
        /// The whole answer.
        text: String,
    },
}

/// The master process as `show proc` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Its pid; stable across reloads (the master re-executes itself in place).
    pub pid: u32,
    /// Reloads run since it started, failed ones included.
    pub reloads: u32,
    /// Failed reloads since the last successful one.
    pub failed_reloads: u32,
    /// Time since it started.
    pub uptime: Duration,
    /// HAProxy's version string.
    pub version: String,
}

/// A worker (current or old) as `show proc` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Its pid.
    pub pid: u32,
    /// Reloads this worker has survived: its generation, 0 for the newest.
    pub reloads: u32,
    /// Time since it was forked.
    pub uptime: Duration,
    /// HAProxy's version string.
    pub version: String,
}

/// The parsed answer to `show proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcList {
    /// The master.
    pub master: Master,
    /// Workers serving the current config (one, unless a reload is under way).
    pub workers: Vec<Worker>,
    /// Workers left by reloads, still finishing their connections.
    pub old_workers: Vec<Worker>,
}

impl ProcList {
    /// Whether `pid` is a current worker.
    pub fn is_current_worker(&self, pid: u32) -> bool {
        self.workers.iter().any(|w| w.pid == pid)
    }
}

/// What `reload` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadReply {
    /// Nothing: HAProxy before 2.7 reloads asynchronously and says nothing; `show proc`
    /// tells the result.
    Silent,
    /// HAProxy 2.7+ answers `Success=<0|1>` followed by the startup log.
    Status {
        /// Whether the new config loaded.
        success: bool,
        /// The startup log that followed.
        log: String,
    },
}

/// Sends commands to the master CLI socket, one connection per command.
#[derive(Debug, Clone)]
pub struct MasterCli {
    /// The `-S` socket path.
    socket: PathBuf,
    /// Bound on connect + send + read of one command.
    timeout: Duration,
}

impl MasterCli {
    /// A client for the socket at `socket`; each command must finish within `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one command and returns the whole answer (read until the master closes).
    ///
    /// # Errors
    /// [`CliError::Connect`], [`CliError::Io`] or [`CliError::Timeout`].
    pub async fn command(&self, command: &str) -> Result<String, CliError> {
        let exchange = async {
            let mut stream =
                UnixStream::connect(&self.socket)
                    .await
                    .map_err(|error| CliError::Connect {
                        socket: self.socket.display().to_string(),
                        error,
                    })?;
            let io = |error| CliError::Io {
                command: command.to_owned(),
                error,
            };
            stream
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(io)?;
            // The master serves commands until EOF: close our side to get the answer's end.
            stream.shutdown().await.map_err(io)?;
            let mut answer = Vec::new();
            match stream.read_to_end(&mut answer).await {
                Ok(_) => {}
                // `reload` makes the master exec itself; the connection may be reset.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => return Err(io(e)),
            }
            Ok(String::from_utf8_lossy(&answer).into_owned())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CliError::Timeout {
                command: command.to_owned(),
                timeout: self.timeout,
            })?
    }

    /// `show proc`, parsed.
    ///
    /// # Errors
    /// As [`MasterCli::command`], and [`CliError::Parse`].
    pub async fn show_proc(&self) -> Result<ProcList, CliError> {
        let text = self.command("show proc").await?;
        parse_show_proc(&text)
    }

    /// Asks the master to reload. On HAProxy 2.6 this only starts the reload: poll
    /// [`MasterCli::show_proc`] for the result.
    ///
    /// # Errors
    /// As [`MasterCli::command`].
    pub async fn reload(&self) -> Result<ReloadReply, CliError> {
        let text = self.command("reload").await?;
        Ok(parse_reload_reply(&text))
    }
}

/// Parses the answer to `reload`.
pub fn parse_reload_reply(text: &str) -> ReloadReply {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(first) if first.starts_with("Success=") => ReloadReply::Status {
            success: first == "Success=1",
            log: lines
                .skip_while(|l| l.trim() == "--")
                .collect::<Vec<_>>()
                .join("\n"),
        },
        _ => ReloadReply::Silent,
    }
}

/// Parses the answer to `show proc` (HAProxy 2.x/3.x layout; `# programs` are skipped).
///
/// # Errors
/// [`CliError::Parse`] when there is no master line or a line is malformed.
pub fn parse_show_proc(text: &str) -> Result<ProcList, CliError> {
    let fail = |reason: String| CliError::Parse {
        reason,
        text: text.to_owned(),
    };
    #[derive(PartialEq)]
    enum Section {
        Head,
        Workers,
        OldWorkers,
        Other,
    }
    let mut section = Section::Head;
    let mut master = None;
    let mut workers = Vec::new();
    let mut old_workers = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(title) = line.strip_prefix('#') {
            section = match title.trim() {
                "workers" => Section::Workers,
                "old workers" => Section::OldWorkers,
                t if t.starts_with("<PID>") => Section::Head,
                _ => Section::Other,
            };
            continue;
        }
        match section {
            Section::Head => {
                master = Some(parse_master(line).ok_or_else(|| fail(format!("bad line `{line}`")))?)
            }
            Section::Workers | Section::OldWorkers => {
                let worker =
                    parse_worker(line).ok_or_else(|| fail(format!("bad line `{line}`")))?;
                if section == Section::Workers {
                    workers.push(worker);
                } else {
                    old_workers.push(worker);
                }
            }
            Section::Other => {}
        }
    }
    let master = master.ok_or_else(|| fail("no master line".to_owned()))?;
    Ok(ProcList {
        master,
        workers,
        old_workers,
    })
}

/// `29257 master 2 [failed: 1] 0d00h00m10s 2.6.12-1+deb12u4`
fn parse_master(line: &str) -> Option<Master> {
    let mut fields = line.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    if fields.next()? != "master" {
        return None;
    }
    let reloads = fields.next()?.parse().ok()?;
    let mut next = fields.next()?;
    let mut failed_reloads = 0;
    if next == "[failed:" {
        failed_reloads = fields.next()?.trim_end_matches(']').parse().ok()?;
        next = fields.next()?;
    }
    Some(Master {
        pid,
        reloads,
        failed_reloads,
        uptime: parse_uptime(next)?,
        version: fields.collect::<Vec<_>>().join(" "),
    })
}

/// `29445 worker 1 0d00h00m07s 2.6.12-1+deb12u4`
fn parse_worker(line: &str) -> Option<Worker> {
    let mut fields = line.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    if fields.next()? != "worker" {
        return None;
    }
    Some(Worker {
        pid,
        reloads: fields.next()?.parse().ok()?,
        uptime: parse_uptime(fields.next()?)?,
        version: fields.collect::<Vec<_>>().join(" "),
    })
}

/// `0d00h00m07s` (any subset of d/h/m/s, in that order).
fn parse_uptime(text: &str) -> Option<Duration> {
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        seconds += number.parse::<u64>().ok()? * unit;
        number.clear();
    }
    number.is_empty().then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELOADING: &str = "\
#<PID>          <type>          <reloads>       <uptime>        <version>      
29257           master          2 [failed: 1]   0d00h00m10s     2.6.12-1+deb12u4
# workers
29445           worker          1               0d00h00m07s     2.6.12-1+deb12u4
# old workers
29261           worker          3               1d02h03m04s     2.6.12-1+deb12u4
# programs

";

    #[test]
    fn parses_master_workers_and_old_workers() {
        let list = parse_show_proc(RELOADING).unwrap();
        assert_eq!(
            list.master,
            Master {
                pid: 29257,
                reloads: 2,
                failed_reloads: 1,
                uptime: Duration::from_secs(10),
                version: "2.6.12-1+deb12u4".into(),
            }
        );
        assert_eq!(list.workers.len(), 1);
        assert_eq!(list.workers[0].pid, 29445);
        assert_eq!(list.workers[0].reloads, 1);
        assert_eq!(
            list.old_workers,
            vec![Worker {
                pid: 29261,
                reloads: 3,
                uptime: Duration::from_secs(86_400 + 2 * 3_600 + 3 * 60 + 4),
                version: "2.6.12-1+deb12u4".into(),
            }]
        );
        assert!(list.is_current_worker(29445));
        assert!(!list.is_current_worker(29261));
    }

    #[test]
    fn a_master_without_workers_parses() {
        let text = "#<PID> <type> <reloads> <uptime> <version>\n\
                    7 master 0 [failed: 0] 0d00h00m00s 2.6.12\n# workers\n# programs\n";
        let list = parse_show_proc(text).unwrap();
        assert_eq!(list.master.pid, 7);
        assert!(list.workers.is_empty() && list.old_workers.is_empty());
    }

    #[test]
    fn programs_are_skipped() {
        let text = "#<PID> <type> <reloads> <uptime> <version>\n\
                    7 master 0 [failed: 0] 0d00h00m00s 2.6.12\n# workers\n\
                    8 worker 0 0d00h00m00s 2.6.12\n# programs\n9 sidecar 0 0d00h00m00s -\n";
        assert_eq!(parse_show_proc(text).unwrap().workers.len(), 1);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        for text in ["", "Unknown command\n", "#<PID>\nx master 0 0d 2.6\n"] {
            assert!(matches!(parse_show_proc(text), Err(CliError::Parse { .. })));
        }
    }

    #[test]
    fn reload_replies() {
        assert_eq!(parse_reload_reply(""), ReloadReply::Silent);
        assert_eq!(
            parse_reload_reply("Success=0\n--\n[ALERT] bad\n"),
            ReloadReply::Status {
                success: false,
                log: "[ALERT] bad".into()
            }
        );
        assert!(matches!(
            parse_reload_reply("Success=1\n--\n"),
            ReloadReply::Status { success: true, .. }
        ));
    }
}
