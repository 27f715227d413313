//! The 53 built-in templates of marathon-lb 1.x, generated once from `shared/spec/templates.json`.
//!
//! Three defaults (`BACKEND_HSTS_OPTIONS`, `HTTP_BACKEND_PROXYPASS_GLUE`, `HTTP_BACKEND_REVPROXY_GLUE`)
//! are HAProxy 2.x rewrites of the original text, which HAProxy 2.1+ rejects.

use super::TemplateSpec;

/// Names every built-in template; `TEMPLATES[name as usize]` is its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Name {
    Head,
    UserlistHead,
    HttpFrontendHead,
    HttpFrontendAppidHead,
    HttpsFrontendHead,
    HttpsGroupedFrontendHead,
    HttpsGroupedVhostFrontendHead,
    HttpsGroupedVhostBackendHead,
    HttpsGroupedVhostFrontendAcl,
    FrontendHead,
    BackendHead,
    BackendRedirectHttpToHttps,
    BackendRedirectHttpToHttpsWithPath,
    BackendHstsOptions,
    HttpFrontendAcl,
    MapHttpFrontendAcl,
    HttpFrontendAclWithAuth,
    HttpFrontendAclOnly,
    MapHttpFrontendAclOnly,
    HttpFrontendRoutingOnly,
    HttpFrontendRoutingOnlyWithAuth,
    HttpFrontendAclWithPath,
    HttpFrontendAclWithAuthAndPath,
    HttpFrontendAclOnlyWithPath,
    HttpFrontendAclOnlyWithPathAndAuth,
    HttpsFrontendAclOnlyWithPath,
    HttpFrontendRoutingOnlyWithPath,
    HttpFrontendRoutingOnlyWithPathAndAuth,
    HttpsFrontendRoutingOnlyWithPathAndAuth,
    HttpFrontendAppidAcl,
    MapHttpFrontendAppidAcl,
    HttpsFrontendAcl,
    MapHttpsFrontendAcl,
    HttpsFrontendAclWithAuth,
    HttpsFrontendAuthAclOnly,
    HttpsFrontendAuthRequestOnly,
    HttpsFrontendAclWithPath,
    HttpsFrontendAclWithAuthAndPath,
    BackendHttpOptions,
    HttpBackendProxypassGlue,
    HttpBackendRevproxyGlue,
    HttpBackendRedir,
    BackendHttpHealthcheckOptions,
    BackendTcpHealthcheckOptions,
    BackendStickyOptions,
    BackendServerOptions,
    BackendServerHttpHealthcheckOptions,
    BackendServerTcpHealthcheckOptions,
    FrontendBackendGlue,
    HttpBackendNetworkAllowedAcl,
    HttpBackendAclAllowDeny,
    TcpBackendNetworkAllowedAcl,
    TcpBackendAclAllowDeny,
}

impl Name {
    /// Every template name, in `TEMPLATES` order.
    pub const ALL: [Name; 53] = [
        Name::Head,
        Name::UserlistHead,
        Name::HttpFrontendHead,
        Name::HttpFrontendAppidHead,
        Name::HttpsFrontendHead,
        Name::HttpsGroupedFrontendHead,
        Name::HttpsGroupedVhostFrontendHead,
        Name::HttpsGroupedVhostBackendHead,
        Name::HttpsGroupedVhostFrontendAcl,
        Name::FrontendHead,
        Name::BackendHead,
        Name::BackendRedirectHttpToHttps,
        Name::BackendRedirectHttpToHttpsWithPath,
        Name::BackendHstsOptions,
        Name::HttpFrontendAcl,
        Name::MapHttpFrontendAcl,
        Name::HttpFrontendAclWithAuth,
        Name::HttpFrontendAclOnly,
        Name::MapHttpFrontendAclOnly,
        Name::HttpFrontendRoutingOnly,
        Name::HttpFrontendRoutingOnlyWithAuth,
        Name::HttpFrontendAclWithPath,
        Name::HttpFrontendAclWithAuthAndPath,
        Name::HttpFrontendAclOnlyWithPath,
        Name::HttpFrontendAclOnlyWithPathAndAuth,
        Name::HttpsFrontendAclOnlyWithPath,
        Name::HttpFrontendRoutingOnlyWithPath,
        Name::HttpFrontendRoutingOnlyWithPathAndAuth,
        Name::HttpsFrontendRoutingOnlyWithPathAndAuth,
        Name::HttpFrontendAppidAcl,
        Name::MapHttpFrontendAppidAcl,
        Name::HttpsFrontendAcl,
        Name::MapHttpsFrontendAcl,
        Name::HttpsFrontendAclWithAuth,
        Name::HttpsFrontendAuthAclOnly,
        Name::HttpsFrontendAuthRequestOnly,
        Name::HttpsFrontendAclWithPath,
        Name::HttpsFrontendAclWithAuthAndPath,
        Name::BackendHttpOptions,
        Name::HttpBackendProxypassGlue,
        Name::HttpBackendRevproxyGlue,
        Name::HttpBackendRedir,
        Name::BackendHttpHealthcheckOptions,
        Name::BackendTcpHealthcheckOptions,
        Name::BackendStickyOptions,
        Name::BackendServerOptions,
        Name::BackendServerHttpHealthcheckOptions,
        Name::BackendServerTcpHealthcheckOptions,
        Name::FrontendBackendGlue,
        Name::HttpBackendNetworkAllowedAcl,
        Name::HttpBackendAclAllowDeny,
        Name::TcpBackendNetworkAllowedAcl,
        Name::TcpBackendAclAllowDeny,
    ];
}

