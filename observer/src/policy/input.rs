//! What a snapshot is built from: namespaces, pods, nodes and compiled policies, converted
//! from Kubernetes objects (invalid ones are named and left out).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use thiserror::Error;

use super::compile::{CompiledPolicy, compile};
use super::error::FieldError;
use super::model::{NamespaceInfo, NodeInfo, PodInfo};

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
        namespaces: &[Arc<Namespace>],
        pods: &[Arc<Pod>],
        nodes: &[Arc<Node>],
        policies: &[Arc<NetworkPolicy>],
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
