//! Learning: judged flow records in, edges per workload out. Memory is bounded by the
//! number of edges (`max_edges`), never by connections; what does not fit, or cannot be
//! learned (a record without identities, a Service whose backend is unknown), is counted.
//!
//! Names are interned: an edge is a few integers (workload, peer, protocol, port) and its
//! counts, so that 100,000 edges take a few megabytes and a record is learned without
//! allocating (`interning.rs` holds the tables).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub use super::edge::{
    Direction, EdgeKey, EdgeStats, ICMP_UNKNOWN, LearnConfig, Peer, Skipped, WorkloadId,
};
use super::interning::{Fx, Interned, fx_hash};
pub use super::state::State;
use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, ServiceBackend, Timestamp};

/// A peer, by interned ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PeerId {
    Workload(u32),
    Node(u32, IpAddr),
    External(IpAddr, u8),
}

/// An edge, by interned ids: 28 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    subject: u32,
    peer: PeerId,
    ingress: bool,
    protocol: u8,
    port: u16,
}

/// An edge's evidence, by interned ids.
#[derive(Clone, Copy, Debug)]
struct Stats {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_seen: i64,
    last_seen: i64,
    /// Index of its set of nodes.
    nodes: u32,
    /// The earliest connection: interned `ns/pod` names (or addresses) and port.
    example: (u32, u32, u16),
}

/// The learned edges, and the labels each workload's pods share.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    edges: HashMap<Key, Stats, Fx>,
    workloads: Interned<WorkloadId>,
    /// Per workload id: the labels every pod of it seen so far carries, per-pod and
    /// per-revision labels left out.
    labels: Vec<BTreeMap<String, String>>,
    /// Node names, and the sets of them edges were seen by.
    node_names: Interned<String>,
    node_sets: Interned<Vec<u32>>,
    /// Names in examples: `ns/pod`, or an address.
    names: Interned<String>,
    /// What could not be learned.
    pub skipped: Skipped,
}

impl Learned {
    /// How many edges are held.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Workloads with edges: (learning, stable) at `now`, a workload being stable when
    /// none of its edges appeared in the last `stable_after_ns` (as `generate` says).
    pub fn stability_counts(&self, now: Timestamp, stable_after_ns: i64) -> (u64, u64) {
        let mut newest: HashMap<u32, i64, Fx> = HashMap::default();
        for (key, stats) in &self.edges {
            let at = newest.entry(key.subject).or_insert(i64::MIN);
            *at = (*at).max(stats.first_seen);
        }
        let stable = newest
            .values()
            .filter(|&&first| now.0.saturating_sub(first) >= stable_after_ns)
            .count() as u64;
        (newest.len() as u64 - stable, stable)
    }

    /// Every edge with its evidence, in key order.
    pub fn edges(&self) -> BTreeMap<EdgeKey, EdgeStats> {
        self.edges
            .iter()
            .map(|(key, stats)| (self.key(key), self.stats(stats)))
            .collect()
    }

    /// The labels a workload's pods share.
    pub fn labels(&self, workload: &WorkloadId) -> Option<&BTreeMap<String, String>> {
        let id = self.workloads.find(workload)?;
        self.labels.get(id as usize)
    }

    /// Every workload with the labels its pods share.
    pub fn workload_labels(&self) -> BTreeMap<WorkloadId, BTreeMap<String, String>> {
        self.workloads
            .iter()
            .zip(&self.labels)
            .map(|(w, l)| (w.clone(), l.clone()))
            .collect()
    }

