//! The policy kinds beyond NetworkPolicy, as authored (no defaulting applied): Calico
//! `projectcalico.org/v3`, AdminNetworkPolicy / BaselineAdminNetworkPolicy `v1alpha1` and
//! ClusterNetworkPolicy `v1alpha2`. Only the fields the evaluation reads; `compile.rs`
//! validates and defaults them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

/// `metadata` of any of these objects.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Meta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
}

/// A Calico object: `metadata` and a `spec` of type `S`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Object<S> {
    /// Name and namespace.
    #[serde(default)]
    pub metadata: Meta,
    /// The kind's spec.
    pub spec: S,
}

/// Spec of Calico `NetworkPolicy`, `GlobalNetworkPolicy` and their staged forms.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPolicySpec {
    /// Tier name (`default` when absent).
    pub tier: Option<String>,
    /// Order in the tier; absent is last.
    pub order: Option<f64>,
    /// Endpoints the policy applies to (absent: `all()`).
    pub selector: Option<String>,
    /// GlobalNetworkPolicy: namespaces whose pods it applies to.
    pub namespace_selector: Option<String>,
    /// Limits the policy to pods whose service account matches.
    pub service_account_selector: Option<String>,
    /// Directions governed; defaulted from the rules when absent.
    pub types: Option<Vec<String>>,
    /// Ingress rules.
    pub ingress: Option<Vec<CalicoRule>>,
    /// Egress rules.
    pub egress: Option<Vec<CalicoRule>>,
}

/// A Calico rule.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoRule {
    /// Allow, Deny, Pass or Log.
    pub action: String,
    /// Protocol name or number.
    pub protocol: Option<ProtocolValue>,
    /// Protocol excluded.
    pub not_protocol: Option<ProtocolValue>,
    /// ICMP type and code matched.
    pub icmp: Option<IcmpMatch>,
    /// ICMP type and code excluded.
    #[serde(rename = "notICMP")]
    pub not_icmp: Option<IcmpMatch>,
    /// What the packet's source must be.
    pub source: Option<EntityRule>,
    /// What the packet's destination must be.
    pub destination: Option<EntityRule>,
}

/// A protocol by name or number.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ProtocolValue {
    /// 1-255.
    Number(u8),
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`.
    Name(String),
}

/// An ICMP type and optional code.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct IcmpMatch {
    /// ICMP type.
    #[serde(rename = "type")]
    pub kind: Option<u8>,
    /// ICMP code (absent: every code).
    pub code: Option<u8>,
}

/// A rule's source or destination.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRule {
    /// CIDRs the address must be in.
    pub nets: Option<Vec<String>>,
    /// CIDRs the address must not be in.
    pub not_nets: Option<Vec<String>>,
    /// Endpoints (pods) by label.
    pub selector: Option<String>,
    /// Endpoints excluded by label.
    pub not_selector: Option<String>,
    /// Namespaces the selectors look in.
    pub namespace_selector: Option<String>,
    /// Ports (numbers, `"a:b"` ranges, names).
    pub ports: Option<Vec<PortValue>>,
    /// Ports excluded.
    pub not_ports: Option<Vec<PortValue>>,
    /// Pods by service account.
    pub service_accounts: Option<ServiceAccountMatch>,
}

/// A port, a range or a port name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortValue {
    /// A port number.
    Number(u16),
    /// `"80"`, `"1000:2000"` or a container port name.
    Text(String),
}

/// Pods by service account: names and a selector on the account's labels, ANDed.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ServiceAccountMatch {
    /// Service account names.
    pub names: Option<Vec<String>>,
    /// Selector on the service account's labels.
    pub selector: Option<String>,
}

/// Spec of a Calico `Tier`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// Position among tiers; absent is last.
    pub order: Option<f64>,
    /// `Deny` (default) or `Pass`.
    pub default_action: Option<String>,
}

/// Spec of AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSpec {
    /// ClusterNetworkPolicy: `Admin` or `Baseline`.
    pub tier: Option<String>,
    /// Lower first.
    pub priority: Option<i64>,
    /// The pods it applies to.
    #[serde(default)]
    pub subject: AdminSubject,
    /// Ingress rules.
    pub ingress: Option<Vec<AdminRule>>,
    /// Egress rules.
    pub egress: Option<Vec<AdminRule>>,
}

/// The pods an admin policy applies to: one of the two.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminSubject {
    /// Every pod of the selected namespaces.
    pub namespaces: Option<LabelSelector>,
    /// Selected pods of selected namespaces.
    pub pods: Option<AdminPods>,
}

/// Pods by namespace and pod labels.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPods {
    /// Namespaces.
    pub namespace_selector: Option<LabelSelector>,
    /// Pods in them.
    pub pod_selector: Option<LabelSelector>,
}

/// An admin policy rule.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminRule {
    /// Rule name.
    pub name: Option<String>,
    /// Allow / Accept, Deny or Pass.
    #[serde(default)]
    pub action: String,
    /// Ingress peers.
    pub from: Option<Vec<AdminPeer>>,
    /// Egress peers.
    pub to: Option<Vec<AdminPeer>>,
    /// v1alpha1 ports.
    pub ports: Option<Vec<AdminPort>>,
    /// v1alpha2 protocols.
    pub protocols: Option<Vec<AdminProtocol>>,
}

/// A peer of an admin rule: one of the four.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminPeer {
    /// Pods of these namespaces.
    pub namespaces: Option<LabelSelector>,
    /// These pods.
    pub pods: Option<AdminPods>,
    /// Nodes (their addresses) by label.
    pub nodes: Option<LabelSelector>,
    /// CIDRs.
    pub networks: Option<Vec<String>>,
}

/// A v1alpha1 port: one of the three.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPort {
    /// One port.
    pub port_number: Option<AdminPortNumber>,
    /// A range.
    pub port_range: Option<AdminPortRange>,
    /// A container port name.
    pub named_port: Option<String>,
}

/// `portNumber`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminPortNumber {
    /// TCP (default), UDP or SCTP.
    pub protocol: Option<String>,
    /// The port.
    pub port: u16,
}

/// `portRange`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminPortRange {
    /// TCP (default), UDP or SCTP.
    pub protocol: Option<String>,
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// A v1alpha2 protocol entry.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminProtocol {
    /// TCP ports.
    pub tcp: Option<AdminProtocolPorts>,
    /// UDP ports.
    pub udp: Option<AdminProtocolPorts>,
    /// SCTP ports.
    pub sctp: Option<AdminProtocolPorts>,
    /// A container port name.
    pub destination_named_port: Option<String>,
}

/// Ports of one protocol.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminProtocolPorts {
    /// Absent: every port of the protocol.
    pub destination_port: Option<AdminDestinationPort>,
}

/// A number or a range.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminDestinationPort {
    /// One port.
    pub number: Option<u16>,
    /// A range.
    pub range: Option<AdminRange>,
}

/// `range`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdminRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}
