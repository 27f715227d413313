//! The HAProxy Runtime API (the `stats socket` of the global section): apply planned server
//! operations to the running process and check that its servers match the config.
//!
//! Data flow position: `apply`, for plans that need no reload (`plan::Plan::Runtime`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::plan::{expected_servers, expected_servers_of, Op};

/// Bound on one command: connect, send, and read the whole answer. A wedged HAProxy fails
/// the update (which then falls back to a reload) instead of holding the pass.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused `del server` is retried at least (while its last streams end).
const DEL_RETRY: Duration = Duration::from_secs(1);

/// Why a Runtime API call failed (the caller falls back to a reload).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The socket could not be reached.
    #[error("cannot reach the HAProxy runtime API at {path}: {error}")]
    Connect {
        /// Socket path.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// HAProxy answered a command with an error.
    #[error("runtime API `{command}` failed: {answer}")]
    Refused {
        /// The command sent.
        command: String,
        /// HAProxy's answer.
        answer: String,
    },
    /// A command got no complete answer in time.
    #[error("runtime API `{command}` got no answer within {}s", timeout.as_secs())]
    TimedOut {
        /// The command sent.
        command: String,
        /// The bound.
        timeout: Duration,
    },
    /// After applying, the running servers differ from the config.
    #[error("running servers differ from the config: {0}")]
    Mismatch(String),
}

/// A client of one HAProxy stats socket.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    /// The `stats socket` path.
    socket: PathBuf,
    /// How long a deleted server may keep sessions before they are shut down.
    drain_wait: Duration,
}

/// One server as `show servers state` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend name.
    pub backend: String,
    /// Server name.
    pub name: String,
    /// `addr:port`.
    pub address: String,
    /// In maintenance (config `disabled`, or set by the Runtime API).
    pub maint: bool,
}

