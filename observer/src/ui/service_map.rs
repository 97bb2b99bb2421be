//! The service map: observed connections folded into nodes (workloads, or whole namespaces
//! when zoomed out; nodes; outside peers by prefix) and directed edges by protocol and
//! port, each with its connections, traffic and verdict. Pure: records in, a map out.
//!
//! Records are cumulative over a connection's life (an `active` report, then its final
//! record), so a connection is counted once, with the counts of its latest record.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, Timestamp};
use crate::policy::VerdictKind;
use observer_api::verdict::DirectionDecision;

/// How finely the map draws the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Level {
    /// A node per workload (a pod no controller owns is its own node).
    #[default]
    Workload,
    /// A node per namespace: what a map of thousands of workloads shows zoomed out.
    Namespace,
}

/// What the map is drawn from.
#[derive(Clone, Debug)]
pub struct MapQuery {
    /// The level of the nodes.
    pub level: Level,
    /// Edges drawn at most (the heaviest by bytes); the rest are counted as left out.
    pub max_edges: usize,
    /// Only connections with a side in one of these namespaces (any when empty).
    pub namespaces: Vec<String>,
    /// Only connections with a side in one of these workloads, by node id (any when
    /// empty).
    pub workloads: Vec<String>,
    /// Only edges whose verdict is one of these (any when empty).
    pub verdicts: Vec<EdgeVerdict>,
    /// Only connections of these protocols (any when empty).
    pub protocols: Vec<IpProtocol>,
    /// Only connections whose latest packet is at or after this time.
    pub since: Option<Timestamp>,
}

impl Default for MapQuery {
    fn default() -> Self {
        Self {
            level: Level::Workload,
            max_edges: 2_000,
            namespaces: Vec::new(),
            workloads: Vec::new(),
            verdicts: Vec::new(),
            protocols: Vec::new(),
            since: None,
        }
    }
}

/// What a map node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A workload (or a bare pod).
    Workload,
    /// A namespace, its workloads folded together.
    Namespace,
    /// A Kubernetes node (or a hostNetwork pod on it).
    Node,
    /// Addresses outside the cluster, by prefix (/24, /64).
    External,
    /// An address the cluster state does not name and that is not outside (no state).
    Unknown,
}

/// One node of the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapNode {
    /// Unique in the map: what edges refer to.
    pub id: String,
    /// What it is.
    pub kind: NodeKind,
    /// Its namespace, for workloads and namespaces (the group it is drawn in).
    pub namespace: Option<String>,
    /// What it is called on the map.
    pub label: String,
}

/// How an edge's connections were judged, worst first: a map colours the edge by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeVerdict {
    /// A direction denied a connection: a violation.
    Denied,
    /// A hostNetwork pod is involved: CNIs differ.
    Undefined,
    /// Allowed by a policy's rule.
    Allowed,
    /// Allowed because no policy selects either side.
    NotIsolated,
    /// Not judged (no cluster state, or a protocol policies do not cover).
    None,
}

/// One directed edge: connections from `source` to `target` by protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapEdge {
    /// Unique in the map: `source|target|protocol|port`.
    pub id: String,
    /// The initiators' node.
    pub source: String,
    /// The responders' node.
    pub target: String,
    /// The IP protocol.
    pub protocol: IpProtocol,
    /// The responders' port (0 for protocols without ports).
    pub port: u16,
    /// The worst verdict among its connections.
    pub verdict: EdgeVerdict,
    /// Connections per verdict.
    pub connections: BTreeMap<EdgeVerdict, u64>,
    /// Packets and bytes, both ways.
    pub packets: u64,
    /// See `packets`.
    pub bytes: u64,
    /// The policy that decided the latest denied connection, as `Kind ns/name`.
    pub denied_by: Option<String>,
}

/// The map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceMap {
    /// Nodes that some drawn edge touches, sorted by id.
    pub nodes: Vec<MapNode>,
    /// The heaviest edges, by bytes, at most `max_edges`.
    pub edges: Vec<MapEdge>,
    /// Edges left out by `max_edges`.
    pub edges_left_out: usize,
    /// Workloads the map's connections have (at either level), before `max_edges` cut it:
    /// a page draws namespaces instead when there are too many to read.
    pub workloads: usize,
}

