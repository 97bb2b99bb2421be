//! `GET /api/suggestions`: the suggested policies (a node's own, or a relay's merged from
//! its nodes) as the console's JSON, made here from GetSuggestions' answer so that the page
//! and the gRPC API show the same suggestions and the same proof.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::api::suggestions::{SuggestionSource, get_suggestions};
use crate::flow::Timestamp;
use crate::hub::FlowHub;
use crate::relay::peers::PeerSet;
use crate::wire::proto::{
    Evidence, GetSuggestionsRequest, GetSuggestionsResponse, SuggestedPeer, SuggestedPorts,
    TrafficDirection, WorkloadSuggestion, suggested_peer::Peer,
};

/// An answer of GetSuggestions, to come.
pub type Pending<'a> =
    Pin<Box<dyn Future<Output = Result<GetSuggestionsResponse, tonic::Status>> + Send + 'a>>;

/// Where the console's suggestions come from.
pub trait SuggestionProvider: Send + Sync + 'static {
    /// GetSuggestions.
    fn suggestions(&self, request: GetSuggestionsRequest) -> Pending<'_>;
}

/// A node's own learning, proven against its hub.
pub struct NodeSuggestions {
    /// The learning and the cluster views.
    pub source: SuggestionSource,
    /// The flows of the proof.
    pub hub: Arc<FlowHub>,
}

impl SuggestionProvider for NodeSuggestions {
    fn suggestions(&self, request: GetSuggestionsRequest) -> Pending<'_> {
        Box::pin(get_suggestions(&self.source, &self.hub, request))
    }
}

/// A relay's: every connected node's learning, merged.
pub struct RelaySuggestions(pub Arc<PeerSet>);

impl SuggestionProvider for RelaySuggestions {
    fn suggestions(&self, request: GetSuggestionsRequest) -> Pending<'_> {
        Box::pin(crate::relay::suggestions::merged(&self.0, request))
    }
}

/// The answer as the console's JSON; `declared` (the policies selecting a workload, when
/// one was asked for) rides with each suggestion.
pub fn to_json(response: &GetSuggestionsResponse, declared: &[Value]) -> Value {
    let summary = response.summary.unwrap_or_default();
    json!({
        "available": true,
        "summary": {
            "edges": summary.edges,
            "dropped_edges": summary.dropped_edges,
            "unresolved_services": summary.unresolved_services,
            "without_identity": summary.without_identity,
            "flows_checked": summary.flows_checked,
            "flows_allowed": summary.flows_allowed,
            "newly_denied_pairs": summary.newly_denied_pairs,
            "flows_denied_by_declared": summary.flows_denied_by_declared,
        },
        "suggestions": response
            .suggestions
            .iter()
            .map(|s| suggestion(s, declared))
            .collect::<Vec<_>>(),
    })
}

fn suggestion(s: &WorkloadSuggestion, declared: &[Value]) -> Value {
    json!({
        "namespace": s.namespace,
        "kind": s.kind,
        "name": s.name,
        "stability": s.stability,
        "yaml": s.yaml,
        "ingress_rules": s.ingress_rules,
        "egress_rules": s.egress_rules,
        "selector_note": s.selector_note,
        "rules": s.rules.iter().map(|r| json!({
            "direction": direction(r.direction),
            "peer": peer(r.peer.as_ref()),
            "ports": r.ports.iter().map(ports).collect::<Vec<_>>(),
            "evidence": evidence(r.evidence.as_ref()),
        })).collect::<Vec<_>>(),
        "portless": s.portless.iter().map(|p| json!({
            "direction": direction(p.direction),
            "peer": peer(p.peer.as_ref()),
            "protocol": p.protocol,
        })).collect::<Vec<_>>(),
        "declared": declared,
    })
}

fn direction(value: i32) -> &'static str {
    match TrafficDirection::try_from(value) {
        Ok(TrafficDirection::Egress) => "egress",
        _ => "ingress",
    }
}

fn peer(peer: Option<&SuggestedPeer>) -> Value {
    match peer.and_then(|p| p.peer.as_ref()) {
        Some(Peer::Workload(w)) => json!({"workload": {
            "namespace": w.namespace, "kind": w.kind, "name": w.name, "selector": w.selector,
        }}),
        Some(Peer::Node(n)) => json!({"node": {"name": n.name, "ip": n.ip}}),
        Some(Peer::ExternalCidr(cidr)) => json!({"external_cidr": cidr}),
        None => Value::Null,
    }
}

fn ports(p: &SuggestedPorts) -> Value {
    json!({"protocol": p.protocol, "first": p.first, "last": p.last, "name": p.name})
}

fn evidence(e: Option<&Evidence>) -> Value {
    let Some(e) = e else { return Value::Null };
    let time = |t: Option<&prost_types::Timestamp>| {
        t.map(|t| {
            Timestamp(
                t.seconds
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(t.nanos)),
            )
        })
    };
    json!({
        "flows": e.flows,
        "packets": e.packets,
        "bytes": e.bytes,
        "first_seen": time(e.first_seen.as_ref()),
        "last_seen": time(e.last_seen.as_ref()),
        "nodes": e.nodes,
        "example": e.example,
    })
}
