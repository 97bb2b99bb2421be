//! [`PolicySnapshot`]: the immutable compiled index that evaluation reads.
//!
//! A snapshot is a plain value (`Send + Sync`, no interior mutability). To change anything,
//! edit a [`SnapshotInput`] (whose parts are `Arc`s, so cloning it is cheap) and build a new
//! snapshot; a daemon can publish it through `ArcSwap<PolicySnapshot>`.

use std::net::IpAddr;

use super::input::SnapshotInput;
use super::model::{Endpoint, NamespaceInfo, NodeId, NodeInfo, PodId, PodInfo};
use super::population::Population;
use super::tier::{NetworkPolicyTier, Tier};

/// Immutable, compiled view of namespaces, pods, nodes and policy tiers.
#[derive(Debug)]
pub struct PolicySnapshot {
    /// Namespaces, pods and nodes, built first.
    pub(crate) population: Population,
    /// Policy tiers in evaluation order, built from the population; see the module docs
    /// of [`super`].
    pub(crate) tiers: Vec<Tier>,
}

impl PolicySnapshot {
    /// Builds the index. Cost is linear in objects plus, per policy, the pods of its
    /// namespace (selection is precomputed so evaluation never scans policies).
    pub fn build(input: &SnapshotInput) -> Self {
        let population = Population::build(input);
        let tier = NetworkPolicyTier::build(&population, &input.policies);
        Self {
            population,
            tiers: vec![Tier::NetworkPolicy(tier)],
        }
    }

    /// Resolves an address seen on the wire: a pod, a node, or outside the cluster.
    pub fn resolve_ip(&self, ip: IpAddr) -> Endpoint {
        self.population.resolve_ip(ip)
    }

    /// Looks a pod up by namespace and name.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.population.pod_id(namespace, name)
    }

    /// Looks a node up by name.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.population.node_id(name)
    }

    /// The pod behind an id, if the id belongs to this snapshot.
    pub fn pod(&self, id: PodId) -> Option<&PodInfo> {
        self.population.pod(id)
    }

    /// The node behind an id, if the id belongs to this snapshot.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.population.node(id)
    }

    /// A namespace by name (including ones assumed from pods and policies).
    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.population.namespace(name)
    }

    /// Number of pods.
    pub fn pod_count(&self) -> usize {
        self.population.pods.len()
    }

    /// Number of distinct policies across all tiers.
    pub fn policy_count(&self) -> usize {
        self.tiers.iter().map(Tier::policy_count).sum()
    }
}
