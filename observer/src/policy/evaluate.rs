//! Flow evaluation: egress at the source AND ingress at the destination.

use std::net::IpAddr;

use super::compile::{NamespaceScope, Peers, PortSpec, Ports, Rule};
use super::model::{Endpoint, FlowQuery, NodeInfo, PodInfo};
use super::population::PodEntry;
use super::snapshot::PolicySnapshot;
use super::tier::{NetworkPolicyTier, Tier, TierPolicy};
use observer_api::verdict::{
    Category, DirectionDecision, DirectionVerdict, PolicyKind, PolicyRef, RuleAction,
    Tier as TierName, TierDecision, Verdict,
};

/// A verdict borrowing its names from the snapshot.
type Judged<'s> = Verdict<&'s str>;
/// A direction's verdict borrowing its names from the snapshot.
type JudgedDirection<'s> = DirectionVerdict<&'s str>;

/// Evaluates a flow and explains it: every allowing rule, or every isolating policy.
///
/// Allocates only for the reference lists it returns.
pub fn evaluate<'s>(snapshot: &'s PolicySnapshot, query: &FlowQuery) -> Verdict<&'s str> {
    run(snapshot, query, true)
}

/// Allocation-free summary, from [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Same meaning as [`Verdict::allowed`].
    pub allowed: bool,
    /// Same meaning as [`Verdict::category`].
    pub category: Category,
}

/// Like [`evaluate`] but stops at the first allowing rule and never allocates.
pub fn decide(snapshot: &PolicySnapshot, query: &FlowQuery) -> Decision {
    let v = run(snapshot, query, false);
    Decision {
        allowed: v.allowed,
        category: v.category,
    }
}

/// One end of the flow with its snapshot data looked up.
#[derive(Clone, Copy)]
enum Side<'s> {
    Pod {
        id: u32,
        entry: &'s PodEntry,
        ip: Option<IpAddr>,
    },
    Node {
        id: u32,
        info: &'s NodeInfo,
        ip: Option<IpAddr>,
    },
    External(IpAddr),
}

impl<'s> Side<'s> {
    fn resolve(snap: &'s PolicySnapshot, e: &Endpoint) -> Option<Self> {
        Some(match *e {
            Endpoint::Pod { id, ip } => Side::Pod {
                id: id.0,
                entry: snap.population.pods.get(id.0 as usize)?,
                ip,
            },
            Endpoint::Node { id, ip } => Side::Node {
                id: id.0,
                info: snap.population.nodes.get(id.0 as usize)?,
                ip,
            },
            Endpoint::External(ip) => Side::External(ip),
        })
    }

    fn pod(&self) -> Option<&'s PodEntry> {
        match self {
            Side::Pod { entry, .. } => Some(entry),
            _ => None,
        }
    }

    fn host_network(&self) -> bool {
        self.pod().is_some_and(|p| p.info.host_network)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

fn run<'s>(snap: &'s PolicySnapshot, q: &FlowQuery, explain: bool) -> Judged<'s> {
    let (Some(src), Some(dst)) = (Side::resolve(snap, &q.src), Side::resolve(snap, &q.dst)) else {
        // An id from another snapshot: nothing can be said about it.
        return Verdict {
            allowed: false,
            category: Category::Undefined,
            ingress: DirectionVerdict::without_tiers(DirectionDecision::NotApplicable),
            egress: DirectionVerdict::without_tiers(DirectionDecision::NotApplicable),
        };
    };
    let node_exempt = match (src, dst) {
        (Side::Node { id, .. }, Side::Pod { entry, .. }) => entry.node == Some(id),
        _ => false,
    };
    let egress = match src {
        Side::Pod { id, .. } => direction(snap, id, &dst, Dir::Egress, q, explain),
        _ => DirectionVerdict::without_tiers(DirectionDecision::NotApplicable),
    };
    let ingress = match dst {
        Side::Pod { .. } if node_exempt => {
            DirectionVerdict::without_tiers(DirectionDecision::Exempt)
        }
        Side::Pod { id, .. } => direction(snap, id, &src, Dir::Ingress, q, explain),
        _ => DirectionVerdict::without_tiers(DirectionDecision::NotApplicable),
    };
    let category = if src.host_network() || dst.host_network() {
        Category::Undefined
    } else if node_exempt {
        Category::NodeExempt
    } else {
        Category::Decided
    };
    Verdict {
        allowed: category != Category::Undefined && ingress.permits() && egress.permits(),
        category,
        ingress,
        egress,
    }
}

/// Runs the tiers in order; the first that is not "not isolated" decides.
fn direction<'s>(
    snap: &'s PolicySnapshot,
    subject: u32,
    peer: &Side<'s>,
    dir: Dir,
    q: &FlowQuery,
    explain: bool,
) -> JudgedDirection<'s> {
    for tier in &snap.tiers {
        let v = match tier {
            Tier::NetworkPolicy(t) => netpol(snap, t, subject, peer, dir, q, explain),
        };
        if v.decision != DirectionDecision::NotIsolated {
            return v;
        }
    }
    DirectionVerdict::without_tiers(DirectionDecision::NotIsolated)
}