impl RuntimeApi {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>, drain_wait: Duration) -> Self {
        Self {
            socket: socket.into(),
            drain_wait,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one command and returns HAProxy's answer.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] when the socket cannot be used, [`RuntimeError::TimedOut`].
    pub async fn command(&self, command: &str) -> Result<String, RuntimeError> {
        let connect_err = |error| RuntimeError::Connect {
            path: self.socket.display().to_string(),
            error,
        };
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket)
                .await
                .map_err(connect_err)?;
            stream
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(connect_err)?;
            let mut answer = String::new();
            stream
                .read_to_string(&mut answer)
                .await
                .map_err(connect_err)?;
            Ok(answer)
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| RuntimeError::TimedOut {
                command: command.to_owned(),
                timeout: COMMAND_TIMEOUT,
            })?
    }

    /// Sends a command whose success answer is empty or `expected`.
    async fn expect(&self, command: String, expected: &[&str]) -> Result<(), RuntimeError> {
        let answer = self.command(&command).await?;
        let trimmed = answer.trim();
        if trimmed.is_empty() || expected.iter().any(|e| trimmed.starts_with(e)) {
            Ok(())
        } else {
            Err(RuntimeError::Refused {
                command,
                answer: trimmed.to_owned(),
            })
        }
    }

    /// Applies `ops` in order, stopping at the first failure. Returns per-op results as
    /// `(op kind, ok)` for metrics, and the first error.
    pub async fn apply(&self, ops: &[Op]) -> (Vec<(&'static str, bool)>, Result<(), RuntimeError>) {
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            let result = self.apply_one(op).await;
            done.push((op.kind(), result.is_ok()));
            if let Err(e) = result {
                return (done, Err(e));
            }
        }
        (done, Ok(()))
    }

    async fn apply_one(&self, op: &Op) -> Result<(), RuntimeError> {
        match op {
            Op::Add { backend, server } => {
                let target = format!("{backend}/{}", server.name);
                let args = server.add_args();
                self.expect(
                    format!("add server {target} {} {args}", server.address)
                        .trim()
                        .to_owned(),
                    &["New server registered"],
                )
                .await?;
                if server.checked() {
                    self.expect(format!("enable health {target}"), &[]).await?;
                }
                let state = if server.disabled { "maint" } else { "ready" };
                self.expect(format!("set server {target} state {state}"), &[])
                    .await
            }
            Op::SetDisabled {
                backend,
                name,
                disabled,
            } => {
                let state = if *disabled { "maint" } else { "ready" };
                self.expect(format!("set server {backend}/{name} state {state}"), &[])
                    .await
            }
            Op::Delete { backend, name } => {
                let target = format!("{backend}/{name}");
                self.expect(format!("set server {target} state maint"), &[])
                    .await?;
                self.wait_for_no_sessions(backend, name).await?;
                // Streams and idle connections can outlive the last session for a moment.
                let deadline = tokio::time::Instant::now() + self.drain_wait.max(DEL_RETRY);
                loop {
                    let command = format!("del server {target}");
                    match self.expect(command, &["Server deleted"]).await {
                        Err(RuntimeError::Refused { answer, .. })
                            if answer.contains("still has connections")
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        result => return result,
                    }
                }
            }
        }
    }

    /// Waits (bounded by `drain_wait`) for a server in maintenance to lose its sessions, then
    /// shuts down whatever is left so it can be deleted.
    async fn wait_for_no_sessions(&self, backend: &str, name: &str) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.drain_wait;
        // By number: `show stat <name>` finds the frontend of the same name first (marathon-lb
        // names an app's frontend and backend alike), which has no servers.
        let proxy = self.backend_id(backend).await?;
        loop {
            let stat = self.command(&format!("show stat {proxy} 4 -1")).await?;
            let sessions = stat
                .lines()
                .map(|l| l.split(',').collect::<Vec<_>>())
                .find(|f| f.len() > 4 && f[0] == backend && f[1] == name)
                .and_then(|f| f[4].parse::<u64>().ok())
                .unwrap_or(0);
            if sessions == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return self
                    .expect(format!("shutdown sessions server {backend}/{name}"), &[])
                    .await;
            }
            // In-flight requests usually end within milliseconds; poll often so a delete
            // does not hold the pass (and the next event) for long.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The numeric id of `backend` (from `show servers state <backend>`), or its name when
    /// it lists no server.
    async fn backend_id(&self, backend: &str) -> Result<String, RuntimeError> {
        let answer = self
            .command(&format!("show servers state {backend}"))
            .await?;
        Ok(answer
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[1] == backend).then(|| f[0].to_owned())
            })
            .next()
            .unwrap_or_else(|| backend.to_owned()))
    }

    /// Every server of the running process (`show servers state`).
    ///
    /// # Errors
    /// [`RuntimeError::Connect`].
    pub async fn servers(&self) -> Result<Vec<ServerState>, RuntimeError> {
        let answer = self.command("show servers state").await?;
        Ok(answer
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(parse_server_state)
            .collect())
    }

    /// Checks that the running servers are exactly the config's (names, addresses, maint).
    ///
    /// # Errors
    /// [`RuntimeError::Mismatch`] naming the first differences.
    pub async fn verify(&self, config: &str) -> Result<(), RuntimeError> {
        self.verify_backends(config, None).await
    }

    /// [`RuntimeApi::verify`] limited to some backends (`None`: all), so a change to a few
    /// servers of a large config costs a few small queries.
    ///
    /// # Errors
    /// As [`RuntimeApi::verify`].
    pub async fn verify_backends(
        &self,
        config: &str,
        only: Option<&[&str]>,
    ) -> Result<(), RuntimeError> {
        let states = match only {
            None => self.servers().await?,
            Some(backends) => {
                let mut states = Vec::new();
                for backend in backends {
                    let answer = self
                        .command(&format!("show servers state {backend}"))
                        .await?;
                    states.extend(
                        answer
                            .lines()
                            .filter(|l| !l.starts_with('#'))
                            .filter_map(parse_server_state),
                    );
                }
                states
            }
        };
        let mut running: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
        for s in states {
            running
                .entry(s.backend)
                .or_default()
                .push((s.name, s.address, s.maint));
        }
        let expected = match only {
            Some(backends) => expected_servers_of(config, backends),
            None => expected_servers(config),
        };
        let mut problems = Vec::new();
        for (backend, servers) in &expected {
            // HAProxy reports a host name's resolved address: compare those servers by name.
            let by_name: Vec<&String> = servers
                .iter()
                .filter(|(_, addr, _)| !is_ip_address(addr))
                .map(|(name, _, _)| name)
                .collect();
            let blank = |list: Vec<(String, String, bool)>| -> Vec<(String, String, bool)> {
                list.into_iter()
                    .map(|(name, addr, maint)| {
                        let addr = if by_name.contains(&&name) {
                            String::new()
                        } else {
                            addr
                        };
                        (name, addr, maint)
                    })
                    .collect()
            };
            let mut want = blank(servers.clone());
            let mut have = blank(running.get(backend).cloned().unwrap_or_default());
            want.sort();
            have.sort();
            if want != have {
                problems.push(format!("{backend}: config {want:?}, running {have:?}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            problems.truncate(3);
            Err(RuntimeError::Mismatch(problems.join("; ")))
        }
    }
}

/// Whether `host:port` (or `[v6]:port`) names an IP address.
fn is_ip_address(address: &str) -> bool {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
}

/// Parses a `show servers state` line (version 1 format).
fn parse_server_state(line: &str) -> Option<ServerState> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 19 {
        return None;
    }
    let admin: u32 = f[6].parse().ok()?;
    // SRV_ADMF_FMAINT | IMAINT | CMAINT | RMAINT (0x01 | 0x02 | 0x04 | 0x20).
    let maint = admin & 0x27 != 0;
    let address = if f[4] == "-" {
        f[17].to_owned()
    } else {
        f[4].to_owned()
    };
    Some(ServerState {
        backend: f[1].to_owned(),
        name: f[3].to_owned(),
        address: format!("{address}:{}", f[18]),
        maint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_servers_state_lines() {
        let line = "3 b 200 s2 127.0.0.1 2 8 1 1 0 1 0 2 6 0 0 1 - 19002 - 0 19002 - - 19002";
        let s = parse_server_state(line).unwrap();
        assert_eq!(
            (
                s.backend.as_str(),
                s.name.as_str(),
                s.address.as_str(),
                s.maint
            ),
            ("b", "s2", "127.0.0.1:19002", false)
        );
        let maint = "3 b 200 s2 127.0.0.1 0 1 1 1 0 1 0 0 2 0 0 1 - 19002 - 0 19002 - - 19002";
        assert!(parse_server_state(maint).unwrap().maint);
        assert!(parse_server_state("1").is_none());
    }
}
