//! The tier walk: per direction, tiers in order; in a tier that takes part, its policies
//! in order and their rules in order; Allow and Deny decide, Pass goes to the next tier,
//! Log goes on; a tier's end applies its default action; past the last tier, the
//! namespace profile allows (`README` of the policy corpus, "The evaluation model").

use std::borrow::Cow;
use std::net::IpAddr;

use super::model::{
    Action, CalicoEnd, EndMatch, NamespaceScope, Peer, Policy, PortMatch, Rule, Subject, TierDef,
    World, WorldPod, calico_pod_labels, namespace_labels, service_account_labels,
};
use crate::policy::Labels;

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A pod, by index in [`World::pods`].
    Pod(usize),
    /// A node (or a host-networked pod), by index in [`World::nodes`], at an address.
    Node(usize, IpAddr),
    /// Outside the cluster.
    Outside(IpAddr),
}

/// A flow to judge.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// Its source.
    pub source: End,
    /// Its destination.
    pub destination: End,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (TCP, UDP, SCTP).
    pub port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
}

/// Why a direction was decided as it was.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The end is not a pod: no policy of its own.
    NotApplicable,
    /// A rule decided: the policy (index into the engine's policies) and the rule's index.
    Rule {
        /// Index of the policy.
        policy: usize,
        /// Index of the rule in the policy's list for the direction.
        rule: usize,
        /// Allow or Deny.
        action: Action,
    },
    /// A tier that took part ended with no decision, and its default is Deny.
    EndOfTier(String),
    /// No tier decided: the namespace profile allows.
    Profile,
}

/// The verdict of one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionOutcome {
    /// Allowed.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// Rules that passed the flow on to the next tier: (policy index, rule index).
    pub passes: Vec<(usize, usize)>,
    /// With [`Reason::EndOfTier`]: the policies of that tier that took part.
    pub tier_policies: Vec<usize>,
}

/// Policies and tiers, ordered for the walk.
#[derive(Debug)]
pub struct TieredEngine {
    /// Every policy, staged ones included.
    pub policies: Vec<Policy>,
    /// Tiers in evaluation order, each with its policies' indexes in order.
    tiers: Vec<(TierDef, Vec<usize>)>,
    /// Per pod, per direction (egress, ingress): (tier position, policy index) of the
    /// enforced policies that apply and govern it, in walk order ([`TieredEngine::index`]).
    members: Vec<[Vec<(u32, u32)>; 2]>,
}

impl TieredEngine {
    /// Orders `tiers` (ascending order, unordered last, ties by name) and the policies in
    /// each (ascending order, unordered last, ties by name). A policy whose tier is not
    /// declared goes in a tier of that name at the end, default Deny.
    pub fn new(policies: Vec<Policy>, mut tiers: Vec<TierDef>) -> Self {
        for policy in &policies {
            if !tiers.iter().any(|t| t.name == policy.tier) {
                tiers.push(TierDef {
                    name: policy.tier.clone(),
                    order: None,
                    default_pass: false,
                });
            }
        }
        let key = |order: Option<f64>| order.unwrap_or(f64::INFINITY);
        tiers.sort_by(|a, b| {
            key(a.order)
                .total_cmp(&key(b.order))
                .then(a.name.cmp(&b.name))
        });
        let tiers = tiers
            .into_iter()
            .map(|tier| {
                let mut members: Vec<usize> = (0..policies.len())
                    .filter(|&i| policies[i].tier == tier.name)
                    .collect();
                members.sort_by(|&a, &b| {
                    let (a, b) = (&policies[a], &policies[b]);
                    key(a.order)
                        .total_cmp(&key(b.order))
                        .then_with(|| a.sort_name.cmp(&b.sort_name))
                        .then_with(|| a.namespace.cmp(&b.namespace))
                });
                (tier, members)
            })
            .collect();
        Self {
            policies,
            tiers,
            members: Vec::new(),
        }
    }

    /// Judges the egress (at the source) and ingress (at the destination) of `flow`;
    /// `staged` enforces the staged policies too ("what would they do").
    pub fn judge(&self, world: &World, flow: &Flow, staged: bool) -> [DirectionOutcome; 2] {
        // IPv6 neighbour discovery and multicast listener messages (ICMPv6 130-137) keep
        // the link working: Felix lets them through for every workload, whatever the
        // policy, so no policy judges them.
        if flow.protocol == 58 && flow.icmp.is_some_and(|(t, _)| (130..=137).contains(&t)) {
            return [not_applicable(), not_applicable()];
        }
        let egress = match flow.source {
            End::Pod(pod) => self.walk(world, flow, pod, false, staged),
            _ => not_applicable(),
        };
        let ingress = match flow.destination {
            End::Pod(pod) => self.walk(world, flow, pod, true, staged),
            _ => not_applicable(),
        };
        [egress, ingress]
    }

    /// Whether any policy is staged (its verdict is then worth computing beside the
    /// enforced one).
    pub fn has_staged(&self) -> bool {
        self.policies.iter().any(|p| p.staged)
    }

