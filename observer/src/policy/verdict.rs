//! The result of evaluating a flow, per direction and overall.
//!
//! References borrow names from the snapshot (`'s`), so building a verdict copies no
//! strings; keep the snapshot (e.g. an `arc_swap::Guard`) alive while using it.

use std::fmt;

/// Which kind of policy a reference points at. Only NetworkPolicy exists today; admin
/// tiers (AdminNetworkPolicy, BaselineAdminNetworkPolicy, Calico) will add variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
}

/// A policy that took part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef<'s> {
    /// The policy's kind.
    pub kind: PolicyKind,
    /// Its namespace (empty for future cluster-scoped kinds).
    pub namespace: &'s str,
    /// Its name.
    pub name: &'s str,
}

/// One rule that allows a flow: index into the policy's `ingress` or `egress` list,
/// whichever direction the containing [`DirectionVerdict`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef<'s> {
    /// The policy's kind.
    pub kind: PolicyKind,
    /// The policy's namespace.
    pub namespace: &'s str,
    /// The policy's name.
    pub policy: &'s str,
    /// 0-based index of the rule in that direction's list.
    pub rule_index: usize,
}

impl RuleRef<'_> {
    /// The policy this rule belongs to.
    pub fn policy_ref(&self) -> PolicyRef<'_> {
        PolicyRef {
            kind: self.kind,
            namespace: self.namespace,
            name: self.policy,
        }
    }
}

impl fmt::Display for PolicyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The verdict for one direction (ingress at the destination, egress at the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectionVerdict<'s> {
    /// This side is not a pod (outside IP or node), so no policy applies here.
    NotApplicable,
    /// The pod is not selected by any policy for this direction: everything is allowed.
    NotIsolated,
    /// Ingress from the pod's own node: always allowed (API reference: "traffic from the
    /// pod's local node"), whatever policies say.
    Exempt,
    /// Isolated, and these rules (all of them, sorted by policy) allow the flow. Empty
    /// when produced by the fast [`super::decide`] path.
    AllowedBy(Vec<RuleRef<'s>>),
    /// Isolated, and no rule allows the flow.
    Denied {
        /// Policies that select the pod for this direction (empty on the fast path).
        isolated_by: Vec<PolicyRef<'s>>,
    },
}

impl DirectionVerdict<'_> {
    /// Whether this direction lets the flow through.
    pub fn permits(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }

    /// Stable kebab-case name, as used in `check` output.
    pub fn decision(&self) -> &'static str {
        match self {
            Self::NotApplicable => "not-applicable",
            Self::NotIsolated => "not-isolated",
            Self::Exempt => "exempt",
            Self::AllowedBy(_) => "allowed",
            Self::Denied { .. } => "denied",
        }
    }
}

/// How the overall verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Decided by policy (or by the absence of isolation).
    Decided,
    /// Source is the destination pod's own node: ingress is always allowed.
    NodeExempt,
    /// A hostNetwork pod is involved. Kubernetes leaves this undefined: a CNI may apply
    /// policy to it like any pod, or treat its traffic as node traffic. `allowed` is then
    /// `false` (nothing is guaranteed) and the directions show the "like any pod" reading.
    Undefined,
}

impl Category {
    /// Stable kebab-case name, as used in `check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided => "decided",
            Self::NodeExempt => "node-exempt",
            Self::Undefined => "undefined",
        }
    }
}

/// Full verdict for a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'s> {
    /// True only if every conformant implementation allows the flow: both directions
    /// permit it and the category is not [`Category::Undefined`].
    pub allowed: bool,
    /// How the verdict was reached.
    pub category: Category,
    /// Ingress at the destination.
    pub ingress: DirectionVerdict<'s>,
    /// Egress at the source.
    pub egress: DirectionVerdict<'s>,
}

/// Allocation-free summary, from [`super::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Same meaning as [`Verdict::allowed`].
    pub allowed: bool,
    /// Same meaning as [`Verdict::category`].
    pub category: Category,
}
