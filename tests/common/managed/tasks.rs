//! The apps of a managed-mode test: task servers answering their own name, and the Marathon
//! apps and tasks the fake Marathon serves for them.

use super::*;

/// Starts one task server per name, in order.
pub async fn tasks(names: &[&str]) -> Vec<TaskServer> {
    let mut out = Vec::new();
    for name in names {
        out.push(TaskServer::start(name).await);
    }
    out
}

/// An app `id` on service `port` whose tasks are these servers.
pub fn app(id: &str, port: u16, servers: &[&TaskServer]) -> App {
    App::new(id, port, servers.iter().map(|s| s.task()).collect())
}

/// A task: a tiny HTTP/1.1 server on `127.0.0.1:0` answering every request with its name
/// (keep-alive unless the request says otherwise). Stops accepting when dropped.
pub struct TaskServer {
    /// What it answers.
    pub name: String,
    /// Its port.
    pub port: u16,
    hits: Arc<AtomicU64>,
    first_hit: Arc<OnceLock<Instant>>,
    accept: JoinHandle<()>,
}

impl TaskServer {
    /// Starts one; needs a tokio runtime.
    pub async fn start(name: &str) -> TaskServer {
        Self::start_on(name, 0).await.unwrap()
    }

    /// Starts one on `127.0.0.1:port` (`0`: any free port).
    pub async fn start_on(name: &str, port: u16) -> std::io::Result<TaskServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let first_hit = Arc::new(OnceLock::new());
        let reply: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        )
        .into_bytes()
        .into();
        let (h, f) = (hits.clone(), first_hit.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve(sock, reply.clone(), h.clone(), f.clone()));
            }
        });
        Ok(TaskServer {
            name: name.to_owned(),
            port,
            hits,
            first_hit,
            accept,
        })
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// When the first request arrived.
    pub fn first_hit(&self) -> Option<Instant> {
        self.first_hit.get().copied()
    }

    /// Its Marathon task (`host` 127.0.0.1, its port, `id` = its name).
    pub fn task(&self) -> Task {
        Task::new(&self.name, "127.0.0.1", self.port)
    }
}

impl Drop for TaskServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    reply: Arc<[u8]>,
    hits: Arc<AtomicU64>,
    first_hit: Arc<OnceLock<Instant>>,
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
        first_hit.get_or_init(Instant::now);
        hits.fetch_add(1, Ordering::SeqCst);
        let close = head.contains("connection: close")
            || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        if sock.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

/// A Marathon task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Agent host (an IP here).
    pub host: String,
    /// Host port.
    pub port: u16,
    /// `healthCheckResults[0].alive`, when the task has results.
    pub alive: Option<bool>,
}

impl Task {
    /// A running task without health results.
    pub fn new(id: &str, host: &str, port: u16) -> Task {
        Task {
            id: id.to_owned(),
            host: host.to_owned(),
            port,
            alive: None,
        }
    }

    /// With a health check result.
    #[must_use]
    pub fn alive(mut self, alive: bool) -> Task {
        self.alive = Some(alive);
        self
    }

    fn json(&self) -> Value {
        let mut t = json!({
            "id": self.id, "host": self.host, "ports": [self.port], "state": "TASK_RUNNING",
            "startedAt": "2024-01-01T00:00:00.000Z",
        });
        if let Some(alive) = self.alive {
            t["healthCheckResults"] = json!([{"alive": alive, "consecutiveFailures": 0}]);
        }
        t
    }
}

/// A Marathon app with one service port, in group `external`.
#[derive(Debug, Clone)]
pub struct App {
    /// App id (`/web`).
    pub id: String,
    /// Its service port (the app frontend binds 127.0.0.1 on it).
    pub service_port: u16,
    /// Labels besides `HAPROXY_GROUP=external`.
    pub labels: BTreeMap<String, String>,
    /// Its tasks.
    pub tasks: Vec<Task>,
    /// Whether it has a Marathon HTTP health check (HAProxy then checks its servers too).
    pub health_check: bool,
    /// `instances` (default: the number of tasks).
    pub instances: Option<usize>,
}

impl App {
    /// An app without labels.
    pub fn new(id: &str, service_port: u16, tasks: Vec<Task>) -> App {
        App {
            id: id.to_owned(),
            service_port,
            labels: BTreeMap::new(),
            tasks,
            health_check: false,
            instances: None,
        }
    }

    /// With a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> App {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// With an HTTP health check on port index 0.
    #[must_use]
    pub fn health_checked(mut self) -> App {
        self.health_check = true;
        self
    }

    /// The backend name marathon-lb gives it (`/a/b` -> `a_b_<port>`).
    pub fn backend(&self) -> String {
        format!(
            "{}_{}",
            self.id.trim_start_matches('/').replace('/', "_"),
            self.service_port
        )
    }

    /// Its `/v2/apps` entry.
    pub fn json(&self) -> Value {
        let mut labels = json!({"HAPROXY_GROUP": "external"});
        for (k, v) in &self.labels {
            labels[k] = json!(v);
        }
        let mut app = json!({
            "id": self.id,
            "labels": labels,
            "instances": self.instances.unwrap_or(self.tasks.len()),
            "portDefinitions": [{"port": self.service_port, "protocol": "tcp"}],
            "versionInfo": {"lastScalingAt": "2024-01-01T00:00:00.000Z",
                            "lastConfigChangeAt": "2024-01-01T00:00:00.000Z"},
            "tasks": self.tasks.iter().map(Task::json).collect::<Vec<_>>(),
        });
        if self.health_check {
            app["healthChecks"] = json!([{
                "protocol": "HTTP", "path": "/", "portIndex": 0, "timeoutSeconds": 2,
                "intervalSeconds": 2, "maxConsecutiveFailures": 3, "gracePeriodSeconds": 10
            }]);
        }
        app
    }
}

/// The body of `GET /v2/apps` for these apps.
pub fn apps_body(apps: &[&App]) -> String {
    json!({"apps": apps.iter().map(|a| a.json()).collect::<Vec<_>>()}).to_string()
}
