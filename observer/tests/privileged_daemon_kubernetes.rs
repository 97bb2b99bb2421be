//! Privileged: `observer run --kubeconfig` against the in-process mock API server publishes
//! cluster views, and a new one when the API's objects change.

#[path = "support/kube/mod.rs"]
mod kube_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_support::fixtures;
use kube_support::harness::write_kubeconfig;
use kube_support::mock_apiserver::MockApiServer;

fn stat(path: &std::path::Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?[field].as_u64()
}

async fn wait_stat(path: &std::path::Path, field: &str, value: u64, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(path, field).is_none_or(|v| v < value) {
        assert!(
            Instant::now() < deadline,
            "{field} never reached {value}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_kubeconfig_publishes_views_from_the_api() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "loads eBPF programs: needs root"
    );
    let mock = MockApiServer::start(fixtures::all()).await;
    let kubeconfig = write_kubeconfig(&mock);
    let dir = std::env::temp_dir().join(format!("observer-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (stats, log) = (dir.join("stats.json"), dir.join("observer.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--interfaces",
            "no-such-interface-*",
            "--poll-interval",
            "100ms",
        ])
        .arg("--flow-log")
        .arg(dir.join("flows.jsonl"))
        .arg("--stats-file")
        .arg(&stats)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start observer");

    wait_stat(&stats, "cluster_views", 1, &log).await;
    mock.apply(fixtures::web_pod("web-new", Some("10.244.9.9")));
    wait_stat(&stats, "cluster_views", 2, &log).await;

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("observer exit");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(kubeconfig);
}
