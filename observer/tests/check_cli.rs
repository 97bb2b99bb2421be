//! End-to-end runs of `observer check`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const MANIFESTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: pg}]}]
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: db-0, namespace: shop, labels: {app: db}}
  spec: {containers: [{name: pg, image: postgres, ports: [{name: pg, containerPort: 5432}]}]}
  status: {podIP: 10.1.0.5}
- metadata: {name: api-0, namespace: shop, labels: {app: api}}
  spec: {containers: [{name: api, image: api}]}
  status: {podIP: 10.1.0.6}
"#;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn manifest_file(tag: &str) -> std::path::PathBuf {
    let name = format!("check-cli-{}-{tag}.yaml", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, MANIFESTS).expect("write manifests");
    path
}

#[test]
fn replays_flows_from_stdin() {
    let path = manifest_file("stdin");
    let flows = concat!(
        r#"{"src":"shop/api-0","dst":"shop/db-0","dst_port":5432}"#,
        "\n",
        r#"{"src":{"ip":"10.1.0.9","port":5555},"dst":{"ip":"10.1.0.5","port":5432},"protocol":"TCP","state":"closed"}"#,
        "\n"
    );
    let out = run(
        &[
            "--manifests",
            path.to_str().unwrap_or_default(),
            "--flows",
            "-",
        ],
        flows,
    );
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[0]["ingress"]["policies"][0], "shop/db-from-api");
    assert_eq!(lines[0]["ingress"]["rules"][0]["rule_index"], 0);
    assert_eq!(lines[1]["verdict"], "deny");
    assert_eq!(lines[1]["src"]["kind"], "external");
    assert_eq!(lines[1]["ingress"]["decision"], "denied");
}

#[test]
fn malformed_line_exits_2() {
    let path = manifest_file("malformed");
    let out = run(
        &[
            "--manifests",
            path.to_str().unwrap_or_default(),
            "--flows",
            "-",
        ],
        "{\"src\":\"shop/api-0\",\"dst\":\"shop/db-0\",\"dst_port\":5432}\n{oops\n",
    );
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2:"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["--flows", "-"], "").status.code(), Some(2));
    assert_eq!(run(&["stray"], "").status.code(), Some(2));
}

#[test]
fn a_manifests_path_that_cannot_be_read_exits_1_without_judging() {
    let out = run(
        &[
            "--manifests",
            "/nonexistent/observer-check/cluster.yaml",
            "--flows",
            "-",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout.len(), 0, "no verdict against an empty cluster");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/observer-check/cluster.yaml"),
        "{stderr}"
    );
}

#[test]
fn a_fifo_as_manifest_is_refused_not_waited_on() {
    let path = std::env::temp_dir().join(format!("check-cli-{}-fifo.yaml", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let made = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let out = run(
        &[
            "--manifests",
            path.to_str().unwrap_or_default(),
            "--flows",
            "-",
        ],
        "",
    );
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

#[test]
fn an_endless_flow_line_is_refused_with_its_line_number() {
    let path = manifest_file("endless");
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["check", "--manifests"])
        .arg(&path)
        .args(["--flows", "/dev/zero"])
        .output()
        .expect("check runs");
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1: longer than"), "{stderr}");
}
