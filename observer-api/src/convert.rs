//! Between the flow record (`flow::FlowRecord`, the typed record the flow log writes) and
//! the wire's `proto::Flow`: the one place either is turned into the other. The server
//! converts outgoing flows; `observer observe` converts them back and prints flow-log
//! lines. Each vocabulary's wire values are in one table below.

use std::net::IpAddr;

use crate::proto;
use crate::record::{
    Counts, EndpointIdentity, FlowRecord, FlowState, IcmpInfo, RecordEndpoint, ServiceInfo,
    WorkloadInfo,
};
use crate::verdict::{
    Category, DirectionDecision, DirectionVerdict, PolicyKind, PolicyRef, RuleAction, TierDecision,
    Verdict, VerdictKind,
};
use crate::vocab::{IpProtocol, ServiceBackend, TcpFlags, Timestamp};

/// A field of a received flow that does not fit the record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("flow field {field}: {value:?} {problem}")]
pub struct ConvertError {
    /// Dotted path of the field.
    pub field: &'static str,
    /// The value received.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn bad(field: &'static str, value: &dyn ToString, problem: &'static str) -> ConvertError {
    ConvertError {
        field,
        value: value.to_string(),
        problem,
    }
}

impl From<&FlowRecord> for proto::Flow {
    fn from(r: &FlowRecord) -> Self {
        Self {
            source: Some(endpoint(&r.src)),
            destination: Some(endpoint(&r.dst)),
            protocol: r.protocol.0.into(),
            icmp: r.icmp.map(|i| proto::Icmp {
                r#type: i.icmp_type.into(),
                code: i.code.into(),
            }),
            forward: Some(counts(r.fwd)),
            reverse: Some(counts(r.rev)),
            tcp_flags: r.tcp_flags.0.into(),
            first_seen: Some(timestamp(r.first_seen)),
            last_seen: Some(timestamp(r.last_seen)),
            state: flow_state(r.state) as i32,
            interfaces: r.interfaces.clone(),
            non_first_fragments: r.non_first_fragments,
            service: r.service.as_ref().map(|s| proto::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.into(),
                cluster_ip: s.cluster_ip.to_string(),
                backend: service_backend(s.backend) as i32,
            }),
            verdict: r.policy.as_ref().map(wire_verdict),
            node_name: r.node_name.clone().unwrap_or_default(),
            staged: r.staged.as_ref().map(wire_verdict),
        }
    }
}

fn wire_verdict(v: &Verdict) -> proto::PolicyVerdict {
    proto::PolicyVerdict {
        verdict: verdict_kind(v.kind()) as i32,
        category: category(v.category) as i32,
        ingress: Some(direction(&v.ingress)),
        egress: Some(direction(&v.egress)),
    }
}

