//! Bytes on the wire in the end-to-end test: HAProxy's stats, watch lines, and an upgraded
//! TLS connection through HAProxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use marathon_lb_testkit::fake_kube_apiserver;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::procs::Out;

/// HAProxy's stats as CSV from the stats listener on `port` (empty when unreachable).
pub fn stats_csv(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = tcp.write_all(b"GET /haproxy?stats;csv HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out);
    out
}

/// Waits (up to 10 s) for the watch line of pod event `version`; panics if the stream ends.
pub async fn expect_event(watch: &mut mpsc::UnboundedReceiver<Out>, name: &str, version: u64) {
    let needle = format!(r#""resourceVersion":"{version}""#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, watch.recv()).await {
            Ok(Some(Out::Line(line))) if line.contains(&needle) => return,
            Ok(Some(Out::Line(_))) => {}
            Ok(Some(Out::End(_))) | Ok(None) => panic!("{name}: the watch ended before {version}"),
            Err(_) => panic!("{name}: no watch event {version} within 10 s"),
        }
    }
}

/// An upgraded connection through HAProxy's TLS frontend on `port` (trusting `cert_pem`).
pub async fn upgraded_connection(port: u16, cert_pem: &str) -> TlsStream<TcpStream> {
    let config = fake_kube_apiserver::client_config(&[cert_pem]).unwrap();
    let tcp = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/web-1/exec?command=cat&stdin=true HTTP/1.1\r\n\
          Host: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_until(&mut tls, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    tls
}

/// Reads from `tls` until the text contains `needle` (10 s at most).
pub async fn read_until(tls: &mut TlsStream<TcpStream>, needle: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 10 s; got {seen:?}"))
            .unwrap_or_else(|e| panic!("reading for {needle:?}: {e}; got {seen:?}"));
        assert!(n > 0, "closed before {needle:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

/// Sends a line through the upgraded connection and reads it back.
pub async fn echo(tls: &mut TlsStream<TcpStream>, round: u64) {
    let line = format!("ping {round}\n");
    tls.write_all(line.as_bytes()).await.unwrap();
    read_until(tls, &line).await;
}
