//! A flow record as an OpenTelemetry log record (the one place this conversion is made):
//! the semantic conventions' attributes where they exist (`source.address`,
//! `destination.port`, `network.transport`, `network.type`, `k8s.*` of the initiating
//! pod), `observer.*` for the rest (the other side, the verdict and its deciding policy,
//! counts, state), and the record's flow-log JSON as the body. Pure.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::flow::{FlowRecord, IpProtocol, RecordEndpoint};
use crate::policy::VerdictKind;

/// OpenTelemetry severity numbers: INFO for allowed and unjudged flows, WARN for denied.
const SEVERITY_INFO: i32 = 9;
const SEVERITY_WARN: i32 = 13;

/// A string attribute.
pub(super) fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: u64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX))),
        }),
        ..KeyValue::default()
    }
}

/// `k8s.workload` attribute names of the semantic conventions, by the record's kind.
fn workload_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Deployment" => "k8s.deployment.name",
        "StatefulSet" => "k8s.statefulset.name",
        "DaemonSet" => "k8s.daemonset.name",
        "ReplicaSet" => "k8s.replicaset.name",
        "Job" => "k8s.job.name",
        "CronJob" => "k8s.cronjob.name",
        _ => return None,
    })
}

/// The attributes of one side: `prefix` empty for the semantic conventions' own (the
/// source), `observer.destination.` for the other.
fn side(attributes: &mut Vec<KeyValue>, prefix: &str, end: &RecordEndpoint) {
    let id = &end.identity;
    if let Some(ns) = &id.namespace {
        attributes.push(text(&format!("{prefix}k8s.namespace.name"), ns.clone()));
    }
    if let Some(pod) = &id.pod {
        attributes.push(text(&format!("{prefix}k8s.pod.name"), pod.clone()));
    }
    if let Some(uid) = &id.pod_uid {
        attributes.push(text(&format!("{prefix}k8s.pod.uid"), uid.clone()));
    }
    if let Some(w) = &id.workload {
        if let Some(key) = workload_key(&w.kind) {
            attributes.push(text(&format!("{prefix}{key}"), w.name.clone()));
        }
        attributes.push(text(
            &format!("{prefix}observer.workload"),
            format!("{}/{}", w.kind, w.name),
        ));
    }
}

/// The log record of `record`, observed at `now_ns`.
pub fn log_record(record: &FlowRecord, now_ns: u64) -> LogRecord {
    let mut attributes = vec![
        text("source.address", record.src.ip.to_string()),
        int("source.port", record.src.port.into()),
        text("destination.address", record.dst.ip.to_string()),
        int("destination.port", record.dst.port.into()),
        text(
            "network.type",
            if record.src.ip.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            },
        ),
    ];
    let transport = match record.protocol {
        IpProtocol::TCP => Some("tcp"),
        IpProtocol::UDP => Some("udp"),
        _ => None,
    };
    match transport {
        Some(t) => attributes.push(text("network.transport", t)),
        None => attributes.push(text("observer.protocol", record.protocol.to_string())),
    }
    side(&mut attributes, "", &record.src);
    side(&mut attributes, "observer.destination.", &record.dst);
    if let Some(node) = &record.node_name {
        attributes.push(text("k8s.node.name", node.clone()));
    }
    attributes.push(text("observer.state", record.state.name()));
    attributes.push(text("observer.verdict", record.verdict_name()));
    if let Some(service) = &record.service {
        attributes.push(text(
            "observer.service",
            format!("{}/{}", service.namespace, service.name),
        ));
    }
    if let Some(step) = record.policy.as_ref().and_then(|v| v.deciding_step()) {
        attributes.push(text("observer.policy", step.policy.to_string()));
        attributes.push(text("observer.policy.kind", step.policy.kind.name()));
        attributes.push(text("observer.policy.tier", step.tier.clone()));
    }
    attributes.push(int(
        "observer.packets",
        record.fwd.packets + record.rev.packets,
    ));
    attributes.push(int("observer.bytes", record.fwd.bytes + record.rev.bytes));
    let denied = record.verdict_kind() == Some(VerdictKind::Deny);
    LogRecord {
        time_unix_nano: u64::try_from(record.last_seen.0).unwrap_or(0),
        observed_time_unix_nano: now_ns,
        severity_number: if denied { SEVERITY_WARN } else { SEVERITY_INFO },
        severity_text: if denied { "WARN" } else { "INFO" }.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(
                serde_json::to_string(record).unwrap_or_default(),
            )),
        }),
        attributes,
        event_name: "observer.flow".into(),
        ..LogRecord::default()
    }
}
