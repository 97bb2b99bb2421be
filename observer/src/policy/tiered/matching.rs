//! Whether a policy applies to a pod and whether a rule matches a flow: selectors against
//! the labels a world derives once, namespace scopes, peers, nets, ports and ICMP.

use std::borrow::Cow;
use std::net::IpAddr;

use super::evaluate::{End, Flow};
use super::model::{
    CalicoEnd, EndMatch, NamespaceScope, Peer, Policy, PortMatch, Rule, Subject, World,
    calico_pod_labels, namespace_labels_of, service_account_labels,
};
use crate::policy::Labels;

/// Labels derived once by `World::prepare`, or computed here when the world is not.
fn derived<'w>(cached: Option<&'w Labels>, compute: impl FnOnce() -> Labels) -> Cow<'w, Labels> {
    cached.map_or_else(|| Cow::Owned(compute()), Cow::Borrowed)
}

/// A pod's Calico labels.
fn pod_calico(world: &World, pod: usize) -> Cow<'_, Labels> {
    derived(world.derived.pod_calico.get(pod), || {
        world
            .pods
            .get(pod)
            .map(calico_pod_labels)
            .unwrap_or_default()
    })
}

/// A pod's service account's labels.
fn pod_service_account(world: &World, pod: usize) -> Cow<'_, Labels> {
    derived(world.derived.pod_service_account.get(pod), || {
        world
            .pods
            .get(pod)
            .map(|p| service_account_labels(world, p))
            .unwrap_or_default()
    })
}

/// A namespace's labels, for Kubernetes or Calico selectors.
fn namespace(world: &World, name: &str, calico: bool) -> Cow<'static, Labels> {
    Cow::Owned(namespace_labels_of(world, name, calico))
}

pub(super) fn in_scope(world: &World, scope: &NamespaceScope, name: &str) -> bool {
    let slot = world.derived.namespace_index.get(name).copied();
    scope_matches(world, scope, name, slot)
}

/// [`in_scope`] for pod `index`'s namespace, found by index once the world is prepared.
pub(super) fn pod_in_scope(world: &World, scope: &NamespaceScope, index: usize) -> bool {
    let Some(pod) = world.pods.get(index) else {
        return false;
    };
    let slot = world.derived.pod_namespace.get(index).copied();
    scope_matches(world, scope, &pod.namespace, slot)
}

/// Whether namespace `name` (at `slot` of the derived labels, when known) is in `scope`.
fn scope_matches(world: &World, scope: &NamespaceScope, name: &str, slot: Option<u32>) -> bool {
    let labels =
        |calico: bool| match slot.and_then(|i| world.derived.namespace_labels.get(i as usize)) {
            Some((k8s, calico_labels)) => Cow::Borrowed(if calico { calico_labels } else { k8s }),
            None => namespace(world, name, calico),
        };
    match scope {
        NamespaceScope::Only(ns) => ns == name,
        NamespaceScope::All => true,
        NamespaceScope::Nothing => false,
        NamespaceScope::Calico(sel) => sel.matches(&labels(true)),
        NamespaceScope::Labels(sel) => sel.matches(&labels(false)),
    }
}

pub(super) fn applies(world: &World, policy: &Policy, index: usize) -> bool {
    pod_in_scope(world, subject_namespaces(policy), index) && selects(world, policy, index)
}

/// The namespaces a policy's subject is in.
pub(super) fn subject_namespaces(policy: &Policy) -> &NamespaceScope {
    match &policy.subject {
        Subject::Calico { namespaces, .. } | Subject::Labels { namespaces, .. } => namespaces,
    }
}

/// Whether the policy's subject selects pod `index`, its namespace aside.
pub(super) fn selects(world: &World, policy: &Policy, index: usize) -> bool {
    match &policy.subject {
        Subject::Calico {
            selector,
            service_accounts,
            ..
        } => {
            selector.matches(&pod_calico(world, index))
                && service_accounts
                    .as_ref()
                    .is_none_or(|sa| sa.matches(&pod_service_account(world, index)))
        }
        Subject::Labels { pods, .. } => world
            .pods
            .get(index)
            .is_some_and(|pod| pods.matches(&pod.labels)),
    }
}

fn ip_of(world: &World, end: End) -> Option<IpAddr> {
    match end {
        End::Pod(i) => world.pods.get(i).and_then(|p| p.ip),
        End::Node(_, ip) | End::Outside(ip) => Some(ip),
    }
}

