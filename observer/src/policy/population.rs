//! The pod population a snapshot indexes: namespaces, pods and nodes by name and by IP.
//! Built first, from a [`SnapshotInput`]; the policy tiers are built from it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::Arc;

use super::input::SnapshotInput;
use super::model::{Endpoint, Labels, NamespaceInfo, NodeId, NodeInfo, PodId, PodInfo};

/// A namespace and its pods.
#[derive(Debug)]
pub(crate) struct NamespaceEntry {
    pub(crate) info: Arc<NamespaceInfo>,
    pub(crate) pods: Vec<u32>,
    by_name: HashMap<String, u32>,
}

/// A pod with its namespace and node resolved to indexes.
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

/// Namespaces, pods and nodes, indexed by name and address.
#[derive(Debug, Default)]
pub(crate) struct Population {
    pub(crate) namespaces: Vec<NamespaceEntry>,
    ns_by_name: HashMap<String, u32>,
    pub(crate) pods: Vec<PodEntry>,
    pub(crate) nodes: Vec<Arc<NodeInfo>>,
    node_by_name: HashMap<String, u32>,
    by_ip: HashMap<IpAddr, IpOwner>,
}

impl Population {
    /// Indexes the input's namespaces, nodes and pods, and assumes the namespaces its
    /// policies name.
    pub(crate) fn build(input: &SnapshotInput) -> Self {
        let mut snap = Self::default();
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
    pub(crate) fn resolve_ip(&self, ip: IpAddr) -> Endpoint {
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
    pub(crate) fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        let ns = self
            .namespaces
            .get(*self.ns_by_name.get(namespace)? as usize)?;
        ns.by_name.get(name).map(|&i| PodId(i))
    }

    /// Looks a node up by name.
    pub(crate) fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_by_name.get(name).map(|&i| NodeId(i))
    }

    /// The pod behind an id, if the id belongs to this snapshot.
    pub(crate) fn pod(&self, id: PodId) -> Option<&PodInfo> {
        self.pods.get(id.0 as usize).map(|p| &*p.info)
    }

    /// The node behind an id, if the id belongs to this snapshot.
    pub(crate) fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id.0 as usize).map(|n| &**n)
    }

    /// A namespace by name (including ones assumed from pods and policies).
    pub(crate) fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        let id = *self.ns_by_name.get(name)?;
        self.namespaces.get(id as usize).map(|n| &*n.info)
    }
}
