//! Which peers a rule can match, by namespace, computed once per world: the walk skips a
//! rule whose peer end cannot be the flow's peer with one bit test, instead of evaluating
//! its selectors. With many policies selecting a pod (forty default-deny-and-allow
//! policies in a namespace, a hundred cluster policies over `env == prod`), most of their
//! rules name peers elsewhere, and the cost of a flow stops growing with them.
//!
//! Conservative: a rule is skipped only when its peer criteria need a pod in a namespace
//! the peer is not in, or need a pod and the peer is none; everything else is still
//! checked in full by `matching::rule_matches`.

use std::collections::HashMap;

use super::evaluate::End;
use super::matching::in_scope;
use super::model::{EndMatch, NamespaceScope, Peer, Policy, World};

/// The peers a rule's peer end can match, while the index is built.
#[derive(Debug, Clone, PartialEq)]
struct PeerScope {
    /// Nodes and outside addresses may match.
    non_pods: bool,
    /// Pods of these namespaces (by index) may match; `None`: of every namespace.
    namespaces: Option<Box<[u64]>>,
}

impl PeerScope {
    const ANYTHING: Self = Self {
        non_pods: true,
        namespaces: None,
    };

    /// Both scopes' conditions (the criteria of one end are ANDed).
    fn and(self, other: Self) -> Self {
        let namespaces = match (self.namespaces, other.namespaces) {
            (Some(a), Some(b)) => Some(a.iter().zip(b.iter()).map(|(x, y)| x & y).collect()),
            (a, b) => a.or(b),
        };
        Self {
            non_pods: self.non_pods && other.non_pods,
            namespaces,
        }
    }

    /// Either scope's peers (peers of a list are ORed).
    fn or(self, other: Self) -> Self {
        let namespaces = match (self.namespaces, other.namespaces) {
            (Some(a), Some(b)) => Some(a.iter().zip(b.iter()).map(|(x, y)| x | y).collect()),
            _ => None,
        };
        Self {
            non_pods: self.non_pods || other.non_pods,
            namespaces,
        }
    }
}

/// A rule's peer scope as the walk reads it: small and flat, so checking it costs no
/// more than a load from an array that stays in cache.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scope {
    non_pods: bool,
    pods: Pods,
}

/// The namespaces whose pods a rule's peer end can match.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pods {
    /// No pod.
    None,
    /// Pods of every namespace.
    All,
    /// Pods of one namespace (a namespaced policy's own, most often).
    One(u32),
    /// Pods of the namespaces of a set (an index in `PeerIndex::sets`).
    Set(u32),
}

/// Per policy and direction, per rule: the peers it can match.
#[derive(Debug, Default)]
pub(super) struct PeerIndex {
    /// Per pod of the world: its namespace's index.
    pod_namespace: Vec<u32>,
    /// Per policy: where its egress rules' scopes start, its ingress rules' start, and
    /// where they end, in `scopes`.
    offsets: Vec<[u32; 3]>,
    /// Every rule's scope, policy after policy.
    scopes: Vec<Scope>,
    /// Namespace sets, each distinct one once.
    sets: Vec<Box<[u64]>>,
}

impl PeerIndex {
    /// The index of `policies`' rules in `world`, by the namespaces `World::prepare`
    /// numbered (an unprepared world gets an index that skips nothing).
    pub(super) fn build(world: &World, policies: &[Policy]) -> Self {
        let names = &world.derived.namespace_index;
        let mut cache = ScopeCache {
            world,
            names,
            words: names.len().div_ceil(64),
            evaluated: HashMap::new(),
        };
        let mut index = Self {
            pod_namespace: world.derived.pod_namespace.clone(),
            ..Self::default()
        };
        let mut set_ids: HashMap<Box<[u64]>, u32> = HashMap::new();
        for policy in policies {
            let egress_start = index.scopes.len() as u32;
            // The peer is the destination of an egress rule, the source of an ingress one.
            let ends = (policy.egress.iter().map(|r| &r.destination))
                .chain(policy.ingress.iter().map(|r| &r.source));
            for end in ends {
                let scope = cache.end(end);
                let pods = match scope.namespaces {
                    None => Pods::All,
                    Some(bits) => match bits.iter().map(|w| w.count_ones()).sum::<u32>() {
                        0 => Pods::None,
                        1 => Pods::One(
                            bits.iter()
                                .enumerate()
                                .find(|(_, w)| **w != 0)
                                .map_or(0, |(i, w)| i as u32 * 64 + w.trailing_zeros()),
                        ),
                        _ => {
                            let next = index.sets.len() as u32;
                            let id = *set_ids.entry(bits.clone()).or_insert(next);
                            if id == next {
                                index.sets.push(bits);
                            }
                            Pods::Set(id)
                        }
                    },
                };
                index.scopes.push(Scope {
                    non_pods: scope.non_pods,
                    pods,
                });
            }
            let ingress_start = egress_start + policy.egress.len() as u32;
            index
                .offsets
                .push([egress_start, ingress_start, index.scopes.len() as u32]);
        }
        index
    }

    /// How many rules policy `policy` has for the direction (`None`: not indexed).
    pub(super) fn rule_count(&self, policy: usize, ingress: bool) -> Option<usize> {
        let &[egress, ingress_start, end] = self.offsets.get(policy)?;
        Some(if ingress {
            end - ingress_start
        } else {
            ingress_start - egress
        } as usize)
    }

