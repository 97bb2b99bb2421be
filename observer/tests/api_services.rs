//! The standard gRPC services beside ours, with real tonic clients: `grpc.health.v1`
//! (NOT_SERVING until the daemon's first cluster state, then SERVING) and server
//! reflection (v1 and v1alpha), so that probes and grpcurl work without our .proto.

use std::sync::Arc;
use std::time::Duration;

mod support;

use observer::api::server::ApiConfig;
use observer::hub::FlowHub;
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const OBSERVER: &str = "observer.v1.Observer";

#[tokio::test]
async fn health_follows_readiness_and_reflection_lists_the_services() {
    let hub = FlowHub::with_first_cursor(16, 1);
    let (ready_tx, ready_rx) = watch::channel(false);
    let config = ApiConfig {
        ready: Some(ready_rx),
        ..ApiConfig::default()
    };
    let (channel, address) = support::api_channel(Arc::clone(&hub), config).await;

    let mut health = HealthClient::new(channel.clone());
    let status = |health: &mut HealthClient<tonic::transport::Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: OBSERVER.into(),
                })
                .await
                .map(|r| r.into_inner().status)
        }
    };
    assert_eq!(
        status(&mut health).await.expect("a status"),
        ServingStatus::NotServing as i32,
        "serving before the cluster state"
    );
    // The readiness probe's command says so too, with its exit code.
    let probe = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
            .args([
                "observe",
                "--health",
                "--server",
                &format!("http://{address}"),
            ])
            .output()
            .expect("observe runs")
    };
    let not_ready = tokio::task::spawn_blocking(probe).await.expect("probe");
    assert!(!not_ready.status.success(), "{not_ready:?}");
    assert!(String::from_utf8_lossy(&not_ready.stdout).contains(r#""serving":false"#));
    ready_tx.send_replace(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status(&mut health).await.expect("a status") != ServingStatus::Serving as i32 {
        assert!(tokio::time::Instant::now() < deadline, "never serving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ready = tokio::task::spawn_blocking(probe).await.expect("probe");
    assert!(ready.status.success(), "{ready:?}");

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a response")
        .expect("not the end");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [OBSERVER, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}
