//! Pure evaluation of Kubernetes `networking.k8s.io/v1` NetworkPolicy.
//!
//! # Pipeline
//!
//! 1. [`compile`] validates a k8s-openapi `NetworkPolicy` and applies API-server defaulting
//!    (policyTypes, TCP protocol), giving a reusable [`CompiledPolicy`].
//! 2. [`PolicySnapshot::build`] indexes a [`SnapshotInput`] (namespaces, pods, nodes,
//!    compiled policies): pods by name and IP, and for every pod the policies that isolate
//!    it per direction. The snapshot is immutable; rebuild it on change and publish it
//!    through `ArcSwap`.
//! 3. [`evaluate`] (explained) or [`decide`] (allocation-free) answer a [`FlowQuery`].
//!
//! # Semantics
//!
//! * Isolation is per direction and comes from selection: a pod is ingress-isolated iff a
//!   policy in its namespace selects it and has `Ingress` in its (defaulted) policyTypes.
//! * A pod-to-pod flow needs egress allowed at the source and ingress at the destination.
//!   A non-pod end (outside IP, node) is not evaluated: its side is `NotApplicable`.
//! * Policies are a union: any rule of any selecting policy allows.
//! * Empty/missing `from`/`to` means every endpoint, outside IPs included; selector peers
//!   (even `namespaceSelector: {}`) only match pods. ipBlocks match pod IPs too.
//! * Named ports resolve on the destination pod (name and protocol must match).
//! * Ingress from the destination pod's own node is always allowed
//!   ([`Category::NodeExempt`]). Flows with a hostNetwork pod are [`Category::Undefined`].
//!   ICMP is outside the model; [`CniProfile`] says how the CNI fills both gaps, and
//!   [`check`] applies it.
//!
//! # Tiers
//!
//! Each direction runs through `PolicySnapshot::tiers`, an ordered list in which the
//! first tier with an opinion decides. Today the list holds only the NetworkPolicy tier
//! (opinion = the pod is isolated). AdminNetworkPolicy (ordered by priority, actions
//! Allow/Deny/Pass) goes before it, BaselineAdminNetworkPolicy after it, and Calico v3
//! tiers slot in likewise: each is a new `Tier` variant with its own index, where Pass
//! means "no opinion, continue". A verdict lists, per direction, the [`TierDecision`]s
//! that led to it (tier, policy `{kind, namespace?, name}`, rule index, action), so new
//! kinds extend the vocabularies ([`Tier`], [`PolicyKind`]) without changing its shape.

mod cni;
mod compile;
mod error;
mod evaluate;
mod input;
mod ipblock;
mod model;
mod names;
mod population;
mod selector;
mod snapshot;
mod tier;

pub mod check;
pub mod tiered;

pub use cni::CniProfile;
pub use compile::{CompiledPolicy, compile};
pub use error::{FieldError, FieldProblem};
pub use evaluate::{Decision, decide, evaluate};
pub use input::{ObjectError, SnapshotInput};
pub use ipblock::{IpSet, IpSetBuilder};
pub use model::{
    ContainerPort, DEFAULT_NAMESPACE, Endpoint, FlowQuery, Labels, NAMESPACE_NAME_LABEL,
    NamespaceInfo, NodeId, NodeInfo, PodId, PodInfo, Protocol,
};
/// The verdict's shape is the API's (`observer-api`): the engine fills it, records carry it.
pub use observer_api::verdict::{
    Category, DirectionDecision, DirectionVerdict, PolicyKind, PolicyRef, RuleAction, Tier,
    TierDecision, Verdict, VerdictKind,
};
pub use selector::Selector;
pub use snapshot::PolicySnapshot;
