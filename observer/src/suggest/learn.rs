//! Learning: judged flow records in, edges per workload out. Memory is bounded by the
//! number of edges (`max_edges`), never by connections; what does not fit, or cannot be
//! learned (a record without identities, a Service whose backend is unknown), is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, ServiceBackend, Timestamp};

/// A workload in a namespace: Deployment, StatefulSet, DaemonSet, CronJob, Job,
/// ReplicaSet, or `Pod` for a pod no controller owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    /// Namespace.
    pub namespace: String,
    /// Kind, as the record names it.
    pub kind: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// The other end of an edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pods of a workload.
    Workload(WorkloadId),
    /// A node (its address; host-networked pods share it).
    Node {
        /// The node's name.
        name: String,
        /// The address seen.
        ip: IpAddr,
    },
    /// An address outside the cluster, as the prefix it is aggregated to.
    External {
        /// Network address.
        network: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
}

/// Which way the subject's traffic went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The peer opened the connection to the subject.
    Ingress,
    /// The subject opened it to the peer.
    Egress,
}

/// What an edge is: the subject workload's traffic in one direction with one peer, on one
/// protocol and destination port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    /// The workload the policy will select.
    pub subject: WorkloadId,
    /// Ingress or egress.
    pub direction: Direction,
    /// The other end.
    pub peer: Peer,
    /// IP protocol.
    pub protocol: IpProtocol,
    /// Destination port (the subject's for ingress, the peer's for egress; 0 for ICMP).
    pub port: u16,
}

/// The evidence of an edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// Connections (records of distinct connections; a connection's later reports are not
    /// counted again).
    pub flows: u64,
    /// Packets, both ways, as the latest report of each connection counted them.
    pub packets: u64,
    /// Bytes, both ways.
    pub bytes: u64,
    /// First packet of the first connection.
    pub first_seen: Timestamp,
    /// Latest packet.
    pub last_seen: Timestamp,
    /// The nodes whose observers saw it.
    pub nodes: BTreeSet<String>,
    /// One connection, for people: `ns/pod -> ns/pod:port`.
    pub example: String,
}

impl EdgeStats {
    /// Adds another edge's evidence (the earliest connection stays the example).
    pub fn merge(&mut self, other: &EdgeStats) {
        if self.flows == 0 || (other.first_seen, &other.example) < (self.first_seen, &self.example)
        {
            self.first_seen = other.first_seen;
            self.example.clone_from(&other.example);
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.flows += other.flows;
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.nodes.extend(other.nodes.iter().cloned());
    }
}

/// What learning could not use, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Edges not learned because `max_edges` were held: the suggestion is incomplete.
    pub dropped_edges: u64,
    /// Records addressed to a Service whose backend was unknown: never a rule for a
    /// ClusterIP.
    pub unresolved_services: u64,
    /// Records with neither end a known pod (no cluster state when they were written).
    pub without_identity: u64,
}

/// Settings of learning.
#[derive(Clone, Copy, Debug)]
pub struct LearnConfig {
    /// Edges held at most.
    pub max_edges: usize,
    /// External IPv4 addresses are aggregated to this prefix length.
    pub external_prefix_v4: u8,
    /// External IPv6 addresses, to this one.
    pub external_prefix_v6: u8,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            max_edges: 100_000,
            external_prefix_v4: 32,
            external_prefix_v6: 128,
        }
    }
}

/// The learned edges, and the labels each workload's pods share.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    /// Edges with their evidence.
    pub edges: BTreeMap<EdgeKey, EdgeStats>,
    /// Per workload: the labels every pod of it seen so far carries, per-pod and
    /// per-revision labels left out.
    pub labels: BTreeMap<WorkloadId, BTreeMap<String, String>>,
    /// What could not be learned.
    pub skipped: Skipped,
}

/// Labels a controller sets per pod or per revision: a selector on them would miss the
/// workload's other pods, or its next revision.
const PER_POD_LABELS: [&str; 6] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "job-name",
];

fn stable_label(key: &str) -> bool {
    !PER_POD_LABELS.contains(&key) && !key.starts_with("batch.kubernetes.io/")
}

/// Learns from records.
#[derive(Debug, Default)]
pub struct Learner {
    config: LearnConfig,
    learned: Learned,
    /// Connections already counted (a hash of edge, first packet and source port) with the
    /// packets and bytes their latest report had: a connection's periodic reports and its
    /// final record are one flow, and each adds only what is new. Bounded: past
    /// `4 × max_edges` it starts over, and a connection reported across that point counts
    /// twice.
    seen: std::collections::HashMap<u64, (u64, u64)>,
}

