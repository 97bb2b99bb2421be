//! The one registry of the cluster kinds the observer reads. Everything that handles
//! kinds follows from it: the fields of [`ClusterObjects`], the Kubernetes watchers (one
//! per kind), the kinds the manifest loader accepts (and their lists), what a state
//! compares and sorts, and the RBAC the DaemonSet needs (a test checks `deploy/rbac.yaml`
//! against [`watched_kinds`]).
//!
//! Adding a kind: a field in [`ClusterObjects`], an `impl ClusterKind` in `impls.rs`
//! (where its objects are, how they are trimmed and checked), and a line in
//! [`visit_kinds`].

mod impls;
pub mod policy_objects;

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Namespace, Node, Pod, Service},
    networking::v1::NetworkPolicy,
};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::state::ClusterObjects;
use crate::policy::FieldError;

/// A kind of cluster object the observer reads.
pub trait ClusterKind:
    Resource<DynamicType = ()>
    + Clone
    + Debug
    + PartialEq
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The Kubernetes kind, for logs and manifests.
    const KIND: &'static str;
    /// Whether objects of this kind must carry `metadata.namespace`.
    const NAMESPACED: bool;
    /// A custom resource a cluster may not have: the Kubernetes source does not wait for
    /// it to list before the first state, and retries it quietly until its CRD appears.
    const OPTIONAL: bool = false;

    /// This kind's objects in a state.
    fn of(objects: &ClusterObjects) -> &Vec<Arc<Self>>;

    /// This kind's objects in a state, to fill.
    fn of_mut(objects: &mut ClusterObjects) -> &mut Vec<Arc<Self>>;

    /// Removes everything the observer does not read (before objects enter the Kubernetes
    /// source's stores: it bounds memory, and keeps updates of unread fields from making
    /// new states).
    fn trim(&mut self, kept_annotations: &[String]);

    /// Checks an object as the view will read it; a manifest object that fails is reported
    /// with the field and left out (the Kubernetes source leaves it to the view).
    fn check(&self) -> Result<(), FieldError> {
        Ok(())
    }

    /// The object as the tiered policy engine's compiler takes it, for the policy kinds it
    /// judges (`crate::policy::tiered`); `None` for every other kind.
    fn tiered_json(&self) -> Option<serde_json::Value> {
        None
    }

    /// Why this object cannot be used at all, if it cannot.
    fn invalid_reason(&self) -> Option<&'static str> {
        let meta = self.meta();
        if meta.name.as_deref().is_none_or(str::is_empty) {
            return Some("missing metadata.name");
        }
        if Self::NAMESPACED && meta.namespace.as_deref().is_none_or(str::is_empty) {
            return Some("missing metadata.namespace");
        }
        None
    }
}

/// Something done once per kind, with the kind's type.
pub trait KindVisitor {
    /// Called for each kind, in registry order.
    fn visit<K: ClusterKind>(&mut self);
}

/// The registry: every kind the observer reads, in the order states list them.
pub fn visit_kinds(visitor: &mut impl KindVisitor) {
    visitor.visit::<Namespace>();
    visitor.visit::<Pod>();
    visitor.visit::<Node>();
    visitor.visit::<NetworkPolicy>();
    visitor.visit::<Service>();
    visitor.visit::<ReplicaSet>();
    visitor.visit::<Job>();
    visitor.visit::<policy_objects::CalicoTier>();
    visitor.visit::<policy_objects::CalicoNetworkPolicy>();
    visitor.visit::<policy_objects::CalicoGlobalNetworkPolicy>();
    visitor.visit::<policy_objects::StagedNetworkPolicy>();
    visitor.visit::<policy_objects::StagedGlobalNetworkPolicy>();
    visitor.visit::<policy_objects::StagedKubernetesNetworkPolicy>();
    visitor.visit::<policy_objects::AdminNetworkPolicy>();
    visitor.visit::<policy_objects::BaselineAdminNetworkPolicy>();
    visitor.visit::<policy_objects::ClusterNetworkPolicy>();
}

/// What identifies a watched kind in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind, e.g. `ReplicaSet`.
    pub kind: &'static str,
    /// Its `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// Its API group (`""` for the core group).
    pub group: String,
    /// Its collection's name, e.g. `replicasets`.
    pub plural: String,
    /// Whether it is namespaced.
    pub namespaced: bool,
    /// A custom resource the cluster may not serve.
    pub optional: bool,
}

/// Every kind of the registry, as the API names it.
pub fn watched_kinds() -> Vec<KindInfo> {
    struct Collect(Vec<KindInfo>);
    impl KindVisitor for Collect {
        fn visit<K: ClusterKind>(&mut self) {
            self.0.push(KindInfo {
                kind: K::KIND,
                api_version: K::api_version(&()).into_owned(),
                group: K::group(&()).into_owned(),
                plural: K::plural(&()).into_owned(),
                namespaced: K::NAMESPACED,
                optional: K::OPTIONAL,
            });
        }
    }
    let mut collect = Collect(Vec::new());
    visit_kinds(&mut collect);
    collect.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_kind_as_the_api_does() {
        let kinds = watched_kinds();
        let names: Vec<&str> = kinds.iter().map(|k| k.kind).collect();
        assert_eq!(
            names,
            [
                "Namespace",
                "Pod",
                "Node",
                "NetworkPolicy",
                "Service",
                "ReplicaSet",
                "Job",
                "Tier",
                "NetworkPolicy",
                "GlobalNetworkPolicy",
                "StagedNetworkPolicy",
                "StagedGlobalNetworkPolicy",
                "StagedKubernetesNetworkPolicy",
                "AdminNetworkPolicy",
                "BaselineAdminNetworkPolicy",
                "ClusterNetworkPolicy"
            ]
        );
        let rs = kinds
            .iter()
            .find(|k| k.kind == "ReplicaSet")
            .expect("listed");
        assert_eq!(
            (
                rs.api_version.as_str(),
                rs.group.as_str(),
                rs.plural.as_str()
            ),
            ("apps/v1", "apps", "replicasets")
        );
    }
}