/// A NetworkPolicy tier decision.
fn np_decision(
    tp: &TierPolicy,
    rule_index: Option<usize>,
    action: RuleAction,
) -> TierDecision<&str> {
    TierDecision {
        tier: TierName::NetworkPolicy.name(),
        policy: PolicyRef {
            kind: PolicyKind::NetworkPolicy,
            namespace: Some(&tp.policy.namespace),
            name: &tp.policy.name,
        },
        rule_index,
        action,
    }
}

fn netpol<'s>(
    snap: &'s PolicySnapshot,
    tier: &'s NetworkPolicyTier,
    subject: u32,
    peer: &Side<'s>,
    dir: Dir,
    q: &FlowQuery,
    explain: bool,
) -> JudgedDirection<'s> {
    let lists = match dir {
        Dir::Ingress => &tier.ingress,
        Dir::Egress => &tier.egress,
    };
    let selecting: &[u32] = lists.get(subject as usize).map_or(&[], |l| l);
    let not_isolated = || DirectionVerdict::without_tiers(DirectionDecision::NotIsolated);
    if selecting.is_empty() {
        return not_isolated();
    }
    let Some(subject_pod) = snap.population.pods.get(subject as usize) else {
        return not_isolated();
    };
    // Named ports resolve on the destination: the subject for ingress, the peer for egress.
    let port_owner = match dir {
        Dir::Ingress => Some(&*subject_pod.info),
        Dir::Egress => peer.pod().map(|p| &*p.info),
    };
    let policies = selecting
        .iter()
        .filter_map(|&i| tier.policies.get(i as usize));
    let mut allowed = Vec::new();
    let mut any = false;
    for tp in policies.clone() {
        let rules = match dir {
            Dir::Ingress => tp.policy.ingress.as_deref(),
            Dir::Egress => tp.policy.egress.as_deref(),
        };
        for (rule_index, rule) in rules.unwrap_or_default().iter().enumerate() {
            if !rule_matches(snap, tp.ns, rule, peer, port_owner, q) {
                continue;
            }
            if !explain {
                return DirectionVerdict::without_tiers(DirectionDecision::Allowed);
            }
            any = true;
            allowed.push(np_decision(tp, Some(rule_index), RuleAction::Allow));
        }
    }
    if any {
        return DirectionVerdict {
            decision: DirectionDecision::Allowed,
            tiers: allowed,
        };
    }
    // Isolated and no rule allows: each selecting policy's implicit default denies.
    let tiers = if explain {
        policies
            .map(|tp| np_decision(tp, None, RuleAction::Deny))
            .collect()
    } else {
        Vec::new()
    };
    DirectionVerdict {
        decision: DirectionDecision::Denied,
        tiers,
    }
}

fn rule_matches(
    snap: &PolicySnapshot,
    policy_ns: u32,
    rule: &Rule,
    peer: &Side<'_>,
    port_owner: Option<&PodInfo>,
    q: &FlowQuery,
) -> bool {
    ports_match(&rule.ports, port_owner, q) && peer_matches(snap, policy_ns, &rule.peers, peer)
}

fn ports_match(ports: &Ports, owner: Option<&PodInfo>, q: &FlowQuery) -> bool {
    let Ports::Listed(list) = ports else {
        return true;
    };
    list.iter().any(|pm| {
        pm.protocol == q.protocol
            && match &pm.port {
                PortSpec::All => true,
                PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&q.port),
                // Name AND protocol must match a container port; non-pods have no names.
                PortSpec::Named(name) => owner.is_some_and(|pod| {
                    pod.ports.iter().any(|cp| {
                        cp.port == q.port
                            && cp.protocol == pm.protocol
                            && cp.name.as_deref() == Some(name.as_str())
                    })
                }),
            }
    })
}

fn peer_matches(snap: &PolicySnapshot, policy_ns: u32, peers: &Peers, peer: &Side<'_>) -> bool {
    let Peers::Listed { pods, ips } = peers else {
        return true;
    };
    if !ips.is_empty() && ip_matches(ips, peer) {
        return true;
    }
    // Selector peers only ever match pods, never nodes or outside IPs.
    let Some(pod) = peer.pod() else {
        return false;
    };
    pods.iter().any(|pp| {
        let ns_ok = match &pp.namespaces {
            NamespaceScope::Own => pod.ns == policy_ns,
            NamespaceScope::Selected(sel) => snap
                .population
                .namespaces
                .get(pod.ns as usize)
                .is_some_and(|ns| sel.matches(&ns.info.labels)),
        };
        ns_ok && pp.pods.matches(&pod.info.labels)
    })
}

/// ipBlocks see the flow's address; for a pod or node named without one, any of its IPs.
fn ip_matches(ips: &super::ipblock::IpSet, side: &Side<'_>) -> bool {
    match *side {
        Side::External(ip) | Side::Pod { ip: Some(ip), .. } | Side::Node { ip: Some(ip), .. } => {
            ips.contains(ip)
        }
        Side::Pod {
            entry, ip: None, ..
        } => entry.info.ips.iter().any(|&ip| ips.contains(ip)),
        Side::Node { info, ip: None, .. } => info.ips.iter().any(|&ip| ips.contains(ip)),
    }
}
