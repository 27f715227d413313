//! The dashboard at `/`: the page shell (rendered here with maud), the state embedded as
//! JSON, and a small plain script (`/assets/dashboard.js`) that renders it and refreshes it
//! in place from `/api/v1/state` every two seconds. No external scripts, styles or fonts.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::state::StateView;

/// The script, served as `/assets/dashboard.js`.
const SCRIPT: &str = include_str!("dashboard.js");

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2430;background:#f3f5f8}
header{display:flex;flex-wrap:wrap;align-items:center;gap:10px 16px;padding:10px 18px;background:#1d2430;color:#fff}
header h1{font-size:18px;margin:0}
header a{color:#cfe0ff}
header form{display:inline}
header button{font:inherit;padding:3px 10px;border-radius:4px;border:1px solid #8aa;background:#2d3748;color:#fff;cursor:pointer}
.health{padding:2px 10px;border-radius:12px;font-weight:600;text-transform:uppercase;font-size:12px}
.health.ok{background:#1f9d55}.health.degraded{background:#d69e2e;color:#1d2430}.health.starting{background:#718096}.health.failing{background:#c53030}
.spacer{flex:1}
.live{font-size:12px}.live.bad{color:#feb2b2}
main{padding:12px 18px;max-width:1600px;margin:0 auto}
#reasons{margin:0 0 10px;padding:8px 12px 8px 28px;background:#fffbea;border:1px solid #f6e05e;border-radius:6px}
#reasons:empty{display:none}
#cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:10px;margin-bottom:14px}
.card{background:#fff;border-radius:6px;padding:8px 12px;border-left:4px solid #a0aec0;box-shadow:0 1px 2px #0001;min-width:0}
.card.good{border-color:#1f9d55}.card.bad{border-color:#c53030}.card.warn{border-color:#d69e2e}
.card-title{font-size:12px;color:#5a6473;text-transform:uppercase}
.card-value{font-size:20px;font-weight:600;overflow-wrap:anywhere}
.card-detail{font-size:12px;color:#5a6473;overflow-wrap:anywhere}
section{background:#fff;border-radius:6px;box-shadow:0 1px 2px #0001;margin-bottom:14px;padding:8px 12px}
section h2{font-size:15px;margin:4px 0 8px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.count{font-weight:400;color:#5a6473;font-size:12px}
#search{font:inherit;padding:4px 8px;min-width:240px;border:1px solid #cbd5e0;border-radius:4px;flex:1;max-width:420px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #edf0f4;vertical-align:top}
th{font-size:12px;color:#5a6473;font-weight:600}
.app{font-weight:600;overflow-wrap:anywhere}.sub{font-size:11px;color:#718096}
.port{font-family:ui-monospace,monospace;white-space:nowrap}
.badge{display:inline-block;margin:1px 4px 1px 0;padding:1px 7px;border-radius:10px;font-size:12px;font-family:ui-monospace,monospace;background:#e2e8f0;white-space:nowrap}
.state-UP{background:#c6f6d5;color:#22543d}.state-DOWN{background:#fed7d7;color:#822727}
.state-MAINT,.state-DRAIN,.state-NOLB{background:#feebc8;color:#7b341e}.state-UNKNOWN{background:#e2e8f0}
code.label{background:#edf2f7;padding:1px 5px;border-radius:3px;margin-right:4px;font-size:12px}
.reason,.changes{overflow-wrap:anywhere}
tr.failed td{background:#fff5f5}
.empty{color:#718096;text-align:center}
footer{color:#718096;font-size:12px;padding:4px 18px 16px}
@media (max-width:700px){header{padding:8px 10px}main{padding:8px}#cards{grid-template-columns:1fr 1fr}
 .card-value{font-size:16px}#search{min-width:0;width:100%;max-width:none}
 #services thead{display:none}#services tr{display:block;border-bottom:1px solid #cbd5e0;padding:4px 0}
 #services td{display:block;border:0;padding:2px 4px}}
";

/// The page for `state` (its data rendered by the script from the embedded JSON).
pub fn page(state: &StateView) -> String {
    // `<` escaped so no value can close the script element.
    let json = serde_json::to_string(state)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c");
    shell(&json).into_string()
}

fn shell(json: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "marathon-lb" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "marathon-lb" }
                    span #health .health { "…" }
                    span #live .live { "" }
                    span .spacer {}
                    a href="/api/v1/state" { "state API" }
                    a href="/metrics" { "metrics" }
                    a href="/healthz" { "healthz" }
                    span #stats-link {}
                    form method="post" action="/signal/hup" { button title="Fetch the apps and regenerate (SIGHUP)" { "Resync" } }
                    form method="post" action="/signal/usr1" { button title="Validate and reload the config on disk (SIGUSR1)" { "Reload config" } }
                }
                main {
                    ul #reasons {}
                    div #cards {}
                    section #services {
                        h2 { "Services" span #services-count .count {} input #search type="search" placeholder="Search apps, vhosts, ports, servers…" aria-label="Search services"; }
                        div .scroll { table {
                            thead { tr { th { "App" } th { "Bind" } th { "Mode" } th { "Vhosts / path" } th { "Backend" } th { "Servers" } } }
                            tbody #services-body {}
                        } }
                    }
                    section #left-out-section hidden {
                        h2 { "Left out of the config" }
                        div .scroll { table #left-out {
                            thead { tr { th { "App" } th { "Labels" } th { "Reason" } th { "Since" } } }
                            tbody #left-out-body {}
                        } }
                    }
                    section #applies {
                        h2 { "Recent applies" }
                        div .scroll { table {
                            thead { tr { th { "When" } th { "How" } th { "Reason" } th { "Changes" } th { "Took" } th { "Result" } } }
                            tbody #applies-body {}
                        } }
                    }
                    noscript { p { "The dashboard needs JavaScript; the same data is at " a href="/api/v1/state" { "/api/v1/state" } "." } }
                }
                footer #footer {}
                script #initial-state type="application/json" { (PreEscaped(json)) }
                script src="/assets/dashboard.js" {}
            }
        }
    }
}

/// `GET /assets/dashboard.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}