fn endpoint(e: &RecordEndpoint) -> proto::Endpoint {
    let id = &e.identity;
    proto::Endpoint {
        ip: e.ip.to_string(),
        port: e.port.into(),
        namespace: id.namespace.clone(),
        pod: id.pod.clone(),
        pod_uid: id.pod_uid.clone(),
        labels: id.labels.as_ref().map(|l| proto::Labels {
            labels: l.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        workload: id.workload.as_ref().map(|w| proto::Workload {
            kind: w.kind.clone(),
            name: w.name.clone(),
        }),
        service_account: id.service_account.clone(),
        node: id.node.clone(),
        external: id.external,
    }
}

fn counts(c: Counts) -> proto::Counts {
    proto::Counts {
        packets: c.packets,
        bytes: c.bytes,
    }
}

/// A record's time as a protobuf `Timestamp`.
pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

fn direction(d: &DirectionVerdict) -> proto::DirectionVerdict {
    proto::DirectionVerdict {
        decision: decision(d.decision) as i32,
        tiers: d
            .tiers
            .iter()
            .map(|t| proto::TierDecision {
                tier: t.tier.clone(),
                policy: Some(proto::PolicyRef {
                    kind: t.policy.kind.name().to_owned(),
                    namespace: t.policy.namespace.clone(),
                    name: t.policy.name.clone(),
                }),
                rule_index: t.rule_index.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
                action: rule_action(t.action) as i32,
            })
            .collect(),
    }
}

// The vocabularies' wire values, each in one table: record value ⇄ proto enum.

const FLOW_STATES: [(FlowState, proto::FlowState); 5] = [
    (FlowState::Active, proto::FlowState::Active),
    (FlowState::Closed, proto::FlowState::Closed),
    (FlowState::Expired, proto::FlowState::Expired),
    (FlowState::Evicted, proto::FlowState::Evicted),
    (FlowState::Started, proto::FlowState::Started),
];
const BACKENDS: [(ServiceBackend, proto::ServiceBackend); 3] = [
    (ServiceBackend::Observed, proto::ServiceBackend::Observed),
    (ServiceBackend::Conntrack, proto::ServiceBackend::Conntrack),
    (
        ServiceBackend::Unresolved,
        proto::ServiceBackend::Unresolved,
    ),
];
const VERDICTS: [(VerdictKind, proto::Verdict); 3] = [
    (VerdictKind::Allow, proto::Verdict::Allow),
    (VerdictKind::Deny, proto::Verdict::Deny),
    (VerdictKind::Undefined, proto::Verdict::Undefined),
];
const CATEGORIES: [(Category, proto::Category); 4] = [
    (Category::Decided, proto::Category::Decided),
    (Category::NodeExempt, proto::Category::NodeExempt),
    (Category::Undefined, proto::Category::Undefined),
    (Category::CniDependent, proto::Category::CniDependent),
];
const DECISIONS: [(DirectionDecision, proto::Decision); 5] = [
    (
        DirectionDecision::NotApplicable,
        proto::Decision::NotApplicable,
    ),
    (DirectionDecision::NotIsolated, proto::Decision::NotIsolated),
    (DirectionDecision::Exempt, proto::Decision::Exempt),
    (DirectionDecision::Allowed, proto::Decision::Allowed),
    (DirectionDecision::Denied, proto::Decision::Denied),
];
const ACTIONS: [(RuleAction, proto::RuleAction); 3] = [
    (RuleAction::Allow, proto::RuleAction::Allow),
    (RuleAction::Deny, proto::RuleAction::Deny),
    (RuleAction::Pass, proto::RuleAction::Pass),
];

/// The wire value of a record value.
fn to_wire<R: PartialEq + Copy, W: Copy>(table: &[(R, W)], value: R) -> W {
    // Every table lists every record value (the tests check), so the fallback is never
    // taken; it keeps this total without a panic.
    table
        .iter()
        .find(|(r, _)| *r == value)
        .or(table.first())
        .map(|(_, w)| *w)
        .expect("vocabulary tables are not empty")
}

/// The record value of a received wire value (None: unspecified or unknown).
fn from_wire<R: Copy, W: Copy + Into<i32>>(table: &[(R, W)], value: i32) -> Option<R> {
    table
        .iter()
        .find(|(_, w)| (*w).into() == value)
        .map(|(r, _)| *r)
}

fn flow_state(s: FlowState) -> proto::FlowState {
    to_wire(&FLOW_STATES, s)
}
fn service_backend(b: ServiceBackend) -> proto::ServiceBackend {
    to_wire(&BACKENDS, b)
}
fn verdict_kind(v: VerdictKind) -> proto::Verdict {
    to_wire(&VERDICTS, v)
}
fn category(c: Category) -> proto::Category {
    to_wire(&CATEGORIES, c)
}
fn decision(d: DirectionDecision) -> proto::Decision {
    to_wire(&DECISIONS, d)
}
fn rule_action(a: RuleAction) -> proto::RuleAction {
    to_wire(&ACTIONS, a)
}

impl TryFrom<&proto::Flow> for FlowRecord {
    type Error = ConvertError;

    fn try_from(f: &proto::Flow) -> Result<Self, ConvertError> {
        let state = from_wire(&FLOW_STATES, f.state)
            .ok_or_else(|| bad("state", &f.state, "is not a flow state"))?;
        let protocol = u8::try_from(f.protocol)
            .map(IpProtocol)
            .map_err(|_| bad("protocol", &f.protocol, "is not an IP protocol number"))?;
        let tcp_flags = u16::try_from(f.tcp_flags)
            .ok()
            .filter(|bits| *bits < 0x200)
            .map(TcpFlags)
            .ok_or_else(|| bad("tcp_flags", &f.tcp_flags, "has bits beyond NS"))?;
        let icmp = match &f.icmp {
            Some(i) => Some(IcmpInfo {
                icmp_type: u8::try_from(i.r#type)
                    .map_err(|_| bad("icmp.type", &i.r#type, "is over 255"))?,
                code: u8::try_from(i.code).map_err(|_| bad("icmp.code", &i.code, "is over 255"))?,
            }),
            None => None,
        };
        let service = match &f.service {
            Some(s) => Some(ServiceInfo {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: u16::try_from(s.port)
                    .map_err(|_| bad("service.port", &s.port, "is not a port"))?,
                cluster_ip: s
                    .cluster_ip
                    .parse()
                    .map_err(|_| bad("service.cluster_ip", &s.cluster_ip, "is not an address"))?,
                backend: from_wire(&BACKENDS, s.backend)
                    .ok_or_else(|| bad("service.backend", &s.backend, "is not a backend"))?,
            }),
            None => None,
        };
        let policy = f.verdict.as_ref().map(policy_verdict).transpose()?;
        let staged = f.staged.as_ref().map(policy_verdict).transpose()?;
        Ok(FlowRecord {
            src: record_endpoint(f.source.as_ref(), Side::Source)?,
            dst: record_endpoint(f.destination.as_ref(), Side::Destination)?,
            protocol,
            icmp,
            fwd: record_counts(f.forward.as_ref()),
            rev: record_counts(f.reverse.as_ref()),
            tcp_flags,
            first_seen: record_time(f.first_seen.as_ref(), "first_seen")?,
            last_seen: record_time(f.last_seen.as_ref(), "last_seen")?,
            state,
            node_name: (!f.node_name.is_empty()).then(|| f.node_name.clone()),
            interfaces: f.interfaces.clone(),
            non_first_fragments: f.non_first_fragments,
            service,
            policy,
            staged,
            first_seen_ns: 0,
            last_seen_ns: 0,
        })
    }
}

fn record_time(
    t: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<Timestamp, ConvertError> {
    let t = t.ok_or_else(|| bad(field, &"", "is missing"))?;
    Timestamp::from_parts(t.seconds, t.nanos).ok_or_else(|| {
        bad(
            field,
            &format!("{}s {}ns", t.seconds, t.nanos),
            "is out of range",
        )
    })
}

fn policy_verdict(v: &proto::PolicyVerdict) -> Result<Verdict, ConvertError> {
    let kind = from_wire(&VERDICTS, v.verdict)
        .ok_or_else(|| bad("verdict.verdict", &v.verdict, "is not a verdict"))?;
    Ok(Verdict {
        allowed: kind == VerdictKind::Allow,
        category: from_wire(&CATEGORIES, v.category)
            .ok_or_else(|| bad("verdict.category", &v.category, "is not a category"))?,
        ingress: record_direction(v.ingress.as_ref(), "verdict.ingress")?,
        egress: record_direction(v.egress.as_ref(), "verdict.egress")?,
    })
}

fn record_direction(
    d: Option<&proto::DirectionVerdict>,
    field: &'static str,
) -> Result<DirectionVerdict, ConvertError> {
    let d = d.ok_or_else(|| bad(field, &"", "is missing"))?;
    let decision = from_wire(&DECISIONS, d.decision)
        .ok_or_else(|| bad(field, &d.decision, "has no known decision"))?;
    let tiers = d
        .tiers
        .iter()
        .map(|t| {
            let policy = t
                .policy
                .as_ref()
                .ok_or_else(|| bad(field, &"", "has a tier decision without a policy"))?;
            Ok(TierDecision {
                tier: t.tier.clone(),
                policy: PolicyRef {
                    kind: PolicyKind::ALL
                        .into_iter()
                        .find(|kind| kind.name() == policy.kind)
                        .ok_or_else(|| bad(field, &policy.kind, "names an unknown policy kind"))?,
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                },
                rule_index: t.rule_index.map(|i| i as usize),
                action: from_wire(&ACTIONS, t.action)
                    .ok_or_else(|| bad(field, &t.action, "has an unknown rule action"))?,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    Ok(DirectionVerdict { decision, tiers })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

fn record_endpoint(
    e: Option<&proto::Endpoint>,
    side: Side,
) -> Result<RecordEndpoint, ConvertError> {
    let (name, ip_field, port_field) = match side {
        Side::Source => ("source", "source.ip", "source.port"),
        Side::Destination => ("destination", "destination.ip", "destination.port"),
    };
    let e = e.ok_or_else(|| bad(name, &"", "is missing"))?;
    let ip: IpAddr =
        e.ip.parse()
            .map_err(|_| bad(ip_field, &e.ip, "is not an address"))?;
    let port = u16::try_from(e.port).map_err(|_| bad(port_field, &e.port, "is not a port"))?;
    Ok(RecordEndpoint {
        ip,
        port,
        identity: EndpointIdentity {
            namespace: e.namespace.clone(),
            pod: e.pod.clone(),
            pod_uid: e.pod_uid.clone(),
            labels: e.labels.as_ref().map(|l| {
                l.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            workload: e.workload.as_ref().map(|w| WorkloadInfo {
                kind: w.kind.clone(),
                name: w.name.clone(),
            }),
            service_account: e.service_account.clone(),
            node: e.node.clone(),
            external: e.external,
        },
    })
}

fn record_counts(c: Option<&proto::Counts>) -> Counts {
    c.map_or_else(Counts::default, |c| Counts {
        packets: c.packets,
        bytes: c.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::flows;

    #[test]
    fn every_field_survives_the_wire_and_back() {
        for record in flows() {
            let wire = proto::Flow::from(&record);
            let back = FlowRecord::try_from(&wire).expect("converts back");
            assert_eq!(back, record);
            // And the flow-log JSON is the same line.
            assert_eq!(
                serde_json::to_string(&back).expect("json"),
                serde_json::to_string(&record).expect("json")
            );
        }
    }

    #[test]
    fn every_vocabulary_value_has_a_wire_value_and_back() {
        for state in FlowState::ALL {
            assert_eq!(
                from_wire(&FLOW_STATES, flow_state(state) as i32),
                Some(state)
            );
        }
        for b in ServiceBackend::ALL {
            assert_eq!(from_wire(&BACKENDS, service_backend(b) as i32), Some(b));
        }
        for v in VerdictKind::ALL {
            assert_eq!(from_wire(&VERDICTS, verdict_kind(v) as i32), Some(v));
        }
        for c in [
            Category::Decided,
            Category::NodeExempt,
            Category::Undefined,
            Category::CniDependent,
        ] {
            assert_eq!(from_wire(&CATEGORIES, category(c) as i32), Some(c));
        }
        for d in DirectionDecision::ALL {
            assert_eq!(from_wire(&DECISIONS, decision(d) as i32), Some(d));
        }
        for a in [RuleAction::Allow, RuleAction::Deny, RuleAction::Pass] {
            assert_eq!(from_wire(&ACTIONS, rule_action(a) as i32), Some(a));
        }
        // Unspecified (0) is never a record value.
        assert_eq!(from_wire(&FLOW_STATES, 0), None);
    }

    #[test]
    fn a_received_flow_that_does_not_fit_is_refused_naming_the_field() {
        let mut wire = proto::Flow::from(&flows()[0]);
        if let Some(d) = wire.destination.as_mut() {
            d.port = 70_000;
        }
        let err = FlowRecord::try_from(&wire).expect_err("port too big");
        assert_eq!(err.field, "destination.port");
        wire.destination = None;
        assert_eq!(
            FlowRecord::try_from(&wire).expect_err("missing").field,
            "destination"
        );
        let mut wire = proto::Flow::from(&flows()[0]);
        wire.state = 0;
        assert_eq!(
            FlowRecord::try_from(&wire).expect_err("state").field,
            "state"
        );
        let mut wire = proto::Flow::from(&flows()[0]);
        wire.protocol = 300;
        assert_eq!(
            FlowRecord::try_from(&wire).expect_err("protocol").field,
            "protocol"
        );
        let mut wire = proto::Flow::from(&flows()[0]);
        wire.first_seen = None;
        assert_eq!(
            FlowRecord::try_from(&wire).expect_err("time").field,
            "first_seen"
        );
    }
}
