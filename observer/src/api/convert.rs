//! Between the flow record (`flow::FlowRecord`, the flow log's shape) and the wire's
//! `proto::Flow`: the one place either is turned into the other. The server converts
//! outgoing flows; `observer observe` converts them back and prints flow-log lines.

use std::net::IpAddr;

use super::proto;
use crate::flow::{
    Counts, EndpointIdentity, FlowRecord, FlowState, IcmpInfo, RecordEndpoint, ServiceInfo,
    WorkloadInfo,
};
use crate::policy::{DirectionReport, RuleReport, VerdictReport};

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

impl From<&FlowRecord> for proto::Flow {
    fn from(r: &FlowRecord) -> Self {
        Self {
            source: Some(endpoint(&r.src)),
            destination: Some(endpoint(&r.dst)),
            protocol: r.protocol.clone(),
            icmp: r.icmp.map(|i| proto::Icmp {
                r#type: i.icmp_type.into(),
                code: i.code.into(),
            }),
            forward: Some(counts(r.fwd)),
            reverse: Some(counts(r.rev)),
            tcp_flags: r.tcp_flags.clone(),
            first_seen: r.first_seen.clone(),
            last_seen: r.last_seen.clone(),
            state: r.state.name().to_string(),
            interfaces: r.interfaces.clone(),
            non_first_fragments: r.non_first_fragments,
            service: r.service.as_ref().map(|s| proto::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.into(),
                cluster_ip: s.cluster_ip.to_string(),
                backend: s.backend.clone(),
            }),
            verdict: r.policy.as_ref().map(|v| proto::Verdict {
                verdict: v.verdict.clone(),
                category: v.category.clone(),
                ingress: Some(direction(&v.ingress)),
                egress: Some(direction(&v.egress)),
            }),
        }
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

fn direction(d: &DirectionReport) -> proto::DirectionVerdict {
    proto::DirectionVerdict {
        decision: d.decision.clone(),
        policies: d.policies.clone(),
        rules: d
            .rules
            .iter()
            .map(|r| proto::Rule {
                policy: r.policy.clone(),
                rule_index: u32::try_from(r.rule_index).unwrap_or(u32::MAX),
            })
            .collect(),
    }
}

impl TryFrom<&proto::Flow> for FlowRecord {
    type Error = ConvertError;

    fn try_from(f: &proto::Flow) -> Result<Self, ConvertError> {
        let bad = |field, value: &dyn ToString, problem| ConvertError {
            field,
            value: value.to_string(),
            problem,
        };
        let state = FlowState::from_name(&f.state)
            .ok_or_else(|| bad("state", &f.state, "is not a flow state"))?;
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
                backend: s.backend.clone(),
            }),
            None => None,
        };
        let policy = f.verdict.as_ref().map(|v| VerdictReport {
            verdict: v.verdict.clone(),
            category: v.category.clone(),
            ingress: report(v.ingress.as_ref()),
            egress: report(v.egress.as_ref()),
        });
        Ok(FlowRecord {
            src: record_endpoint(f.source.as_ref(), "source")?,
            dst: record_endpoint(f.destination.as_ref(), "destination")?,
            protocol: f.protocol.clone(),
            icmp,
            fwd: record_counts(f.forward.as_ref()),
            rev: record_counts(f.reverse.as_ref()),
            tcp_flags: f.tcp_flags.clone(),
            first_seen: f.first_seen.clone(),
            last_seen: f.last_seen.clone(),
            state,
            interfaces: f.interfaces.clone(),
            non_first_fragments: f.non_first_fragments,
            service,
            policy,
            first_seen_ns: 0,
            last_seen_ns: 0,
        })
    }
}

fn record_endpoint(
    e: Option<&proto::Endpoint>,
    side: &'static str,
) -> Result<RecordEndpoint, ConvertError> {
    let bad = |field, value: String, problem| ConvertError {
        field,
        value,
        problem,
    };
    let source = side == "source";
    let e = e.ok_or(bad(side, String::new(), "is missing"))?;
    let ip: IpAddr = e.ip.parse().map_err(|_| {
        let field = if source {
            "source.ip"
        } else {
            "destination.ip"
        };
        bad(field, e.ip.clone(), "is not an address")
    })?;
    let port = u16::try_from(e.port).map_err(|_| {
        let field = if source {
            "source.port"
        } else {
            "destination.port"
        };
        bad(field, e.port.to_string(), "is not a port")
    })?;
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

fn report(d: Option<&proto::DirectionVerdict>) -> DirectionReport {
    DirectionReport {
        decision: d.map(|d| d.decision.clone()).unwrap_or_default(),
        policies: d.map(|d| d.policies.clone()).unwrap_or_default(),
        rules: d
            .map(|d| {
                d.rules
                    .iter()
                    .map(|r| RuleReport {
                        policy: r.policy.clone(),
                        rule_index: r.rule_index as usize,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fixtures::flows;

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
        wire.state = "open".into();
        assert_eq!(
            FlowRecord::try_from(&wire).expect_err("state").field,
            "state"
        );
    }
}
