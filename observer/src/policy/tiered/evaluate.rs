//! The tier walk: per direction, tiers in order; in a tier that takes part, its policies
//! in order and their rules in order; Allow and Deny decide, Pass goes to the next tier,
//! Log goes on; a tier's end applies its default action; past the last tier, the
//! namespace profile allows (`README` of the policy corpus, "The evaluation model").

use std::net::IpAddr;

use super::matching::{applies, in_scope, rule_matches, selects, subject_namespaces};
use super::model::{Action, NamespaceScope, Policy, TierDef, World};
use super::peer_index::PeerIndex;

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
    members: Members,
    /// Which peers each rule can match ([`TieredEngine::index`]).
    peers: PeerIndex,
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
            members: Members::default(),
            peers: PeerIndex::default(),
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

    /// The enforced policies that apply to pod `pod` (an index in `world`) and govern
    /// `ingress` (else egress), in walk order: what isolates it, whether or not a rule of
    /// theirs ever decides a flow.
    pub fn policies_applying(&self, world: &World, pod: usize, ingress: bool) -> Vec<&Policy> {
        self.applying(world, pod, ingress, false)
            .into_iter()
            .filter_map(|(_, index)| self.policies.get(index as usize))
            .collect()
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
        self.members = Members::flatten(members);
        self.peers = PeerIndex::build(world, &self.policies);
    }

    fn walk(
        &self,
        world: &World,
        flow: &Flow,
        pod: usize,
        ingress: bool,
        staged: bool,
    ) -> DirectionOutcome {
        // (tier position, policy index) of the policies that take part, in walk order:
        // the index's list, or (staged, or no index) every policy checked now.
        let checked: Vec<(u32, u32)>;
        let sequence: &[(u32, u32)] = match self.members.get(pod, ingress) {
            Some(list) if !staged => list,
            _ => {
                if pod >= world.pods.len() {
                    return not_applicable();
                }
                checked = self.applying(world, pod, ingress, staged);
                &checked
            }
        };
        let peer = if ingress {
            flow.source
        } else {
            flow.destination
        };
        let mut passes = Vec::new();
        let mut start = 0;
        while start < sequence.len() {
            let tier = sequence[start].0;
            let end = sequence[start..]
                .iter()
                .position(|&(t, _)| t != tier)
                .map_or(sequence.len(), |n| start + n);
            match self.tier_decision(world, flow, peer, ingress, &sequence[start..end]) {
                TierOutcome::Decided(policy, rule, action) => {
                    return DirectionOutcome {
                        allowed: action == Action::Allow,
                        reason: Reason::Rule {
                            policy,
                            rule,
                            action,
                        },
                        passes,
                        tier_policies: Vec::new(),
                    };
                }
                TierOutcome::Passed(policy, rule) => passes.push((policy, rule)),
                TierOutcome::Undecided => {
                    let (def, _) = &self.tiers[tier as usize];
                    if !def.default_pass {
                        return DirectionOutcome {
                            allowed: false,
                            reason: Reason::EndOfTier(def.name.clone()),
                            passes,
                            tier_policies: sequence[start..end]
                                .iter()
                                .map(|&(_, p)| p as usize)
                                .collect(),
                        };
                    }
                }
            }
            start = end;
        }
        DirectionOutcome {
            allowed: true,
            reason: Reason::Profile,
            passes,
            tier_policies: Vec::new(),
        }
    }

    /// The policies of every tier that apply to `pod` and govern the direction, in walk
    /// order (what [`TieredEngine::index`] keeps for enforced policies).
    fn applying(&self, world: &World, pod: usize, ingress: bool, staged: bool) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for (t, (_, members)) in self.tiers.iter().enumerate() {
            for &index in members {
                let policy = &self.policies[index];
                let governs = if ingress {
                    policy.ingress_type
                } else {
                    policy.egress_type
                };
                if governs && (staged || !policy.staged) && applies(world, policy, pod) {
                    out.push((t as u32, index as u32));
                }
            }
        }
        out
    }

    /// The rules of one tier's policies (that take part), in order: the first Allow or
    /// Deny decides, a Pass ends the tier, Log goes on.
    fn tier_decision(
        &self,
        world: &World,
        flow: &Flow,
        peer: End,
        ingress: bool,
        policies: &[(u32, u32)],
    ) -> TierOutcome {
        for &(_, index) in policies {
            let index = index as usize;
            let rules_of = || {
                let policy = &self.policies[index];
                if ingress {
                    &policy.ingress[..]
                } else {
                    &policy.egress[..]
                }
            };
            // The policy itself is read only when one of its rules may match the peer.
            let mut rules = None;
            let count = match self.peers.rule_count(index, ingress) {
                Some(n) => n,
                None => rules.insert(rules_of()).len(),
            };
            for position in 0..count {
                if !self.peers.may_match(index, ingress, position, peer) {
                    continue;
                }
                let Some(rule) = rules.get_or_insert_with(rules_of).get(position) else {
                    break;
                };
                if !rule_matches(world, rule, flow) {
                    continue;
                }
                match rule.action {
                    Action::Log => {}
                    Action::Pass => return TierOutcome::Passed(index, rule.index),
                    action => return TierOutcome::Decided(index, rule.index, action),
                }
            }
        }
        TierOutcome::Undecided
    }
}

/// Per pod and direction, the (tier position, policy index) of the enforced policies that
/// apply and govern it, in walk order; one array, so that a pod's lists are one load away.
#[derive(Debug, Default)]
struct Members {
    /// Per pod: where its egress list starts, its ingress list starts, and where it ends.
    offsets: Vec<[u32; 3]>,
    lists: Vec<(u32, u32)>,
}

impl Members {
    fn flatten(per_pod: Vec<[Vec<(u32, u32)>; 2]>) -> Self {
        let mut flat = Self::default();
        for [egress, ingress] in per_pod {
            let start = flat.lists.len() as u32;
            flat.lists.extend(egress);
            let middle = flat.lists.len() as u32;
            flat.lists.extend(ingress);
            flat.offsets.push([start, middle, flat.lists.len() as u32]);
        }
        flat
    }

    /// Pod `pod`'s list for the direction; `None` when the pod was not indexed.
    fn get(&self, pod: usize, ingress: bool) -> Option<&[(u32, u32)]> {
        let &[start, middle, end] = self.offsets.get(pod)?;
        let range = if ingress { middle..end } else { start..middle };
        self.lists.get(range.start as usize..range.end as usize)
    }
}

/// How a tier that takes part ended.
enum TierOutcome {
    /// A rule (policy index, rule index) allowed or denied.
    Decided(usize, usize, Action),
    /// A rule (policy index, rule index) passed to the next tier.
    Passed(usize, usize),
    /// No rule matched: the tier's default applies.
    Undecided,
}

fn not_applicable() -> DirectionOutcome {
    DirectionOutcome {
        allowed: true,
        reason: Reason::NotApplicable,
        passes: Vec::new(),
        tier_policies: Vec::new(),
    }
}
