//! The flow record: the one definition of the JSON written by `observer run --flow-log`.
//!
//! Later stages add fields (identity, verdict); existing fields are never renamed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use observer_common::{ip_proto, tcp_flags};
use serde::{Deserialize, Serialize};

use crate::policy::VerdictReport;

/// One connection, as written to the flow log (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The initiator: the side that sent a TCP SYN without ACK, else the side whose packet
    /// was seen first.
    pub src: RecordEndpoint,
    /// The responder.
    pub dst: RecordEndpoint,
    /// "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", or the protocol number for others.
    pub protocol: String,
    /// ICMP type and code of the initiator's first message kind, for ICMP and ICMPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpInfo>,
    /// Initiator to responder.
    pub fwd: Counts,
    /// Responder to initiator.
    pub rev: Counts,
    /// Union of the TCP flags seen in both directions, by name.
    #[serde(default)]
    pub tcp_flags: Vec<String>,
    /// Wall-clock time of the first packet (RFC 3339).
    pub first_seen: String,
    /// Wall-clock time of the latest packet (RFC 3339).
    pub last_seen: String,
    /// Why the record was written.
    pub state: FlowState,
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
    pub policy: Option<VerdictReport>,
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
    /// How `dst` (the backend) was found: `observed` (the backend's own interface on this
    /// node saw the translated packets), `conntrack` (the node's NAT table), or
    /// `unresolved` (neither was available: `dst` is then the ClusterIP itself).
    pub backend: String,
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
}

impl FlowState {
    /// Every state, in the order they are documented.
    pub const ALL: [FlowState; 4] = [
        FlowState::Active,
        FlowState::Closed,
        FlowState::Expired,
        FlowState::Evicted,
    ];

    /// The state's name in the record's JSON (and on the wire).
    pub fn name(self) -> &'static str {
        match self {
            FlowState::Active => "active",
            FlowState::Closed => "closed",
            FlowState::Expired => "expired",
            FlowState::Evicted => "evicted",
        }
    }

    /// The state with this name.
    pub fn from_name(name: &str) -> Option<FlowState> {
        Self::ALL.into_iter().find(|state| state.name() == name)
    }
}

impl FlowRecord {
    /// The verdict's name, `none` when the record has none (no cluster state, or a
    /// protocol NetworkPolicy does not cover): what filters and metrics select on.
    pub fn verdict_name(&self) -> &str {
        self.policy.as_ref().map_or("none", |p| p.verdict.as_str())
    }
}

/// The record's name for an IP protocol number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        ip_proto::TCP => "TCP".into(),
        ip_proto::UDP => "UDP".into(),
        ip_proto::SCTP => "SCTP".into(),
        ip_proto::ICMP => "ICMP".into(),
        ip_proto::ICMPV6 => "ICMPv6".into(),
        other => other.to_string(),
    }
}

/// The IP protocol number of a record's protocol name (0 when unknown).
pub fn protocol_number(name: &str) -> u8 {
    match name {
        "TCP" => ip_proto::TCP,
        "UDP" => ip_proto::UDP,
        "SCTP" => ip_proto::SCTP,
        "ICMP" => ip_proto::ICMP,
        "ICMPv6" => ip_proto::ICMPV6,
        other => other.parse().unwrap_or(0),
    }
}

/// Names of the TCP flags set in `flags`, in header order.
pub fn tcp_flag_names(flags: u16) -> Vec<String> {
    const NAMES: [(u16, &str); 9] = [
        (tcp_flags::FIN, "FIN"),
        (tcp_flags::SYN, "SYN"),
        (tcp_flags::RST, "RST"),
        (tcp_flags::PSH, "PSH"),
        (tcp_flags::ACK, "ACK"),
        (tcp_flags::URG, "URG"),
        (tcp_flags::ECE, "ECE"),
        (tcp_flags::CWR, "CWR"),
        (tcp_flags::NS, "NS"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
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
