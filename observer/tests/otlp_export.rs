//! OTLP export to a real OTLP/gRPC receiver (a tonic server of the collector's logs
//! service, from the same `opentelemetry-proto` definitions): every published record
//! arrives as a log record with the semantic conventions' attributes and the flow-log JSON
//! as its body; an unreachable collector makes the unsent count grow while publishing goes
//! on, and at stop what is left is counted as unsent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod support;

use observer::export::otlp::{self, OtlpConfig};
use observer::flow::FlowRecord;
use observer::hub::FlowHub;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use support::otlp_receiver::Receiver;

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(value: Option<&Value>) -> Option<&str> {
    match value {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_as_a_log_record_with_its_attributes() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(receiver.clone().serve(listener));
    let hub = FlowHub::with_first_cursor(64, 1);
    let exporter = otlp::start(
        &hub,
        &OtlpConfig {
            endpoint: format!("http://{address}"),
            tls_ca: None,
            node_name: Some("node-a".into()),
        },
    )
    .expect("an exporter");
    let flows = support::api_flows();
    hub.publish(flows.clone()).await;
    let records = || {
        receiver
            .0
            .lock()
            .expect("requests")
            .iter()
            .flat_map(|r| r.resource_logs.clone())
            .collect::<Vec<_>>()
    };
    eventually("four log records", || {
        records()
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum::<usize>()
            == 4
    })
    .await;
    eventually("four records counted as sent", || {
        exporter.counts.sent.load(Ordering::Relaxed) == 4
    })
    .await;
    let resource_logs = records();
    let resource = resource_logs[0].resource.as_ref().expect("a resource");
    assert_eq!(
        string(attribute(&resource.attributes, "k8s.node.name")),
        Some("node-a")
    );
    let logs: Vec<_> = resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| s.log_records.clone())
        .collect();
    // The first fixture: shop/web-1 (Deployment web) → shop/api-1:8080, allowed.
    let web = &logs[0].attributes;
    for (key, value) in [
        ("source.address", "10.244.1.10"),
        ("destination.address", "10.244.1.20"),
        ("network.transport", "tcp"),
        ("network.type", "ipv4"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-1"),
        ("k8s.deployment.name", "web"),
        ("observer.destination.k8s.pod.name", "api-1"),
        ("observer.verdict", "allow"),
        ("observer.policy", "shop/api-from-web"),
        ("observer.state", "closed"),
    ] {
        assert_eq!(string(attribute(web, key)), Some(value), "{key}");
    }
    assert!(
        matches!(
            attribute(web, "destination.port"),
            Some(Value::IntValue(8080))
        ),
        "{web:?}"
    );
    // The body is the flow-log record itself.
    let body = match logs[0].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(body)) => body.clone(),
        other => panic!("a string body, not {other:?}"),
    };
    let record: FlowRecord = serde_json::from_str(&body).expect("a flow-log record");
    assert_eq!(record, flows[0]);
    // The denied flow is a warning.
    assert_eq!(logs[1].severity_text, "WARN");
    hub.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_counted_and_never_holds_publishing_back() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let hub = FlowHub::with_first_cursor(64, 1);
    let exporter = otlp::start(
        &hub,
        &OtlpConfig {
            endpoint: format!("http://{closed}"),
            tls_ca: None,
            node_name: None,
        },
    )
    .expect("an exporter");
    // Publishing returns while the collector is down (the sink never waits).
    for _ in 0..3 {
        hub.publish(support::api_flows()).await;
    }
    // At stop, what the exporter could not send in time is counted as unsent, every
    // record of it, and the stop is not held for every batch's retries.
    hub.close();
    let counts = std::sync::Arc::clone(&exporter.counts);
    exporter.finish(Duration::ZERO).await;
    assert_eq!(counts.unsent.load(Ordering::Relaxed), 12);
    assert_eq!(counts.sent.load(Ordering::Relaxed), 0);
}