/// The node an endpoint belongs to at `level`.
pub(super) fn node_of(end: &RecordEndpoint, level: Level) -> MapNode {
    let identity = &end.identity;
    if let Some(namespace) = &identity.namespace {
        if level == Level::Namespace {
            return MapNode {
                id: format!("ns:{namespace}"),
                kind: NodeKind::Namespace,
                namespace: Some(namespace.clone()),
                label: namespace.clone(),
            };
        }
        let (kind, name) = match (&identity.workload, &identity.pod) {
            (Some(w), _) => (w.kind.as_str(), w.name.as_str()),
            (None, Some(pod)) => ("Pod", pod.as_str()),
            (None, None) => ("Pod", "?"),
        };
        return MapNode {
            id: format!("wl:{namespace}/{kind}/{name}"),
            kind: NodeKind::Workload,
            namespace: Some(namespace.clone()),
            label: format!("{kind}/{name}"),
        };
    }
    if let Some(node) = &identity.node {
        return MapNode {
            id: format!("node:{node}"),
            kind: NodeKind::Node,
            namespace: None,
            label: node.clone(),
        };
    }
    let prefix = match end.ip {
        IpAddr::V4(ip) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(ip) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let kind = if identity.external {
        NodeKind::External
    } else {
        NodeKind::Unknown
    };
    MapNode {
        id: format!("ip:{prefix}"),
        kind,
        namespace: None,
        label: prefix,
    }
}

/// How a record was judged, for the map.
pub(super) fn verdict_of(record: &FlowRecord) -> EdgeVerdict {
    let Some(verdict) = &record.policy else {
        return EdgeVerdict::None;
    };
    match verdict.kind() {
        VerdictKind::Deny => EdgeVerdict::Denied,
        VerdictKind::Undefined => EdgeVerdict::Undefined,
        VerdictKind::Allow => {
            let unselected = |d: DirectionDecision| {
                matches!(
                    d,
                    DirectionDecision::NotIsolated
                        | DirectionDecision::NotApplicable
                        | DirectionDecision::Exempt
                )
            };
            if unselected(verdict.ingress.decision) && unselected(verdict.egress.decision) {
                EdgeVerdict::NotIsolated
            } else {
                EdgeVerdict::Allowed
            }
        }
    }
}

/// A connection: its 5-tuple and first packet.
pub(super) type ConnectionKey = (IpAddr, u16, IpAddr, u16, IpProtocol, i64);

/// The connection a record reports on.
pub(super) fn connection_of(record: &FlowRecord) -> ConnectionKey {
    (
        record.src.ip,
        record.src.port,
        record.dst.ip,
        record.dst.port,
        record.protocol,
        record.first_seen.0,
    )
}

/// The latest record of each connection among `records` (oldest first) that `keep`
/// accepts, started items left out: records are cumulative, so the latest holds a
/// connection's counts, names and verdict.
pub(super) fn latest_per_connection<'a>(
    records: impl IntoIterator<Item = &'a FlowRecord>,
    keep: impl Fn(&FlowRecord) -> bool,
) -> HashMap<ConnectionKey, &'a FlowRecord> {
    let mut latest = HashMap::new();
    for record in records {
        if record.state != FlowState::Started && keep(record) {
            latest.insert(connection_of(record), record);
        }
    }
    latest
}
/// An edge: source, target, protocol, port.
type EdgeKey = (String, String, IpProtocol, u16);

