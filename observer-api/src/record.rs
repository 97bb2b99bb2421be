//! The flow record: the one definition of the JSON written by `observer run --flow-log`.
//!
//! Later stages add fields (identity, verdict); existing fields are never renamed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::vocab::{IpProtocol, ServiceBackend, TcpFlags, Timestamp};
use crate::verdict::{Verdict, VerdictKind};

/// One connection, as written to the flow log (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The initiator: the side that sent a TCP SYN without ACK, else the side whose packet
    /// was seen first.
    pub src: RecordEndpoint,
    /// The responder.
    pub dst: RecordEndpoint,
    /// The IP protocol (written as "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", or the number
    /// for others).
    pub protocol: IpProtocol,
    /// ICMP type and code of the initiator's first message kind, for ICMP and ICMPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpInfo>,
    /// Initiator to responder.
    pub fwd: Counts,
    /// Responder to initiator.
    pub rev: Counts,
    /// Union of the TCP flags seen in both directions (written by name).
    #[serde(default)]
    pub tcp_flags: TcpFlags,
    /// Wall-clock time of the first packet.
    pub first_seen: Timestamp,
    /// Wall-clock time of the latest packet.
    pub last_seen: Timestamp,
    /// Why the record was written.
    pub state: FlowState,
    /// The node whose observer wrote the record (a relay merges many nodes' records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Host-side interfaces where the connection was seen (one per pod on this node).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The record counts non-first IP fragments, which carry no ports.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_first_fragments: bool,
    /// The Service the initiator addressed (its ClusterIP and port), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// The policy verdict (`verdict`, `category`, `ingress`, `egress`), when a cluster
    /// state is known and the protocol is one NetworkPolicy covers.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Verdict>,
    /// What the verdict would be with the cluster's staged policies enforced (Calico's
    /// StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy), when
    /// it has any: "what would this staged policy do", beside what is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Verdict>,
    /// CLOCK_MONOTONIC time of the first packet: identity is resolved at this time.
    #[serde(skip)]
    pub first_seen_ns: u64,
    /// CLOCK_MONOTONIC time of the latest packet.
    #[serde(skip)]
    pub last_seen_ns: u64,
}

/// A Service reached at its ClusterIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service port.
    pub port: u16,
    /// The ClusterIP the initiator addressed.
    pub cluster_ip: IpAddr,
    /// How `dst` (the backend) was found.
    pub backend: ServiceBackend,
}

/// Who an endpoint is: a pod, a node, or outside the cluster. Empty when the observer
/// runs without a cluster state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointIdentity {
    /// Pod namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Pod UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Pod labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Owning workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadInfo>,
    /// Service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Node of the pod, or the node itself (node IPs and hostNetwork pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The address belongs to nothing the cluster state knows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

/// A workload: kind and name (namespace: the pod's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`, `ReplicaSet`, ...
    pub kind: String,
    /// Name.
    pub name: String,
}

/// An address and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEndpoint {
    /// IP address.
    pub ip: IpAddr,
    /// Transport port; for ICMP echo, the echo identifier; else 0.
    pub port: u16,
    /// Who it is (filled by enrichment).
    #[serde(flatten)]
    pub identity: EndpointIdentity,
}

/// ICMP message type and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpInfo {
    /// ICMP type.
    #[serde(rename = "type")]
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
}

/// Packet and byte counts of one direction. Packets are wire packets (GSO segments counted
/// one by one); bytes are the frame lengths seen at the hook, Ethernet header included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Why a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// Still open: a periodic report, or the daemon is stopping.
    Active,
    /// TCP closed (FIN both ways, or RST) and quiet since.
    Closed,
    /// Idle for longer than the idle timeout.
    Expired,
    /// Written early and forgotten because the table held more than `--max-connections`
    /// (the least recently active go first). Later traffic of the connection is counted
    /// again from zero and appears in a new record.
    Evicted,
    /// The connection's first packet was just seen: an early item, judged at once, sent to
    /// the API's streams (and the flow log with `--flow-log-started`) before any of the
    /// records above, which follow as usual. Counts are those of the first packets.
    Started,
}

impl FlowState {
    /// Every state, in the order they are documented.
    pub const ALL: [FlowState; 5] = [
        FlowState::Active,
        FlowState::Closed,
        FlowState::Expired,
        FlowState::Evicted,
        FlowState::Started,
    ];

    /// The state's name in the record's JSON (and on the wire).
    pub fn name(self) -> &'static str {
        match self {
            FlowState::Active => "active",
            FlowState::Closed => "closed",
            FlowState::Expired => "expired",
            FlowState::Evicted => "evicted",
            FlowState::Started => "started",
        }
    }

    /// Whether this is a connection's last record (closed, expired or evicted).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FlowState::Closed | FlowState::Expired | FlowState::Evicted
        )
    }

    /// The state with this name.
    pub fn from_name(name: &str) -> Option<FlowState> {
        Self::ALL.into_iter().find(|state| state.name() == name)
    }
}

impl RecordEndpoint {
    /// How people name the end: `namespace/pod`, `node NAME`, or the address.
    pub fn display_name(&self) -> String {
        let id = &self.identity;
        match (&id.namespace, &id.pod, &id.node) {
            (Some(ns), Some(pod), _) => format!("{ns}/{pod}"),
            (_, None, Some(node)) => format!("node {node}"),
            _ => self.ip.to_string(),
        }
    }
}

impl FlowRecord {
    /// A record of a connection `src` → `dst` with nothing counted yet: no packets, no
    /// time, no identity beyond what the ends carry, no verdict.
    pub fn between(
        src: RecordEndpoint,
        dst: RecordEndpoint,
        protocol: IpProtocol,
        state: FlowState,
    ) -> Self {
        Self {
            src,
            dst,
            protocol,
            icmp: None,
            fwd: Counts::default(),
            rev: Counts::default(),
            tcp_flags: TcpFlags::default(),
            first_seen: Timestamp::default(),
            last_seen: Timestamp::default(),
            state,
            node_name: None,
            interfaces: Vec::new(),
            non_first_fragments: false,
            service: None,
            policy: None,
            staged: None,
            first_seen_ns: 0,
            last_seen_ns: 0,
        }
    }

    /// The verdict, None when the record has none (no cluster state, or a protocol
    /// NetworkPolicy does not cover).
    pub fn verdict_kind(&self) -> Option<VerdictKind> {
        self.policy.as_ref().map(Verdict::kind)
    }

    /// The verdict's name, `none` when the record has none: what filters and metrics
    /// select on.
    pub fn verdict_name(&self) -> &'static str {
        self.verdict_kind().map_or("none", VerdictKind::name)
    }
}

#[cfg(test)]
mod tests {
    use super::FlowState;

    #[test]
    fn state_names_are_the_json_names() {
        for state in FlowState::ALL {
            let json = serde_json::to_value(state).expect("serializes");
            assert_eq!(json, state.name());
            assert_eq!(FlowState::from_name(state.name()), Some(state));
        }
        assert_eq!(FlowState::from_name("open"), None);
    }
}