fn is_icmp(protocol: u8) -> bool {
    protocol == 1 || protocol == 58
}

fn icmp_matches(flow: &Flow, (kind, code): (u8, Option<u8>)) -> bool {
    is_icmp(flow.protocol)
        && flow
            .icmp
            .is_some_and(|(t, c)| t == kind && code.is_none_or(|code| code == c))
}

pub(super) fn rule_matches(world: &World, rule: &Rule, flow: &Flow) -> bool {
    rule.protocol.is_none_or(|p| p == flow.protocol)
        && rule.not_protocol.is_none_or(|p| p != flow.protocol)
        && rule.icmp.is_none_or(|m| icmp_matches(flow, m))
        && rule.not_icmp.is_none_or(|m| !icmp_matches(flow, m))
        && end_matches(world, &rule.source, flow.source, flow, false)
        && end_matches(world, &rule.destination, flow.destination, flow, true)
}

fn end_matches(world: &World, m: &EndMatch, end: End, flow: &Flow, destination: bool) -> bool {
    if let Some(peers) = &m.peers
        && !peers.iter().any(|p| peer_matches(world, p, end))
    {
        return false;
    }
    if let Some(calico) = &m.calico
        && !calico_matches(world, calico, end)
    {
        return false;
    }
    if !destination {
        return true;
    }
    m.ports
        .as_ref()
        .is_none_or(|ports| ports.iter().any(|p| port_matches(world, p, end, flow)))
        && m.not_ports
            .as_ref()
            .is_none_or(|ports| !ports.iter().any(|p| port_matches(world, p, end, flow)))
}

fn peer_matches(world: &World, peer: &Peer, end: End) -> bool {
    match peer {
        Peer::Pods { namespaces, pods } => match end {
            End::Pod(i) => world
                .pods
                .get(i)
                .is_some_and(|pod| pod_in_scope(world, namespaces, i) && pods.matches(&pod.labels)),
            _ => false,
        },
        Peer::Addresses(set) => ip_of(world, end).is_some_and(|ip| set.contains(ip)),
        Peer::Nodes(sel) => match end {
            End::Node(i, _) => world.nodes.get(i).is_some_and(|n| sel.matches(&n.labels)),
            _ => false,
        },
    }
}

fn calico_matches(world: &World, m: &CalicoEnd, end: End) -> bool {
    let ip = ip_of(world, end);
    if let Some(nets) = &m.nets
        && !ip.is_some_and(|ip| nets.contains(ip))
    {
        return false;
    }
    if let Some(nets) = &m.not_nets
        && ip.is_some_and(|ip| nets.contains(ip))
    {
        return false;
    }
    let (pod, index) = match end {
        End::Pod(i) => (world.pods.get(i), i),
        _ => (None, 0),
    };
    if let Some(not) = &m.not_selector
        && pod.is_some()
        && not.matches(&pod_calico(world, index))
    {
        return false;
    }
    if !m.pods_only {
        return true;
    }
    let Some(pod) = pod else {
        return false;
    };
    m.scope
        .as_ref()
        .is_none_or(|s| pod_in_scope(world, s, index))
        && m.selector
            .as_ref()
            .is_none_or(|s| s.matches(&pod_calico(world, index)))
        && m.service_account_names
            .as_ref()
            .is_none_or(|names| names.contains(&pod.service_account))
        && m.service_account_selector
            .as_ref()
            .is_none_or(|s| s.matches(&pod_service_account(world, index)))
}

fn port_matches(world: &World, port: &PortMatch, end: End, flow: &Flow) -> bool {
    match port {
        PortMatch::Range {
            protocol,
            first,
            last,
        } => {
            protocol.is_none_or(|p| p == flow.protocol)
                && flow.port.is_some_and(|n| (*first..=*last).contains(&n))
        }
        PortMatch::Named { protocol, name } => {
            let End::Pod(i) = end else {
                return false;
            };
            let Some(pod) = world.pods.get(i) else {
                return false;
            };
            protocol.is_none_or(|p| p == flow.protocol)
                && pod.ports.iter().any(|(n, number, proto)| {
                    n == name && *proto == flow.protocol && Some(*number) == flow.port
                })
        }
    }
}
