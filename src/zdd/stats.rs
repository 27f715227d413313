//! The load balancers' view: HAProxy's stats CSV (`/haproxy?stats;csv` on the stats port)
//! read by column name, so HAProxy 2.6's `-` column and the module columns after the
//! standard ones do not matter, and every address each `--marathon-lb` name resolves to.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

/// One server (a task) of a backend, on one load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Server {
    /// `svname`.
    pub name: String,
    /// `status`: `UP`, `UP 1/3`, `DOWN`, `MAINT`, `DRAIN`, `no check`, ...
    pub status: String,
    /// `scur`: current sessions.
    pub scur: u64,
    /// `qcur`: queued requests.
    pub qcur: u64,
    /// `hrsp_5xx`: 5xx answers so far.
    pub hrsp_5xx: u64,
    /// Every answer so far (`hrsp_1xx` .. `hrsp_other`).
    pub answers: u64,
}

impl Server {
    /// Takes new traffic: up (or unchecked) and not in maintenance or drain.
    pub fn serving(&self) -> bool {
        self.status.starts_with("UP") || self.status == "no check"
    }

    /// In maintenance or drain, with no session and nothing queued: killing its task
    /// fails no request.
    pub fn drained(&self) -> bool {
        let parked = self.status.starts_with("MAINT") || self.status.starts_with("DRAIN");
        parked && self.scur == 0 && self.qcur == 0
    }
}

/// The servers of `backend` in a stats CSV, by name.
///
/// # Errors
/// When the header lacks a column zdd needs.
pub fn parse_backend(csv: &str, backend: &str) -> Result<HashMap<String, Server>, String> {
    let mut lines = csv.lines();
    let header = lines.next().ok_or("empty stats CSV")?;
    let columns: Vec<&str> = header
        .trim_start_matches('#')
        .trim()
        .split(',')
        .map(str::trim)
        .collect();
    let at = |name: &str| -> Result<usize, String> {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("stats CSV has no {name:?} column"))
    };
    let (px, sv, status, scur, qcur) = (
        at("pxname")?,
        at("svname")?,
        at("status")?,
        at("scur")?,
        at("qcur")?,
    );
    let optional = |name: &str| columns.iter().position(|c| *c == name);
    let h5 = optional("hrsp_5xx");
    let all: Vec<usize> = [
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
    ]
    .iter()
    .filter_map(|n| optional(n))
    .collect();
    let mut servers = HashMap::new();
    for line in lines.filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let number = |i: usize| field(i).trim().parse::<u64>().unwrap_or(0);
        let name = field(sv);
        if field(px) != backend || name == "BACKEND" || name == "FRONTEND" {
            continue;
        }
        servers.insert(
            name.to_owned(),
            Server {
                name: name.to_owned(),
                status: field(status).to_owned(),
                scur: number(scur),
                qcur: number(qcur),
                hrsp_5xx: h5.map_or(0, number),
                answers: all.iter().map(|i| number(*i)).sum(),
            },
        );
    }
    Ok(servers)
}

/// The load balancers: one stats URL per resolved address of each `--marathon-lb`.
#[derive(Debug)]
pub struct Balancers {
    urls: Vec<Url>,
    http: reqwest::Client,
}

/// A load balancer that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct LbError {
    /// The stats URL (or the `--marathon-lb` value).
    pub url: String,
    /// Why.
    pub reason: String,
}