impl Learner {
    /// An empty learner.
    pub fn new(config: LearnConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// What was learned so far.
    pub fn learned(&self) -> &Learned {
        &self.learned
    }

    /// Takes one record. Started items are skipped (the connection's records follow).
    pub fn learn(&mut self, record: &FlowRecord) {
        if record.state == FlowState::Started {
            return;
        }
        if record
            .service
            .as_ref()
            .is_some_and(|s| s.backend == ServiceBackend::Unresolved)
        {
            self.learned.skipped.unresolved_services += 1;
            return;
        }
        let (src, dst) = (workload_of(&record.src), workload_of(&record.dst));
        if src.is_none() && dst.is_none() {
            self.learned.skipped.without_identity += 1;
            return;
        }
        let stats = EdgeStats {
            flows: 1,
            packets: record.fwd.packets + record.rev.packets,
            bytes: record.fwd.bytes + record.rev.bytes,
            first_seen: record.first_seen,
            last_seen: record.last_seen,
            nodes: record.node_name.iter().cloned().collect(),
            example: format!(
                "{} -> {}:{}",
                record.src.display_name(),
                record.dst.display_name(),
                record.dst.port
            ),
        };
        let port = if matches!(record.protocol, IpProtocol::ICMP | IpProtocol::ICMPV6) {
            0
        } else {
            record.dst.port
        };
        if let Some(subject) = &src {
            self.note_labels(subject, &record.src);
            let peer = self.peer(&record.dst, dst.as_ref());
            self.add(subject, Direction::Egress, peer, record, port, &stats);
        }
        if let Some(subject) = &dst {
            self.note_labels(subject, &record.dst);
            let peer = self.peer(&record.src, src.as_ref());
            self.add(subject, Direction::Ingress, peer, record, port, &stats);
        }
    }

    fn add(
        &mut self,
        subject: &WorkloadId,
        direction: Direction,
        peer: Peer,
        record: &FlowRecord,
        port: u16,
        stats: &EdgeStats,
    ) {
        let key = EdgeKey {
            subject: subject.clone(),
            direction,
            peer,
            protocol: record.protocol,
            port,
        };
        let connection = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&key, record.first_seen, record.src.port).hash(&mut hasher);
            hasher.finish()
        };
        let before = self.seen.get(&connection).copied();
        let (packets, bytes) = match before {
            Some((p, b)) => (
                stats.packets.saturating_sub(p),
                stats.bytes.saturating_sub(b),
            ),
            None => (stats.packets, stats.bytes),
        };
        let full = self.learned.edges.len() >= self.config.max_edges;
        match self.learned.edges.get_mut(&key) {
            Some(edge) => {
                if before.is_none() {
                    edge.flows += 1;
                }
                // The earliest connection is the example, whatever order records come in.
                if (stats.first_seen, &stats.example) < (edge.first_seen, &edge.example) {
                    edge.first_seen = stats.first_seen;
                    edge.example.clone_from(&stats.example);
                }
                edge.last_seen = edge.last_seen.max(stats.last_seen);
                edge.nodes.extend(stats.nodes.iter().cloned());
                edge.packets += packets;
                edge.bytes += bytes;
            }
            None if full => {
                self.learned.skipped.dropped_edges += 1;
                return;
            }
            None => {
                self.learned.edges.insert(key, stats.clone());
            }
        }
        if self.seen.len() >= self.config.max_edges.saturating_mul(4) {
            self.seen.clear();
        }
        self.seen.insert(connection, (stats.packets, stats.bytes));
    }

    /// The peer an end is, for the subject at the other end.
    fn peer(&self, end: &RecordEndpoint, workload: Option<&WorkloadId>) -> Peer {
        if let Some(workload) = workload {
            return Peer::Workload(workload.clone());
        }
        if let Some(node) = &end.identity.node {
            return Peer::Node {
                name: node.clone(),
                ip: end.ip,
            };
        }
        let prefix = match end.ip {
            IpAddr::V4(_) => self.config.external_prefix_v4.min(32),
            IpAddr::V6(_) => self.config.external_prefix_v6.min(128),
        };
        Peer::External {
            network: network(end.ip, prefix),
            prefix,
        }
    }

    fn note_labels(&mut self, workload: &WorkloadId, end: &RecordEndpoint) {
        let labels: BTreeMap<String, String> = end
            .identity
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| stable_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match self.learned.labels.get_mut(workload) {
            // Only what every pod of the workload carries.
            Some(shared) => shared.retain(|k, v| labels.get(k) == Some(v)),
            None => {
                self.learned.labels.insert(workload.clone(), labels);
            }
        }
    }

    /// Adds another learner's edges (another node's observer, another file): the same as
    /// having learned from both sets of records.
    pub fn merge(&mut self, other: &Learner) {
        for (key, stats) in &other.learned.edges {
            let full = self.learned.edges.len() >= self.config.max_edges;
            match self.learned.edges.get_mut(key) {
                Some(edge) => edge.merge(stats),
                None if full => self.learned.skipped.dropped_edges += 1,
                None => {
                    self.learned.edges.insert(key.clone(), stats.clone());
                }
            }
        }
        for (workload, labels) in &other.learned.labels {
            match self.learned.labels.get_mut(workload) {
                Some(shared) => shared.retain(|k, v| labels.get(k) == Some(v)),
                None => {
                    self.learned.labels.insert(workload.clone(), labels.clone());
                }
            }
        }
        let s = &mut self.learned.skipped;
        s.dropped_edges += other.learned.skipped.dropped_edges;
        s.unresolved_services += other.learned.skipped.unresolved_services;
        s.without_identity += other.learned.skipped.without_identity;
    }
}

/// The workload of a pod end: its controller, or the pod itself.
fn workload_of(end: &RecordEndpoint) -> Option<WorkloadId> {
    let id = &end.identity;
    let (namespace, pod) = (id.namespace.as_ref()?, id.pod.as_ref()?);
    Some(match &id.workload {
        Some(w) => WorkloadId {
            namespace: namespace.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
        },
        None => WorkloadId {
            namespace: namespace.clone(),
            kind: "Pod".into(),
            name: pod.clone(),
        },
    })
}

/// `ip` with the bits past `prefix` cleared.
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}
