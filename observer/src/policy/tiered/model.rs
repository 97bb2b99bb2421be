//! The compiled form every policy kind is turned into: policies in tiers, rules that match
//! packets by their two ends, protocol and port.

use std::net::IpAddr;

use super::calico_selector::CalicoSelector;
use crate::policy::{IpSet, Labels, Selector};

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Admit the packet (ClusterNetworkPolicy `Accept` too).
    Allow,
    /// Drop it.
    Deny,
    /// Skip the rest of the tier; the next tier decides.
    Pass,
    /// Note it and go on with the next rule.
    Log,
}

/// The kind a policy was written as; named in verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    KubernetesNetworkPolicy,
    /// `projectcalico.org/v3` NetworkPolicy.
    CalicoNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    CalicoGlobalNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
}

impl SourceKind {
    /// `<api group>/<Kind>`.
    pub fn qualified(self) -> &'static str {
        match self {
            Self::KubernetesNetworkPolicy => "networking.k8s.io/NetworkPolicy",
            Self::CalicoNetworkPolicy => "projectcalico.org/NetworkPolicy",
            Self::CalicoGlobalNetworkPolicy => "projectcalico.org/GlobalNetworkPolicy",
            Self::AdminNetworkPolicy => "policy.networking.k8s.io/AdminNetworkPolicy",
            Self::BaselineAdminNetworkPolicy => {
                "policy.networking.k8s.io/BaselineAdminNetworkPolicy"
            }
            Self::ClusterNetworkPolicy => "policy.networking.k8s.io/ClusterNetworkPolicy",
        }
    }
}

/// A tier: its place among tiers and what happens when its policies decide nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct TierDef {
    /// Tier name.
    pub name: String,
    /// Ascending; `None` runs after every ordered tier.
    pub order: Option<f64>,
    /// End of tier with no decision: `Pass` (true) or `Deny` (false).
    pub default_pass: bool,
}

/// A compiled policy of any kind.
#[derive(Debug)]
pub struct Policy {
    /// As written.
    pub kind: SourceKind,
    /// Staged: never enforced; evaluated only when asked what staged policies would do.
    pub staged: bool,
    /// Namespace of a namespaced policy.
    pub namespace: Option<String>,
    /// Name as written.
    pub name: String,
    /// Name the order ties are broken by (Calico's: `knp.default.NAME` for a Kubernetes
    /// NetworkPolicy).
    pub sort_name: String,
    /// Tier name.
    pub tier: String,
    /// Order in the tier (`None`: last).
    pub order: Option<f64>,
    /// The pods it applies to.
    pub subject: Subject,
    /// Governs ingress.
    pub ingress_type: bool,
    /// Governs egress.
    pub egress_type: bool,
    /// Ingress rules, in order.
    pub ingress: Vec<Rule>,
    /// Egress rules, in order.
    pub egress: Vec<Rule>,
}

/// Which pods a policy applies to.
#[derive(Debug)]
pub enum Subject {
    /// Calico: pods matching `selector`, in `namespace` (a NetworkPolicy) or in
    /// namespaces matching `namespaces` (a GlobalNetworkPolicy), whose service account
    /// matches `service_accounts`.
    Calico {
        /// Pod labels (with Calico's implicit ones).
        selector: CalicoSelector,
        /// Namespaces.
        namespaces: NamespaceScope,
        /// Service accounts' labels.
        service_accounts: Option<CalicoSelector>,
    },
    /// Kubernetes label selectors: pods matching `pods` in namespaces matching `namespaces`.
    Labels {
        /// Namespaces.
        namespaces: NamespaceScope,
        /// Pods.
        pods: Selector,
    },
}

