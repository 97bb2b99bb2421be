//! Kubernetes `NetworkPolicy` (and Calico's `StagedKubernetesNetworkPolicy`) → [`Policy`],
//! as Calico places it: the default tier, order 1000, Allow rules; its isolation is the
//! tier's end-of-tier deny. `policyTypes` and TCP are defaulted as the API server does.

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::model::{NamespaceScope, Peer, Policy, PortMatch, Rule, SourceKind, Subject};
use super::super::objects::{Object, ProtocolValue};
use super::{DEFAULT_TIER, labels, protocol_number};
use crate::policy::IpSetBuilder;

pub(super) fn kubernetes(
    object: Object<NetworkPolicySpec>,
    staged: bool,
) -> Result<Policy, String> {
    let spec = object.spec;
    let namespace = object
        .metadata
        .namespace
        .unwrap_or_else(|| "default".into());
    let ingress_list = spec.ingress.unwrap_or_default();
    let egress_list = spec.egress.unwrap_or_default();
    // The API server defaults an empty list as an absent one.
    let (ingress_type, egress_type) = match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, !egress_list.is_empty()),
    };
    let peers =
        |list: Option<Vec<NetworkPolicyPeer>>, field: &str| -> Result<Option<Vec<Peer>>, String> {
            let list = list.unwrap_or_default();
            if list.is_empty() {
                return Ok(None);
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| kubernetes_peer(p, &namespace, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    let mut ingress = Vec::new();
    for (i, rule) in ingress_list.into_iter().enumerate() {
        let field = format!("spec.ingress[{i}]");
        let from = peers(rule.from, &format!("{field}.from"))?;
        let ports = kubernetes_ports(rule.ports, &format!("{field}.ports"))?;
        ingress.push(Rule::allow(i, from, None, ports));
    }
    let mut egress = Vec::new();
    for (i, rule) in egress_list.into_iter().enumerate() {
        let field = format!("spec.egress[{i}]");
        let to = peers(rule.to, &format!("{field}.to"))?;
        let ports = kubernetes_ports(rule.ports, &format!("{field}.ports"))?;
        egress.push(Rule::allow(i, None, to, ports));
    }
    Ok(Policy {
        kind: SourceKind::KubernetesNetworkPolicy,
        staged,
        sort_name: format!("knp.default.{}", object.metadata.name),
        name: object.metadata.name,
        subject: Subject::Labels {
            namespaces: NamespaceScope::Only(namespace.clone()),
            pods: labels(spec.pod_selector.as_ref(), "spec.podSelector")?,
        },
        namespace: Some(namespace),
        tier: DEFAULT_TIER.into(),
        // Calico places every Kubernetes NetworkPolicy at order 1000 in the default tier.
        order: Some(1000.0),
        ingress_type,
        egress_type,
        ingress,
        egress,
    })
}

fn kubernetes_peer(peer: &NetworkPolicyPeer, namespace: &str, field: &str) -> Result<Peer, String> {
    if let Some(block) = &peer.ip_block {
        let (cidr, except) =
            crate::policy::ipblock::parse_ip_block(block, &format!("{field}.ipBlock"))
                .map_err(|e| e.to_string())?;
        let mut set = IpSetBuilder::default();
        set.add_block(cidr, &except);
        return Ok(Peer::Addresses(set.build()));
    }
    let namespaces = match &peer.namespace_selector {
        Some(sel) => {
            NamespaceScope::Labels(labels(Some(sel), &format!("{field}.namespaceSelector"))?)
        }
        None => NamespaceScope::Only(namespace.to_owned()),
    };
    Ok(Peer::Pods {
        namespaces,
        pods: labels(peer.pod_selector.as_ref(), &format!("{field}.podSelector"))?,
    })
}

fn kubernetes_ports(
    list: Option<Vec<NetworkPolicyPort>>,
    field: &str,
) -> Result<Option<Vec<PortMatch>>, String> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (i, port) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let protocol = protocol_number(
            &ProtocolValue::Name(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
            &format!("{at}.protocol"),
        )?;
        out.push(match &port.port {
            None => PortMatch::Range {
                protocol: Some(protocol),
                first: 0,
                last: u16::MAX,
            },
            Some(IntOrString::Int(n)) => {
                let first =
                    u16::try_from(*n).map_err(|_| format!("{at}.port: {n} is not a port"))?;
                let last = match port.end_port {
                    Some(end) => u16::try_from(end)
                        .map_err(|_| format!("{at}.endPort: {end} is not a port"))?,
                    None => first,
                };
                PortMatch::Range {
                    protocol: Some(protocol),
                    first,
                    last,
                }
            }
            Some(IntOrString::String(name)) => PortMatch::Named {
                protocol: Some(protocol),
                name: name.clone(),
            },
        });
    }
    Ok(Some(out))
}
