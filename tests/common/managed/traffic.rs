//! Traffic through HAProxy: single requests, answer sets, and keep-alive load that counts
//! failed requests.

use super::*;

/// One `GET /` to `127.0.0.1:port` (with `Host: host` if given) on a fresh connection:
/// the body, or `"ERR <what>"`.
pub async fn get(port: u16, host: Option<&str>) -> String {
    let request = async {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host.unwrap_or("x")
        );
        sock.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        sock.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(3), request).await {
        Err(_) => "ERR timeout".to_owned(),
        Ok(Err(e)) => format!("ERR {e}"),
        Ok(Ok(out)) => match out.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => body.to_owned(),
            _ => format!("ERR {}", out.lines().next().unwrap_or("no answer")),
        },
    }
}

/// Keep-alive clients sending `GET /` to `127.0.0.1:port` back to back until dropped.
pub struct Load {
    /// Requests answered `200`.
    pub ok: Arc<AtomicU64>,
    /// Requests that failed (error, non-200, closed connection mid-request).
    pub failed: Arc<AtomicU64>,
    /// The first few failures, described.
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests sent again on a fresh connection because the reused one was closed before
    /// any byte of the answer (what HTTP clients do for idempotent requests).
    pub retried: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` connections; each reconnects when the server closes it between requests.
    pub fn start(port: u16, clients: usize) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let retried = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let fail = Failures {
                    count: failed.clone(),
                    first: failures.clone(),
                };
                tokio::spawn(client_loop(port, ok.clone(), fail, retried.clone()))
            })
            .collect();
        Load {
            ok,
            failed,
            failures,
            retried,
            tasks,
        }
    }

    /// `(ok, failed)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Failures {
    count: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Failures {
    fn add(&self, what: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(what);
        }
    }
}

async fn client_loop(port: u16, ok: Arc<AtomicU64>, failed: Failures, retried: Arc<AtomicU64>) {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    loop {
        let mut sock = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(sock) => sock,
            Err(e) => {
                failed.add(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut buf = Vec::new();
        let mut served = 0u64;
        let mut chunk = [0u8; 4096];
        loop {
            if let Err(e) = sock.write_all(request).await {
                failed.add(format!("write after {served} responses: {e}"));
                break;
            }
            // One response: headers, then Content-Length bytes.
            let mut done = None;
            while done.is_none() {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        buf.drain(..end + 4 + len);
                        done = Some(head);
                        continue;
                    }
                }
                let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk));
                match read.await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    Ok(Ok(0)) if served > 0 && buf.is_empty() => {
                        // Closed before any byte of the answer on a reused connection: the
                        // request is sent again on a fresh one (idempotent GET).
                        retried.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    other => {
                        failed.add(format!("read after {served} responses: {other:?}"));
                        break;
                    }
                }
            }
            let Some(head) = done else {
                break;
            };
            served += 1;
            if head.starts_with("http/1.1 200") {
                ok.fetch_add(1, Ordering::SeqCst);
            } else {
                failed.add(head.lines().next().unwrap_or_default().to_owned());
            }
            if head.contains("connection: close") {
                break;
            }
        }
    }
}

/// The set of answers to `n` requests.
///
/// The requests are spaced by pauses of 0 to 12 ms that vary from one to the next: a steady
/// load of lockstep clients (k clients, each request ~20 ms) makes round-robin hand the k-th
/// request of every round to the same server whenever k is a multiple of the number of servers,
/// and back-to-back requests then never see the other servers.
pub async fn answers(port: u16, host: Option<&str>, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n as u64 {
        seen.insert(get(port, host).await);
        tokio::time::sleep(Duration::from_millis(i * 7 % 13)).await;
    }
    seen
}
