//! The status module's pure parts: the applies ring, the stats page link and the names the
//! services get, checked against a real render.

use std::time::{Duration, SystemTime};

use clap::Parser;

use super::*;

#[test]
fn nothing_to_do_passes_fold_and_the_ring_keeps_the_newest() {
    let mut s = Status::default();
    let t = SystemTime::UNIX_EPOCH;
    s.record_apply(ApplyRecord::new(t, ApplyHow::Reload, "initial", "", 1));
    for i in 0..5 {
        s.record_apply(ApplyRecord::new(
            t + Duration::from_secs(i),
            ApplyHow::Nothing,
            "",
            "",
            1,
        ));
    }
    assert_eq!(s.recent_applies.len(), 2);
    assert_eq!(s.recent_applies[1].repeated, 4);
    assert_eq!(s.last_real_apply().map(|a| a.how), Some(ApplyHow::Reload));
    for _ in 0..(2 * RECENT_APPLIES) {
        s.record_apply(ApplyRecord::new(t, ApplyHow::Runtime, "runtime_ops", "", 1));
    }
    assert_eq!(s.recent_applies.len(), RECENT_APPLIES);
    assert!(s.recent_applies.iter().all(|a| a.how == ApplyHow::Runtime));
}

#[test]
fn the_stats_page_of_the_default_head_is_port_9090() {
    let head = crate::templates::default_head(None);
    assert_eq!(stats_page(&head), Some((9090, "/haproxy?stats".to_owned())));
    let custom = "global\nlisten stats\n  bind 127.0.0.1:8404\n\n  stats uri /s\nfrontend x\n";
    assert_eq!(stats_page(custom), Some((8404, "/s".to_owned())));
    assert_eq!(stats_page("global\nfrontend x\n  bind :1\n"), None);
}

#[test]
fn service_and_server_names_are_the_rendered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    let cli = crate::config::Cli::try_parse_from([
        "marathon-lb",
        "--group",
        "*",
        "--haproxy-config",
        cfg.to_str().unwrap(),
    ])
    .unwrap();
    let config = cli.validate(|_| None).unwrap();
    let templates = crate::templates::Templates::load(None, |_| None).unwrap();
    let apps = r#"{"apps":[{"id":"/g/web","portDefinitions":[{"port":10001}],
        "labels":{"HAPROXY_0_VHOST":"web.example.com,www.example.com","HAPROXY_GROUP":"x"},
        "tasks":[{"id":"w.1","host":"localhost",
        "ports":[31001]},{"id":"w.2","host":"127.0.0.2","ports":[31002]}]},
        {"id":"/idle","portDefinitions":[{"port":10002}],"tasks":[]}]}"#;
    let built = crate::run::build_body(
        apps,
        "test",
        &config,
        &templates,
        &mut crate::run::Memory::default(),
    )
    .unwrap();
    let served = services::served(&built.services, &built.rendered.config);
    assert_eq!(served.len(), 1, "{served:?}");
    let web = &served[0];
    assert_eq!(web.backend, "g_web_10001");
    assert_eq!(web.mode, "http");
    assert_eq!(web.vhosts, ["web.example.com", "www.example.com"]);
    assert_eq!(web.port_index, Some(0));
    assert_eq!(web.bind, "*:10001");
    let templated = built
        .rendered
        .config
        .replace("bind *:10001", "bind 127.0.0.1:10001 ssl");
    assert_ne!(templated, *built.rendered.config);
    let served = services::served(&built.services, &templated);
    assert_eq!(served[0].bind, "127.0.0.1:10001", "the bind line's address");
    assert_eq!(web.servers.len(), 2);
    for server in &web.servers {
        let line = format!("server {} {}", server.name, server.address);
        assert!(
            built.rendered.config.contains(&line),
            "{line} not in\n{}",
            built.rendered.config
        );
    }
}
