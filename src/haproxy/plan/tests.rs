//! Tests of the planner: two rendered configs in, the exact operations or reload reasons out.

use super::*;

const HEAD: &str = "global\n  stats socket /run/haproxy.sock mode 600 level admin expose-fd listeners\ndefaults\n  timeout client 30s\n";

fn cfg(servers: &[&str]) -> String {
    let mut s = format!("{HEAD}\nfrontend web_10000\n  bind *:10000\n  mode http\n  use_backend web_10000\n\nbackend web_10000\n  balance roundrobin\n  mode http\n");
    for line in servers {
        s.push_str(&format!("  {line}\n"));
    }
    s
}

fn snap(config: &str) -> Snapshot<'_> {
    Snapshot {
        config,
        domain_map: "",
        app_map: "",
    }
}

const S1: &str = "server 10_0_0_1_31000 10.0.0.1:31000 id 111";
const S2: &str = "server 10_0_0_2_31000 10.0.0.2:31000 id 222";

#[test]
fn identical_configs_are_unchanged_and_unknown_state_reloads() {
    let a = cfg(&[S1]);
    assert_eq!(plan(Some(snap(&a)), snap(&a)), Plan::Unchanged);
    assert_eq!(plan(None, snap(&a)), Plan::Reload(vec![Change::Initial]));
}

#[test]
fn scaling_and_replacing_tasks_are_runtime_ops() {
    let (a, b) = (cfg(&[S1]), cfg(&[S2]));
    let Plan::Runtime(ops) = plan(Some(snap(&a)), snap(&b)) else {
        panic!()
    };
    assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), ["add", "del"]);
    let Op::Add { server, .. } = &ops[0] else {
        panic!()
    };
    assert_eq!(
        (server.address.as_str(), server.add_args()),
        ("10.0.0.2:31000", "id 222".to_string())
    );
}

#[test]
fn draining_is_a_state_change() {
    let (a, b) = (cfg(&[S1]), cfg(&[&format!("{S1} disabled")]));
    assert_eq!(
        plan(Some(snap(&a)), snap(&b)),
        Plan::Runtime(vec![Op::SetDisabled {
            backend: "web_10000".into(),
            name: "10_0_0_1_31000".into(),
            disabled: true
        }])
    );
}

#[test]
fn structural_changes_reload_with_reasons() {
    let a = cfg(&[S1]);
    let b = a.replace("mode http\n  use_backend", "mode tcp\n  use_backend");
    assert_eq!(
        plan(Some(snap(&a)), snap(&b)),
        Plan::Reload(vec![Change::Modified("frontend web_10000".into())])
    );
    let c = format!("{a}\nbackend other_1\n  {S2}\n");
    let Plan::Reload(changes) = plan(Some(snap(&a)), snap(&c)) else {
        panic!()
    };
    assert_eq!(changes[0], Change::Added("backend other_1".into()));
    assert_eq!(changes[0].reason(), "new-app");
}

#[test]
fn inexpressible_server_changes_reload() {
    let a = cfg(&[S1]);
    for (line, why) in [
        ("server h h.example:80 id 1", "address is not an IP address"),
        (
            "server c 10.0.0.3:80 id 3 check cookie abc",
            "HAProxy 2.6 does not accept 'cookie' on dynamic servers",
        ),
    ] {
        let b = cfg(&[S1, line]);
        let Plan::Reload(changes) = plan(Some(snap(&a)), snap(&b)) else {
            panic!()
        };
        assert!(
            matches!(&changes[0], Change::Server { why: w, .. } if *w == why),
            "{changes:?}"
        );
    }
    let readdressed = cfg(&[&S1.replace(" 10.0.0.1:31000 ", " 10.0.0.9:31000 ")]);
    assert!(matches!(
        plan(Some(snap(&a)), snap(&readdressed)),
        Plan::Reload(_)
    ));
    let hashed = cfg(&[S1]).replace("balance roundrobin", "balance source");
    let hashed_more = format!("{hashed}  {S2}\n");
    assert!(matches!(
        plan(Some(snap(&hashed)), snap(&hashed_more)),
        Plan::Reload(_)
    ));
}

#[test]
fn a_server_whose_id_moved_is_deleted_and_added_again() {
    let a = cfg(&[S1]);
    // A new server took id 111; the old one now hashes on to 5.
    let b = cfg(&[
        "server 10_0_0_0_31000 10.0.0.0:31000 id 111",
        &S1.replace("id 111", "id 5"),
    ]);
    let Plan::Runtime(ops) = plan(Some(snap(&a)), snap(&b)) else {
        panic!("expected runtime ops")
    };
    let kinds: Vec<(&str, String)> = ops
        .iter()
        .map(|op| match op {
            Op::Add { server, .. } => ("add", server.name.clone()),
            Op::Delete { name, .. } => ("del", name.clone()),
            Op::SetDisabled { name, .. } => ("state", name.clone()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("del", "10_0_0_1_31000".into()),
            ("add", "10_0_0_0_31000".into()),
            ("add", "10_0_0_1_31000".into())
        ]
    );
}

#[test]
fn map_changes_reload() {
    let a = cfg(&[S1]);
    let next = Snapshot {
        config: &a,
        domain_map: "a.example web_10000\n",
        app_map: "",
    };
    assert_eq!(
        plan(Some(snap(&a)), next),
        Plan::Reload(vec![Change::Map("domain2backend.map")])
    );
}

#[test]
fn expected_servers_of_some_backends_match_the_full_parse() {
    let mut config = cfg(&[S1, &format!("{S2} disabled")]);
    // A name that starts with another's, a backend at the end without a newline, a comment.
    config.push_str("\nbackend web_100000\n  server a 10.0.0.9:1\n# note\n  server b 10.0.0.9:2\n");
    config.push_str("\nbackend other \n  server c 10.0.0.8:1");
    let full = expected_servers(&config);
    for backends in [
        &["web_10000"][..],
        &["web_100000", "other"],
        &["web_10000", "missing"],
        &[],
    ] {
        let mut want = full.clone();
        want.retain(|name, _| backends.contains(&name.as_str()));
        assert_eq!(expected_servers_of(&config, backends), want, "{backends:?}");
    }
    assert_eq!(full["web_100000"].len(), 1, "the comment ends the section");
    // A header written another way is found by the full parse.
    let odd = config.replace("backend web_100000\n", "backend  web_100000\n");
    assert_eq!(
        expected_servers_of(&odd, &["web_100000"])["web_100000"],
        expected_servers(&odd)["web_100000"]
    );
}

#[test]
fn finds_the_stats_socket_and_expected_servers() {
    let a = cfg(&[S1, &format!("{S2} disabled")]);
    assert_eq!(stats_socket(&a), Some("/run/haproxy.sock"));
    let servers = expected_servers(&a);
    assert_eq!(
        servers["web_10000"][1],
        ("10_0_0_2_31000".into(), "10.0.0.2:31000".into(), true)
    );
}
