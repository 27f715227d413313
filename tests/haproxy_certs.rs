//! `haproxy::certs` with the real tools: HAProxy accepts a rendered config whose `crt` files
//! were all generated, and `openssl` sees the host's names in them.
//!
//! Skips, loudly, when `haproxy` is not on PATH; the `openssl` part only runs where it is.

mod common;

use std::path::Path;
use std::process::Command;

use clap::Parser;
use marathon_lb::config::Cli;
use marathon_lb::haproxy::{self, certs};
use marathon_lb::run::{self, Memory};

#[test]
fn generated_certificates_are_accepted_by_haproxy_and_name_the_host() {
    if !common::haproxy_available(
        "generated_certificates_are_accepted_by_haproxy_and_name_the_host",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let templates = common::unprivileged_templates(dir.path());

    // The bundled example, its app's certificate and the default one moved into the temp dir.
    let app_cert = dir.path().join("ssl/apps/kubeapi.pem");
    let default_cert = dir.path().join("ssl/default.pem");
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/apps.json"))
            .unwrap()
            .replace("/etc/ssl/cert.pem", &app_cert.display().to_string());
    let argv = [
        "marathon-lb",
        "--haproxy-config",
        &dir.path().join("haproxy.cfg").display().to_string(),
        "--group",
        "external",
        "--ssl-certs",
        &default_cert.display().to_string(),
    ];
    let config = Cli::try_parse_from(argv)
        .unwrap()
        .validate(|_| None)
        .unwrap();
    let rendered = run::render_body(
        example,
        "apps.json",
        &config,
        &templates,
        &mut Memory::default(),
    )
    .unwrap();
    assert!(rendered
        .config
        .contains(&format!("ssl crt {}", app_cert.display())));

    // Only where the operator allowed it: the --ssl-certs path and the app's under a
    // --generate-certs-dir (the directories exist: none is created).
    let app_dir = app_cert.parent().unwrap();
    std::fs::create_dir_all(app_dir).unwrap();
    let allowed = certs::Allowed::new(&default_cert.display().to_string(), Some(app_dir));
    let generated: Vec<_> = certs::ensure(&rendered.config, &allowed)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let app_cert = std::fs::canonicalize(app_dir).unwrap().join("kubeapi.pem");
    assert_eq!(generated, [default_cert.clone(), app_cert.clone()]);

    let paths = &config.output.paths;
    let checked = haproxy::validate_verbose(&rendered, paths, false, "haproxy")
        .unwrap_or_else(|e| panic!("haproxy rejected the generated certificates: {e}"));
    assert!(checked
        .validated
        .rendered()
        .config
        .contains("bind *:6443 ssl crt "));

    let Ok(output) = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&app_cert)
        .output()
    else {
        eprintln!("openssl is not on PATH: not checking the certificate's names");
        return;
    };
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let host = certs::host_name();
    assert!(text.contains(&format!("DNS:{host}")), "{text}");
    assert!(text.contains("DNS:localhost"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    // openssl prints `CN = host` or `CN=host`, depending on its version.
    let compact = text.replace(' ', "");
    assert!(compact.contains(&format!("Subject:CN={host}\n")), "{text}");
}
