//! AdminNetworkPolicy, BaselineAdminNetworkPolicy (`v1alpha1`) and ClusterNetworkPolicy
//! (`v1alpha2`) → [`Policy`] in the tiers Calico gives them (admin: order = priority, before
//! the default tier; baseline: after it), both with the default action Pass.

use super::super::model::{
    Action, EndMatch, NamespaceScope, Peer, Policy, PortMatch, Rule, SourceKind, Subject,
};
use super::super::objects::{
    AdminPeer, AdminPort, AdminProtocol, AdminRule, AdminSpec, Object, ProtocolValue,
};
use super::{labels, networks, protocol_number};
use crate::policy::Selector;

pub(super) fn admin(object: Object<AdminSpec>, kind: SourceKind) -> Result<Policy, String> {
    let spec = object.spec;
    let (tier, order) = match kind {
        SourceKind::AdminNetworkPolicy => ("adminnetworkpolicy", spec.priority),
        SourceKind::BaselineAdminNetworkPolicy => ("baselineadminnetworkpolicy", Some(1000)),
        _ => match spec.tier.as_deref() {
            Some("Admin") => ("kube-admin", spec.priority),
            Some("Baseline") => ("kube-baseline", spec.priority),
            other => return Err(format!("spec.tier: {other:?} is not Admin or Baseline")),
        },
    };
    let subject = match (&spec.subject.namespaces, &spec.subject.pods) {
        (Some(ns), None) => Subject::Labels {
            namespaces: NamespaceScope::Labels(labels(Some(ns), "spec.subject.namespaces")?),
            pods: Selector::default(),
        },
        (None, Some(pods)) => Subject::Labels {
            namespaces: NamespaceScope::Labels(labels(
                pods.namespace_selector.as_ref(),
                "spec.subject.pods.namespaceSelector",
            )?),
            pods: labels(pods.pod_selector.as_ref(), "spec.subject.pods.podSelector")?,
        },
        _ => return Err("spec.subject: set exactly one of namespaces and pods".into()),
    };
    let rules = |list: Vec<AdminRule>, ingress: bool| -> Result<Vec<Rule>, String> {
        let direction = if ingress { "ingress" } else { "egress" };
        list.into_iter()
            .enumerate()
            .map(|(i, r)| admin_rule(r, i, ingress, &format!("spec.{direction}[{i}]")))
            .collect()
    };
    let ingress = rules(spec.ingress.unwrap_or_default(), true)?;
    let egress = rules(spec.egress.unwrap_or_default(), false)?;
    Ok(Policy {
        kind,
        staged: false,
        namespace: None,
        sort_name: object.metadata.name.clone(),
        name: object.metadata.name,
        tier: tier.into(),
        order: order.map(|o| o as f64),
        subject,
        // No implicit isolation: a direction without rules is not affected.
        ingress_type: !ingress.is_empty(),
        egress_type: !egress.is_empty(),
        ingress,
        egress,
    })
}

