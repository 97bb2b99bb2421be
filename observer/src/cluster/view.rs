//! One immutable view of the cluster for the per-flow path: the compiled policies, who
//! holds each IP, and which IP:port is a Service. Built from a [`ClusterObjects`] value
//! whenever the source publishes one; readers share it through an `Arc`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::state::{ClusterObjects, OwnerIndex, Workload};
use crate::policy::{ObjectError, PodInfo, PolicySnapshot, Protocol, SnapshotInput};

/// kubectl's namespace for objects without one (as the policy engine uses it).
const DEFAULT_NAMESPACE: &str = "default";

/// Who a pod is, as flow records name it. Shares namespace, name, labels and node with
/// the policy engine's pod (no copies per rebuild).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The pod as the policy engine sees it: namespace, name, labels, node.
    pub info: Arc<PodInfo>,
    /// Pod UID: tells a pod from a later one with the same name.
    pub uid: Option<String>,
    /// Owning workload (Deployment, StatefulSet, ...).
    pub workload: Option<Workload>,
    /// Service account.
    pub service_account: Option<String>,
}

/// Who holds an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A pod (not hostNetwork).
    Pod(Arc<PodIdentity>),
    /// A node: its own addresses, and those of its hostNetwork pods.
    Node(Arc<str>),
}

impl Holder {
    /// Same holder across views: pods by UID (else namespace/name), nodes by name.
    pub fn same_as(&self, other: &Holder) -> bool {
        match (self, other) {
            (Holder::Pod(a), Holder::Pod(b)) => match (&a.uid, &b.uid) {
                (Some(x), Some(y)) => x == y,
                _ => a.info.namespace == b.info.namespace && a.info.name == b.info.name,
            },
            (Holder::Node(a), Holder::Node(b)) => a == b,
            _ => false,
        }
    }
}

/// A Service port reached at a ClusterIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The Service port (not the target port).
    pub port: u16,
}

/// The view: see the module documentation.
#[derive(Debug)]
pub struct ClusterView {
    /// Compiled NetworkPolicies with pods, namespaces and nodes.
    pub policy: PolicySnapshot,
    holders: HashMap<IpAddr, Holder>,
    services: HashMap<(IpAddr, u16, Protocol), Arc<ServiceRef>>,
}

impl ClusterView {
    /// Builds the view; objects that cannot be used are reported and left out.
    pub fn build(objects: &ClusterObjects) -> (Self, Vec<ObjectError>) {
        let (input, errors) = SnapshotInput::from_objects(
            &objects.namespaces,
            &objects.pods,
            &objects.nodes,
            &objects.policies,
        );
        let policy = PolicySnapshot::build(&input);
        let infos: HashMap<(&str, &str), &Arc<PodInfo>> = input
            .pods
            .iter()
            .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
            .collect();
        (
            Self {
                holders: holders(objects, &infos),
                policy,
                services: services(objects),
            },
            errors,
        )
    }

    /// Who holds `ip` in this view.
    pub fn holder(&self, ip: IpAddr) -> Option<&Holder> {
        self.holders.get(&ip.to_canonical())
    }

    /// Every IP and its holder.
    pub fn holders(&self) -> &HashMap<IpAddr, Holder> {
        &self.holders
    }

    /// The Service behind a ClusterIP and port, if any.
    pub fn service(&self, ip: IpAddr, port: u16, protocol: Protocol) -> Option<&Arc<ServiceRef>> {
        self.services.get(&(ip.to_canonical(), port, protocol))
    }
}

fn holders(
    objects: &ClusterObjects,
    infos: &HashMap<(&str, &str), &Arc<PodInfo>>,
) -> HashMap<IpAddr, Holder> {
    let mut holders = HashMap::new();
    for node in &objects.nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let name: Arc<str> = Arc::from(name);
        let addresses = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten());
        for address in addresses {
            if let Ok(ip) = address.address.parse::<IpAddr>() {
                holders.insert(ip.to_canonical(), Holder::Node(Arc::clone(&name)));
            }
        }
    }
    // When two pods claim one IP (a deleted pod still listed while its IP is reused),
    // the live, newer one holds it.
    let mut claims: HashMap<IpAddr, &Pod> = HashMap::new();
    for pod in &objects.pods {
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        if matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        if spec.and_then(|s| s.host_network).unwrap_or(false) {
            if let Some(node) = spec.and_then(|s| s.node_name.as_deref()) {
                for ip in pod_ips(pod) {
                    holders
                        .entry(ip)
                        .or_insert_with(|| Holder::Node(Arc::from(node)));
                }
            }
            continue;
        }
        for ip in pod_ips(pod) {
            match claims.get(&ip) {
                Some(other) if !newer(pod, other) => {}
                _ => {
                    claims.insert(ip, pod);
                }
            }
        }
    }
    let owners = OwnerIndex::new(objects);
    let mut identities: HashMap<*const Pod, Arc<PodIdentity>> = HashMap::new();
    for (ip, pod) in claims {
        let namespace = pod
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        // Pods the policy engine rejected (invalid) have no identity either.
        let Some(info) = infos.get(&(namespace, name)) else {
            continue;
        };
        let identity = identities
            .entry(pod as *const Pod)
            .or_insert_with(|| Arc::new(identity(pod, info, &owners)));
        holders.insert(ip, Holder::Pod(Arc::clone(identity)));
    }
    holders
}

/// True when `a` should hold an IP rather than `b`: not being deleted, then created later.
fn newer(a: &Pod, b: &Pod) -> bool {
    let deleting = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (deleting(a), deleting(b)) {
        (false, true) => true,
        (true, false) => false,
        _ => created(a) > created(b),
    }
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse::<IpAddr>().ok())
        .chain(status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()))
        .map(|ip: IpAddr| ip.to_canonical())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn identity(pod: &Pod, info: &Arc<PodInfo>, owners: &OwnerIndex<'_>) -> PodIdentity {
    PodIdentity {
        info: Arc::clone(info),
        uid: pod.metadata.uid.clone(),
        workload: owners.workload_of(pod),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
    }
}

fn services(objects: &ClusterObjects) -> HashMap<(IpAddr, u16, Protocol), Arc<ServiceRef>> {
    let mut out = HashMap::new();
    for service in &objects.services {
        let (Some(name), Some(spec)) = (service.metadata.name.as_deref(), service.spec.as_ref())
        else {
            continue;
        };
        let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        for port in spec.ports.iter().flatten() {
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let Some(protocol) = Protocol::from_api(port.protocol.as_deref().unwrap_or("TCP"))
            else {
                continue;
            };
            let service_ref = Arc::new(ServiceRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                port: number,
            });
            for ip in &ips {
                out.insert((*ip, number, protocol), Arc::clone(&service_ref));
            }
        }
    }
    out
}