    fn key(&self, key: &Key) -> EdgeKey {
        let workload = |id: u32| self.workloads.get(id).cloned().unwrap_or_else(unknown);
        EdgeKey {
            subject: workload(key.subject),
            direction: if key.ingress {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            peer: match key.peer {
                PeerId::Workload(id) => Peer::Workload(workload(id)),
                PeerId::Node(name, ip) => Peer::Node {
                    name: self.node_names.get(name).cloned().unwrap_or_default(),
                    ip,
                },
                PeerId::External(network, prefix) => Peer::External { network, prefix },
            },
            protocol: IpProtocol(key.protocol),
            port: key.port,
        }
    }

    fn stats(&self, stats: &Stats) -> EdgeStats {
        let name = |id: u32| self.names.get(id).map_or("?", String::as_str);
        let (src, dst, port) = stats.example;
        EdgeStats {
            flows: stats.flows,
            packets: stats.packets,
            bytes: stats.bytes,
            first_seen: Timestamp(stats.first_seen),
            last_seen: Timestamp(stats.last_seen),
            nodes: self
                .node_sets
                .get(stats.nodes)
                .into_iter()
                .flatten()
                .filter_map(|&n| self.node_names.get(n).cloned())
                .collect(),
            example: format!("{} -> {}:{port}", name(src), name(dst)),
        }
    }
}

fn unknown() -> WorkloadId {
    WorkloadId {
        namespace: String::new(),
        kind: String::new(),
        name: String::new(),
    }
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
    /// Connections already counted (a hash of their addresses, ports, protocol and first
    /// packet) with the packets and bytes their latest report had: a connection's periodic
    /// reports and its final record are one flow, and each adds only what is new.
    /// Bounded: past `2 × max_edges` it starts over, and a connection reported across that
    /// point counts twice.
    seen: HashMap<u64, (u64, u64), Fx>,
    /// Pods already seen (their labels taken into their workload's), by a hash of their
    /// namespace, name and workload, with their workload's id: a known pod costs one hash
    /// and one probe. Bounded as `seen` is: past `2 × max_edges` pods (Jobs' pods churn
    /// for ever) it starts over, and taking a pod's labels in again changes nothing.
    pods: HashMap<u64, u32, Fx>,
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
        let src = self.workload(&record.src);
        let dst = self.workload(&record.dst);
        if src.is_none() && dst.is_none() {
            self.learned.skipped.without_identity += 1;
            return;
        }
        let connection = fx_hash(&(
            record.src.ip,
            record.src.port,
            record.dst.ip,
            record.dst.port,
            record.protocol.0,
            record.first_seen.0,
        ));
        let packets = record.fwd.packets + record.rev.packets;
        let bytes = record.fwd.bytes + record.rev.bytes;
        if self.seen.len() >= self.config.max_edges.saturating_mul(2) {
            self.seen.clear();
        }
        let before = self.seen.insert(connection, (packets, bytes));
        let new = Stats {
            flows: u64::from(before.is_none()),
            packets: packets.saturating_sub(before.map_or(0, |b| b.0)),
            bytes: bytes.saturating_sub(before.map_or(0, |b| b.1)),
            first_seen: record.first_seen.0,
            last_seen: record.last_seen.0,
            nodes: 0,
            example: (0, 0, 0),
        };
        // ICMP has no port: the initiator's message type and code take its place.
        let port = if record.protocol.is_icmp() {
            record.icmp.map_or(ICMP_UNKNOWN, |i| {
                u16::from(i.icmp_type) << 8 | u16::from(i.code)
            })
        } else {
            record.dst.port
        };
        let node = record
            .node_name
            .as_deref()
            .map(|n| self.learned.node_names.intern_str(n));
        if let Some(subject) = src {
            let peer = self.peer(&record.dst, dst);
            self.add(subject, false, peer, record, port, new, node);
        }
        if let Some(subject) = dst {
            let peer = self.peer(&record.src, src);
            self.add(subject, true, peer, record, port, new, node);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        subject: u32,
        ingress: bool,
        peer: PeerId,
        record: &FlowRecord,
        port: u16,
        new: Stats,
        node: Option<u32>,
    ) {
        let key = Key {
            subject,
            peer,
            ingress,
            protocol: record.protocol.0,
            port,
        };
        let full = self.learned.edges.len() >= self.config.max_edges;
        let learned = &mut self.learned;
        let stats = match learned.edges.get_mut(&key) {
            Some(stats) => {
                stats.flows += new.flows;
                stats.packets += new.packets;
                stats.bytes += new.bytes;
                stats.last_seen = stats.last_seen.max(new.last_seen);
                stats
            }
            None if full => {
                learned.skipped.dropped_edges += 1;
                return;
            }
            None => {
                let empty = learned.node_sets.intern(Vec::new());
                learned.edges.entry(key).or_insert(Stats {
                    nodes: empty,
                    first_seen: i64::MAX,
                    ..new
                })
            }
        };
        if let Some(node) = node {
            let known = learned.node_sets.get(stats.nodes);
            if !known.is_some_and(|set| set.contains(&node)) {
                let mut set = known.cloned().unwrap_or_default();
                set.push(node);
                set.sort_unstable();
                stats.nodes = learned.node_sets.intern(set);
            }
        }
        // The earliest connection is the example, whatever order records come in.
        if new.first_seen < stats.first_seen {
            stats.first_seen = new.first_seen;
            let src = intern_name(&mut learned.names, &record.src);
            let dst = intern_name(&mut learned.names, &record.dst);
            stats.example = (src, dst, record.dst.port);
        }
    }

    /// The workload id of a pod end (interned), its labels taken in the first time the pod
    /// is seen.
    fn workload(&mut self, end: &RecordEndpoint) -> Option<u32> {
        let identity = &end.identity;
        let (namespace, pod) = (identity.namespace.as_deref()?, identity.pod.as_deref()?);
        let (kind, name) = match &identity.workload {
            Some(w) => (w.kind.as_str(), w.name.as_str()),
            None => ("Pod", pod),
        };
        let pod_key = fx_hash(&(namespace, pod, kind, name));
        if let Some(&id) = self.pods.get(&pod_key) {
            return Some(id);
        }
        let learned = &mut self.learned;
        let id = learned.workloads.intern_with(
            fx_hash(&(namespace, kind, name)),
            |w| (w.namespace.as_str(), w.kind.as_str(), w.name.as_str()) == (namespace, kind, name),
            || WorkloadId {
                namespace: namespace.to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
            },
        );
        if self.pods.len() >= self.config.max_edges.saturating_mul(2) {
            self.pods.clear();
        }
        self.pods.insert(pod_key, id);
        let labels = identity
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| stable_label(k));
        match learned.labels.get_mut(id as usize) {
            // Only what every pod of the workload carries.
            Some(shared) => {
                let mine: BTreeMap<&String, &String> = labels.collect();
                shared.retain(|k, v| mine.get(k).is_some_and(|m| *m == v));
            }
            None => learned
                .labels
                .push(labels.map(|(k, v)| (k.clone(), v.clone())).collect()),
        }
        Some(id)
    }

