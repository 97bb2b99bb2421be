//! A gRPC client that is not ours drives the API: Python grpcio (`tests/python/client.py`,
//! in the virtual environment `cargo xtask setup` makes) lists the services by server
//! reflection, checks health, and calls `GetFlows` with filters and a time window, every
//! message built from the descriptors reflection returns (no .proto, no generated code).

use std::path::PathBuf;

mod support;

use observer::api::server::ApiConfig;
use observer::hub::FlowHub;
use support::{NUMBERED_BASE, numbered_flow};

/// The virtual environment `cargo xtask setup` makes (`xtask/src/setup.rs`).
fn python() -> PathBuf {
    let python =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-client/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it installs grpcio, grpcio-reflection and \
         grpcio-health-checking there)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_reflects_checks_health_and_reads_filtered_flows() {
    let hub = FlowHub::with_first_cursor(1024, 1);
    hub.publish((0..60).map(numbered_flow).collect()).await;
    let (_, address) = support::api_channel(hub, ApiConfig::default()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .arg(address.to_string())
        .arg((NUMBERED_BASE + 10).to_string())
        .arg((NUMBERED_BASE + 40).to_string())
        .output()
        .await
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let services: Vec<&str> = answer["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for service in [
        "observer.v1.Observer",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }
    assert_eq!(answer["health"], "SERVING");
    // db/postgres flows (every fourth, from 1) active between BASE+10 and BASE+40.
    let ports: Vec<u64> = answer["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| f["source"]["port"].as_u64().expect("a source port"))
        .collect();
    let expected: Vec<u64> = (10..=40)
        .filter(|i| i % 4 == 1)
        .map(|i| 30_000 + i)
        .collect();
    assert_eq!(ports, expected);
    assert_eq!(answer["refused"]["code"], "INVALID_ARGUMENT");
    assert!(
        answer["refused"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("allow[0].label")),
        "{}",
        answer["refused"]
    );
}