fn admin_rule(rule: AdminRule, index: usize, ingress: bool, field: &str) -> Result<Rule, String> {
    let action = match rule.action.as_str() {
        "Allow" | "Accept" => Action::Allow,
        "Deny" => Action::Deny,
        "Pass" => Action::Pass,
        other => {
            return Err(format!(
                "{field}.action: {other:?} is not Allow, Accept, Deny or Pass"
            ));
        }
    };
    let (list, at) = if ingress {
        (rule.from, "from")
    } else {
        (rule.to, "to")
    };
    let peers = list
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| admin_peer(p, &format!("{field}.{at}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = Vec::new();
    for (i, port) in rule.ports.iter().flatten().enumerate() {
        ports.push(admin_port(port, &format!("{field}.ports[{i}]"))?);
    }
    for (i, protocol) in rule.protocols.iter().flatten().enumerate() {
        ports.extend(admin_protocol(
            protocol,
            &format!("{field}.protocols[{i}]"),
        )?);
    }
    let ports = (rule.ports.is_some() || rule.protocols.is_some()).then_some(ports);
    let peer_end = EndMatch {
        peers: Some(peers),
        ..EndMatch::default()
    };
    let (source, mut destination) = if ingress {
        (peer_end, EndMatch::default())
    } else {
        (EndMatch::default(), peer_end)
    };
    destination.ports = ports;
    Ok(Rule {
        index,
        action,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source,
        destination,
    })
}

fn admin_peer(peer: &AdminPeer, field: &str) -> Result<Peer, String> {
    match (&peer.namespaces, &peer.pods, &peer.nodes, &peer.networks) {
        (Some(ns), None, None, None) => Ok(Peer::Pods {
            namespaces: NamespaceScope::Labels(labels(Some(ns), &format!("{field}.namespaces"))?),
            pods: Selector::default(),
        }),
        (None, Some(pods), None, None) => Ok(Peer::Pods {
            namespaces: NamespaceScope::Labels(labels(
                pods.namespace_selector.as_ref(),
                &format!("{field}.pods.namespaceSelector"),
            )?),
            pods: labels(
                pods.pod_selector.as_ref(),
                &format!("{field}.pods.podSelector"),
            )?,
        }),
        (None, None, Some(nodes), None) => {
            Ok(Peer::Nodes(labels(Some(nodes), &format!("{field}.nodes"))?))
        }
        (None, None, None, Some(nets)) => Ok(Peer::Addresses(networks(
            nets,
            &format!("{field}.networks"),
        )?)),
        _ => Err(format!(
            "{field}: set exactly one of namespaces, pods, nodes and networks"
        )),
    }
}

fn admin_protocol_number(protocol: Option<&str>, field: &str) -> Result<u8, String> {
    protocol_number(
        &ProtocolValue::Name(protocol.unwrap_or("TCP").to_owned()),
        field,
    )
}

fn admin_port(port: &AdminPort, field: &str) -> Result<PortMatch, String> {
    match (&port.port_number, &port.port_range, &port.named_port) {
        (Some(n), None, None) => Ok(PortMatch::Range {
            protocol: Some(admin_protocol_number(
                n.protocol.as_deref(),
                &format!("{field}.portNumber.protocol"),
            )?),
            first: n.port,
            last: n.port,
        }),
        (None, Some(r), None) => Ok(PortMatch::Range {
            protocol: Some(admin_protocol_number(
                r.protocol.as_deref(),
                &format!("{field}.portRange.protocol"),
            )?),
            first: r.start,
            last: r.end,
        }),
        (None, None, Some(name)) => Ok(PortMatch::Named {
            protocol: None,
            name: name.clone(),
        }),
        _ => Err(format!(
            "{field}: set exactly one of portNumber, portRange and namedPort"
        )),
    }
}

fn admin_protocol(protocol: &AdminProtocol, field: &str) -> Result<Vec<PortMatch>, String> {
    let mut out = Vec::new();
    for (number, ports) in [
        (6u8, &protocol.tcp),
        (17, &protocol.udp),
        (132, &protocol.sctp),
    ] {
        let Some(ports) = ports else { continue };
        let (first, last) = match &ports.destination_port {
            None => (0, u16::MAX),
            Some(d) => match (d.number, &d.range) {
                (Some(n), None) => (n, n),
                (None, Some(r)) => (r.start, r.end),
                _ => {
                    return Err(format!(
                        "{field}: destinationPort needs one of number and range"
                    ));
                }
            },
        };
        out.push(PortMatch::Range {
            protocol: Some(number),
            first,
            last,
        });
    }
    if let Some(name) = &protocol.destination_named_port {
        out.push(PortMatch::Named {
            protocol: None,
            name: name.clone(),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "{field}: set one of tcp, udp, sctp and destinationNamedPort"
        ));
    }
    Ok(out)
}
