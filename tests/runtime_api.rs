//! The planner and the Runtime API against a real HAProxy: scale up, scale down, replace and
//! drain servers without a reload, verify `show servers state`, and check where traffic goes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use marathon_lb::haproxy::plan::{plan, Plan, Snapshot};
use marathon_lb::haproxy::runtime::RuntimeApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn haproxy_missing() -> bool {
    let missing = Command::new("haproxy").arg("-v").output().is_err();
    if missing {
        eprintln!("SKIP: haproxy is not installed; the Runtime API tests need it");
    }
    missing
}

/// A tiny HTTP server answering every request with `name`.
async fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

async fn get(port: u16) -> String {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned()
}

use marathon_lb_testkit::ports::free_port;

fn config(dir: &Path, front: u16, servers: &[(&str, u16, bool)]) -> String {
    let mut s = format!(
        "global\n  stats socket {}/stats.sock mode 600 level admin expose-fd listeners\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         \nfrontend app_{front}\n  bind 127.0.0.1:{front}\n  mode http\n  use_backend app_{front}\n\
         \nbackend app_{front}\n  balance roundrobin\n  mode http\n",
        dir.display()
    );
    for (name, port, disabled) in servers {
        s.push_str(&format!(
            "  server {name} 127.0.0.1:{port} id {port}{}\n",
            if *disabled { " disabled" } else { "" }
        ));
    }
    s
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(dir: &Path, cfg: &str) -> Haproxy {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if dir.join("stats.sock").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Haproxy(child)
}

async fn step(api: &RuntimeApi, old: &str, new: &str) {
    let snap = |c| Snapshot {
        config: c,
        domain_map: "",
        app_map: "",
    };
    let Plan::Runtime(ops) = plan(Some(snap(old)), snap(new)) else {
        panic!("expected a runtime plan")
    };
    let (_, result) = api.apply(&ops).await;
    result.unwrap();
    api.verify(new).await.unwrap();
}

async fn answers(port: u16, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(get(port).await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_churn_is_applied_without_reload() {
    if haproxy_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let front = free_port();
    let v1 = config(dir.path(), front, &[("a", a, false)]);
    let proc = start(dir.path(), &v1).await;
    let pid = proc.0.id();
    let api = RuntimeApi::new(dir.path().join("stats.sock"), Duration::from_millis(500));
    api.verify(&v1).await.unwrap();
    assert_eq!(answers(front, 4).await, BTreeSet::from(["a".to_string()]));

    // Scale up.
    let v2 = config(dir.path(), front, &[("a", a, false), ("b", b, false)]);
    step(&api, &v1, &v2).await;
    assert_eq!(
        answers(front, 6).await,
        BTreeSet::from(["a".into(), "b".into()])
    );

    // Replace a task: a goes, c comes.
    let v3 = config(dir.path(), front, &[("b", b, false), ("c", c, false)]);
    step(&api, &v2, &v3).await;
    assert_eq!(
        answers(front, 6).await,
        BTreeSet::from(["b".into(), "c".into()])
    );

    // Drain b (a blue/green old task), then scale down to c only.
    let v4 = config(dir.path(), front, &[("b", b, true), ("c", c, false)]);
    step(&api, &v3, &v4).await;
    assert_eq!(answers(front, 4).await, BTreeSet::from(["c".to_string()]));
    let v5 = config(dir.path(), front, &[("c", c, false)]);
    step(&api, &v4, &v5).await;
    assert_eq!(answers(front, 4).await, BTreeSet::from(["c".to_string()]));

    // Same process all along.
    assert_eq!(proc.0.id(), pid);
    let mut proc = proc;
    assert!(
        proc.0.try_wait().unwrap().is_none(),
        "haproxy must still run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_op_is_reported_and_verify_catches_drift() {
    if haproxy_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = backend("a").await;
    let front = free_port();
    let v1 = config(dir.path(), front, &[("a", a, false)]);
    let _proc = start(dir.path(), &v1).await;
    let api = RuntimeApi::new(dir.path().join("stats.sock"), Duration::from_millis(200));
    // A server the running process does not have: deleting it is refused.
    let ghost = marathon_lb::haproxy::plan::Op::Delete {
        backend: format!("app_{front}"),
        name: "ghost".into(),
    };
    let (results, outcome) = api.apply(&[ghost]).await;
    assert_eq!(results, [("del", false)]);
    assert!(outcome.unwrap_err().to_string().contains("ghost"));
    let v2 = config(dir.path(), front, &[("a", a, false), ("b", 1, false)]);
    assert!(
        api.verify(&v2).await.is_err(),
        "verify must notice a server the process lacks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_a_host_name_server_by_name() {
    if haproxy_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = backend("a").await;
    let front = free_port();
    // A static server line with a host name, as the kubeapi-proxy app's BACKEND_SERVER_OPTIONS has.
    let v1 = config(dir.path(), front, &[("a", a, false)]).replace(
        &format!("server a 127.0.0.1:{a}"),
        &format!("server a localhost:{a}"),
    );
    let _proc = start(dir.path(), &v1).await;
    let api = RuntimeApi::new(dir.path().join("stats.sock"), Duration::from_millis(200));
    api.verify(&v1).await.unwrap();
}
