//! Same-origin guard of the state-changing endpoints (`POST /signal/*`).
//!
//! The admin server listens on loopback by default, but a web page open in a browser on the
//! host can still send it a `POST` (a form needs no CORS preflight), and a hostile DNS name
//! rebound to `127.0.0.1` makes the browser treat the server as that page's own origin. So a
//! signal is refused (`403`, with the reason) when the request:
//!
//! - carries `Sec-Fetch-Site: cross-site` or `same-site` (a browser telling us another site
//!   sent it);
//! - carries an `Origin` that is not the request's own, `http://<Host>`;
//! - names in `Host` anything but an IP literal or `localhost`: a rebound DNS name.
//!
//! Clients that are not browsers send neither `Origin` nor `Sec-Fetch-Site` and name the
//! address in `Host` (curl, HAProxy's Lua forwarder behind `:9090/_mlb_signal/*`, which sends
//! `Host: <admin ip:port>`), so they keep working; so do the status page's own buttons
//! (same origin).

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: runs the request only when [`check`] lets it through, else answers `403`.
pub(super) async fn same_origin_only(request: Request, next: Next) -> Response {
    match check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(path = %request.uri().path(), %reason, "refused a cross-origin admin request");
            (StatusCode::FORBIDDEN, format!("forbidden: {reason}\n")).into_response()
        }
    }
}

/// Why a request is refused (the `403` body and the log).
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    /// A header the guard reads is not text.
    #[error("{name} is not ASCII text")]
    NotText { name: header::HeaderName },
    /// The browser says another site sent it.
    #[error("Sec-Fetch-Site is {site}: sent by another site")]
    OtherSite { site: String },
    /// `Host` names a DNS name, which could be rebound to this server.
    #[error(
        "Host {host:?} is not an IP address or localhost (a DNS name could be rebound to this \
         server)"
    )]
    DnsHost { host: String },
    /// `Origin` is not `http://<Host>`.
    #[error("Origin {origin:?} is not this server's own (http://{host})")]
    ForeignOrigin { origin: String, host: String },
}

/// Why a request must be refused, if it must.
///
/// # Errors
/// [`Refused`].
pub(super) fn check(headers: &HeaderMap) -> Result<(), Refused> {
    let text = |name: header::HeaderName| -> Result<Option<&str>, Refused> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| Refused::NotText { name: name.clone() })
            })
            .transpose()
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))? {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            let site = site.to_owned();
            return Err(Refused::OtherSite { site });
        }
    }
    let host = text(header::HOST)?;
    if let Some(host) = host {
        if !is_literal_host(host) {
            let host = host.to_owned();
            return Err(Refused::DnsHost { host });
        }
    }
    if let Some(origin) = text(header::ORIGIN)? {
        let own = host.map(|h| format!("http://{h}"));
        if !own.is_some_and(|own| own.eq_ignore_ascii_case(origin)) {
            return Err(Refused::ForeignOrigin {
                origin: origin.to_owned(),
                host: host.unwrap_or("<no Host>").to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether a `Host` value (`host` or `host:port`) names an IP literal (`[v6]` bracketed) or
/// `localhost`.
fn is_literal_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port.strip_prefix(':')) => {
                return ip.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(Some(port)) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
}

fn is_port(port: Option<&str>) -> bool {
    port.is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn hosts_that_are_literals_or_localhost_pass() {
        for host in [
            "127.0.0.1:9092",
            "127.0.0.1",
            "10.1.2.3:80",
            "localhost",
            "LocalHost:9092",
            "[::1]:9092",
            "[::1]",
        ] {
            assert!(is_literal_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9092",
            "127.0.0.1.nip.io:9092",
            "[::1",
            "[evil]:80",
            "127.0.0.1:notaport",
            "::1",
            "",
        ] {
            assert!(!is_literal_host(host), "{host}");
        }
    }

    #[test]
    fn rules() {
        let ok = |pairs: &[(&'static str, &str)]| check(&headers(pairs)).map_err(|e| e.to_string());
        assert!(ok(&[]).is_ok(), "no headers: not a browser");
        assert!(
            ok(&[("host", "127.0.0.1:9092")]).is_ok(),
            "curl, the Lua forwarder"
        );
        let same = [
            ("host", "127.0.0.1:9092"),
            ("origin", "http://127.0.0.1:9092"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(ok(&same).is_ok(), "the status page's own buttons");
        assert!(ok(&[("host", "localhost:9092"), ("sec-fetch-site", "none")]).is_ok());

        let err = ok(&[
            ("host", "127.0.0.1:9092"),
            ("origin", "http://evil.example"),
        ]);
        assert!(err.unwrap_err().contains("Origin \"http://evil.example\""));
        assert!(ok(&[("host", "127.0.0.1:9092"), ("origin", "null")]).is_err());
        assert!(
            ok(&[("origin", "http://127.0.0.1:9092")]).is_err(),
            "no Host"
        );
        let https = [
            ("host", "127.0.0.1:9092"),
            ("origin", "https://127.0.0.1:9092"),
        ];
        assert!(ok(&https).is_err(), "the server speaks http only");
        let err = ok(&[("host", "127.0.0.1:9092"), ("sec-fetch-site", "cross-site")]);
        assert!(err.unwrap_err().contains("cross-site"));
        assert!(ok(&[("sec-fetch-site", "same-site")]).is_err());
        let rebound = [
            ("host", "evil.example:9092"),
            ("origin", "http://evil.example:9092"),
        ];
        assert!(ok(&rebound).unwrap_err().contains("DNS name"));
    }
}