/// Namespaces a selection looks in.
#[derive(Debug)]
pub enum NamespaceScope {
    /// One namespace.
    Only(String),
    /// Every namespace.
    All,
    /// Namespaces matching a Calico selector (on their labels, with `projectcalico.org/name`).
    Calico(CalicoSelector),
    /// Namespaces matching a Kubernetes label selector.
    Labels(Selector),
    /// None (Calico `global()`: non-namespaced resources only, never a pod).
    Nothing,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Index in the policy's list for its direction, as authored.
    pub index: usize,
    /// What it does.
    pub action: Action,
    /// Protocol the packet must have.
    pub protocol: Option<u8>,
    /// Protocol the packet must not have.
    pub not_protocol: Option<u8>,
    /// ICMP type (and code) the packet must have.
    pub icmp: Option<(u8, Option<u8>)>,
    /// ICMP type (and code) the packet must not have.
    pub not_icmp: Option<(u8, Option<u8>)>,
    /// What the source must be.
    pub source: EndMatch,
    /// What the destination must be (ports included).
    pub destination: EndMatch,
}

impl Rule {
    /// An Allow rule with peers on either end and destination ports (a Kubernetes
    /// NetworkPolicy rule, as Calico converts it).
    pub fn allow(
        index: usize,
        source_peers: Option<Vec<Peer>>,
        destination_peers: Option<Vec<Peer>>,
        ports: Option<Vec<PortMatch>>,
    ) -> Self {
        Self {
            index,
            action: Action::Allow,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: EndMatch {
                peers: source_peers,
                ..EndMatch::default()
            },
            destination: EndMatch {
                peers: destination_peers,
                ports,
                ..EndMatch::default()
            },
        }
    }
}

/// Conditions on one end of the packet, ANDed; an empty one matches everything.
#[derive(Debug, Default)]
pub struct EndMatch {
    /// Any of these peers (Kubernetes and admin policies); `None`: any end.
    pub peers: Option<Vec<Peer>>,
    /// Calico's criteria.
    pub calico: Option<CalicoEnd>,
    /// Any of these ports (destination only); `None`: any port.
    pub ports: Option<Vec<PortMatch>>,
    /// None of these ports.
    pub not_ports: Option<Vec<PortMatch>>,
}

/// A Kubernetes or admin policy peer.
#[derive(Debug)]
pub enum Peer {
    /// Pods matching `pods` in namespaces within `namespaces`.
    Pods {
        /// Namespaces.
        namespaces: NamespaceScope,
        /// Pods.
        pods: Selector,
    },
    /// Addresses (pods' included).
    Addresses(IpSet),
    /// Node addresses, by node labels.
    Nodes(Selector),
}

/// Calico's criteria on one end.
#[derive(Debug, Default)]
pub struct CalicoEnd {
    /// In one of these networks.
    pub nets: Option<IpSet>,
    /// In none of these.
    pub not_nets: Option<IpSet>,
    /// A pod within the scope, matching the selector (`None` with `pods_only`: any pod in
    /// scope).
    pub selector: Option<CalicoSelector>,
    /// Set when a selector, namespace selector or service account match is present: the
    /// end must be a pod in `scope`.
    pub pods_only: bool,
    /// Namespaces the pod criteria look in.
    pub scope: Option<NamespaceScope>,
    /// Not a pod matching this.
    pub not_selector: Option<CalicoSelector>,
    /// Service account names (any of).
    pub service_account_names: Option<Vec<String>>,
    /// Service account labels.
    pub service_account_selector: Option<CalicoSelector>,
}

/// A destination port condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// A range of numbers, in `protocol` (any, when `None`: Calico checks the rule's).
    Range {
        /// Protocol number.
        protocol: Option<u8>,
        /// First.
        first: u16,
        /// Last.
        last: u16,
    },
    /// A container port of the destination pod, by name, in its declared protocol (and in
    /// `protocol`, when given).
    Named {
        /// Protocol number.
        protocol: Option<u8>,
        /// Port name.
        name: String,
    },
}

/// The cluster a flow is judged in.
#[derive(Debug, Default)]
pub struct World {
    /// Labels as selectors see them, computed once by [`World::prepare`] (until then they
    /// are computed at each use).
    pub derived: Derived,
    /// Namespaces.
    pub namespaces: Vec<WorldNamespace>,
    /// Pods (not host-networked).
    pub pods: Vec<WorldPod>,
    /// Service accounts' own labels, by (namespace, name).
    pub service_accounts: std::collections::BTreeMap<(String, String), Labels>,
    /// Nodes.
    pub nodes: Vec<WorldNode>,
}

