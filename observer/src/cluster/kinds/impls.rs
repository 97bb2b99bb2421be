//! Each kind of the registry: where its objects are in a state, how they are trimmed
//! (before they enter the Kubernetes source's stores: it bounds memory on large clusters
//! and, by removing fields that change often but that the observer never reads, keeps
//! no-op updates from producing new states) and how a manifest object is checked.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{
        Container, Namespace, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, Service,
    },
    networking::v1::NetworkPolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ClusterKind;
use crate::cluster::state::ClusterObjects;
use crate::policy::{FieldError, NamespaceInfo, NodeInfo, PodInfo, compile};

/// The accessors of a kind's list in [`ClusterObjects`].
macro_rules! objects_field {
    ($field:ident) => {
        fn of(objects: &ClusterObjects) -> &Vec<Arc<Self>> {
            &objects.$field
        }

        fn of_mut(objects: &mut ClusterObjects) -> &mut Vec<Arc<Self>> {
            &mut objects.$field
        }
    };
}

/// Trims fields every kind shares.
pub(super) fn trim_meta(meta: &mut ObjectMeta, kept_annotations: &[String]) {
    meta.managed_fields = None;
    // The watcher tracks resource versions itself, before trimming; dropping
    // them here lets an update that only touched trimmed fields compare equal.
    meta.resource_version = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| kept_annotations.iter().any(|kept| kept == k));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Keeps a container's identity and ports; env, probes, mounts, etc. can be
/// large and are irrelevant for traffic attribution.
fn trim_container(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        ports: c.ports.clone(),
        restart_policy: c.restart_policy.clone(),
        ..Default::default()
    }
}

impl ClusterKind for Pod {
    const KIND: &'static str = "Pod";
    const NAMESPACED: bool = true;

    objects_field!(pods);

    fn check(&self) -> Result<(), FieldError> {
        PodInfo::from_k8s(self).map(drop)
    }

    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
        self.spec = self.spec.take().map(|s| PodSpec {
            containers: s.containers.iter().map(trim_container).collect(),
            // Native sidecars are init containers and may serve ports.
            init_containers: s
                .init_containers
                .map(|cs| cs.iter().map(trim_container).collect()),
            host_network: s.host_network,
            hostname: s.hostname,
            node_name: s.node_name,
            service_account_name: s.service_account_name,
            subdomain: s.subdomain,
            ..Default::default()
        });
        // Conditions and container statuses change on every probe flip, and the
        // observer does not read them.
        self.status = self.status.take().map(|s| PodStatus {
            host_ip: s.host_ip,
            host_ips: s.host_ips,
            phase: s.phase,
            pod_ip: s.pod_ip,
            pod_ips: s.pod_ips,
            ..Default::default()
        });
    }
}

impl ClusterKind for Node {
    const KIND: &'static str = "Node";
    const NAMESPACED: bool = false;

    objects_field!(nodes);

    fn check(&self) -> Result<(), FieldError> {
        NodeInfo::from_k8s(self).map(drop)
    }

    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
        self.spec = self.spec.take().map(|s| NodeSpec {
            pod_cidr: s.pod_cidr,
            pod_cidrs: s.pod_cidrs,
            provider_id: s.provider_id,
            ..Default::default()
        });
        // Images lists are large and conditions carry heartbeats: both would
        // make every node update a new snapshot.
        self.status = self.status.take().map(|s| NodeStatus {
            addresses: s.addresses,
            ..Default::default()
        });
    }
}

impl ClusterKind for Namespace {
    const KIND: &'static str = "Namespace";
    const NAMESPACED: bool = false;

    objects_field!(namespaces);

    fn check(&self) -> Result<(), FieldError> {
        NamespaceInfo::from_k8s(self).map(drop)
    }

    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
    }
}

impl ClusterKind for NetworkPolicy {
    const KIND: &'static str = "NetworkPolicy";
    const NAMESPACED: bool = true;

    objects_field!(policies);

    fn check(&self) -> Result<(), FieldError> {
        compile(self).map(drop)
    }

    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
    }
}

impl ClusterKind for Service {
    const KIND: &'static str = "Service";
    const NAMESPACED: bool = true;

    objects_field!(services);

    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
    }
}

impl ClusterKind for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    const NAMESPACED: bool = true;

    objects_field!(replica_sets);

    /// Only metadata (ownerReferences) is read: the pod template is dropped.
    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
        self.spec = Default::default();
        self.status = None;
    }
}

impl ClusterKind for Job {
    const KIND: &'static str = "Job";
    const NAMESPACED: bool = true;

    objects_field!(jobs);

    /// Only metadata (ownerReferences) is read: the pod template is dropped.
    fn trim(&mut self, kept: &[String]) {
        trim_meta(&mut self.metadata, kept);
        self.spec = Default::default();
        self.status = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(ns: Option<&str>, name: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            resource_version: Some("42".into()),
            managed_fields: Some(vec![Default::default()]),
            annotations: Some(BTreeMap::from([
                ("keep.me/x".to_owned(), "1".to_owned()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                    "{}".to_owned(),
                ),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn trim_meta_keeps_only_listed_annotations() {
        let mut pod = Pod {
            metadata: meta(Some("a"), Some("p")),
            ..Default::default()
        };
        pod.trim(&["keep.me/x".to_owned()]);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(pod.metadata.resource_version, None);
        let annotations = pod.metadata.annotations.expect("kept one");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["keep.me/x"]);

        let mut ns = Namespace {
            metadata: meta(None, Some("a")),
            ..Default::default()
        };
        ns.trim(&[]);
        assert_eq!(ns.metadata.annotations, None);
    }

    #[test]
    fn validity_table() {
        let pod = |ns, name| Pod {
            metadata: meta(ns, name),
            ..Default::default()
        };
        let node = |ns, name| Node {
            metadata: meta(ns, name),
            ..Default::default()
        };
        assert_eq!(pod(Some("a"), Some("p")).invalid_reason(), None);
        assert_eq!(
            pod(None, Some("p")).invalid_reason(),
            Some("missing metadata.namespace")
        );
        assert_eq!(
            pod(Some(""), Some("p")).invalid_reason(),
            Some("missing metadata.namespace")
        );
        assert_eq!(
            pod(Some("a"), None).invalid_reason(),
            Some("missing metadata.name")
        );
        assert_eq!(node(None, Some("n")).invalid_reason(), None);
        assert_eq!(
            node(None, Some("")).invalid_reason(),
            Some("missing metadata.name")
        );
    }
}
