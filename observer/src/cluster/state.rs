//! Plain-data cluster state and pure helpers over it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Namespace, Node, Pod, Service},
    networking::v1::NetworkPolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::kinds::{ClusterKind, KindVisitor, policy_objects, visit_kinds};

/// One immutable state of the cluster, as published by a
/// [`ClusterSource`](super::source::ClusterSource) or loaded from manifests.
///
/// Objects are shared (`Arc`): a new state copies pointers, not objects, and an object
/// that did not change is the same allocation in both states. The Kubernetes source trims
/// them (no `managedFields`, no `resourceVersion`, most annotations removed), and each
/// list is sorted by `(namespace, name)`, so that two states of the same cluster compare
/// equal. The kinds are those of the registry (`super::kinds`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterObjects {
    /// All namespaces.
    pub namespaces: Vec<Arc<Namespace>>,
    /// All pods (pending pods without an IP included).
    pub pods: Vec<Arc<Pod>>,
    /// All nodes.
    pub nodes: Vec<Arc<Node>>,
    /// All `networking.k8s.io/v1` network policies.
    pub policies: Vec<Arc<NetworkPolicy>>,
    /// All services.
    pub services: Vec<Arc<Service>>,
    /// All replica sets, needed to map pods to their Deployment.
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    /// All jobs, needed to map pods to their CronJob.
    pub jobs: Vec<Arc<Job>>,
    /// Calico Tiers.
    pub calico_tiers: Vec<Arc<policy_objects::CalicoTier>>,
    /// Calico NetworkPolicies.
    pub calico_policies: Vec<Arc<policy_objects::CalicoNetworkPolicy>>,
    /// Calico GlobalNetworkPolicies.
    pub calico_global_policies: Vec<Arc<policy_objects::CalicoGlobalNetworkPolicy>>,
    /// Calico StagedNetworkPolicies.
    pub staged_policies: Vec<Arc<policy_objects::StagedNetworkPolicy>>,
    /// Calico StagedGlobalNetworkPolicies.
    pub staged_global_policies: Vec<Arc<policy_objects::StagedGlobalNetworkPolicy>>,
    /// Calico StagedKubernetesNetworkPolicies.
    pub staged_kubernetes_policies: Vec<Arc<policy_objects::StagedKubernetesNetworkPolicy>>,
    /// AdminNetworkPolicies (v1alpha1).
    pub admin_policies: Vec<Arc<policy_objects::AdminNetworkPolicy>>,
    /// BaselineAdminNetworkPolicies (v1alpha1).
    pub baseline_admin_policies: Vec<Arc<policy_objects::BaselineAdminNetworkPolicy>>,
    /// ClusterNetworkPolicies (v1alpha2).
    pub cluster_network_policies: Vec<Arc<policy_objects::ClusterNetworkPolicy>>,
}

impl ClusterObjects {
    /// Sorts every list by `(namespace, name)`, making equality independent of
    /// the order in which objects arrived.
    pub fn sort(&mut self) {
        struct Sort<'a>(&'a mut ClusterObjects);
        impl KindVisitor for Sort<'_> {
            fn visit<K: ClusterKind>(&mut self) {
                K::of_mut(self.0).sort_by(|a, b| {
                    let (a, b) = (a.meta(), b.meta());
                    (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
                });
            }
        }
        visit_kinds(&mut Sort(self));
    }

    /// Total number of objects of all kinds.
    pub fn len(&self) -> usize {
        struct Count<'a>(&'a ClusterObjects, usize);
        impl KindVisitor for Count<'_> {
            fn visit<K: ClusterKind>(&mut self) {
                self.1 += K::of(self.0).len();
            }
        }
        let mut count = Count(self, 0);
        visit_kinds(&mut count);
        count.1
    }

    /// Adds `other`'s objects (shared, not copied) to this state's.
    pub fn extend(&mut self, other: &ClusterObjects) {
        struct Extend<'a>(&'a mut ClusterObjects, &'a ClusterObjects);
        impl KindVisitor for Extend<'_> {
            fn visit<K: ClusterKind>(&mut self) {
                K::of_mut(self.0).extend(K::of(self.1).iter().cloned());
            }
        }
        visit_kinds(&mut Extend(self, other));
    }

    /// True when no object of any kind is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kinds whose objects differ between `self` and `other` (both sorted). Objects
    /// shared by both states are compared by pointer, the rest by value.
    pub fn changed_kinds(&self, other: &ClusterObjects) -> ChangedKinds {
        struct Diff<'a>(&'a ClusterObjects, &'a ClusterObjects, ChangedKinds);
        impl KindVisitor for Diff<'_> {
            fn visit<K: ClusterKind>(&mut self) {
                let (a, b) = (K::of(self.0), K::of(self.1));
                let same =
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y) || x == y);
                if !same {
                    self.2.0.push((K::group(&()).into_owned(), K::KIND));
                }
            }
        }
        let mut diff = Diff(self, other, ChangedKinds::default());
        visit_kinds(&mut diff);
        diff.2
    }
}

/// The kinds that changed between two states, by API group and kind (Calico's
/// NetworkPolicy and Kubernetes' share a kind name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedKinds(Vec<(String, &'static str)>);

impl ChangedKinds {
    /// Every kind: for a state with nothing to compare with.
    pub fn all() -> Self {
        Self(
            super::kinds::watched_kinds()
                .into_iter()
                .map(|k| (k.group, k.kind))
                .collect(),
        )
    }

    /// Whether kind `K` changed.
    pub fn contains<K: ClusterKind>(&self) -> bool {
        let group = K::group(&());
        self.0.iter().any(|(g, k)| *k == K::KIND && *g == group)
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a kind of API group `group` changed.
    pub fn contains_group(&self, group: &str) -> bool {
        self.0.iter().any(|(g, _)| g == group)
    }

    /// The kinds that changed, in registry order (group-qualified where not core or
    /// built in: `projectcalico.org/NetworkPolicy`).
    pub fn kinds(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(group, kind)| match group.as_str() {
                "" | "apps" | "batch" | "networking.k8s.io" => (*kind).to_owned(),
                group => format!("{group}/{kind}"),
            })
            .collect()
    }
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
mod tests;
