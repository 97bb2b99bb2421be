//! [`PolicySnapshot`]: the immutable compiled index that evaluation reads.
//!
//! A snapshot is a plain value (`Send + Sync`, no interior mutability). To change anything,
//! edit a [`SnapshotInput`] (whose parts are `Arc`s, so cloning it is cheap) and build a new
//! snapshot; a daemon can publish it through `ArcSwap<PolicySnapshot>`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use thiserror::Error;

use super::compile::{CompiledPolicy, compile};
use super::error::FieldError;
use super::model::{Endpoint, Labels, NamespaceInfo, NodeId, NodeInfo, PodId, PodInfo};
use super::tier::{NetworkPolicyTier, Tier};

/// Everything a snapshot is built from. Later duplicates (same namespace/name) replace
/// earlier ones, so an updated policy can simply be pushed.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInput {
    /// Namespaces. Namespaces referenced by pods or policies but absent here are assumed
    /// to exist with only the `kubernetes.io/metadata.name` label.
    pub namespaces: Vec<Arc<NamespaceInfo>>,
    /// Pods.
    pub pods: Vec<Arc<PodInfo>>,
    /// Nodes (optional; needed to recognise node→local-pod traffic by IP).
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Compiled NetworkPolicies.
    pub policies: Vec<Arc<CompiledPolicy>>,
}

/// An object that could not be converted; it is left out of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} {name}: {error}")]
pub struct ObjectError {
    /// Object kind, e.g. `NetworkPolicy`.
    pub kind: &'static str,
    /// `namespace/name` or `name`, as far as known.
    pub name: String,
    /// The field that is wrong.
    #[source]
    pub error: FieldError,
}

impl SnapshotInput {
    /// Converts k8s-openapi objects, skipping (and returning errors for) invalid ones.
    pub fn from_objects(
        namespaces: &[Namespace],
        pods: &[Pod],
        nodes: &[Node],
        policies: &[NetworkPolicy],
    ) -> (Self, Vec<ObjectError>) {
        let mut errors = Vec::new();
        let mut input = Self::default();
        let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let n = m.name.as_deref().unwrap_or("<unnamed>");
            m.namespace
                .as_ref()
                .map_or(n.to_owned(), |ns| format!("{ns}/{n}"))
        };
        let mut push_err = |kind, name, error| errors.push(ObjectError { kind, name, error });
        for o in namespaces {
            match NamespaceInfo::from_k8s(o) {
                Ok(v) => input.namespaces.push(Arc::new(v)),
                Err(e) => push_err("Namespace", name(&o.metadata), e),
            }
        }
        for o in pods {
            match PodInfo::from_k8s(o) {
                Ok(v) => input.pods.push(Arc::new(v)),
                Err(e) => push_err("Pod", name(&o.metadata), e),
            }
        }
        for o in nodes {
            match NodeInfo::from_k8s(o) {
                Ok(v) => input.nodes.push(Arc::new(v)),
                Err(e) => push_err("Node", name(&o.metadata), e),
            }
        }
        for o in policies {
            match compile(o) {
                Ok(v) => input.policies.push(Arc::new(v)),
                Err(e) => push_err("NetworkPolicy", name(&o.metadata), e),
            }
        }
        (input, errors)
    }
}

#[derive(Debug)]
pub(crate) struct NamespaceEntry {
    pub(crate) info: Arc<NamespaceInfo>,
    pub(crate) pods: Vec<u32>,
    by_name: HashMap<String, u32>,
}

#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) info: Arc<PodInfo>,
    pub(crate) ns: u32,
    pub(crate) node: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum IpOwner {
    Pod(u32),
    Node(u32),
}

/// Immutable, compiled view of namespaces, pods, nodes and policy tiers.
#[derive(Debug)]
pub struct PolicySnapshot {
    pub(crate) namespaces: Vec<NamespaceEntry>,
    ns_by_name: HashMap<String, u32>,
    pub(crate) pods: Vec<PodEntry>,
    pub(crate) nodes: Vec<Arc<NodeInfo>>,
    node_by_name: HashMap<String, u32>,
    by_ip: HashMap<IpAddr, IpOwner>,
    /// Policy tiers in evaluation order; see the module docs of [`super`].
    pub(crate) tiers: Vec<Tier>,
}

