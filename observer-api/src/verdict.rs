//! The verdict on a flow, per direction and overall: one shape for every policy kind. The
//! observer's policy engine produces it; records, the flow log and the wire carry it.
//!
//! Each direction names the ordered list of tier decisions that led to it: which tier,
//! which policy (`{kind, namespace?, name}`), which rule (by index; none for a policy's
//! implicit default deny) and the rule's action (allow, deny, pass). An admin tier that
//! passes to NetworkPolicy, a Calico tier that denies, and NetworkPolicy's union of
//! allowing rules all fit it.
//!
//! The shape is generic over how names are held: the engine returns `Verdict<&'s str>`,
//! borrowing names from the snapshot so that building a verdict copies no strings (keep the
//! snapshot alive while using it); records carry the owned `Verdict` (`String`), made once
//! by [`Verdict::owned`].

use serde::{Deserialize, Serialize};

/// Which kind of object a policy reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `projectcalico.org/v3` NetworkPolicy.
    #[serde(rename = "projectcalico.org/NetworkPolicy")]
    CalicoNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    GlobalNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
}

impl PolicyKind {
    /// Every kind, in documented order.
    pub const ALL: [Self; 6] = [
        Self::NetworkPolicy,
        Self::CalicoNetworkPolicy,
        Self::GlobalNetworkPolicy,
        Self::AdminNetworkPolicy,
        Self::BaselineAdminNetworkPolicy,
        Self::ClusterNetworkPolicy,
    ];

    /// The kind as JSON and the proto write it: the Kubernetes kind, qualified by its API
    /// group where two groups share a kind name (Calico's NetworkPolicy).
    pub fn name(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::CalicoNetworkPolicy => "projectcalico.org/NetworkPolicy",
            Self::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Self::AdminNetworkPolicy => "AdminNetworkPolicy",
            Self::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            Self::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }
}

/// The tier of the NetworkPolicy engine. Tiers are named by strings in verdicts
/// ([`TierDecision::tier`]): Calico's tiers have names their users choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The NetworkPolicy tier: isolation by selection, a union of allowing rules.
    #[serde(rename = "networkpolicy")]
    NetworkPolicy,
}

impl Tier {
    /// The tier's name in JSON and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "networkpolicy",
        }
    }
}

/// What a rule (or a policy's implicit default) does to a flow it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// The flow is allowed; evaluation ends.
    Allow,
    /// The flow is denied; evaluation ends.
    Deny,
    /// The tier has no opinion; the next tier decides.
    Pass,
}

/// A policy that took part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct PolicyRef<S = String> {
    /// The policy's kind.
    pub kind: PolicyKind,
    /// Its namespace; None for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<S>,
    /// Its name.
    pub name: S,
}

impl<S: AsRef<str>> std::fmt::Display for PolicyRef<S> {
    /// `namespace/name`, or `name` alone for a cluster-scoped policy (as kubectl names
    /// objects).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}", ns.as_ref(), self.name.as_ref()),
            None => f.write_str(self.name.as_ref()),
        }
    }
}

/// One step of a direction's decision: a rule of a policy in a tier, and its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct TierDecision<S = String> {
    /// The tier's name: `networkpolicy` for the NetworkPolicy engine; Calico's tier names
    /// (`default`, `kube-admin`, `kube-baseline`, `adminnetworkpolicy`,
    /// `baselineadminnetworkpolicy`, or one a Tier object declares) for the tiered engine.
    pub tier: S,
    /// The policy.
    pub policy: PolicyRef<S>,
    /// 0-based index of the rule in the policy's list for this direction; None when no rule
    /// matched and the policy's implicit default applies (NetworkPolicy isolation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    /// What it did.
    pub action: RuleAction,
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionDecision {
    /// This side is not a pod (outside IP or node), so no policy applies here.
    NotApplicable,
    /// No tier has an opinion about the pod for this direction: everything is allowed.
    NotIsolated,
    /// Ingress from the pod's own node: always allowed (API reference: "traffic from the
    /// pod's local node"), whatever policies say.
    Exempt,
    /// A tier allowed the flow.
    Allowed,
    /// A tier denied the flow.
    Denied,
}

impl DirectionDecision {
    /// Every decision, in documented order.
    pub const ALL: [Self; 5] = [
        Self::NotApplicable,
        Self::NotIsolated,
        Self::Exempt,
        Self::Allowed,
        Self::Denied,
    ];

    /// Stable kebab-case name, as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotApplicable => "not-applicable",
            Self::NotIsolated => "not-isolated",
            Self::Exempt => "exempt",
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// The verdict for one direction (ingress at the destination, egress at the source).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectionVerdict<S = String> {
    /// How the direction ended.
    pub decision: DirectionDecision,
    /// The tier decisions that led there, in evaluation order. For NetworkPolicy: every
    /// allowing rule (sorted by policy) when allowed, every isolating policy (with no rule)
    /// when denied. Empty when not applicable, not isolated or exempt, and on the
    /// policy engine's allocation-free `decide` path.
    pub tiers: Vec<TierDecision<S>>,
}

