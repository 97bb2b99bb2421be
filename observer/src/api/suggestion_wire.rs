//! Suggestions as the API sends them: `crate::suggest`'s values turned into the proto's
//! `WorkloadSuggestion` (the one place this conversion is made).

use std::collections::BTreeMap;

use crate::suggest::generate::{PortlessTraffic, SuggestedRule, Suggestion};
use crate::suggest::learn::{Direction, EdgeStats, Peer};
use crate::wire::convert::timestamp;
use crate::wire::proto::{
    self, SuggestedNodePeer, SuggestedPeer, SuggestedPorts, SuggestedWorkloadPeer,
    TrafficDirection, WorkloadSuggestion, suggested_peer,
};

/// One workload's suggestion, its policy written as `yaml`.
pub(super) fn workload_suggestion(s: &Suggestion, yaml: String) -> WorkloadSuggestion {
    let rules = [
        (Direction::Ingress, &s.ingress),
        (Direction::Egress, &s.egress),
    ]
    .into_iter()
    .flat_map(|(direction, rules)| rules.iter().map(move |r| rule(direction, r)))
    .collect();
    WorkloadSuggestion {
        namespace: s.subject.namespace.clone(),
        kind: s.subject.kind.clone(),
        name: s.subject.name.clone(),
        stability: s.stability.name().into(),
        yaml,
        ingress_rules: s.ingress.len() as u32,
        egress_rules: s.egress.len() as u32,
        selector_note: s.selector_note.clone().unwrap_or_default(),
        rules,
        portless: s.not_expressible.iter().map(portless).collect(),
    }
}

fn direction(d: Direction) -> i32 {
    match d {
        Direction::Ingress => TrafficDirection::Ingress as i32,
        Direction::Egress => TrafficDirection::Egress as i32,
    }
}

fn rule(d: Direction, r: &SuggestedRule) -> proto::SuggestedRule {
    proto::SuggestedRule {
        direction: direction(d),
        peer: Some(peer(&r.peer, &r.peer_labels)),
        ports: r
            .ports
            .iter()
            .map(|p| SuggestedPorts {
                protocol: p.protocol.to_string(),
                first: p.first.into(),
                last: p.last.into(),
                name: (p.first == p.last)
                    .then(|| r.port_names.get(&(p.protocol, p.first)).cloned())
                    .flatten()
                    .unwrap_or_default(),
            })
            .collect(),
        evidence: Some(evidence(&r.evidence)),
    }
}

fn portless(t: &PortlessTraffic) -> proto::PortlessTraffic {
    proto::PortlessTraffic {
        direction: direction(t.direction),
        peer: Some(peer(&t.peer, &t.peer_labels)),
        protocol: t.protocol.to_string(),
        icmp: t.icmp.map(|(kind, code)| proto::Icmp {
            r#type: kind.into(),
            code: code.into(),
        }),
    }
}

fn peer(p: &Peer, labels: &BTreeMap<String, String>) -> SuggestedPeer {
    let peer = match p {
        Peer::Workload(w) => suggested_peer::Peer::Workload(SuggestedWorkloadPeer {
            namespace: w.namespace.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
            selector: labels.clone().into_iter().collect(),
        }),
        Peer::Node { name, ip } => suggested_peer::Peer::Node(SuggestedNodePeer {
            name: name.clone(),
            ip: ip.to_string(),
        }),
        Peer::External { network, prefix } => {
            suggested_peer::Peer::ExternalCidr(format!("{network}/{prefix}"))
        }
    };
    SuggestedPeer { peer: Some(peer) }
}

fn evidence(e: &EdgeStats) -> proto::Evidence {
    proto::Evidence {
        flows: e.flows,
        packets: e.packets,
        bytes: e.bytes,
        first_seen: Some(timestamp(e.first_seen)),
        last_seen: Some(timestamp(e.last_seen)),
        nodes: e.nodes.iter().cloned().collect(),
        example: e.example.clone(),
    }
}
