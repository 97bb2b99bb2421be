//! Plain-data cluster state and pure helpers over it.

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Namespace, Node, Pod, Service},
    discovery::v1::EndpointSlice,
    networking::v1::NetworkPolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// One immutable view of the cluster, as published by a
/// [`ClusterSource`](super::source::ClusterSource).
///
/// Objects are trimmed (no `managedFields`, no `resourceVersion`, most
/// annotations removed) and each list is sorted by `(namespace, name)` so that
/// two snapshots of the same cluster compare equal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterObjects {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All pods (pending pods without an IP included).
    pub pods: Vec<Pod>,
    /// All nodes.
    pub nodes: Vec<Node>,
    /// All `networking.k8s.io/v1` network policies.
    pub policies: Vec<NetworkPolicy>,
    /// All services.
    pub services: Vec<Service>,
    /// All `discovery.k8s.io/v1` endpoint slices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// All replica sets, needed to map pods to their Deployment.
    pub replica_sets: Vec<ReplicaSet>,
    /// All jobs, needed to map pods to their CronJob.
    pub jobs: Vec<Job>,
}

impl ClusterObjects {
    /// Sorts every list by `(namespace, name)`, making equality independent of
    /// the order in which objects arrived.
    pub fn sort(&mut self) {
        sort_by_key(&mut self.namespaces, |o| &o.metadata);
        sort_by_key(&mut self.pods, |o| &o.metadata);
        sort_by_key(&mut self.nodes, |o| &o.metadata);
        sort_by_key(&mut self.policies, |o| &o.metadata);
        sort_by_key(&mut self.services, |o| &o.metadata);
        sort_by_key(&mut self.endpoint_slices, |o| &o.metadata);
        sort_by_key(&mut self.replica_sets, |o| &o.metadata);
        sort_by_key(&mut self.jobs, |o| &o.metadata);
    }

    /// Total number of objects of all kinds.
    pub fn len(&self) -> usize {
        self.namespaces.len()
            + self.pods.len()
            + self.nodes.len()
            + self.policies.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.replica_sets.len()
            + self.jobs.len()
    }

    /// True when no object of any kind is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sort_by_key<T>(items: &mut [T], meta: impl Fn(&T) -> &ObjectMeta) {
    items.sort_by(|a, b| {
        let (a, b) = (meta(a), meta(b));
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
}

/// The kind of controller that ultimately owns a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment (found through its ReplicaSet).
    Deployment,
    /// `apps/v1` ReplicaSet without a Deployment owner.
    ReplicaSet,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch/v1` Job without a CronJob owner.
    Job,
    /// `batch/v1` CronJob (found through its Job).
    CronJob,
    /// Any other owner kind (ReplicationController, operators' CRDs, ...),
    /// kept verbatim.
    Other(String),
}

impl WorkloadKind {
    /// Maps an ownerReference `kind` string to a workload kind.
    pub fn from_kind(kind: &str) -> Self {
        match kind {
            "Deployment" => Self::Deployment,
            "ReplicaSet" => Self::ReplicaSet,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The Kubernetes kind string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Deployment => "Deployment",
            Self::ReplicaSet => "ReplicaSet",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Other(kind) => kind,
        }
    }
}

/// The workload a pod belongs to, e.g. `Deployment/web`. The namespace is the
/// pod's own: owner references never cross namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Controller kind.
    pub kind: WorkloadKind,
    /// Controller name.
    pub name: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// Resolves the workload owning `pod`, following one extra hop where the
/// direct owner is itself managed (ReplicaSet → Deployment, Job → CronJob).
///
/// Returns `None` for a bare pod. When the intermediate object is not (yet)
/// in `objects`, the direct owner is returned: a ReplicaSet name is still a
/// better identity than nothing. Never panics on malformed owner references.
/// For many pods, build an [`OwnerIndex`] once instead.
pub fn workload_of(pod: &Pod, objects: &ClusterObjects) -> Option<Workload> {
    OwnerIndex::new(objects).workload_of(pod)
}

/// ReplicaSets and Jobs by (namespace, name), so resolving every pod's workload costs one
/// hash lookup per pod rather than a scan.
pub struct OwnerIndex<'a> {
    replica_sets: HashMap<(Option<&'a str>, &'a str), &'a ObjectMeta>,
    jobs: HashMap<(Option<&'a str>, &'a str), &'a ObjectMeta>,
}

impl<'a> OwnerIndex<'a> {
    /// Indexes the intermediate owners of `objects`.
    pub fn new(objects: &'a ClusterObjects) -> Self {
        fn index<'a, T>(
            items: &'a [T],
            meta: impl Fn(&'a T) -> &'a ObjectMeta,
        ) -> HashMap<(Option<&'a str>, &'a str), &'a ObjectMeta> {
            items
                .iter()
                .map(meta)
                .filter_map(|m| Some(((m.namespace.as_deref(), m.name.as_deref()?), m)))
                .collect()
        }
        Self {
            replica_sets: index(&objects.replica_sets, |r| &r.metadata),
            jobs: index(&objects.jobs, |j| &j.metadata),
        }
    }

    /// See [`workload_of`].
    pub fn workload_of(&self, pod: &Pod) -> Option<Workload> {
        let owner = controller_of(&pod.metadata)?;
        let namespace = pod.metadata.namespace.as_deref();
        let direct = Workload {
            kind: WorkloadKind::from_kind(&owner.kind),
            name: owner.name.clone(),
        };
        let (table, parent_kind) = match direct.kind {
            WorkloadKind::ReplicaSet => (&self.replica_sets, "Deployment"),
            WorkloadKind::Job => (&self.jobs, "CronJob"),
            _ => return Some(direct),
        };
        let parent = table
            .get(&(namespace, owner.name.as_str()))
            .filter(|m| same_object(m, owner))
            .and_then(|m| controller_of(m))
            .filter(|o| o.kind == parent_kind);
        Some(match parent {
            Some(p) => Workload {
                kind: WorkloadKind::from_kind(&p.kind),
                name: p.name.clone(),
            },
            None => direct,
        })
    }
}

/// A UID mismatch means the name was reused by a newer object.
fn same_object(meta: &ObjectMeta, owner: &OwnerReference) -> bool {
    match meta.uid.as_deref() {
        Some(uid) if !owner.uid.is_empty() => uid == owner.uid,
        _ => true,
    }
}

/// The managing owner: the reference marked `controller: true`, else the first
/// one. References without a kind or name are ignored as invalid.
fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let refs = meta.owner_references.as_deref()?;
    let valid = |r: &&OwnerReference| !r.kind.is_empty() && !r.name.is_empty();
    refs.iter()
        .filter(valid)
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.iter().find(valid))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
