//! `marathon-lb zdd`'s command line against the fake Marathon (no HAProxy needed): zdd.py's
//! exit codes for missing flags and labels, flags that need a split, an unreachable
//! Marathon, and `--dry-run`, which prints the new definition and the plan and changes
//! nothing.

use std::process::Output;

use marathon_lb_testkit::fake_marathon::{FakeMarathon, Options};
use marathon_lb_testkit::ports::free_port;
use serde_json::{json, Value};

fn app_json(dir: &std::path::Path, labels: Value) -> std::path::PathBuf {
    let path = dir.join("app.json");
    let app = json!({"id": "/web", "instances": 4, "labels": labels,
                     "portDefinitions": [{"port": 10000}]});
    std::fs::write(&path, app.to_string()).unwrap();
    path
}

fn labels() -> Value {
    json!({"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001"})
}

async fn zdd(args: &[&str]) -> (Option<i32>, String) {
    let out: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_marathon-lb"))
        .arg("zdd")
        .args(args)
        .args(["--syslog-socket", "/dev/null"])
        .env_remove("DCOS_SERVICE_ACCOUNT_CREDENTIAL")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn exit_codes_follow_zdd_py() {
    let fake = FakeMarathon::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url();
    let lb = format!("http://127.0.0.1:{}", free_port());

    let (code, out) = zdd(&["-m", &url, "-l", &lb]).await;
    assert_eq!(code, Some(2), "no --json: {out}");
    assert!(out.contains("--json/-j is required"), "{out}");

    let bad = app_json(dir.path(), json!({"HAPROXY_DEPLOYMENT_GROUP": "web"}));
    let (code, out) = zdd(&["-j", bad.to_str().unwrap(), "-m", &url, "-l", &lb]).await;
    assert_eq!(code, Some(4), "no alt port: {out}");
    assert!(out.contains("HAPROXY_DEPLOYMENT_ALT_PORT"), "{out}");

    let good = app_json(dir.path(), labels());
    let good = good.to_str().unwrap();
    let (code, out) = zdd(&["-j", good, "-m", &url, "-l", &lb, "-f", "--complete-cur"]).await;
    assert_eq!(code, Some(3), "complete without a split: {out}");

    let down = format!("http://127.0.0.1:{}", free_port());
    let (code, out) = zdd(&["-j", good, "-m", &down, "-l", &lb, "-f"]).await;
    assert_eq!(code, Some(6), "Marathon down: {out}");
    assert!(fake.app_ids().is_empty());
}

#[tokio::test]
async fn dry_run_prints_the_definition_and_plan_and_changes_nothing() {
    let fake = FakeMarathon::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = app_json(dir.path(), labels());
    let path = path.to_str().unwrap();
    let url = fake.url();
    let lb = format!("http://127.0.0.1:{}", free_port());
    // The current colour: blue, 4 instances, created through the fake's API as zdd would.
    let (code, out) = zdd(&["-j", path, "-m", &url, "-l", &lb, "-f"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(fake.app_ids(), ["/web-blue"]);

    let (code, out) = zdd(&["-j", path, "-m", &url, "-l", &lb, "-d"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"id\": \"/web-green\""), "{out}");
    assert!(
        out.contains("\"HAPROXY_DEPLOYMENT_COLOUR\": \"green\""),
        "{out}"
    );
    assert!(
        out.contains("create /web-green with 1 instance(s) on service port 10001"),
        "{out}"
    );
    assert!(out.contains("scale /web-green to 2"), "{out}");
    assert!(
        out.contains("drained all 2 remaining task(s) of /web-blue, delete it"),
        "{out}"
    );
    assert_eq!(fake.app_ids(), ["/web-blue"], "a dry run changes nothing");
}