/// Folds `records` into the map `query` asks for.
pub fn build<'a>(
    records: impl IntoIterator<Item = &'a FlowRecord>,
    query: &MapQuery,
) -> ServiceMap {
    let mut nodes: HashMap<String, MapNode> = HashMap::new();
    let mut edges: HashMap<EdgeKey, MapEdge> = HashMap::new();
    // Per connection: its edge, verdict and the counts already added there.
    let mut seen: HashMap<ConnectionKey, (EdgeKey, EdgeVerdict, u64, u64)> = HashMap::new();
    let mut folded: std::collections::HashSet<String> = std::collections::HashSet::new();
    for record in records {
        if record.state == FlowState::Started {
            continue;
        }
        if !selected(record, query) {
            continue;
        }
        let (source, target) = (
            node_of(&record.src, query.level),
            node_of(&record.dst, query.level),
        );
        if query.level == Level::Namespace {
            // Folded, the workloads are still counted: a page learns from one answer
            // whether it may draw them.
            for end in [&record.src, &record.dst] {
                if end.identity.namespace.is_some() {
                    folded.insert(node_of(end, Level::Workload).id);
                }
            }
        }
        let port = edge_port(record);
        let key: EdgeKey = (source.id.clone(), target.id.clone(), record.protocol, port);
        nodes.entry(source.id.clone()).or_insert(source);
        nodes.entry(target.id.clone()).or_insert(target);
        let verdict = verdict_of(record);
        let packets = record.fwd.packets.saturating_add(record.rev.packets);
        let bytes = record.fwd.bytes.saturating_add(record.rev.bytes);
        let connection = connection_of(record);
        // A later record of a connection counted on another edge (its ends were named
        // since): it leaves that edge and counts whole on this one.
        if let Some((earlier_key, earlier, counted_packets, counted_bytes)) =
            seen.get(&connection).cloned()
            && earlier_key != key
        {
            if let Some(old) = edges.get_mut(&earlier_key) {
                old.packets = old.packets.saturating_sub(counted_packets);
                old.bytes = old.bytes.saturating_sub(counted_bytes);
                if let Some(n) = old.connections.get_mut(&earlier) {
                    *n = n.saturating_sub(1);
                }
                old.connections.retain(|_, n| *n > 0);
                // Its colour is that of the connections it still has.
                if let Some(worst) = old.connections.keys().next() {
                    old.verdict = *worst;
                }
                if !old.connections.contains_key(&EdgeVerdict::Denied) {
                    old.denied_by = None;
                }
            }
            seen.remove(&connection);
        }
        let edge = edges.entry(key.clone()).or_insert_with(|| MapEdge {
            id: edge_id(&key.0, &key.1, key.2, key.3),
            source: key.0.clone(),
            target: key.1.clone(),
            protocol: key.2,
            port: key.3,
            verdict,
            connections: BTreeMap::new(),
            packets: 0,
            bytes: 0,
            denied_by: None,
        });
        match seen.get_mut(&connection) {
            // A later record of a connection counted already: its counts replace the
            // earlier ones, its verdict too.
            Some((_, earlier, counted_packets, counted_bytes)) => {
                // Counts come from other observers through a relay: never overflow.
                edge.packets = edge
                    .packets
                    .saturating_add(packets.saturating_sub(*counted_packets));
                edge.bytes = edge
                    .bytes
                    .saturating_add(bytes.saturating_sub(*counted_bytes));
                (*counted_packets, *counted_bytes) =
                    (packets.max(*counted_packets), bytes.max(*counted_bytes));
                if *earlier != verdict {
                    if let Some(n) = edge.connections.get_mut(earlier) {
                        *n = n.saturating_sub(1);
                    }
                    *edge.connections.entry(verdict).or_default() += 1;
                    *earlier = verdict;
                }
            }
            None => {
                edge.packets = edge.packets.saturating_add(packets);
                edge.bytes = edge.bytes.saturating_add(bytes);
                *edge.connections.entry(verdict).or_default() += 1;
                seen.insert(connection, (key.clone(), verdict, packets, bytes));
            }
        }
        edge.connections.retain(|_, n| *n > 0);
        edge.verdict = edge.connections.keys().next().copied().unwrap_or(verdict);
        if verdict == EdgeVerdict::Denied {
            edge.denied_by = record
                .policy
                .as_ref()
                .and_then(|v| v.deciding_step())
                .map(|step| format!("{} {}", step.policy.kind.name(), step.policy));
        }
    }
    let workloads = match query.level {
        Level::Workload => nodes
            .values()
            .filter(|n| n.kind == NodeKind::Workload)
            .count(),
        Level::Namespace => folded.len(),
    };
    let mut edges: Vec<MapEdge> = edges
        .into_values()
        // An edge whose connections all moved to another is gone.
        .filter(|e| !e.connections.is_empty())
        .filter(|e| query.verdicts.is_empty() || query.verdicts.contains(&e.verdict))
        .collect();
    edges.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| (&a.source, &a.target, a.port).cmp(&(&b.source, &b.target, b.port)))
    });
    let edges_left_out = edges.len().saturating_sub(query.max_edges);
    edges.truncate(query.max_edges);
    let touched: std::collections::HashSet<&str> = edges
        .iter()
        .flat_map(|e| [e.source.as_str(), e.target.as_str()])
        .collect();
    let mut drawn: Vec<MapNode> = nodes
        .into_values()
        .filter(|n| touched.contains(n.id.as_str()))
        .collect();
    drawn.sort_by(|a, b| a.id.cmp(&b.id));
    ServiceMap {
        nodes: drawn,
        edges,
        edges_left_out,
        workloads,
    }
}

/// An edge's id: `source|target|protocol|port`.
pub fn edge_id(source: &str, target: &str, protocol: IpProtocol, port: u16) -> String {
    format!("{source}|{target}|{protocol}|{port}")
}

/// The responder port an edge is drawn for: 0 for protocols without ports.
pub(super) fn edge_port(record: &FlowRecord) -> u16 {
    if matches!(
        record.protocol,
        IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP
    ) {
        record.dst.port
    } else {
        0
    }
}

/// Whether the query's filters keep a record (its verdict is filtered per edge).
pub(super) fn selected(record: &FlowRecord, query: &MapQuery) -> bool {
    if query.since.is_some_and(|since| record.last_seen < since) {
        return false;
    }
    if !query.protocols.is_empty() && !query.protocols.contains(&record.protocol) {
        return false;
    }
    let in_namespaces = |end: &RecordEndpoint| {
        end.identity
            .namespace
            .as_ref()
            .is_some_and(|n| query.namespaces.contains(n))
    };
    if !query.namespaces.is_empty() && !in_namespaces(&record.src) && !in_namespaces(&record.dst) {
        return false;
    }
    let in_workloads =
        |end: &RecordEndpoint| query.workloads.contains(&node_of(end, Level::Workload).id);
    query.workloads.is_empty() || in_workloads(&record.src) || in_workloads(&record.dst)
}

#[cfg(test)]
mod tests;