/// Every template, in the order of the original documentation.
pub const TEMPLATES: &[TemplateSpec] = &[
    TemplateSpec {
        name: "HEAD",
        default: r#""#,
        per_port: false,
        formatted: false,
    },
    TemplateSpec {
        name: "USERLIST_HEAD",
        default: r#"
userlist user_{backend}
  user {user} password {passwd}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_HEAD",
        default: r#"
frontend marathon_http_in
  bind *:80
  mode http
"#,
        per_port: false,
        formatted: false,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_APPID_HEAD",
        default: r#"
frontend marathon_http_appid_in
  bind *:9091
  mode http
"#,
        per_port: false,
        formatted: false,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_HEAD",
        default: r#"
frontend marathon_https_in
  bind *:443 ssl {sslCerts}
  mode http
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_GROUPED_FRONTEND_HEAD",
        default: r#"
frontend marathon_https_in
  bind *:443
  mode tcp
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
"#,
        per_port: false,
        formatted: false,
    },
    TemplateSpec {
        name: "HTTPS_GROUPED_VHOST_FRONTEND_HEAD",
        default: r#"
frontend {name}
  mode http
  bind abns@{name} accept-proxy ssl {sslCerts}{bindOpts}
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_GROUPED_VHOST_BACKEND_HEAD",
        default: r#"
backend {name}
  server loopback-for-tls abns@{name} send-proxy-v2
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_GROUPED_VHOST_FRONTEND_ACL",
        default: r#"  use_backend {backend} if {{ req_ssl_sni -i {host} }}
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "FRONTEND_HEAD",
        default: r#"
frontend {backend}
  bind {bindAddr}:{servicePort}{sslCert}{bindOptions}
  mode {mode}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_HEAD",
        default: r#"
backend {backend}
  balance {balance}
  mode {mode}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_REDIRECT_HTTP_TO_HTTPS",
        default: r#"  redirect scheme https code 301 if !{{ ssl_fc }} host_{cleanedUpHostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",
        default: r#"  redirect scheme https code 301 if !{{ ssl_fc }} host_{cleanedUpHostname} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_HSTS_OPTIONS",
        default: r#"  http-response set-header Strict-Transport-Security max-age=15768000
"#,
        per_port: true,
        formatted: false,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL",
        default: r#"  acl host_{cleanedUpHostname} hdr(host) -i {hostname}
  use_backend {backend} if host_{cleanedUpHostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "MAP_HTTP_FRONTEND_ACL",
        default: r#"  use_backend %[req.hdr(host),lower,regsub(:.*$,,),map({haproxy_dir}/domain2backend.map)]
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_WITH_AUTH",
        default: r#"  acl host_{cleanedUpHostname} hdr(host) -i {hostname}
  acl auth_{cleanedUpHostname} http_auth(user_{backend})
  http-request auth realm "{realm}" if host_{cleanedUpHostname} !auth_{cleanedUpHostname}
  use_backend {backend} if host_{cleanedUpHostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_ONLY",
        default: r#"  acl host_{cleanedUpHostname} hdr(host) -i {hostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "MAP_HTTP_FRONTEND_ACL_ONLY",
        default: r#"  use_backend %[req.hdr(host),lower,regsub(:.*$,,),map({haproxy_dir}/domain2backend.map)]
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ROUTING_ONLY",
        default: r#"  use_backend {backend} if host_{cleanedUpHostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
        default: r#"  acl auth_{cleanedUpHostname} http_auth(user_{backend})
  http-request auth realm "{realm}" if host_{cleanedUpHostname} !auth_{cleanedUpHostname}
  use_backend {backend} if host_{cleanedUpHostname}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_WITH_PATH",
        default: r#"  acl host_{cleanedUpHostname} hdr(host) -i {hostname}
  acl path_{backend} path_beg {path}
  use_backend {backend} if host_{cleanedUpHostname} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
        default: r#"  acl host_{cleanedUpHostname} hdr(host) -i {hostname}
  acl auth_{cleanedUpHostname} http_auth(user_{backend})
  acl path_{backend} path_beg {path}
  http-request auth realm "{realm}" if host_{cleanedUpHostname} path_{backend} !auth_{cleanedUpHostname}
  use_backend {backend} if host_{cleanedUpHostname} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
        default: r#"  acl path_{backend} path_beg {path}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
        default: r#"  acl path_{backend} path_beg {path}
  acl auth_{cleanedUpHostname} http_auth(user_{backend})
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
        default: r#"  acl path_{backend} path_beg {path}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
        default: r#"  use_backend {backend} if host_{cleanedUpHostname} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
        default: r#"  http-request auth realm "{realm}" if host_{cleanedUpHostname} path_{backend} !auth_{cleanedUpHostname}
  use_backend {backend} if host_{cleanedUpHostname} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
        default: r#"  http-request auth realm "{realm}" if host_{cleanedUpHostname} path_{backend} !auth_{cleanedUpHostname}
  use_backend {backend} if host_{cleanedUpHostname} path_{backend}
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_FRONTEND_APPID_ACL",
        default: r#"  acl app_{cleanedUpAppId} hdr(x-marathon-app-id) -i {appId}
  use_backend {backend} if app_{cleanedUpAppId}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "MAP_HTTP_FRONTEND_APPID_ACL",
        default: r#"  use_backend %[req.hdr(x-marathon-app-id),lower,map({haproxy_dir}/app2backend.map)]
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ACL",
        default: r#"  use_backend {backend} if {{ ssl_fc_sni {hostname} }}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "MAP_HTTPS_FRONTEND_ACL",
        default: r#"  use_backend %[ssl_fc_sni,lower,map({haproxy_dir}/domain2backend.map)]
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ACL_WITH_AUTH",
        default: r#"  acl auth_{cleanedUpHostname} http_auth(user_{backend})
  http-request auth realm "{realm}" if {{ ssl_fc_sni {hostname} }} !auth_{cleanedUpHostname}
  use_backend {backend} if {{ ssl_fc_sni {hostname} }}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_AUTH_ACL_ONLY",
        default: r#"  acl auth_{cleanedUpHostname} http_auth(user_{backend})
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
        default: r#"  http-request auth realm "{realm}" if {{ ssl_fc_sni {hostname} }} !auth_{cleanedUpHostname}
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ACL_WITH_PATH",
        default: r#"  use_backend {backend} if {{ ssl_fc_sni {hostname} }} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
        default: r#"  acl auth_{cleanedUpHostname} http_auth(user_{backend})
  http-request auth realm "{realm}" if {{ ssl_fc_sni {hostname} }} path_{backend} !auth_{cleanedUpHostname}
  use_backend {backend} if {{ ssl_fc_sni {hostname} }} path_{backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_HTTP_OPTIONS",
        default: r#"  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
"#,
        per_port: true,
        formatted: false,
    },
    TemplateSpec {
        name: "HTTP_BACKEND_PROXYPASS_GLUE",
        default: r#"  http-request set-header Host {hostname}
  http-request replace-path (?i)^{proxypath}/?(.*) /\1
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_BACKEND_REVPROXY_GLUE",
        default: r#"  acl hdr_location res.hdr(Location) -m found
  http-response replace-header Location ^(https?://{hostname}(:[0-9]+)?)?(/.*) {rootpath}\3 if hdr_location
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_BACKEND_REDIR",
        default: r#"  acl is_root path -i /
  acl is_domain hdr(host) -i {hostname}
  redirect code 301 location {redirpath} if is_domain is_root
"#,
        per_port: false,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
        default: r#"  option  httpchk GET {healthCheckPath}
  timeout check {healthCheckTimeoutSeconds}s
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_TCP_HEALTHCHECK_OPTIONS",
        default: r#""#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_STICKY_OPTIONS",
        default: r#"  cookie mesosphere_server_id insert indirect nocache
"#,
        per_port: true,
        formatted: false,
    },
    TemplateSpec {
        name: "BACKEND_SERVER_OPTIONS",
        default: r#"  server {serverName} {host_ipv4}:{port} id {serverId}{cookieOptions}{healthCheckOptions}{otherOptions}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
        default: r#"  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}{healthCheckPortOptions}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
        default: r#"  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}{healthCheckPortOptions}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "FRONTEND_BACKEND_GLUE",
        default: r#"  use_backend {backend}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_BACKEND_NETWORK_ALLOWED_ACL",
        default: r#"  acl network_allowed src {network_allowed}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "HTTP_BACKEND_ACL_ALLOW_DENY",
        default: r#"  http-request allow if network_allowed
  http-request deny
"#,
        per_port: false,
        formatted: false,
    },
    TemplateSpec {
        name: "TCP_BACKEND_NETWORK_ALLOWED_ACL",
        default: r#"  acl network_allowed src {network_allowed}
"#,
        per_port: true,
        formatted: true,
    },
    TemplateSpec {
        name: "TCP_BACKEND_ACL_ALLOW_DENY",
        default: r#"  tcp-request content accept if network_allowed
  tcp-request content reject
"#,
        per_port: false,
        formatted: false,
    },
];
