//! Typed inputs of the engine: namespaces, pods, nodes and the flow being asked about.
//!
//! These are small owned views of the k8s-openapi objects, holding only what policy
//! evaluation reads, so a snapshot can be rebuilt without re-reading whole objects.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod};

use super::error::{FieldError, FieldProblem};

/// Labels of a namespace or pod.
pub type Labels = BTreeMap<String, String>;

/// The label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespace used for objects whose manifest has no `metadata.namespace` (kubectl's default).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Transport protocols NetworkPolicy v1 can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, the default when a policy port omits `protocol`.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the exact API spelling (`TCP`, `UDP`, `SCTP`); the API is case-sensitive.
    pub fn from_api(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The protocol of an IP protocol number, for those NetworkPolicy covers.
    pub fn of_ip(protocol: observer_api::vocab::IpProtocol) -> Option<Self> {
        use observer_api::vocab::IpProtocol;
        match protocol {
            IpProtocol::TCP => Some(Self::Tcp),
            IpProtocol::UDP => Some(Self::Udp),
            IpProtocol::SCTP => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number (the inverse of [`Protocol::of_ip`]).
    pub fn ip(self) -> observer_api::vocab::IpProtocol {
        use observer_api::vocab::IpProtocol;
        match self {
            Self::Tcp => IpProtocol::TCP,
            Self::Udp => IpProtocol::UDP,
            Self::Sctp => IpProtocol::SCTP,
        }
    }

    /// Parses any case, for user input such as flow files.
    pub fn from_any_case(s: &str) -> Option<Self> {
        Self::from_api(&s.to_ascii_uppercase())
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    /// Parses an optional API protocol field, defaulting to TCP as the API server does.
    pub(crate) fn from_field(value: Option<&str>, field: &str) -> Result<Self, FieldError> {
        match value {
            None => Ok(Self::Tcp),
            Some(p) => Self::from_api(p)
                .ok_or_else(|| FieldError::new(field, FieldProblem::Protocol(p.to_owned()))),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container port; only these can be targeted by a named policy port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// The port's name, if it has one.
    pub name: Option<String>,
    /// The port number inside the pod.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// A namespace as namespaceSelectors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Namespace name.
    pub name: String,
    /// Labels, always including [`NAMESPACE_NAME_LABEL`].
    pub labels: Labels,
}

impl NamespaceInfo {
    /// Builds a namespace, adding the `kubernetes.io/metadata.name` label the API server
    /// always sets (and overwrites), so raw manifests behave like live objects.
    pub fn new(name: impl Into<String>, mut labels: Labels) -> Self {
        let name = name.into();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
        Self { name, labels }
    }

    /// Converts a k8s-openapi Namespace.
    pub fn from_k8s(ns: &Namespace) -> Result<Self, FieldError> {
        let name = required_name(ns.metadata.name.as_deref())?;
        Ok(Self::new(
            name,
            ns.metadata.labels.clone().unwrap_or_default(),
        ))
    }
}

/// A pod as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// Namespace name.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod labels.
    pub labels: Labels,
    /// Pod IPs (one per family). Empty for pods without an IP or in a terminal phase.
    pub ips: Vec<IpAddr>,
    /// Container ports, for resolving named policy ports.
    pub ports: Vec<ContainerPort>,
    /// The node the pod runs on, for the node exemption.
    pub node: Option<String>,
    /// hostNetwork pods share their node's IPs; policy behaviour for them is undefined.
    pub host_network: bool,
}

impl PodInfo {
    /// Converts a k8s-openapi Pod. A missing namespace means [`DEFAULT_NAMESPACE`].
    ///
    /// Pods in phase `Succeeded` or `Failed` get no IPs: their IPs may already belong to
    /// another pod.
    pub fn from_k8s(pod: &Pod) -> Result<Self, FieldError> {
        let meta = &pod.metadata;
        let name = required_name(meta.name.as_deref())?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let ips = if terminal { Vec::new() } else { pod_ips(pod)? };
        let mut ports = Vec::new();
        if let Some(spec) = spec {
            for (i, c) in spec.containers.iter().enumerate() {
                container_ports(c, ("spec.containers", i), &mut ports)?;
            }
            // Sidecars (init containers with restartPolicy Always) serve traffic too.
            for (i, c) in spec.init_containers.iter().flatten().enumerate() {
                if c.restart_policy.as_deref() == Some("Always") {
                    container_ports(c, ("spec.initContainers", i), &mut ports)?;
                }
            }
        }
        Ok(Self {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            name,
            labels: meta.labels.clone().unwrap_or_default(),
            ips,
            ports,
            node: spec.and_then(|s| s.node_name.clone()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        })
    }
}

/// A node, so that flows from a pod's own node can be recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name (matches `PodInfo::node`).
    pub name: String,
    /// Node addresses that carry traffic (InternalIP and ExternalIP).
    pub ips: Vec<IpAddr>,
}

impl NodeInfo {
    /// Converts a k8s-openapi Node, keeping its InternalIP and ExternalIP addresses.
    pub fn from_k8s(node: &Node) -> Result<Self, FieldError> {
        let name = required_name(node.metadata.name.as_deref())?;
        let mut ips = Vec::new();
        let addresses = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten());
        for (i, a) in addresses.enumerate() {
            if matches!(a.type_.as_str(), "InternalIP" | "ExternalIP") {
                ips.push(parse_ip(
                    &a.address,
                    &format!("status.addresses[{i}].address"),
                )?);
            }
        }
        Ok(Self { name, ips })
    }
}

fn required_name(name: Option<&str>) -> Result<String, FieldError> {
    match name {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(FieldError::new("metadata.name", FieldProblem::Missing)),
    }
}

fn parse_ip(s: &str, field: &str) -> Result<IpAddr, FieldError> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| FieldError::new(field, FieldProblem::InvalidIp(s.to_owned())))
}

fn pod_ips(pod: &Pod) -> Result<Vec<IpAddr>, FieldError> {
    let Some(status) = pod.status.as_ref() else {
        return Ok(Vec::new());
    };
    let mut ips = Vec::new();
    for (i, p) in status.pod_ips.iter().flatten().enumerate() {
        ips.push(parse_ip(&p.ip, &format!("status.podIPs[{i}].ip"))?);
    }
    // podIP is podIPs[0] on live objects; hand-written manifests may set only podIP.
    if let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
        let ip = parse_ip(ip, "status.podIP")?;
        if !ips.contains(&ip) {
            ips.insert(0, ip);
        }
    }
    Ok(ips)
}