/// Labels derived from the world: each pod's with Calico's implicit ones, each pod's
/// service account's, each namespace's (as Kubernetes and as Calico selectors see them).
#[derive(Debug, Default)]
pub struct Derived {
    /// Per pod: its labels plus `projectcalico.org/{namespace,orchestrator,serviceaccount}`.
    pub pod_calico: Vec<Labels>,
    /// Per pod: its service account's labels plus `projectcalico.org/name`.
    pub pod_service_account: Vec<Labels>,
    /// Per namespace name: its index in `namespace_labels`.
    pub namespace_index: std::collections::HashMap<String, u32>,
    /// Per namespace (every namespace object's, then those only pods name): (labels with
    /// `kubernetes.io/metadata.name`, and also with `projectcalico.org/name`).
    pub namespace_labels: Vec<(Labels, Labels)>,
    /// Per pod: its namespace's index in `namespace_labels`.
    pub pod_namespace: Vec<u32>,
}

impl World {
    /// Computes [`World::derived`]; call once the world is complete.
    pub fn prepare(&mut self) {
        let pod_calico = self.pods.iter().map(calico_pod_labels).collect();
        let pod_service_account = self
            .pods
            .iter()
            .map(|p| service_account_labels(self, p))
            .collect();
        let mut namespace_index = std::collections::HashMap::new();
        let mut namespace_labels = Vec::new();
        let names = self
            .namespaces
            .iter()
            .map(|n| &n.name)
            .chain(self.pods.iter().map(|p| &p.namespace));
        for name in names {
            if !namespace_index.contains_key(name) {
                namespace_index.insert(name.clone(), namespace_labels.len() as u32);
                namespace_labels.push((
                    namespace_labels_of(self, name, false),
                    namespace_labels_of(self, name, true),
                ));
            }
        }
        let pod_namespace = self
            .pods
            .iter()
            .map(|p| {
                namespace_index
                    .get(&p.namespace)
                    .copied()
                    .unwrap_or(u32::MAX)
            })
            .collect();
        self.derived = Derived {
            pod_calico,
            pod_service_account,
            namespace_index,
            namespace_labels,
            pod_namespace,
        };
    }
}

/// The pod's labels as Calico selectors see them: its own plus Calico's implicit ones.
pub fn calico_pod_labels(pod: &WorldPod) -> Labels {
    let mut labels = pod.labels.clone();
    labels.insert("projectcalico.org/namespace".into(), pod.namespace.clone());
    labels.insert("projectcalico.org/orchestrator".into(), "k8s".into());
    labels.insert(
        "projectcalico.org/serviceaccount".into(),
        pod.service_account.clone(),
    );
    labels
}

/// A namespace's labels, with `kubernetes.io/metadata.name` (and, for Calico selectors,
/// `projectcalico.org/name`).
pub fn namespace_labels_of(world: &World, name: &str, calico: bool) -> Labels {
    let mut labels = world
        .namespaces
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.labels.clone())
        .unwrap_or_default();
    labels
        .entry("kubernetes.io/metadata.name".into())
        .or_insert_with(|| name.to_owned());
    if calico {
        labels.insert("projectcalico.org/name".into(), name.to_owned());
    }
    labels
}

/// A pod's service account's labels, with `projectcalico.org/name`.
pub fn service_account_labels(world: &World, pod: &WorldPod) -> Labels {
    let mut labels = world
        .service_accounts
        .get(&(pod.namespace.clone(), pod.service_account.clone()))
        .cloned()
        .unwrap_or_default();
    labels.insert("projectcalico.org/name".into(), pod.service_account.clone());
    labels
}

/// A namespace.
#[derive(Debug, Clone)]
pub struct WorldNamespace {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
}

/// A pod.
#[derive(Debug, Clone)]
pub struct WorldPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Address.
    pub ip: Option<IpAddr>,
    /// Declared container ports: (name, port, protocol number).
    pub ports: Vec<(String, u16, u8)>,
    /// Service account (`default` when unset).
    pub service_account: String,
}

/// A node.
#[derive(Debug, Clone)]
pub struct WorldNode {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Addresses.
    pub ips: Vec<IpAddr>,
}