impl PolicySnapshot {
    /// Builds the index. Cost is linear in objects plus, per policy, the pods of its
    /// namespace (selection is precomputed so evaluation never scans policies).
    pub fn build(input: &SnapshotInput) -> Self {
        let mut snap = Self {
            namespaces: Vec::new(),
            ns_by_name: HashMap::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            node_by_name: HashMap::new(),
            by_ip: HashMap::new(),
            tiers: Vec::new(),
        };
        for ns in &input.namespaces {
            let id = snap.namespace_id(&ns.name);
            if let Some(e) = snap.namespaces.get_mut(id as usize) {
                e.info = ns.clone();
            }
        }
        for node in &input.nodes {
            match snap.node_by_name.entry(node.name.clone()) {
                Entry::Occupied(e) => {
                    if let Some(slot) = snap.nodes.get_mut(*e.get() as usize) {
                        *slot = node.clone();
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(snap.nodes.len() as u32);
                    snap.nodes.push(node.clone());
                }
            }
        }
        for pod in &input.pods {
            snap.add_pod(pod);
        }
        snap.index_ips();
        for p in &input.policies {
            snap.namespace_id(&p.namespace);
        }
        let tier = NetworkPolicyTier::build(&snap, &input.policies);
        snap.tiers.push(Tier::NetworkPolicy(tier));
        snap
    }

    /// The id of an existing namespace.
    pub(crate) fn namespace_index(&self, name: &str) -> Option<u32> {
        self.ns_by_name.get(name).copied()
    }

    /// Returns the id of `name`, creating a namespace with default labels if unknown.
    fn namespace_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ns_by_name.get(name) {
            return id;
        }
        let id = self.namespaces.len() as u32;
        self.ns_by_name.insert(name.to_owned(), id);
        self.namespaces.push(NamespaceEntry {
            info: Arc::new(NamespaceInfo::new(name, Labels::new())),
            pods: Vec::new(),
            by_name: HashMap::new(),
        });
        id
    }

    fn add_pod(&mut self, pod: &Arc<PodInfo>) {
        let ns = self.namespace_id(&pod.namespace);
        let node = pod
            .node
            .as_ref()
            .and_then(|n| self.node_by_name.get(n).copied());
        let entry = PodEntry {
            info: pod.clone(),
            ns,
            node,
        };
        let Some(ns_entry) = self.namespaces.get_mut(ns as usize) else {
            return;
        };
        match ns_entry.by_name.entry(pod.name.clone()) {
            Entry::Occupied(e) => {
                if let Some(slot) = self.pods.get_mut(*e.get() as usize) {
                    *slot = entry;
                }
            }
            Entry::Vacant(e) => {
                let id = self.pods.len() as u32;
                e.insert(id);
                ns_entry.pods.push(id);
                self.pods.push(entry);
            }
        }
    }

    /// Maps addresses to owners. Ordinary pods win over nodes, and nodes over hostNetwork
    /// pods (which share their node's IPs): traffic from a node IP is node traffic.
    /// Between two pods claiming one IP, the first in input order wins.
    fn index_ips(&mut self) {
        let mut owners = Vec::new();
        for host_network in [false, true] {
            if host_network {
                for (i, n) in self.nodes.iter().enumerate() {
                    owners.extend(n.ips.iter().map(|ip| (*ip, IpOwner::Node(i as u32))));
                }
            }
            for (i, p) in self.pods.iter().enumerate() {
                if p.info.host_network == host_network {
                    owners.extend(p.info.ips.iter().map(|ip| (*ip, IpOwner::Pod(i as u32))));
                }
            }
        }
        for (ip, owner) in owners {
            self.by_ip.entry(ip.to_canonical()).or_insert(owner);
        }
    }

    /// Resolves an address seen on the wire: a pod, a node, or outside the cluster.
    pub fn resolve_ip(&self, ip: IpAddr) -> Endpoint {
        let ip = ip.to_canonical();
        match self.by_ip.get(&ip) {
            Some(IpOwner::Pod(i)) => Endpoint::Pod {
                id: PodId(*i),
                ip: Some(ip),
            },
            Some(IpOwner::Node(i)) => Endpoint::Node {
                id: NodeId(*i),
                ip: Some(ip),
            },
            None => Endpoint::External(ip),
        }
    }

    /// Looks a pod up by namespace and name.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        let ns = self
            .namespaces
            .get(*self.ns_by_name.get(namespace)? as usize)?;
        ns.by_name.get(name).map(|&i| PodId(i))
    }

    /// Looks a node up by name.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_by_name.get(name).map(|&i| NodeId(i))
    }

    /// The pod behind an id, if the id belongs to this snapshot.
    pub fn pod(&self, id: PodId) -> Option<&PodInfo> {
        self.pods.get(id.0 as usize).map(|p| &*p.info)
    }

    /// The node behind an id, if the id belongs to this snapshot.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id.0 as usize).map(|n| &**n)
    }

    /// A namespace by name (including ones assumed from pods and policies).
    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        let id = *self.ns_by_name.get(name)?;
        self.namespaces.get(id as usize).map(|n| &*n.info)
    }

    /// Number of pods.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Number of distinct policies across all tiers.
    pub fn policy_count(&self) -> usize {
        self.tiers.iter().map(Tier::policy_count).sum()
    }
}
