//! Policy tiers: the ordered stages a flow passes through, per direction.
//!
//! Today there is one tier, NetworkPolicy. Its index precomputes, for every pod, which
//! policies isolate it for ingress and for egress, so evaluation touches only those.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::compile::CompiledPolicy;
use super::population::Population;

/// One stage of evaluation. Future admin tiers (AdminNetworkPolicy with Allow/Deny/Pass
/// before this one, BaselineAdminNetworkPolicy after it, Calico tiers) become variants.
#[derive(Debug)]
pub(crate) enum Tier {
    /// The `networking.k8s.io/v1` NetworkPolicy tier.
    NetworkPolicy(NetworkPolicyTier),
}

impl Tier {
    pub(crate) fn policy_count(&self) -> usize {
        match self {
            Self::NetworkPolicy(t) => t.policies.len(),
        }
    }
}

/// A policy placed in the snapshot, with its namespace resolved to an index.
#[derive(Debug)]
pub(crate) struct TierPolicy {
    pub(crate) policy: Arc<CompiledPolicy>,
    pub(crate) ns: u32,
}

/// NetworkPolicies sorted by (namespace, name), plus per-pod isolation lists.
#[derive(Debug)]
pub(crate) struct NetworkPolicyTier {
    pub(crate) policies: Vec<TierPolicy>,
    /// Per pod id: indexes into `policies` that select the pod and declare Ingress.
    pub(crate) ingress: Vec<Box<[u32]>>,
    /// Per pod id: indexes into `policies` that select the pod and declare Egress.
    pub(crate) egress: Vec<Box<[u32]>>,
}

impl NetworkPolicyTier {
    /// Builds the tier. A later policy with the same namespace/name replaces an earlier
    /// one; sorting makes verdicts independent of input order.
    pub(crate) fn build(snap: &Population, input: &[Arc<CompiledPolicy>]) -> Self {
        let mut unique = BTreeMap::new();
        for p in input {
            unique.insert((p.namespace.as_str(), p.name.as_str()), p);
        }
        let mut ingress = vec![Vec::new(); snap.pods.len()];
        let mut egress = vec![Vec::new(); snap.pods.len()];
        let mut policies = Vec::with_capacity(unique.len());
        for policy in unique.into_values() {
            let Some(ns) = snap.namespace_index(&policy.namespace) else {
                continue;
            };
            let idx = policies.len() as u32;
            let pods = snap
                .namespaces
                .get(ns as usize)
                .map_or(&[][..], |n| &n.pods);
            for &pod in pods {
                let Some(entry) = snap.pods.get(pod as usize) else {
                    continue;
                };
                if !policy.selects(&entry.info.labels) {
                    continue;
                }
                if let (true, Some(list)) =
                    (policy.affects_ingress(), ingress.get_mut(pod as usize))
                {
                    list.push(idx);
                }
                if let (true, Some(list)) = (policy.affects_egress(), egress.get_mut(pod as usize))
                {
                    list.push(idx);
                }
            }
            policies.push(TierPolicy {
                policy: policy.clone(),
                ns,
            });
        }
        Self {
            policies,
            ingress: ingress.into_iter().map(Vec::into_boxed_slice).collect(),
            egress: egress.into_iter().map(Vec::into_boxed_slice).collect(),
        }
    }
}
