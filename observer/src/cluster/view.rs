//! One immutable view of the cluster for the per-flow path: the compiled policies (and the
//! input they were built from), who holds each IP, and which IP:port is a Service. Built
//! from a [`ClusterObjects`] value whenever the source publishes one, reusing the parts of
//! the previous view that no changed kind affects; readers share it through an `Arc`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::state::{ChangedKinds, ClusterObjects, OwnerIndex, Workload};
use super::tiered_view::TieredView;
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

/// Who holds each IP.
type Holders = HashMap<IpAddr, Holder>;
/// Service ports by ClusterIP, port and protocol.
type Services = HashMap<(IpAddr, u16, Protocol), Arc<ServiceRef>>;

/// The view: see the module documentation. Its parts are shared with the views built
/// before and after it when their inputs did not change.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Compiled NetworkPolicies with pods, namespaces and nodes.
    pub policy: Arc<PolicySnapshot>,
    /// What `policy` was built from: suggestions judge "the declared policies plus these"
    /// from it without reading the cluster again.
    pub input: Arc<SnapshotInput>,
    /// Objects the input conversion left out.
    input_errors: Arc<Vec<ObjectError>>,
    holders: Arc<Holders>,
    services: Arc<Services>,
    /// The tiered engine, when the state holds Calico, AdminNetworkPolicy or
    /// ClusterNetworkPolicy objects: it then judges every flow (NetworkPolicies included).
    pub tiered: Option<Arc<TieredView>>,
    /// Objects the tiered engine's compiler left out.
    tiered_errors: Arc<Vec<ObjectError>>,
    /// Without `tiered`: the NetworkPolicies judging what the API leaves to the CNI
    /// (protocols it does not name, host-networked pods), for the CNI profile to use
    /// (`cni-dependent`).
    pub cni_dependent: Option<Arc<TieredView>>,
    /// The objects it was built from (shared, not copied): suggestions in the Calico
    /// format are proven with a tiered engine built from them and the suggested policies.
    pub objects: Arc<ClusterObjects>,
}

impl ClusterView {
    /// Builds the view; objects that cannot be used are reported and left out.
    pub fn build(objects: &ClusterObjects) -> (Self, Vec<ObjectError>) {
        Self::rebuild(None, objects, &ChangedKinds::all())
    }

    /// The view of `objects`, reusing the parts of `previous` (the view of the state
    /// before) that none of the `changed` kinds affect: the policy snapshot depends on
    /// namespaces, pods, nodes and policies; IP holders on pods, nodes and their owners
    /// (ReplicaSets, Jobs); Services on Services. A readiness flip or a Service change thus
    /// no longer recompiles 2,000 policies over 10,000 pods.
    pub fn rebuild(
        previous: Option<&ClusterView>,
        objects: &ClusterObjects,
        changed: &ChangedKinds,
    ) -> (Self, Vec<ObjectError>) {
        let reuse = |affected: bool| if affected { None } else { previous };
        let policy_inputs = changed.contains::<Namespace>()
            || changed.contains::<Pod>()
            || changed.contains::<Node>()
            || changed.contains::<NetworkPolicy>();
        let (policy, input, input_errors) = match reuse(policy_inputs) {
            Some(prev) => (
                Arc::clone(&prev.policy),
                Arc::clone(&prev.input),
                Arc::clone(&prev.input_errors),
            ),
            None => {
                let (input, errors) = SnapshotInput::from_objects(
                    &objects.namespaces,
                    &objects.pods,
                    &objects.nodes,
                    &objects.policies,
                );
                (
                    Arc::new(PolicySnapshot::build(&input)),
                    Arc::new(input),
                    Arc::new(errors),
                )
            }
        };
        let holder_inputs = changed.contains::<Pod>()
            || changed.contains::<Node>()
            || changed.contains::<ReplicaSet>()
            || changed.contains::<Job>();
        let holders = match reuse(holder_inputs) {
            Some(prev) => Arc::clone(&prev.holders),
            None => {
                let infos: HashMap<(&str, &str), &Arc<PodInfo>> = input
                    .pods
                    .iter()
                    .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
                    .collect();
                Arc::new(holders(objects, &infos))
            }
        };
        let services = match reuse(changed.contains::<Service>()) {
            Some(prev) => Arc::clone(&prev.services),
            None => Arc::new(services(objects)),
        };
        let tiered_inputs = policy_inputs
            || changed.contains_group("projectcalico.org")
            || changed.contains_group("policy.networking.k8s.io");
        let (tiered, tiered_errors, cni_dependent) = match reuse(tiered_inputs) {
            Some(prev) => (
                prev.tiered.clone(),
                Arc::clone(&prev.tiered_errors),
                prev.cni_dependent.clone(),
            ),
            None => {
                let (tiered, errors) = TieredView::build(objects);
                let other = match tiered {
                    Some(_) => None,
                    None => TieredView::cni_dependent(objects).map(Arc::new),
                };
                (tiered.map(Arc::new), Arc::new(errors), other)
            }
        };
        let mut errors = input_errors.as_ref().clone();
        errors.extend(tiered_errors.iter().cloned());
        (
            Self {
                policy,
                input,
                input_errors,
                holders,
                services,
                tiered,
                tiered_errors,
                cni_dependent,
                objects: Arc::new(objects.clone()),
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

fn holders(objects: &ClusterObjects, infos: &HashMap<(&str, &str), &Arc<PodInfo>>) -> Holders {
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
    for pod in objects.pods.iter().map(|p| &**p) {
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

fn services(objects: &ClusterObjects) -> Services {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::manifests;

    const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n\
        status: {podIP: 10.0.0.1}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\n\
        spec: {podSelector: {}}\n---\n";

    fn objects(extra: &str) -> ClusterObjects {
        let loaded = manifests::parse("view.yaml", &format!("{BASE}{extra}"));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.into_objects()
    }

    #[test]
    fn a_rebuild_reuses_what_the_changed_kinds_do_not_affect() {
        let before = objects("");
        let (first, _) = ClusterView::build(&before);
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                       spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n---\n";
        let after = objects(service);
        let changed = before.changed_kinds(&after);
        assert_eq!(changed.kinds(), ["Service"]);
        let (second, _) = ClusterView::rebuild(Some(&first), &after, &changed);
        assert!(Arc::ptr_eq(&first.policy, &second.policy), "policies kept");
        assert!(Arc::ptr_eq(&first.holders, &second.holders), "holders kept");
        assert!(
            second
                .service("10.96.0.1".parse().expect("ip"), 80, Protocol::Tcp)
                .is_some()
        );

        let relabelled = objects(&format!(
            "{service}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: allow, namespace: shop}}\nspec: {{podSelector: {{}}, ingress: [{{}}]}}\n---\n"
        ));
        let changed = after.changed_kinds(&relabelled);
        assert_eq!(changed.kinds(), ["NetworkPolicy"]);
        let (third, _) = ClusterView::rebuild(Some(&second), &relabelled, &changed);
        assert!(
            !Arc::ptr_eq(&second.policy, &third.policy),
            "policies rebuilt"
        );
        assert_eq!(third.policy.policy_count(), 2);
        assert_eq!(
            third.input.policies.len(),
            2,
            "the input is kept with the view"
        );
        assert!(
            Arc::ptr_eq(&second.services, &third.services),
            "services kept"
        );
    }
}