    /// The peer an end is, for the subject at the other end.
    fn peer(&mut self, end: &RecordEndpoint, workload: Option<u32>) -> PeerId {
        if let Some(workload) = workload {
            return PeerId::Workload(workload);
        }
        if let Some(node) = &end.identity.node {
            return PeerId::Node(self.learned.node_names.intern_str(node), end.ip);
        }
        let prefix = match end.ip {
            IpAddr::V4(_) => self.config.external_prefix_v4.min(32),
            IpAddr::V6(_) => self.config.external_prefix_v6.min(128),
        };
        PeerId::External(network(end.ip, prefix), prefix)
    }

    /// Adds another learner's edges (another node's observer, another file): the same as
    /// having learned from both sets of records.
    pub fn merge(&mut self, other: &Learner) {
        self.absorb(&other.state());
    }

    /// What was learned, as a value that can be written and read back
    /// ([`Learner::absorb`]).
    pub fn state(&self) -> State {
        State {
            edges: self.learned.edges().into_iter().collect(),
            labels: self.learned.workload_labels().into_iter().collect(),
            skipped: self.learned.skipped,
        }
    }

    /// Adds what a [`State`] holds, as if its records were learned here.
    pub fn absorb(&mut self, state: &State) {
        for (workload, labels) in &state.labels {
            let id = self.learned.workloads.intern(workload.clone());
            match self.learned.labels.get_mut(id as usize) {
                Some(shared) => shared.retain(|k, v| labels.get(k) == Some(v)),
                None => self.learned.labels.push(labels.clone()),
            }
        }
        for (key, stats) in &state.edges {
            self.absorb_edge(key, stats);
        }
        let s = &mut self.learned.skipped;
        s.dropped_edges += state.skipped.dropped_edges;
        s.unresolved_services += state.skipped.unresolved_services;
        s.without_identity += state.skipped.without_identity;
    }