impl Balancers {
    /// Resolves every `--marathon-lb` value to its addresses (zdd.py: all A records of the
    /// name; here IPv4 and IPv6).
    ///
    /// # Errors
    /// An invalid URL or a name that does not resolve.
    pub async fn resolve(values: &[String]) -> Result<Balancers, LbError> {
        let mut urls: Vec<Url> = Vec::new();
        for value in values {
            let fail = |reason: String| LbError {
                url: value.clone(),
                reason,
            };
            let url = Url::parse(value).map_err(|e| fail(e.to_string()))?;
            let host = url.host_str().ok_or_else(|| fail("no host".into()))?;
            let port = url.port_or_known_default().unwrap_or(9090);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| fail(e.to_string()))?;
            for addr in addrs {
                let mut one = url.clone();
                let _ = one.set_ip_host(addr.ip());
                let _ = one.set_port(Some(port));
                if !urls.contains(&one) {
                    urls.push(one);
                }
            }
        }
        if urls.is_empty() {
            return Err(LbError {
                url: values.join(","),
                reason: "no address".into(),
            });
        }
        // No connection reuse: HAProxy closes idle keep-alive connections on its own timer,
        // and a request racing that close fails ("error sending request").
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| LbError {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Balancers { urls, http })
    }

    /// The stats URLs.
    pub fn urls(&self) -> &[Url] {
        &self.urls
    }

    /// `backend`'s servers on every load balancer, in [`urls`](Self::urls) order.
    ///
    /// # Errors
    /// The first load balancer that does not answer with a usable CSV.
    pub async fn backend(&self, backend: &str) -> Result<Vec<HashMap<String, Server>>, LbError> {
        let reads = self.urls.iter().map(|url| self.read(url, backend));
        futures::future::try_join_all(reads).await
    }

    /// [`backend`](Self::backend), retried every 200 ms on errors (a load balancer busy
    /// reloading, a reset) until `deadline`.
    ///
    /// # Errors
    /// The last error, at `deadline`.
    pub async fn backend_until(
        &self,
        backend: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<HashMap<String, Server>>, LbError> {
        loop {
            match self.backend(backend).await {
                Ok(views) => return Ok(views),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "load balancer unreadable, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn read(&self, base: &Url, backend: &str) -> Result<HashMap<String, Server>, LbError> {
        let url = format!("{}/haproxy?stats;csv", base.as_str().trim_end_matches('/'));
        let fail = |reason: String| LbError {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(response.status().to_string()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        parse_backend(&text, backend).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HAProxy 2.6 header (with its `-` column) plus a module column.
    const CSV: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,-,h2_headers_rcvd,\n\
web_80,FRONTEND,,,3,5,,,,,,,,,,,,OPEN,,,,,,,,,1,2,0,,,,0,,,,,,,0,10,0,0,0,0,,,,,,,,0,\n\
web_80,127_0_0_1_4001,0,0,0,1,,9,,,,,,,,,,MAINT,1,1,0,,,,,,1,2,1,,9,,2,,,,L7OK,200,1,0,9,0,0,0,0,,,,,0,0,,0,\n\
web_80,127_0_0_1_4002,0,0,2,2,,9,,,,,,,,,,DRAIN,1,1,0,,,,,,1,2,2,,9,,2,,,,L7OK,200,1,0,7,0,0,2,0,,,,,0,0,,0,\n\
web_80,127_0_0_1_4003,0,0,1,2,,9,,,,,,,,,,UP,1,1,0,,,,,,1,2,3,,9,,2,,,,L7OK,200,1,0,9,0,0,0,0,,,,,0,0,,0,\n\
web_80,BACKEND,0,0,3,5,,,,,,,,,,,,UP,2,2,0,,,,,,1,2,0,,,,1,,,,,,,0,25,0,0,2,0,,,,,,,,0,\n\
other_81,127_0_0_1_4001,0,0,5,5,,,,,,,,,,,,MAINT,1,1,0,,,,,,1,3,1,,,,2,,,,,,,0,0,0,0,0,0,,,,,,,,0,\n";

    #[test]
    fn servers_are_read_by_column_name_per_backend() {
        let servers = parse_backend(CSV, "web_80").unwrap();
        assert_eq!(servers.len(), 3);
        let one = &servers["127_0_0_1_4001"];
        assert!(one.drained() && !one.serving(), "{one:?}");
        let two = &servers["127_0_0_1_4002"];
        assert!(!two.drained(), "sessions still open: {two:?}");
        assert_eq!((two.hrsp_5xx, two.answers), (2, 9));
        assert!(servers["127_0_0_1_4003"].serving());
        // The same server name in another backend with sessions does not count here.
        assert!(parse_backend(CSV, "other_81").unwrap()["127_0_0_1_4001"].scur == 5);
    }

    #[test]
    fn a_header_without_status_is_an_error() {
        assert!(parse_backend("# pxname,svname\nx,y\n", "x").is_err());
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    #[tokio::test]
    async fn every_address_of_a_name_is_a_load_balancer() {
        let lbs = Balancers::resolve(&[
            "http://localhost:9090".into(),
            "http://127.0.0.1:9090/".into(),
        ])
        .await
        .unwrap();
        let hosts: Vec<String> = lbs
            .urls()
            .iter()
            .map(|u| u.host_str().unwrap_or("").to_owned())
            .collect();
        assert!(
            hosts.iter().all(|h| h.parse::<std::net::IpAddr>().is_ok()),
            "{hosts:?}"
        );
        assert!(hosts.contains(&"127.0.0.1".to_owned()), "{hosts:?}");
        assert_eq!(
            hosts.iter().filter(|h| *h == "127.0.0.1").count(),
            1,
            "deduplicated: {hosts:?}"
        );
    }
}
