//! Test fakes for marathon-lb, kept out of the product crate: the product's integration
//! tests and benches use this crate as a dev-dependency, and its two binaries stand in for
//! Marathon and a Kubernetes API server in the README's try-it-yourself sections
//! (`cargo run -p marathon-lb-testkit --bin fake-marathon -- --help`).
//!
//! - [`fake_marathon`]: a fake Marathon over real HTTP (REST + SSE + DC/OS login).
//! - [`fake_kube_apiserver`]: a stand-in Kubernetes API server over TLS (version, watch
//!   stream, upgraded echo) for the `kubeapi-proxy` end-to-end test.
//! - [`haproxy`]: the built-in `HAPROXY_HEAD` made usable without root, and the test
//!   certificate, shared by the product's integration tests and benches.
//! - [`ports`]: listening ports reserved across test processes (no two tests get one port).

pub mod fake_kube_apiserver;
pub mod fake_marathon;
pub mod haproxy;
pub mod ports;