    /// Whether rule `rule` (position in its list) of policy `policy` can match `peer`; true
    /// for anything the index does not cover.
    pub(super) fn may_match(&self, policy: usize, ingress: bool, rule: usize, peer: End) -> bool {
        let Some(&[egress, ingress_start, end]) = self.offsets.get(policy) else {
            return true;
        };
        let start = if ingress { ingress_start } else { egress };
        let at = start as usize + rule;
        let limit = if ingress { end } else { ingress_start } as usize;
        let Some(scope) = self.scopes.get(at).filter(|_| at < limit) else {
            return true;
        };
        match peer {
            End::Pod(pod) => match (scope.pods, self.pod_namespace.get(pod)) {
                (_, None) | (Pods::All, _) => true,
                (Pods::None, _) => false,
                (Pods::One(ns), Some(&mine)) => ns == mine,
                (Pods::Set(id), Some(&mine)) => self.sets.get(id as usize).is_none_or(|bits| {
                    bits.get(mine as usize / 64)
                        .is_some_and(|word| word & (1 << (mine % 64)) != 0)
                }),
            },
            End::Node(..) | End::Outside(_) => scope.non_pods,
        }
    }
}

/// Evaluates namespace scopes over the world's namespaces, each distinct one once.
struct ScopeCache<'a> {
    world: &'a World,
    names: &'a HashMap<String, u32>,
    words: usize,
    /// By the scope's printed form: many rules repeat the same selector.
    evaluated: HashMap<String, Box<[u64]>>,
}

impl ScopeCache<'_> {
    fn end(&mut self, end: &EndMatch) -> PeerScope {
        let mut scope = PeerScope::ANYTHING;
        if let Some(peers) = &end.peers {
            let union = peers
                .iter()
                .map(|peer| match peer {
                    Peer::Pods { namespaces, .. } => self.pods_in(namespaces),
                    Peer::Addresses(_) => PeerScope::ANYTHING,
                    Peer::Nodes(_) => PeerScope {
                        non_pods: true,
                        namespaces: Some(vec![0; self.words].into()),
                    },
                })
                .reduce(PeerScope::or);
            // An empty list matches nothing; leave that to the full check.
            if let Some(union) = union {
                scope = scope.and(union);
            }
        }
        if let Some(calico) = end.calico.as_ref().filter(|c| c.pods_only) {
            let pods = match &calico.scope {
                Some(namespaces) => self.pods_in(namespaces),
                None => PeerScope {
                    non_pods: false,
                    namespaces: None,
                },
            };
            scope = scope.and(pods);
        }
        scope
    }

    /// Pods of the namespaces in `scope`.
    fn pods_in(&mut self, scope: &NamespaceScope) -> PeerScope {
        let namespaces = match scope {
            NamespaceScope::All => None,
            NamespaceScope::Only(name) => {
                let mut bits = vec![0u64; self.words];
                if let Some(&i) = self.names.get(name) {
                    bits[i as usize / 64] |= 1 << (i % 64);
                }
                Some(bits.into())
            }
            _ => {
                let key = format!("{scope:?}");
                let bits = match self.evaluated.get(&key) {
                    Some(bits) => bits.clone(),
                    None => {
                        let mut bits = vec![0u64; self.words];
                        for (name, &i) in self.names {
                            if in_scope(self.world, scope, name) {
                                bits[i as usize / 64] |= 1 << (i % 64);
                            }
                        }
                        let bits: Box<[u64]> = bits.into();
                        self.evaluated.insert(key, bits.clone());
                        bits
                    }
                };
                Some(bits)
            }
        };
        PeerScope {
            non_pods: false,
            namespaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tiered::compile_objects;
    use crate::policy::tiered::model::{WorldNamespace, WorldPod};

    fn pod(namespace: &str) -> WorldPod {
        WorldPod {
            namespace: namespace.into(),
            name: format!("{namespace}-pod"),
            labels: Default::default(),
            ip: None,
            ports: Vec::new(),
            service_account: "default".into(),
        }
    }

    #[test]
    fn a_rule_is_skipped_only_for_peers_it_cannot_match() {
        let mut world = World::default();
        for (name, team) in [("a", "x"), ("b", "y"), ("c", "x")] {
            world.namespaces.push(WorldNamespace {
                name: name.into(),
                labels: [("team".to_string(), team.to_string())].into(),
            });
        }
        world.pods = vec![pod("a"), pod("b"), pod("c")];
        world.prepare();
        let policy = serde_json::json!({"apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "a"},
            "spec": {"podSelector": {}, "ingress": [
                {"from": [{"podSelector": {}}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]},
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                {"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}});
        let compiled = compile_objects(&[policy]);
        assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
        let index = PeerIndex::build(&world, &compiled.policies);
        let outside = End::Outside("10.1.2.3".parse().expect("an address"));
        let may = |rule: usize| {
            [End::Pod(0), End::Pod(1), End::Pod(2), outside]
                .map(|peer| index.may_match(0, true, rule, peer))
        };
        assert_eq!(may(0), [true, false, false, false], "own namespace only");
        assert_eq!(may(1), [true, false, true, false], "team x namespaces");
        assert_eq!(may(2), [true; 4], "addresses: anything");
        assert_eq!(may(3), [true; 4], "either peer");
        assert!(
            index.may_match(0, false, 0, outside),
            "no such rule: not skipped"
        );
    }
}
