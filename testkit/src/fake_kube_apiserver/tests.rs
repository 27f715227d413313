//! The stand-in over real TLS: a rustls client speaking raw HTTP/1.1 to it.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::*;

/// A TLS connection to `server` that verifies its certificate for `localhost`.
async fn connect(server: &FakeKubeApiServer) -> TlsStream<TcpStream> {
    let config = client_config(&[server.cert_pem()]).unwrap();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Reads until the text received contains `needle` (or panics after 5 s); returns it all.
async fn read_until(stream: &mut TlsStream<TcpStream>, seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; got {seen:?}"))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

async fn get(server: &FakeKubeApiServer, path: &str) -> String {
    let mut tls = connect(server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn version_over_tls_is_what_kubectl_reads() {
    let server = FakeKubeApiServer::start().await.unwrap();
    let response = get(&server, "/version").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let version: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(version["major"], "1");
    assert_eq!(version["minor"], "32");
    assert!(version["gitVersion"]
        .as_str()
        .unwrap()
        .starts_with("v1.32."));
    assert_eq!(server.requests()[0].uri, "/version");
}

#[tokio::test]
async fn discovery_and_unknown_paths() {
    let server = FakeKubeApiServer::start().await.unwrap();
    assert!(get(&server, "/api").await.contains(r#""versions":["v1"]"#));
    assert!(get(&server, "/apis").await.contains("APIGroupList"));
    assert!(get(&server, "/api/v1").await.contains(r#""name":"pods""#));
    let missing = get(&server, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn watch_streams_pushed_events_and_nothing_while_idle() {
    let server = FakeKubeApiServer::start().await.unwrap();
    let mut tls = connect(&server).await;
    tls.write_all(
        b"GET /api/v1/namespaces/default/pods?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = String::new();
    read_until(&mut tls, &mut seen, "\r\n\r\n").await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    assert!(seen.contains("transfer-encoding: chunked"), "{seen}");
    server.wait_for_watchers(1).await;

    // Idle: not a byte.
    let mut buf = [0u8; 64];
    let idle = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await;
    assert!(idle.is_err(), "sent something while idle");

    for version in 1..=3 {
        server.push_pod("MODIFIED", "web-1", version);
        read_until(
            &mut tls,
            &mut seen,
            &format!(r#""resourceVersion":"{version}""#),
        )
        .await;
    }
    let line = seen.lines().find(|l| l.starts_with('{')).unwrap();
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["metadata"]["name"], "web-1");

    drop(tls);
    // The stream notices the closed connection at its next write.
    for _ in 0..200 {
        server.push_pod("MODIFIED", "web-1", 99);
        if server.watchers() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the watch stream outlived its client");
}

#[tokio::test]
async fn upgrade_switches_protocols_then_echoes() {
    let server = FakeKubeApiServer::start().await.unwrap();
    let mut tls = connect(&server).await;
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/web-1/exec HTTP/1.1\r\nHost: localhost\r\n\
          Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = String::new();
    read_until(&mut tls, &mut seen, "\r\n\r\n").await;
    assert!(
        seen.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
        "{seen}"
    );
    for round in 0..3 {
        let message = format!("ping {round}\n");
        tls.write_all(message.as_bytes()).await.unwrap();
        read_until(&mut tls, &mut seen, &message).await;
    }
    assert_eq!(server.upgraded(), 1);
    drop(server);
    // Dropping the server ends the upgraded connection too.
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
    assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "{end:?}");
}
