//! The fake's tasks: real HTTP/1.1 servers on loopback, so traffic through HAProxy really
//! reaches them and a killed task really stops answering.
//!
//! Each answers every request `200` with its app id as the body, after an optional delay
//! (so requests are in flight when a task is killed: killing a task that still gets
//! traffic then fails requests, as it would in production) (keep-alive unless the
//! request says `Connection: close` or is HTTP/1.0). Killing one (dropping its handle) stops
//! accepting and closes every open connection, as a task's process exiting would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running task server; stops (listener and connections) when dropped.
pub struct TaskServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests answered.
    hits: Arc<AtomicU64>,
    /// The accept loop.
    accept: JoinHandle<()>,
    /// Set to `true` on drop: every connection task closes its socket.
    stop: watch::Sender<bool>,
}

impl TaskServer {
    /// Starts a server on `127.0.0.1:0` answering `body` after `delay`; `flaky`: every
    /// second answer is a `500` (a bad release that health checks with a failure threshold
    /// do not catch).
    pub async fn start(body: &str, delay: Duration, flaky: bool) -> std::io::Result<TaskServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicU64::new(0));
        let reply: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into();
        let failure: Arc<[u8]> = if flaky {
            Arc::from(&b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"[..])
        } else {
            reply.clone()
        };
        let (stop, stopped) = watch::channel(false);
        let counter = hits.clone();
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let replies = [reply.clone(), failure.clone()];
                let (counter, mut stopped) = (counter.clone(), stopped.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = serve(sock, replies, counter, delay) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Ok(TaskServer {
            port,
            hits,
            accept,
            stop,
        })
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TaskServer {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.stop.send(true);
    }
}

/// Answers requests on one connection until the client closes it or asks to.
async fn serve(
    mut sock: TcpStream,
    replies: [Arc<[u8]>; 2],
    hits: Arc<AtomicU64>,
    delay: Duration,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let n = hits.fetch_add(1, Ordering::SeqCst);
        let reply = &replies[(n % 2) as usize];
        let close = head.contains("connection: close")
            || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        if sock.write_all(reply).await.is_err() || close {
            return;
        }
    }
}
