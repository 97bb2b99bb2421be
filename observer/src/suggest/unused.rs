//! The rules of declared Calico and admin policies (Calico NetworkPolicy and
//! GlobalNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy,
//! ClusterNetworkPolicy) that no recorded flow was decided by in the window: candidates to
//! remove, by the verdicts the records carry, as `prove::existing` finds them for
//! NetworkPolicies. Pure.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cluster::kinds::policy_objects::{PolicyKindInfo, PolicyObject};
use crate::cluster::state::ClusterObjects;
use crate::flow::FlowRecord;
use crate::policy::PolicyKind;

/// A rule: kind, namespace (empty: cluster-scoped), name, direction, index.
pub type RuleKey = (PolicyKind, String, String, &'static str, usize);

/// Every rule a record's verdict names as deciding a direction.
pub fn used_rules(records: &[FlowRecord]) -> BTreeSet<RuleKey> {
    let mut used = BTreeSet::new();
    for record in records {
        let Some(verdict) = &record.policy else {
            continue;
        };
        for (direction, d) in [("ingress", &verdict.ingress), ("egress", &verdict.egress)] {
            for step in &d.tiers {
                if let Some(rule) = step.rule_index {
                    used.insert((
                        step.policy.kind,
                        step.policy.namespace.clone().unwrap_or_default(),
                        step.policy.name.clone(),
                        direction,
                        rule,
                    ));
                }
            }
        }
    }
    used
}

/// `KIND [NAMESPACE/]NAME DIRECTION rule N` for each declared rule of those kinds that no
/// record's verdict names, sorted.
pub fn unused_tiered_rules(objects: &ClusterObjects, records: &[FlowRecord]) -> Vec<String> {
    let used = used_rules(records);
    let mut unused = Vec::new();
    collect(
        &mut unused,
        &used,
        PolicyKind::CalicoNetworkPolicy,
        &objects.calico_policies,
    );
    collect(
        &mut unused,
        &used,
        PolicyKind::GlobalNetworkPolicy,
        &objects.calico_global_policies,
    );
    collect(
        &mut unused,
        &used,
        PolicyKind::AdminNetworkPolicy,
        &objects.admin_policies,
    );
    collect(
        &mut unused,
        &used,
        PolicyKind::BaselineAdminNetworkPolicy,
        &objects.baseline_admin_policies,
    );
    collect(
        &mut unused,
        &used,
        PolicyKind::ClusterNetworkPolicy,
        &objects.cluster_network_policies,
    );
    unused.sort();
    unused
}

fn collect<M: PolicyKindInfo>(
    unused: &mut Vec<String>,
    used: &BTreeSet<RuleKey>,
    kind: PolicyKind,
    policies: &[Arc<PolicyObject<M>>],
) {
    for policy in policies {
        let namespace = policy.metadata.namespace.clone().unwrap_or_default();
        let name = policy.metadata.name.clone().unwrap_or_default();
        for direction in ["ingress", "egress"] {
            let rules = policy.spec[direction].as_array().map_or(0, Vec::len);
            for rule in 0..rules {
                let key = (kind, namespace.clone(), name.clone(), direction, rule);
                if !used.contains(&key) {
                    let scoped = if namespace.is_empty() {
                        name.clone()
                    } else {
                        format!("{namespace}/{name}")
                    };
                    unused.push(format!("{} {scoped} {direction} rule {rule}", kind.name()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::fixtures::flows;
    use crate::policy::{PolicyRef, RuleAction, TierDecision};

    #[test]
    fn rules_no_record_was_decided_by_are_listed_with_their_kind() {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
            metadata: {name: no-db}\nspec:\n  selector: \"app == 'db'\"\n  ingress:\n  \
            - action: Deny\n    source: {selector: \"app == 'api'\"}\n  \
            - action: Allow\n    source: {selector: \"app == 'web'\"}\n---\n\
            apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
            metadata: {name: out, namespace: shop}\nspec:\n  egress:\n  - action: Allow\n";
        let objects = crate::cluster::manifests::parse("p.yaml", yaml).into_objects();
        // One record denied by the GlobalNetworkPolicy's rule 0.
        let mut denied = flows().swap_remove(1);
        if let Some(verdict) = denied.policy.as_mut() {
            verdict.ingress.tiers = vec![TierDecision {
                tier: "default".into(),
                policy: PolicyRef {
                    kind: PolicyKind::GlobalNetworkPolicy,
                    namespace: None,
                    name: "no-db".into(),
                },
                rule_index: Some(0),
                action: RuleAction::Deny,
            }];
        }
        assert_eq!(
            unused_tiered_rules(&objects, &[denied]),
            [
                "GlobalNetworkPolicy no-db ingress rule 1",
                "projectcalico.org/NetworkPolicy shop/out egress rule 0"
            ]
        );
    }
}
