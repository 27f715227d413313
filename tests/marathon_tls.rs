//! TLS to Marathon stays verified (the original never verified it): a Marathon whose
//! certificate comes from a CA this host does not trust fails with a hint naming
//! `--marathon-ca-cert` and the DC/OS CA bundle; with that flag the handshake succeeds.
//!
//! The TLS server is the testkit's stand-in API server (rustls, an rcgen self-signed
//! certificate for 127.0.0.1): it is not Marathon, so past the handshake it answers 404.

use std::process::{Command, Output};

use marathon_lb_testkit::fake_kube_apiserver::FakeKubeApiServer;

fn one_shot(url: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .current_dir(dir.path())
        .args(["--marathon", url, "--group", "external", "--dry"])
        .args(["--log-level", "ERROR"])
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_untrusted_marathon_certificate_fails_with_a_hint_and_the_ca_flag_fixes_it() {
    let server = FakeKubeApiServer::start().await.unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr().port());

    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || one_shot(&url2, &[]))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("--marathon-ca-cert"), "{stderr}");
    assert!(
        stderr.contains("/run/dcos/pki/CA/ca-bundle.crt"),
        "{stderr}"
    );

    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), server.cert_pem()).unwrap();
    let ca_path = ca.path().display().to_string();
    let out =
        tokio::task::spawn_blocking(move || one_shot(&url, &["--marathon-ca-cert", &ca_path]))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Verified now: past the handshake the stand-in (not Marathon) answers 404.
    assert!(stderr.contains("404"), "{stderr}");
    assert!(
        !stderr.contains("UnknownIssuer") && !stderr.contains("hint:"),
        "{stderr}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.uri.starts_with("/v2/apps")),
        "{:?}",
        server.requests()
    );
}