impl<S> DirectionVerdict<S> {
    /// A direction decided without any tier (not applicable, not isolated, exempt).
    pub fn without_tiers(decision: DirectionDecision) -> Self {
        Self {
            decision,
            tiers: Vec::new(),
        }
    }

    /// Whether this direction lets the flow through.
    pub fn permits(&self) -> bool {
        self.decision != DirectionDecision::Denied
    }

    /// The rules that allowed the flow.
    pub fn allowing_rules(&self) -> impl Iterator<Item = &TierDecision<S>> {
        self.tiers
            .iter()
            .filter(|t| t.action == RuleAction::Allow && t.rule_index.is_some())
    }
}

impl<S: AsRef<str>> DirectionVerdict<S> {
    /// The same direction with owned names.
    pub fn owned(&self) -> DirectionVerdict {
        DirectionVerdict {
            decision: self.decision,
            tiers: self
                .tiers
                .iter()
                .map(|t| TierDecision {
                    tier: t.tier.as_ref().to_owned(),
                    policy: PolicyRef {
                        kind: t.policy.kind,
                        namespace: t.policy.namespace.as_ref().map(|n| n.as_ref().to_owned()),
                        name: t.policy.name.as_ref().to_owned(),
                    },
                    rule_index: t.rule_index,
                    action: t.action,
                })
                .collect(),
        }
    }
}

/// The overall verdict, as records and filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    /// Both directions permit the flow.
    Allow,
    /// A direction denies it: a violation.
    Deny,
    /// A hostNetwork pod is involved: CNIs differ.
    Undefined,
}

impl VerdictKind {
    /// Every kind, in documented order.
    pub const ALL: [Self; 3] = [Self::Allow, Self::Deny, Self::Undefined];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Undefined => "undefined",
        }
    }
}

/// How the overall verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Decided by policy (or by the absence of isolation).
    Decided,
    /// Source is the destination pod's own node: ingress is always allowed.
    NodeExempt,
    /// A hostNetwork pod is involved. Kubernetes leaves this undefined: a CNI may apply
    /// policy to it like any pod, or treat its traffic as node traffic. `allowed` is then
    /// `false` (nothing is guaranteed) and the directions show the "like any pod" reading.
    Undefined,
    /// A protocol NetworkPolicy does not name (ICMP, ICMPv6, others) judged as the CNIs
    /// that enforce NetworkPolicy do (Calico, Cilium): an isolated pod gets it only
    /// through a rule without ports, which admits every protocol. The API leaves it open.
    CniDependent,
}

impl Category {
    /// Stable kebab-case name, as used in `check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided => "decided",
            Self::NodeExempt => "node-exempt",
            Self::Undefined => "undefined",
            Self::CniDependent => "cni-dependent",
        }
    }
}

/// Full verdict for a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Verdict<S = String> {
    /// True only if every conformant implementation allows the flow: both directions
    /// permit it and the category is not [`Category::Undefined`].
    pub allowed: bool,
    /// How the verdict was reached.
    pub category: Category,
    /// Ingress at the destination.
    pub ingress: DirectionVerdict<S>,
    /// Egress at the source.
    pub egress: DirectionVerdict<S>,
}

impl<S> Verdict<S> {
    /// The step people name as the verdict's reason: for a denied flow, the last step of
    /// the first direction that denied it (egress at the source, then ingress at the
    /// destination, as a packet meets them); for an allowed one, the first rule that
    /// allowed it, in the same order. None when no policy decided (not isolated,
    /// exempt, not applicable).
    pub fn deciding_step(&self) -> Option<&TierDecision<S>> {
        let directions = [&self.egress, &self.ingress];
        if self.allowed {
            directions.iter().find_map(|d| d.allowing_rules().next())
        } else {
            directions
                .iter()
                .find(|d| !d.permits())
                .and_then(|d| d.tiers.last())
        }
    }

    /// Allow, deny or undefined.
    pub fn kind(&self) -> VerdictKind {
        match (self.category, self.allowed) {
            (Category::Undefined, _) => VerdictKind::Undefined,
            (_, true) => VerdictKind::Allow,
            (_, false) => VerdictKind::Deny,
        }
    }
}

impl<S: AsRef<str>> Verdict<S> {
    /// The same verdict with owned names, for a record.
    pub fn owned(&self) -> Verdict {
        Verdict {
            allowed: self.allowed,
            category: self.category,
            ingress: self.ingress.owned(),
            egress: self.egress.owned(),
        }
    }
}