/// Reads a container's ports. The field path of an error (`list[i].ports[j]...`) is only
/// formatted when there is an error: this runs for every pod of every rebuild.
fn container_ports(
    c: &Container,
    (list, i): (&str, usize),
    out: &mut Vec<ContainerPort>,
) -> Result<(), FieldError> {
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let field = |leaf: &str| format!("{list}[{i}].ports[{j}].{leaf}");
        let port = u16::try_from(p.container_port)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                FieldError::new(
                    field("containerPort"),
                    FieldProblem::PortRange(p.container_port.into()),
                )
            })?;
        let protocol = match p.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(name) => Protocol::from_api(name).ok_or_else(|| {
                FieldError::new(field("protocol"), FieldProblem::Protocol(name.to_owned()))
            })?,
        };
        out.push(ContainerPort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port,
            protocol,
        });
    }
    Ok(())
}

/// Index of a pod inside one [`super::PolicySnapshot`]; meaningless for any other snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodId(pub(crate) u32);

/// Index of a node inside one [`super::PolicySnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub(crate) u32);

/// One end of a flow, resolved against a snapshot.
///
/// `ip` is the address the flow actually used; when it is `None` (a pod named without an
/// IP), ipBlocks match if any of the pod's or node's addresses is inside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A pod known to the snapshot.
    Pod {
        /// The pod.
        id: PodId,
        /// The address used by the flow, if known.
        ip: Option<IpAddr>,
    },
    /// A node known to the snapshot (node-originated traffic such as kubelet probes).
    Node {
        /// The node.
        id: NodeId,
        /// The address used by the flow, if known.
        ip: Option<IpAddr>,
    },
    /// Any address that is neither a known pod nor a known node.
    External(IpAddr),
}

/// The flow being asked about. Only the destination port matters to NetworkPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowQuery {
    /// The connection's initiator.
    pub src: Endpoint,
    /// The connection's target.
    pub dst: Endpoint,
    /// Destination port (the pod's container port, after any Service DNAT).
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}
