//! Policy kinds beyond NetworkPolicy, judged together in tiers: Calico
//! `projectcalico.org/v3` (NetworkPolicy, GlobalNetworkPolicy, Tier, the staged kinds),
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy `v1alpha1`, ClusterNetworkPolicy
//! `v1alpha2`, and Kubernetes NetworkPolicy as Calico places it (the default tier, order
//! 1000, Allow rules, the tier's end-of-tier deny as its isolation).
//!
//! Pure: objects in, verdicts out. One model covers every kind (the policy corpus's
//! "evaluation model"): each direction walks the tiers in order; in a tier that takes part
//! for the pod, policies in order and their rules in order; Allow and Deny decide, Pass
//! goes to the next tier, Log goes on; a tier ends with its default action (Deny, or Pass
//! for the admin and baseline tiers); past the last tier the pod's namespace profile
//! allows. Without Calico objects this reduces to the network-policy-api precedence:
//! Admin, then NetworkPolicy, then Baseline, then allow.
//!
//! - `objects`: the kinds' shapes as authored.
//! - `calico_selector`: Calico's selector language, parsed with positions in errors.
//! - `compile`: objects → policies in tiers, with each kind's defaulting.
//! - `model`: the compiled form, and the world (namespaces, pods, nodes) flows are judged in.
//! - `evaluate`: the tier walk; `matching`: whether a policy applies and a rule matches;
//!   `peer_index`: which namespaces a rule's peer can be in, so the walk skips the rest.
//! - `verdict`: its outcome in the verdict shape records and the API carry.
//!
//! `crate::cluster::tiered_view` builds it for a cluster state that holds any of these
//! kinds; `observer/tests/policy_corpus.rs` drives it directly with the public corpus.

pub mod calico_selector;
mod compile;
mod evaluate;
mod matching;
pub mod model;
pub mod objects;
mod peer_index;
mod verdict;

pub use compile::{Compiled, DEFAULT_TIER, TieredError, compile_objects, protocol_number};
pub use evaluate::{DirectionOutcome, End, Flow, Reason, TieredEngine};