    /// Indexes `world`'s pods: for each, per direction, the enforced policies that apply
    /// to it and govern the direction, in walk order, so that judging a flow touches only
    /// those. Without it (and for staged verdicts) every policy of every tier is checked.
    pub fn index(&mut self, world: &World) {
        // A subject's namespaces are checked once per namespace, its selector only for
        // the pods of the namespaces in scope.
        let mut by_namespace: std::collections::HashMap<&str, Vec<usize>> =
            std::collections::HashMap::new();
        for (pod, subject) in world.pods.iter().enumerate() {
            by_namespace
                .entry(subject.namespace.as_str())
                .or_default()
                .push(pod);
        }
        let mut members: Vec<[Vec<(u32, u32)>; 2]> =
            vec![[Vec::new(), Vec::new()]; world.pods.len()];
        // Policies in walk order, so each pod's lists come out in walk order too.
        for (position, (_, tier_members)) in self.tiers.iter().enumerate() {
            for &index in tier_members {
                let policy = &self.policies[index];
                if policy.staged || !(policy.ingress_type || policy.egress_type) {
                    continue;
                }
                let scope = subject_namespaces(policy);
                let namespaces: Box<dyn Iterator<Item = &Vec<usize>>> = match scope {
                    NamespaceScope::Only(ns) => Box::new(by_namespace.get(ns.as_str()).into_iter()),
                    _ => Box::new(
                        by_namespace
                            .iter()
                            .filter(|(ns, _)| in_scope(world, scope, ns))
                            .map(|(_, pods)| pods),
                    ),
                };
                for &pod in namespaces.flatten() {
                    if !selects(world, policy, pod) {
                        continue;
                    }
                    for (direction, governs) in [policy.egress_type, policy.ingress_type]
                        .into_iter()
                        .enumerate()
                    {
                        if governs {
                            members[pod][direction].push((position as u32, index as u32));
                        }
                    }
                }
            }
        }
        self.members = members;
    }

    fn walk(
        &self,
        world: &World,
        flow: &Flow,
        pod: usize,
        ingress: bool,
        staged: bool,
    ) -> DirectionOutcome {
        let Some(subject) = world.pods.get(pod) else {
            return not_applicable();
        };
        // (tier position, policy index) of the policies that take part, in walk order.
        let sequence: Box<dyn Iterator<Item = (usize, usize)> + '_> = match self.members.get(pod) {
            Some(lists) if !staged => Box::new(
                lists[usize::from(ingress)]
                    .iter()
                    .map(|&(t, p)| (t as usize, p as usize)),
            ),
            _ => Box::new(self.tiers.iter().enumerate().flat_map(move |(t, (_, m))| {
                m.iter().copied().filter_map(move |index| {
                    let policy = &self.policies[index];
                    let governs = if ingress {
                        policy.ingress_type
                    } else {
                        policy.egress_type
                    };
                    (governs && (staged || !policy.staged) && applies(world, policy, pod, subject))
                        .then_some((t, index))
                })
            })),
        };
        let mut passes = Vec::new();
        let mut current: Option<usize> = None;
        let mut took_part = Vec::new();
        let mut passed = false;
        let end_of_tier = |tier: Option<usize>, took_part: &Vec<usize>, passed: bool| {
            let (def, _) = &self.tiers[tier?];
            (!passed && !took_part.is_empty() && !def.default_pass).then(|| def.name.clone())
        };
        for (tier, index) in sequence {
            if current != Some(tier) {
                if let Some(name) = end_of_tier(current, &took_part, passed) {
                    return DirectionOutcome {
                        allowed: false,
                        reason: Reason::EndOfTier(name),
                        passes,
                        tier_policies: took_part,
                    };
                }
                current = Some(tier);
                took_part.clear();
                passed = false;
            }
            if passed {
                continue;
            }
            took_part.push(index);
            let policy = &self.policies[index];
            let rules = if ingress {
                &policy.ingress
            } else {
                &policy.egress
            };
            for rule in rules {
                if !rule_matches(world, rule, flow) {
                    continue;
                }
                match rule.action {
                    Action::Log => {}
                    Action::Pass => {
                        passes.push((index, rule.index));
                        passed = true;
                        break;
                    }
                    action => {
                        return DirectionOutcome {
                            allowed: action == Action::Allow,
                            reason: Reason::Rule {
                                policy: index,
                                rule: rule.index,
                                action,
                            },
                            passes,
                            tier_policies: Vec::new(),
                        };
                    }
                }
            }
        }
        if let Some(name) = end_of_tier(current, &took_part, passed) {
            return DirectionOutcome {
                allowed: false,
                reason: Reason::EndOfTier(name),
                passes,
                tier_policies: took_part,
            };
        }
        DirectionOutcome {
            allowed: true,
            reason: Reason::Profile,
            passes,
            tier_policies: Vec::new(),
        }
    }
}

fn not_applicable() -> DirectionOutcome {
    DirectionOutcome {
        allowed: true,
        reason: Reason::NotApplicable,
        passes: Vec::new(),
        tier_policies: Vec::new(),
    }
}

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
    Cow::Owned(namespace_labels(world, name, calico))
}

fn in_scope(world: &World, scope: &NamespaceScope, name: &str) -> bool {
    let labels = |calico: bool| match world.derived.namespaces.get(name) {
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

fn applies(world: &World, policy: &Policy, index: usize, pod: &WorldPod) -> bool {
    in_scope(world, subject_namespaces(policy), &pod.namespace) && selects(world, policy, index)
}

/// The namespaces a policy's subject is in.
fn subject_namespaces(policy: &Policy) -> &NamespaceScope {
    match &policy.subject {
        Subject::Calico { namespaces, .. } | Subject::Labels { namespaces, .. } => namespaces,
    }
}

/// Whether the policy's subject selects pod `index`, its namespace aside.
fn selects(world: &World, policy: &Policy, index: usize) -> bool {
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

fn rule_matches(world: &World, rule: &Rule, flow: &Flow) -> bool {
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
            End::Pod(i) => world.pods.get(i).is_some_and(|pod| {
                in_scope(world, namespaces, &pod.namespace) && pods.matches(&pod.labels)
            }),
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
        .is_none_or(|s| in_scope(world, s, &pod.namespace))
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