    fn absorb_edge(&mut self, key: &EdgeKey, stats: &EdgeStats) {
        let learned = &mut self.learned;
        let subject = learned.workloads.intern(key.subject.clone());
        let peer = match &key.peer {
            Peer::Workload(w) => PeerId::Workload(learned.workloads.intern(w.clone())),
            Peer::Node { name, ip } => PeerId::Node(learned.node_names.intern_str(name), *ip),
            Peer::External { network, prefix } => PeerId::External(*network, *prefix),
        };
        let mine = Key {
            subject,
            peer,
            ingress: key.direction == Direction::Ingress,
            protocol: key.protocol.0,
            port: key.port,
        };
        let mut nodes: Vec<u32> = stats
            .nodes
            .iter()
            .map(|n| learned.node_names.intern_str(n))
            .collect();
        // The example's two names, as `render` wrote them: `a -> b:port`.
        let example = {
            let (names, port) = stats
                .example
                .rsplit_once(':')
                .map_or((stats.example.as_str(), "0"), |(n, p)| (n, p));
            let (src, dst) = names.split_once(" -> ").unwrap_or((names, ""));
            (
                learned.names.intern_str(src),
                learned.names.intern_str(dst),
                port.parse().unwrap_or(0),
            )
        };
        let full = learned.edges.len() >= self.config.max_edges;
        match learned.edges.get_mut(&mine) {
            Some(edge) => {
                let (src, dst, port) = edge.example;
                let name = |id| learned.names.get(id).map_or("?", String::as_str);
                let current = format!("{} -> {}:{port}", name(src), name(dst));
                if (stats.first_seen.0, &stats.example) < (edge.first_seen, &current) {
                    edge.first_seen = stats.first_seen.0;
                    edge.example = example;
                }
                edge.flows += stats.flows;
                edge.packets += stats.packets;
                edge.bytes += stats.bytes;
                edge.last_seen = edge.last_seen.max(stats.last_seen.0);
                nodes.extend(learned.node_sets.get(edge.nodes).into_iter().flatten());
                nodes.sort_unstable();
                nodes.dedup();
                edge.nodes = learned.node_sets.intern(nodes);
            }
            None if full => learned.skipped.dropped_edges += 1,
            None => {
                nodes.sort_unstable();
                let nodes = learned.node_sets.intern(nodes);
                learned.edges.insert(
                    mine,
                    Stats {
                        flows: stats.flows,
                        packets: stats.packets,
                        bytes: stats.bytes,
                        first_seen: stats.first_seen.0,
                        last_seen: stats.last_seen.0,
                        nodes,
                        example,
                    },
                );
            }
        }
    }
}

/// The id of an end's name as people read it (`ns/pod`, `node NAME`, or the address); the
/// string is made only when new.
fn intern_name(names: &mut Interned<String>, end: &RecordEndpoint) -> u32 {
    let id = &end.identity;
    match (&id.namespace, &id.pod) {
        (Some(ns), Some(pod)) => names.intern_with(
            fx_hash(&(ns.as_str(), '/', pod.as_str())),
            |v| v.split_once('/') == Some((ns.as_str(), pod.as_str())),
            || end.display_name(),
        ),
        _ => names.intern(end.display_name()),
    }
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
