//! What learning produces, as people and generation read it: workloads, peers, edges and
//! their evidence (the learner stores them interned: `learn.rs`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::flow::{IpProtocol, Timestamp};

/// A workload in a namespace: Deployment, StatefulSet, DaemonSet, CronJob, Job,
/// ReplicaSet, or `Pod` for a pod no controller owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// The peer opened the connection to the subject.
    Ingress,
    /// The subject opened it to the peer.
    Egress,
}

/// What an edge is: the subject workload's traffic in one direction with one peer, on one
/// protocol and destination port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeKey {
    /// The workload the policy will select.
    pub subject: WorkloadId,
    /// Ingress or egress.
    pub direction: Direction,
    /// The other end.
    pub peer: Peer,
    /// IP protocol.
    pub protocol: IpProtocol,
    /// Destination port (the subject's for ingress, the peer's for egress); for ICMP and
    /// ICMPv6, the initiator's message as `type << 8 | code`, or [`ICMP_UNKNOWN`].
    pub port: u16,
}

/// An ICMP edge's `port` when its records did not say the message (type 255 code 255 is
/// reserved): its rule then allows every ICMP message.
pub const ICMP_UNKNOWN: u16 = u16::MAX;

/// The evidence of an edge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStats {
    /// Connections (a connection's periodic reports and final record are one).
    pub flows: u64,
    /// Packets, both ways.
    pub packets: u64,
    /// Bytes, both ways.
    pub bytes: u64,
    /// First packet of the first connection.
    pub first_seen: Timestamp,
    /// Latest packet.
    pub last_seen: Timestamp,
    /// The nodes whose observers saw it.
    pub nodes: BTreeSet<String>,
    /// One connection, for people: `ns/pod -> ns/pod:port`, the earliest.
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
